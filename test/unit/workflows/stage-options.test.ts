/**
 * Per-stage activity options (workflows/stage-options.ts) and the activity side of the retry
 * window (activities/run/stage.ts `retryWindowMs`, `blockedFailure`): the two halves of "blocked
 * after blockedAfterMinutes in retry".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { parseRunConfig, STAGE_NAMES } from '../../../activities/run/config.js';
import { blockedFailure, retryWindowMs } from '../../../activities/run/stage.js';
import { ACTIVITY_QUEUES } from '../../../workflows/activity-queues.js';
import {
  BLOCKED_AFTER_DEFAULT,
  RETRY_CAP_DEFAULT,
  STAGE_OF,
  stageActivityOptions,
  stageTimeouts,
} from '../../../workflows/stage-options.js';

test('defaults: every stage 30 min start-to-close, 10 s heartbeat, blocked after 5 min, so schedule-to-close 35 min; backoff from 1 s doubling to 60 s, no attempt limit', () => {
  const w = parseRunConfig({}).workflow;
  const o = stageActivityOptions(w, 'learnerUpdate');
  assert.deepEqual(o, {
    startToCloseTimeout: 30 * 60_000,
    heartbeatTimeout: 10_000,
    scheduleToCloseTimeout: 35 * 60_000,
    retry: { initialInterval: 1000, backoffCoefficient: 2, maximumInterval: 60_000 },
  });
  assert.equal((o.retry as { maximumAttempts?: number }).maximumAttempts, undefined, 'unlimited attempts');
});

test('a stage of its own overrides the defaults for its activities only: rollout 2 min / 5 s / blocked after 0.5 min → schedule-to-close 2.5 min', () => {
  const w = parseRunConfig({
    workflow: { stages: { rollout: { startToCloseMinutes: 2, heartbeatSeconds: 5, blockedAfterMinutes: 0.5 } } },
  }).workflow;
  assert.deepEqual(stageTimeouts(w, 'rollout'), {
    startToCloseMs: 120_000,
    heartbeatMs: 5000,
    blockedAfterMs: 30_000,
    scheduleToCloseMs: 150_000,
    retryCapMs: 60_000,
  });
  assert.equal(stageTimeouts(w, 'reward').startToCloseMs, 30 * 60_000);
  assert.equal(stageTimeouts(w, 'reward').heartbeatMs, 10_000);
});

test("the workflow's fallbacks for version-1 configs equal config.ts's defaults (blockedAfterMinutes 5, retryIntervalCapSeconds 60)", () => {
  const w = parseRunConfig({}).workflow;
  assert.equal(BLOCKED_AFTER_DEFAULT, w.blockedAfterMinutes);
  assert.equal(RETRY_CAP_DEFAULT, w.retryIntervalCapSeconds);
});

test('a version-1 workflow input (no blockedAfterMinutes, stages or cap; heartbeat 3 s) gets the defaults with its own heartbeat', () => {
  const legacy = { continueAsNewEvery: 50, heartbeatTimeoutSeconds: 3, activityTimeoutMinutes: 30, maxAttempts: 30 } as never;
  assert.deepEqual(stageTimeouts(legacy, 'commit'), {
    startToCloseMs: 30 * 60_000,
    heartbeatMs: 3000,
    blockedAfterMs: 5 * 60_000,
    scheduleToCloseMs: 35 * 60_000,
    retryCapMs: 60_000,
  });
});

test('every activity a training run calls has a stage, and every stage of the config has an activity', () => {
  const runActivities = Object.keys(ACTIVITY_QUEUES).filter((n) => !['planAnnotation', 'annotateShard', 'finalizeAnnotation'].includes(n));
  assert.deepEqual(Object.keys(STAGE_OF).sort(), runActivities.sort());
  assert.deepEqual([...new Set(Object.values(STAGE_OF))].sort(), [...STAGE_NAMES].sort());
});

test('the retry window an attempt sees is schedule-to-close minus start-to-close: 35 min − 30 min = 5 min; none without a schedule-to-close', () => {
  assert.equal(retryWindowMs({ scheduleToCloseTimeoutMs: 35 * 60_000, startToCloseTimeoutMs: 30 * 60_000 }), 5 * 60_000);
  assert.equal(retryWindowMs({ scheduleToCloseTimeoutMs: 0, startToCloseTimeoutMs: 30 * 60_000 }), undefined);
  assert.equal(retryWindowMs({ startToCloseTimeoutMs: 30 * 60_000 }), undefined);
});

test('an attempt failing 299 s after the call was scheduled is retried by Temporal; at 300 s (the 5 min window) it gives up as a non-retryable StageBlocked naming the error, 300 s and the attempt', () => {
  const info = { scheduledTimestampMs: 1_000_000, attempt: 9, scheduleToCloseTimeoutMs: 35 * 60_000, startToCloseTimeoutMs: 30 * 60_000 };
  const err = new Error('connect ECONNREFUSED 127.0.0.1:9000');
  assert.equal(blockedFailure('commitStep', err, info, 1_000_000 + 299_000), undefined);
  const f = blockedFailure('commitStep', err, info, 1_000_000 + 300_000);
  assert.ok(f instanceof ApplicationFailure);
  assert.equal(f.type, 'StageBlocked');
  assert.equal(f.nonRetryable, true);
  assert.equal(f.message, 'commitStep: connect ECONNREFUSED 127.0.0.1:9000 (failing for 300 s, attempt 9)');
  assert.equal(f.cause, err);
});
