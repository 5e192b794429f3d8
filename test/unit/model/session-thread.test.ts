/**
 * Where the engine's sessions run (activities/model/session-host.ts): on the calling thread a
 * session run blocks the event loop for its whole length; on the engine's worker thread (the
 * default) timers keep firing. Both give bitwise the same results. Cancellation (an AbortSignal)
 * is honoured between session runs, progress is reported after each, and `moveState` moves the
 * train state to the worker instead of copying it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelConfig } from '../../../activities/model/config.js';
import { ModelEngine, initTrainState, type EngineOptionsInput } from '../../../activities/model/engine.js';
import type { TrainBatch, TrainState } from '../../../activities/model/engine-types.js';
import { generate } from '../../../activities/model/generate.js';
import { initWeights } from '../../../activities/model/init.js';
import { sftLoss } from '../../../activities/model/losses.js';
import { CounterRng } from '../../../activities/common/rng.js';

const tiny = parseModelConfig({
  model_type: 'llama',
  vocab_size: 20,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  intermediate_size: 24,
});

/** `rows` random sequences of `len` tokens, loss on every token but the first. */
function batchOf(vocab: number, rows: number, len: number, seed: number): TrainBatch {
  const rng = new CounterRng(seed, 'session-thread');
  return {
    ids: Array.from({ length: rows }, (_, r) => Array.from({ length: len }, (_, t) => rng.int(r * len + t, vocab))),
    lossMask: Array.from({ length: rows }, () => Array.from({ length: len }, (_, t) => (t === 0 ? 0 : 1))),
  };
}

const bytesOf = (s: TrainState) => [...s.params.values(), ...s.adamM.values(), ...s.adamV.values()].map((w) => Buffer.from(w.data.buffer));
const copyOf = (s: TrainState): TrainState => {
  const c = (m: TrainState['params']) => new Map([...m].map(([k, w]) => [k, { shape: w.shape.slice(), data: w.data.slice() }]));
  return { params: c(s.params), adamM: c(s.adamM), adamV: c(s.adamV), step: s.step };
};

/** Ticks of a 5 ms interval during one trainStep of one micro-batch (one session run) and its length. */
async function ticksDuringTrainStep(thread: 'worker' | 'main'): Promise<{ ticks: number; ms: number }> {
  const cfg = parseModelConfig({
    model_type: 'llama',
    vocab_size: 256,
    hidden_size: 256,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    intermediate_size: 768,
  });
  const engine = new ModelEngine(cfg, { threads: 1, thread });
  const state = initTrainState(cfg, initWeights(cfg, 1));
  const batch = batchOf(256, 8, 128, 1);
  await engine.trainStep(state, batch, { loss: sftLoss(), lr: 0 }); // session built, worker warm
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  const t0 = performance.now();
  await engine.trainStep(state, batch, { loss: sftLoss(), lr: 0 });
  const ms = performance.now() - t0;
  clearInterval(timer);
  await engine.close();
  return { ticks, ms };
}

test('on the main thread one session run blocks the event loop (a 5 ms interval ticks at most twice); on the worker it keeps ticking (>= a quarter of ms / 5)', async () => {
  const main = await ticksDuringTrainStep('main');
  assert.ok(main.ms > 200, `the step is long enough to tell (${main.ms.toFixed(0)} ms)`);
  assert.ok(main.ticks <= 2, `main thread: ${main.ticks} ticks in ${main.ms.toFixed(0)} ms`);
  const worker = await ticksDuringTrainStep('worker');
  assert.ok(worker.ticks >= worker.ms / 5 / 4, `worker thread: ${worker.ticks} ticks in ${worker.ms.toFixed(0)} ms`);
});

/** trainStep (3 micro-batches, 2 steps), score and generate on an engine with these options. */
async function everything(options: EngineOptionsInput) {
  const engine = new ModelEngine(tiny, { threads: 1, ...options });
  let state = initTrainState(tiny, initWeights(tiny, 7));
  const metrics: Record<string, number>[] = [];
  for (let s = 0; s < 2; s++) {
    const parts = [0, 1, 2].map((k) => batchOf(20, 2, 6, 10 * s + k));
    const r = await engine.trainStep(state, parts, { loss: sftLoss(), lr: 1e-2 });
    state = r.state;
    metrics.push(r.metrics);
  }
  engine.setWeights(state.params, 'trained');
  const scored = await engine.score(batchOf(20, 3, 7, 99));
  const pick = new CounterRng(5, 'pick');
  const gens = await generate(engine, [[1, 2, 3], [4], [5, 6]], {
    maxNewTokens: 6,
    stopTokenIds: [0],
    // row 1 stops at position 2 (stop id 0), the others draw from 1..19 and run to the budget
    pickToken: (logits, seq, pos) => (seq === 1 && pos === 2 ? 0 : 1 + pick.int(seq * 100 + pos, logits.length - 1)),
  });
  await engine.close();
  return { state, metrics, logprobs: Buffer.from(scored.logprobs.buffer), entropy: Buffer.from(scored.entropy!.buffer), gens };
}

