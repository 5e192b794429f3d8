import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, z } from '../../../activities/common/config.js';
import { defaultRegistry, RewardRegistry, defineReward, createReward } from '../../../activities/reward/registry.js';

test('a spec becomes a ready reward with validated, defaulted options', () => {
  const fn = createReward({ name: 'math_equivalence', options: { relTol: 1e-3 } });
  assert.equal(fn.name, 'math_equivalence');
  assert.equal((fn.options as { relTol: number }).relTol, 1e-3);
  assert.equal((fn.options as { correctReward: number }).correctReward, 1);
  assert.equal(typeof fn.score, 'function');
});

test('an unknown name lists the known names', () => {
  assert.throws(
    () => defaultRegistry().create({ name: 'math_equivalance' }),
    (e: unknown) =>
      e instanceof ConfigError &&
      /unknown reward "math_equivalance"; known rewards: .*exact_match.*math_equivalence.*multiple_choice/.test(e.message),
  );
});

test('bad options are a ConfigError naming the field', () => {
  assert.throws(
    () => defaultRegistry().create({ name: 'exact_match', options: { caseSensitive: 'yes' } }),
    (e: unknown) => e instanceof ConfigError && /options of reward exact_match: caseSensitive: /.test(e.message),
  );
});

test('validate checks options without building the reward', () => {
  assert.deepEqual(defaultRegistry().validate({ name: 'multiple_choice', options: { letters: 'AB' } }), {
    letters: 'AB',
    answerTag: 'answer',
    correctReward: 1,
    wrongReward: 0,
    noAnswerReward: 0,
  });
});

test('custom registries: names are unique and lower snake case', () => {
  const def = defineReward({
    name: 'always',
    description: 'a constant',
    optionsSchema: z.strictObject({ value: z.number().default(1) }),
    create: (o) => ({ name: 'always', optionsSchema: z.object({}), options: o, score: () => ({ reward: o.value }) }),
  });
  const reg = new RewardRegistry([def]);
  assert.deepEqual(reg.names(), ['always']);
  assert.throws(() => reg.register(def), /already registered/);
  assert.throws(() => reg.register({ ...def, name: 'Bad-Name' }), /lower snake case/);
  const fn = reg.create({ name: 'always', options: { value: 2 } });
  assert.deepEqual(fn.options, { value: 2 });
});

test('every built-in reward is described and builds with default options where it needs none', () => {
  const reg = defaultRegistry();
  for (const d of reg.describe()) {
    assert.ok(d.description.length > 10, d.name);
    assert.ok(d.source && d.source.length > 3, `${d.name} cites where it comes from`);
  }
});

test("the default registry includes the built-in tasks' rewards", async () => {
  const { defaultRegistry: registryOf } = await import('../../../activities/reward/registry.js');
  const reg = registryOf();
  assert.ok(reg.names().includes('addition') && reg.names().includes('countdown'), reg.names().join(', '));
  const fn = reg.create({ name: 'addition' });
  const ctx = { step: 0, signal: new AbortController().signal, log: (await import('../../../activities/common/log.js')).logger('test') };
  assert.equal((await fn.score!({ promptId: 'p', sampleId: 0, prompt: '12+30=', completion: '42', reference: '42' }, ctx)).reward, 1);
  assert.equal((await fn.score!({ promptId: 'p', sampleId: 0, prompt: '12+30=', completion: '41', reference: '42' }, ctx)).reward, 0);
});
