/**
 * The metrics row of a step, from what its activities returned: pure arithmetic (workflow code),
 * so the numbers a run commits can be checked without a server. The workflow adds the step's
 * duration (`step_seconds`) when it commits the step; commitStep adds the run, step and phase columns.
 */
import type {
  AdvantagesResult,
  LearnerResult,
  ReferenceLogprobsResult,
  RewardShardResult,
  RolloutShardResult,
  StageIo,
  StepMetrics,
} from '../activities/run/types.js';
import type { StepPlan } from './run-plan.js';

/** A row with every measure absent (null) and every count 0. */
export function emptyMetrics(): StepMetrics {
  return {
    num_prompts: 0,
    num_samples: 0,
    reward_mean: null,
    reward_std: null,
    reward_min: null,
    reward_max: null,
    loss: null,
    kl: null,
    entropy: null,
    clip_fraction: null,
    grad_norm: null,
    learning_rate: null,
    prompt_length_mean: null,
    completion_length_mean: null,
    completion_length_max: null,
    tokens_per_second: null,
    rollout_seconds: null,
    reward_seconds: null,
    advantage_seconds: null,
    learner_seconds: null,
    step_seconds: null,
    reward_errors: 0,
    dropped_samples: 0,
    truncated_samples: 0,
    extra: {},
  };
}

/** An sft step: the learner's loss, entropy and gradient norm, and how much it trained on. */
export function sftStepMetrics(plan: Pick<StepPlan, 'count' | 'lr'>, update: LearnerResult): StepMetrics {
  return {
    ...emptyMetrics(),
    num_prompts: plan.count,
    num_samples: update.sequences,
    loss: update.metrics.loss ?? null,
    entropy: update.metrics.entropy ?? null,
    grad_norm: update.metrics.grad_norm ?? null,
    learning_rate: plan.lr,
    learner_seconds: update.seconds,
    extra: { tokens: update.tokens, micro_batches: update.microBatches },
  };
}

/**
 * Learner metrics an rl step's row keeps under `extra`, when the learner reported them
 * (a learner that finds its step committed reads them back from there by name):
 * - `logprob_diff`: mean |log π_θ − log π_old| over the step's updates;
 * - `mismatch_logprob_diff`, `mismatch_kl`: the rollout/learner mismatch (mean |Δlogprob| and the
 *   k3 estimate of KL(π_rollout ‖ π_learner)) of the weights that sampled, every step;
 * - `log_ratio_clamped`, `kl_clamped`: fraction of loss tokens the numerical guards clamped;
 * - `tis_weight_mean`, `tis_clip_frac`: truncated importance sampling's mean weight and capped fraction;
 * - `clip_frac_last_epoch`, `ratio_mean_last_epoch`, `updates`: PPO epochs (ppoEpochs > 1).
 */
const LEARNER_EXTRAS = [
  'logprob_diff',
  'mismatch_logprob_diff',
  'mismatch_kl',
  'log_ratio_clamped',
  'kl_clamped',
  'tis_weight_mean',
  'tis_clip_frac',
  'clip_frac_last_epoch',
  'ratio_mean_last_epoch',
  'updates',
] as const;

function learnerExtras(metrics: Readonly<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of LEARNER_EXTRAS) if (metrics[k] !== undefined) out[k] = metrics[k];
  return out;
}

/** What the activities of an rl step returned, shards in shard order. */
export interface RlStepResults {
  rollouts: readonly RolloutShardResult[];
  rewards: readonly RewardShardResult[];
  advantages: AdvantagesResult;
  update: LearnerResult;
  /** Dynamic sampling: prompts rolled out over all rounds (the planned ones and the refills). */
  promptsRolled?: number;
  /** kl.inReward: the (last) reference scoring of the step. */
  reference?: ReferenceLogprobsResult;
}

/** Wall-clock seconds of an rl step's stages, as the workflow saw them. */
export interface RlStepSeconds {
  /** From the step's start to the last rollout shard's end (floored at 1 ms). */
  rollout: number;
  /** Sum over shards of each reward activity's own seconds. */
  reward: number;
  advantage: number;
  /** kl.inReward: the reference scoring (every call of the step). */
  reference?: number;
}

