/**
 * KL folded into the reward before the advantage estimator: per-token penalties from behaviour
 * and reference logprobs (reverse and forward estimators), sequence vs token placement, masks,
 * and errors that name the sample; and the REINFORCE++ estimator reading the penalised rewards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { klPenalisedRewards, klValue } from '../../../activities/learner/index.js';
import { computeAdvantages, parseAdvantageConfig } from '../../../activities/advantage/index.js';
import { ConfigError } from '../../../activities/common/config.js';

const samples = [
  { sampleId: 'a', groupId: 'g', reward: 1, completionLength: 3 },
  { sampleId: 'b', groupId: 'g', reward: 0, completionLength: 3, processRewards: [0.1, 0, 0.2] },
];
const lps = [
  { logprobs: [-0.5, -1.2, -0.1], refLogprobs: [-0.7, -0.9, -0.1] },
  { logprobs: [-2.0, -0.3, -0.4], refLogprobs: [-1.0, -0.3, -0.9], mask: [1, 1, 0] },
];

test('per-token estimators match their formulas (reverse and forward)', () => {
  const lr = 0.3; // log π − log π_ref
  const rho = Math.exp(-lr);
  assert.equal(klValue(lr, 'k1', 'reverse'), lr);
  assert.equal(klValue(lr, 'k2', 'reverse'), (lr * lr) / 2);
  assert.ok(Math.abs(klValue(lr, 'k3', 'reverse') - (rho - 1 - Math.log(rho))) < 1e-15);
  assert.ok(Math.abs(klValue(lr, 'k1', 'forward') - rho * Math.log(rho)) < 1e-15);
  assert.ok(Math.abs(klValue(lr, 'k2', 'forward') - (rho * Math.log(rho) ** 2) / 2) < 1e-15);
  assert.ok(Math.abs(klValue(lr, 'k3', 'forward') - (rho * Math.log(rho) - rho + 1)) < 1e-15);
  for (const e of ['k1', 'k2', 'k3'] as const)
    for (const d of ['reverse', 'forward'] as const) assert.ok(klValue(0, e, d) === 0, `${e} ${d} at log ratio 0`);
});

test('forward k1/k3 are unbiased for KL(ref‖π) when tokens are drawn from π (exact expectation)', () => {
  const pi = [0.6, 0.3, 0.1];
  const ref = [0.2, 0.3, 0.5];
  const exact = ref.reduce((a, r, k) => a + r * Math.log(r / pi[k]!), 0);
  for (const e of ['k1', 'k3'] as const) {
    const expectation = pi.reduce((a, p, k) => a + p * klValue(Math.log(p) - Math.log(ref[k]!), e, 'forward'), 0);
    assert.ok(Math.abs(expectation - exact) < 1e-12, `${e}: E_π = ${expectation}, KL(ref‖π) = ${exact}`);
  }
  const reverse = pi.reduce((a, p, k) => a + p * Math.log(p / ref[k]!), 0);
  const k3r = pi.reduce((a, p, k) => a + p * klValue(Math.log(p) - Math.log(ref[k]!), 'k3', 'reverse'), 0);
  assert.ok(Math.abs(k3r - reverse) < 1e-12);
  assert.ok(Math.abs(reverse - exact) > 0.01, 'the two directions differ on this pair');
});

test('token placement: per-token penalties in processRewards, the total reduced by β Σ kl', () => {
  const r = klPenalisedRewards(samples, lps, { beta: 0.1, estimator: 'k1', placement: 'token' });
  const kl0 = [0.2, -0.3, 0];
  const kl1 = [-1.0, 0, 0]; // third token masked
  assert.ok(Math.abs(r.samples[0]!.reward - (1 - 0.1 * (0.2 - 0.3))) < 1e-12);
  assert.ok(Math.abs(r.samples[1]!.reward - (0 - 0.1 * -1.0)) < 1e-12);
  [...r.samples[0]!.processRewards!].forEach((v, t) => assert.ok(Math.abs(v - -0.1 * kl0[t]!) < 1e-12));
  [...r.samples[1]!.processRewards!].forEach((v, t) => assert.ok(Math.abs(v - ([0.1, 0, 0.2][t]! - 0.1 * kl1[t]!)) < 1e-12));
  assert.ok(Math.abs(r.klMean - (-0.1 + -1.0) / 2) < 1e-12);
  assert.equal(samples[0]!.reward, 1, 'inputs are not mutated');
  // the outcome remainder (reward − Σ processRewards) is unchanged
  for (let i = 0; i < 2; i++) {
    const before = samples[i]!.reward - (samples[i]!.processRewards ?? [0]).reduce((a, b) => a + b, 0);
    const after = r.samples[i]!.reward - [...r.samples[i]!.processRewards!].reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(before - after) < 1e-12);
  }
});

test('sequence placement changes the total only; REINFORCE++ sees the penalised rewards', () => {
  const r = klPenalisedRewards(samples, lps, { beta: 0.5, estimator: 'k3', direction: 'forward', placement: 'sequence' });
  assert.equal(r.samples[0]!.processRewards, undefined);
  assert.deepEqual(r.samples[1]!.processRewards, samples[1]!.processRewards);
  const sum0 = [0, 1, 2].reduce((a, t) => a + klValue(lps[0]!.logprobs[t]! - lps[0]!.refLogprobs[t]!, 'k3', 'forward'), 0);
  assert.ok(Math.abs(r.samples[0]!.reward - (1 - 0.5 * sum0)) < 1e-12);
  assert.ok(Math.abs(r.penaltyMean - 0.5 * r.klMean) < 1e-15);
  const cfg = parseAdvantageConfig({ estimator: 'reinforce_pp' });
  const plain = computeAdvantages(cfg, { samples });
  const penalised = computeAdvantages(cfg, { samples: klPenalisedRewards(samples, lps, { beta: 0.5, placement: 'token' }).samples });
  assert.notDeepEqual(
    penalised.samples.map((s) => s.advantage),
    plain.samples.map((s) => s.advantage),
  );
});

test('bad input names the sample and the fix', () => {
  assert.throws(() => klPenalisedRewards(samples, lps.slice(0, 1)), /2 samples but 1 logprob entries/);
  assert.throws(
    () => klPenalisedRewards(samples, [lps[0]!, { logprobs: [-1, -1, -1], refLogprobs: [-1, -1] }]),
    /sample b has 3 behaviour logprobs but 2 reference logprobs/,
  );
  assert.throws(
    () => klPenalisedRewards(samples, [lps[0]!, { logprobs: [-1, NaN, -1], refLogprobs: [-1, -1, -1] }]),
    /sample b token 1 has logprob NaN/,
  );
  assert.throws(
    () => klPenalisedRewards(samples, [lps[0]!, { logprobs: [-1, -1], refLogprobs: [-1, -1] }]),
    /sample b has 3 process rewards for 2 completion tokens/,
  );
  assert.throws(
    () => klPenalisedRewards(samples, lps, { beta: -1 }),
    (e: unknown) => e instanceof ConfigError && /beta/.test(e.message),
  );
});
