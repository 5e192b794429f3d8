/**
 * The API of a built-in synthetic task: a seeded generator of prompts with verifiable references,
 * the gold completion of each prompt (for supervised warm-up), the reward that checks completions,
 * and what a character-level model needs to know (alphabet, longest prompt and completion).
 */
import type { z } from 'zod';
import type { RewardDefinition, RewardFn, RewardSpec } from '../reward/types.js';

/** Train and eval problems never overlap (see `split.ts`). */
export type Split = 'train' | 'eval';

/** One prompt of a task: the row a rollout starts from and a reward scores against. */
export interface TaskItem {
  /** Row key of the prompt in every step table: `{task}-{split}-{index:06d}`, unique within a task and split. */
  promptId: string;
  /** The text the policy sees. */
  prompt: string;
  /** The reference answer the reward compares with (the sum; Countdown's target). */
  reference: string;
  /** JSON data the reward reads (Countdown: `numbers`, `target`; a dataset's unmapped columns); a built-in task's always carries `task` and `split`. */
  metadata: Record<string, unknown>;
  /** The prompt as chat messages, when it is one (a dataset's conversational prompt, or one with a system message); `prompt` is their plain rendering. */
  messages?: { role: string; content: string }[];
}

/** A task with validated options. */
export interface Task<O = unknown> {
  /** Registry name, e.g. `countdown`. */
  readonly name: string;
  /** The zod schema its options were validated against (the difficulty knobs). */
  readonly optionsSchema: z.ZodType;
  /** The validated options, defaults filled. */
  readonly options: O;
  /**
   * `count` prompts of a split, items `offset .. offset+count-1` of the (unbounded) seeded stream.
   * Item `i` depends only on `(seed, split, i)` and the options, so any slice can be made anywhere
   * (a step takes its own slice, a shard its own part) and agrees with every other. Problems are
   * drawn with replacement: a small problem space repeats problems within a split, never across.
   */
  prompts(seed: number, split: Split, count: number, offset?: number): TaskItem[];
  /** The gold completion of an item (what the policy should write after the prompt), for SFT. */
  sftTarget(item: TaskItem): string;
  /**
   * Where a completion's answer first goes wrong (optional): the index in `completion` (UTF-16 code
   * units, as `String.prototype.slice` counts) of the first character no correct answer has there;
   * `completion.length` (or the index of trailing whitespace) when the text is a correct answer cut
   * short; null when the completion is correct or the task cannot say (e.g. an answer in tags).
   * Used by the rl phase's `retry` option (R^3L's reflect-then-retry restarts a failed sample from
   * this point, activities/rollout/retry-rollout.ts); a task without it gets the option's fallback.
   */
  firstError?(item: TaskItem, completion: string): number | null;
  /** The reward to score this task with: a registry name and options matching the task's options. */
  readonly reward: RewardSpec;
  /** The definition of that reward kind, to register (see `registerTaskRewards`). */
  readonly rewardDefinition: RewardDefinition;
  /** A ready reward function for `reward` (no registry needed). */
  createReward(): RewardFn;
  /**
   * Every character prompts and gold completions use, each once, for `CharTokenizer.fromAlphabet`.
   * A model generating from this alphabet can write any well-formed answer of the task.
   */
  readonly alphabet: string;
  /**
   * How many items the eval split has, when it is finite (a dataset's held-out rows); undefined: as
   * many as asked for (the seeded synthetic tasks). An evaluation takes at most this many.
   */
  readonly evalItems?: number;
  /** Longest prompt under these options, in characters (code points). */
  readonly maxPromptChars: number;
  /** Longest gold completion under these options, in characters; a generation budget should be at least this. */
  readonly maxCompletionChars: number;
}

/** What a definition's `create` builds: a Task without its identity (name, schema, options), which `getTask` attaches. */
export type TaskBody<O = unknown> = Omit<Task<O>, 'name' | 'optionsSchema' | 'options'>;

/** A registry entry: a task kind. `create` receives options already validated (defaults filled). */
export interface TaskDefinition<S extends z.ZodType = z.ZodType> {
  /** Registry name (lower snake case). */
  name: string;
  /** One line: what the task asks. */
  description: string;
  /** The paper or project the task comes from. */
  source?: string;
  optionsSchema: S;
  create(options: z.output<S>): TaskBody<z.output<S>>;
}

/** Typed helper: keeps the link between a definition's schema and its `create` argument. */
export function defineTask<S extends z.ZodType>(def: TaskDefinition<S>): TaskDefinition<S> {
  return def;
}
