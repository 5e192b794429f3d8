/**
 * What every activity of a training run shares: the store it works in, a heartbeat that keeps
 * beating (with the activity's latest progress) while onnxruntime computes, and the rule that bad
 * input fails at once (non-retryable) while I/O trouble is retried.
 */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { ConfigError } from '../common/config.js';
import { logger } from '../common/log.js';
import { ModelInputError } from '../model/engine.js';
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
  return err instanceof ConfigError || err instanceof ModelInputError || err instanceof InvalidUriError
    || (err instanceof ApplicationFailure && err.nonRetryable === true);
}

/**
 * Runs an activity body with its store open and heartbeats every third of the heartbeat timeout
 * (so a live worker busy in onnxruntime is never taken for dead). Outside an activity (unit tests,
 * scripts) it just runs. A corrupt committed object (IntegrityError) is retried: another attempt
 * may read a good copy, and the message names the object.
 */
export async function stage<T>(what: string, storeUri: string, fn: (ctx: StageContext) => Promise<T>): Promise<T> {
  const ctx = inActivity();
  const store = openStore(storeUri);
  let latest: Progress = { stage: what };
  const progress = (p: Progress) => {
    latest = { stage: what, ...p };
  };
  const timeoutMs = ctx?.info.heartbeatTimeoutMs ?? 0;
  const timer = ctx && timeoutMs > 0 ? setInterval(() => ctx.heartbeat(latest), Math.max(100, Math.floor(timeoutMs / 3))) : undefined;
  try {
    return await fn({ store, progress });
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    if (isPermanent(err)) {
      throw ApplicationFailure.create({ message: `${what}: ${(err as Error).message}`, type: (err as Error).name, nonRetryable: true, cause: err as Error });
    }
    if (err instanceof IntegrityError) log.error({ err, what }, 'integrity check failed; the attempt will be retried');
    throw err;
  } finally {
    if (timer) clearInterval(timer);
    await store.close();
  }
}
