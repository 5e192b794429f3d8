/**
 * What continuous batching could win here (issue 16 item 3), measured before building it:
 *
 *   npx tsx bench/mixed-lengths.ts [--batch 64] [--prompt 32] [--max 128] [--threads 2] [--reps 2]
 *
 * The 30.9M bench model (bench/bench-model.ts, random weights) generates one batch of `--batch`
 * sequences twice, alternating, best of `--reps`:
 * - uniform: every sequence runs to `--max` new tokens (the batch stays full to the end);
 * - mixed: sequence i stops after a length drawn uniformly from [max/8, max] (a task with mixed
 *   completion lengths; generate.ts drops a finished row from the batch and its KV cache).
 * Continuous batching refills a finished row's slot from the shard's queue, so at best every decode
 * step runs a full batch: its gain is bounded by how much slower a generated token is in the mixed
 * run than in the uniform one (new tokens/s, prefill excluded). The script prints both rates, the
 * decode steps each took, and that bound.
 */
import { parseModelConfig } from '../activities/model/config.js';
import { BENCH_MODEL_HF } from './bench-model.js';
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

const cfg = parseModelConfig(BENCH_MODEL_HF);

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
  await engine.close();
  const { uniform, mixed } = best;
  process.stdout.write(
    `batch ${BATCH}, prompt ${PROMPT}, up to ${MAX} new tokens, threads ${THREADS}, load ${loadavg()[0]!.toFixed(1)}\n` +
      `uniform: ${uniform.tokens} tokens in ${uniform.steps} decode steps, ${uniform.tokensPerS.toFixed(0)} new tokens/s\n` +
      `mixed:   ${mixed.tokens} tokens in ${mixed.steps} decode steps, ${mixed.tokensPerS.toFixed(0)} new tokens/s\n` +
      `continuous batching could win at most ${((uniform.tokensPerS / mixed.tokensPerS - 1) * 100).toFixed(0)}% on the mixed batch\n`,
  );
}

await main();
