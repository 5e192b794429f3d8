/**
 * Bradley-Terry reward-model loss against the PROPOSED engine extension (`ctx.hidden()`,
 * `ctx.parameter()`): this file stands in for the engine by building the real tiny-llama body
 * (`arch.body`, the same code the engine's graphs use) into a graph, handing its final hidden
 * state to the loss, and declaring the loss's `score.weight` as a trainable input. Checks: the
 * loss and metrics against a TypeScript reference from the graph's own hidden states (last real
 * token under right, left and no padding), and the gradient with respect to every model parameter
 * and the head by directional finite differences through onnxruntime.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { Graph, type Tensor } from '../../../activities/model/graph.js';
import { grad } from '../../../activities/model/autodiff.js';
import * as F from '../../../activities/model/ops.js';
import { archOf } from '../../../activities/model/arch/index.js';
import { declareParams, positionsAndMask } from '../../../activities/model/graphs/common.js';
import { initWeights } from '../../../activities/model/init.js';
import { bradleyTerryLoss, type RewardModelLossContext } from '../../../activities/learner/bradley-terry.js';
import { CounterRng } from '../../../activities/common/rng.js';
import { tinyConfig } from './harness.js';

const ids = [[1, 5, 7, 3, 2, 0], [4, 4, 9, 12, 19, 23], [0, 0, 2, 6, 8, 10], [3, 11, 13, 17, 5, 21]];
const attn = [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]];
const lastIndex = [4, 5, 5, 3];

async function buildGraph(opts: { centerCoef: number }) {
  const loss = bradleyTerryLoss({ centerCoef: opts.centerCoef });
  const g = new Graph({ name: 'bt-harness', tape: true });
  const { p, params } = declareParams(g, tinyConfig, 'inputs');
  const idsT = g.input('input_ids', 'int64', ['batch', 'seq']);
  const maskT = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const { positions, keyMask } = positionsAndMask(g, maskT, idsT);
  const { hidden } = archOf(tinyConfig).body(g, tinyConfig, p, { ids: idsT, positions, keyMask });
  const attentionMask = g.noTape(() => F.cast(maskT, 'float32'));
  const extra: Tensor[] = [];
  const ctx: RewardModelLossContext = {
    g,
    get logprobs(): Tensor { throw new Error('not used by this loss'); },
    lossMask: attentionMask,
    attentionMask,
    entropy() { throw new Error('not used by this loss'); },
    input() { throw new Error('not used by this loss'); },
    hidden: () => hidden,
    parameter(name, shape) {
      const t = g.input(name, 'float32', shape);
      extra.push(t);
      return t;
    },
  };
  const r = loss.build(ctx);
  g.output(r.loss, 'loss');
  for (const [k, v] of Object.entries(r.metrics ?? {})) g.output(v, `metric.${k}`);
  g.output(g.noTape(() => F.identity(hidden)), 'hidden');
  const all = [...params, ...extra];
  // parameters the loss does not reach (the LM head) get a zero gradient, as in the engine
  grad(r.loss, all).forEach((gr, i) => g.output(gr ?? g.noTape(() => F.zerosLike(all[i]!)), `grad.${all[i]!.name}`));
  const session = await ort.InferenceSession.create(g.toBytes(), { intraOpNumThreads: 1 });
  return { loss, session, names: all.map((t) => t.name), shapes: all.map((t) => t.shape as number[]) };
}

function initParams(names: string[], shapes: number[][]): Map<string, Float32Array> {
  const w = initWeights(tinyConfig, 13, { std: 0.3 });
  const out = new Map<string, Float32Array>();
  names.forEach((n, i) => {
    const m = w.get(n);
    if (m) out.set(n, m.data);
    else {
      const rng = new CounterRng(13, n);
      out.set(n, Float32Array.from({ length: shapes[i]!.reduce((a, b) => a * b, 1) }, (_, k) => rng.normal(k)));
    }
  });
  return out;
}

function feeds(values: Map<string, Float32Array>, names: string[], shapes: number[][]): Record<string, ort.Tensor> {
  const f: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.flat().map(BigInt)), [4, 6]),
    attention_mask: new ort.Tensor('int64', BigInt64Array.from(attn.flat().map(BigInt)), [4, 6]),
  };
  names.forEach((n, i) => (f[n] = new ort.Tensor('float32', values.get(n)!, shapes[i]!)));
  return f;
}

for (const centerCoef of [0, 0.05]) {
  test(`Bradley-Terry (centerCoef ${centerCoef}): value from the last real token's hidden state, gradient by finite differences`, async () => {
    const { session, names, shapes } = await buildGraph({ centerCoef });
    assert.ok(names.includes('score.weight'), 'the loss declared its head');
    assert.deepEqual(shapes[names.indexOf('score.weight')], [1, tinyConfig.hidden]);
    const values = initParams(names, shapes);
    const base = await session.run(feeds(values, names, shapes));

    // reference: r_i = w · h[i, last(i)], loss = −mean log σ(r_c − r_r) + c·mean (r_c + r_r)²
    const D = tinyConfig.hidden;
    const h = base.hidden!.data as Float32Array;
    const w = values.get('score.weight')!;
    const r = lastIndex.map((t, i) => {
      let s = 0;
      for (let d = 0; d < D; d++) s += h[(i * 6 + t) * D + d]! * w[d]!;
      return s;
    });
    let loss = 0, acc = 0;
    for (let k = 0; k < 2; k++) {
      const m = r[2 * k]! - r[2 * k + 1]!;
      loss += Math.log1p(Math.exp(-m)) + centerCoef * (r[2 * k]! + r[2 * k + 1]!) ** 2;
      acc += m > 0 ? 1 : 0;
    }
    const got = Number(base.loss!.data[0]);
    assert.ok(Math.abs(got - loss / 2) < 1e-5 * (1 + Math.abs(loss)), `loss ${got} vs reference ${loss / 2}`);
    assert.equal(Number(base['metric.accuracy']!.data[0]), acc / 2);
    assert.ok(Math.abs(Number(base['metric.reward_margin']!.data[0]) - (r[0]! - r[1]! + r[2]! - r[3]!) / 2) < 1e-5);

    // directional finite differences over every parameter (model and head)
    const h0 = 3e-3;
    for (let dir = 0; dir < 3; dir++) {
      const rng = new CounterRng(17, 'bt-direction', dir);
      let pos = 0;
      const dv = new Map<string, Float32Array>();
      let norm = 0;
      for (const [n, v] of values) {
        const x = Float32Array.from(v, () => rng.normal(pos++));
        x.forEach((y) => (norm += y * y));
        dv.set(n, x);
      }
      norm = Math.sqrt(norm);
      let analytic = 0;
      for (const n of names) {
        const gv = base[`grad.${n}`]!.data as Float32Array;
        gv.forEach((x, k) => (analytic += (x * dv.get(n)![k]!) / norm));
      }
      const at = async (s: number) => {
        const shifted = new Map([...values].map(([n, v]) => [n, v.map((x, k) => x + (s * dv.get(n)![k]!) / norm)]));
        return Number((await session.run(feeds(shifted, names, shapes))).loss!.data[0]);
      };
      const numeric = ((await at(h0)) - (await at(-h0))) / (2 * h0);
      assert.ok(Math.abs(analytic - numeric) <= 2e-4 + 2e-2 * Math.abs(numeric), `direction ${dir}: gradient ${analytic} vs finite difference ${numeric}`);
      assert.ok(Math.abs(numeric) > 2e-3, `direction ${dir}: the loss changes measurably (${numeric})`);
    }
    await session.release();
  });
}

test('Bradley-Terry declares its head for initialisation, and rejects bad options', () => {
  const l = bradleyTerryLoss();
  assert.deepEqual(l.parameters(16), [{ name: 'score.weight', shape: [1, 16], init: { normalStd: 0.02 } }]);
  assert.deepEqual(bradleyTerryLoss({ initStd: 0 }).parameters(8)[0]!.init, 'zeros');
  assert.throws(() => bradleyTerryLoss({ centerCoef: -1 }), /centerCoef/);
});
