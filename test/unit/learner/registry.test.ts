/**
 * The loss registry: config names to builders, defaults filled from the zod schemas, bad fields
 * named in the error, distinct session-cache keys for distinct options.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildLoss, parseLossConfig, losses } from '../../../activities/learner/index.js';
import { ConfigError } from '../../../activities/common/config.js';

test('defaults are filled per loss', () => {
  const c = parseLossConfig({ name: 'clipped_surrogate' });
  assert.equal(c.name, 'clipped_surrogate');
  if (c.name !== 'clipped_surrogate') return;
  assert.equal(c.options.clipLow, 0.2);
  assert.equal(c.options.clipHigh, 0.2);
  assert.equal(c.options.ratioLevel, 'token');
  assert.equal(c.options.aggregation, undefined); // unset: token_mean for a bare loss; a run pairs it with its estimator (run/config.ts)
  assert.equal(c.options.kl, null);
  const k = parseLossConfig({ name: 'clipped_surrogate', options: { kl: {} } });
  assert.deepEqual(k.name === 'clipped_surrogate' && k.options.kl, { beta: 0.04, estimator: 'k3', direction: 'reverse', inReward: false });
  const d = parseLossConfig({ name: 'dpo' });
  assert.deepEqual(d.options, { beta: 0.1, labelSmoothing: 0 });
  assert.deepEqual(Object.keys(losses).sort(), ['bradley_terry', 'clipped_surrogate', 'dpo', 'sft']);
  const bt = parseLossConfig({ name: 'bradley_terry' });
  assert.deepEqual(bt.options, { margin: 0, perPairMargin: false, centerRewardsCoefficient: 0 });
});

test('bad configs name the field', () => {
  const bad: [unknown, RegExp][] = [
    [{ name: 'ppo2' }, /name/],
    [{ name: 'clipped_surrogate', options: { clipLow: 1.5 } }, /options\.clipLow/],
    [{ name: 'clipped_surrogate', options: { clipHihg: 0.3 } }, /clipHihg/],
    [
      { name: 'clipped_surrogate', options: { aggregation: 'constant' } },
      /options\.constantNormaliser: aggregation 'constant' needs constantNormaliser/,
    ],
    [{ name: 'clipped_surrogate', options: { globalTokenCount: true, aggregation: 'sequence_mean' } }, /options\.globalTokenCount/],
    [{ name: 'clipped_surrogate', options: { dualClip: 0.9 } }, /options\.dualClip/],
    [{ name: 'clipped_surrogate', options: { kl: { estimator: 'k4' } } }, /options\.kl\.estimator/],
    [{ name: 'clipped_surrogate', options: { kl: { direction: 'sideways' } } }, /options\.kl\.direction/],
    [{ name: 'dpo', options: { labelSmoothing: 0.5 } }, /options\.labelSmoothing/],
    [{ name: 'dpo', options: { beta: 0 } }, /options\.beta/],
    [{ name: 'bradley_terry', options: { centerRewardsCoefficient: -1 } }, /options\.centerRewardsCoefficient/],
  ];
  for (const [input, re] of bad) {
    assert.throws(
      () => buildLoss(input),
      (e: unknown) => e instanceof ConfigError && re.test(e.message),
      JSON.stringify(input),
    );
  }
});

test('builders carry distinct cache keys for distinct options and equal keys for equal ones', () => {
  const a = buildLoss({ name: 'clipped_surrogate', options: { clipHigh: 0.28 } });
  const b = buildLoss({ name: 'clipped_surrogate', options: { clipHigh: 0.28 } });
  const c = buildLoss({ name: 'clipped_surrogate', options: { clipHigh: 0.3 } });
  const d = buildLoss({ name: 'dpo' });
  const s = buildLoss({ name: 'sft' });
  const bt = buildLoss({ name: 'bradley_terry', options: { margin: 0.5 } });
  assert.equal(a.key, b.key);
  assert.notEqual(a.key, c.key);
  assert.equal(new Set([a.key, c.key, d.key, s.key, bt.key]).size, 5);
});
