/**
 * Failure semantics of the training run, against the real servers, with workers in child
 * processes that are SIGKILLed mid-stage and come back (as under a process supervisor):
 *
 * - a kill in every stage (rollout, reward, advantages, learner, commit, between the two commits
 *   of a step) and the run still commits every step exactly once, ending with weights bitwise
 *   identical (sha256) to an uninterrupted run with the same seed;
 * - resume-from after a terminated run continues from its last committed checkpoint and ends
 *   with the same weights as the uninterrupted run;
 * - the Temporal dev server stopped and restarted mid-run (SQLite persisted): the run continues;
 * - MinIO unavailable for 30 s mid-run: store calls and activities retry, and the run continues.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { down, endpointsEnv, startMinio, startTemporal, stopMinio, stopTemporal, up } from '../../../infra/index.js';
import { committedSteps } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { connectClient, temporalConfig } from '../../../workers/temporal.js';
import { pauseRun, resumeFromRun, resumeRun, runProgress, startTrainingRun } from '../../../workers/train-client.js';
import { totalSteps } from '../../../workflows/run-plan.js';
import { lazyFixture } from '../../support/fixture.js';
import { startWorkers, testTemporal, type TestTemporal } from '../../support/temporal.js';
import {
  assertCommittedRun,
  superviseWorker,
  terminateBefore,
  tinyRunConfig,
  waitFor,
  weightsSha,
  type SupervisedWorker,
} from '../../support/training.js';

const storeDir = mkdtempSync(join(tmpdir(), 'training-failures-'));
const storeUri = pathToFileURL(storeDir).href;
/** Steps of the tiny run each test trains (all but the outage test). */
const TOTAL = totalSteps(tinyRunConfig(storeUri));
let t: TestTemporal;
let control: { stop(): Promise<void> };
let store: ObjectStore;

before(async () => {
  t = await testTemporal();
  control = await startWorkers(t, ['control']);
  store = openStore(storeUri);
});

after(async () => {
  await control?.stop();
  await t?.client.connection.close();
  await store?.close();
  rmSync(storeDir, { recursive: true, force: true });
});

