/**
 * An elastic rollout fleet (issue 14 §6), on the real dev server: rollout workers are separate
 * processes (`durable-rl worker --queues rollout`, one shard at a time each) that join and leave
 * while a run trains; each step has 4 rollout shards, more than the workers that poll at any
 * time. The run starts with one rollout worker, two more join, and one of them is drained with
 * SIGTERM while it is running a shard: it stops polling, finishes that shard and exits 0. The run
 * completes with every step committed once and the final weights bitwise equal to those of the
 * same run on a fixed set of workers.
 *
 * And the other way to leave: a worker whose grace period (1 s) is shorter than its shard hands
 * the shard back — the SDK cancels the attempt at the end of the grace, the worker reports it
 * failed and exits 0, and the server gives the shard to another worker at once (no heartbeat
 * timeout, and no StageBlocked although the call is past its retry window: the run is never
 * blocked).
 *
 * The drained worker waits 4 s in each shard (DURABLE_RL_SLOW_AT, activities/run/faults.ts), so
 * the test can catch it mid-shard however fast the machine is. The joins land while the run is
 * held between steps (pause, then resume once the new workers poll), for the same reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { committedSteps } from '../../../activities/store/manifest.js';
import { pauseRun, resumeRun, runProgress, startTrainingRun } from '../../../workers/train-client.js';
import { planStep, totalSteps } from '../../../workflows/run-plan.js';
import { lazyFixture } from '../../support/fixture.js';
import { activityCalls } from '../../support/history.js';
import { killHard, spawnWorkerProcess, startWorkers } from '../../support/temporal.js';
import { assertCommittedRun, tinyRunConfig, trainingServers, waitFor, weightsSha } from '../../support/training.js';

const storeDir = mkdtempSync(join(tmpdir(), 'elastic-fleet-'));
const storeUri = pathToFileURL(storeDir).href;
const servers = trainingServers(storeUri, [storeDir]);

/** 1 sft step, then 6 rl steps of 8 prompts in 4 shards of 2. */
const config = tinyRunConfig(storeUri, {
  phases: [
    { kind: 'sft', steps: 1, batchSize: 16, lr: 3e-3 },
    { kind: 'rl', steps: 6, promptsPerStep: 8, groupSize: 4, lr: 1e-3 },
  ],
  rollout: { promptsPerShard: 2, maxConcurrentShards: 4 },
});
const TOTAL = totalSteps(config);
const SHARDS = planStep(config, 1).shards.length;

/** A rollout worker process and how it ended. */
function rolloutWorker(env: Record<string, string>) {
  const { child, ready } = spawnWorkerProcess(['rollout'], env);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  return { child, ready, exited, identity: `pid-${child.pid}@rollout` };
}

/** sha256 of the final weights of the same run on in-process workers that never change. */
const fixedFleetWeights = lazyFixture(async () => {
  const { t, store } = servers;
  const fixed = await startWorkers(t, ['rollout', 'reward', 'learner']);
  try {
    const run = await startTrainingRun(t.client, config);
    assert.equal((await run.result()).status, 'completed');
    return await weightsSha(store, run.runId, TOTAL);
  } finally {
    await fixed.stop();
  }
});

test('rollout workers join and leave mid-run (1, then 3, then one drained with SIGTERM mid-shard): every step committed once, final weights bitwise equal', async () => {
  const { t, store } = servers;
  assert.equal(SHARDS, 4);

  const reference = await fixedFleetWeights();
  const others = await startWorkers(t, ['reward', 'learner']);
  const children: ChildProcess[] = [];
  try {
    const a = rolloutWorker(t.env);
    children.push(a.child);
    await a.ready;
    const run = await startTrainingRun(t.client, config);
    const handle = t.client.workflow.getHandle(run.runId);

    // One worker for 4 shards a step; hold the run between steps while two more start.
    await pauseRun(t.client, run.runId, 2); // after the first rl step (1)
    await waitFor('paused', async () => ((await runProgress(t.client, run.runId))?.status === 'paused' ? true : undefined));
    const joinedAt = Date.now();
    const b = rolloutWorker({ ...t.env, DURABLE_RL_SLOW_AT: 'rollout:4000' });
    const c = rolloutWorker(t.env);
    children.push(b.child, c.child);
    await Promise.all([b.ready, c.ready]);
    const stepsBeforeJoin = (await committedSteps(store, run.runId)).length;
    await resumeRun(t.client, run.runId);

    // Drain b while it runs a shard.
    const inFlight = await waitFor(
      `${b.identity} running a rollout shard`,
      async () => {
        const pending = (await handle.describe()).raw.pendingActivities ?? [];
        return pending.find(
          (p) =>
            p.activityType?.name === 'rolloutShard' && p.lastWorkerIdentity === b.identity && p.lastStartedTime && Number(p.state) === 2,
        );
      },
      120_000,
    );
    b.child.kill('SIGTERM');
    const bExit = await b.exited;
    assert.deepEqual([bExit.code, bExit.signal], [0, null], 'the drained worker exits cleanly');
    const stepsAtDrain = (await committedSteps(store, run.runId)).length;

    const result = await run.result();
    assert.equal(result.status, 'completed');
    await assertCommittedRun(store, run.runId, TOTAL);
    assert.equal(await weightsSha(store, run.runId, TOTAL), reference, "final weights equal the fixed fleet's");

    const rollouts = activityCalls((await handle.fetchHistory()).events ?? []).filter((x) => x.type === 'rolloutShard');
    const ranBy = (w: { identity: string }) => rollouts.filter((x) => x.outcome === 'completed' && x.identity === w.identity);
    // Before the joins, one worker ran every shard of each rl step.
    const early = rollouts.filter((x) => x.scheduledAt < joinedAt);
    assert.ok(early.length >= SHARDS, `at least one whole step before the joins (${early.length} shards)`);
    assert.ok(
      early.every((x) => x.identity === a.identity),
      'every shard before the joins ran on the first worker',
    );
    // The drained worker finished the shard it held, on that attempt, and left nothing behind.
    const held = rollouts.find((x) => x.activityId === inFlight.activityId)!;
    assert.deepEqual(
      [held.outcome, held.identity, held.attempt],
      ['completed', b.identity, Number(inFlight.attempt)],
      'the in-flight shard completed in the drained worker',
    );
    assert.ok((held.closedAt ?? 0) <= bExit.at + 1000, 'before it exited');
    assert.ok(
      rollouts.filter((x) => x.identity === b.identity).every((x) => x.outcome === 'completed'),
      'no attempt of the drained worker failed or timed out',
    );
    // Every worker ran shards; after the drain, the other two carried the run to the end.
    for (const w of [a, b, c]) assert.ok(ranBy(w).length > 0, `${w.identity} ran rollout shards`);
    const late = rollouts.filter((x) => x.scheduledAt > bExit.at);
    assert.ok(stepsAtDrain < TOTAL && late.length > 0, `shards after the drain (${late.length}; ${stepsAtDrain} steps committed at it)`);
    assert.ok(
      late.every((x) => x.identity === a.identity || x.identity === c.identity),
      'after the drain only the remaining workers ran shards',
    );
    process.stdout.write(
      `# elastic fleet: ${rollouts.length} rollout shards; first worker ${ranBy(a).length}, joined ${ranBy(b).length} (drained) and ${ranBy(c).length}; ${stepsBeforeJoin} steps before the joins, ${stepsAtDrain} at the drain of ${TOTAL}\n`,
    );
  } finally {
    await Promise.all(children.map(killHard));
    await others.stop();
  }
});

