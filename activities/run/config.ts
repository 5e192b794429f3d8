/**
 * The run config of a training run (`durable-rl train <config>`): one YAML or JSON document that
 * says what to train (model, task, reward), how (phases: supervised warm-up, then RL with an
 * advantage estimator and a loss), with which resources (shards, micro-batches, threads) and where
 * the data goes (store URI). Every option is documented here, where it is declared, with the paper
 * it comes from; the defaults are the README's main job (a from-scratch model on 3-digit addition,
 * SFT then GRPO, a few minutes on 2 CPU cores), which adds only a retention policy (`MAIN_JOB`).
 *
 * The config is validated before a workflow starts (`parseRunConfig`): an error names the field
 * (`phases.1.promptsPerStep: expected a positive integer`) and nothing is started.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError, parseConfig, z } from '../common/config.js';
import { advantageConfigSchema, estimators, impliedAggregation } from '../advantage/index.js';
import { lossConfigSchema } from '../learner/index.js';
import { dpoSchema } from '../learner/dpo.js';
import { bradleyTerrySchema } from '../model/losses-reward.js';
import { loadPreferenceDataset, PreferenceDatasetError } from '../data/preference-dataset.js';
import { heldOutCount } from '../data/reward-model-split.js';
import { dataConfigSchema } from '../data/dataset.js';
import { resolveDataUri } from '../data/source.js';
import { DATASET_TASK } from '../data/dataset-task.js';
import { environmentConfigSchema } from './environment.js';
import { rewardFaultsSchema } from '../reward/faults.js';
import { resolveRewardFunctions, rewardFunctionSchema } from '../reward/functions.js';
import { ErrorPolicySchema } from '../reward/run.js';
import { samplingParamsSchema } from '../rollout/sampling.js';
import { treeRolloutSchema } from '../rollout/tree-plan.js';
import { optimizerSchema } from '../model/graphs/train.js';
import { loraSchema } from '../model/lora.js';
import { getTask, taskNames } from '../tasks/tasks.js';
import {
  configVersionOf,
  migrateRunConfig,
  removedFieldProblems,
  RUN_CONFIG_VERSION,
  UNVERSIONED,
  versionProblem,
} from './config-version.js';

const posInt = z.number().int().positive();

/** Learning-rate schedule of a phase: linear warm-up, then constant or cosine decay to `minLrRatio`·lr. */
const scheduleFields = {
  /** Peak learning rate of the phase (AdamW). */
  lr: z.number().positive(),
  /** Optimizer updates of linear warm-up from lr/warmupSteps to lr at the start of the phase. */
  warmupSteps: z.number().int().min(0).default(0),
  /** After warm-up: 'constant', or 'cosine' decay to minLrRatio·lr at the last step of the phase. */
  schedule: z.enum(['constant', 'cosine']).default('constant'),
  /** Floor of the cosine schedule as a fraction of lr. */
  minLrRatio: z.number().min(0).max(1).default(0.1),
};

/** Supervised warm-up: cross-entropy on the task's gold completions (the R1 recipe's cold start, DeepSeek-AI 2025). */
export const sftPhaseSchema = z.strictObject({
  kind: z.literal('sft'),
  /** Optimizer updates in this phase (one step = one update = one committed checkpoint). */
  steps: posInt,
  /** Training examples (prompt + gold completion) per optimizer update, drawn from the task's train split. */
  batchSize: posInt.default(64),
  /**
   * Optimizer updates per step: one learner activity runs this many AdamW updates over
   * consecutive batches and commits one checkpoint. Supervised updates are cheap; grouping them
   * keeps checkpoints and Temporal round trips per update low. The learning-rate schedule
   * (warmupSteps, cosine) counts updates.
   */
  updatesPerStep: posInt.default(1),
  ...scheduleFields,
  lr: z.number().positive().default(1e-3),
});

