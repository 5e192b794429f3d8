/**
 * The advantage stage on multi-turn episodes (`stepAdvantages`): trajectory-level GRPO over a
 * group, observation tokens never in the loss mask, and an episode whose tool infrastructure
 * failed (finish_reason "tool_failure") left out of the group instead of being scored 0.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAdvantageConfig } from '../../../activities/advantage/index.js';
import { stepAdvantages } from '../../../activities/advantage/step-advantages.js';
import type { RewardsRow, RolloutsRow } from '../../../activities/store/schemas.js';
import { assertClose } from './helpers.js';

/** An episode of 2 policy tokens, a 3-token observation, 1 policy token. */
function episode(sampleId: number, finish: RolloutsRow['finish_reason'] = 'stop'): RolloutsRow {
  return {
    run_id: 'r',
    step: 0,
    prompt_id: 'p',
    sample_id: sampleId,
    group_id: 'p',
    node_id: null,
    parent_node_id: null,
    branch_position: null,
    policy_version: 0,
    prompt_text: '',
    prompt_token_ids: Int32Array.from([1]),
    completion_text: '',
    completion_token_ids: Int32Array.from([5, 6, 7, 8, 9, 10]),
    behaviour_logprobs: Float32Array.from([-1, -1, 0, 0, 0, -1]),
    finish_reason: finish,
    loss_mask: [true, true, false, false, false, true],
    segment_ends: Int32Array.from([2, 5, 6]),
    segment_roles: ['policy', 'observation', 'policy'],
    segment_turns: Int32Array.from([0, 0, 1]),
    turns: 2,
    tool_calls: [],
    observations: ['42'],
    malformed_turns: 0,
  };
}
const reward = (sampleId: number, r: number | null): RewardsRow => ({
  run_id: 'r',
  step: 0,
  prompt_id: 'p',
  sample_id: sampleId,
  node_id: null,
  reward: r,
  components: {},
  token_rewards: null,
  error: r === null ? 'not scored: tool_failure' : null,
});

test('GRPO over a group of 3 episodes (rewards 1, 0, 0.5): advantages (r − 0.5)/(sample std 0.5 + 1e-6) = [0.999998, −0.999998, 0]; every loss mask is [1, 1, 0, 0, 0, 1]', () => {
  const cfg = parseAdvantageConfig({ estimator: 'grpo' });
  const got = stepAdvantages(cfg, [episode(0), episode(1), episode(2)], [reward(0, 1), reward(1, 0), reward(2, 0.5)]);
  assertClose(
    got.rows.map((r) => r.advantage!),
    [0.5 / (0.5 + 1e-6), -0.5 / (0.5 + 1e-6), 0],
    1e-9,
  );
  for (const r of got.rows) assert.deepEqual(Array.from(r.loss_mask!), [true, true, false, false, false, true]);
});

test('an episode whose tool infrastructure failed is left out, not scored 0: with a reward of 0 on it anyway the group of the other two (1, 0) is normalised alone, and it gets advantage 0 and no loss tokens', () => {
  const cfg = parseAdvantageConfig({ estimator: 'grpo' });
  const got = stepAdvantages(cfg, [episode(0), episode(1), episode(2, 'tool_failure')], [reward(0, 1), reward(1, 0), reward(2, 0)]);
  const alone = stepAdvantages(cfg, [episode(0), episode(1)], [reward(0, 1), reward(1, 0)]);
  assertClose(
    got.rows.slice(0, 2).map((r) => r.advantage!),
    alone.rows.map((r) => r.advantage!),
    1e-12,
  );
  assert.equal(got.rows[2]!.advantage, 0);
  assert.equal(Array.from(got.rows[2]!.loss_mask!).some(Boolean), false);
  assert.equal(got.keptSamples, 2);
  // and scored as null (what rewardShard writes for it), the same
  const nulled = stepAdvantages(cfg, [episode(0), episode(1), episode(2, 'tool_failure')], [reward(0, 1), reward(1, 0), reward(2, null)]);
  assert.deepEqual(
    nulled.rows.map((r) => r.advantage),
    got.rows.map((r) => r.advantage),
  );
});

test('per-turn (environment.advantage: turn): token advantages by turn over the kept episodes — rewards 1, 0 give turn 0 and turn 1 ±0.7071 on the policy tokens, 0 on the observation — and the tool_failure episode stays out', () => {
  const cfg = parseAdvantageConfig({ estimator: 'grpo' });
  const got = stepAdvantages(
    cfg,
    [episode(0), episode(1), episode(2, 'tool_failure')],
    [reward(0, 1), reward(1, 0), reward(2, null)],
    undefined,
    undefined,
    true,
  );
  const x = 0.5 / (Math.SQRT1_2 + 1e-6);
  assertClose(Array.from(got.rows[0]!.token_advantages!), [x, x, 0, 0, 0, x], 1e-6);
  assertClose(Array.from(got.rows[1]!.token_advantages!), [-x, -x, 0, 0, 0, -x], 1e-6);
  assert.equal(got.rows[2]!.token_advantages, null);
  assert.equal(Array.from(got.rows[2]!.loss_mask!).some(Boolean), false);
});
