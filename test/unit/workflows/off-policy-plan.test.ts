/**
 * Which checkpoint generates each step's rollouts (workflows/run-plan.ts `policyVersion`): with
 * `rollout.offPolicySteps` k, step n rolls out from max(n − k, first step of its phase, first step
 * of the run) — a function of the config and the run's start, never of which weights are newest.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRunConfig, type RunConfig } from '../../../activities/run/config.js';
import type { StepMetrics } from '../../../activities/run/types.js';
import { offPolicySteps, planStep, policyVersion, totalSteps } from '../../../workflows/run-plan.js';
import { emptyMetrics, offPolicyMetrics } from '../../../workflows/step-metrics.js';

/** sft steps 0-1, rl steps 2-5, rl steps 6-8. */
const withK = (k: number) =>
  parseRunConfig({
    phases: [
      { kind: 'sft', steps: 2, batchSize: 4 },
      { kind: 'rl', steps: 4, promptsPerStep: 4, groupSize: 2 },
      { kind: 'rl', steps: 3, promptsPerStep: 4, groupSize: 2 },
    ],
    rollout: { promptsPerShard: 2, offPolicySteps: k },
  });

const versions = (config: RunConfig, start = 0) =>
  Array.from({ length: totalSteps(config) - start }, (_, i) => policyVersion(config, start + i, start));

test('k = 0 (the default) is on-policy: steps 0..8 roll out from checkpoints 0..8', () => {
  assert.equal(offPolicySteps(parseRunConfig({ phases: [{ kind: 'rl', steps: 1 }] })), 0);
  assert.deepEqual(versions(withK(0)), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
});

test('k = 1: each rl phase starts on-policy, then lags one checkpoint: rl steps 2..5 from 2, 2, 3, 4 and steps 6..8 from 6, 6, 7', () => {
  assert.deepEqual(versions(withK(1)), [0, 1, 2, 2, 3, 4, 6, 6, 7]);
});

test('k = 2: steps 2..5 from 2, 2, 2, 3 and steps 6..8 from 6, 6, 6 (no step samples from the previous phase)', () => {
  assert.deepEqual(versions(withK(2)), [0, 1, 2, 2, 2, 3, 6, 6, 6]);
});

test('a run resumed at checkpoint 4 starts from its own checkpoint: k = 1 gives 4, 4 for steps 4, 5; k = 2 gives 4, 4; the next phase as without the resume', () => {
  assert.deepEqual(versions(withK(1), 4), [4, 4, 6, 6, 7]);
  assert.deepEqual(versions(withK(2), 4), [4, 4, 6, 6, 6]);
  assert.deepEqual(versions(withK(0), 4), [4, 5, 6, 7, 8]);
});

test('a resume at checkpoint 3 with k = 1 rolls out step 3 from 3 and step 4 from 3, then 4; at 2 (the phase start) as a fresh run', () => {
  assert.deepEqual(versions(withK(1), 3), [3, 3, 4, 6, 6, 7]);
  assert.deepEqual(versions(withK(1), 2), [2, 2, 3, 4, 6, 6, 7]);
});

test('for k = 0..3 and every resume point: version ≤ step, step − version ≤ k, never before the phase or the run start, and non-decreasing', () => {
  for (let k = 0; k <= 3; k++) {
    const config = withK(k);
    for (let start = 0; start < totalSteps(config); start++) {
      let last = -1;
      for (let step = start; step < totalSteps(config); step++) {
        const v = policyVersion(config, step, start);
        const { phaseStart } = planStep(config, step);
        assert.ok(v <= step && step - v <= k, `k ${k} start ${start} step ${step}: version ${v}`);
        assert.ok(v >= phaseStart && v >= start, `k ${k} start ${start} step ${step}: version ${v} before phase ${phaseStart}`);
        assert.ok(v >= last, `k ${k} start ${start} step ${step}: version ${v} after ${last}`);
        last = v;
      }
    }
  }
});

test('k = 1: the rollouts of rl steps 3, 4, 5, 7, 8 can start while the learner updates the step before (their checkpoint is committed when it begins)', () => {
  const config = withK(1);
  const overlapped = [];
  for (let m = 1; m < totalSteps(config); m++) if (policyVersion(config, m) <= m - 1) overlapped.push(m);
  assert.deepEqual(overlapped, [3, 4, 5, 7, 8]);
});

test('offPolicySteps must be an integer in 0..16: -1, 1.5 and 17 are refused naming rollout.offPolicySteps', () => {
  for (const k of [-1, 1.5, 17]) assert.throws(() => withK(k), /rollout\.offPolicySteps/, `k = ${k}`);
  assert.equal(offPolicySteps(withK(16)), 16);
});

test('a config stored before the option (no offPolicySteps) plans on-policy', () => {
  const config = withK(1);
  const stored = { ...config, rollout: { promptsPerShard: 2, maxConcurrentShards: 4 } } as RunConfig;
  assert.deepEqual(versions(stored), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
});

test("an off-policy step's metrics row gets off_policy/behaviour_version 6 and off_policy/staleness 1 for step 7 from checkpoint 6, the rest unchanged", () => {
  const row: StepMetrics = { ...emptyMetrics(), loss: 0.5, extra: { tokens: 10 } };
  const out = offPolicyMetrics(row, 7, 6);
  assert.deepEqual(out.extra, { tokens: 10, 'off_policy/behaviour_version': 6, 'off_policy/staleness': 1 });
  assert.equal(out.loss, 0.5);
  assert.deepEqual(row.extra, { tokens: 10 });
});