/** Reinforcement learning from the task's verifiable reward (GRPO family). */
export const rlPhaseSchema = z.strictObject({
  kind: z.literal('rl'),
  /** Optimizer updates in this phase; each step samples fresh rollouts from the current policy (on-policy). */
  steps: posInt,
  /** Prompts per step, drawn from the task's train split. */
  promptsPerStep: posInt.default(32),
  /** Completions sampled per prompt: the group of GRPO's group-relative advantage (Shao et al. 2024). */
  groupSize: z.number().int().min(2).default(8),
  ...scheduleFields,
  /** Peak learning rate (AdamW). RL updates want a smaller one than SFT: at 1e-3 the tiny main-job model collapses within 10 steps. */
  lr: z.number().positive().default(2e-4),
  /** Advantage estimator and its options (activities/advantage): grpo, dr_grpo, rloo, reinforce_pp, ... */
  advantage: advantageConfigSchema.prefault({ estimator: 'grpo' }),
  /**
   * Policy loss (activities/learner): the PPO/GRPO clipped surrogate by default; its `kl` option adds
   * β·KL to the reference policy (the snapshot taken where this phase starts). With one update per
   * step (ppoEpochs 1, miniBatches 1) the update is on rollouts sampled by the weights it updates:
   * the importance ratio is 1 there, the clip range (clipLow, clipHigh, dualClip) does not bind and
   * clip_fraction reads 0. With more updates per step the ratio moves away from 1 after the first
   * and the clip range is what keeps the later updates near the sampling policy (PPO).
   * `options.aggregation` left unset pairs with the estimator (grpo: sequence_mean, dr_grpo:
   * constant over the completion budget, ...; GSPO ratios: sequence_mean; see `pairLoss`), and
   * `options.kl.inReward` moves the KL penalty into the token rewards (REINFORCE++, Hu et al.
   * 2025): each step then scores its rollouts under the reference before the advantages
   * (scoreReferenceLogprobs, learner queue) and the advantage stage charges β·kl_t per token.
   */
  loss: lossConfigSchema.prefault({ name: 'clipped_surrogate' }),
  /**
   * Passes over the step's rollouts (PPO's K epochs, Schulman et al. 2017; TRL's `num_iterations`,
   * verl's `ppo_epochs`). Each pass shuffles the kept rows (seeded by run seed, step and epoch) and
   * makes `miniBatches` AdamW updates. The old logprobs of the ratio stay those of the policy that
   * sampled for every pass. Default 1: one pass.
   */
  ppoEpochs: posInt.default(1),
  /**
   * Optimizer updates per epoch: the step's kept rows are cut into this many mini-batches of as
   * equal a size as possible (verl's `ppo_mini_batch_size`, given here as a count; TRL's
   * `steps_per_generation`), each one AdamW update at the step's learning rate, itself split into
   * micro-batches by `learner.microBatchSize`. At most promptsPerStep × groupSize; when fewer rows
   * are kept (dropped samples), one row per mini-batch. Default 1: one update per epoch.
   */
  miniBatches: posInt.default(1),
  /** Sampling of rollouts (activities/rollout/sampling.ts, vLLM names). */
  sampling: samplingParamsSchema
    .extend({
      /** Completion token budget; default: the task's longest gold answer + 4 (room for EOS and a little slack). */
      max_tokens: posInt.optional(),
    })
    .prefault({}),
  /**
   * Tree-structured rollouts with value-guided branching (V-STAR, Jiang et al. 2026, "Spend Search
   * Where It Pays: Value-Guided Structured Sampling and Optimization for Generative
   * Recommendation": Value-Guided Efficient Decoding). null (default): groupSize independent
   * samples per prompt. Set: each prompt's groupSize samples form a tree built in rounds inside the
   * rollout activity — `roots` samples from the prompt, then children decoded from branch points
   * (node, position) of the completions so far, ranked by the prefix's Monte-Carlo value (mean
   * reward of the tree's samples through it; the run's reward is called between rounds) plus
   * explorationWeight × token entropy (`criterion: value`) or by entropy alone. Needs
   * `advantage.estimator: sibling_grpo` (Sibling-GRPO, the paper's estimator on the tree).
   * Fields: activities/rollout/tree-plan.ts (`treeRolloutSchema`).
   */
  tree: treeRolloutSchema.nullable().default(null),
  /**
   * Reflect-then-retry rollouts (R^3L, 2026, "R^3L: Reflect-then-Retry Reinforcement Learning with
   * Language-Guided Exploration, Pivotal Credit, and Positive Amplification"). null (default): no
   * retries. Set: after each prompt's groupSize samples are drawn, the rollout activity scores them
   * with the run's reward and gives each failed one (reward below `advantage.successThreshold`) a
   * retry that restarts from its failure point p — its tokens [0, p) and their behaviour logprobs
   * copied, the rest sampled from prompt + that prefix — written as extra rows of the group
   * (sample_id groupSize + k, parent_node_id the failed sample's node, branch_position p). The
   * advantage stage hands each failed/retry pair to the r3l estimator (Pivotal Credit masks the
   * shared prefix; Positive Amplification up-weights successes): needs `advantage.estimator: r3l`,
   * and not together with `tree`. Details: activities/rollout/retry-rollout.ts.
   */
  retry: z
    .strictObject({
      /** Most retries per prompt (its failed samples in sample order); null (default): one for every failed sample. */
      maxPerGroup: z.number().int().min(1).nullable().default(null),
      /**
       * Failure point where the task cannot say where the answer first goes wrong (the task's
       * `firstError` hook: addition has one; otherwise null): `min_logprob` (default), the token the
       * policy sampled with the lowest behaviour logprob (first on ties); `start`, position 0 (a fresh
       * sample, nothing shared).
       */
      fallback: z.enum(['min_logprob', 'start']).default('min_logprob'),
      /**
       * The paper's language feedback: a template inserted between the prompt and the copied prefix
       * in the retry's decoding context (`{completion}`: the failed text, `{pivot}`: p); it must be
       * written in the tokenizer's alphabet. The row keeps the original prompt, so the learner trains
       * the retry as if sampled without it (off-policy: the retry's behaviour logprobs are under the
       * reflected context). null (default): off — the tiny character-level models trained from
       * scratch here have never read such a hint, for them it is noise; without it a retry's sampled
       * tokens are exactly on-policy.
       */
      reflection: z.string().min(1).nullable().default(null),
    })
    .nullable()
    .default(null),
  /**
   * Dynamic sampling (Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at
   * Scale", §3.2): a prompt whose `groupSize` completions all got the same reward has zero
   * group-relative advantage and adds no gradient, only a smaller effective batch. `off` (default):
   * every group is trained on, as GRPO does. `filter`: such groups (and groups left with one scored
   * sample) are dropped from the update, and the estimator runs on the remaining groups only.
   * `refill`: dropped groups are replaced by groups of fresh prompts — after the step's rollouts
   * are scored, up to `maxRounds` further rollout rounds run on new prompts until `promptsPerStep`
   * informative groups are found; the first `promptsPerStep` informative groups in rollout order
   * are trained on (a round's surplus is left out), and when the rounds run out the step trains on
   * what it found. Where a round's prompts come from: workflows/README.md.
   */
  dynamicSampling: z
    .strictObject({
      /** off | filter | refill (see above). */
      mode: z.enum(['off', 'filter', 'refill']).default('off'),
      /** refill: most further rollout rounds per step (DAPO's max_num_gen_batches minus one). */
      maxRounds: z.number().int().min(1).max(16).default(3),
      /**
       * refill: a round rolls out ceil(oversample · missing / keepRate) prompts, keepRate being the
       * fraction of the step's groups so far that were informative (floored at minKeepRate).
       */
      oversample: z.number().min(1).max(10).default(1.2),
      /** refill: floor on the keep-rate estimate; a round rolls out at most ceil(oversample · promptsPerStep / minKeepRate) prompts. */
      minKeepRate: z.number().gt(0).lte(1).default(0.1),
    })
    .prefault({}),
});

/**
 * Online DPO from the run's reward (Guo et al. 2024, "Direct Language Model Alignment from Online AI
 * Feedback"; the pairs ranked by a reward as in Self-Exploring Language Models, Zhang et al. 2024;
 * the token-level credit of From r to Q*, Rafailov et al. 2024). Each step samples `groupSize`
 * completions per prompt from the current policy (the rl phase's rollout and reward shards), ranks
 * each prompt's scored completions by the run's reward, and forms one pair per prompt: chosen = the
 * highest reward, rejected = the lowest (the first in sample order on a tie for either place).
 * Prompts whose rewards all tie, or with fewer than two scored non-empty completions, give no pair
 * and are counted (`pairs/tied`, `pairs/too_few`). One DPO update per step on the pairs, against the
 * reference policy = the checkpoint where this phase starts (like the rl phase's KL reference);
 * policy and reference logprobs are of softmax(logits / T) at the sampling temperature. Where the
 * pairs live: the step's `preference_pairs.arrow` (activities/learner/README.md, "Preference phases").
 */
export const onlineDpoPhaseSchema = z.strictObject({
  kind: z.literal('online_dpo'),
  /** Optimizer updates in this phase; each step samples fresh completions from the current policy (on-policy). */
  steps: posInt,
  /** Prompts per step, drawn from the task's train split (at most one pair each). */
  promptsPerStep: posInt.default(32),
  /** Completions sampled per prompt, ranked by the run's reward: at least 2 to form a pair (Guo et al. 2024 sample 2; more raise the chance of a reward gap). */
  groupSize: z.number().int().min(2, 'give at least 2 completions per prompt: a preference pair needs two').default(4),
  ...scheduleFields,
  /** Peak learning rate (AdamW); as for the rl phase, small. */
  lr: z.number().positive().default(2e-4),
  /** The DPO loss (activities/learner/dpo.ts): `beta` β (default 0.1, DPO's implicit-KL strength), `labelSmoothing` ε (default 0; cDPO). */
  dpo: dpoSchema.prefault({}),
  /** Sampling of the completions (as the rl phase's: activities/rollout/sampling.ts, vLLM names; max_tokens defaults to the task's longest gold answer + 4). */
  sampling: rlPhaseSchema.shape.sampling,
});

/**
 * Offline DPO (Rafailov et al. 2023, "Direct Preference Optimization") on a preference dataset: a
 * JSONL file of (prompt, chosen, rejected) texts, read by the minimal loader activities/data/
 * (validated when the config is: the file exists and every row has the three columns as strings).
 * Step k trains on rows [k·batchSize, (k+1)·batchSize) of the file, wrapping around at its end
 * (file order, epochs one after another). One DPO update per step against the reference policy =
 * the checkpoint where this phase starts; logprobs at temperature 1. A completion is tokenised like
 * an sft gold answer (its characters, then EOS).
 */
