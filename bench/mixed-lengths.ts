/**
 * Continuous batching on this machine (issue 16 item 3):
 *
 *   npx tsx bench/mixed-lengths.ts [--batch 64] [--queue 256] [--prompt 32] [--max 128] [--threads 2] [--reps 2] [--quick]
 *
 * Part 1, the bound (measured before continuous batching was built):
 * The 30.9M bench model (bench/bench-model.ts, random weights) generates one batch of `--batch`
 * sequences twice, alternating, best of `--reps`:
 * - uniform: every sequence runs to `--max` new tokens (the batch stays full to the end);
 * - mixed: sequence i stops after a length drawn uniformly from [max/8, max] (a task with mixed
 *   completion lengths; generate.ts drops a finished row from the batch and its KV cache).
 * Continuous batching refills a finished row's slot from the shard's queue, so at best every decode
 * step runs a full batch: its gain is bounded by how much slower a generated token is in the mixed
 * run than in the uniform one (new tokens/s, prefill excluded). The script prints both rates, the
 * decode steps each took, and that bound.
 *
 * Part 2, the real thing: `--queue` sequences of the same mixed lengths (a shard with more samples
 * than one batch holds), decoded `--batch` at a time, alternating, best of `--reps`:
 * - batches: one `generate` per consecutive `--batch` sequences, each waiting for its longest
 *   (how the rollout decoded before `rollout.maxBatchSequences`);
 * - continuous: one `generate` with `maxBatch: --batch`, later sequences joining as slots free.
 * It prints the wall time (prefills included), new tokens/s and session runs of each, and the ratio.
 * `--quick` uses the 2-layer model of bench-model.ts, where a session run's fixed cost is most of it.
 */
import { parseModelConfig } from '../activities/model/config.js';
import { BENCH_MODEL_HF, QUICK_MODEL_HF } from './bench-model.js';
import { ModelEngine } from '../activities/model/engine.js';
import { initWeights } from '../activities/model/init.js';
import { generate } from '../activities/model/generate.js';
import { CounterRng } from '../activities/common/rng.js';
import { loadavg } from 'node:os';

const args = process.argv.slice(2);
const arg = (name: string, def: number): number => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : def);
const BATCH = arg('--batch', 64);
const PROMPT = arg('--prompt', 32);
const MAX = arg('--max', 128);
const REPS = arg('--reps', 2);
const THREADS = arg('--threads', 2);
const QUEUE = arg('--queue', 4 * BATCH);

const cfg = parseModelConfig(args.includes('--quick') ? QUICK_MODEL_HF : BENCH_MODEL_HF);

