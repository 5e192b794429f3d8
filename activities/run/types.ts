/**
 * The contract between the `trainingRun` workflow and the activities of a training step: what
 * each activity takes and returns. Everything here is small, plain JSON (claim checks, counts,
 * timings): data travels through the object store, never through Temporal (the workflow passes
 * store URIs, the claim-check pattern).
 *
 * Numbering. Checkpoint `v` holds the weights after `v` optimizer updates (checkpoint 0 = the
 * initial weights); step `s` (0-based) trains from checkpoint `s` (its policy version) and commits
 * checkpoint `s + 1`, then step `s`. A step exists iff its manifest does; a checkpoint iff its own
 * manifest does. Where each lies in the store, and every artifact's name: activities/store/keys.ts.
 */
import type { DataFileIdentity } from '../data/source.js';
import type { ManifestEntry } from '../store/manifest.js';
import type { RunConfig } from './config.js';
import type { BaseModelRecord } from './base-model.js';

/** The kind of a phase of the run config (activities/run/config.ts `phaseSchema`). */
export type PhaseKind = 'sft' | 'rl' | 'online_dpo' | 'dpo' | 'reward_model';

/** Where a run continues from: a committed checkpoint of another run (`resume-from`). */
export interface ResumeSource {
  runId: string;
  /** The checkpoint (policy version) to start from: training continues with step `checkpoint`. */
  checkpoint: number;
}

/** The run's `run.json` (`runRecordKey`). */
export interface RunRecord {
  /** Version of this record and of its config (activities/run/config-version.ts); absent in records written before versions (1). Readers migrate older ones. */
  schema_version: number;
  run_id: string;
  name: string;
  /**
   * The run this one continues (resume-from), or null. `step`: the first step this run trains,
   * which is also the source checkpoint it starts from (`checkpoint`, the same number); the source
   * contributes its steps before it.
   */
  resumed_from: { run_id: string; step: number; checkpoint: number } | null;
  config: RunConfig;
  /** A run on `config.data`: what it read (each file's URI, size, sha256) and the alphabet of its character vocabulary; absent otherwise. */
  data?: RunDataRecord;
  /**
   * A run `from` a pretrained model (`config.model.from`): the directory's URI and every file read
   * from it (config, tokenizer files, weights) with its size and sha256; absent otherwise.
   */
  base_model?: BaseModelRecord;
}

/** The identity of a run's dataset, as run.json records it (activities/data/source.ts). */
export interface RunDataRecord {
  train: DataFileIdentity;
  eval: DataFileIdentity | null;
  /** Every character of the data's prompts and completions, in code-point order: the char tokenizer's vocabulary. */
  alphabet: string;
  /**
   * The longest prompt and completion in code points (a from-scratch model's positions, the default
   * completion budget). Absent from records written before they were recorded: those runs derived
   * them from the training rows and an eval file, held-out rows left out (`asRecorded`).
   */
  maxPromptChars?: number;
  maxCompletionChars?: number;
}

/** Every activity of a run gets these: where the run's data is. Activities load the config from run.json (cached). */
export interface RunRef {
  storeUri: string;
  runId: string;
}

// ── initRun (learner queue) ─────────────────────────────────────────────────────────────────────

export interface InitRunInput extends RunRef {
  config: RunConfig;
  resumeFrom: ResumeSource | null;
}

/** Object-store bytes one activity read and wrote (stage.ts counts them; the step metrics sum them as `io/bytes_read`, `io/bytes_written`). */
export interface StageIo {
  bytesRead: number;
  bytesWritten: number;
}

export interface InitRunResult {
  /** Store bytes this call read and wrote (added by stage.ts). */
  io?: StageIo;
  /** The first step this run trains: 0, or the resumed checkpoint. */
  startStep: number;
  /**
   * Reference policy for KL (the checkpoint where the current RL phase started), when the run
   * resumes inside an RL phase whose start was already past; null otherwise.
   */
  referenceVersion: number | null;
  /** Parameters of the model. */
  parameters: number;
  /** One line describing the model, for the UI ("llama 2x96, 210k params, vocab 16"). */
  model: string;
  /** URI of run.json. */
  runUri: string;
}

// ── rolloutShard (rollout queue) ────────────────────────────────────────────────────────────────