/**
 * An rl step: reward statistics over every scored sample of the step (pooled from the shards'
 * sums, so the mean and population std are those of all samples together), reward components
 * as means under `extra['reward/<name>']`, token counts and rates, the learner's losses.
 */
export function rlStepMetrics(plan: Pick<StepPlan, 'count' | 'lr'>, results: RlStepResults, seconds: RlStepSeconds): StepMetrics {
  const { rollouts, rewards, advantages, update } = results;
  const samples = rollouts.reduce((a, r) => a + r.samples, 0);
  const scored = rewards.reduce((a, r) => a + r.scored, 0);
  const sum = rewards.reduce((a, r) => a + r.sum, 0);
  const sumSq = rewards.reduce((a, r) => a + r.sumSquares, 0);
  const mean = scored > 0 ? sum / scored : null;
  const mins = rewards.map((r) => r.min).filter((x): x is number => x != null);
  const maxs = rewards.map((r) => r.max).filter((x): x is number => x != null);
  const completionTokens = rollouts.reduce((a, r) => a + r.completionTokens, 0);
  const promptTokens = rollouts.reduce((a, r) => a + r.promptTokens, 0);
  const rolloutSeconds = Math.max(1e-3, seconds.rollout);
  const components: Record<string, number> = {};
  for (const r of rewards)
    for (const [k, v] of Object.entries(r.components)) components[`reward/${k}`] = (components[`reward/${k}`] ?? 0) + v;
  for (const k of Object.keys(components)) components[k] = scored > 0 ? components[k]! / scored : 0;
  return {
    ...emptyMetrics(),
    num_prompts: plan.count,
    num_samples: advantages.keptSamples,
    reward_mean: mean,
    reward_std: mean == null ? null : Math.sqrt(Math.max(0, sumSq / scored - mean * mean)),
    reward_min: mins.length ? Math.min(...mins) : null,
    reward_max: maxs.length ? Math.max(...maxs) : null,
    loss: update.metrics.loss ?? null,
    kl: update.metrics.kl ?? null,
    entropy: update.metrics.entropy ?? null,
    clip_fraction: update.metrics.clip_frac ?? null,
    grad_norm: update.metrics.grad_norm ?? null,
    learning_rate: plan.lr,
    prompt_length_mean: samples > 0 ? promptTokens / samples : null,
    completion_length_mean: samples > 0 ? completionTokens / samples : null,
    completion_length_max: Math.max(...rollouts.map((r) => r.maxCompletionTokens ?? 0)),
    tokens_per_second: completionTokens / rolloutSeconds,
    rollout_seconds: rolloutSeconds,
    reward_seconds: seconds.reward,
    advantage_seconds: seconds.advantage,
    learner_seconds: update.seconds,
    reward_errors: rewards.reduce((a, r) => a + r.errors, 0),
    dropped_samples: advantages.droppedSamples,
    truncated_samples: rollouts.reduce((a, r) => a + r.truncated, 0),
    extra: {
      ...components,
      zero_variance_groups: advantages.zeroVarianceGroups,
      advantage_mean: advantages.advantageMean,
      advantage_std: advantages.advantageStd,
      approx_kl: update.metrics.approx_kl ?? 0,
      pg_loss: update.metrics.pg_loss ?? 0,
      ...learnerExtras(update.metrics),
      tokens: update.tokens,
      micro_batches: update.microBatches,
      // DAPO dynamic sampling (the phase's dynamicSampling): refill rounds used, prompts rolled out
      // in all rounds, groups with reward variance found, trained on, and dropped (all-equal rewards)
      ...(advantages.dynamic
        ? {
            'dynamic/rounds': advantages.dynamic.round,
            'dynamic/prompts_rolled': results.promptsRolled ?? advantages.dynamic.groups,
            'dynamic/informative_groups': advantages.dynamic.informativeGroups,
            'dynamic/selected_groups': advantages.dynamic.selectedGroups,
            'dynamic/dropped_groups': advantages.dynamic.droppedGroups,
          }
        : {}),
      // multi-turn episodes (the run's environment): per episode, policy turns, tool calls and
      // malformed turns; episodes whose tool infrastructure failed (left out of the advantages)
      ...episodeMetrics(rollouts),
      // KL in the reward (kl.inReward, REINFORCE++): mean over rewarded samples of Σ_t kl_t and of the
      // penalty β Σ_t kl_t taken off their rewards; the reference scoring's tokens and seconds
      ...(advantages.klReward
        ? { 'kl_reward/kl_sum_mean': advantages.klReward.klSumMean, 'kl_reward/penalty_mean': advantages.klReward.penaltyMean }
        : {}),
      ...(results.reference
        ? {
            'kl_reward/reference_tokens': results.reference.tokens,
            'kl_reward/reference_seconds': seconds.reference ?? results.reference.seconds,
          }
        : {}),
    },
  };
}

