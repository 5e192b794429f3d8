import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logger } from '../../../activities/common/log.js';
import { composedReward } from '../../../activities/reward/functions.js';
import { parseCompositionConfig } from '../../../activities/reward/compose.js';
import { defaultRegistry } from '../../../activities/reward/registry.js';
import { turnRewards } from '../../../activities/reward/turns.js';
import { instantiateReward, type RewardContext, type RewardSample, type RewardTurn } from '../../../activities/reward/types.js';

const ctx = (step = 0): RewardContext => ({ step, signal: new AbortController().signal, log: logger('test') });
const calc = (e: string) => ({ name: 'calc', arguments: { expression: e } });
const sample = (turns: RewardTurn[], reference = '5535'): RewardSample => ({
  promptId: 'p',
  sampleId: 0,
  prompt: '123*45=',
  completion: turns.map((t) => t.text).join(''),
  reference,
  turns,
  completionTokens: turns.every((t) => t.tokens !== undefined) ? turns.reduce((s, t) => s + t.tokens!, 0) : undefined,
  toolCalls: turns.flatMap((t) => t.toolCalls ?? []),
});
const call = (e: string, tokens?: number): RewardTurn => ({
  role: 'assistant',
  text: `<c>${e}</c>`,
  toolCalls: [calc(e)],
  ...(tokens ? { tokens } : {}),
});
const obs = (text: string, tokens?: number): RewardTurn => ({ role: 'tool', text, ...(tokens ? { tokens } : {}) });
const final = (text: string, tokens?: number): RewardTurn => ({ role: 'assistant', text, ...(tokens ? { tokens } : {}) });
const score = (s: RewardSample, o: Record<string, unknown> = {}) =>
  instantiateReward(turnRewards, { answerTag: 'a', ...o }).score!(s, ctx()) as ReturnType<
    NonNullable<ReturnType<typeof instantiateReward>['score']>
  >;

test('turn rewards: a valid call (0.5) then an answered final turn (0.5): mean 0.5, sum 1', async () => {
  const s = sample([call('123*45'), obs('5535'), final('<a>5535</a>')]);
  const r = await score(s);
  assert.equal(r.reward, 0.5);
  assert.deepEqual(r.components, {
    turn_mean: 0.5,
    turns: 2,
    valid_calls: 1,
    tool_errors: 0,
    malformed: 0,
    repeated_calls: 0,
    answered: 1,
  });
  assert.equal((await score(s, { aggregate: 'sum' })).reward, 1);
});

test('turn rewards: malformed (-1), tool error (-0.25), a repeated call (0.5 - 0.5 = 0), no answer (-0.5): sum -1.25', async () => {
  const s = sample([
    { role: 'assistant', text: '<c>123*', malformed: '<c> is not closed' },
    obs('error: <c> is not closed'),
    call('123*'),
    obs('error: expected a number'),
    call('123*45'),
    obs('5535'),
    call('123*45'),
    obs('5535'),
    final('5535'),
  ]);
  const r = await score(s, { aggregate: 'sum' });
  // -1 (malformed) - 0.25 (tool error) + 0.5 (valid) + (0.5 - 0.5) (valid, repeated) - 0.5 (unanswered)
  assert.equal(r.reward, -1.25);
  assert.equal(r.components!.repeated_calls, 1);
  assert.equal(r.components!.tool_errors, 1);
  assert.equal(r.components!.malformed, 1);
});

test('per-turn process rewards: each policy turn reward on its last token, observations 0: [0,0,0,0.5, 0,0, 0,0.5] for turns of 4, 2, 2 tokens', async () => {
  const s = sample([call('123*45', 4), obs('5535', 2), final('<a>5535</a>', 2)]);
  const r = await score(s);
  assert.deepEqual(r.processRewards, [0, 0, 0, 0.5, 0, 0, 0, 0.5]);
});

test('turn rewards refuse a sample without turns, naming it', async () => {
  await assert.rejects(
    async () => score({ promptId: 'p', sampleId: 3, prompt: '', completion: 'x' }),
    /sample p\/3 has no turns: turn_rewards scores multi-turn episodes/,
  );
});

const fns = [
  { name: 'exact_match', id: 'correct', options: { answerTag: 'a', extract: ['answer_tag'] }, verifiable: true },
  { name: 'turn_rewards', id: 'turns', options: { answerTag: 'a', aggregate: 'sum' } },
] as const;

test('G-RA through the gated composition: turn rewards count only for a passing outcome: right 1 + 0.2*1 = 1.2, wrong 0 (its turns +1 ignored)', async () => {
  const reward = composedReward(
    fns.map((f) => ({ ...f, options: { ...f.options } })) as never,
    parseCompositionConfig({ name: 'gated', outcome: 'correct', threshold: 1, dense: { turns: 0.2 } }),
    defaultRegistry(),
  );
  const right = await reward.score!(sample([call('123*45'), obs('5535'), final('<a>5535</a>')]), ctx());
  const wrong = await reward.score!(sample([call('123*45'), obs('5535'), final('<a>5000</a>')]), ctx());
  assert.ok(Math.abs(right.reward - 1.2) < 1e-12, String(right.reward));
  assert.equal(wrong.reward, 0);
  assert.equal(wrong.components!.turns, 1);
});

test("Atom-Searcher's schedule over the per-turn process rewards: step 0 of 10, weight 0.5: 0.5*1 + 0.5*(0.5+0.5) = 1; step 10: outcome only = 1, a wrong answer 0.5 then 0", async () => {
  const reward = composedReward(
    fns.map((f) => ({ ...f, options: { ...f.options } })) as never,
    parseCompositionConfig({ name: 'process_outcome_schedule', outcome: 'correct', start: 0.5, end: 0, totalSteps: 10 }),
    defaultRegistry(),
  );
  const right = sample([call('123*45', 4), obs('5535', 2), final('<a>5535</a>', 2)]);
  const wrong = sample([call('123*45', 4), obs('5535', 2), final('<a>5000</a>', 2)]);
  assert.equal((await reward.score!(right, ctx(0))).reward, 1);
  assert.equal((await reward.score!(wrong, ctx(0))).reward, 0.5);
  assert.equal((await reward.score!(wrong, ctx(10))).reward, 0);
  assert.deepEqual((await reward.score!(wrong, ctx(0))).processRewards?.length, 8);
});