async function main(): Promise<void> {
  const engine = new ModelEngine(cfg, { threads: THREADS });
  engine.setWeights(initWeights(cfg, 1), 'bench');
  const rng = new CounterRng(3, 'mixed-lengths');
  const prompts = Array.from({ length: BATCH }, (_, b) =>
    Array.from({ length: PROMPT }, (_, t) => 1 + rng.int(b * 4096 + t, cfg.vocabSize - 1)),
  );
  const lengths = Array.from({ length: BATCH }, (_, b) => Math.floor(MAX / 8) + rng.int(1_000_000 + b, MAX - Math.floor(MAX / 8) + 1));
  await generate(engine, prompts.slice(0, 1), { maxNewTokens: 2, pickToken: () => 1, stopTokenIds: [] }); // warm-up
  const run = async (mixed: boolean) => {
    let firstAt = 0;
    let steps = 0;
    const out = await generate(engine, prompts, {
      maxNewTokens: MAX,
      stopTokenIds: [],
      pickToken: (_l, s, pos) => {
        if (pos === 0 && s === 0) firstAt = performance.now();
        return 1 + rng.int(2_000_000 + s * 4096 + pos, cfg.vocabSize - 1);
      },
      endSequence: mixed ? (s, _tok, pos) => pos + 1 >= lengths[s]! : undefined,
      onStep: (n) => (steps = n),
    });
    const decodeS = (performance.now() - firstAt) / 1000;
    const tokens = out.reduce((n, g) => n + g.tokens.length, 0) - BATCH; // the first token of each comes with the prefill
    return { tokensPerS: tokens / decodeS, steps, tokens: tokens + BATCH };
  };
  const best = { uniform: { tokensPerS: 0, steps: 0, tokens: 0 }, mixed: { tokensPerS: 0, steps: 0, tokens: 0 } };
  for (let r = 0; r < REPS; r++) {
    for (const kind of ['uniform', 'mixed'] as const) {
      const x = await run(kind === 'mixed');
      if (x.tokensPerS > best[kind].tokensPerS) best[kind] = x;
    }
  }
  // part 2: a queue of mixed lengths, in batches one after another or continuously
  const queuePrompts = Array.from({ length: QUEUE }, (_, q) =>
    Array.from({ length: PROMPT }, (_, t) => 1 + rng.int(5_000_000 + q * 4096 + t, cfg.vocabSize - 1)),
  );
  const queueLengths = Array.from({ length: QUEUE }, (_, q) => Math.floor(MAX / 8) + rng.int(6_000_000 + q, MAX - Math.floor(MAX / 8) + 1));
  const queueTokens = queueLengths.reduce((a, b) => a + b, 0);
  const drain = async (continuous: boolean) => {
    let runs = 0;
    const opts = {
      maxNewTokens: MAX,
      stopTokenIds: [] as number[],
      pickToken: (_l: Float32Array, s: number, pos: number) => 1 + rng.int(7_000_000 + s * 4096 + pos, cfg.vocabSize - 1),
      onStep: () => runs++,
    };
    const t0 = performance.now();
    if (continuous) {
      await generate(engine, queuePrompts, { ...opts, maxBatch: BATCH, endSequence: (s, _t, pos) => pos + 1 >= queueLengths[s]! });
    } else {
      for (let start = 0; start < QUEUE; start += BATCH) {
        await generate(engine, queuePrompts.slice(start, start + BATCH), {
          ...opts,
          endSequence: (s, _t, pos) => pos + 1 >= queueLengths[start + s]!,
        });
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, runs, tokensPerS: queueTokens / seconds };
  };
  const drained = { batches: { seconds: Infinity, runs: 0, tokensPerS: 0 }, continuous: { seconds: Infinity, runs: 0, tokensPerS: 0 } };
  for (let r = 0; r < REPS; r++) {
    for (const kind of ['batches', 'continuous'] as const) {
      const x = await drain(kind === 'continuous');
      if (x.seconds < drained[kind].seconds) drained[kind] = x;
    }
  }
  await engine.close();
  const { uniform, mixed } = best;
  const { batches, continuous } = drained;
  process.stdout.write(
    `batch ${BATCH}, prompt ${PROMPT}, up to ${MAX} new tokens, threads ${THREADS}, load ${loadavg()[0]!.toFixed(1)}\n` +
      `uniform: ${uniform.tokens} tokens in ${uniform.steps} decode steps, ${uniform.tokensPerS.toFixed(0)} new tokens/s\n` +
      `mixed:   ${mixed.tokens} tokens in ${mixed.steps} decode steps, ${mixed.tokensPerS.toFixed(0)} new tokens/s\n` +
      `continuous batching could win at most ${((uniform.tokensPerS / mixed.tokensPerS - 1) * 100).toFixed(0)}% on the mixed batch\n` +
      `queue of ${QUEUE} (${queueTokens} new tokens), ${BATCH} at a time:\n` +
      `  batches:    ${batches.seconds.toFixed(2)} s, ${batches.tokensPerS.toFixed(0)} new tokens/s, ${batches.runs} session runs\n` +
      `  continuous: ${continuous.seconds.toFixed(2)} s, ${continuous.tokensPerS.toFixed(0)} new tokens/s, ${continuous.runs} session runs\n` +
      `  continuous / batches: ${(batches.seconds / continuous.seconds).toFixed(2)}x (load ${loadavg()[0]!.toFixed(1)})\n`,
  );
}

await main();