/** `episodes/turns_mean`, `episodes/tool_calls_mean`, `episodes/malformed_turns_mean` and `episodes/tool_failures` of a step of episodes; {} otherwise. */
function episodeMetrics(rollouts: readonly RolloutShardResult[]): Record<string, number> {
  const shards = rollouts.filter((r) => r.episodes);
  const n = shards.reduce((a, r) => a + r.samples, 0);
  if (shards.length === 0 || n === 0) return {};
  const sum = (k: 'turns' | 'toolCalls' | 'malformedTurns' | 'toolFailures') => shards.reduce((a, r) => a + r.episodes![k], 0);
  return {
    'episodes/turns_mean': sum('turns') / n,
    'episodes/tool_calls_mean': sum('toolCalls') / n,
    'episodes/malformed_turns_mean': sum('malformedTurns') / n,
    'episodes/tool_failures': sum('toolFailures'),
  };
}

/**
 * A reward_model step (activities/learner/reward-model-update.ts): the Bradley-Terry loss as `loss`,
 * the gradient norm, pairs as `num_prompts`, their sequences as `num_samples`, and under `extra`
 * `rm/accuracy` (fraction of the step's pairs with r(chosen) > r(rejected)), `rm/margin` (mean
 * r(chosen) − r(rejected)), `rm/chosen_reward`, `rm/rejected_reward` (mean scores), all before the
 * update, and `rm/pairs`.
 */
export function rewardModelStepMetrics(plan: Pick<StepPlan, 'count' | 'lr'>, update: LearnerResult): StepMetrics {
  const extra: Record<string, number> = {};
  for (const k of ['accuracy', 'margin', 'chosen_reward', 'rejected_reward', 'pairs'] as const)
    if (update.metrics[k] !== undefined) extra[`rm/${k}`] = update.metrics[k];
  return pairStepMetrics(plan, update, extra);
}

/** A step that trains on pairs (dpo, reward_model): loss, gradient norm, pairs as `num_prompts`, their rows as `num_samples`, `extras` first under `extra`. */
function pairStepMetrics(plan: Pick<StepPlan, 'count' | 'lr'>, update: LearnerResult, extras: Record<string, number>): StepMetrics {
  return {
    ...emptyMetrics(),
    num_prompts: plan.count,
    num_samples: update.sequences,
    loss: update.metrics.loss ?? null,
    grad_norm: update.metrics.grad_norm ?? null,
    learning_rate: plan.lr,
    learner_seconds: update.seconds,
    extra: { ...extras, tokens: update.tokens, micro_batches: update.microBatches },
  };
}

/**
 * The DPO learner's metrics (activities/learner/preference-update.ts) under `extra`: `dpo/pairs`
 * (pairs trained on), `dpo/reward_accuracy` (fraction of pairs whose implicit reward
 * β[(log π − log π_ref)(chosen) − (…)(rejected)] is above 0), `dpo/reward_margin` (its mean),
 * `dpo/chosen_reward`, `dpo/rejected_reward` (mean β(log π − log π_ref) of each side), all before
 * the update; `dpo/skipped` 1 when the step had no pair to train on.
 */
