/**
 * Retries with capped exponential backoff and "full jitter" (the delay before retry n is uniform in
 * [0, min(maxDelay, baseDelay * 2^n)), as in Brooker, "Exponential Backoff And Jitter", AWS
 * Architecture Blog, 2015), for transient object-store failures: throttling (429, 503 SlowDown),
 * other 5xx answers, timeouts and dropped connections. Anything else (403, 404, 412, bad request)
 * is final at once.
 *
 * The jitter is drawn from the project's counter-based RNG (common/rng.ts), keyed by process and
 * call, so retries of concurrent calls spread out without any global random state.
 */
import { CounterRng } from '../common/rng.js';
import { logger } from '../common/log.js';

export interface RetryPolicy {
  /** Total attempts, first try included (1 = no retries). */
  maxAttempts: number;
  /** Backoff cap before the first retry, in milliseconds; doubles with each retry. */
  baseDelayMs: number;
  /** Upper bound of any single backoff, in milliseconds. */
  maxDelayMs: number;
}

const log = logger('store');

/** Network-level error codes of Node and undici that mean "try again". */
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTCONN',
  'ESOCKETTIMEDOUT',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** S3 error codes (the `<Code>` of the error body) that are transient. */
const TRANSIENT_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'TooManyRequests',
  'RequestThrottled',
  'RequestTimeout',
  'RequestTimeoutException',
  'InternalError',
  'ServiceUnavailable',
  'TimeoutError',
  'ConditionalRequestConflict',
  'XMinioServerNotInitialized',
]);

interface ErrorLike {
  name?: unknown;
  code?: unknown;
  Code?: unknown;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
  cause?: unknown;
}

/** HTTP status of an AWS SDK error, if it came from an HTTP answer. */
export function httpStatus(err: unknown): number | undefined {
  return (err as ErrorLike | null)?.$metadata?.httpStatusCode;
}

/** True for throttling, 5xx, 408/409-conflict and network errors; false for everything else. */
export function isTransient(err: unknown): boolean {
  if (err === null || typeof err !== 'object') return false;
  const e = err as ErrorLike;
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined) {
    if (status >= 500 || status === 429 || status === 408) return true;
    if (status === 409 && e.name === 'ConditionalRequestConflict') return true;
  }
  if (typeof e.name === 'string' && TRANSIENT_NAMES.has(e.name)) return true;
  if (typeof e.Code === 'string' && TRANSIENT_NAMES.has(e.Code)) return true;
  if (typeof e.code === 'string' && TRANSIENT_CODES.has(e.code)) return true;
  if (e.$retryable) return true;
  // Socket errors arrive wrapped by the SDK's HTTP handler.
  if (e.cause && e.cause !== err) return isTransient(e.cause);
  return false;
}

let callCounter = 0;

/** The backoff before retry number `retry` (1-based), with its jitter drawn from `rng`. */
export function backoffMs(policy: RetryPolicy, retry: number, rng: CounterRng): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  return Math.floor(rng.uniform(retry) * cap);
}

export interface RetryOptions {
  /** Which errors to retry; default `isTransient`. */
  retryable?: (err: unknown) => boolean;
  /** Waits `ms`; replaceable so unit tests need not sleep. */
  sleep?: (ms: number) => Promise<void>;
  /** Called before each retry (after the failure of attempt `attempt`). */
  onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
}

const realSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs `fn(attempt)` until it succeeds, a non-transient error occurs, or `policy.maxAttempts`
 * attempts have failed; then rethrows the last error. `what` names the operation in log records.
 */
export async function withRetry<T>(
  what: string,
  policy: RetryPolicy,
  fn: (attempt: number) => Promise<T>,
  options: RetryOptions = {},
): Promise<T> {
  const retryable = options.retryable ?? isTransient;
  const sleep = options.sleep ?? realSleep;
  const rng = new CounterRng(`retry:${process.pid}`, (callCounter = (callCounter + 1) >>> 0));
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      if (attempt >= policy.maxAttempts || !retryable(err)) throw err;
      const delayMs = backoffMs(policy, attempt, rng);
      log.warn({ what, attempt, maxAttempts: policy.maxAttempts, delayMs, err: describeError(err) }, 'transient store error, retrying');
      options.onRetry?.({ attempt, delayMs, error: err });
      await sleep(delayMs);
    }
  }
}

/** A one-line description of an SDK or Node error: name, status, code, message. */
export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const e = err as Error & ErrorLike;
  const parts = [e.name];
  const status = e.$metadata?.httpStatusCode;
  if (status !== undefined) parts.push(`HTTP ${status}`);
  if (typeof e.code === 'string') parts.push(e.code);
  const msg = e.message && e.message !== e.name ? e.message : '';
  return `${parts.join(' ')}${msg ? `: ${msg}` : ''}`;
}