test('a rollout worker SIGTERMed with a grace shorter than its shard hands the shard back: it exits 0 after the grace, reporting the attempt failed (no heartbeat timeout), and another worker runs the shard; weights bitwise equal', async () => {
  const { t, store } = servers;
  const reference = await fixedFleetWeights();
  const others = await startWorkers(t, ['reward', 'learner']);
  const children: ChildProcess[] = [];
  try {
    const a = rolloutWorker(t.env);
    // b would take a minute per shard, and gets 1 s to finish when told to stop
    const b = rolloutWorker({ ...t.env, DURABLE_RL_SLOW_AT: 'rollout:60000', DURABLE_RL_SHUTDOWN_GRACE_SECONDS: '1' });
    children.push(a.child, b.child);
    await Promise.all([a.ready, b.ready]);
    // A retry window (3 s) shorter than b's shard: the cancelled attempt must not give up as StageBlocked.
    const run = await startTrainingRun(t.client, { ...config, workflow: { ...config.workflow, blockedAfterMinutes: 0.05 } });
    const handle = t.client.workflow.getHandle(run.runId);
    const inFlight = await waitFor(`${b.identity} running a rollout shard`, async () =>
      ((await handle.describe()).raw.pendingActivities ?? []).find(
        (p) => p.activityType?.name === 'rolloutShard' && p.lastWorkerIdentity === b.identity && p.lastStartedTime && Number(p.state) === 2,
      ),
    );
    // past the call's retry window: a cancelled attempt that turned into StageBlocked would block the run now
    await new Promise((r) => setTimeout(r, 4000));
    b.child.kill('SIGTERM');
    const bExit = await b.exited;
    assert.deepEqual([bExit.code, bExit.signal], [0, null], 'the worker exits cleanly after its grace');
    // Its attempt was reported failed (a cancellation at shutdown), so the server retries the call at once.
    const retried = await waitFor('the handed-back shard pending again or done', async () => {
      const p = ((await handle.describe()).raw.pendingActivities ?? []).find((x) => x.activityId === inFlight.activityId);
      if (!p) return { failure: undefined };
      return Number(p.attempt) > Number(inFlight.attempt) ? { failure: p.lastFailure ?? undefined } : undefined;
    });
    assert.ok(retried.failure, 'the failed attempt is seen before the retry completes (the retry waits 1 s of backoff)');
    assert.match(
      retried.failure.message ?? '',
      /shutting down/,
      `reported by the worker, not a heartbeat timeout: ${JSON.stringify(retried.failure)}`,
    );

    const result = await run.result();
    assert.equal(result.status, 'completed');
    await assertCommittedRun(store, run.runId, TOTAL);
    assert.equal(await weightsSha(store, run.runId, TOTAL), reference, "final weights equal the fixed fleet's");
    const calls = activityCalls((await handle.fetchHistory()).events ?? []);
    const held = calls.find((x) => x.activityId === inFlight.activityId)!;
    assert.deepEqual(
      calls.filter((x) => x.outcome !== 'completed'),
      [],
      'the call was handed back, not failed: no call gave up (the run was never blocked)',
    );
    assert.equal(held.identity, a.identity, 'the other worker ran the handed-back shard');
    assert.ok(held.attempt > Number(inFlight.attempt), `on a later attempt (${held.attempt})`);
    process.stdout.write(
      `# hand-back: shard ${inFlight.activityId} attempt ${held.attempt} on the remaining worker; failure reported: ${retried.failure?.message ?? '(already done)'}\n`,
    );
  } finally {
    await Promise.all(children.map(killHard));
    await others.stop();
  }
});
