/** The metrics row of a step (workflows/step-metrics.ts), from hand-made activity results. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AdvantagesResult, LearnerResult, RewardShardResult, RolloutShardResult } from '../../../activities/run/types.js';
import type { ManifestEntry } from '../../../activities/store/manifest.js';
import { addIo, emptyMetrics, rlStepMetrics, sftStepMetrics, withStepIo } from '../../../workflows/step-metrics.js';

const entry = (name: string) => ({ name }) as unknown as ManifestEntry;

const rollout = (o: Partial<RolloutShardResult> = {}): RolloutShardResult => ({
  rollouts: entry('rollouts.arrow'),
  samples: 4,
  completionTokens: 40,
  maxCompletionTokens: 12,
  promptTokens: 20,
  truncated: 0,
  seconds: 1,
  ...o,
});
const reward = (o: Partial<RewardShardResult> = {}): RewardShardResult => ({
  rewards: entry('rewards.arrow'),
  samples: 4,
  scored: 4,
  sum: 2,
  sumSquares: 2,
  min: 0,
  max: 1,
  errors: 0,
  dropped: 0,
  components: {},
  seconds: 0.5,
  ...o,
});
const advantages = (o: Partial<AdvantagesResult> = {}): AdvantagesResult => ({
  advantages: entry('advantages.arrow'),
  keptSamples: 8,
  droppedSamples: 0,
  zeroVarianceGroups: 0,
  advantageMean: 0,
  advantageStd: 1,
  seconds: 0.1,
  ...o,
});
const update = (o: Partial<LearnerResult> = {}): LearnerResult => ({
  checkpoint: [],
  metrics: { loss: 0.25 },
  sequences: 8,
  tokens: 100,
  microBatches: 2,
  seconds: 3,
  ...o,
});
const plan = { count: 2, lr: 1e-3 };
const seconds = { rollout: 2, reward: 1, advantage: 0.5 };

test("reward mean 0.5 and std 0.5 pooled over two shards with sums 3 and 1 of 4 binary rewards each (not the mean of the shards' stds, 0.433)", () => {
  const m = rlStepMetrics(
    plan,
    {
      rollouts: [rollout(), rollout()],
      rewards: [reward({ sum: 3, sumSquares: 3 }), reward({ sum: 1, sumSquares: 1 })],
      advantages: advantages(),
      update: update(),
    },
    seconds,
  );
  assert.equal(m.reward_mean, 0.5);
  assert.equal(m.reward_std, 0.5);
});

test('reward min and max over shards skip a shard with no scored sample: min 0.25, max 0.75', () => {
  const m = rlStepMetrics(
    plan,
    {
      rollouts: [rollout(), rollout(), rollout()],
      rewards: [
        reward({ min: 0.25, max: 0.5 }),
        reward({ scored: 0, sum: 0, sumSquares: 0, min: null, max: null }),
        reward({ min: 0.5, max: 0.75 }),
      ],
      advantages: advantages(),
      update: update(),
    },
    seconds,
  );
  assert.equal(m.reward_min, 0.25);
  assert.equal(m.reward_max, 0.75);
});

test('a step with no scored sample has no reward statistics and components 0', () => {
  const none = { scored: 0, sum: 0, sumSquares: 0, min: null, max: null };
  const m = rlStepMetrics(
    plan,
    {
      rollouts: [rollout()],
      rewards: [reward({ ...none, components: { correct: 0 } })],
      advantages: advantages(),
      update: update(),
    },
    seconds,
  );
  assert.deepEqual([m.reward_mean, m.reward_std, m.reward_min, m.reward_max], [null, null, null, null]);
  assert.equal(m.extra['reward/correct'], 0);
});

test('reward components are means over every scored sample: correct sums 3 and 1 over 8 samples → reward/correct 0.5; format only on one shard, 2 → 0.25', () => {
  const m = rlStepMetrics(
    plan,
    {
      rollouts: [rollout(), rollout()],
      rewards: [reward({ components: { correct: 3, format: 2 } }), reward({ components: { correct: 1 } })],
      advantages: advantages(),
      update: update(),
    },
    seconds,
  );
  assert.equal(m.extra['reward/correct'], 0.5);
  assert.equal(m.extra['reward/format'], 0.25);
});

test('two shards of 4 samples with 40 and 80 completion tokens over 2 s of rollout: 60 tokens/s, mean completion length 15 (prompt 10), longest 30', () => {
  const m = rlStepMetrics(
    plan,
    {
      rollouts: [
        rollout({ completionTokens: 40, maxCompletionTokens: 12, promptTokens: 20 }),
        rollout({ completionTokens: 80, maxCompletionTokens: 30, promptTokens: 60 }),
      ],
      rewards: [reward(), reward()],
      advantages: advantages(),
      update: update(),
    },
    seconds,
  );
  assert.equal(m.tokens_per_second, 60);
  assert.equal(m.completion_length_mean, 15);
  assert.equal(m.prompt_length_mean, 10);
  assert.equal(m.completion_length_max, 30);
  assert.equal(m.rollout_seconds, 2);
});

test('rollout seconds are floored at 1 ms: 0 s of rollout with 40 tokens gives 40 000 tokens/s', () => {
  const m = rlStepMetrics(
    plan,
    { rollouts: [rollout()], rewards: [reward()], advantages: advantages(), update: update() },
    { ...seconds, rollout: 0 },
  );
  assert.equal(m.rollout_seconds, 1e-3);
  assert.equal(m.tokens_per_second, 40_000);
});

test('counts add up over shards: 1 + 2 reward errors, 3 + 0 truncated; dropped and kept samples come from the advantages', () => {
  const m = rlStepMetrics(
    plan,
    {
      rollouts: [rollout({ truncated: 3 }), rollout({ truncated: 0 })],
      rewards: [reward({ errors: 1 }), reward({ errors: 2 })],
      advantages: advantages({ keptSamples: 6, droppedSamples: 2, zeroVarianceGroups: 1, advantageMean: 0.1, advantageStd: 0.9 }),
      update: update(),
    },
    seconds,
  );
  assert.equal(m.reward_errors, 3);
  assert.equal(m.truncated_samples, 3);
  assert.equal(m.num_samples, 6);
  assert.equal(m.dropped_samples, 2);
  assert.equal(m.num_prompts, 2);
  assert.deepEqual([m.extra.zero_variance_groups, m.extra.advantage_mean, m.extra.advantage_std], [1, 0.1, 0.9]);
});

test("the learner's losses go to their columns (clip_frac → clip_fraction); approx_kl and pg_loss default to 0, kl to null", () => {
  const withKl = rlStepMetrics(
    plan,
    {
      rollouts: [rollout()],
      rewards: [reward()],
      advantages: advantages(),
      update: update({
        metrics: { loss: 0.5, kl: 0.02, entropy: 1.5, clip_frac: 0.1, grad_norm: 2, approx_kl: 0.01, pg_loss: 0.4 },
        seconds: 3,
        tokens: 100,
        microBatches: 2,
      }),
    },
    seconds,
  );
  assert.deepEqual(
    [withKl.loss, withKl.kl, withKl.entropy, withKl.clip_fraction, withKl.grad_norm, withKl.learner_seconds, withKl.learning_rate],
    [0.5, 0.02, 1.5, 0.1, 2, 3, 1e-3],
  );
  assert.deepEqual([withKl.extra.approx_kl, withKl.extra.pg_loss, withKl.extra.tokens, withKl.extra.micro_batches], [0.01, 0.4, 100, 2]);
  const bare = rlStepMetrics(
    plan,
    { rollouts: [rollout()], rewards: [reward()], advantages: advantages(), update: update({ metrics: {} }) },
    seconds,
  );
  assert.deepEqual([bare.kl, bare.loss, bare.extra.approx_kl, bare.extra.pg_loss], [null, null, 0, 0]);
  assert.deepEqual([bare.reward_seconds, bare.advantage_seconds, bare.step_seconds], [1, 0.5, null]);
});

test('an sft step of 16 sequences at lr 0.001 with loss 2.5: the learner columns only, no reward or rollout columns', () => {
  const m = sftStepMetrics(
    { count: 16, lr: 1e-3 },
    update({ sequences: 16, metrics: { loss: 2.5, entropy: 1.2, grad_norm: 0.7 }, seconds: 4, tokens: 320, microBatches: 4 }),
  );
  assert.deepEqual(m, {
    ...emptyMetrics(),
    num_prompts: 16,
    num_samples: 16,
    loss: 2.5,
    entropy: 1.2,
    grad_norm: 0.7,
    learning_rate: 1e-3,
    learner_seconds: 4,
    extra: { tokens: 320, micro_batches: 4 },
  });
  assert.equal(m.reward_mean, null);
  assert.equal(m.kl, null);
});

test('emptyMetrics gives a new row each call (a step that fills extra does not change the next one)', () => {
  const a = emptyMetrics();
  a.extra.x = 1;
  assert.deepEqual(emptyMetrics().extra, {});
});

test("the learner's mismatch (mismatch_logprob_diff 0.3, mismatch_kl 0.05), guard, TIS and last-epoch metrics go to extra under their names; absent ones stay out", () => {
  const reported = {
    logprob_diff: 0.2,
    mismatch_logprob_diff: 0.3,
    mismatch_kl: 0.05,
    log_ratio_clamped: 0.01,
    kl_clamped: 0,
    tis_weight_mean: 1.2,
    tis_clip_frac: 1,
    clip_frac_last_epoch: 0.4,
    ratio_mean_last_epoch: 0.9,
    updates: 4,
  };
  const m = rlStepMetrics(
    plan,
    { rollouts: [rollout()], rewards: [reward()], advantages: advantages(), update: update({ metrics: { loss: 0.5, ...reported } }) },
    seconds,
  );
  for (const [k, v] of Object.entries(reported)) assert.equal(m.extra[k], v, k);
  const bare = rlStepMetrics(
    plan,
    { rollouts: [rollout()], rewards: [reward()], advantages: advantages(), update: update({ metrics: { loss: 0.5 } }) },
    seconds,
  );
  for (const k of Object.keys(reported)) assert.equal(k in bare.extra, false, k);
});

test('step io: calls of 100 read / 40 written and 5 / 0 sum to 105 / 40 under extra io/bytes_read, io/bytes_written; no counted call leaves the row as it was', () => {
  const total = addIo(addIo(undefined, { bytesRead: 100, bytesWritten: 40 }), { bytesRead: 5, bytesWritten: 0 });
  assert.deepEqual(total, { bytesRead: 105, bytesWritten: 40 });
  assert.equal(addIo(total, undefined), total);
  const row = { ...emptyMetrics(), extra: { 'reward/a': 0.5 } };
  assert.deepEqual(withStepIo(row, total).extra, { 'reward/a': 0.5, 'io/bytes_read': 105, 'io/bytes_written': 40 });
  assert.equal(withStepIo(row, undefined), row);
});

test('a step of episodes: 2 shards of 4 episodes with 6 and 10 turns, 3 and 5 tool calls, 1 malformed turn, 1 tool failure → episodes/turns_mean 2, tool_calls_mean 1, malformed_turns_mean 0.125, tool_failures 1; none for single completions', () => {
  const m = rlStepMetrics(
    plan,
    {
      rollouts: [
        rollout({ episodes: { turns: 6, toolCalls: 3, malformedTurns: 1, toolFailures: 0 } }),
        rollout({ episodes: { turns: 10, toolCalls: 5, malformedTurns: 0, toolFailures: 1 } }),
      ],
      rewards: [reward(), reward()],
      advantages: advantages(),
      update: update(),
    },
    seconds,
  );
  assert.equal(m.extra['episodes/turns_mean'], 2);
  assert.equal(m.extra['episodes/tool_calls_mean'], 1);
  assert.equal(m.extra['episodes/malformed_turns_mean'], 0.125);
  assert.equal(m.extra['episodes/tool_failures'], 1);
  const single = rlStepMetrics(plan, { rollouts: [rollout()], rewards: [reward()], advantages: advantages(), update: update() }, seconds);
  assert.equal(
    Object.keys(single.extra).some((k) => k.startsWith('episodes/')),
    false,
  );
});
