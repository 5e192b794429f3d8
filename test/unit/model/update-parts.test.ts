/**
 * The update in parts (engine option `updatePartMiB`; graphs `gradNorm` and `applyPart` in
 * graphs/train.ts): after accumulated micro-batches a model whose trained parameters exceed the
 * budget is updated part by part, each part's old state freed before the next. The partition
 * covers every trained tensor once, in order, within the budget; the new state and the metrics
 * are bitwise those of one update (full model and LoRA, state copied or moved); a non-finite
 * gradient norm runs no part and gives the moved state back intact; progress counts the norm run
 * and every part.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parameterShapes, parseModelConfig, trainableNames, withLora, type ModelConfig } from '../../../activities/model/config.js';
import { ModelEngine, initTrainState } from '../../../activities/model/engine.js';
import type { TrainBatch, TrainState } from '../../../activities/model/engine-types.js';
import { initWeights } from '../../../activities/model/init.js';
import { sftLoss } from '../../../activities/model/losses.js';
import { CounterRng } from '../../../activities/common/rng.js';

const tiny = parseModelConfig({
  model_type: 'llama',
  vocab_size: 40,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  intermediate_size: 24,
});
/** 2 KiB of parameters a part: the tiny model's 7.1 KiB of parameters go in several parts. */
const SMALL = 2 / 1024;

function batchOf(rows: number, len: number, seed: number): TrainBatch {
  const rng = new CounterRng(seed, 'update-parts');
  return {
    ids: Array.from({ length: rows }, (_, r) => Array.from({ length: len }, (_, t) => rng.int(r * len + t, 40))),
    lossMask: Array.from({ length: rows }, () => Array.from({ length: len }, (_, t) => (t === 0 ? 0 : 1))),
  };
}
const microBatches = [0, 1, 2].map((k) => batchOf(2, 6, k));
const bytesOf = (s: TrainState) =>
  [s.params, s.adamM, s.adamV].flatMap((m) => [...m].sort(([a], [b]) => (a < b ? -1 : 1)).map(([n, w]) => [n, Buffer.from(w.data.buffer)]));
const copyOf = (s: TrainState): TrainState => {
  const c = (m: TrainState['params']) => new Map([...m].map(([k, w]) => [k, { shape: w.shape.slice(), data: w.data.slice() }]));
  return { params: c(s.params), adamM: c(s.adamM), adamV: c(s.adamV), step: s.step };
};

/** Two accumulated steps of 3 micro-batches with the given part budget: the states after each and the metrics. */
async function twoSteps(cfg: ModelConfig, state: TrainState, updatePartMiB: number, moveState = false) {
  const engine = new ModelEngine(cfg, { threads: 1, updatePartMiB });
  const progress: [number, number][] = [];
  try {
    const states: TrainState[] = [];
    const metrics: Record<string, number>[] = [];
    let s = copyOf(state);
    for (let k = 0; k < 2; k++) {
      const r = await engine.trainStep(s, microBatches, {
        loss: sftLoss(),
        lr: 1e-2,
        optimizer: { maxGradNorm: 0.05 }, // the clipping coefficient (from the norm run) is in play
        moveState,
        onProgress: (done, of) => progress.push([done, of]),
      });
      s = r.state;
      states.push(copyOf(s));
      metrics.push(r.metrics);
    }
    return { states, metrics, progress, parts: engine.updateParts() };
  } finally {
    await engine.close();
  }
}

