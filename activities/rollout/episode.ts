/**
 * Multi-turn episodes (issue 15): the policy's turns, its tool calls in the environment's format,
 * and the observations an environment (activities/env/) answers them with, for every episode of one
 * rollout shard at once.
 *
 *   turn t, for every live episode together:   ONE batched generation (generateTurn) over
 *     prompt + the episode's completion so far; a turn stops at the format's stop strings, an
 *     end-of-turn (stop) token, or its budget
 *   each episode:  parseTurn → final | calls | malformed → the environment's step (by default:
 *                  final → done, each call through its tool and retried alone, malformed → its
 *                  error); an environment's own step sees every turn, and its `done` ends the episode
 *                  observation text (renderObservation) tokenised ONCE as an "observation" segment
 *                  the live episodes' answers run concurrently (`toolConcurrency` at once), so a
 *                  slow or retrying tool holds up its own episode, not the others' tool calls
 *   limits:        maxTurns → "max_turns", maxTotalTokens → "length", maxSeconds → "max_seconds";
 *                  a tool whose infrastructure fails on every attempt → "tool_failure"
 *   record:        after every turn the state of every episode (onTurn), so a retried activity
 *                  resumes after the last completed turn (`resume`) and ends bitwise equal
 *
 * Exact tokens: the tokens the policy sampled are kept as sampled, with their behaviour logprobs
 * (generate.ts); the text of a turn is decoded for parsing only and never encoded back. Only the
 * observation segments (tool results and the template's glue) are tokenised; their tokens get
 * loss mask false and behaviour logprob 0.
 *
 * Randomness: the token at position p of turn t of sample s of prompt q is drawn from the stream
 * (seed, step, q, `${s}/${t}`) at p (`turnStream`), so it depends on nothing else: not the batch,
 * not the turns of other episodes, not an earlier attempt of the activity. Tools are deterministic
 * given (arguments, context). Wall time is the one limit that is not deterministic: a run that must
 * replay bitwise bounds its episodes by turns and tokens (maxSeconds only as a safety net); a
 * resumed episode keeps the seconds its recorded turns took.
 */
import { mapLimit } from '../common/pool.js';
import type { Generation } from '../model/generate.js';
import type { ChatRendering } from '../env/format.js';
import { parseTurn, renderObservation, stopStrings } from '../env/format.js';
import { errorObservation, runToolCall, stepEnvironment } from '../env/step.js';
import {
  ToolInfraError,
  type ChatMessage,
  type Environment,
  type EnvRow,
  type ParsedTurn,
  type StepResult,
  type ToolCall,
  type ToolContext,
} from '../env/types.js';
import type { RolloutsInput, SegmentRole } from '../store/schemas.js';
import { sampleAt, sampleStream, type SamplingParams } from './sampling.js';
import type { SequenceJob } from './policy.js';
import { badInput } from '../common/failures.js';

/** How an episode ended (rollouts.finish_reason). */
export type EpisodeFinish = 'stop' | 'length' | 'max_turns' | 'max_seconds' | 'tool_failure';

/** How a failing tool call is retried, alone, inside its turn (the environment config's `toolRetry`). */
export interface ToolRetryPolicy {
  /** Runs of one call at most (the first included); a call whose infrastructure fails on all of them fails the episode ("tool_failure"). */
  maxAttempts: number;
  /** Wait before the second run, in ms; each later wait is `backoffCoefficient` times the previous one. */
  initialBackoffMs: number;
  backoffCoefficient: number;
  /** Longest wait between two runs, in ms. */
  maxBackoffMs: number;
}

export const DEFAULT_TOOL_RETRY: ToolRetryPolicy = { maxAttempts: 5, initialBackoffMs: 100, backoffCoefficient: 2, maxBackoffMs: 2000 };

/** Episodes whose tool calls run at once within a turn, by default (`EpisodeOptions.toolConcurrency`). */
export const DEFAULT_TOOL_CONCURRENCY = 8;

