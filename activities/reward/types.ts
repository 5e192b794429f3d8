/**
 * The typed reward API of durable-rl.
 *
 * A reward is a named function from a sample (prompt, completion, optional reference and metadata)
 * to a scalar reward, optional named components (logged as metrics, composable) and optional
 * per-token process rewards. Rewards may be async and may score one sample (`score`) or a batch
 * (`scoreBatch`, for rewards that amortise work such as a judge or a reward model). Every reward
 * declares its options as a zod schema so that a run config can name it and its options and have
 * them validated before a workflow starts (see `registry.ts`).
 *
 * Errors are data: a reward signals a problem by throwing (with a message that says what is wrong);
 * `run.ts` records the error per sample and applies the run's error policy. A reward never returns
 * 0 to mean "I could not score this".
 */
import type { Logger } from '../common/log.js';
import { parseConfig } from '../common/config.js';
import type { z } from 'zod';

/** One tool call made by the policy during a rollout (name + JSON arguments). */
export interface ToolCall {
  name: string;
  /** Parsed JSON arguments of the call, as the rollout recorded them. */
  arguments: Record<string, unknown>;
  /** Optional call id, as OpenAI-style tool calls carry one. */
  id?: string;
  /**
   * What the call cost, as the environment that ran it measured it (e.g. price × tokens of a
   * routed model call, Router-R1), for the `efficiency` reward's `call_cost`.
   */
  cost?: number;
}

/** A sample to score: one completion of one prompt. */
export interface RewardSample {
  /** Row key of the prompt (`TaskItem.promptId`: `{task}-{split}-{index:06d}`). */
  promptId: string;
  /** Row key of the sample within its prompt's group. */
  sampleId: string | number;
  /** The prompt text as the policy saw it. */
  prompt: string;
  /** The completion text to score. */
  completion: string;
  /** Reference answer(s) from the data set; several references are allowed (BLEU, exact match). */
  reference?: string | string[];
  /** Free-form per-prompt data from the data set (test cases, choices, rubrics, expected tool calls). */
  metadata?: Record<string, unknown>;
  /** Number of prompt tokens, when the rollout knows it. */
  promptTokens?: number;
  /** Number of completion tokens, when the rollout knows it (length rewards prefer it to characters). */
  completionTokens?: number;
  /** Tool calls made during the rollout, for tool-use and efficiency rewards. */
  toolCalls?: ToolCall[];
  /**
   * The turns of a multi-turn episode (issue 15), in order: the policy's turns and the observations
   * answering them. `completion` is then the whole episode after the prompt; the outcome is read
   * from the last policy turn. Absent for single-completion rollouts.
   */
  turns?: RewardTurn[];
}

/** One turn of a multi-turn episode, as rewards see it. */
export interface RewardTurn {
  /** `assistant`: a turn the policy generated; `tool`: an observation (tool output, or the error of a malformed turn). */
  role: 'assistant' | 'tool';
  /** The policy's text as generated (end-of-turn token excluded), or the observation's content. */
  text: string;
  /** Assistant turns: the calls parsed from the turn (none for a final or malformed turn). */
  toolCalls?: ToolCall[];
  /** Assistant turns: what was wrong, when the turn's calls were malformed. */
  malformed?: string;
  /** Tokens of the turn (the policy's sampled tokens, or the observation segment's), when the rollout knows them. */
  tokens?: number;
}

/** What a reward returns for one sample. */
export interface RewardResult {
  /** The scalar reward. Must be finite: NaN and ±Infinity are recorded as errors by `run.ts`. */
  reward: number;
  /** Named parts of the reward (e.g. `format`, `accuracy`), logged as metrics. */
  components?: Record<string, number>;
  /** Per-token (process) rewards, one per completion token, where the reward provides them. */
  processRewards?: number[];
}

