/**
 * Two ways to run a loss builder for real, both through onnxruntime:
 *
 * - `runLoss64` / `checkLossGrad`: a standalone float64 graph whose "logprobs" and "entropy" are
 *   graph inputs (a LossContext built here, extra inputs declared as float64). It returns the loss,
 *   the metrics and the autodiff gradients with respect to logprobs and entropy, and compares those
 *   gradients with central finite differences of the same session (h 1e-6, rtol 1e-6).
 * - `engineSetup` / `engineLoss` / `engineDirectionalCheck`: the engine's own trainStep graphs on
 *   a tiny llama — the loss value at lr 0, and the gradient with respect to every parameter (the
 *   `grad` graph with zero accumulators) against a central difference along a random direction.
 */
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { Graph, type Tensor } from '../../../activities/model/graph.js';
import { grad } from '../../../activities/model/autodiff.js';
import type { LossBuilder, LossContext } from '../../../activities/model/losses.js';
import { parseModelConfig, parameterShapes } from '../../../activities/model/config.js';
import { ModelEngine, initTrainState } from '../../../activities/model/engine.js';
import type { TrainBatch, TrainState } from '../../../activities/model/engine-types.js';
import { initWeights } from '../../../activities/model/init.js';
import { CounterRng } from '../../../activities/common/rng.js';

export type Extra = number | number[] | number[][];

export interface LossData {
  logprobs: number[][];
  lossMask: number[][];
  entropy?: number[][];
  extra: Record<string, Extra>;
}

function dimsOf(v: Extra): number[] {
  if (typeof v === 'number') return [];
  if (typeof v[0] === 'number') return [v.length];
  return [v.length, (v[0] as number[]).length];
}

function flat(v: Extra): number[] {
  if (typeof v === 'number') return [v];
  return (v as (number | number[])[]).flat();
}

function f64(v: Extra): ort.Tensor {
  return new ort.Tensor('float64', Float64Array.from(flat(v)), dimsOf(v));
}

export interface Loss64 {
  loss: number;
  metrics: Record<string, number>;
  /** d loss / d logprobs, row-major [B·T]; null when the loss does not depend on them. */
  dLogprobs: Float64Array | null;
  dEntropy: Float64Array | null;
}

interface Built {
  session: ort.InferenceSession;
  metricNames: string[];
  hasEntropyGrad: boolean;
  hasLogprobGrad: boolean;
}

async function build64(builder: LossBuilder, data: LossData): Promise<Built> {
  const B = data.logprobs.length;
  const T = data.logprobs[0]!.length;
  const g = new Graph({ name: `loss64-${builder.key}`, tape: true });
  const logprobs = g.input('logprobs', 'float64', [B, T]);
  const entropyIn = g.input('entropy', 'float64', [B, T]);
  const lossMask = g.input('loss_mask', 'float64', [B, T]);
  let usedEntropy = false;
  const ctx: LossContext = {
    g,
    logprobs,
    lossMask,
    attentionMask: lossMask,
    entropy() {
      usedEntropy = true;
      return entropyIn;
    },
    input(name, _dtype, dims) {
      const v = data.extra[name];
      assert.ok(v !== undefined, `test data lacks extra input ${name}`);
      const d = dimsOf(v);
      assert.equal(d.length, dims.length, `extra ${name}: rank ${d.length}, loss declares ${dims.length}`);
      return g.input(name, 'float64', d);
    },
  };
  const r = builder.build(ctx);
  g.output(r.loss, 'loss');
  const metricNames = Object.keys(r.metrics ?? {});
  for (const [k, v] of Object.entries(r.metrics ?? {})) g.output(v, `metric.${k}`);
  const [gl, ge] = grad(r.loss, [logprobs, entropyIn]) as (Tensor | null)[];
  if (gl) g.output(gl, 'd_logprobs');
  if (ge) g.output(ge, 'd_entropy');
  void usedEntropy;
  const session = await ort.InferenceSession.create(g.toBytes(), { intraOpNumThreads: 1 });
  return { session, metricNames, hasLogprobGrad: !!gl, hasEntropyGrad: !!ge };
}