/** One tool call of an episode as rollouts.tool_calls records it (JSON). */
export interface ToolCallRecord extends ToolCall {
  turn: number;
  /** The text the tool returned (the observation), or null when it failed. */
  output: string | null;
  /** Why the call failed for good (its infrastructure's last error), or null. */
  error: string | null;
  /** Runs of the tool, retries of infrastructure failures included. */
  attempts: number;
}

/**
 * The state of one episode after its completed turns: everything the next turn and the rollouts
 * row need, JSON-serialisable (numbers round-trip exactly through JSON).
 */
export interface EpisodeRecord {
  /** Completion tokens so far: policy turns and observation segments. */
  tokens: number[];
  /** Behaviour logprob per completion token (0 off the policy's turns). */
  logprobs: number[];
  segmentEnds: number[];
  segmentRoles: SegmentRole[];
  segmentTurns: number[];
  /** Policy turns taken. */
  turns: number;
  /** Set once the episode is over. */
  finishReason: EpisodeFinish | null;
  toolCalls: ToolCallRecord[];
  observations: string[];
  malformedTurns: number;
  /** The conversation: the environment's first messages, then assistant turns and tool observations. */
  messages: ChatMessage[];
  /** Wall seconds the completed turns took. */
  seconds: number;
}

/** What a shard records after each turn: the turns completed and every episode's state. */
export interface EpisodesCheckpoint {
  turnsCompleted: number;
  episodes: EpisodeRecord[];
}

/** A turn of one episode. */
export interface TurnKey {
  promptId: string;
  sampleId: number;
  turn: number;
}

/** One episode to run: a sample of a prompt. */
export interface EpisodeStart {
  promptId: string;
  sampleId: number;
  row: EnvRow;
  /** The environment's first messages (`env.reset(row)`). */
  messages: ChatMessage[];
  /** The prompt's tokens as fed to the model (BOS / template included). */
  promptTokens: readonly number[];
}

export interface EpisodeOptions {
  env: Environment;
  seed: number;
  step: number;
  /** Sampling of the policy's turns; `max_tokens` is the budget of ONE turn. */
  params: SamplingParams;
  /** End-of-turn / end-of-sequence token ids: a turn ends on one (kept, as the policy sampled it). */
  stopIds: readonly number[];
  /** The tokenizer's vocabulary size (logits beyond it are padding, never sampled). */
  vocabSize: number;
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  /** The model's chat template for hermes observations; null for char models (tagged). */
  chat: ChatRendering | null;
  /** One batched generation of every job (policy.ts `generateAll` with the policy's engine); `who` names each job's episode and turn. */
  generate(jobs: readonly SequenceJob[], maxNewTokens: number, who: readonly TurnKey[]): Promise<Generation[]>;
  toolRetry?: ToolRetryPolicy;
  /**
   * Most episodes whose tool calls (their environment's step) run at once within a turn (the
   * environment config's `toolConcurrency`; default `DEFAULT_TOOL_CONCURRENCY`). An episode's own
   * calls run in order; tools are deterministic given (arguments, context), so the results do not
   * depend on it, only how long a turn waits on its slowest tools.
   */
  toolConcurrency?: number;
  /** The state recorded after the last completed turn of an earlier attempt: the run continues from it. */
  resume?: EpisodesCheckpoint | null;
  /**
   * A tag that names other streams than the training step's (an evaluation's, `eval@v`): turn t of
   * sample s then draws from (seed, step, prompt, `${tag}/${s}/${t}`). Default none.
   */
  streamTag?: string;
  /** Called after every completed turn (all live episodes' turn t) with the state to record. */
  onTurn?(checkpoint: EpisodesCheckpoint): Promise<void>;
  /** Called as a turn starts: the turn and its live episodes (heartbeats, activity summaries). */
  onProgress?(p: { turn: number; live: number; episodes: number; liveEpisodes: string[] }): void;
  signal?: AbortSignal;
  /** Clock in ms (tests fix it); default performance.now. */
  now?: () => number;
  /** Waits between tool attempts (tests skip them); default setTimeout. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** The random stream of turn `turn` of one episode: (seed, step, prompt, `${sample}/${turn}`), with a tag `${tag}/${sample}/${turn}`. */
export function turnStream(seed: number, step: number, promptId: string, sampleId: number, turn: number, tag?: string) {
  return sampleStream({ seed, step, promptId, sampleId: tag === undefined ? `${sampleId}/${turn}` : `${tag}/${sampleId}/${turn}` });
}

const sleepFor = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (ms <= 0) return resolve();
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(signal.reason as Error);
      },
      { once: true },
    );
  });

