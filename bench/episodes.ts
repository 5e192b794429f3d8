/**
 * The built-in environments before and after RL (issue 15 §6): for each environment and seed, a
 * char model trained from scratch through the durable run (local dev server, in-process workers,
 * a fresh file:// store) — SFT on gold trajectories, then GRPO on its episodes — and the greedy
 * evaluations at the end of SFT ("before RL") and at the end of the run ("after RL"): success rate
 * (the reward's `correct`: the final answer equals the reference) and tool calls per episode.
 *
 *   npx tsx bench/episodes.ts                                   # calculator and lookup, seeds 1 2 3 (quick: 64x2, 12 SFT + 8 RL steps)
 *   npx tsx bench/episodes.ts --hidden 128 --layers 3 --sft-steps 80 --rl-steps 16 --rl-lr 5e-4   # the README's table
 *   npx tsx bench/episodes.ts --envs calculator --seeds 1 --sft-steps 10 --rl-steps 5
 *   npx tsx bench/episodes.ts --json /tmp/episodes.json         # also write the numbers as JSON
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { parseRunConfig, type RunConfig } from '../activities/run/config.js';
import type { EvalRecord } from '../activities/run/types.js';
import { EVAL_NAME, evalPrefix } from '../activities/store/keys.js';
import { readArtifact } from '../activities/store/manifest.js';
import { openStore } from '../activities/store/open.js';
import { up } from '../infra/index.js';
import { connectClient, temporalConfig } from '../workers/temporal.js';
import { startTrainingRun } from '../workers/train-client.js';
import { startAllInOne } from './workers.js';

const { values: args } = parseArgs({
  options: {
    envs: { type: 'string', default: 'calculator,lookup' },
    seeds: { type: 'string', default: '1,2,3' },
    'sft-steps': { type: 'string', default: '12' },
    'rl-steps': { type: 'string', default: '8' },
    'eval-prompts': { type: 'string', default: '64' },
    json: { type: 'string' },
    /** Print the first greedy episodes of the final evaluation. */
    samples: { type: 'boolean', default: false },
    hidden: { type: 'string', default: '64' },
    layers: { type: 'string', default: '2' },
    'sft-lr': { type: 'string', default: '3e-3' },
    'rl-lr': { type: 'string', default: '3e-4' },
  },
});
const sftSteps = Number(args['sft-steps']);
const rlSteps = Number(args['rl-steps']);

/** The run of one environment and seed: a small llama from scratch, SFT on gold trajectories, then GRPO. */
function configOf(env: string, seed: number, storeUri: string): RunConfig {
  return parseRunConfig({
    name: `episodes-${env}`,
    seed,
    store: storeUri,
    environment: { name: env, options: { maxTurns: 4 } },
    model: { hidden: Number(args.hidden), layers: Number(args.layers), heads: 4 },
    phases: [
      { kind: 'sft', steps: sftSteps, updatesPerStep: 8, batchSize: 32, lr: Number(args['sft-lr']), warmupSteps: 4 },
      { kind: 'rl', steps: rlSteps, promptsPerStep: 16, groupSize: 8, lr: Number(args['rl-lr']), sampling: { temperature: 1 } },
    ],
    rollout: { promptsPerShard: 8, maxConcurrentShards: 2 },
    learner: { microBatchSize: 64 },
    eval: { prompts: Number(args['eval-prompts']), passK: 0 },
    engine: { threads: 1 },
  });
}

const e = await up({ quiet: true, components: ['temporal'] });
const temporal = temporalConfig({ address: e.temporal.address, namespace: e.temporal.namespace });
const { group, running } = await startAllInOne(temporal);
const client = await connectClient(temporal);

interface Measured {
  env: string;
  seed: number;
  seconds: number;
  before: { success: number; calls: number; turns: number };
  after: { success: number; calls: number; turns: number };
}
const results: Measured[] = [];
const measure = (r: EvalRecord) => ({
  success: r.greedy_accuracy ?? NaN,
  calls: r.episodes?.tool_calls_mean ?? NaN,
  turns: r.episodes?.turns_mean ?? NaN,
});

for (const env of args.envs!.split(',')) {
  for (const seed of args.seeds!.split(',').map(Number)) {
    const dir = mkdtempSync(join(tmpdir(), `bench-episodes-${env}-`));
    const storeUri = pathToFileURL(dir).href;
    const t0 = performance.now();
    const run = await startTrainingRun(client, configOf(env, seed, storeUri));
    const result = await run.result();
    const seconds = (performance.now() - t0) / 1000;
    const store = openStore(storeUri);
    const evalOf = async (v: number) =>
      JSON.parse(new TextDecoder().decode(await readArtifact(store, evalPrefix(run.runId, v), EVAL_NAME))) as EvalRecord;
    const m: Measured = {
      env,
      seed,
      seconds,
      before: measure(await evalOf(sftSteps)),
      after: measure(await evalOf(sftSteps + rlSteps)),
    };
    if (args.samples)
      for (const x of (await evalOf(sftSteps + rlSteps)).samples.slice(0, 4))
        console.log(`  ${x.prompt} → ${x.completion} (reference ${x.reference}, reward ${x.reward})`);
    await store.close();
    rmSync(dir, { recursive: true, force: true });
    results.push(m);
    console.log(
      `${env} seed ${seed}: ${result.status} in ${seconds.toFixed(0)} s · success ${(100 * m.before.success).toFixed(1)}% → ${(100 * m.after.success).toFixed(1)}% · calls/episode ${m.before.calls.toFixed(2)} → ${m.after.calls.toFixed(2)} · turns/episode ${m.before.turns.toFixed(2)} → ${m.after.turns.toFixed(2)} (load ${loadavg()[0]!.toFixed(1)})`,
    );
  }
}
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
for (const env of new Set(results.map((r) => r.env))) {
  const r = results.filter((x) => x.env === env);
  console.log(
    `${env} (mean of ${r.length} seeds): success ${(100 * mean(r.map((x) => x.before.success))).toFixed(1)}% → ${(100 * mean(r.map((x) => x.after.success))).toFixed(1)}%, calls/episode ${mean(r.map((x) => x.before.calls)).toFixed(2)} → ${mean(r.map((x) => x.after.calls)).toFixed(2)}`,
  );
}
if (args.json) writeFileSync(args.json, JSON.stringify(results, null, 2));

group.shutdown();
await running;
await client.connection.close();