const DPO_EXTRAS = ['pairs', 'reward_accuracy', 'reward_margin', 'chosen_reward', 'rejected_reward', 'skipped'] as const;

function dpoExtras(metrics: Readonly<Record<string, number>>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of DPO_EXTRAS) if (metrics[k] !== undefined) out[`dpo/${k}`] = metrics[k];
  return out;
}

/**
 * An online_dpo step: the rl step's reward, length and timing statistics (its rollouts and rewards
 * are an rl step's), the DPO loss as `loss`, and under `extra` the pair selection — `pairs/kept`
 * (prompt groups with a reward gap, one pair each), `pairs/tied` (groups left out: rewards all
 * equal), `pairs/too_few` (groups with fewer than two scored non-empty completions) — and the DPO
 * metrics (`dpo/…`, above). `num_samples` counts the samples in a pair; no advantages, policy-
 * gradient or clip metrics.
 */
export function onlineDpoStepMetrics(plan: Pick<StepPlan, 'count' | 'lr'>, results: RlStepResults, seconds: RlStepSeconds): StepMetrics {
  const row = rlStepMetrics(plan, results, seconds);
  const p = results.advantages.preference;
  const { zero_variance_groups: _z, advantage_mean: _m, advantage_std: _s, approx_kl: _k, pg_loss: _p, ...rest } = row.extra;
  return {
    ...row,
    kl: null,
    clip_fraction: null,
    extra: {
      ...rest,
      'pairs/kept': p?.pairs ?? 0,
      'pairs/tied': p?.tied ?? 0,
      'pairs/too_few': p?.tooFew ?? 0,
      ...dpoExtras(results.update.metrics),
    },
  };
}

/** An offline dpo step: the DPO loss, gradient norm and the DPO metrics (`dpo/…`), pairs as `num_prompts`, their rows as `num_samples`. */
export function dpoStepMetrics(plan: Pick<StepPlan, 'count' | 'lr'>, update: LearnerResult): StepMetrics {
  return pairStepMetrics(plan, update, dpoExtras(update.metrics));
}

/**
 * An rl (or online_dpo) step of a run with `rollout.offPolicySteps` > 0: its row with, under
 * `extra`, `off_policy/behaviour_version` (the checkpoint that generated the step's rollouts,
 * run-plan.ts `policyVersion`) and `off_policy/staleness` (step − that version: 0 on-policy, at
 * most k). The row's `policy_version` stays the checkpoint the learner updated (the step).
 */
export function offPolicyMetrics(metrics: StepMetrics, step: number, behaviourVersion: number): StepMetrics {
  return {
    ...metrics,
    extra: { ...metrics.extra, 'off_policy/behaviour_version': behaviourVersion, 'off_policy/staleness': step - behaviourVersion },
  };
}

/** `total` plus `io` (absent: nothing to add), for summing the store traffic of a step's calls. */
export function addIo(total: StageIo | undefined, io: StageIo | undefined): StageIo | undefined {
  if (!io) return total;
  return { bytesRead: (total?.bytesRead ?? 0) + io.bytesRead, bytesWritten: (total?.bytesWritten ?? 0) + io.bytesWritten };
}

/**
 * A step's row with its store traffic under `extra`: `io/bytes_read` and `io/bytes_written`, the
 * sums over the step's calls before the commit (rollout and reward shards, reference scoring,
 * advantages, the learner; the commit's own writes come after the row is made). A call re-run
 * after a crash counts its last attempt; weights a worker holds in its engine cache are not read
 * again. Without any counted call the row is unchanged.
 */
export function withStepIo(metrics: StepMetrics, io: StageIo | undefined): StepMetrics {
  if (!io) return metrics;
  return { ...metrics, extra: { ...metrics.extra, 'io/bytes_read': io.bytesRead, 'io/bytes_written': io.bytesWritten } };
}