export const dpoPhaseSchema = z.strictObject({
  kind: z.literal('dpo'),
  /** Optimizer updates in this phase (one step = one update = one committed checkpoint). */
  steps: posInt,
  /** Preference pairs per optimizer update. */
  batchSize: posInt.default(16),
  ...scheduleFields,
  /** Peak learning rate (AdamW). */
  lr: z.number().positive().default(2e-4),
  /** The DPO loss (activities/learner/dpo.ts): `beta` β (default 0.1), `labelSmoothing` ε (default 0; cDPO, Mitchell 2023). */
  dpo: dpoSchema.prefault({}),
  dataset: z.strictObject({
    /** The JSONL file, one JSON object per line; a relative path is resolved against the working directory of the process that validates the config (the CLI), and run.json records the absolute path. */
    path: z.string().min(1),
    /** Column of the prompt text. */
    promptColumn: z.string().min(1).default('prompt'),
    /** Column of the preferred completion's text. */
    chosenColumn: z.string().min(1).default('chosen'),
    /** Column of the dispreferred completion's text. */
    rejectedColumn: z.string().min(1).default('rejected'),
  }),
});

/**
 * Reward-model training (Bradley & Terry 1952, "Rank analysis of incomplete block designs"; the
 * pairwise loss of Stiennon et al. 2020 and Ouyang et al. 2022, "Training language models to follow
 * instructions with human feedback" — InstructGPT; TRL's RewardTrainer): the run's model is a
 * sequence classifier (`model.classifier: true`, a scalar score head `score.weight` in place of the
 * LM head) trained on a preference dataset (the same JSONL loader and `dataset` fields as the dpo
 * phase) with loss −mean log σ(r(chosen) − r(rejected) − margin). Step k trains on training rows
 * [k·batchSize, (k+1)·batchSize), wrapping around (file order, the held-out rows left out). Each
 * side is scored as BOS + prompt + completion + EOS (the head reads the EOS position), so the
 * `reward_model` reward that uses the exported model wants `appendEos: true`
 * (activities/reward/README.md, "Train a reward model in a run"). Metrics: loss, accuracy (fraction of pairs
 * with r(chosen) > r(rejected)), margin (mean r(chosen) − r(rejected)), before the update. The run's
 * evaluations are preference accuracy on held-out pairs (`eval`).
 */
export const rewardModelPhaseSchema = z.strictObject({
  kind: z.literal('reward_model'),
  /** Optimizer updates in this phase (one step = one update = one committed checkpoint). */
  steps: posInt,
  /** Preference pairs per optimizer update (2 × batchSize sequences; micro-batches hold whole pairs). */
  batchSize: posInt.default(16),
  ...scheduleFields,
  /** Peak learning rate (AdamW). A reward model trained from scratch here takes a larger one than a policy's RL phase. */
  lr: z.number().positive().default(1e-3),
  /**
   * The Bradley-Terry loss (activities/model/losses-reward.ts): `margin` m (default 0; Llama 2's
   * margin, Touvron et al. 2023) and `centerRewardsCoefficient` (default 0; Eisenstein et al. 2023,
   * TRL's center_rewards_coefficient). Per-pair margins (a dataset column) are not offered.
   */
  loss: bradleyTerrySchema.omit({ perPairMargin: true }).prefault({}),
  /** The preference dataset, as the dpo phase's (JSONL; `path` made absolute when the config is validated). */
  dataset: dpoPhaseSchema.shape.dataset,
  /**
   * Held-out pairs of the run's evaluations (preference accuracy, margin and loss of checkpoint v).
   * `dataset` (a JSONL file with the same columns) wins; else `fraction` > 0 holds out
   * round(fraction · rows) rows of the training dataset, chosen by the run seed, which training then
   * never sees; else (fraction 0, the default) the evaluation measures the first `maxPairs` training
   * rows and records split "train".
   */
  eval: z
    .strictObject({
      /** Held-out rows drawn by seed from the training dataset, as a fraction of its rows (below 1; 0: none). */
      fraction: z.number().min(0).lt(1).default(0),
      /** A separate held-out preference dataset; null (default): use `fraction`. Columns as `dataset`'s, path absolute after validation. */
      dataset: z
        .strictObject({
          path: z.string().min(1),
        })
        .nullable()
        .default(null),
      /** Most held-out pairs one evaluation scores (the first ones, in file order). */
      maxPairs: posInt.default(256),
    })
    .prefault({}),
});

export const phaseSchema = z.discriminatedUnion('kind', [
  sftPhaseSchema,
  rlPhaseSchema,
  onlineDpoPhaseSchema,
  dpoPhaseSchema,
  rewardModelPhaseSchema,
]);
export type OnlineDpoPhase = z.output<typeof onlineDpoPhaseSchema>;
export type DpoPhase = z.output<typeof dpoPhaseSchema>;
export type RewardModelPhase = z.output<typeof rewardModelPhaseSchema>;
/** Phases that sample completions from the policy each step (rollout and reward shards). */
export type SamplingPhase = RlPhase | OnlineDpoPhase;
export type SftPhase = z.output<typeof sftPhaseSchema>;
export type RlPhase = z.output<typeof rlPhaseSchema>;
export type Phase = z.output<typeof phaseSchema>;

/** The model fields that describe a model trained from scratch, which a pretrained model (`from`) brings itself. */
export const SCRATCH_MODEL_FIELDS = ['type', 'hidden', 'layers', 'heads', 'intermediate', 'maxPositions', 'initStd'] as const;

/**
 * The model: trained from scratch (weights from the run seed, sized for the task's character
 * vocabulary; the default), or a pretrained Hugging Face model (`from`).
 */
const modelObjectSchema = z.strictObject({
  /**
   * A pretrained model to start from: a Hugging Face model directory (a path, relative to the config
   * file's directory; a `file://` URI; or `s3://bucket/prefix`) with `config.json` (llama, qwen2,
   * qwen3, mistral or gpt2, in the transformers 4 or 5 form), safetensors weights (one file or
   * shards; F32, F16 or BF16, trained in float32), `tokenizer.json` and, where the model has them,
   * `tokenizer_config.json` (special tokens, chat template), `chat_template.jinja` and
   * `generation_config.json` (the ids that end generation). Prompts are rendered through the chat
   * template when there is one (the task's prompt as the user turn, with the generation prompt);
   * without one they are encoded as the tokenizer does (its own BOS). `initRun` copies the config
   * and tokenizer files into the run (so every worker reads the same ones) and records each
   * source file's size and sha256 in run.json; checkpoint 0 holds the pretrained weights. With
   * `from`, the from-scratch fields (type, hidden, layers, heads, intermediate, maxPositions,
   * initStd) must be left out. Default null: train from scratch.
   */
  from: z.string().min(1).nullable().default(null),
  /**
   * LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"; PEFT's `LoraConfig`):
   * train only low-rank adapters `{ rank, alpha (default 2·rank), targets (default q/k/v/o and
   * gate/up/down projections), dropout: 0 }` on top of the frozen weights (llama family). AdamW
   * state exists for the adapters alone; checkpoint 0 holds the base weights once and every later
   * checkpoint only the adapters and their moments; the KL reference of an rl phase is the base
   * model with the adapters switched off (TRL's choice for PEFT models); `export` writes the merged
   * weights and the adapter as a PEFT directory (`adapter/`). Default null: train every weight.
   */
  lora: loraSchema.nullable().default(null),
  /**
   * Architecture family: 'llama' (RMSNorm, RoPE, SwiGLU; default), 'qwen3' (llama with an RMSNorm
   * over each query and key head; exported as a Qwen3ForCausalLM directory) or 'gpt2' (LayerNorm,
   * learned positions, GELU).
   */
  type: z.enum(['llama', 'qwen3', 'gpt2']).optional(),
  /** Width of the residual stream (default 128). */
  hidden: posInt.optional(),
  /** Transformer blocks (default 2). */
  layers: posInt.optional(),
  /** Attention heads (default 4; hidden must be divisible by it; llama needs an even head size). */
  heads: posInt.optional(),
  /** MLP width; default 4·hidden (gpt2) or 8/3·hidden rounded to 8 (llama SwiGLU). */
  intermediate: posInt.optional(),
  /** Context length; default: BOS + the task's longest prompt + the generation budget, rounded up to 8. */
  maxPositions: posInt.optional(),
  /** Standard deviation of the initial weights (default 0.02, GPT-2's). */
  initStd: z.number().positive().optional(),
  /**
   * Train a reward model: the model is a sequence classifier (HF `*ForSequenceClassification`, one
   * label: a scalar score head `score.weight` [1, hidden] read at each sequence's last token, in
   * place of the LM head; Ouyang et al. 2022). Every phase must then be a `reward_model` phase
   * (a classifier cannot generate: no sft, rl or DPO), and `durable-rl export` writes an HF
   * directory that the `reward_model` reward loads. Default false: a causal LM (a policy).
   */
  classifier: z.boolean().default(false),
});