test('the parts cover every trained tensor once, in parameter order, each within the budget (a larger tensor alone); budget 0 or a large one: one part', () => {
  const engine = new ModelEngine(tiny, { threads: 1, updatePartMiB: SMALL });
  const parts = engine.updateParts();
  const specs = parameterShapes(tiny);
  const bytes = new Map(specs.map((s) => [s.name, 4 * s.shape.reduce((a, d) => a * d, 1)]));
  assert.ok(parts.length >= 3, `${parts.length} parts`);
  assert.deepEqual(
    parts.flat(),
    specs.map((s) => s.name),
  );
  for (const p of parts) {
    const total = p.reduce((a, n) => a + bytes.get(n)!, 0);
    assert.ok(total <= 2048 || p.length === 1, `part [${p.join(', ')}]: ${total} bytes`);
  }
  // the embedding (40 x 16 x 4 = 2560 bytes) is over the budget: a part of its own
  assert.deepEqual(parts[0], ['model.embed_tokens.weight']);
  assert.equal(new ModelEngine(tiny, { updatePartMiB: 0 }).updateParts().length, 1);
  assert.equal(new ModelEngine(tiny, {}).updateParts().length, 1, 'the default 512 MiB holds the tiny model whole');
});

test('in parts the new state and the metrics are bitwise those of one update, state copied or moved; progress counts 3 micro-batches, the norm and each part', async () => {
  const state = initTrainState(tiny, initWeights(tiny, 7));
  const whole = await twoSteps(tiny, state, 0);
  const split = await twoSteps(tiny, state, SMALL);
  const moved = await twoSteps(tiny, state, SMALL, true);
  assert.ok(split.parts.length >= 3);
  assert.ok(whole.metrics[0]!.grad_norm! > 0.05, `clipping applies (grad norm ${whole.metrics[0]!.grad_norm})`);
  for (const k of [0, 1]) {
    assert.deepEqual(bytesOf(split.states[k]!), bytesOf(whole.states[k]!), `step ${k}: the state`);
    assert.deepEqual(bytesOf(moved.states[k]!), bytesOf(whole.states[k]!), `step ${k}: the moved state`);
    assert.equal(split.states[k]!.step, k + 1);
    assert.deepEqual(split.metrics[k], whole.metrics[k]);
  }
  const runs = 3 + 1 + split.parts.length;
  assert.deepEqual(
    split.progress.slice(0, runs),
    Array.from({ length: runs }, (_, i) => [i + 1, runs]),
  );
  assert.deepEqual(
    whole.progress.slice(0, 4),
    [1, 2, 3, 4].map((i) => [i, 4]),
  );
});

test('a LoRA model is updated in parts of its adapters alone, bitwise as in one update', async () => {
  const cfg = withLora(tiny, { rank: 2, targets: ['q_proj', 'v_proj', 'down_proj'] });
  const state = initTrainState(cfg, initWeights(cfg, 'update-parts-lora', { std: 0.2 }));
  const whole = await twoSteps(cfg, state, 0);
  const split = await twoSteps(cfg, state, 0.25 / 1024);
  assert.ok(split.parts.length >= 2, `${split.parts.length} parts`);
  assert.deepEqual(new Set(split.parts.flat()), trainableNames(cfg));
  assert.ok(
    split.parts.flat().every((n) => n.includes('lora_')),
    'adapters only',
  );
  for (const k of [0, 1]) assert.deepEqual(bytesOf(split.states[k]!), bytesOf(whole.states[k]!), `step ${k}`);
});

test('a non-finite gradient norm runs no part: the update is skipped and the moved state comes back intact', async () => {
  const engine = new ModelEngine(tiny, { threads: 1, updatePartMiB: SMALL });
  try {
    const bad = initTrainState(tiny, initWeights(tiny, 7));
    bad.params.get('model.norm.weight')!.data[0] = NaN;
    const before = bytesOf(copyOf(bad));
    const progress: number[] = [];
    const r = await engine.trainStep(bad, microBatches, {
      loss: sftLoss(),
      lr: 1e-2,
      moveState: true,
      onProgress: (done) => progress.push(done),
    });
    assert.equal(r.metrics.skipped, 1);
    assert.ok(!Number.isFinite(r.metrics.grad_norm));
    assert.deepEqual(bytesOf(r.state), before, 'parameters and moments come back unchanged');
    assert.equal(r.state.step, 0);
    assert.deepEqual(progress, [1, 2, 3, 4], 'the micro-batches and the norm run; no part');
  } finally {
    await engine.close();
  }
});
