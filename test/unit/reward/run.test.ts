import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { scoreSamples } from '../../../activities/reward/run.js';
import { z } from '../../../activities/common/config.js';
import type { RewardContext, RewardFn, RewardResult, RewardSample } from '../../../activities/reward/types.js';

const samples: RewardSample[] = Array.from({ length: 6 }, (_, i) => ({
  promptId: `p${Math.floor(i / 2)}`,
  sampleId: i % 2,
  prompt: 'q',
  completion: `c${i}`,
}));

/** A reward whose behaviour per completion is given by a table. */
function scripted(behaviour: Record<string, (ctx: RewardContext) => RewardResult | Promise<RewardResult>>): RewardFn {
  return {
    name: 'scripted',
    optionsSchema: z.object({}),
    options: {},
    score: (s, ctx) => (behaviour[s.completion] ?? (() => ({ reward: 1, components: { ok: 1 } })))(ctx),
  };
}

const never = (ctx: RewardContext) =>
  new Promise<RewardResult>((_, reject) => ctx.signal.addEventListener('abort', () => reject(new Error('aborted late'))));

const faulty = scripted({
  c1: () => {
    throw new Error('judge said no');
  },
  c2: () => ({ reward: Number.NaN }),
  c3: () => ({ reward: 1, components: { len: Number.POSITIVE_INFINITY } }),
  c4: never,
  c5: () => 'oops' as unknown as RewardResult,
});

test('drop: every kind of failure is recorded per sample with its text; counts add up', async () => {
  const { rows, counts } = await scoreSamples(faulty, samples, { onError: 'drop', timeoutMs: 50 });
  assert.deepEqual(rows[0], {
    promptId: 'p0',
    sampleId: 0,
    reward: 1,
    components: { ok: 1 },
    processRewards: null,
    error: null,
    errorKind: null,
    dropped: false,
  });
  assert.deepEqual(
    rows.map((r) => r.errorKind),
    [null, 'threw', 'non_finite', 'non_finite', 'timeout', 'invalid'],
  );
  assert.equal(rows[1]!.error, 'judge said no');
  assert.match(rows[2]!.error!, /non-finite reward \(NaN\)/);
  assert.match(rows[3]!.error!, /non-finite component len \(Infinity\)/);
  assert.match(rows[4]!.error!, /timed out after 50 ms/);
  assert.match(rows[5]!.error!, /returned "oops"/);
  for (const r of rows.slice(1)) {
    assert.equal(r.reward, null, 'a dropped sample has no reward, never a silent zero');
    assert.equal(r.dropped, true);
  }
  assert.deepEqual(counts, { total: 6, scored: 1, errors: 5, thrown: 1, timeouts: 1, nonFinite: 2, invalid: 1, dropped: 5, defaulted: 0 });
});

test('default: failed samples get the stated value and keep their error', async () => {
  const { rows, counts } = await scoreSamples(faulty, samples, { onError: 'default', defaultReward: -1, timeoutMs: 50 });
  assert.deepEqual(
    rows.map((r) => r.reward),
    [1, -1, -1, -1, -1, -1],
  );
  assert.ok(rows.slice(1).every((r) => r.error !== null && !r.dropped));
  assert.equal(counts.defaulted, 5);
  assert.equal(counts.dropped, 0);
});

test('fail: a non-retryable RewardError naming the sample and the error', async () => {
  const onlyThrows = scripted({
    c3: () => {
      throw new Error('bad reference');
    },
  });
  await assert.rejects(
    () => scoreSamples(onlyThrows, samples, { onError: 'fail' }),
    (e: unknown) => {
      assert.ok(e instanceof ApplicationFailure);
      assert.equal(e.nonRetryable, true);
      assert.equal(e.type, 'RewardError');
      assert.match(e.message, /reward scripted failed on sample p1\/1 \(threw\): bad reference/);
      return true;
    },
  );
});

test('the default policy is fail', async () => {
  await assert.rejects(() => scoreSamples(faulty, samples), ApplicationFailure);
});