/** The from-scratch fields' defaults, filled in only when there is no `from` (so a parsed config parses again to itself). */
const SCRATCH_DEFAULTS = { type: 'llama', hidden: 128, layers: 2, heads: 4, initStd: 0.02 } as const;

export const modelSchema = z.preprocess((raw, ctx) => {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  if ((raw as { from?: unknown }).from == null) return { ...SCRATCH_DEFAULTS, ...raw };
  {
    for (const field of SCRATCH_MODEL_FIELDS.filter((f) => f in raw)) {
      ctx.addIssue({
        code: 'custom',
        path: [field],
        message: `model.from loads a pretrained model, which brings its own ${field === 'initStd' ? 'weights' : 'architecture'}; remove model.${field} (it describes a model trained from scratch)`,
      });
    }
    if ((raw as { classifier?: unknown }).classifier === true) {
      ctx.addIssue({
        code: 'custom',
        path: ['classifier'],
        message: 'a reward model (classifier) from a pretrained model is not supported yet: train it from scratch, or leave model.from out',
      });
    }
  }
  return raw;
}, modelObjectSchema);
export type ModelSpec = z.output<typeof modelObjectSchema>;

/** The stages of a run whose activity timeouts `workflow.stages` sets (workflows/stage-options.ts maps activities to them). */
export const STAGE_NAMES = ['init', 'rollout', 'reward', 'reference', 'advantages', 'learner', 'commit', 'eval'] as const;
export type StageName = (typeof STAGE_NAMES)[number];

/** One stage's timeouts; an unset field takes the `workflow` section's default. */
const stageTimeoutsSchema = z.strictObject({
  /** Start-to-close of one attempt, in minutes. */
  startToCloseMinutes: z.number().positive().optional(),
  /** Heartbeat timeout, in seconds: a worker silent this long is taken for dead and the attempt retried. */
  heartbeatSeconds: posInt.optional(),
  /** Minutes in retry before the run shows blocked (see workflow.blockedAfterMinutes). */
  blockedAfterMinutes: z.number().positive().optional(),
});