/** A JSON-serialisable value: what reward state may hold (it travels in run state). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Context of one scoring call. */
export interface RewardContext {
  /** The training step being scored. */
  step: number;
  /** Aborted when the sample's (or batch's) timeout expires or the activity is cancelled. */
  signal: AbortSignal;
  /** Logger tagged with the reward's name. */
  log: Logger;
  /**
   * Explicit, serialisable state of a stateful reward (e.g. the tightening reference of an
   * efficiency reward), as held in run state. Undefined for stateless rewards; a stateful reward
   * falls back to its `initialState()` when it is missing.
   */
  state?: JsonValue;
}

/**
 * A ready-to-use reward: its name, validated options and the way it scores. Exactly one of
 * `score` or `scoreBatch` is required; `run.ts` calls `scoreBatch` when present.
 */
export interface RewardFn<O = unknown> {
  /** Registry name, e.g. `math_equivalence`. */
  readonly name: string;
  /** The zod schema its options were validated against. */
  readonly optionsSchema: z.ZodType;
  /** The validated options, defaults filled. */
  readonly options: O;
  score?(sample: RewardSample, ctx: RewardContext): RewardResult | Promise<RewardResult>;
  /** Scores a batch; must return one result per sample, in order. */
  scoreBatch?(samples: readonly RewardSample[], ctx: RewardContext): Promise<RewardResult[]>;
  /** For stateful rewards: the state at the start of a run. */
  initialState?(): JsonValue;
  /**
   * For stateful rewards: the next state from the previous one and the samples and results of a
   * finished step. Pure: the same inputs give the same state, so a replayed step agrees.
   */
  updateState?(state: JsonValue, scored: readonly { sample: RewardSample; result: RewardResult | null }[]): JsonValue;
  /** Releases resources (HTTP agents, temp dirs). Optional. */
  close?(): Promise<void>;
}

/** How a run config names a reward: `{ name: 'math_equivalence', options: {...} }`. */
export interface RewardSpec {
  name: string;
  options?: unknown;
}

/** What a definition's `create` builds: the scoring part of a RewardFn (its identity is added by `instantiateReward`). */
export type RewardScorer<O = unknown> = Omit<RewardFn<O>, 'name' | 'optionsSchema' | 'options'>;

/**
 * A registry entry: a reward kind. `create` receives options already validated against
 * `optionsSchema` (defaults filled); `instantiateReward` validates and names the result.
 */
export interface RewardDefinition<S extends z.ZodType = z.ZodType> {
  /** Registry name (lower snake case). */
  name: string;
  /** One line: what it rewards. */
  description: string;
  /** The paper or standard the reward comes from, if any. */
  source?: string;
  optionsSchema: S;
  create(options: z.output<S>): RewardScorer<z.output<S>>;
}

/** Typed helper: keeps the link between a definition's schema and its `create` argument. */
export function defineReward<S extends z.ZodType>(def: RewardDefinition<S>): RewardDefinition<S> {
  return def;
}

/**
 * A ready reward of a definition: options validated against its schema (defaults filled; a
 * ConfigError names a bad field), the scorer built, and the reward's name and options attached.
 */
export function instantiateReward<S extends z.ZodType>(def: RewardDefinition<S>, rawOptions: unknown): RewardFn<z.output<S>> {
  const options = parseConfig(def.optionsSchema, rawOptions ?? {}, `options of reward ${def.name}`);
  return { ...def.create(options), name: def.name, optionsSchema: def.optionsSchema, options };
}

/** All references of a sample as a list (empty when it has none). */
export function referencesOf(sample: RewardSample): string[] {
  const r = sample.reference;
  if (r === undefined) return [];
  return Array.isArray(r) ? r : [r];
}

/** The single reference of a sample, or an error that says the data set must provide one. */
export function requireReference(sample: RewardSample, rewardName: string): string[] {
  const refs = referencesOf(sample);
  if (refs.length === 0) {
    throw new Error(
      `reward ${rewardName} needs a reference answer but sample ${sample.promptId}/${sample.sampleId} has none: ` +
        'add a `reference` column to the prompt data set',
    );
  }
  return refs;
}
