/**
 * The environment API of durable-rl's multi-turn episodes (issue 15).
 *
 * An environment turns a data row into the first messages of an episode (`reset`), declares the
 * tools the policy may call (JSON schemas, the chat template's `tools`), and answers each policy
 * turn with observations until the episode is done (`step`, by default: every parsed call run
 * through its tool, a final answer done). The rollout stage (activities/rollout/episode.ts) drives
 * it turn by turn:
 *
 *   messages = env.reset(row)                         the prompt
 *   loop: policy samples a turn (stops at stopStrings(format) or end of turn)
 *         turn = parseTurn(format, text, tools)       final | calls | malformed
 *         { observations, done } = step(turn)          every turn, a final one too; done ends the episode
 *         renderObservation(...)                       (not done) template glue + observations, one segment, loss mask 0
 *   until done, or a limit (turns, tokens, seconds), or a tool whose infrastructure failed for good
 *
 * The policy's sampled tokens are kept as sampled; only observations and glue are tokenised.
 * Everything here is deterministic given the row and the calls: a retried activity that replays an
 * episode's completed turns gets the same observations.
 */
import type { ChatMessage } from '../model/chat.js';
import type { z } from 'zod';
import type { RewardFn, ToolCall } from '../reward/types.js';

export type { ChatMessage, ToolCall };

/** A tool the policy may call, declared with a JSON schema (the chat template's `tools` entry's `function`). */
export interface ToolSpec {
  /** The name the policy calls it by (in the hermes format, the JSON's `name`). */
  name: string;
  /** One line for the model (rendered into the system prompt by chat templates with tools). */
  description: string;
  /** JSON schema of the arguments, `{ type: 'object', properties, required }`; calls are checked against it (argcheck.ts). */
  parameters: Record<string, unknown>;
}

/**
 * What a parser makes of one assistant turn's text.
 * - `final`: no tool call; with the default step the episode ends with this turn (its `<answer>` is
 *   the outcome). An environment's own `step` decides: `done: false` answers it like any turn.
 * - `calls`: one or more well-formed calls of known tools with arguments matching their schemas.
 * - `malformed`: a call that cannot run (bad JSON, unknown tool, arguments against the schema,
 *   an unclosed tag); `error` says what was wrong and becomes the observation. Counted in metrics.
 */
export type ParsedTurn =
  { kind: 'final'; text: string } | { kind: 'calls'; calls: ToolCall[]; text: string } | { kind: 'malformed'; error: string; text: string };

/** Where one tool call runs: deterministic given (arguments, ctx). */
export interface ToolContext {
  /** Aborted when the call's own timeout expires or the activity is cancelled. */
  signal: AbortSignal;
  /** The run's seed (a tool with randomness derives it from (seed, promptId, sampleId, turn)). */
  seed: number;
  promptId: string;
  sampleId: number;
  /** 0-based index of the policy turn whose call this is. */
  turn: number;
}

/**
 * An infrastructure failure of a tool (a sandbox that did not start, a service that did not
 * answer): retryable, retried alone with the tool's own timeout; an episode whose tool
 * infrastructure failed for good is marked and left out of the advantages, never scored 0.
 * Bad arguments are not infrastructure failures: a tool returns an error text for them (an
 * observation the policy sees).
 */
export class ToolInfraError extends Error {
  override readonly name = 'ToolInfraError';
}

/** A tool: its declaration and how it runs. */
export interface Tool {
  spec: ToolSpec;
  /**
   * Runs one call whose arguments already match `spec.parameters`. Returns the observation text
   * (an error text for arguments the schema could not rule out, e.g. division by zero); throws
   * `ToolInfraError` for infrastructure failures. Must be deterministic given (args, ctx).
   */
  run(args: Record<string, unknown>, ctx: ToolContext): Promise<string> | string;
  /** Per-call timeout in ms (default: the episode's `DEFAULT_TOOL_TIMEOUT_MS`). */
  timeoutMs?: number;
  /**
   * The tag of this tool in the `tagged` format (default: `spec.name`): `<c>12*34</c>` with tag
   * `c`. Short tags are cheaper for a char-level model to learn and to write.
   */
  tag?: string;
}

/** Default per-call timeout of a tool that declares none. */
export const DEFAULT_TOOL_TIMEOUT_MS = 10_000;

/** Bounds of one episode; reaching one ends it with that finish reason. */
export interface EnvironmentLimits {
  /** Most policy turns (a turn is one generation: tool calls or the final answer). */
  maxTurns: number;
  /** Most tokens of the whole episode (prompt, policy turns, observations and glue). */
  maxTotalTokens: number;
  /** Most wall-clock seconds of the episode (tool time included). Wall time is not deterministic: prefer token and turn limits in tests. */
  maxSeconds: number;
}