export const runConfigSchema = z.strictObject({
  /**
   * Name of the run: the prefix of its run id (`<name>-<time>`), shown in the Web UI as the
   * DurableRlRunName search attribute.
   */
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$/, 'use 1-48 letters, digits, ".", "_" or "-", starting with a letter or digit')
    .default('addition-grpo'),
  /** Seed of everything random (weights, prompts, sampling): the same seed gives bitwise the same run. */
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .default(1),
  /** Where artifacts go: `file://DIR` (relative paths resolve against the CLI's working directory) or `s3://bucket/prefix`. */
  store: z.string().min(1).default('file://./durable-rl-data'),
  task: z
    .strictObject({
      /** A built-in task (activities/tasks): addition, countdown; `data` for a run on `data` (set by itself when `data` is given). */
      name: z
        .string()
        .refine((n) => n === DATASET_TASK || taskNames().includes(n), {
          message: `unknown task; built-in tasks: ${taskNames().join(', ')} (or give data)`,
        })
        .default('addition'),
      /** The task's difficulty knobs (activities/tasks/README.md). */
      options: z.record(z.string(), z.unknown()).default({ minDigits: 1, maxDigits: 3, reverse: true, pad: true }),
    })
    .prefault({}),
  model: modelSchema.prefault({}),
  /**
   * A dataset of the user's own as the run's prompts, in place of a built-in task (activities/data/
   * README.md): `train` (and `eval`, or `evalFraction` held out by the seed) as a path relative to
   * the config file, `file://` or `s3://`, JSONL or Parquet; `promptColumn` (a string or chat
   * messages), `completionColumn` (the gold answer sft phases train on), `referenceColumn`,
   * `template`, `system`. The train rows are read epoch after epoch, each epoch in an order drawn
   * from (seed, epoch); a model trained from scratch gets a character vocabulary of the data's
   * alphabet; run.json records each file's URI, size and sha256, and a changed file is refused.
   * null (default): the built-in `task`.
   */
  data: dataConfigSchema.nullable().default(null),
  /**
   * Multi-turn, tool-using episodes (issue 15; activities/run/environment.ts, activities/env/):
   * `{ name: calculator | lookup (or module, export), options, limits, advantage, toolRetry,
   * toolConcurrency }`. Each rollout is then an episode of the environment — the policy's turns,
   * its tool calls in the environment's format, the tools' observations appended as loss-mask-0
   * segments — up to its turn, token and time limits; the environment's task items are the run's
   * prompts (in place of `task`), its gold trajectories the sft targets, its trajectory reward the
   * default reward. null (default): single completions.
   */
  environment: environmentConfigSchema.nullable().default(null),
  reward: z
    .strictObject({
      /** A reward spec `{ name, options }` from the registry (activities/reward); default: the task's own reward. */
      spec: z
        .strictObject({ name: z.string().min(1), options: z.unknown().optional() })
        .nullable()
        .default(null),
      /**
       * Several reward functions, in place of `spec` (activities/reward/functions.ts): your own
       * TypeScript / JavaScript modules (`{ module: ./rewards/gsm8k.ts, export: correctness }`, a path
       * relative to the config file; an export is a function `(sample, ctx) => number | RewardResult`
       * or a `defineReward(...)` definition) and registry rewards (`{ name: format_tags, options }`),
       * each with an optional `id` (its component, `reward/<id>` in metrics), `weight` (for the
       * default weighted sum) and `verifiable` (counts for evaluation accuracy). A sample gets
       * every unmapped dataset column in `metadata`. null (default): `spec`, or the task's reward.
       */
      functions: z.array(rewardFunctionSchema).min(1).nullable().default(null),
      /**
       * How the functions' values become the reward: a composition of activities/reward/compose.ts
       * by its `name` with its options — weighted_sum, gated (G-RA), lexicographic (OPTIAGENT),
       * sweet_spot (SSL), clip_delta (Gao et al. 2024), process_outcome_schedule (Atom-Searcher),
       * hybrid — whose component names are the functions' ids, or `<id>/<name>` for a function's
       * own component (COMPOSE.md); another name is refused before the run starts. null (default):
       * the weighted sum of the functions with their `weight`s. Validated with defaults filled.
       */
      compose: z.record(z.string(), z.unknown()).nullable().default(null),
      /**
       * What a reward that throws, times out or returns NaN does (recorded with its message, never a silent 0; activities/reward/run.ts): `fail` the step,
       * `drop` the sample (left out of the advantages, counted in metrics.reward_errors), or give it
       * `defaultReward`.
       */
      errorPolicy: ErrorPolicySchema.prefault({ onError: 'drop' }),
      /**
       * Fault drill (activities/reward/faults.ts): make a seeded fraction of reward calls throw,
       * return NaN or hang, to check the error policy end to end. Null: off.
       */
      faults: rewardFaultsSchema.nullable().default(null),
    })
    .prefault({}),
  /** Phases in order; steps are numbered across phases from 0. */
  phases: z
    .array(phaseSchema)
    .min(1, 'give at least one phase')
    .prefault([
      // 24 × 25 = 600 supervised updates: the warm-up model answers about 45% of the problems, so
      // GRPO's groups have mixed outcomes to learn from (bench/main-job-tuning.ts).
      { kind: 'sft', steps: 24, updatesPerStep: 25, batchSize: 64, lr: 1e-3, warmupSteps: 20 },
      {
        kind: 'rl',
        steps: 50,
        promptsPerStep: 32,
        groupSize: 8,
        lr: 2e-4,
        schedule: 'cosine',
        // β = 0: no KL penalty, but the KL to the warm-up model is measured and charted.
        // token_mean stated: the main job trained with it before the estimator's pairing (grpo: sequence_mean) existed.
        loss: { name: 'clipped_surrogate', options: { clipLow: 0.2, clipHigh: 0.28, aggregation: 'token_mean', kl: { beta: 0 } } },
        sampling: { temperature: 0.7 },
      },
    ]),
  /** AdamW (Loshchilov & Hutter 2019) and gradient clipping, shared by all phases. */
  optimizer: optimizerSchema.prefault({ beta2: 0.99 }),
  rollout: z
    .strictObject({
      /** Prompts per rollout activity (shard); a step's prompts are split into ceil(promptsPerStep / this) shards. */
      promptsPerShard: posInt.default(16),
      /** Shards generated at once (each is one activity on the rollout queue). */
      maxConcurrentShards: posInt.default(4),
      /**
       * Async steps, still deterministic: the rollouts (and reward annotation) of step n + k are
       * generated while the learner updates step n, from the policy version the run plan fixes —
       * step n rolls out with checkpoint max(n − k, first step of its phase, first step of the run)
       * (workflows/run-plan.ts `policyVersion`), never "whatever weights are newest", so a run with
       * crashes ends bitwise equal to an uninterrupted one with the same k. 0 (the default) is
       * on-policy: each step samples from the weights it updates. 1 is the one-step off-policy
       * pipeline of AReaL (Fu et al. 2025, "AReaL: A Large-Scale Asynchronous Reinforcement Learning
       * System for Language Reasoning", max staleness η) and of verl's one-step-off-policy recipe;
       * the gain is the overlap of generation with the update, the cost rollouts up to k versions
       * stale. The correction is the clipped importance ratio π_θ / π_behaviour on the behaviour
       * logprobs each rollout row records (PPO's ratio with the sampling policy as π_old); with the
       * loss's `tis` the ratio is taken against the learner's own logprobs of checkpoint n and the
       * behaviour logprobs give the truncated importance weight, AReaL's decoupled PPO objective.
       * Each phase starts on-policy (its first step rolls out from its first checkpoint) and a
       * resumed run from its resumed checkpoint, the pipeline filling over the next k steps. At most
       * 16: the workflow keeps the claim checks of every step in flight and carries them over
       * continue-as-new, and a staler behaviour policy leaves most ratios clipped.
       */
      offPolicySteps: z.number().int().min(0).max(16).default(0),
      /**
       * Rollout decode on weight-only quantised weights (activities/model/quantize.ts: blocks of 32
       * inputs with one scale each, onnxruntime's MatMulNBits, int8 products on VNNI/AMX CPUs):
       * 'int8' or 'int4'; null (default) decodes in float32. Faster generation (the weights are read
       * at a quarter or an eighth of the bytes); the behaviour logprobs are then the quantised
       * policy's while the learner scores in float32 — the rollout/training mismatch that
       * Yao et al. ("Your Efficient RL Framework Secretly Brings You Off-Policy RL Training", 2025)
       * correct with truncated importance sampling: set the loss's `tis`. Every step's metrics log it
       * (`mismatch_logprob_diff`, mean |Δlogprob|; `mismatch_kl`). Evaluations decode in float32.
       */
      quantize: z.enum(['int8', 'int4']).nullable().default(null),
      /**
       * The weights rollouts read: 'float32' (default), the checkpoint's parameters; 'bf16', a
       * weights-only snapshot of them rounded to bfloat16 (to nearest, ties to even), which each
       * checkpoint's writer (initRun for checkpoint 0, the learner for the others) stores beside
       * them (`MODEL_BF16_NAME`, listed in the checkpoint's manifest: committed with it, copied by
       * resume-from, removed with it by retention), widened back to float32 for compute. A rollout
       * worker then reads half the bytes per policy version (the step's `io/bytes_read`), for 2 more
       * bytes per parameter in each checkpoint. The behaviour logprobs are the bf16-rounded policy's
       * while the learner scores in float32: the rollout/training mismatch of `quantize`, smaller
       * (the policy of verl and OpenRLHF's bf16 vLLM rollouts), logged every step as
       * `mismatch_logprob_diff` and corrected by the loss's `tis`. The snapshot is a pure function
       * of the float32 weights, so a run stays bitwise reproducible. With `quantize` the bf16 weights
       * are the ones quantised. Evaluations read the float32 weights: their accuracy is the trained
       * policy's. Not with `model.lora`: a LoRA checkpoint after the first holds only the adapters
       * and the frozen base is read once per process, so there is nothing to halve per step.
       */
      weights: z.enum(['float32', 'bf16']).default('float32'),
      /**
       * Most sequences a rollout or evaluation decodes at once (its KV cache is allocated for
       * them). A shard with more samples than this queues the rest, and they join as finished
       * sequences free their slots (continuous batching, the scheduling of Orca, Yu et al. OSDI
       * 2022, and vLLM's `max_num_seqs`): short completions do not hold back the next prompts while
       * the longest finishes. What a sample generates does not depend on it beyond float rounding.
       * Lower it where memory is short (the cache holds layers x 2 x this x kv_heads x (prompt +
       * 2 x max_tokens) x head_dim floats).
       */
      maxBatchSequences: posInt.default(256),
    })
    .prefault({}),
  learner: z
    .strictObject({
      /**
       * Sequences per micro-batch: the step's batch is split into micro-batches whose gradients
       * are accumulated before the one AdamW update (the result does not depend on this number
       * beyond float rounding).
       */
      microBatchSize: posInt.default(64),
    })
    .prefault({}),
  eval: z
    .strictObject({
      /** Evaluate every N steps (0: only at the start, at phase boundaries and at the end). */
      every: z.number().int().min(0).default(0),
      /** Held-out prompts from the task's eval split (never trained on). */
      prompts: posInt.default(500),
      /** pass@k (Chen et al. 2021, unbiased estimator with n = k samples at `temperature`); 0 turns it off. */
      passK: z.number().int().min(0).default(4),
      /** Sampling temperature of the pass@k samples (greedy accuracy is always measured too). */
      temperature: z.number().positive().default(1),
    })
    .prefault({}),
  engine: z
    .strictObject({
      /** onnxruntime intra-op threads per session (0: one per core). Fixed threads keep results bitwise reproducible. */
      threads: z.number().int().min(0).default(2),
      /**
       * onnxruntime execution providers, in order of preference: ['cpu'], ['cuda', 'cpu'],
       * ['webgpu', 'cpu'] (README: GPU hosts). A provider missing from the worker's onnxruntime build
       * fails the activity there.
       */
      executionProviders: z
        .array(z.enum(['cpu', 'cuda', 'tensorrt', 'webgpu', 'dml', 'coreml', 'qnn']))
        .min(1)
        .default(['cpu']),
    })
    .prefault({}),
  /**
   * What a run's store keeps of its checkpoints (activities/checkpoint/retention.ts; applied after
   * every committed step, see `apply`, and by `durable-rl gc <run>`). Each checkpoint holds the
   * weights (4 bytes per parameter) and the AdamW moments (8 more); without a policy every one of
   * them is kept, as before. Whatever the policy, the latest checkpoint, checkpoint 0 of a LoRA run
   * (the frozen base of every later one) and an rl/online_dpo/dpo phase's first checkpoint (its
   * reference policy) while a kept checkpoint lies inside that phase are kept; step data (metrics,
   * rollouts, evaluations) is never removed. Keeping everything by default is what the peers do
   * (TRL's `save_total_limit` and verl's `max_ckpt_to_keep` default to None): removing a run's data
   * is asked for, never assumed. The main job (`MAIN_JOB`) asks for it.
   */
  retention: z
    .strictObject({
      /** Keep the N most recent checkpoints; null (default): keep every checkpoint. */
      keepLast: posInt.nullable().default(null),
      /** Also keep every checkpoint whose number is a multiple of M (0, M, 2M, ...); needs keepLast; null: none beyond the last N. */
      keepEvery: posInt.nullable().default(null),
      /**
       * Where the AdamW moments (two thirds of a checkpoint's bytes) stay: 'all' (default) on every
       * kept checkpoint, so resume-from works from each; 'last' only on the latest (what the run
       * itself and resume-from's default continue from), the older kept checkpoints becoming
       * weights-only (evaluation, export, reference policy; resume-from refuses them).
       */
      optimizerState: z.enum(['last', 'all']).default('all'),
      /**
       * When the policy is carried out: 'every_step' (default) by the commit of every step, so the
       * store stays bounded however long the run (the kept checkpoints plus the step data); 'manual'
       * only by `durable-rl gc <run>`. Without keepLast nothing is removed either way.
       */
      apply: z.enum(['every_step', 'manual']).default('every_step'),
    })
    .refine((r) => r.keepEvery === null || r.keepLast !== null, {
      message: 'keepEvery needs keepLast (without keepLast every checkpoint is kept)',
      path: ['keepEvery'],
    })
    .prefault({}),
  workflow: z
    .strictObject({
      /** Continue-as-new after this many steps in one workflow execution (also when Temporal suggests it). */
      continueAsNewEvery: posInt.default(50),
      /**
       * Heartbeat timeout of every activity, in seconds: a worker that dies mid-activity is noticed
       * within this time and its activity retried elsewhere.
       */
      heartbeatTimeoutSeconds: posInt.default(10),
      /** Start-to-close timeout of one activity attempt, in minutes (every stage without its own in `stages`). */
      activityTimeoutMinutes: posInt.default(30),
      /**
       * Minutes an activity call may spend in retry before the run shows `blocked` (DurableRlStatus,
       * with the stage and the error in its current details): attempts are unlimited, so an outage
       * (store, network, a worker that never comes) is waited out and the run goes on by itself when
       * it clears. Errors no retry can fix (bad data, a reward module that fails to import, NaN
       * weights) block the run at once, until `durable-rl retry` or `stop`. How "time in retry" is
       * measured: workflows/README.md ("Blocked, not failed").
       */
      blockedAfterMinutes: z.number().positive().default(5),
      /** Ceiling of the exponential backoff between attempts (from 1 s, doubling), in seconds. */
      retryIntervalCapSeconds: posInt.default(60),
      /**
       * Per-stage timeouts, over the two defaults above: `{ startToCloseMinutes, heartbeatSeconds,
       * blockedAfterMinutes }` for init, rollout, reward, reference, advantages, learner, commit,
       * eval. A call's schedule-to-close is its start-to-close plus its blockedAfterMinutes.
       */
      stages: z
        .strictObject(
          Object.fromEntries(STAGE_NAMES.map((s) => [s, stageTimeoutsSchema.optional()])) as Record<
            StageName,
            z.ZodOptional<typeof stageTimeoutsSchema>
          >,
        )
        .prefault({}),
    })
    .prefault({}),
  /** Version of this config's schema (activities/run/config-version.ts): a config stating an older one is migrated first. */
  version: z.literal(RUN_CONFIG_VERSION).default(RUN_CONFIG_VERSION),
});

