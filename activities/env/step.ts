/**
 * The default `step` of an environment: a final turn ends the episode, a malformed turn is answered
 * by an observation saying what was wrong, and each call of a `calls` turn runs through its tool
 * (`runToolCall`: its own timeout, infrastructure failures thrown as `ToolInfraError` for the
 * episode to retry that call alone, any other exception of the tool an error observation).
 */
import {
  DEFAULT_TOOL_TIMEOUT_MS,
  ToolInfraError,
  type ChatMessage,
  type Environment,
  type ParsedTurn,
  type StepResult,
  type ToolCall,
  type ToolContext,
} from './types.js';

/** The observation of a malformed turn or a failed call: `error: <what was wrong>`. */
export function errorObservation(error: string, name?: string): ChatMessage {
  return { role: 'tool', content: `error: ${error}`, ...(name ? { name } : {}) };
}

/**
 * Runs one call of a known tool (arguments already checked by the parser) under the tool's timeout
 * (`timeoutMs`, default `DEFAULT_TOOL_TIMEOUT_MS`; the signal the tool sees aborts then, or when
 * `ctx.signal` does). Returns the observation text. Throws `ToolInfraError` when the tool does or
 * when it times out (retryable: the episode retries this call alone); any other exception becomes
 * an `error: …` observation, as a deterministic failure of the call.
 */
export async function runToolCall(env: Environment, call: ToolCall, ctx: ToolContext): Promise<string> {
  const tool = env.tools.find((t) => t.spec.name === call.name);
  if (!tool) return `error: unknown tool "${call.name}"`;
  const timeoutMs = tool.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  const ac = new AbortController();
  const onAbort = () => ac.abort(ctx.signal.reason);
  if (ctx.signal.aborted) ac.abort(ctx.signal.reason);
  else ctx.signal.addEventListener('abort', onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new ToolInfraError(`tool ${call.name} did not answer within ${timeoutMs} ms`);
      ac.abort(err);
      reject(err);
    }, timeoutMs);
  });
  try {
    const out = await Promise.race([Promise.resolve().then(() => tool.run(call.arguments, { ...ctx, signal: ac.signal })), timedOut]);
    // an answer given after the activity was cancelled may be the cancellation's doing (a sandbox
    // reports its killed program as timed out): never recorded as the call's outcome
    ctx.signal.throwIfAborted();
    if (typeof out !== 'string') return `error: tool ${call.name} returned ${out === null ? 'null' : typeof out}, not text`;
    return out;
  } catch (err) {
    if (err instanceof ToolInfraError) throw err;
    if (ctx.signal.aborted) throw err; // cancelled: not the call's outcome
    return `error: ${(err as Error)?.message ?? String(err)}`;
  } finally {
    clearTimeout(timer);
    ctx.signal.removeEventListener('abort', onAbort);
  }
}

/** The default `step`: final → done; malformed → its error as the observation; calls → one observation per call, in order. */
export async function defaultStep(env: Environment, turn: ParsedTurn, ctx: ToolContext): Promise<StepResult> {
  switch (turn.kind) {
    case 'final':
      return { observations: [], done: true };
    case 'malformed':
      return { observations: [errorObservation(turn.error)], done: false };
    case 'calls': {
      const observations: ChatMessage[] = [];
      for (const call of turn.calls) observations.push({ role: 'tool', name: call.name, content: await runToolCall(env, call, ctx) });
      return { observations, done: false };
    }
  }
}

/** An environment's step for a turn: its own `step` when it has one, else `defaultStep`. */
export function stepEnvironment(
  env: Environment,
  turn: ParsedTurn,
  history: readonly ChatMessage[],
  ctx: ToolContext,
): Promise<StepResult> {
  return env.step ? env.step(turn, history, ctx) : defaultStep(env, turn, ctx);
}
