/**
 * Shards queued behind a busy rollout worker are not a blocked run (workflows/queue-watch.ts,
 * patch `queued-not-blocked`), on real servers: one rollout worker that runs one shard at a time,
 * four shards of 30 s each (DURABLE_RL_SLOW_AT), a rollout schedule-to-close of 66 s (start-to-close
 * 1 min + blockedAfterMinutes 0.1). The third shard starts at 60 s and its window closes while it
 * runs, the fourth is not taken at all: both calls time out waiting, with no failed attempt. The
 * queue watch had found the rollout queue polled (the run's own shard running on it), so both are
 * scheduled again, the run never shows `blocked`, and it completes with every step committed; its
 * history replays (with DURABLE_RL_RECORD_FIXTURES=1 it becomes training-run-v4-queued-not-blocked).
 * Needs servers no other process's rollout workers poll (DURABLE_RL_STATE_DIR).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openStore } from '../../../activities/store/open.js';
import { startTrainingRun } from '../../../workers/train-client.js';
import { Worker } from '@temporalio/worker';
import { bundleWorkflows, createWorkers, workflowsPath } from '../../../workers/worker.js';
import { QUEUED_PATCH } from '../../../workflows/training-run.js';
import { totalSteps } from '../../../workflows/run-plan.js';
import { STATUS } from '../../../workflows/search-attributes.js';
import { activityCalls, markerTexts, recordFixture } from '../../support/history.js';
import { startWorkers, testTemporal } from '../../support/temporal.js';
import { assertCommittedRun, tinyRunConfig } from '../../support/training.js';

test('four 30 s shards for one single-slot rollout worker: the calls whose 66 s schedule-to-close ran out in the queue are scheduled again and the run never shows blocked', async () => {
  process.env.DURABLE_RL_SLOW_AT = 'rollout:30000'; // read by the in-process rollout worker's shards
  const t = await testTemporal();
  const others = await startWorkers(t, ['control', 'reward', 'learner']);
  const rollout = await createWorkers({
    temporal: t.config,
    queues: ['rollout'],
    maxConcurrentActivities: { rollout: 1 },
    workflowBundle: await bundleWorkflows(),
    shutdownGraceTimeMs: 1000,
  });
  const rolloutRunning = rollout.run();
  const storeDir = mkdtempSync(join(tmpdir(), 'queued-'));
  const store = openStore(pathToFileURL(storeDir).href);
  try {
    const config = tinyRunConfig(pathToFileURL(storeDir).href, {
      phases: [{ kind: 'rl', steps: 1, promptsPerStep: 16, groupSize: 2, lr: 1e-3 }],
      rollout: { promptsPerShard: 4, maxConcurrentShards: 4 },
      eval: { prompts: 4, passK: 0 },
      workflow: { heartbeatTimeoutSeconds: 5, stages: { rollout: { startToCloseMinutes: 1, blockedAfterMinutes: 0.1 } } },
    });
    const run = await startTrainingRun(t.client, config);
    const result = await run.result();
    assert.equal(result.status, 'completed');
    await assertCommittedRun(store, run.runId, totalSteps(config));

    const history = await run.handle.fetchHistory();
    const events = history.events ?? [];
    const shards = activityCalls(events).filter((c) => c.type === 'rolloutShard');
    const timedOut = shards.filter((c) => c.outcome === 'timed-out');
    assert.ok(timedOut.length >= 1, `a shard call timed out waiting: ${JSON.stringify(shards)}`);
    for (const c of timedOut) assert.match(c.failureType ?? '', /SCHEDULE_TO_(START|CLOSE)|^[23]$/, 'by its schedule-to-close window');
    assert.deepEqual(
      shards
        .filter((c) => c.outcome === 'completed')
        .map((c) => c.summary)
        .sort(),
      [1, 2, 3, 4].map((k) => `rollout · step 0 · shard ${k}/4 · 4 prompts × 2`),
      'each shard completed once, the timed-out ones on a call of their own',
    );
    // every DurableRlStatus the run ever set
    const statuses = events.flatMap((e) => {
      const field = e.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields?.[STATUS.name];
      return field?.data ? [JSON.parse(Buffer.from(field.data).toString('utf8')) as unknown] : [];
    });
    assert.ok(statuses.includes('running'), `statuses seen: ${JSON.stringify(statuses)}`);
    assert.ok(!statuses.includes('blocked'), `statuses seen: ${JSON.stringify(statuses)}`);
    assert.ok(
      markerTexts(events).some((m) => m.includes(`"${QUEUED_PATCH}"`)),
      'the queued-not-blocked patch marker',
    );
    // the path replays against the current code (and is kept as a replay fixture)
    await Worker.runReplayHistory({ workflowsPath }, history, run.runId);
    await recordFixture(run.handle, 'training-run-v4-queued-not-blocked');
  } finally {
    delete process.env.DURABLE_RL_SLOW_AT;
    rollout.shutdown();
    await rolloutRunning;
    await others.stop();
    await t.client.connection.close();
    await store.close();
    rmSync(storeDir, { recursive: true, force: true });
  }
});
