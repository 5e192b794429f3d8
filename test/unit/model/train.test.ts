/**
 * The training graphs beyond the forward pass: the AdamW update with bias correction, decoupled
 * weight decay (matrices only by default) and global-norm clipping, checked against a plain
 * TypeScript reference; gradient accumulation over micro-batches matching one full batch; a
 * non-finite gradient skipping the update; extra loss inputs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { parseModelConfig, parameterShapes } from '../../../activities/model/config.js';
import { ModelEngine, initTrainState } from '../../../activities/model/engine.js';
import type { TrainBatch } from '../../../activities/model/engine-types.js';
import { initWeights } from '../../../activities/model/init.js';
import { sftLoss, type LossBuilder } from '../../../activities/model/losses.js';
import * as F from '../../../activities/model/ops.js';
import { CounterRng } from '../../../activities/common/rng.js';

const cfg = parseModelConfig({
  model_type: 'llama',
  vocab_size: 20,
  hidden_size: 16,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  intermediate_size: 24,
});

const batch: TrainBatch = {
  ids: [
    [1, 5, 7, 3, 2],
    [4, 4, 9, 12, 19],
    [3, 1, 2, 6, 8],
    [0, 11, 13, 17, 5],
  ],
  lossMask: [
    [0, 0, 1, 1, 1],
    [0, 1, 1, 1, 0],
    [0, 0, 1, 1, 1],
    [0, 1, 0, 1, 1],
  ],
};

test('apply graph: clipping + AdamW match a TypeScript reference', async () => {
  const engine = new ModelEngine(cfg, { threads: 1 });
  const opt = { beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1, maxGradNorm: 0.5 };
  const { session } = await engine.trainSession('apply', sftLoss(), opt);
  const rng = new CounterRng(5, 'adamw');
  const specs = parameterShapes(cfg);
  const feeds: Record<string, ort.Tensor> = {};
  const ref: Record<string, Float32Array[]> = {};
  let k = 0;
  const rand = (n: number, scale: number, positive = false) =>
    Float32Array.from({ length: n }, () => (positive ? Math.abs(rng.normal(k++)) : rng.normal(k++)) * scale);
  let sumSq = 0;
  const gradScale = 0.5;
  for (const s of specs) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const p = rand(n, 1);
    const m = rand(n, 0.1);
    const v = rand(n, 0.01, true);
    const g = rand(n, 0.3);
    ref[s.name] = [p, m, v, g];
    feeds[s.name] = new ort.Tensor('float32', p, s.shape);
    feeds[`adam_m.${s.name}`] = new ort.Tensor('float32', m, s.shape);
    feeds[`adam_v.${s.name}`] = new ort.Tensor('float32', v, s.shape);
    feeds[`acc.${s.name}`] = new ort.Tensor('float32', g, s.shape);
    for (const x of g) sumSq += (x * gradScale) ** 2;
  }
  const step = 3;
  const lr = 0.01;
  feeds.step = new ort.Tensor('int64', BigInt64Array.of(BigInt(step)), []);
  feeds.lr = new ort.Tensor('float32', Float32Array.of(lr), []);
  feeds.grad_scale = new ort.Tensor('float32', Float32Array.of(gradScale), []);
  const out = await session.run(feeds);

  const norm = Math.sqrt(sumSq);
  assert.ok(Math.abs(Number(out.grad_norm!.data[0]) - norm) < 1e-4 * norm, 'grad_norm is the global L2 norm of the scaled gradients');
  const clip = Math.min(1, opt.maxGradNorm / (norm + 1e-6));
  assert.ok(clip < 1, 'the test gradients are large enough to be clipped');
  const t = step + 1;
  for (const s of specs) {
    const [p, m, v, g] = ref[s.name]!;
    const decay = s.shape.length >= 2 ? opt.weightDecay : 0;
    const np = out[`new.${s.name}`]!.data as Float32Array;
    const nm = out[`new.adam_m.${s.name}`]!.data as Float32Array;
    const nv = out[`new.adam_v.${s.name}`]!.data as Float32Array;
    for (let i = 0; i < p!.length; i++) {
      const gi = g![i]! * gradScale * clip;
      const mi = opt.beta1 * m![i]! + (1 - opt.beta1) * gi;
      const vi = opt.beta2 * v![i]! + (1 - opt.beta2) * gi * gi;
      const mhat = mi / (1 - opt.beta1 ** t);
      const vhat = vi / (1 - opt.beta2 ** t);
      const pi = p![i]! * (1 - lr * decay) - (lr * mhat) / (Math.sqrt(vhat) + opt.eps);
      assert.ok(Math.abs(nm[i]! - mi) <= 1e-6 + 1e-5 * Math.abs(mi), `${s.name}[${i}] first moment ${nm[i]} vs ${mi}`);
      assert.ok(Math.abs(nv[i]! - vi) <= 1e-7 + 1e-5 * Math.abs(vi), `${s.name}[${i}] second moment ${nv[i]} vs ${vi}`);
      assert.ok(Math.abs(np[i]! - pi) <= 1e-6 + 1e-5 * Math.abs(pi), `${s.name}[${i}] parameter ${np[i]} vs ${pi}`);
    }
  }
  assert.equal(Number(out['new.step']!.data[0]), step + 1);
  await engine.close();
});

test('two accumulated micro-batches give the same update as one batch of both', async () => {
  const engine = new ModelEngine(cfg, { threads: 1 });
  const state = initTrainState(cfg, initWeights(cfg, 2, { std: 0.1 }));
  // every row has 3 loss tokens, so the mean over each half equals the mean over the whole
  const half = (rows: number[]) => ({ ids: rows.map((r) => batch.ids[r]!), lossMask: rows.map((r) => batch.lossMask[r]!) });
  const opts = { loss: sftLoss(), lr: 1e-2, optimizer: { weightDecay: 0.01 } };
  const whole = await engine.trainStep(state, batch, opts);
  const accumulated = await engine.trainStep(state, [half([0, 1]), half([2, 3])], opts);
  assert.ok(Math.abs(whole.metrics.loss! - accumulated.metrics.loss!) < 1e-5);
  assert.ok(Math.abs(whole.metrics.grad_norm! - accumulated.metrics.grad_norm!) < 1e-4 * whole.metrics.grad_norm!);
  for (const [name, w] of whole.state.params) {
    const a = accumulated.state.params.get(name)!.data;
    const before = state.params.get(name)!.data;
    let moved = 0;
    w.data.forEach((x, i) => {
      assert.ok(Math.abs(x - a[i]!) < 2e-6, `${name}[${i}]: ${x} (one batch) vs ${a[i]} (accumulated)`);
      moved = Math.max(moved, Math.abs(x - before[i]!));
    });
    assert.ok(moved > 0, `${name} was updated`);
  }
  assert.equal(accumulated.state.step, 1);
  await engine.close();
});

/** SFT loss scaled by an extra scalar input (so a test can make the gradient infinite). */
const scaledLoss: LossBuilder = {
  key: 'scaled-sft',
  build(ctx) {
    const scale = ctx.input('loss_scale', 'float32', []);
    const nll = F.neg(F.reduceSum(F.mul(ctx.logprobs, ctx.lossMask)));
    return { loss: F.mul(nll, scale), metrics: { scale: ctx.g.noTape(() => F.identity(scale)) } };
  },
};