async function run64(b: Built, data: LossData, lp: number[][], ent: number[][]): Promise<Loss64> {
  const feeds: Record<string, ort.Tensor> = {
    logprobs: f64(lp),
    entropy: f64(ent),
    loss_mask: f64(data.lossMask),
  };
  for (const name of b.session.inputNames) if (!(name in feeds)) feeds[name] = f64(data.extra[name]!);
  const out = await b.session.run(feeds);
  const metrics: Record<string, number> = {};
  for (const m of b.metricNames) metrics[m] = Number(out[`metric.${m}`]!.data[0]);
  return {
    loss: Number(out.loss!.data[0]),
    metrics,
    dLogprobs: b.hasLogprobGrad ? (out.d_logprobs!.data as Float64Array) : null,
    dEntropy: b.hasEntropyGrad ? (out.d_entropy!.data as Float64Array) : null,
  };
}

function zeros(like: number[][]): number[][] {
  return like.map((r) => r.map(() => 0));
}

/** Loss, metrics and gradients of a loss builder in a float64 graph. */
export async function runLoss64(builder: LossBuilder, data: LossData): Promise<Loss64> {
  const b = await build64(builder, data);
  try {
    return await run64(b, data, data.logprobs, data.entropy ?? zeros(data.logprobs));
  } finally {
    await b.session.release();
  }
}

/**
 * Checks d loss / d logprobs (and d loss / d entropy when the loss uses it) element by element
 * against central finite differences through the same float64 session. Returns the base result.
 */
export async function checkLossGrad(builder: LossBuilder, data: LossData, tol = { h: 1e-6, rtol: 1e-6, atol: 1e-9 }): Promise<Loss64> {
  const b = await build64(builder, data);
  try {
    const ent = data.entropy ?? zeros(data.logprobs);
    const base = await run64(b, data, data.logprobs, ent);
    assert.ok(base.dLogprobs, `${builder.key}: no gradient path to the logprobs`);
    const which: ['logprobs' | 'entropy', Float64Array][] = [['logprobs', base.dLogprobs]];
    if (base.dEntropy) which.push(['entropy', base.dEntropy]);
    for (const [name, analytic] of which) {
      const T = data.logprobs[0]!.length;
      for (let k = 0; k < analytic.length; k++) {
        const i = Math.floor(k / T);
        const t = k % T;
        const shift = (d: number) => {
          const lp = data.logprobs.map((r) => r.slice());
          const en = ent.map((r) => r.slice());
          (name === 'logprobs' ? lp : en)[i]![t]! += d;
          return run64(b, data, lp, en);
        };
        const numeric = ((await shift(tol.h)).loss - (await shift(-tol.h)).loss) / (2 * tol.h);
        const err = Math.abs(analytic[k]! - numeric);
        assert.ok(
          err <= tol.atol + tol.rtol * Math.abs(numeric),
          `${builder.key}: d loss / d ${name}[${i}][${t}] autodiff ${analytic[k]} vs finite difference ${numeric} (|err| ${err.toExponential(2)})`,
        );
      }
    }
    return base;
  } finally {
    await b.session.release();
  }
}

// ---------------------------------------------------------------------------------------------
// Through the engine
// ---------------------------------------------------------------------------------------------

export const tinyConfig = parseModelConfig({
  model_type: 'llama',
  vocab_size: 24,
  hidden_size: 16,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  intermediate_size: 24,
});

export interface EngineSetup {
  engine: ModelEngine;
  state: TrainState;
  /** Score-graph logprobs and entropy of `ids` under the state's parameters, as rows. */
  logprobs: number[][];
  entropy: number[][];
}

export async function engineSetup(ids: number[][], seed = 3): Promise<EngineSetup> {
  const engine = new ModelEngine(tinyConfig, { threads: 1 });
  const params = initWeights(tinyConfig, seed, { std: 0.3 });
  const state = initTrainState(tinyConfig, params);
  engine.setWeights(params, `seed-${seed}`);
  const s = await engine.score({ ids }, { entropy: true });
  const [B, T] = s.dims;
  const rows = (a: Float32Array) => Array.from({ length: B }, (_, i) => Array.from(a.subarray(i * T, (i + 1) * T)));
  return { engine, state, logprobs: rows(s.logprobs), entropy: rows(s.entropy!) };
}

