/** Bounded concurrency (activities/common/pool.ts): results in input order, at most `limit` in flight, no new call after a failure. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mapLimit } from '../../../activities/common/pool.js';

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('mapLimit: results in input order though later items finish first; at most limit calls in flight', async () => {
  for (const limit of [1, 3, 10]) {
    let inFlight = 0;
    let max = 0;
    const done: number[] = [];
    const out = await mapLimit([5, 4, 3, 2, 1], limit, async (ms, i) => {
      max = Math.max(max, ++inFlight);
      await tick(ms * 2);
      inFlight--;
      done.push(i);
      return ms * 10;
    });
    assert.deepEqual(out, [50, 40, 30, 20, 10]);
    assert.equal(max, Math.min(limit, 5), `limit ${limit}`);
    if (limit > 1) assert.notDeepEqual(done, [0, 1, 2, 3, 4], `limit ${limit}: calls overlapped`);
  }
  assert.deepEqual(await mapLimit([], 4, async () => 1), []);
});

test('mapLimit: the first failure rejects the map and no further item starts; a bad limit is refused', async () => {
  const started: number[] = [];
  await assert.rejects(
    mapLimit([0, 1, 2, 3, 4, 5], 2, async (x) => {
      started.push(x);
      await tick(1);
      if (x === 1) throw new Error('item 1 failed');
      return x;
    }),
    /item 1 failed/,
  );
  await tick(10);
  assert.ok(started.length <= 3, `started ${started.join(', ')} after the failure`);
  await assert.rejects(
    mapLimit([1], 0, async (x) => x),
    /mapLimit: limit must be a positive integer, got 0/,
  );
});