test('a non-finite gradient skips the update and leaves parameters, moments and step unchanged', async () => {
  const engine = new ModelEngine(cfg, { threads: 1 });
  const state = initTrainState(cfg, initWeights(cfg, 3));
  const ok = await engine.trainStep(state, { ...batch, extra: { loss_scale: 1 } }, { loss: scaledLoss, lr: 1e-2 });
  assert.equal(ok.metrics.skipped, 0);
  assert.equal(ok.metrics.scale, 1);
  assert.equal(ok.state.step, 1);
  const bad = await engine.trainStep(ok.state, { ...batch, extra: { loss_scale: Infinity } }, { loss: scaledLoss, lr: 1e-2 });
  assert.equal(bad.metrics.skipped, 1);
  assert.equal(bad.state.step, 1);
  for (const [name, w] of bad.state.params) assert.deepEqual(w.data, ok.state.params.get(name)!.data, name);
  for (const [name, w] of bad.state.adamV) assert.deepEqual(w.data, ok.state.adamV.get(name)!.data, name);
  await engine.close();
});

test('a train step is bitwise reproducible from the same state (resume after a crash gives the same weights)', async () => {
  const engine = new ModelEngine(cfg, { threads: 2 });
  const state = initTrainState(cfg, initWeights(cfg, 4, { std: 0.1 }));
  const opts = { loss: sftLoss(), lr: 3e-3, optimizer: { weightDecay: 0.1 } };
  const a = await engine.trainStep(state, batch, opts);
  const again = await engine.trainStep(state, batch, opts);
  const fresh = new ModelEngine(cfg, { threads: 2 });
  const b = await fresh.trainStep(state, batch, opts);
  for (const other of [again, b]) {
    assert.equal(other.metrics.loss, a.metrics.loss);
    for (const [name, w] of a.state.params)
      assert.deepEqual(Buffer.from(other.state.params.get(name)!.data.buffer), Buffer.from(w.data.buffer), name);
    for (const [name, w] of a.state.adamV)
      assert.deepEqual(Buffer.from(other.state.adamV.get(name)!.data.buffer), Buffer.from(w.data.buffer), name);
  }
  await engine.close();
  await fresh.close();
});
