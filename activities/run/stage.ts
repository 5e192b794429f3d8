/**
 * What every activity of a training run shares: the store it works in, heartbeats carrying the
 * activity's latest progress, and the rule that bad input fails at once (non-retryable) while I/O
 * trouble is retried.
 *
 * Heartbeats go out on every `progress()` call (the SDK throttles them) and on a timer. The timer
 * only fires between onnxruntime calls: a session run holds the JS thread. So the heartbeat timeout
 * (config.workflow.heartbeatTimeoutSeconds) must exceed the longest single onnxruntime call of the
 * run — a generation step or one micro-batch of trainStep, well under a second for the main job;
 * raise it for large models on slow hosts.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { ConfigError } from '../common/config.js';
import { logger } from '../common/log.js';
import { ModelInputError } from '../model/engine-types.js';
import { IntegrityError, InvalidUriError } from '../store/errors.js';
import type { ObjectStore } from '../store/object-store.js';
import { openStore } from '../store/open.js';

const log = logger('run');

/** Progress an activity reports in its heartbeats (shown in the Web UI's pending activity). */
export type Progress = Record<string, string | number | boolean | null>;

export interface StageContext {
  store: ObjectStore;
  /** Records progress; it goes out with the next heartbeat. */
  progress(p: Progress): void;
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
 * Runs an activity body with its store open, heartbeating on progress and every third of the
 * heartbeat timeout. Outside an activity (unit tests, scripts) it just runs. A corrupt committed
 * object (IntegrityError, naming the object) is retried twice — a flaky read may heal — then fails
 * for good: a damaged object does not repair itself.
 */
export async function stage<T>(what: string, storeUri: string, fn: (ctx: StageContext) => Promise<T>): Promise<T> {
  const ctx = inActivity();
  const store = openStore(storeUri);
  let latest: Progress = { stage: what };
  const progress = (p: Progress) => {
    latest = { stage: what, ...p };
    ctx?.heartbeat(latest);
  };
  const timeoutMs = ctx?.info.heartbeatTimeoutMs ?? 0;
  const timer = ctx && timeoutMs > 0 ? setInterval(() => ctx.heartbeat(latest), Math.max(100, Math.floor(timeoutMs / 3))) : undefined;
  try {
    return await fn({ store, progress });
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    if (isPermanent(err)) {
      throw ApplicationFailure.create({
        message: `${what}: ${(err as Error).message}`,
        type: (err as Error).name,
        nonRetryable: true,
        cause: err as Error,
      });
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
