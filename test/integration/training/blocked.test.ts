/**
 * Blocked, not failed (issue 14 §1), on real servers: an outage longer than a stage's retry window
 * shows the run `blocked` (search attribute, current details with the stage and the error), and
 * the run goes on by itself when the cause clears, committing every step once.
 *
 * - no worker polls the learner queue for a while: initRun's calls time out (schedule-to-close),
 *   the run is blocked in init, and completes once a learner worker starts;
 * - the object store (MinIO, private servers) down for longer than the window: the failing
 *   attempts give up as StageBlocked, the run is blocked with the store error, and completes after
 *   MinIO is back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Client } from '@temporalio/client';
import { down, endpointsEnv, startMinio, stopMinio, up } from '../../../infra/index.js';
import { committedSteps } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';
import { connectClient, temporalConfig } from '../../../workers/temporal.js';
import { pauseRun, resumeRun, runProgress, startTrainingRun } from '../../../workers/train-client.js';
import { totalSteps } from '../../../workflows/run-plan.js';
import { currentDetails, runStatusAttribute, startWorkers, testTemporal } from '../../support/temporal.js';
import { assertCommittedRun, superviseWorker, tinyRunConfig, waitFor } from '../../support/training.js';

const statusOf = runStatusAttribute;
const detailsOf = currentDetails;
/** Whether the run's history holds the blocked-not-failed patch marker (recorded the first time a call gave up). */
const markedBlocked = async (client: Client, runId: string) =>
  (await client.workflow.getHandle(runId).fetchHistory()).events!.some((e) =>
    Object.values(e.markerRecordedEventAttributes?.details ?? {}).some((p) =>
      (p.payloads ?? []).some((x) =>
        Buffer.from(x.data ?? [])
          .toString('utf8')
          .includes('blocked-not-failed'),
      ),
    ),
  );

test('no learner worker for a while: the run is blocked in init (schedule-to-close timeouts), then completes by itself once one starts', async () => {
  const t = await testTemporal();
  const others = await startWorkers(t, ['control', 'rollout', 'reward']);
  let learner: { stop(): Promise<void> } | undefined;
  const storeDir = mkdtempSync(join(tmpdir(), 'blocked-no-worker-'));
  const store = openStore(pathToFileURL(storeDir).href);
  try {
    // init's schedule-to-close: 0.1 + 0.05 min = 9 s
    const config = tinyRunConfig(pathToFileURL(storeDir).href, {
      workflow: { heartbeatTimeoutSeconds: 3, stages: { init: { startToCloseMinutes: 0.1, blockedAfterMinutes: 0.05 } } },
    });
    const run = await startTrainingRun(t.client, config);
    const p = await waitFor(
      'blocked in init',
      async () => {
        const q = await runProgress(t.client, run.runId);
        return q?.status === 'blocked' ? q : undefined;
      },
      60_000,
    );
    const b = p.blocked![0]!;
    // (the server reports a call no worker started within its schedule-to-close as a schedule-to-start timeout)
    assert.deepEqual([b.stage, b.kind, b.type], ['init', 'retrying', 'schedule-to-start timeout']);
    assert.match(b.error, /no worker took the call/);
    assert.ok(await markedBlocked(t.client, run.runId), 'the history records the blocked-not-failed patch');
    assert.equal(await statusOf(t.client, run.runId), 'blocked');
    assert.match(await detailsOf(t.client, run.runId), /\*\*init\*\* \(init · initial weights\).*retrying; the run goes on by itself/);

    learner = await startWorkers(t, ['learner']);
    const result = await run.result();
    assert.equal(result.status, 'completed');
    await assertCommittedRun(store, run.runId, totalSteps(config));
    assert.equal(await statusOf(t.client, run.runId), 'completed');
    assert.doesNotMatch(await detailsOf(t.client, run.runId).catch(() => ''), /### Blocked/);
  } finally {
    await learner?.stop();
    await others.stop();
    await t.client.connection.close();
    await store.close();
    rmSync(storeDir, { recursive: true, force: true });
  }
});

test('MinIO down longer than the retry window: the run shows blocked with the store error and the stage, and completes by itself after MinIO is back', async () => {
  // Private servers, so that stopping MinIO disturbs no other test.
  const stateDir = mkdtempSync(join(tmpdir(), 'blocked-infra-'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^DURABLE_RL_(TEMPORAL|S3)_/.test(k)));
  try {
    const e = await up({ stateDir, quiet: true, env });
    const client = await connectClient(temporalConfig({ address: e.temporal.address, namespace: e.temporal.namespace }));
    const s3Uri = `s3://${e.minio.bucket}/blocked-${Date.now()}`;
    const s3 = openStore(s3Uri, {
      s3: {
        endpoint: e.minio.endpoint,
        accessKeyId: e.minio.accessKeyId,
        secretAccessKey: e.minio.secretAccessKey,
        region: e.minio.region,
      },
    });
    const workers = await superviseWorker(['control', 'rollout', 'reward', 'learner'], endpointsEnv(e));
    try {
      // a 6 s retry window and a 2 s backoff cap: blocked within seconds of the outage, back within seconds of its end
      const config = tinyRunConfig(s3Uri, {
        workflow: { heartbeatTimeoutSeconds: 3, blockedAfterMinutes: 0.1, retryIntervalCapSeconds: 2 },
      });
      const steps = totalSteps(config);
      const run = await startTrainingRun(client, config);
      // hold the run before step 2 while MinIO goes down, so the outage surely hits the steps after it
      await pauseRun(client, run.runId, 2);
      await waitFor('paused', async () => ((await runProgress(client, run.runId))?.status === 'paused' ? true : undefined));
      const before = (await committedSteps(s3, run.runId)).length;
      assert.ok(before < steps, 'steps are left for the outage');
      await stopMinio({ stateDir, env });
      const down0 = Date.now();
      await resumeRun(client, run.runId);

      const p = await waitFor(
        'blocked',
        async () => {
          const q = await runProgress(client, run.runId);
          return q?.status === 'blocked' ? q : undefined;
        },
        120_000,
      );
      const blockedAfter = (Date.now() - down0) / 1000;
      const b = p.blocked![0]!;
      assert.equal(b.kind, 'retrying');
      assert.equal(b.type, 'StageBlocked');
      assert.match(b.error, /failing for \d+ s, attempt \d+/);
      assert.equal(await statusOf(client, run.runId), 'blocked');
      const details = await detailsOf(client, run.runId);
      assert.match(details, /### Blocked/);
      assert.match(details, new RegExp(`\\*\\*${b.stage}\\*\\*`));
      assert.equal((await client.workflow.getHandle(run.runId).describe()).status.name, 'RUNNING', 'blocked, not failed');
      assert.ok(await markedBlocked(client, run.runId), 'the history records the blocked-not-failed patch');

      await new Promise((r) => setTimeout(r, 5000));
      await startMinio({ stateDir, quiet: true, env });
      const back = Date.now();
      const result = (await client.workflow.getHandle(run.runId).result()) as { status: string; steps: number };
      assert.equal(result.status, 'completed');
      await assertCommittedRun(s3, run.runId, steps);
      assert.equal(await statusOf(client, run.runId), 'completed');
      process.stdout.write(
        `# MinIO down ${((back - down0) / 1000).toFixed(0)} s; blocked shown after ${blockedAfter.toFixed(1)} s; run completed ${((Date.now() - back) / 1000).toFixed(1)} s after MinIO was back\n`,
      );
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