export interface RolloutShardInput extends RunRef {
  step: number;
  /** Checkpoint whose weights generate (= step for on-policy RL). */
  policyVersion: number;
  /** Index of the phase in config.phases (an rl phase: its sampling and groupSize apply). */
  phaseIndex: number;
  shard: number;
  shards: number;
  /** This shard's prompts: items [promptOffset, promptOffset + promptCount) of the task's train split. */
  promptOffset: number;
  promptCount: number;
}

export interface RolloutShardResult {
  /** Store bytes this call read and wrote (added by stage.ts). */
  io?: StageIo;
  /** `rolloutsName(shard)`, written (not yet committed) under the step prefix. */
  rollouts: ManifestEntry;
  samples: number;
  completionTokens: number;
  /** Longest completion of the shard, in tokens. */
  maxCompletionTokens: number;
  promptTokens: number;
  truncated: number;
  seconds: number;
  /**
   * A shard of multi-turn episodes (the run's `environment`) run again after a crash: the turns
   * it found recorded (`episodePartKey`) and resumed after instead of generating them again. 0 on
   * a first run; absent for single completions.
   */
  resumedTurns?: number;
  /**
   * A shard of multi-turn episodes: its policy turns, tool calls, malformed turns and episodes
   * whose tool infrastructure failed, summed over its episodes (the step's `episodes/…` metrics).
   */
  episodes?: { turns: number; toolCalls: number; malformedTurns: number; toolFailures: number };
}

// ── rewardShard (reward queue) ──────────────────────────────────────────────────────────────────

export interface RewardShardInput extends RunRef {
  step: number;
  shard: number;
  shards: number;
  rollouts: ManifestEntry;
}

export interface RewardShardResult {
  /** Store bytes this call read and wrote (added by stage.ts). */
  io?: StageIo;
  /** `rewardsName(shard)` under the step prefix. */
  rewards: ManifestEntry;
  samples: number;
  /** Over samples with a reward (not null): count, sum, sum of squares, min, max. */
  scored: number;
  sum: number;
  sumSquares: number;
  min: number | null;
  max: number | null;
  /** Samples whose reward failed (error set), and those the policy dropped. */
  errors: number;
  dropped: number;
  /** Sum of each named component over scored samples (for means in the metrics' extra map). */
  components: Record<string, number>;
  seconds: number;
}

// ── scoreReferenceLogprobs (learner queue) ──────────────────────────────────────────────────────

/** An rl step whose loss has kl.inReward: the reference policy's logprobs of the step's rollouts, before its advantages. */
export interface ReferenceLogprobsInput extends RunRef {
  step: number;
  /** Index of the rl phase in config.phases (its loss must have kl.inReward; its sampling temperature applies). */
  phaseIndex: number;
  /** The reference checkpoint: where the rl phase started (the learner's referenceVersion). */
  referenceVersion: number;
  /** Every rollouts shard of the step so far, in shard order (refill rounds included). */
  rollouts: ManifestEntry[];
}

export interface ReferenceLogprobsResult {
  /** Store bytes this call read and wrote (added by stage.ts). */
  io?: StageIo;
  /** `REFERENCE_LOGPROBS_NAME` under the step prefix (written, not yet committed), one row per rollout row. */
  referenceLogprobs: ManifestEntry;
  /** Rollout rows and completion tokens scored. */
  samples: number;
  tokens: number;
  seconds: number;
}

// ── computeAdvantages (reward queue: CPU) ───────────────────────────────────────────────────────

export interface AdvantagesInput extends RunRef {
  step: number;
  phaseIndex: number;
  rollouts: ManifestEntry[];
  rewards: ManifestEntry[];
  /**
   * Dynamic sampling (the phase's `dynamicSampling` filter or refill): refill rounds already
   * rolled out into these shards (0 after the step's planned rollout). Absent when it is off.
   */
  round?: number;
  /**
   * kl.inReward (REINFORCE++): the step's `REFERENCE_LOGPROBS_NAME` over these rollouts
   * (scoreReferenceLogprobs); the rewards are penalised by β·kl per token before the estimator.
   * Absent otherwise.
   */
  referenceLogprobs?: ManifestEntry;
}