/** The loss and metrics one trainStep reports at lr 0 (parameters unchanged). */
export async function engineLoss(setup: EngineSetup, batch: TrainBatch, loss: LossBuilder): Promise<Record<string, number>> {
  const r = await setup.engine.trainStep(setup.state, batch, { loss, lr: 0 });
  return r.metrics;
}

function feedsOf(batch: TrainBatch, B: number, T: number, names: { name: string }[]): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(batch.ids.flat().map(BigInt)), [B, T]),
    attention_mask: new ort.Tensor(
      'int64',
      BigInt64Array.from((batch.attentionMask ?? batch.ids.map((r) => r.map(() => 1))).flat().map(BigInt)),
      [B, T],
    ),
    loss_mask: new ort.Tensor('float32', Float32Array.from(batch.lossMask.flat()), [B, T]),
    temperature: new ort.Tensor('float32', Float32Array.of(1), []),
  };
  for (const { name } of names) {
    const v = batch.extra![name] as Extra;
    feeds[name] = new ort.Tensor('float32', Float32Array.from(flat(v)), dimsOf(v));
  }
  return feeds;
}

/**
 * The engine's gradient of the loss with respect to all parameters (its `grad` graph, zero
 * accumulators), projected on `directions` random unit directions, against central differences
 * of the loss the same graph computes at θ ± h·d.
 */
export async function engineDirectionalCheck(
  setup: EngineSetup,
  batch: TrainBatch,
  loss: LossBuilder,
  opts: { directions?: number; h?: number; rtol?: number; atol?: number; seed?: number } = {},
): Promise<void> {
  const { directions = 3, h = 3e-3, rtol = 2e-2, atol = 2e-4, seed = 1 } = opts;
  const { session, graph } = await setup.engine.trainSession('grad', loss);
  const specs = parameterShapes(tinyConfig);
  const B = batch.ids.length;
  const T = batch.ids[0]!.length;
  const data = feedsOf(batch, B, T, graph.extraInputs);
  const zerosAcc: Record<string, ort.Tensor> = {};
  for (const s of specs)
    zerosAcc[`acc.${s.name}`] = new ort.Tensor('float32', new Float32Array(s.shape.reduce((a, b) => a * b, 1)), s.shape);
  const at = async (shift: (name: string, k: number) => number) => {
    const p: Record<string, ort.Tensor> = {};
    for (const s of specs) {
      const base = setup.state.params.get(s.name)!.data;
      p[s.name] = new ort.Tensor(
        'float32',
        base.map((x, k) => x + shift(s.name, k)),
        s.shape,
      );
    }
    return session.run({ ...p, ...zerosAcc, ...data });
  };
  const base = await at(() => 0);
  for (let d = 0; d < directions; d++) {
    const rng = new CounterRng(seed, 'direction', d);
    let pos = 0;
    const dir = new Map<string, Float32Array>();
    let norm = 0;
    for (const s of specs) {
      const n = s.shape.reduce((a, b) => a * b, 1);
      const v = Float32Array.from({ length: n }, () => rng.normal(pos++));
      v.forEach((x) => (norm += x * x));
      dir.set(s.name, v);
    }
    norm = Math.sqrt(norm);
    let analytic = 0;
    for (const s of specs) {
      const gv = base[`new.acc.${s.name}`]!.data as Float32Array;
      const dv = dir.get(s.name)!;
      for (let k = 0; k < gv.length; k++) analytic += (gv[k]! * dv[k]!) / norm;
    }
    const lp = Number((await at((name, k) => (h * dir.get(name)![k]!) / norm)).loss!.data[0]);
    const lm = Number((await at((name, k) => (-h * dir.get(name)![k]!) / norm)).loss!.data[0]);
    const numeric = (lp - lm) / (2 * h);
    const err = Math.abs(analytic - numeric);
    assert.ok(
      err <= atol + rtol * Math.abs(numeric),
      `${loss.key}: directional derivative ${d}: engine gradient ${analytic} vs finite difference ${numeric} (|err| ${err.toExponential(2)})`,
    );
    assert.ok(Math.abs(numeric) > 10 * atol, `direction ${d}: the loss must change measurably (${numeric})`);
  }
}
