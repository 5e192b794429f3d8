/**
 * What every activity of a training run shares: the store it works in, heartbeats carrying the
 * activity's latest progress, and the rule that bad input fails at once (non-retryable) while I/O
 * trouble is retried.
 *
 * Heartbeats go out on every `progress()` call (the SDK throttles them) and on a timer. Engine
 * sessions run on their own worker thread (model/session-host.ts), so the timer keeps firing during
 * the longest onnxruntime call: a learner micro-batch of a large model that takes minutes does not
 * time the activity out under the default 10 s heartbeat timeout. `signal` is the activity's
 * cancellation signal; the engine checks it between session runs (trainStep, score, generate take
 * it), so a cancelled activity stops at the next micro-batch or decode step.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { ConfigError } from '../common/config.js';
import { logger } from '../common/log.js';
import { ModelInputError } from '../model/engine-types.js';
import { IntegrityError, InvalidUriError } from '../store/errors.js';
import type { ObjectStore } from '../store/object-store.js';
import { openStore } from '../store/open.js';
import { countingStore } from '../store/counting.js';

const log = logger('run');

/** Progress an activity reports in its heartbeats (shown in the Web UI's pending activity). */
export type Progress = Record<string, string | number | boolean | null>;

export interface StageContext {
  store: ObjectStore;
  /** Records progress; it goes out with the next heartbeat. */
  progress(p: Progress): void;
  /** Aborted when the activity is cancelled (never, outside an activity); pass it to engine calls. */
  signal: AbortSignal;
}

function inActivity(): Context | undefined {
  try {
    return Context.current();
  } catch {
    return undefined;
  }
}

/** Errors that no retry can fix: the input is wrong. */
function isPermanent(err: unknown): boolean {
  return (
    err instanceof ConfigError ||
    err instanceof ModelInputError ||
    err instanceof InvalidUriError ||
    (err instanceof ApplicationFailure && err.nonRetryable === true)
  );
}

/**
 * The failure type of an attempt that failed after the call's retry window (workflows/run-control.ts
 * BLOCKED_FAILURE_TYPE, spelled again because activities do not import workflow code; a unit test
 * checks they agree).
 */
export const BLOCKED_FAILURE_TYPE = 'StageBlocked';

/**
 * How long a call may retry before its failing attempt gives up to the workflow: what its
 * schedule-to-close adds to one attempt's start-to-close (workflows/stage-options.ts sets the
 * schedule-to-close to start-to-close + the stage's blockedAfterMinutes). Undefined when the call
 * has no schedule-to-close (then Temporal's retry policy alone decides).
 */
export function retryWindowMs(info: { scheduleToCloseTimeoutMs?: number; startToCloseTimeoutMs?: number }): number | undefined {
  const total = info.scheduleToCloseTimeoutMs ?? 0;
  const attempt = info.startToCloseTimeoutMs ?? 0;
  return total > 0 && total > attempt ? total - attempt : undefined;
}

/**
 * The failure an attempt that failed with retryable `err` gives up with: a non-retryable
 * `StageBlocked` naming the error, how long the call has been failing and the attempt, once `now`
 * is `retryWindowMs` or more past the call's first schedule; undefined before (Temporal retries).
 */
export function blockedFailure(
  what: string,
  err: unknown,
  info: { scheduledTimestampMs: number; attempt: number; scheduleToCloseTimeoutMs?: number; startToCloseTimeoutMs?: number },
  now: number,
): ApplicationFailure | undefined {
  const window = retryWindowMs(info);
  const failing = now - info.scheduledTimestampMs;
  if (window === undefined || failing < window) return undefined;
  const e = err instanceof Error ? err : new Error(String(err));
  const seconds = Math.round(failing / 1000);
  return ApplicationFailure.create({
    message: `${what}: ${e.message} (failing for ${seconds} s, attempt ${info.attempt})`,
    type: BLOCKED_FAILURE_TYPE,
    nonRetryable: true,
    details: [{ errorType: e.name, attempt: info.attempt, failingSeconds: seconds }],
    cause: e,
  });
}

/**
 * Runs an activity body with its store open, heartbeating on progress and every third of the
 * heartbeat timeout. Outside an activity (unit tests, scripts) it just runs. A corrupt committed
 * object (IntegrityError, naming the object) is retried twice — a flaky read may heal — then fails
 * for good: a damaged object does not repair itself. Any other error that is still failing once
 * the call has been retrying for its window (`retryWindowMs`) gives up as a non-retryable
 * `StageBlocked` failure, so the workflow can show the run blocked (it calls the stage again).
 * The bytes the body read and wrote through the store are added to an object result as `io`
 * (`StageIo`, summed into the step metrics by the workflow).
 */
export async function stage<T>(what: string, storeUri: string, fn: (ctx: StageContext) => Promise<T>): Promise<T> {
  const ctx = inActivity();
  const store = countingStore(openStore(storeUri));
  let latest: Progress = { stage: what };
  const progress = (p: Progress) => {
    latest = { stage: what, ...p };
    ctx?.heartbeat(latest);
  };
  const timeoutMs = ctx?.info.heartbeatTimeoutMs ?? 0;
  const timer = ctx && timeoutMs > 0 ? setInterval(() => ctx.heartbeat(latest), Math.max(100, Math.floor(timeoutMs / 3))) : undefined;
  try {
    const result = await fn({ store, progress, signal: ctx?.cancellationSignal ?? new AbortController().signal });
    if (result !== null && typeof result === 'object' && !Array.isArray(result)) {
      const { bytesRead, bytesWritten } = store.counts();
      Object.assign(result, { io: { bytesRead, bytesWritten } });
    }
    return result;
  } catch (err) {
    // A cancelled attempt (the workflow cancelled the call, or this worker shuts down past its
    // grace period) ends as the cancellation: the SDK reports a shutdown's as a failed attempt, so
    // the server hands the call to another worker at once. Never StageBlocked: nothing is broken.
    if (ctx?.cancellationSignal.aborted) throw err;
    if (err instanceof ApplicationFailure && err.nonRetryable) throw err;
    if (isPermanent(err)) {
      throw ApplicationFailure.create({
        message: `${what}: ${(err as Error).message}`,
        type: (err as Error).name,
        nonRetryable: true,
        cause: err as Error,
      });
    }
    // A retryable error once the call has been retrying longer than its window: give up to the
    // workflow, which shows the run blocked with this error and calls the stage again.
    const blocked =
      ctx && !(err instanceof IntegrityError && ctx.info.attempt >= 3) ? blockedFailure(what, err, ctx.info, Date.now()) : undefined;
    if (blocked) {
      log.warn({ err, what, attempt: ctx?.info.attempt }, 'still failing after the retry window: the run shows blocked');
      throw blocked;
    }
    if (err instanceof IntegrityError) {
      const attempt = ctx?.info.attempt ?? 1;
      if (attempt >= 3) {
        throw ApplicationFailure.create({
          message: `${what}: ${err.message} (attempt ${attempt}; not retried further)`,
          type: err.name,
          nonRetryable: true,
          cause: err,
        });
      }
      log.error({ err, what, attempt }, 'integrity check failed; the attempt will be retried');
    }
    throw err;
  } finally {
    if (timer) clearInterval(timer);
    await store.close();
  }
}
