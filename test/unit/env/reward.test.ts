import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logger } from '../../../activities/common/log.js';
import { episodeReward } from '../../../activities/env/reward.js';
import { instantiateReward, type RewardContext, type RewardSample, type ToolCall } from '../../../activities/reward/types.js';

const ctx: RewardContext = { step: 0, signal: new AbortController().signal, log: logger('test') };
const calc = (e: string): ToolCall => ({ name: 'calc', arguments: { expression: e } });
const sample = (o: Partial<RewardSample> & { final: string; calls: ToolCall[]; goldCalls?: number }): RewardSample => ({
  promptId: 'p',
  sampleId: 0,
  prompt: '123*45=',
  completion: o.final,
  reference: '5535',
  metadata: { goldCalls: o.goldCalls ?? 1, toolCalls: [calc('123*45')] },
  toolCalls: o.calls,
  turns: [
    ...o.calls.flatMap((c) => [
      { role: 'assistant' as const, text: `<c>${c.arguments.expression as string}</c>`, toolCalls: [c] },
      { role: 'tool' as const, text: '5535' },
    ]),
    { role: 'assistant' as const, text: o.final },
  ],
  ...o,
});
const score = async (s: RewardSample, opts: Record<string, unknown> = {}) => {
  const r = await instantiateReward(episodeReward, opts).score!(s, ctx);
  return { reward: r.reward, c: r.components! };
};

test('episode reward: right answer with the one gold call = 1 + 0.2 = 1.2', async () => {
  const r = await score(sample({ final: '<a>5535</a>', calls: [calc('123*45')] }));
  assert.equal(r.reward, 1.2);
  assert.deepEqual(r.c, { correct: 1, answered: 1, calls: 1, efficiency: 1, malformed: 0 });
});

test('episode reward: a needless second call halves the efficiency term: 1 + 0.2 * 1/2 = 1.1', async () => {
  const r = await score(sample({ final: '<a>5535</a>', calls: [calc('123*45'), calc('123*45')] }));
  assert.equal(r.reward, 1.1);
  assert.equal(r.c.efficiency, 0.5);
});

test('episode reward: a call on a one-digit product (gold: 0 calls) earns no efficiency: 1 + 0 = 1', async () => {
  const r = await score(sample({ final: '<a>56</a>', reference: '56', calls: [calc('7*8')], goldCalls: 0 }));
  assert.equal(r.reward, 1);
});

test('episode reward: a wrong answer without calls earns 0, the gated efficiency term included; ungated it earns 0.2', async () => {
  const wrong = sample({ final: '<a>5000</a>', calls: [] });
  assert.equal((await score(wrong)).reward, 0);
  assert.equal((await score(wrong, { gateEfficiency: false })).reward, 0.2);
});

test('episode reward reads the answer of the last policy turn, not an observation echoing one', async () => {
  const s = sample({ final: 'no answer', calls: [calc('123*45')] });
  s.turns![1]!.text = '<a>5535</a>';
  s.completion = s.turns!.map((t) => t.text).join('');
  const r = await score(s);
  assert.equal(r.reward, 0);
  assert.equal(r.c.answered, 0);
});

test('episode reward: 0.1 per malformed turn with malformedPenalty 0.1; ToolRL call correctness 1 for the gold call with weight 0.5', async () => {
  const s = sample({ final: '<a>5535</a>', calls: [calc('123*45')] });
  s.turns!.unshift(
    { role: 'assistant', text: '<c>123*', malformed: '<c> is not closed' },
    { role: 'tool', text: 'error: <c> is not closed' },
  );
  const r = await score(s, { malformedPenalty: 0.1, toolCallWeight: 0.5 });
  assert.equal(r.c.malformed, 1);
  assert.equal(r.c.tool_correct, 1);
  assert.ok(Math.abs(r.reward - (1.2 - 0.1 + 0.5)) < 1e-12);
});