/** The KL charged in the rewards of a step (kl.inReward; AdvantagesResult.klReward). */
export interface KlRewardStats {
  /** Mean over the rewarded samples of Σ_t kl_t (the loss's estimator and direction, before β). */
  klSumMean: number;
  /** Mean over the rewarded samples of the penalty β Σ_t kl_t taken off their reward. */
  penaltyMean: number;
}

/** What dynamic sampling made of a step's rollouts so far (AdvantagesResult.dynamic). */
export interface DynamicSamplingResult {
  /** Refill rounds rolled out so far. */
  round: number;
  /** Prompt groups rolled out (all rounds). */
  groups: number;
  /** Groups whose rewards vary (the informative ones). */
  informativeGroups: number;
  /** Groups trained on: the first promptsPerStep informative groups in rollout order. */
  selectedGroups: number;
  /** Groups left out for all-equal rewards (or a single scored sample). */
  droppedGroups: number;
  /** refill: prompts the next round should roll out; 0 when the batch is full or the rounds are spent. */
  morePrompts: number;
}

/** An online_dpo step's pair selection (AdvantagesResult.preference; activities/advantage/preference-pairs.ts). */
export interface PreferencePairsCounts {
  /** Pairs formed: prompt groups with a reward gap. */
  pairs: number;
  /** Groups left out because their rewards all tie. */
  tied: number;
  /** Groups left out with fewer than two scored non-empty completions. */
  tooFew: number;
}

export interface AdvantagesResult {
  /** Store bytes this call read and wrote (added by stage.ts). */
  io?: StageIo;
  /** `ADVANTAGES_NAME` under the step prefix; an online_dpo step's `PREFERENCE_PAIRS_NAME` (what its learner trains on). */
  advantages: ManifestEntry;
  keptSamples: number;
  droppedSamples: number;
  zeroVarianceGroups: number;
  advantageMean: number;
  advantageStd: number;
  /** Present when the phase's dynamic sampling is on. */
  dynamic?: DynamicSamplingResult;
  /** Present for an online_dpo step. */
  preference?: PreferencePairsCounts;
  /** Present when the rewards were penalised by the KL (kl.inReward). */
  klReward?: KlRewardStats;
  seconds: number;
}

// ── learnerUpdate (learner queue) ───────────────────────────────────────────────────────────────

export interface LearnerInput extends RunRef {
  step: number;
  phaseIndex: number;
  phase: PhaseKind;
  /** Learning rate of this step (the workflow's schedule). */
  lr: number;
  /**
   * sft: the learning rate of each optimizer update of the step (`updatesPerStep` of them, over
   * consecutive batches of `batchSize`); absent: one update at `lr`.
   */
  lrs?: number[];
  /** Reference checkpoint for the KL term (rl phases whose loss has `kl`) and of DPO (online_dpo, dpo: the phase's first checkpoint); null: none. */
  referenceVersion: number | null;
  /**
   * sft: update u trains on items [promptOffset + u·batchSize, promptOffset + (u+1)·batchSize) of the
   * train split with gold completions. dpo: rows [promptOffset, promptOffset + batchSize) of the
   * phase's preference dataset (wrapping around).
   */
  promptOffset: number;
  batchSize: number;
  /** rl: the step's rollouts (all shards) and advantages; online_dpo: its rollouts and preference pairs (`PREFERENCE_PAIRS_NAME`, in `advantages`). */
  rollouts: ManifestEntry[];
  advantages: ManifestEntry | null;
  /**
   * rl with kl.inReward: the step's `REFERENCE_LOGPROBS_NAME` (scoreReferenceLogprobs), which the
   * learner feeds to the loss's kl metric instead of scoring the reference checkpoint again. Absent:
   * the learner scores the reference itself (a KL in the loss, or a step without the artifact).
   */
  referenceLogprobs?: ManifestEntry;
}

export interface LearnerResult {
  /** Store bytes this call read and wrote (added by stage.ts). */
  io?: StageIo;
  /** The checkpoint's `MODEL_NAME` and `OPTIMIZER_NAME` entries (content-addressed keys), written under checkpoint prefix step + 1. */
  checkpoint: ManifestEntry[];
  /** The engine's metrics (means over micro-batches): loss, grad_norm, pg_loss, clip_frac, kl, entropy, ... */
  metrics: Record<string, number>;
  /** Sequences and loss tokens trained on, micro-batches. */
  sequences: number;
  tokens: number;
  microBatches: number;
  seconds: number;
}