export type RunConfig = z.output<typeof runConfigSchema>;
export type RunConfigInput = z.input<typeof runConfigSchema>;

/**
 * Most prompts one dynamic-sampling refill round of an rl phase rolls out: the largest count
 * `selectGroups` asks for, ceil(oversample · promptsPerStep / minKeepRate). workflows/run-plan.ts
 * reserves this many train items per (step, round) and repeats the formula (workflow code imports
 * only types from activities/).
 */
export function refillRoundPrompts(p: Pick<RlPhase, 'promptsPerStep' | 'dynamicSampling'>): number {
  const d = p.dynamicSampling;
  return Math.ceil((d.oversample * p.promptsPerStep) / d.minKeepRate - 1e-9);
}

/** Completion token budget of an rl phase: sampling.max_tokens, or the task's longest gold answer + 4 (room for EOS and a little slack). */
export function completionBudget(phase: Pick<SamplingPhase, 'sampling'>, task: { maxCompletionChars: number }): number {
  return phase.sampling.max_tokens ?? task.maxCompletionChars + 4;
}

/**
 * Pairs an rl phase's loss with its estimator (in place), so the config — and run.json — holds the
 * aggregation used:
 * - `loss.options.aggregation` unset: 'sequence_mean' with GSPO's sequence ratios (`ratioLevel`
 *   sequence or sequence_token: the GSPO objective averages per-sequence losses; verl forces it),
 *   else the estimator's declared aggregation (`estimators` in activities/advantage/index.ts:
 *   grpo sequence_mean, dr_grpo and rloo constant, reinforce_pp token_mean, ...). Set: it wins.
 * - GSPO with an explicit aggregation other than 'sequence_mean' is refused, naming the field.
 * - 'constant' implied by the estimator without `constantNormaliser`: C = the phase's completion
 *   budget (Dr.GRPO divides by the generation budget; TRL: max_completion_length).
 */