async function withActivityWorkers<T>(
  env: Record<string, string>,
  perQueue: boolean,
  fn: (w: SupervisedWorker[]) => Promise<T>,
): Promise<T> {
  const workers = perQueue
    ? await Promise.all((['rollout', 'reward', 'learner'] as const).map((q) => superviseWorker([q], { ...t.env, ...env })))
    : [await superviseWorker(['rollout', 'reward', 'learner'], { ...t.env, ...env })];
  try {
    return await fn(workers);
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

/**
 * sha256 of the final weights of the tiny run trained without interruption (workers that never
 * die): what every interrupted run of the same config must end with. Built by the first test that
 * asks, before that test starts its own workers.
 */
const uninterruptedWeights = lazyFixture(() =>
  withActivityWorkers({}, false, async () => {
    const run = await startTrainingRun(t.client, tinyRunConfig(storeUri));
    assert.equal((await run.result()).status, 'completed');
    await assertCommittedRun(store, run.runId, TOTAL);
    return weightsSha(store, run.runId, TOTAL);
  }),
);

test('resume-from after a terminated run ends with the weights of an uninterrupted run', async () => {
  const reference = await uninterruptedWeights();
  await withActivityWorkers({}, false, async () => {
    const b = await startTrainingRun(t.client, tinyRunConfig(storeUri));
    await terminateBefore(t.client, b, 3);
    const committed = await committedSteps(store, b.runId, 'checkpoints');
    assert.equal(committed.at(-1), 3, 'the checkpoint after step 2 is the last one committed');
    const c = await resumeFromRun(t.client, b.runId);
    assert.equal(c.checkpoint, 3, 'resumes from the last committed checkpoint');
    assert.equal((await c.result()).status, 'completed');
    await assertCommittedRun(store, c.runId, TOTAL, c.checkpoint);
    assert.equal(await weightsSha(store, c.runId, TOTAL), reference, "resume-from gives the uninterrupted run's weights");
  });
});

test('SIGKILL of a worker in every stage: every step committed once, weights bitwise identical', async () => {
  const reference = await uninterruptedWeights();
  const onceDir = mkdtempSync(join(tmpdir(), 'crash-once-'));
  const points = ['learner@1', 'rollout@2', 'reward@2', 'advantages@3', 'commit@3', 'commit-mid@4', 'learner@4'];
  await withActivityWorkers({ DURABLE_RL_CRASH_AT: points.join(','), DURABLE_RL_CRASH_ONCE: onceDir }, true, async (workers) => {
    const run = await startTrainingRun(t.client, tinyRunConfig(storeUri));
    const result = await run.result();
    assert.equal(result.status, 'completed');
    const restarts = workers.reduce((n, w) => n + w.restarts, 0);
    assert.equal(restarts, points.length, 'each crash point killed a worker once');
    await assertCommittedRun(store, run.runId, TOTAL);
    assert.equal(await weightsSha(store, run.runId, TOTAL), reference, "weights equal the uninterrupted run's");
  });
  rmSync(onceDir, { recursive: true, force: true });
});

test('Temporal restarted and MinIO down for 30 s mid-run: the run continues and completes', async () => {
  // Private servers, so that stopping them disturbs no other test.
  const stateDir = mkdtempSync(join(tmpdir(), 'private-infra-'));
  // Without the shared servers' DURABLE_RL_* variables, which infra would take for external servers.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^DURABLE_RL_(TEMPORAL|S3)_/.test(k)));
  try {
    const e = await up({ stateDir, quiet: true, env });
    assert.notEqual(e.temporal.address, t.config.address, 'a private Temporal server');
    assert.ok(e.minio.endpoint && !Object.values(t.env).includes(e.minio.endpoint), 'a private MinIO');
    const serverEnv = endpointsEnv(e);
    const client = await connectClient(temporalConfig({ address: e.temporal.address, namespace: e.temporal.namespace }));
    const s3Uri = `s3://${e.minio.bucket}/failures-${Date.now()}`;
    const s3 = openStore(s3Uri, {
      s3: {
        endpoint: e.minio.endpoint,
        accessKeyId: e.minio.accessKeyId,
        secretAccessKey: e.minio.secretAccessKey,
        region: e.minio.region,
      },
    });
    const workers = await superviseWorker(['control', 'rollout', 'reward', 'learner'], serverEnv);
    try {
      // Enough steps that the run is still going through both outages (both asserted below).
      const config = tinyRunConfig(s3Uri, {
        phases: [
          { kind: 'sft', steps: 3, batchSize: 16 },
          { kind: 'rl', steps: 30, promptsPerStep: 8, groupSize: 4 },
        ],
      });
      const steps = totalSteps(config);
      const run = await startTrainingRun(client, config);
      await waitFor('step 1 committed', async () => ((await committedSteps(s3, run.runId)).includes(1) ? true : undefined));
      await stopTemporal({ stateDir, env });
      assert.ok((await committedSteps(s3, run.runId)).length < steps, 'the run was still in flight when the server went down');
      await new Promise((r) => setTimeout(r, 3000));
      await startTemporal({ stateDir, quiet: true, env });

      // Hold the run between steps while MinIO goes down, so the outage surely hits the steps
      // after it (a tiny run would otherwise race past a slow server shutdown).
      await pauseRun(client, run.runId);
      await waitFor('paused', async () => ((await runProgress(client, run.runId))?.status === 'paused' ? true : undefined));
      assert.ok((await committedSteps(s3, run.runId)).length < steps, 'steps are left for the outage');
      await stopMinio({ stateDir, env });
      await resumeRun(client, run.runId);
      await new Promise((r) => setTimeout(r, 30_000));
      await startMinio({ stateDir, quiet: true, env });
      const minioBack = Date.now();

      const result = await waitFor(
        'the result',
        async () => (await client.workflow.getHandle(run.runId).result()) as { status: string; steps: number },
        300_000,
      );
      assert.equal(result.status, 'completed');
      // The run waited out the outage (its S3 calls retried with backoff, then the activity
      // attempts, whichever the outage outlasted) and finished only after MinIO came back.
      const closed = (await client.workflow.getHandle(run.runId).describe()).closeTime;
      assert.ok(
        closed && closed.getTime() > minioBack,
        `the run finished after MinIO was back (closed ${closed?.toISOString()}, MinIO back ${new Date(minioBack).toISOString()})`,
      );
      await assertCommittedRun(s3, run.runId, steps);
    } finally {
      await workers.stop();
      await client.connection.close();
      await s3.close();
    }
  } finally {
    await down({ stateDir, purge: true, env }).catch(() => undefined);
    rmSync(stateDir, { recursive: true, force: true });
  }
});
