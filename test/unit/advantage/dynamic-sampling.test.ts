import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dynamicSamplingOptionsSchema, selectGroups, selectedSamples } from '../../../activities/advantage/dynamic-sampling.js';
import { AdvantageInputError } from '../../../activities/advantage/types.js';
import { group } from './helpers.js';

const opts = (o: Record<string, unknown> = {}) => dynamicSamplingOptionsSchema.parse(o);
const pool = [...group('g1', [1, 0]), ...group('g2', [1, 1]), ...group('g3', [0, 0, 0]), ...group('g4', [0.5]), ...group('g5', [0, 1, 1])];

test('dynamic sampling keeps groups with reward variance, names the dropped ones and why', () => {
  const s = selectGroups(pool, 3, opts());
  assert.deepEqual(s.selected, ['g1', 'g5']);
  assert.deepEqual(s.dropped, [
    { groupId: 'g2', reason: 'zero-variance', reward: 1 },
    { groupId: 'g3', reason: 'zero-variance', reward: 0 },
    { groupId: 'g4', reason: 'single-sample', reward: 0.5 },
  ]);
  assert.equal(s.deficit, 1);
  assert.equal(s.keepRate, 0.4);
});

test('dynamic sampling asks for ceil(oversample * deficit / keepRate) more prompts', () => {
  assert.equal(selectGroups(pool, 3, opts()).morePrompts, 3); // 1.2 * 1 / 0.4
  assert.equal(selectGroups(pool, 4, opts({ oversample: 1 })).morePrompts, 5); // 2 / 0.4
  assert.equal(selectGroups(pool, 7, opts()).morePrompts, 15); // 1.2 * 5 / 0.4 = 15 exactly, not 16 from float noise
});

test('dynamic sampling with no informative group falls back to minKeepRate', () => {
  const flat = [...group('a', [1, 1]), ...group('b', [0, 0])];
  const s = selectGroups(flat, 2, opts());
  assert.equal(s.keepRate, 0);
  assert.equal(s.morePrompts, 24); // 1.2 * 2 / 0.1
});

test('dynamic sampling stops at the target: extra informative groups are surplus, nothing more is needed', () => {
  const s = selectGroups(pool, 1, opts());
  assert.deepEqual(s.selected, ['g1']);
  assert.deepEqual(s.surplus, ['g5']);
  assert.equal(s.deficit, 0);
  assert.equal(s.morePrompts, 0);
  assert.equal(s.exhausted, false);
});

test('dynamic sampling: after maxRefillRounds the short batch is exhausted (proceed) or an error (fail)', () => {
  const s = selectGroups(pool, 3, opts({ maxRefillRounds: 2 }), 2);
  assert.equal(s.exhausted, true);
  assert.equal(s.morePrompts, 0);
  assert.deepEqual(s.selected, ['g1', 'g5']);
  assert.equal(selectGroups(pool, 3, opts({ maxRefillRounds: 2 }), 1).exhausted, false);
  assert.throws(
    () => selectGroups(pool, 3, opts({ maxRefillRounds: 2, onExhausted: 'fail' }), 2),
    (e: unknown) => {
      assert.ok(e instanceof AdvantageInputError);
      assert.match(e.message, /2 of 3 prompt groups .* after 2 refill rounds \(3 groups had all-equal rewards\)/);
      return true;
    },
  );
});

test('dynamic sampling disabled takes groups in pool order whatever their rewards', () => {
  const s = selectGroups(pool, 3, opts({ enabled: false }));
  assert.deepEqual(s.selected, ['g1', 'g2', 'g3']);
  assert.deepEqual(s.dropped, []);
  assert.deepEqual(s.surplus, ['g4', 'g5']);
});

test('selectedSamples returns the samples of the selected groups in pool order', () => {
  const s = selectGroups(pool, 3, opts());
  assert.deepEqual(
    selectedSamples(pool, s).map((x) => x.sampleId),
    ['g1-0', 'g1-1', 'g5-0', 'g5-1', 'g5-2'],
  );
});

test('dynamic sampling rejects a NaN reward, naming the sample, and a bad target', () => {
  const bad = [...group('g', [1, Number.NaN])];
  assert.throws(() => selectGroups(bad, 1, opts()), /sample "g-1" \(group "g"\) is NaN/);
  assert.throws(() => selectGroups(pool, 0, opts()), /targetGroups is 0/);
});