test('a timeout aborts the context signal', async () => {
  let aborted = false;
  const fn = scripted({
    c0: (ctx) =>
      new Promise((resolve) =>
        ctx.signal.addEventListener('abort', () => {
          aborted = true;
          resolve({ reward: 5 });
        }),
      ),
  });
  const { rows } = await scoreSamples(fn, samples.slice(0, 1), { onError: 'drop', timeoutMs: 20 });
  assert.equal(rows[0]!.errorKind, 'timeout');
  assert.equal(aborted, true);
});

test('concurrency is bounded', async () => {
  let inFlight = 0;
  let peak = 0;
  const fn: RewardFn = {
    name: 'slow',
    optionsSchema: z.object({}),
    options: {},
    async score() {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, 5));
      inFlight--;
      return { reward: 0.5 };
    },
  };
  const many = Array.from({ length: 20 }, (_, i) => ({ ...samples[0]!, sampleId: i }));
  const progress: number[] = [];
  const { rows } = await scoreSamples(fn, many, { concurrency: 3 }, { onProgress: (d) => progress.push(d) });
  assert.equal(peak, 3);
  assert.equal(rows.length, 20);
  assert.deepEqual(
    progress,
    Array.from({ length: 20 }, (_, i) => i + 1),
  );
});

test('scoreBatch: chunks, results in order, a wrong-length batch fails its samples', async () => {
  const seen: number[] = [];
  const fn: RewardFn = {
    name: 'batchy',
    optionsSchema: z.object({}),
    options: {},
    async scoreBatch(batch) {
      seen.push(batch.length);
      if (batch.some((s) => s.completion === 'c5')) return [{ reward: 1 }];
      return batch.map((s) => ({ reward: Number(s.completion.slice(1)), processRewards: [0, 1] }));
    },
  };
  const { rows, counts } = await scoreSamples(fn, samples, { onError: 'drop', batchSize: 4 });
  assert.deepEqual(seen.sort(), [2, 4]);
  assert.deepEqual(
    rows.slice(0, 4).map((r) => r.reward),
    [0, 1, 2, 3],
  );
  assert.deepEqual(rows[0]!.processRewards, [0, 1]);
  assert.match(rows[4]!.error!, /scoreBatch returned 1 results for 2 samples/);
  assert.equal(counts.invalid, 2);
});

test('cancellation of the whole call rejects instead of recording errors', async () => {
  const ctl = new AbortController();
  const fn = scripted({ c0: never, c1: never });
  setTimeout(() => ctl.abort(new Error('activity cancelled')), 20);
  await assert.rejects(
    () => scoreSamples(fn, samples.slice(0, 2), { onError: 'drop', timeoutMs: 10_000 }, { signal: ctl.signal }),
    /activity cancelled/,
  );
});

test('stateful rewards see the given state, or their initial state', async () => {
  const fn: RewardFn = {
    name: 'stateful',
    optionsSchema: z.object({}),
    options: {},
    initialState: () => ({ ref: 3 }),
    score: (_s, ctx) => ({ reward: (ctx.state as { ref: number }).ref }),
  };
  assert.equal((await scoreSamples(fn, samples.slice(0, 1))).rows[0]!.reward, 3);
  assert.equal((await scoreSamples(fn, samples.slice(0, 1), {}, { state: { ref: 7 } })).rows[0]!.reward, 7);
});

test('a bad policy names the field', async () => {
  await assert.rejects(
    () => scoreSamples(faulty, samples, { onError: 'default' }),
    /defaultReward: onError "default" needs a finite defaultReward/,
  );
  await assert.rejects(
    () => scoreSamples(faulty, samples, { onError: 'drop', defaultReward: 0 }),
    /defaultReward: defaultReward is only used/,
  );
  await assert.rejects(() => scoreSamples(faulty, samples, { onError: 'skip' as 'drop' }), /onError/);
  await assert.rejects(() => scoreSamples(faulty, samples, { timeoutMs: 0 }), /timeoutMs/);
});