/**
 * Runs `fn` (one tool call under its own timeout, env/step.ts `runToolCall`, or an environment's
 * own step), retrying its infrastructure failures (`ToolInfraError`, a timeout among them) alone, up
 * to the policy's attempts with exponential backoff. Any other exception is not an infrastructure
 * failure and propagates; so does cancellation of the activity.
 */
export async function retryTool<T>(
  fn: () => Promise<T>,
  policy: ToolRetryPolicy,
  opts: { signal?: AbortSignal; sleep?: (ms: number, signal?: AbortSignal) => Promise<void> } = {},
): Promise<{ ok: true; value: T; attempts: number } | { ok: false; error: string; attempts: number }> {
  const sleep = opts.sleep ?? sleepFor;
  let wait = policy.initialBackoffMs;
  let last = '';
  for (let attempt = 1; attempt <= policy.maxAttempts; attempt++) {
    opts.signal?.throwIfAborted();
    try {
      const value = await fn();
      opts.signal?.throwIfAborted(); // an answer after the cancellation may be its doing: not the call's outcome
      return { ok: true, value, attempts: attempt };
    } catch (err) {
      opts.signal?.throwIfAborted();
      if (!(err instanceof ToolInfraError)) throw err;
      last = err.message;
    }
    if (attempt < policy.maxAttempts) {
      await sleep(Math.min(wait, policy.maxBackoffMs), opts.signal);
      wait *= policy.backoffCoefficient;
    }
  }
  return { ok: false, error: `${last} (${policy.maxAttempts} attempts)`, attempts: policy.maxAttempts };
}

/**
 * The environment's answer to a parsed turn: its observations, the calls it made, whether the
 * episode is over (`done`), and why the tools' infrastructure failed for good (or null). An
 * environment's own `step` sees every turn, a final one too, and is retried as one call; without
 * one (the default step) a final turn is done, a malformed one answered with its error, and each
 * call of a `calls` turn run and retried alone.
 */
async function answerTurn(
  o: EpisodeOptions,
  parsed: ParsedTurn,
  history: readonly ChatMessage[],
  base: Omit<ToolContext, 'signal'>,
): Promise<{ observations: ChatMessage[]; calls: ToolCallRecord[]; done: boolean; failed: string | null }> {
  const policy = o.toolRetry ?? DEFAULT_TOOL_RETRY;
  const { env } = o;
  const ctx: ToolContext = { ...base, signal: o.signal ?? new AbortController().signal };
  if (env.step) {
    // the environment answers the turn itself: its step is retried as one call
    const r = await retryTool(() => stepEnvironment(env, parsed, history, ctx), policy, o);
    if (r.ok && !isStepResult(r.value))
      // the user's module, the same every attempt: the run waits for a fix (blocked, needs-user), never retries it
      throw badInput(
        `environment ${env.name}: step returned ${JSON.stringify(r.value)}, not { observations: ChatMessage[], done: boolean }`,
      );
    const calls = (parsed.kind === 'calls' ? parsed.calls : []).map((c, i) => ({
      ...c,
      turn: base.turn,
      output: r.ok ? (r.value.observations[i]?.content ?? null) : null,
      error: r.ok ? null : r.error,
      attempts: r.attempts,
    }));
    return r.ok
      ? { observations: r.value.observations, calls, done: r.value.done, failed: null }
      : { observations: [], calls, done: false, failed: r.error };
  }
  if (parsed.kind === 'final') return { observations: [], calls: [], done: true, failed: null };
  if (parsed.kind === 'malformed') return { observations: [errorObservation(parsed.error)], calls: [], done: false, failed: null };
  const observations: ChatMessage[] = [];
  const calls: ToolCallRecord[] = [];
  for (const call of parsed.calls) {
    const r = await retryTool(() => runToolCall(env, call, ctx), policy, o);
    calls.push({ ...call, turn: base.turn, output: r.ok ? r.value : null, error: r.ok ? null : r.error, attempts: r.attempts });
    if (!r.ok) return { observations, calls, done: false, failed: `tool ${call.name}: ${r.error}` };
    observations.push({ role: 'tool', name: call.name, content: r.value });
  }
  return { observations, calls, done: false, failed: null };
}

