/**
 * The KL in the rewards at the advantage stage (`kl.inReward`, REINFORCE++): the rewards rows are
 * penalised per token before the step's estimator runs (`klPenalisedRewardRows` then
 * `stepAdvantages`, the advantage activity's two pure halves).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAdvantageConfig } from '../../../activities/advantage/index.js';
import { stepAdvantages } from '../../../activities/advantage/step-advantages.js';
import { klPenalisedRewardRows } from '../../../activities/advantage/step-kl-reward.js';
import type { RewardsRow, RolloutsRow } from '../../../activities/store/schemas.js';
import { assertClose } from './helpers.js';

function rollout(promptId: string, sampleId: number, behaviour: number[]): RolloutsRow {
  return {
    run_id: 'r',
    step: 0,
    prompt_id: promptId,
    sample_id: sampleId,
    group_id: promptId,
    node_id: null,
    parent_node_id: null,
    policy_version: 0,
    prompt_text: '',
    prompt_token_ids: Int32Array.from([1]),
    completion_text: '',
    completion_token_ids: Int32Array.from(behaviour.map((_, t) => 3 + t)),
    behaviour_logprobs: Float32Array.from(behaviour),
    finish_reason: 'stop',
  } as unknown as RolloutsRow;
}
function reward(promptId: string, sampleId: number, r: number | null): RewardsRow {
  return {
    run_id: 'r',
    step: 0,
    prompt_id: promptId,
    sample_id: sampleId,
    node_id: null,
    reward: r,
    components: {},
    token_rewards: null,
    error: r === null ? 'dropped' : null,
  } as unknown as RewardsRow;
}

// log π_old − log π_ref per token (k1): a = [0.5, 0.1], b = [0.2, −0.25]; behaviour logprobs −1, −1
const rollouts = [rollout('p', 0, [-1, -1]), rollout('p', 1, [-1, -1]), rollout('p', 2, [-1])];
const reference = new Map<string, number[]>([
  ['p#0', [-1.5, -1.1]],
  ['p#1', [-1.2, -0.75]],
  ['p#2', [-1]],
]);
const rewards = [reward('p', 0, 1), reward('p', 1, 0), reward('p', 2, null)];
const beta = 0.1;

test('kl.inReward: rewards rows get token_rewards −β·kl_t (k1, β 0.1: [−0.05, −0.01], [−0.02, 0.025]) and total reward − β Σ kl; a row without reward is unchanged', () => {
  const r = klPenalisedRewardRows(rollouts, rewards, reference, { beta, estimator: 'k1', direction: 'reverse' });
  assertClose(r.rewards[0]!.token_rewards!, [-0.05, -0.01], 1e-7);
  assertClose(r.rewards[1]!.token_rewards!, [-0.02, 0.025], 1e-7);
  assertClose([r.rewards[0]!.reward!, r.rewards[1]!.reward!], [1 - 0.06, 0 + 0.005], 1e-7);
  assert.equal(r.rewards[2], rewards[2]);
  assertClose([r.klMean, r.penaltyMean], [(0.6 - 0.05) / 2, (0.06 - 0.005) / 2], 1e-7);
});

test('REINFORCE++ with the KL in the reward: returns G = [0.94, 0.99] and [0.005, 0.025], whitened over the 4 kept tokens; without it the tokens of a sample share its reward', () => {
  const cfg = parseAdvantageConfig({ estimator: 'reinforce_pp' });
  const pen = klPenalisedRewardRows(rollouts, rewards, reference, { beta, estimator: 'k1', direction: 'reverse' });
  const got = stepAdvantages(cfg, rollouts, pen.rewards);
  // r_t = −β kl_t, plus the outcome reward on the last token; G_t = Σ_{s≥t} r_s
  const G = [0.94, 0.99, 0.005, 0.025];
  const mu = G.reduce((a, b) => a + b, 0) / 4;
  const sd = Math.sqrt(G.reduce((a, b) => a + (b - mu) ** 2, 0) / 3);
  const want = G.map((g) => (g - mu) / (sd + 1e-8));
  assertClose([...Array.from(got.rows[0]!.token_advantages!), ...Array.from(got.rows[1]!.token_advantages!)], want, 1e-5);
  assert.equal(Array.from(got.rows[2]!.loss_mask!).some(Boolean), false); // no reward: not trained on
  const plain = stepAdvantages(cfg, rollouts, rewards);
  assert.equal(plain.rows[0]!.token_advantages, null); // scalar: every token gets the sample's whitened reward
  assert.ok(Math.abs(plain.rows[0]!.advantage! - want[0]!) > 1e-3);
});

test('kl.inReward refuses a rewarded sample without reference logprobs, or with the wrong number, naming the sample', () => {
  assert.throws(
    () => klPenalisedRewardRows(rollouts, rewards, new Map([['p#0', [-1, -1]]]), { beta, estimator: 'k1', direction: 'reverse' }),
    /sample p\/1 has no reference logprobs/,
  );
  assert.throws(
    () =>
      klPenalisedRewardRows(
        rollouts,
        rewards,
        new Map([
          ['p#0', [-1]],
          ['p#1', [-1, -1]],
        ]),
        { beta, estimator: 'k1', direction: 'reverse' },
      ),
    /sample p\/0 has 2 behaviour logprobs but 1 reference logprobs/,
  );
});