test('worker and main thread give bitwise the same trainStep states and metrics, score logprobs and generations (baked and input weights)', async () => {
  for (const bakeWeights of [true, false]) {
    const main = await everything({ thread: 'main', bakeWeights });
    const worker = await everything({ thread: 'worker', bakeWeights });
    assert.deepEqual(bytesOf(worker.state), bytesOf(main.state), 'parameters and moments');
    assert.equal(worker.state.step, 2);
    assert.deepEqual(worker.metrics, main.metrics);
    assert.deepEqual(worker.logprobs, main.logprobs);
    assert.deepEqual(worker.entropy, main.entropy);
    assert.deepEqual(worker.gens, main.gens);
    assert.ok(
      worker.gens.some((g) => g.finishReason === 'stop') && worker.gens.some((g) => g.finishReason === 'length'),
      'some rows stop early (the cache is compacted), some run to the budget',
    );
  }
});

test('trainStep reports each of its 4 + 1 session runs, and an abort after micro-batch 2 of 4 throws the reason before micro-batch 3', async () => {
  const engine = new ModelEngine(tiny, { threads: 1 });
  const state = initTrainState(tiny, initWeights(tiny, 7));
  const parts = [0, 1, 2, 3].map((k) => batchOf(20, 2, 6, k));
  const seen: string[] = [];
  await engine.trainStep(state, parts, { loss: sftLoss(), lr: 1e-2, onProgress: (d, of) => seen.push(`${d}/${of}`) });
  assert.deepEqual(seen, ['1/5', '2/5', '3/5', '4/5', '5/5']);

  const ac = new AbortController();
  const reason = new Error('cancelled by the test');
  const runs: number[] = [];
  await assert.rejects(
    engine.trainStep(state, parts, {
      loss: sftLoss(),
      lr: 1e-2,
      signal: ac.signal,
      onProgress: (d) => {
        runs.push(d);
        if (d === 2) ac.abort(reason);
      },
    }),
    (err) => err === reason,
  );
  assert.deepEqual(runs, [1, 2], 'no run after the abort');
  const r = await engine.trainStep(state, parts, { loss: sftLoss(), lr: 1e-2 });
  assert.equal(r.metrics.skipped, 0, 'the engine is usable after an aborted step');
  await engine.close();
});

test('an already aborted signal stops trainStep and score before any run; generate stops before decode step 4 when aborted after step 3', async () => {
  const engine = new ModelEngine(tiny, { threads: 1 });
  const weights = initWeights(tiny, 7);
  const aborted = AbortSignal.abort(new Error('gone'));
  let ran = 0;
  await assert.rejects(
    engine.trainStep(initTrainState(tiny, weights), batchOf(20, 2, 6, 1), {
      loss: sftLoss(),
      lr: 1e-2,
      signal: aborted,
      onProgress: () => ran++,
    }),
    /gone/,
  );
  assert.equal(ran, 0);
  engine.setWeights(weights, 'w');
  await assert.rejects(engine.score(batchOf(20, 1, 4, 1), { signal: aborted }), /gone/);
  const ac = new AbortController();
  const steps: number[] = [];
  await assert.rejects(
    generate(engine, [[1, 2]], {
      maxNewTokens: 8,
      stopTokenIds: [],
      pickToken: () => 3,
      signal: ac.signal,
      onStep: (s) => {
        steps.push(s);
        if (s === 3) ac.abort(new Error('stop decoding'));
      },
    }),
    /stop decoding/,
  );
  assert.deepEqual(steps, [1, 2, 3]);
  await engine.close();
});

test('moveState: the state moves to the worker (its arrays detached), the new state is bitwise the copied step, and a skipped update gives the moved state back intact', async () => {
  const engine = new ModelEngine(tiny, { threads: 1 });
  const parts = [0, 1].map((k) => batchOf(20, 2, 6, k));
  const state = initTrainState(tiny, initWeights(tiny, 7));
  const kept = copyOf(state);
  const copied = await engine.trainStep(kept, parts, { loss: sftLoss(), lr: 1e-2 });
  assert.ok(
    [...kept.params.values()].every((w) => w.data.length > 0),
    'without moveState the caller keeps its arrays',
  );
  engine.setWeights(state.params, 'moving');
  const moved = await engine.trainStep(state, parts, { loss: sftLoss(), lr: 1e-2, moveState: true });
  assert.ok(
    [...state.params.values(), ...state.adamM.values()].every((w) => w.data.length === 0),
    'the moved arrays are detached',
  );
  assert.deepEqual(bytesOf(moved.state), bytesOf(copied.state));
  assert.equal(engine.weightsVersion, '', 'installed weights that moved away are uninstalled');

  const bad = copyOf(moved.state);
  bad.params.get('model.norm.weight')!.data[0] = NaN;
  const before = bytesOf(copyOf(bad));
  const skipped = await engine.trainStep(bad, parts, { loss: sftLoss(), lr: 1e-2, moveState: true });
  assert.equal(skipped.metrics.skipped, 1);
  assert.deepEqual(bytesOf(skipped.state), before, 'parameters and moments come back unchanged');
  assert.equal(skipped.state.step, bad.step);
  await engine.close();
});