// ── commitStep (learner queue) ──────────────────────────────────────────────────────────────────

/** The metrics row of a step without run_id/step/phase/policy_version (commitStep adds those). */
export interface StepMetrics {
  num_prompts: number;
  num_samples: number;
  reward_mean: number | null;
  reward_std: number | null;
  reward_min: number | null;
  reward_max: number | null;
  loss: number | null;
  kl: number | null;
  entropy: number | null;
  clip_fraction: number | null;
  grad_norm: number | null;
  learning_rate: number | null;
  prompt_length_mean: number | null;
  completion_length_mean: number | null;
  completion_length_max: number | null;
  tokens_per_second: number | null;
  rollout_seconds: number | null;
  reward_seconds: number | null;
  advantage_seconds: number | null;
  learner_seconds: number | null;
  step_seconds: number | null;
  reward_errors: number;
  dropped_samples: number;
  truncated_samples: number;
  extra: Record<string, number>;
}

export interface CommitStepInput extends RunRef {
  step: number;
  phase: PhaseKind;
  /** Artifacts of checkpoint step + 1 (from learnerUpdate). */
  checkpoint: ManifestEntry[];
  /** Artifacts of the step (rollouts, rewards, advantages); metrics.arrow is written by commitStep. */
  artifacts: ManifestEntry[];
  metrics: StepMetrics;
}

export interface CommitStepResult {
  /** Store bytes this call read and wrote (added by stage.ts). */
  io?: StageIo;
  /** False when the step was already committed (a retried or replayed commit): nothing was written. */
  created: boolean;
  /** URIs of the step manifest and the checkpoint manifest. */
  stepUri: string;
  checkpointUri: string;
}

// ── evaluate (rollout queue) ────────────────────────────────────────────────────────────────────

export interface EvaluateInput extends RunRef {
  policyVersion: number;
  /** Steps trained so far (= policyVersion) and the phase the checkpoint came from ('init' before any step). */
  phase: PhaseKind | 'init';
}

/** The `EVAL_NAME` artifact under `evalPrefix(run, v)`, and what evaluate returns. */
export interface EvalRecord {
  run_id: string;
  policy_version: number;
  step: number;
  phase: PhaseKind | 'init';
  /**
   * Fraction of eval prompts answered correctly by greedy decoding (the reward's `correct`
   * component is 1, or without one the reward is at least 1). null when the run's reward does not
   * say what is correct: `reward.functions` none of which is `verifiable` (the mean reward is then
   * the measure).
   */
  greedy_accuracy: number | null;
  /** Unbiased pass@k over k samples per prompt at eval.temperature (Chen et al. 2021); null when off, or when greedy_accuracy is null. */
  pass_at_k: { k: number; value: number } | null;
  /** Mean reward of the greedy completions. */
  mean_reward: number;
  num_prompts: number;
  /**
   * A reward-model run (`model.classifier`): the checkpoint's Bradley-Terry preference metrics on the
   * phase's evaluation pairs (`split` "held_out", or "train" when the phase holds none out);
   * `greedy_accuracy` then holds `accuracy`, `mean_reward` the mean score of every scored sequence,
   * `num_prompts` the pairs, `pass_at_k` is null and `samples` empty. Absent for a policy.
   */
  preference?: { split: 'held_out' | 'train'; pairs: number; accuracy: number; margin: number; loss: number };
  /**
   * A run with an `environment`: what its greedy episodes did, per episode (means over the eval
   * prompts): policy turns, tool calls, malformed turns, and the share of episodes by finish reason
   * ("stop": a final answer; "tool_failure" episodes are not scored). Absent otherwise.
   */
  episodes?: {
    turns_mean: number;
    tool_calls_mean: number;
    malformed_turns_mean: number;
    finish_reasons: Record<string, number>;
  };
  /** The first greedy completions, for reports. */
  samples: { prompt_id: string; prompt: string; completion: string; reward: number | null; reference: string }[];
}

export interface EvaluateResult extends EvalRecord {
  uri: string;
  seconds: number;
  /** Store bytes this call read and wrote (added by stage.ts). */
  io?: StageIo;
}