/**
 * The tool-call format, the way the model writes calls:
 * - `hermes`: `<tool_call>{"name": …, "arguments": {…}}</tool_call>` (Qwen2.5/Qwen3, Hermes
 *   templates; observations rendered by the model's chat template as role `tool` messages);
 * - `tagged`: for char-level models trained from scratch, no chat template: a call is
 *   `<TAG>args</TAG>` (TAG: the tool's `tag`; args: the schema's parameters in order, joined by `|`),
 *   an observation `<o>text</o>`, the answer `<a>…</a>` (format.ts).
 */
export type ToolCallFormat = 'hermes' | 'tagged';

/** A data row an episode starts from: a dataset row or a built-in environment's item (the fields of tasks' `TaskItem`). */
export interface EnvRow {
  /** Row key in every step table. */
  promptId: string;
  /** The prompt text (the user message, or the plain rendering of `messages`). */
  prompt: string;
  /** The reference answer the outcome reward compares with. */
  reference: string;
  /** JSON data the environment and rewards read (a built-in item's `env`, `split`, hop entities). */
  metadata: Record<string, unknown>;
  /** The prompt as chat messages, when the row has them. */
  messages?: { role: string; content: string }[];
}

/** What `step` makes of a parsed turn. */
export interface StepResult {
  /**
   * Role `tool` messages (one per call, in call order: the i-th is recorded as the i-th call's
   * output; one for a malformed turn, saying what was wrong). Appended to the episode as one
   * loss-mask-0 segment before the next policy turn. With `done` nothing follows, so they are not
   * tokenised: they stay in the conversation and as the calls' outputs (which rewards see). The
   * default step gives none with `done`.
   */
  observations: ChatMessage[];
  /**
   * True when the episode ends with this turn (finish reason "stop"; "length" if the turn ran out
   * of its token budget). The default step: on a final answer. An environment's own step may end
   * an episode on any turn (a `submit` call) or go on after a final-looking one (`done: false`).
   */
  done: boolean;
}

/** A built-in environment's own data: task items by seed, like activities/tasks/ (train/eval disjoint). */
export interface EnvTaskSource {
  /** Items `offset .. offset+count-1` of the split's seeded stream; item i depends on (seed, split, i) only. */
  prompts(seed: number, split: 'train' | 'eval', count: number, offset?: number): EnvRow[];
  /** Every character a prompt, a gold trajectory (turns and observations) and the tags use, for `CharTokenizer.fromAlphabet`. */
  readonly alphabet: string;
  /** Longest prompt, in characters. */
  readonly maxPromptChars: number;
  /** Longest gold episode after the prompt (policy turns, observations and glue), in characters. */
  readonly maxEpisodeChars: number;
}

/**
 * A whole episode after `reset`, as messages: assistant turns (their text as the policy writes it
 * in the environment's format) and the role `tool` observations answering them. A gold
 * trajectory (SFT) ends with the final assistant turn.
 */
export type Trajectory = ChatMessage[];

export interface Environment {
  /** Registry name (`calculator`, `lookup`) or the user's module's. */
  name: string;
  tools: Tool[];
  limits: EnvironmentLimits;
  format: ToolCallFormat;
  /** The episode's first messages from a data row. Deterministic. */
  reset(row: EnvRow): ChatMessage[];
  /**
   * Observations for a parsed turn, or done. Called on every policy turn, whatever its kind (a
   * final answer too), with `history` the conversation so far ending with that turn; `done` ends
   * the episode, otherwise the next policy turn follows its observations (limits still apply). A
   * `ToolInfraError` it throws retries the whole step (the config's `toolRetry`); one that persists
   * ends the episode "tool_failure". Optional: the default (`defaultStep` in step.ts) ends the
   * episode on `final`, answers `malformed` with its error, and runs each call through its Tool.
   */
  step?(turn: ParsedTurn, history: readonly ChatMessage[], ctx: ToolContext): Promise<StepResult>;
  /** The environment's own task items (built-ins); a user's environment may run on a dataset instead. */
  task?: EnvTaskSource;
  /** The gold trajectory of a row, for SFT (assistant turns and their observations, after `reset`). */
  gold?(row: EnvRow): Trajectory;
  /** The trajectory reward (outcome of the final answer, efficiency of the calls); a run's `reward` config may replace it. */
  reward?: RewardFn;
}

/** Typed helper for environment modules (`export default defineEnvironment({ … })`): checks the shape at compile time. */
export function defineEnvironment(e: Environment): Environment {
  return e;
}

/** A built-in environment kind: options validated by its schema (defaults filled), then `create`. */
export interface EnvironmentDefinition<S extends z.ZodType = z.ZodType> {
  /** Registry name (`environmentByName`). */
  name: string;
  /** One line: what the episodes ask. */
  description: string;
  optionsSchema: S;
  create(options: z.output<S>): Environment;
}

/** Typed helper: keeps the link between a definition's schema and its `create` argument. */
export function defineEnvironmentKind<S extends z.ZodType>(def: EnvironmentDefinition<S>): EnvironmentDefinition<S> {
  return def;
}
