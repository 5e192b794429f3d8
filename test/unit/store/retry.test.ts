/** Retry policy: which errors are transient, backoff bounds, attempt counting (no real sleeping). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CounterRng } from '../../../activities/common/rng.js';
import { backoffMs, describeError, isTransient, withRetry } from '../../../activities/store/retry.js';

function sdkError(name: string, status?: number): Error {
  const e = new Error(`${name} message`);
  e.name = name;
  if (status !== undefined) Object.assign(e, { $metadata: { httpStatusCode: status } });
  return e;
}

function netError(code: string): Error {
  return Object.assign(new Error(`connect ${code}`), { code });
}

const policy = { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 1000 };

describe('retry', () => {
  it('classifies transient and final errors', () => {
    for (const e of [
      sdkError('SlowDown', 503),
      sdkError('InternalError', 500),
      sdkError('Unknown', 502),
      sdkError('TooManyRequests', 429),
      sdkError('RequestTimeout', 400),
      sdkError('ConditionalRequestConflict', 409),
      netError('ECONNRESET'),
      netError('ECONNREFUSED'),
      sdkError('TimeoutError'),
      Object.assign(new Error('wrapped'), { cause: netError('EPIPE') }),
    ]) {
      assert.equal(isTransient(e), true, describeError(e));
    }
    for (const e of [
      sdkError('AccessDenied', 403),
      sdkError('NoSuchKey', 404),
      sdkError('PreconditionFailed', 412),
      sdkError('InvalidArgument', 400),
      sdkError('BucketAlreadyExists', 409),
      new TypeError('bug'),
      'a string',
      null,
    ]) {
      assert.equal(isTransient(e), false, String(e));
    }
  });

  it('backoff is capped exponential with jitter in [0, cap)', () => {
    const rng = new CounterRng('test', 1);
    for (let retry = 1; retry <= 8; retry++) {
      const cap = Math.min(1000, 100 * 2 ** (retry - 1));
      for (let k = 0; k < 20; k++) {
        const d = backoffMs(policy, retry, new CounterRng('t', retry, k));
        assert.ok(d >= 0 && d < cap, `retry ${retry}: ${d} in [0, ${cap})`);
      }
    }
    assert.equal(backoffMs(policy, 3, rng), backoffMs(policy, 3, rng), 'a pure function of the stream and retry number');
    const spread = new Set(Array.from({ length: 20 }, (_, k) => backoffMs(policy, 4, new CounterRng('t', k))));
    assert.ok(spread.size > 10, 'jitter spreads concurrent callers');
  });

  it('retries transient errors and returns the first success', async () => {
    const delays: number[] = [];
    let calls = 0;
    const r = await withRetry(
      'op',
      policy,
      async (attempt) => {
        calls++;
        assert.equal(attempt, calls);
        if (attempt < 3) throw sdkError('SlowDown', 503);
        return 'done';
      },
      {
        sleep: async (ms) => {
          delays.push(ms);
        },
      },
    );
    assert.equal(r, 'done');
    assert.equal(calls, 3);
    assert.equal(delays.length, 2);
    assert.ok(delays[0]! < 100 && delays[1]! < 200);
  });

  it('stops after maxAttempts with the last error', async () => {
    let calls = 0;
    const retries: number[] = [];
    await assert.rejects(
      withRetry(
        'op',
        policy,
        async () => {
          calls++;
          throw netError('ECONNRESET');
        },
        { sleep: async () => undefined, onRetry: (i) => retries.push(i.attempt) },
      ),
      /ECONNRESET/,
    );
    assert.equal(calls, 4);
    assert.deepEqual(retries, [1, 2, 3]);
  });

  it('does not retry final errors', async () => {
    let calls = 0;
    await assert.rejects(
      withRetry(
        'op',
        policy,
        async () => {
          calls++;
          throw sdkError('AccessDenied', 403);
        },
        { sleep: async () => assert.fail('must not sleep') },
      ),
      /AccessDenied/,
    );
    assert.equal(calls, 1);
  });

  it('describes SDK and network errors in one line', () => {
    assert.equal(describeError(sdkError('SlowDown', 503)), 'SlowDown HTTP 503: SlowDown message');
    assert.equal(describeError(netError('ECONNREFUSED')), 'Error ECONNREFUSED: connect ECONNREFUSED');
  });
});