/** A user's `step` result has the shape the loop reads (a module environment is checked at load, its step's results only here). */
function isStepResult(v: unknown): v is StepResult {
  if (v === null || typeof v !== 'object') return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.done === 'boolean' &&
    Array.isArray(r.observations) &&
    r.observations.every((m) => m !== null && typeof m === 'object' && typeof (m as ChatMessage).content === 'string')
  );
}

function newRecord(start: EpisodeStart): EpisodeRecord {
  return {
    tokens: [],
    logprobs: [],
    segmentEnds: [],
    segmentRoles: [],
    segmentTurns: [],
    turns: 0,
    finishReason: null,
    toolCalls: [],
    observations: [],
    malformedTurns: 0,
    messages: [...start.messages],
    seconds: 0,
  };
}

function appendSegment(e: EpisodeRecord, tokens: readonly number[], logprobs: readonly number[] | null, role: SegmentRole, turn: number) {
  if (tokens.length === 0) return;
  e.tokens.push(...tokens);
  e.logprobs.push(...(logprobs ?? tokens.map(() => 0)));
  e.segmentEnds.push(e.tokens.length);
  e.segmentRoles.push(role);
  e.segmentTurns.push(turn);
}

/**
 * Where the text of a turn's tokens first holds one of `stops` (checked as each token arrives):
 * `ends(token)` is true on the token that completes a stop string.
 */
function stopWatcher(stops: readonly string[], decode: (ids: readonly number[]) => string) {
  const tokens: number[] = [];
  let seen = 0;
  const longest = Math.max(0, ...stops.map((s) => s.length));
  return (token: number): boolean => {
    tokens.push(token);
    if (stops.length === 0) return false;
    const text = decode(tokens);
    const from = Math.max(0, seen - longest + 1);
    seen = text.length;
    return stops.some((s) => text.indexOf(s, from) >= 0);
  };
}

/**
 * Runs the episodes of a shard turn by turn until each is over; returns each one's final state (in
 * the order of `starts`). With `resume` the recorded turns are not run again.
 */