function pairLoss(cfg: RunConfig, p: RlPhase, i: number, problems: { path: string; message: string }[]): void {
  if (p.loss.name !== 'clipped_surrogate') return;
  const o = p.loss.options;
  const gspo = o.ratioLevel === 'sequence' || o.ratioLevel === 'sequence_token';
  const at = `phases.${i}.loss.options`;
  if (o.aggregation !== undefined) {
    if (gspo && o.aggregation !== 'sequence_mean') {
      problems.push({
        path: `${at}.aggregation`,
        message: `ratioLevel "${o.ratioLevel}" (GSPO) averages per-sequence losses: use "sequence_mean" or leave aggregation unset (got "${o.aggregation}")`,
      });
    }
    return;
  }
  o.aggregation = gspo ? 'sequence_mean' : impliedAggregation(p.advantage);
  if (o.aggregation === 'constant' && o.constantNormaliser === undefined) {
    try {
      // a dataset's completion budget is known only once its files are read: give max_tokens or constantNormaliser
      if (cfg.data && p.sampling.max_tokens === undefined) throw new Error('no completion budget before the data is read');
      o.constantNormaliser = completionBudget(p, cfg.data ? { maxCompletionChars: 0 } : getTask(cfg.task.name, cfg.task.options));
    } catch {
      problems.push({
        path: `${at}.constantNormaliser`,
        message: `${p.advantage.estimator} pairs with aggregation "constant" (${estimators[p.advantage.estimator].why.split(':')[0]}); its constant defaults to the completion budget, which needs valid task options or sampling.max_tokens — give constantNormaliser, or fix task.options`,
      });
    }
  }
}

/** A `tree` option must fit the phase's sample budget and be paired with Sibling-GRPO. */
function treeProblems(p: RlPhase, i: number, problems: { path: string; message: string }[]): void {
  if (!p.tree) return;
  if (p.tree.roots > p.groupSize) {
    problems.push({
      path: `phases.${i}.tree.roots`,
      message: `${p.tree.roots} roots but groupSize is ${p.groupSize}: a tree's roots are part of its groupSize samples`,
    });
  }
  if (p.advantage.estimator !== 'sibling_grpo') {
    problems.push({
      path: `phases.${i}.advantage.estimator`,
      message: `tree rollouts are trained with "sibling_grpo" (Sibling-GRPO compares siblings at their branch point and masks copied prefixes; got "${p.advantage.estimator}")`,
    });
  }
}

/** A `retry` option (R^3L) needs the r3l estimator, whose Pivotal Credit takes the failed/retry pairs, and no tree. */
function retryProblems(p: RlPhase, i: number, problems: { path: string; message: string }[]): void {
  if (!p.retry) return;
  if (p.advantage.estimator !== 'r3l') {
    problems.push({
      path: `phases.${i}.advantage.estimator`,
      message: `reflect-then-retry rollouts (retry) are trained with "r3l" (its Pivotal Credit masks the prefix a retry shares with its failed sample; got "${p.advantage.estimator}")`,
    });
  }
  if (p.tree)
    problems.push({
      path: `phases.${i}.retry`,
      message:
        'retry and tree cannot be combined: a phase builds either trees (V-STAR) or failed/retry pairs (R^3L); set one of them to null',
    });
}

/**
 * A dpo phase's preference dataset: its path made absolute (against the working directory; run.json
 * records it so) and every row checked (activities/data/preference-dataset.ts), the characters
 * against the task's alphabet.
 */
function datasetProblems(cfg: RunConfig, p: Pick<DpoPhase, 'dataset'>, i: number, problems: { path: string; message: string }[]): void {
  p.dataset.path = resolvePath(p.dataset.path);
  let alphabet: string | undefined;
  try {
    alphabet = getTask(cfg.task.name, cfg.task.options).alphabet;
  } catch {
    alphabet = undefined; // a bad task option is reported where the task is resolved
  }
  try {
    loadPreferenceDataset(p.dataset, { alphabet });
  } catch (err) {
    if (!(err instanceof PreferenceDatasetError)) throw err;
    problems.push({ path: `phases.${i}.dataset.${err.field}`, message: err.message });
  }
}

/**
 * A reward-model run (`model.classifier`) and its reward_model phases: the model and the phase kinds
 * agree; each dataset (and the eval dataset) checked as the dpo phase's; the held-out fraction
 * leaves rows on both sides; the longest pair (BOS + prompt + completion + EOS) fits the model's
 * positions.
 */
function rewardModelProblems(cfg: RunConfig, problems: { path: string; message: string }[]): void {
  const classifier = cfg.model.classifier;
  let task: ReturnType<typeof getTask> | undefined;
  try {
    task = getTask(cfg.task.name, cfg.task.options);
  } catch {
    task = undefined; // a bad task option is reported where the task is resolved
  }
  let longest = 0;
  const measure = (rows: readonly { prompt: string; chosen: string; rejected: string }[]) => {
    for (const r of rows) longest = Math.max(longest, 2 + [...r.prompt].length + Math.max([...r.chosen].length, [...r.rejected].length));
  };
  cfg.phases.forEach((p, i) => {
    if (classifier && p.kind !== 'reward_model') {
      problems.push({
        path: `phases.${i}.kind`,
        message: `model.classifier is true (a reward model, which cannot generate): every phase must be "reward_model", got "${p.kind}"; train the policy in a separate run that uses the exported reward model`,
      });
    }
    if (p.kind !== 'reward_model') return;
    if (!classifier) {
      problems.push({
        path: `phases.${i}.kind`,
        message: 'a reward_model phase trains a sequence classifier: set model.classifier: true (and only reward_model phases)',
      });
    }
    datasetProblems(cfg, p, i, problems);
    let rows: ReturnType<typeof loadPreferenceDataset> = [];
    try {
      rows = loadPreferenceDataset(p.dataset, { alphabet: task?.alphabet });
    } catch {
      return; // reported by datasetProblems
    }
    measure(rows);
    const e = p.eval;
    if (e.dataset) {
      e.dataset.path = resolvePath(e.dataset.path);
      try {
        measure(loadPreferenceDataset({ ...p.dataset, path: e.dataset.path }, { alphabet: task?.alphabet }));
      } catch (err) {
        if (!(err instanceof PreferenceDatasetError)) throw err;
        problems.push({ path: `phases.${i}.eval.dataset.path`, message: err.message });
      }
    } else if (e.fraction > 0) {
      const k = heldOutCount(rows.length, e.fraction);
      if (k < 1 || k >= rows.length) {
        problems.push({
          path: `phases.${i}.eval.fraction`,
          message: `${e.fraction} of the dataset's ${rows.length} rows holds out ${k}: leave at least one row on each side (or give eval.dataset)`,
        });
      }
    }
  });
  if (!classifier || !task || longest === 0) return;
  const positions = cfg.model.maxPositions ?? Math.ceil((1 + task.maxPromptChars + task.maxCompletionChars + 4) / 8) * 8;
  if (longest > positions) {
    problems.push({
      path: 'model.maxPositions',
      message: `the longest preference pair side is ${longest} tokens (BOS + prompt + completion + EOS) but the model has ${positions} positions${cfg.model.maxPositions === undefined ? ' (the task-derived default)' : ''}: give model.maxPositions >= ${longest}`,
    });
  }
}

/**
 * A run on `data`: its file references made canonical URIs (relative paths against `baseDir`), and
 * the task set to `data` (a config that names a built-in task too is refused: one prompt source).
 */
