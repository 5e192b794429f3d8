/**
 * A run through a long object-store outage, measured (issue 14, "a run survives a 10-minute store
 * outage without user action, visibly blocked"): on private servers (a fresh state dir, so nothing
 * else is disturbed), a small run on the S3 store (MinIO) with the run's default blocked settings
 * (workflow.blockedAfterMinutes 5, retryIntervalCapSeconds 60) is trained once without trouble
 * (the reference weights), then again with MinIO SIGKILLed after step 2 and started again after
 * `--outage-minutes`. Nobody touches the run in between. Prints when the run showed `blocked`
 * (search attribute DurableRlStatus, with the current details the Web UI shows), how long after
 * MinIO came back it was `running` again and committed its next step, whether every step was
 * committed once, whether the final weights equal the reference, and that the history holds no
 * signal or Update (no user action).
 *
 *   npx tsx bench/store-outage.ts                         # 10-minute outage, ~15 min in all
 *   npx tsx bench/store-outage.ts --outage-minutes 1 --blocked-after 0.25 --retry-cap 5   # a quick look
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseRunConfig } from '../activities/run/config.js';
import { checkpointPrefix, MODEL_NAME, stepPrefix } from '../activities/store/keys.js';
import { committedSteps, readCommitted } from '../activities/store/manifest.js';
import { openStore } from '../activities/store/open.js';
import type { ObjectStore } from '../activities/store/object-store.js';
import { crashServer, down, endpointsEnv, startMinio, up } from '../infra/index.js';
import { connectClient, temporalConfig } from '../workers/temporal.js';
import { runProgress, startTrainingRun } from '../workers/train-client.js';
import { startAllInOne } from './workers.js';
import { totalSteps } from '../workflows/run-plan.js';

const { values: opt } = parseArgs({
  options: {
    /** How long MinIO stays down. */
    'outage-minutes': { type: 'string', default: '10' },
    /** workflow.blockedAfterMinutes of the run (default: the config's default). */
    'blocked-after': { type: 'string' },
    /** workflow.retryIntervalCapSeconds of the run (default: the config's default). */
    'retry-cap': { type: 'string' },
  },
});
const outageMs = Number(opt['outage-minutes']) * 60_000;
const workflow = {
  heartbeatTimeoutSeconds: 10,
  ...(opt['blocked-after'] ? { blockedAfterMinutes: Number(opt['blocked-after']) } : {}),
  ...(opt['retry-cap'] ? { retryIntervalCapSeconds: Number(opt['retry-cap']) } : {}),
};

const say = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const load0 = loadavg()[0]!;

const stateDir = mkdtempSync(join(tmpdir(), 'bench-store-outage-'));
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^DURABLE_RL_(TEMPORAL|S3)_/.test(k)));
const e = await up({ stateDir, quiet: true, env });
Object.assign(process.env, endpointsEnv(e)); // the in-process workers' S3 store reads them
const temporal = temporalConfig({ address: e.temporal.address, namespace: e.temporal.namespace });
const client = await connectClient(temporal);
const { group, running } = await startAllInOne(temporal);
const s3Uri = `s3://${e.minio.bucket}/store-outage`;
const store: ObjectStore = openStore(s3Uri);

const config = parseRunConfig({
  name: 'store-outage',
  seed: 5,
  store: s3Uri,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  model: { hidden: 32, layers: 1, heads: 2 },
  phases: [
    { kind: 'sft', steps: 2, batchSize: 16, lr: 3e-3 },
    { kind: 'rl', steps: 6, promptsPerStep: 8, groupSize: 4, lr: 1e-3 },
  ],
  rollout: { promptsPerShard: 4, maxConcurrentShards: 2 },
  learner: { microBatchSize: 16 },
  eval: { prompts: 16, passK: 2 },
  engine: { threads: 1 },
  workflow,
});
const steps = totalSteps(config);

async function finalWeights(runId: string): Promise<string> {
  const m = await readCommitted(store, checkpointPrefix(runId, steps));
  const w = m?.artifacts.find((a) => a.name === MODEL_NAME);
  if (!w) throw new Error(`checkpoint ${steps} of ${runId} has no ${MODEL_NAME}`);
  return w.sha256;
}

