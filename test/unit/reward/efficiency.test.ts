import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultRegistry } from '../../../activities/reward/registry.js';
import { scoreSamples } from '../../../activities/reward/run.js';
import { efficiencyReward, quantile, tightenReference, type EfficiencyOptions } from '../../../activities/reward/efficiency.js';
import type { JsonValue, RewardSample, ToolCall } from '../../../activities/reward/types.js';

const reg = defaultRegistry();
const calls = (n: number, cost?: number): ToolCall[] =>
  Array.from({ length: n }, (_, i) => ({ name: 'search', arguments: { q: String(i) }, cost }));
const sample = (i: number, extra: Partial<RewardSample>): RewardSample => ({
  promptId: 'p',
  sampleId: i,
  prompt: '',
  completion: '',
  ...extra,
});

test('the reward is 1 within the reference and decays beyond it', () => {
  assert.equal(efficiencyReward(0, 4, 'ratio'), 1);
  assert.equal(efficiencyReward(4, 4, 'ratio'), 1);
  assert.equal(efficiencyReward(8, 4, 'ratio'), 0.5);
  assert.equal(efficiencyReward(6, 4, 'linear'), 0.5);
  assert.equal(efficiencyReward(9, 4, 'linear'), 0);
  assert.equal(quantile([5, 1, 3], 0.5), 3);
  assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
});

test('the reference tightens monotonically towards the quantile of successful costs', () => {
  const o = { initialReference: 10, minReference: 2, quantile: 0.5, momentum: 0.5, minSamples: 3 } as EfficiencyOptions;
  let s = { reference: 10, updates: 0 };
  s = tightenReference(s, [2, 4, 6], o); // target 4: 10 + 0.5 * (4 - 10) = 7
  assert.deepEqual(s, { reference: 7, updates: 1 });
  s = tightenReference(s, [20, 30, 40], o); // a worse step never loosens it
  assert.deepEqual(s, { reference: 7, updates: 1 });
  s = tightenReference(s, [1], o); // too few successful samples: unchanged
  assert.deepEqual(s, { reference: 7, updates: 1 });
  s = tightenReference(s, [0, 0, 0], o); // 7 - 3.5 = 3.5
  s = tightenReference(s, [0, 0, 0], o); // 1.75, floored at minReference 2
  assert.deepEqual(s, { reference: 2, updates: 3 });
});

test('state is explicit and serialisable: scoring reads it, updateState returns the next one', async () => {
  const fn = reg.create({ name: 'efficiency', options: { initialReference: 4, momentum: 1, minSamples: 2 } });
  const samples = [sample(0, { toolCalls: calls(2) }), sample(1, { toolCalls: calls(8) }), sample(2, { toolCalls: [] })];
  const step1 = await scoreSamples(fn, samples);
  assert.deepEqual(
    step1.rows.map((r) => r.reward),
    [1, 0.5, 1],
  );
  assert.deepEqual(step1.rows[1]!.components, { cost: 8, cost_reference: 4 });
  // Success comes from a `correct` component when the (composite) result has one.
  const scored = samples.map((s, i) => ({ sample: s, result: { reward: 1, components: { correct: i === 1 ? 0 : 1 } } }));
  const next = fn.updateState!(fn.initialState!(), scored);
  assert.deepEqual(next, { reference: 1, updates: 1 }); // median of [2, 0] = 1, momentum 1
  const roundTrip = JSON.parse(JSON.stringify(next)) as JsonValue;
  const step2 = await scoreSamples(fn, samples, {}, { state: roundTrip });
  assert.deepEqual(
    step2.rows.map((r) => r.reward),
    [0.5, 0.125, 1],
  );
  // Same inputs, same state: replaying the step agrees.
  assert.deepEqual(fn.updateState!(fn.initialState!(), scored), next);
});

test('token and call-cost variants (Router-R1); missing data is an error naming the field', async () => {
  const tokens = reg.create({ name: 'efficiency', options: { cost: 'total_tokens', initialReference: 100 } });
  const r = await scoreSamples(tokens, [sample(0, { promptTokens: 50, completionTokens: 150 })]);
  assert.equal(r.rows[0]!.reward, 0.5);
  const priced = reg.create({ name: 'efficiency', options: { cost: 'call_cost', initialReference: 0.01 } });
  const p = await scoreSamples(priced, [sample(0, { toolCalls: calls(4, 0.005) })]);
  assert.equal(p.rows[0]!.reward, 0.5);
  const bad = await scoreSamples(priced, [sample(0, { toolCalls: calls(1) })], { onError: 'drop' });
  assert.match(bad.rows[0]!.error!, /toolCalls\[0\] \(search\) has no cost/);
  const noTokens = await scoreSamples(tokens, [sample(0, { completionTokens: 3 })], { onError: 'drop' });
  assert.match(noTokens.rows[0]!.error!, /lacks promptTokens/);
  const badState = await scoreSamples(
    tokens,
    [sample(0, { promptTokens: 1, completionTokens: 1 })],
    { onError: 'drop' },
    { state: { ref: 3 } },
  );
  assert.match(badState.rows[0]!.error!, /state \{"ref":3\} is not \{ reference > 0, updates \}/);
  assert.throws(() => reg.create({ name: 'efficiency', options: {} }), /initialReference/);
  assert.throws(() => reg.create({ name: 'efficiency', options: { initialReference: 1, minReference: 5 } }), /minReference/);
});