export async function runEpisodes(starts: readonly EpisodeStart[], o: EpisodeOptions): Promise<EpisodeRecord[]> {
  const { env, params } = o;
  const now = o.now ?? (() => performance.now());
  const limits = env.limits;
  const stops = stopStrings(env.format, env.tools);
  const stopSet = new Set(o.stopIds);
  let episodes: EpisodeRecord[];
  let turn: number;
  if (o.resume) {
    if (o.resume.episodes.length !== starts.length)
      throw new Error(`the recorded episodes are ${o.resume.episodes.length}, this shard has ${starts.length}: not the same shard`);
    episodes = structuredClone(o.resume.episodes);
    turn = o.resume.turnsCompleted;
  } else {
    episodes = starts.map(newRecord);
    turn = 0;
  }
  for (; episodes.some((e) => e.finishReason === null); turn++) {
    o.signal?.throwIfAborted();
    const t0 = now();
    const live: number[] = [];
    const budgets: number[] = [];
    episodes.forEach((e, i) => {
      if (e.finishReason !== null) return;
      const left = limits.maxTotalTokens - starts[i]!.promptTokens.length - e.tokens.length;
      if (left <= 0) e.finishReason = 'length';
      else if (e.turns >= limits.maxTurns) e.finishReason = 'max_turns';
      else {
        live.push(i);
        budgets.push(Math.min(params.max_tokens, left));
      }
    });
    if (live.length === 0) break;
    o.onProgress?.({
      turn,
      live: live.length,
      episodes: episodes.length,
      liveEpisodes: live.map((i) => `${starts[i]!.promptId}/${starts[i]!.sampleId}`),
    });
    const jobs: SequenceJob[] = live.map((i, k) => {
      const s = starts[i]!;
      const stream = turnStream(o.seed, o.step, s.promptId, s.sampleId, turn, o.streamTag);
      const atStop = stopWatcher(stops, o.decode);
      return {
        prompt: [...s.promptTokens, ...episodes[i]!.tokens],
        pick: (logits, pos) => sampleAt(logits.subarray(0, o.vocabSize), params, stream, pos).token,
        ends: (token, pos) => atStop(token) || pos + 1 >= budgets[k]!,
      };
    });
    const who = live.map((i) => ({ promptId: starts[i]!.promptId, sampleId: starts[i]!.sampleId, turn }));
    const gens = await o.generate(jobs, Math.max(...budgets), who);
    // each live episode's turn: its tokens as sampled, parsed
    const policyTurns = live.map((i, k) => {
      const e = episodes[i]!;
      const tokens = gens[k]!.tokens.slice(0, budgets[k]);
      appendSegment(e, tokens, gens[k]!.logprobs.slice(0, tokens.length), 'policy', turn);
      e.turns++;
      const last = tokens[tokens.length - 1];
      const endedOnToken = last !== undefined && stopSet.has(last);
      const text = o.decode(endedOnToken ? tokens.slice(0, -1) : tokens);
      const parsed = parseTurn(env.format, text, env.tools);
      if (parsed.kind === 'malformed') e.malformedTurns++;
      return {
        i,
        parsed,
        history: [...e.messages, { role: 'assistant', content: text }] as ChatMessage[],
        endOfTurn: endedOnToken ? o.decode([last]) : '',
        cut: !endedOnToken && tokens.length >= budgets[k]! && !stops.some((x) => text.endsWith(x)),
      };
    });
    // the environment's answers: the episodes' tool calls run concurrently (a slow or retrying tool
    // holds up only its own episode's answer), each episode's from its own turn alone; taken in episode order
    // The first answer that fails fails the turn: the others' tools are told to stop (their signal
    // aborts with that failure), so none runs on beside the activity's next attempt.
    const turnAbort = new AbortController();
    const cancel = () => turnAbort.abort(o.signal!.reason);
    if (o.signal?.aborted) cancel();
    else o.signal?.addEventListener('abort', cancel, { once: true });
    let answers: Awaited<ReturnType<typeof answerTurn>>[];
    try {
      answers = await mapLimit(policyTurns, o.toolConcurrency ?? DEFAULT_TOOL_CONCURRENCY, ({ i, parsed, history }) =>
        answerTurn({ ...o, signal: turnAbort.signal }, parsed, history, {
          seed: o.seed,
          promptId: starts[i]!.promptId,
          sampleId: starts[i]!.sampleId,
          turn,
        }).catch((err: unknown) => {
          turnAbort.abort(err);
          throw err;
        }),
      );
    } finally {
      o.signal?.removeEventListener('abort', cancel);
    }
    for (const [k, { i, history, endOfTurn, cut }] of policyTurns.entries()) {
      const e = episodes[i]!;
      const s = starts[i]!;
      const answer = answers[k]!;
      const outOfTokens = limits.maxTotalTokens - s.promptTokens.length - e.tokens.length <= 0;
      e.toolCalls.push(...answer.calls);
      e.messages = [...history, ...answer.observations];
      if (answer.failed !== null) {
        e.finishReason = 'tool_failure';
        continue;
      }
      // done: no policy turn follows, so observations given with it stay in the conversation and the
      // calls' records (rewards see them) but are not appended as tokens
      if (answer.done) {
        e.finishReason = cut ? 'length' : 'stop';
        continue;
      }
      const obsText = renderObservation(env.format, { history, observations: answer.observations, chat: o.chat, endOfTurn });
      // an observation never takes the episode past its token limit (nor the model past its positions): it is cut there, and the episode ends
      const room = limits.maxTotalTokens - s.promptTokens.length - e.tokens.length;
      const obsIds = outOfTokens ? [] : o.encode(obsText).slice(0, room);
      appendSegment(e, obsIds, null, 'observation', turn);
      if (obsIds.length > 0) e.observations.push(answer.observations.map((m) => m.content).join('\n'));
      if (outOfTokens || obsIds.length >= room) e.finishReason = 'length';
      else if (e.turns >= limits.maxTurns) e.finishReason = 'max_turns';
    }
    const turnSeconds = (now() - t0) / 1000;
    for (const i of live) {
      const e = episodes[i]!;
      e.seconds += turnSeconds;
      if (e.finishReason === null && e.seconds > limits.maxSeconds) e.finishReason = 'max_seconds';
    }
    o.signal?.throwIfAborted(); // a turn finished under a cancellation is not recorded as one an uninterrupted run would make
    await o.onTurn?.({ turnsCompleted: turn + 1, episodes });
  }
  return episodes;
}

