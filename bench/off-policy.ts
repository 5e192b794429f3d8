/**
 * Step time with `rollout.offPolicySteps` k = 0 and k = 1 (issue 14 §5), rollout and learner in
 * separate processes: one worker process per queue (control, rollout, reward, learner, as a
 * deployment runs them; the rollout and learner workers take one activity at a time), the dev
 * server, a fresh file:// store per run. The same rl run (one phase, so its first step is on-policy
 * in both) runs with k = 0 and k = 1 in turns — k0, k1, k0, k1, … — in this one invocation, so the
 * load of other processes on the machine falls on both alike. Per run it prints the wall time, the
 * mean step time (`step_seconds`, step start to commit) over the steps after the first, and the
 * mean rollout and learner times; then the mean of each k and the ratio k1 / k0.
 *
 *   npx tsx bench/off-policy.ts                      # 3 pairs of 8-step runs
 *   npx tsx bench/off-policy.ts --pairs 2 --steps 6
 *   npx tsx bench/off-policy.ts --hidden 256 --layers 4   # a larger model (default 128 × 2)
 *   npx tsx bench/off-policy.ts --quick              # 1 pair of 3-step runs of a tiny model (a smoke run)
 *
 * Run it with a state dir of its own (DURABLE_RL_STATE_DIR=/tmp/…), so no other worker takes its
 * activities.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { parseRunConfig } from '../activities/run/config.js';
import { METRICS_NAME, stepPrefix } from '../activities/store/keys.js';
import { committedSteps, readArtifact } from '../activities/store/manifest.js';
import { openStore } from '../activities/store/open.js';
import { decodeMetrics, type MetricsRow } from '../activities/store/schemas.js';
import { endpointsEnv, up } from '../infra/index.js';
import { connectClient, temporalConfig } from '../workers/temporal.js';
import { startTrainingRun } from '../workers/train-client.js';
import { spawnWorker } from './workers.js';

const { values: opts } = parseArgs({
  options: {
    pairs: { type: 'string', default: '3' },
    steps: { type: 'string', default: '8' },
    hidden: { type: 'string', default: '128' },
    layers: { type: 'string', default: '2' },
    quick: { type: 'boolean', default: false },
  },
});
const pairs = opts.quick ? 1 : Number(opts.pairs);
const steps = opts.quick ? 3 : Number(opts.steps);

/** The run: addition, a model of `--layers` × `--hidden` (4 heads); rl steps of 16 prompts × 4 samples in 2 shards. */
const configFor = (k: number, store: string) =>
  parseRunConfig({
    name: `off-policy-k${k}`,
    seed: 3,
    store,
    task: { name: 'addition', options: { minDigits: 1, maxDigits: 2, reverse: true, pad: true } },
    model: opts.quick ? { hidden: 32, layers: 1, heads: 2 } : { hidden: Number(opts.hidden), layers: Number(opts.layers), heads: 4 },
    phases: [{ kind: 'rl', steps, promptsPerStep: 16, groupSize: 4, lr: 1e-3 }],
    rollout: { promptsPerShard: 8, maxConcurrentShards: 2, offPolicySteps: k },
    learner: { microBatchSize: 64 },
    eval: { prompts: 8, passK: 0 },
    engine: { threads: 1 },
  });

const e = await up({ quiet: true, components: ['temporal'] });
const env = endpointsEnv(e);
const client = await connectClient(temporalConfig({ address: e.temporal.address, namespace: e.temporal.namespace }));

/** A worker process polling one queue; resolves once it polls. */
const worker = (queue: string): Promise<ChildProcess> => spawnWorker(env, [queue]);

const workers = await Promise.all(['control', 'rollout', 'reward', 'learner'].map(worker));
const mean = (xs: (number | null)[]) => {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
};

interface Measured {
  k: number;
  wall: number;
  step: number;
  rollout: number;
  learner: number;
}

async function measure(k: number): Promise<Measured> {
  const dir = mkdtempSync(join(tmpdir(), `bench-off-policy-k${k}-`));
  try {
    const config = configFor(k, pathToFileURL(dir).href);
    const t0 = performance.now();
    const run = await startTrainingRun(client, config);
    const result = await run.result();
    const wall = (performance.now() - t0) / 1000;
    if (result.status !== 'completed') throw new Error(`run ${run.runId} ended ${result.status}`);
    const store = openStore(config.store);
    const rows: MetricsRow[] = [];
    for (const s of await committedSteps(store, run.runId))
      rows.push(decodeMetrics(await readArtifact(store, stepPrefix(run.runId, s), METRICS_NAME))[0]!);
    await store.close();
    const later = rows.filter((r) => r.step > 0); // step 0 is on-policy in both (the phase's first step)
    const m: Measured = {
      k,
      wall,
      step: mean(later.map((r) => r.step_seconds)),
      rollout: mean(later.map((r) => r.rollout_seconds)),
      learner: mean(later.map((r) => r.learner_seconds)),
    };
    console.log(
      `k=${k}: ${steps} steps in ${wall.toFixed(1)} s wall · steps 1..${steps - 1}: ${m.step.toFixed(2)} s/step (rollout ${m.rollout.toFixed(2)} s, learner ${m.learner.toFixed(2)} s) · load ${loadavg()[0]!.toFixed(1)}`,
    );
    return m;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const load0 = loadavg()[0]!;
const results: Measured[] = [];
try {
  for (let p = 0; p < pairs; p++) for (const k of [0, 1]) results.push(await measure(k));
} finally {
  for (const w of workers) w.kill('SIGTERM');
  await client.connection.close();
}
const of = (k: number) => results.filter((r) => r.k === k);
const avg = (k: number, f: (m: Measured) => number) => mean(of(k).map(f));
console.log(
  `\n${pairs} pairs of ${steps}-step runs, alternated, model ${opts.quick ? '32 × 1' : `${opts.hidden} × ${opts.layers}`}; load average ${load0.toFixed(1)} → ${loadavg()[0]!.toFixed(1)}`,
);
for (const k of [0, 1])
  console.log(
    `k=${k}: ${avg(k, (m) => m.step).toFixed(2)} s/step, ${avg(k, (m) => m.wall).toFixed(1)} s wall per run (rollout ${avg(k, (m) => m.rollout).toFixed(2)} s, learner ${avg(k, (m) => m.learner).toFixed(2)} s per step)`,
  );
console.log(
  `ratio k1/k0: step time ${(avg(1, (m) => m.step) / avg(0, (m) => m.step)).toFixed(3)}, wall ${(avg(1, (m) => m.wall) / avg(0, (m) => m.wall)).toFixed(3)}; per pair: ${Array.from(
    { length: pairs },
    (_, p) => (results[2 * p + 1]!.step / results[2 * p]!.step).toFixed(3),
  ).join(', ')}`,
);