try {
  say(`# store outage: ${opt['outage-minutes']} min; run of ${steps} steps on ${s3Uri}; workflow ${JSON.stringify(config.workflow)}`);
  const t00 = Date.now();
  const reference = await startTrainingRun(client, config);
  await reference.result();
  const referenceSha = await finalWeights(reference.runId);
  say(`reference run ${reference.runId}: ${((Date.now() - t00) / 1000).toFixed(0)} s, final weights ${referenceSha.slice(0, 16)}…`);

  const run = await startTrainingRun(client, config);
  const handle = client.workflow.getHandle(run.runId);
  const status = async () =>
    (await handle.describe()).typedSearchAttributes.get({ name: 'DurableRlStatus', type: 'KEYWORD' } as never) as unknown as string;
  while (!(await committedSteps(store, run.runId)).includes(1)) await sleep(500);
  const before = (await committedSteps(store, run.runId)).length;
  await crashServer('minio', { stateDir, env });
  const down0 = Date.now();
  say(`MinIO SIGKILLed with ${before} of ${steps} steps committed`);

  let blockedAt: number | undefined;
  let details = '';
  while (Date.now() - down0 < outageMs) {
    if (blockedAt === undefined && (await status().catch(() => '')) === 'blocked') {
      blockedAt = Date.now();
      const p = await runProgress(client, run.runId);
      details = (await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata')).currentDetails ?? '';
      say(`blocked after ${((blockedAt - down0) / 1000).toFixed(0)} s: ${JSON.stringify(p?.blocked)}`);
    }
    await sleep(2000);
  }
  await startMinio({ stateDir, quiet: true, env });
  const back = Date.now();
  say(`MinIO back after ${((back - down0) / 1000).toFixed(0)} s`);

  let unblockedAt: number | undefined;
  let nextCommitAt: number | undefined;
  for (;;) {
    const st = await status().catch(() => '');
    if (unblockedAt === undefined && st !== 'blocked' && st !== '') unblockedAt = Date.now();
    if (nextCommitAt === undefined && (await committedSteps(store, run.runId).catch(() => [])).length > before) nextCommitAt = Date.now();
    if (st === 'completed' || st === 'stopped') break;
    await sleep(1000);
  }
  const result = await run.result();
  const done = Date.now();
  const committed = await committedSteps(store, run.runId);
  const once = committed.length === steps && committed.every((s, i) => s === i);
  const manifests = await Promise.all(committed.map((s) => readCommitted(store, stepPrefix(run.runId, s))));
  const sha = await finalWeights(run.runId);
  const events = (await handle.fetchHistory()).events ?? [];
  const userActions = events.filter(
    (ev) => ev.workflowExecutionSignaledEventAttributes || ev.workflowExecutionUpdateAcceptedEventAttributes,
  ).length;
  const gaveUp = events.filter((ev) => ev.activityTaskFailedEventAttributes || ev.activityTaskTimedOutEventAttributes).length;
  const s = (a: number | undefined, b: number) => (a === undefined ? 'never' : `${((a - b) / 1000).toFixed(1)} s`);
  say('');
  say('| measure | value |');
  say('| --- | --- |');
  say(`| outage (MinIO SIGKILLed → started again) | ${((back - down0) / 1000).toFixed(0)} s |`);
  say(`| run shown \`blocked\` after the outage began | ${s(blockedAt, down0)} |`);
  say(
    `| time blocked (shown blocked → running again) | ${blockedAt && unblockedAt ? `${((unblockedAt - blockedAt) / 1000).toFixed(0)} s` : 'n/a'} |`,
  );
  say(`| \`running\` again after MinIO was back | ${s(unblockedAt, back)} |`);
  say(`| next step committed after MinIO was back | ${s(nextCommitAt, back)} |`);
  say(`| run completed after MinIO was back | ${((done - back) / 1000).toFixed(0)} s (${result.status}, ${result.steps} steps) |`);
  say(`| every step committed once | ${once && manifests.every(Boolean) ? 'yes' : `NO: ${committed.join(',')}`} |`);
  say(
    `| final weights equal the reference run's | ${sha === referenceSha ? 'yes (sha256 ' + sha.slice(0, 16) + '…)' : `NO: ${sha} vs ${referenceSha}`} |`,
  );
  say(`| calls that gave up to the workflow (failed or timed out) | ${gaveUp} |`);
  say(`| signals and Updates in the history (user actions) | ${userActions} |`);
  say(`| load average at start / end | ${load0.toFixed(1)} / ${loadavg()[0]!.toFixed(1)} |`);
  say('');
  say('Current details while blocked (the Web UI shows this markdown):');
  say(details);
} finally {
  group.shutdown();
  await running.catch(() => undefined);
  await client.connection.close();
  await store.close().catch(() => undefined);
  await down({ stateDir, purge: true, env }).catch(() => undefined);
  rmSync(stateDir, { recursive: true, force: true });
}
