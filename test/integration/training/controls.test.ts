/**
 * The controls of a training run as Temporal Updates, on the real dev server with in-process
 * workers: pause / resume / stop answer the step at which they take effect (and the run does what
 * they said), invalid transitions are refused with the reason, the signals of runs started before
 * the Updates still work, and an error retrying cannot fix blocks the run (never fails it) until
 * `retry` or `stop`. With DURABLE_RL_RECORD_FIXTURES=1 the histories become replay fixtures
 * (test/fixtures/histories/training-run-v3-*.json, replayed by test/unit/replay.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openStore } from '../../../activities/store/open.js';
import { committedSteps } from '../../../activities/store/manifest.js';
import { pauseRun, resumeFromRun, resumeRun, retryRun, runProgress, startTrainingRun, stopRun } from '../../../workers/train-client.js';
import { pauseSignal, resumeSignal, stopSignal } from '../../../workflows/training-run.js';
import { currentDetails, runStatusAttribute, temporalWithWorkers } from '../../support/temporal.js';
import { recordFixture } from '../../support/history.js';
import { assertCommittedRun, tinyRunConfig, waitFor } from '../../support/training.js';

const temporal = temporalWithWorkers(['control', 'rollout', 'reward', 'learner']);
const storeUri = pathToFileURL(mkdtempSync(join(tmpdir(), 'training-controls-'))).href;

const statusOf = runStatusAttribute;
const detailsOf = currentDetails;

test('pause, resume and stop as Updates answer the step they take effect at and the run does so; invalid ones are refused with the reason', async () => {
  const { client } = temporal();
  // rl steps of 4 shards (8 prompts, 2 per shard) and an evaluation every 2 steps: the replay fixture covers both
  const config = tinyRunConfig(storeUri, {
    phases: [
      { kind: 'sft', steps: 1, batchSize: 16, lr: 3e-3 },
      { kind: 'rl', steps: 200, promptsPerStep: 8, groupSize: 4, lr: 1e-3 },
    ],
    rollout: { promptsPerShard: 2, maxConcurrentShards: 2 },
    eval: { every: 2, prompts: 8, passK: 0 },
  });
  const run = await startTrainingRun(client, config);
  const store = openStore(storeUri);
  try {
    await waitFor('step 2 committed', async () => ((await committedSteps(store, run.runId)).includes(2) ? true : undefined));
    await assert.rejects(resumeRun(client, run.runId), /cannot resume: the run is not paused/);
    await assert.rejects(retryRun(client, run.runId), /cannot retry: the run is not blocked/);

    const pause = await pauseRun(client, run.runId);
    assert.equal(pause.action, 'pause');
    const at = pause.step;
    assert.ok(at !== null, 'an Update answers the step');
    assert.match(pause.message, new RegExp(`^pauses before step ${pause.step}`));
    await waitFor('paused', async () => ((await runProgress(client, run.runId))?.status === 'paused' ? true : undefined));
    assert.equal(
      (await committedSteps(store, run.runId)).length,
      pause.step,
      'paused with exactly the steps before the answered one committed',
    );
    assert.equal(await statusOf(client, run.runId), 'paused');
    await assert.rejects(pauseRun(client, run.runId), new RegExp(`cannot pause: already paused before step ${pause.step}`));

    const resume = await resumeRun(client, run.runId);
    assert.deepEqual([resume.step, resume.message], [pause.step, `goes on with step ${pause.step}`]);
    await waitFor('a step after resume', async () => ((await committedSteps(store, run.runId)).length > at ? true : undefined));

    const stop = await stopRun(client, run.runId, 'test');
    assert.equal(stop.action, 'stop');
    // a second stop is refused: by the Update's validator while the run still runs, or, when the
    // first stop already ended it (a stop between steps takes effect at once), by the client as the
    // run is no longer running; the validator's reason is held exactly by run-control.test.ts
    await assert.rejects(
      stopRun(client, run.runId, 'again'),
      new RegExp(`cannot stop: a stop is already requested|cannot stop "${run.runId}": it is completed, not running`),
    );
    const result = await run.result();
    assert.equal(result.status, 'stopped');
    assert.equal(result.steps, stop.step, 'the run ended with the answered number of steps committed');
    await assertCommittedRun(store, run.runId, result.steps);
    assert.equal(await statusOf(client, run.runId), 'stopped');
    assert.ok(
      result.evals.some((e) => e.policyVersion === 2),
      'the every-2-steps evaluation ran',
    );
    await recordFixture(run.handle, 'training-run-v3-controls');
  } finally {
    await store.close();
  }
});

test('the signals pause, resume and stop (of runs started before the Updates) still hold, continue and end a run', async () => {
  const { client } = temporal();
  const run = await startTrainingRun(client, tinyRunConfig(storeUri, { phases: [{ kind: 'sft', steps: 200, batchSize: 8 }] }));
  const store = openStore(storeUri);
  try {
    await waitFor('step 1 committed', async () => ((await committedSteps(store, run.runId)).includes(1) ? true : undefined));
    await run.handle.signal(pauseSignal);
    await waitFor('paused', async () => ((await runProgress(client, run.runId))?.status === 'paused' ? true : undefined));
    const held = (await committedSteps(store, run.runId)).length;
    await run.handle.signal(resumeSignal);
    await waitFor('a step after resume', async () => ((await committedSteps(store, run.runId)).length > held ? true : undefined));
    await run.handle.signal(stopSignal, 'test');
    const result = await run.result();
    assert.equal(result.status, 'stopped');
    assert.ok(result.steps > held && result.steps < 200);
    await assertCommittedRun(store, run.runId, result.steps);
  } finally {
    await store.close();
  }
});

test('a reward that fails every sample under onError fail blocks the run (not failed) with the stage and error; retry calls it again; stop ends it as stopped', async () => {
  const { client } = temporal();
  const config = tinyRunConfig(storeUri, {
    phases: [
      { kind: 'sft', steps: 1, batchSize: 16, lr: 3e-3 },
      { kind: 'rl', steps: 3, promptsPerStep: 8, groupSize: 4, lr: 1e-3 },
    ],
    reward: { errorPolicy: { onError: 'fail' }, faults: { rate: 1, kind: 'throw', seed: 3 } },
  });
  const run = await startTrainingRun(client, config);
  const store = openStore(storeUri);
  try {
    const blocked = await waitFor('blocked', async () => {
      const p = await runProgress(client, run.runId);
      return p?.status === 'blocked' && (p.blocked?.length ?? 0) > 0 ? p : undefined;
    });
    assert.equal(blocked.step, 1, 'blocked in the first rl step (step 0, sft, committed)');
    const b = blocked.blocked![0]!;
    assert.equal(b.stage, 'reward');
    assert.equal(b.kind, 'needs-user');
    assert.equal(b.type, 'RewardError');
    assert.match(b.error, /injected reward fault/);
    assert.equal(await statusOf(client, run.runId), 'blocked');
    const details = await detailsOf(client, run.runId);
    assert.match(details, /### Blocked/);
    assert.match(details, /\*\*reward\*\* \(reward · step 1 · shard \d\/2 · 16 samples\)/);
    assert.match(details, /durable-rl retry/);
    assert.equal((await client.workflow.getHandle(run.runId).describe()).status.name, 'RUNNING', 'blocked, not failed');

    const calls = b.calls;
    const retry = await retryRun(client, run.runId);
    assert.equal(retry.step, 1);
    assert.match(retry.message, /calls the blocked reward again now \(step 1\)/);
    // the fault is seeded: the retried call fails the same way and the run is blocked again
    await waitFor('the retried call gave up', async () => {
      const p = await runProgress(client, run.runId);
      return (p?.blocked ?? []).some((x) => x.stage === 'reward' && x.calls > calls) ? true : undefined;
    });

    const stop = await stopRun(client, run.runId, 'test');
    assert.equal(stop.step, 1);
    assert.match(stop.message, /ends now with 1 steps committed: the blocked step 1 is not finished/);
    const result = await run.result();
    assert.deepEqual([result.status, result.steps], ['stopped', 1]);
    assert.deepEqual(await committedSteps(store, run.runId), [0]);
    assert.equal(await statusOf(client, run.runId), 'stopped');
    await recordFixture(run.handle, 'training-run-v3-blocked');
  } finally {
    await store.close();
  }
});

test('a run stopped by the stop Update at the answered step is continued by resume-from from that checkpoint to the end (its history is the resume-from replay fixture)', async () => {
  const { client } = temporal();
  const a = await startTrainingRun(client, tinyRunConfig(storeUri));
  const store = openStore(storeUri);
  try {
    // held before step 2 (however fast the machine), then stopped: at once, with steps 0 and 1 committed
    await pauseRun(client, a.runId, 2);
    await waitFor('paused', async () => ((await runProgress(client, a.runId))?.status === 'paused' ? true : undefined));
    const stop = await stopRun(client, a.runId, 'test');
    assert.equal(stop.step, 2);
    const stopped = await a.result();
    assert.deepEqual([stopped.status, stopped.steps], ['stopped', stop.step]);
    const b = await resumeFromRun(client, a.runId);
    assert.equal(b.checkpoint, stop.step, 'resumes from the checkpoint the stop answered');
    const result = await b.result();
    assert.equal(result.status, 'completed');
    await assertCommittedRun(store, b.runId, 5, b.checkpoint);
    await recordFixture(b.handle, 'training-run-v3-resume-from');
  } finally {
    await store.close();
  }
});