/** The tool calls of an episode as the reward library's `RewardSample.toolCalls`. */
export function rewardToolCalls(e: Pick<EpisodeRecord, 'toolCalls'>): ToolCall[] {
  return e.toolCalls.map(({ name, arguments: args }) => ({ name, arguments: args }));
}

/**
 * The episode columns of a rollouts row (with its completion: tokens, logprobs, text, finish
 * reason). The text is the whole completion decoded, a final stop token left out (as a single
 * completion's text leaves it out).
 */
export function episodeColumns(
  e: EpisodeRecord,
  decode: (ids: readonly number[]) => string,
  stopIds: ReadonlySet<number>,
): Pick<
  RolloutsInput,
  | 'completion_text'
  | 'completion_token_ids'
  | 'behaviour_logprobs'
  | 'finish_reason'
  | 'loss_mask'
  | 'segment_ends'
  | 'segment_roles'
  | 'segment_turns'
  | 'turns'
  | 'tool_calls'
  | 'observations'
  | 'malformed_turns'
> {
  const mask: boolean[] = [];
  let start = 0;
  e.segmentEnds.forEach((end, k) => {
    for (let j = start; j < end; j++) mask.push(e.segmentRoles[k] === 'policy');
    start = end;
  });
  return {
    completion_text: decode(e.tokens.length > 0 && stopIds.has(e.tokens[e.tokens.length - 1]!) ? e.tokens.slice(0, -1) : e.tokens),
    completion_token_ids: e.tokens,
    behaviour_logprobs: e.logprobs,
    finish_reason: e.finishReason ?? 'length',
    loss_mask: mask,
    segment_ends: e.segmentEnds,
    segment_roles: e.segmentRoles,
    segment_turns: e.segmentTurns,
    turns: e.turns,
    tool_calls: e.toolCalls.map((c) =>
      JSON.stringify({ turn: c.turn, name: c.name, arguments: c.arguments, output: c.output, error: c.error, attempts: c.attempts }),
    ),
    observations: e.observations,
    malformed_turns: e.malformedTurns,
  };
}