function dataProblems(cfg: RunConfig, input: unknown, baseDir: string | undefined, problems: { path: string; message: string }[]): void {
  const given = (input as { task?: { name?: unknown } } | null)?.task;
  if (!cfg.data) {
    if (cfg.task.name === DATASET_TASK)
      problems.push({ path: 'task.name', message: `task "${DATASET_TASK}" is a run on a dataset: give data` });
    return;
  }
  if (given !== undefined && given.name !== DATASET_TASK) {
    problems.push({ path: 'task', message: 'give either a built-in task or data (the prompts of a run come from one of them), not both' });
  }
  cfg.task = { name: DATASET_TASK, options: {} };
  cfg.data.train = resolveDataUri(cfg.data.train, baseDir);
  if (cfg.data.eval !== null) cfg.data.eval = resolveDataUri(cfg.data.eval, baseDir);
}

/** `reward.functions` and `reward.compose`: module paths made absolute, the composition validated with defaults filled. */
function rewardProblems(cfg: RunConfig, baseDir: string | undefined, problems: { path: string; message: string }[]): void {
  const r = cfg.reward;
  if (!r.functions) {
    if (r.compose) problems.push({ path: 'reward.compose', message: 'compose combines reward.functions: give them' });
    return;
  }
  if (r.spec)
    problems.push({ path: 'reward.spec', message: 'give either reward.spec (one registry reward) or reward.functions, not both' });
  const sub: { path: string; message: string }[] = [];
  const composition = resolveRewardFunctions(r.functions, r.compose, baseDir, sub);
  for (const p of sub) problems.push({ path: `reward.${p.path}`, message: p.message });
  if (composition) r.compose = composition as unknown as Record<string, unknown>;
}

/**
 * The README's main job (`npm start`, i.e. `durable-rl train` without a config file, and
 * bench/main-job.ts): the defaults above, whose phases are its SFT warm-up and GRPO, plus a
 * retention policy so that its store stays bounded (6 of its 75 checkpoints, 12 bytes per
 * parameter each, instead of all of them): the last 3 and every 24th — 0 (the initial weights),
 * 24 (the end of the warm-up, evaluated as "before RL" and the rl phase's KL reference, kept for
 * it anyway while the phase runs), 48 and 72. The moments stay on each kept checkpoint, so
 * `resume-from --step N` works from every one of them (test/unit/run/retention.test.ts).
 */
export const MAIN_JOB = { retention: { keepLast: 3, keepEvery: 24, optimizerState: 'all' } } as const satisfies RunConfigInput;

/** The main job's config (`MAIN_JOB` validated, defaults filled). */
export function mainJobConfig(): RunConfig {
  return parseRunConfig(MAIN_JOB, 'the main job');
}

/**
 * Validates a run config, filling defaults; ConfigError names every bad field. `baseDir`: the
 * directory relative data paths resolve against (the config file's; default the working directory).
 */
export function parseRunConfig(input: unknown, what = 'run config', opts: { baseDir?: string } = {}): RunConfig {
  return parseVersionedConfig(input ?? {}, RUN_CONFIG_VERSION, what, opts);
}

/**
 * A config stored by an earlier run (a workflow input, run.json's config): one without `version`
 * was written before versions existed (version 1) and is migrated to the current version first.
 */
export function parseStoredRunConfig(input: unknown, what = 'stored run config'): RunConfig {
  return parseVersionedConfig(input, UNVERSIONED, what, {});
}

function parseVersionedConfig(input: unknown, unstated: number, what: string, opts: { baseDir?: string }): RunConfig {
  const version = configVersionOf(input, unstated);
  const bad = versionProblem(version);
  if (bad) throw new ConfigError(what, [{ path: 'version', message: bad }]);
  if (version === RUN_CONFIG_VERSION) {
    const removed = removedFieldProblems(input);
    if (removed.length > 0) throw new ConfigError(what, removed);
  }
  const cfg = parseConfig(runConfigSchema, migrateRunConfig(input, version), what);
  const problems: { path: string; message: string }[] = [];
  dataProblems(cfg, input, opts.baseDir, problems);
  rewardProblems(cfg, opts.baseDir, problems);
  // a pretrained model's directory resolves like a dataset path: against the config file's directory
  if (cfg.model.from !== null) cfg.model.from = resolveDataUri(cfg.model.from, opts.baseDir);
  // an environment module, like a reward module: against the config file's directory
  const envModule = cfg.environment?.module;
  if (envModule !== undefined && !isAbsolute(envModule)) cfg.environment!.module = resolvePath(opts.baseDir ?? process.cwd(), envModule);
  let step = 0;
  let items = 0;
  let refillItems = 0;
  cfg.phases.forEach((p, i) => {
    if (p.kind === 'rl' && p.loss.name !== 'clipped_surrogate') {
      problems.push({ path: `phases.${i}.loss.name`, message: `an rl phase trains with "clipped_surrogate" (got "${p.loss.name}")` });
    }
    if (p.kind === 'rl') pairLoss(cfg, p, i, problems);
    if (p.kind === 'rl') treeProblems(p, i, problems);
    if (p.kind === 'rl') retryProblems(p, i, problems);
    if (p.kind === 'rl' && p.dynamicSampling.mode === 'refill') {
      // Refill prompts come from a region of the train stream past the planned ones (workflows/run-plan.ts): the stream has 2^32 items.
      refillItems += p.steps * p.dynamicSampling.maxRounds * refillRoundPrompts(p);
    }
    // The offline dpo and reward_model phases read their own dataset, not the task's train stream.
    items +=
      p.steps * (p.kind === 'sft' ? p.batchSize * p.updatesPerStep : p.kind === 'dpo' || p.kind === 'reward_model' ? 0 : p.promptsPerStep);
    if (p.kind === 'dpo') datasetProblems(cfg, p, i, problems);
    if (p.kind === 'rl' && p.miniBatches > p.promptsPerStep * p.groupSize) {
      problems.push({
        path: `phases.${i}.miniBatches`,
        message: `${p.miniBatches} mini-batches but a step has only ${p.promptsPerStep * p.groupSize} samples (promptsPerStep × groupSize)`,
      });
    }
    const updates = p.steps * (p.kind === 'sft' ? p.updatesPerStep : 1);
    if (p.warmupSteps > updates)
      problems.push({
        path: `phases.${i}.warmupSteps`,
        message: `${p.warmupSteps} warm-up updates but the phase has only ${updates} optimizer updates`,
      });
    step += p.steps;
  });
  rewardModelProblems(cfg, problems);
  if (cfg.rollout.weights === 'bf16' && cfg.model.lora) {
    problems.push({
      path: 'rollout.weights',
      message:
        'bf16 rollout weights halve what rollouts read per checkpoint, but a LoRA checkpoint holds only the adapters (the frozen base is read once per process): remove rollout.weights or model.lora',
    });
  }
  if (step > 1_000_000) problems.push({ path: 'phases', message: `${step} steps in all; at most 1 000 000` });
  if (items + refillItems > 0xffffffff) {
    problems.push({
      path: 'phases',
      message: `the phases draw ${items} train items and reserve ${refillItems} for dynamicSampling refill rounds; the train stream has 2^32: lower steps, promptsPerStep or dynamicSampling.maxRounds, or raise minKeepRate`,
    });
  }
  if (problems.length > 0) throw new ConfigError(what, problems);
  return cfg;
}

/** Reads a YAML (.yaml/.yml) or JSON file and validates it; errors name the file and the field. */
export function loadRunConfig(file: string): RunConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `cannot read the file: ${(err as Error).message}` }]);
  }
  let doc: unknown;
  try {
    doc = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new ConfigError(file, [
      { path: '', message: `not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0]}` },
    ]);
  }
  return parseRunConfig(doc ?? {}, file, { baseDir: dirname(resolvePath(file)) });
}
