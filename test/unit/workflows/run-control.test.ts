/**
 * The control of a training run as pure logic (workflows/run-control.ts): which pause / resume /
 * stop / retry are valid in which state and at which step they take effect; what a failed
 * activity call means (retrying or waiting for the user); the blocked lines of the current details.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ActivityFailure, ApplicationFailure, CancelledFailure, RetryState, TimeoutFailure, TimeoutType } from '@temporalio/common';
import {
  BLOCKED_FAILURE_TYPE,
  blockedLines,
  classifyFailure,
  timedOutWaiting,
  ControlRefused,
  controlOutcome,
  type BlockedCall,
  type ControlAction,
  type ControlState,
} from '../../../workflows/run-control.js';
import { BLOCKED_FAILURE_TYPE as ACTIVITY_SIDE_TYPE } from '../../../activities/run/stage.js';

const state = (s: Partial<ControlState> = {}): ControlState => ({
  nextStep: 3,
  totalSteps: 10,
  inStep: true,
  paused: false,
  pauseRequested: false,
  stopRequested: false,
  blocked: [],
  finished: false,
  ...s,
});
const refused = (s: ControlState, a: ControlAction, reason: RegExp) =>
  assert.throws(
    () => controlOutcome(s, a),
    (e: unknown) => e instanceof ControlRefused && e.message.startsWith(`cannot ${a}: `) && reason.test(e.message),
  );

test('pause while step 3 runs takes effect at step 4: step 3 is committed first', () => {
  const r = controlOutcome(state(), 'pause');
  assert.equal(r.step, 4);
  assert.match(r.message, /pauses before step 4: step 3 finishes/);
});

test('pause between steps (after step 2, evaluating) takes effect at step 3', () => {
  assert.equal(controlOutcome(state({ inStep: false }), 'pause').step, 3);
});

test('pause is refused when paused, already requested or a stop is pending, each with its reason', () => {
  refused(state({ paused: true, inStep: false }), 'pause', /already paused before step 3/);
  refused(state({ pauseRequested: true }), 'pause', /already requested: the run pauses before step 4/);
  refused(state({ stopRequested: true }), 'pause', /a stop is pending/);
});

test('pause --step 6 while step 3 runs takes effect at step 6 (steps 4..5 run first); --step 4 is the plain pause', () => {
  const r = controlOutcome(state(), 'pause', 6);
  assert.deepEqual([r.step, r.message], [6, 'pauses before step 6: steps 4..5 run first']);
  assert.deepEqual(controlOutcome(state(), 'pause', 4), controlOutcome(state(), 'pause'));
  assert.equal(controlOutcome(state({ inStep: false }), 'pause', 9).step, 9);
});

test('pause --step is refused for a running or committed step, past the last step, not whole, and on another action', () => {
  const r = (step: number, reason: RegExp, s = state()) =>
    assert.throws(
      () => controlOutcome(s, 'pause', step),
      (e: unknown) => e instanceof ControlRefused && reason.test(e.message),
    );
  r(3, /step 3 is running: the earliest step a pause can precede is 4/);
  r(2, /step 2 is committed: the earliest step a pause can precede is 4/);
  r(2, /step 2 is committed: the earliest step a pause can precede is 3/, state({ inStep: false }));
  r(10, /the run's last step is 9: it ends before step 10/);
  r(5.5, /whole number, got 5.5/);
  assert.throws(() => controlOutcome(state({ paused: true, inStep: false }), 'resume', 5), /only pause takes a step/);
});

test('a pause requested before step 6 refuses a second pause naming step 6; resume withdraws it', () => {
  refused(state({ pauseRequested: true, pauseAt: 6 }), 'pause', /already requested: the run pauses before step 6/);
  const r = controlOutcome(state({ pauseRequested: true, pauseAt: 6 }), 'resume');
  assert.equal(r.message, 'pause request withdrawn: step 6 follows without a pause');
});

test('resume of a run paused before step 3 goes on with step 3; of a requested pause withdraws it (step 4 follows)', () => {
  const paused = controlOutcome(state({ paused: true, inStep: false }), 'resume');
  assert.deepEqual([paused.step, paused.message], [3, 'goes on with step 3']);
  const requested = controlOutcome(state({ pauseRequested: true }), 'resume');
  assert.equal(requested.step, 4);
  assert.match(requested.message, /withdrawn/);
});

test('resume of a running run is refused: not paused', () => {
  refused(state(), 'resume', /not paused/);
});

test('stop: while step 3 runs, at step 4 (3 is committed); paused before step 3, at 3 at once; blocked in step 3, at 3 at once', () => {
  assert.equal(controlOutcome(state(), 'stop').step, 4);
  const paused = controlOutcome(state({ paused: true, inStep: false }), 'stop');
  assert.deepEqual([paused.step, paused.message], [3, 'ends now with 3 steps committed']);
  const blocked = controlOutcome(state({ blocked: [{ stage: 'learner', kind: 'retrying' }] }), 'stop');
  assert.equal(blocked.step, 3);
  assert.match(blocked.message, /ends now with 3 steps committed: the blocked step 3 is not finished \(it is blocked in learner\)/);
});

test('a second stop is refused: already requested', () => {
  refused(state({ stopRequested: true }), 'stop', /already requested/);
});

test('retry of a run blocked in reward on an error retrying cannot fix calls it again at step 3', () => {
  const r = controlOutcome(state({ blocked: [{ stage: 'reward', kind: 'needs-user' }] }), 'retry');
  assert.equal(r.step, 3);
  assert.match(r.message, /calls the blocked reward again now \(step 3\)/);
});

test('retry is refused when not blocked, and when only blocked on an outage (it retries by itself)', () => {
  refused(state(), 'retry', /not blocked/);
  refused(state({ blocked: [{ stage: 'commit', kind: 'retrying' }] }), 'retry', /commit is retrying by itself/);
});

test('every action on a finished run is refused: the run has ended', () => {
  for (const a of ['pause', 'resume', 'stop', 'retry'] as const) refused(state({ finished: true }), a, /has ended/);
});

const activityFailure = (cause: Error) =>
  new ActivityFailure('activity failed', 'learnerUpdate', '7', RetryState.NON_RETRYABLE_FAILURE, 'worker-1', cause);

test('the workflow and the activity side spell the blocked failure type alike (StageBlocked)', () => {
  assert.equal(BLOCKED_FAILURE_TYPE, 'StageBlocked');
  assert.equal(ACTIVITY_SIDE_TYPE, BLOCKED_FAILURE_TYPE);
});

test('a call that gave up after its retry window (StageBlocked) is retrying, with the last error', () => {
  const f = classifyFailure(
    activityFailure(ApplicationFailure.create({ type: 'StageBlocked', message: 'commitStep: connect ECONNREFUSED', nonRetryable: true })),
  );
  assert.deepEqual(f, { kind: 'retrying', type: 'StageBlocked', error: 'commitStep: connect ECONNREFUSED' });
});

test('a non-retryable error (a reward module that fails to import) waits for the user, with its type and message', () => {
  const f = classifyFailure(activityFailure(ApplicationFailure.nonRetryable('reward.functions.0: cannot import ./r.ts', 'ConfigError')));
  assert.deepEqual(f, { kind: 'needs-user', type: 'ConfigError', error: 'reward.functions.0: cannot import ./r.ts' });
});

test('a retryable error whose attempts ran out (a run started with limited attempts) is retrying', () => {
  assert.equal(classifyFailure(activityFailure(ApplicationFailure.retryable('S3 503', 'StoreError')))?.kind, 'retrying');
});

test('a schedule-to-close timeout (no worker took the call, or every attempt timed out) is retrying and says so, with the last attempt', () => {
  const timeout = new TimeoutFailure('timed out', undefined, TimeoutType.SCHEDULE_TO_CLOSE);
  Object.assign(timeout, { cause: new TimeoutFailure('heartbeat', undefined, TimeoutType.HEARTBEAT) });
  const f = classifyFailure(activityFailure(timeout));
  assert.equal(f?.kind, 'retrying');
  assert.equal(f?.type, 'schedule-to-close timeout');
  assert.match(f!.error, /no worker took it, or every attempt timed out; last attempt: heartbeat/);
});

test("a schedule-to-start timeout (the server's report of a call no worker started within its schedule-to-close) is retrying and asks whether a worker polls the queue", () => {
  const f = classifyFailure(activityFailure(new TimeoutFailure('timed out', undefined, TimeoutType.SCHEDULE_TO_START)));
  assert.equal(f?.kind, 'retrying');
  assert.equal(f?.type, 'schedule-to-start timeout');
  assert.match(f!.error, /no worker took the call .* is a worker polling the stage's queue\?/);
});

test('timed out waiting: a schedule-to-start or schedule-to-close timeout with no failed attempt; not one whose last attempt timed out, nor any other failure', () => {
  assert.equal(timedOutWaiting(activityFailure(new TimeoutFailure('timed out', undefined, TimeoutType.SCHEDULE_TO_START))), true);
  assert.equal(timedOutWaiting(activityFailure(new TimeoutFailure('timed out', undefined, TimeoutType.SCHEDULE_TO_CLOSE))), true);
  const crashing = new TimeoutFailure('timed out', undefined, TimeoutType.SCHEDULE_TO_CLOSE);
  Object.assign(crashing, { cause: new TimeoutFailure('heartbeat', undefined, TimeoutType.HEARTBEAT) });
  assert.equal(timedOutWaiting(activityFailure(crashing)), false, 'a worker crashing every attempt');
  assert.equal(timedOutWaiting(activityFailure(new TimeoutFailure('timed out', undefined, TimeoutType.START_TO_CLOSE))), false);
  assert.equal(timedOutWaiting(activityFailure(ApplicationFailure.retryable('S3 503', 'StoreError'))), false);
  assert.equal(timedOutWaiting(new Error('a bug in workflow code')), false);
});

test('a cancellation, or an error that is not an activity failure, is not classified (the workflow rethrows it)', () => {
  assert.equal(classifyFailure(activityFailure(new CancelledFailure('cancelled'))), undefined);
  assert.equal(classifyFailure(new Error('a bug in workflow code')), undefined);
});

test('a long message is cut to 400 characters on one line', () => {
  const f = classifyFailure(activityFailure(ApplicationFailure.nonRetryable(`bad\n${'x'.repeat(1000)}`, 'BadInput')));
  assert.equal(f!.error.length, 400);
  assert.ok(!f!.error.includes('\n'));
  assert.ok(f!.error.endsWith('…'));
});

test('blocked lines: none when not blocked; one per call with stage, summary, minutes waited, calls, error and what to do', () => {
  assert.deepEqual(blockedLines([], 0), []);
  const calls: BlockedCall[] = [
    { stage: 'commit', summary: 'commit · step 3', kind: 'retrying', type: 'StageBlocked', error: 'ECONNREFUSED', since: 0, calls: 2 },
    {
      stage: 'reward',
      summary: 'reward · step 3 · shard 1/2',
      kind: 'needs-user',
      type: 'RewardError',
      error: 'boom',
      since: 100_000,
      calls: 1,
    },
  ];
  assert.deepEqual(blockedLines(calls, 150_000), [
    '',
    '### Blocked',
    '- **commit** (commit · step 3) for 2.5 min, 2 calls gave up: `StageBlocked` ECONNREFUSED — retrying; the run goes on by itself when the cause clears',
    '- **reward** (reward · step 3 · shard 1/2) for 50 s, 1 call gave up: `RewardError` boom — retrying cannot fix this: fix the cause, then `durable-rl retry`, or `durable-rl stop`',
    '',
  ]);
});
