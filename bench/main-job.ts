/**
 * The README's main job end to end, through Temporal and the store, timed: the embedded-defaults
 * training run (SFT warm-up, then GRPO) on the local dev server with in-process workers and a
 * fresh file:// store. Prints the wall time of the whole run and of each phase, per-step stage
 * times (means over the phase's steps, from the committed metrics), the evaluations, and the load
 * average — the numbers behind the target "under 10 minutes on 2 CPU cores".
 *
 *   npx tsx bench/main-job.ts                 # the embedded defaults
 *   npx tsx bench/main-job.ts my-run.yaml     # any run config (its store is replaced by a temp dir)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { loadRunConfig, mainJobConfig, parseRunConfig } from '../activities/run/config.js';
import { METRICS_NAME, stepPrefix } from '../activities/store/keys.js';
import { committedSteps, readArtifact } from '../activities/store/manifest.js';
import { openStore } from '../activities/store/open.js';
import { decodeMetrics, type MetricsRow } from '../activities/store/schemas.js';
import { up } from '../infra/index.js';
import { evalText } from '../workers/cli-follow.js';
import { connectClient, temporalConfig } from '../workers/temporal.js';
import { startTrainingRun } from '../workers/train-client.js';
import { startAllInOne } from './workers.js';

const file = process.argv[2];
const dir = mkdtempSync(join(tmpdir(), 'bench-main-job-'));
const storeUri = pathToFileURL(dir).href;
const config = parseRunConfig({ ...(file ? loadRunConfig(file) : mainJobConfig()), store: storeUri });
const load0 = loadavg()[0]!;

const e = await up({ quiet: true, components: ['temporal'] });
const temporal = temporalConfig({ address: e.temporal.address, namespace: e.temporal.namespace });
const { group, running } = await startAllInOne(temporal);
const client = await connectClient(temporal);

const t0 = performance.now();
const run = await startTrainingRun(client, config);
const result = await run.result();
const seconds = (performance.now() - t0) / 1000;

const store = openStore(storeUri);
const rows: MetricsRow[] = [];
for (const s of await committedSteps(store, run.runId))
  rows.push(decodeMetrics(await readArtifact(store, stepPrefix(run.runId, s), METRICS_NAME))[0]!);
await store.close();

const mean = (xs: (number | null)[]) => {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
};
const sum = (xs: (number | null)[]) => xs.reduce<number>((a, b) => a + (b ?? 0), 0);
console.log(
  `main job ${run.runId}: ${result.status}, ${result.steps} steps in ${seconds.toFixed(1)} s wall (load average ${load0.toFixed(1)} → ${loadavg()[0]!.toFixed(1)}, ${process.env.DURABLE_RL_BENCH_NOTE ?? '2-core machine'})`,
);
for (const phase of ['sft', 'rl'] as const) {
  const r = rows.filter((m) => m.phase === phase);
  if (r.length === 0) continue;
  const line = [
    `${phase}: ${r.length} steps, ${sum(r.map((m) => m.step_seconds)).toFixed(1)} s of step time (mean ${mean(r.map((m) => m.step_seconds)).toFixed(2)} s/step)`,
    `learner ${mean(r.map((m) => m.learner_seconds)).toFixed(3)} s`,
  ];
  if (phase === 'rl') {
    line.push(
      `rollout ${mean(r.map((m) => m.rollout_seconds)).toFixed(3)} s`,
      `reward ${mean(r.map((m) => m.reward_seconds)).toFixed(3)} s`,
      `advantages ${mean(r.map((m) => m.advantage_seconds)).toFixed(3)} s`,
      `${mean(r.map((m) => m.tokens_per_second)).toFixed(0)} generated tokens/s`,
    );
  }
  console.log(`  ${line.join(' · ')}`);
}
for (const ev of result.evals) {
  console.log(`  eval ${evalText(ev)}`);
}
console.log(
  `  overhead (wall − step time − evals): ${(seconds - sum(rows.map((m) => m.step_seconds))).toFixed(1)} s (initRun, evaluations, workflow tasks between steps)`,
);

group.shutdown();
await running;
await client.connection.close();
rmSync(dir, { recursive: true, force: true });
