import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getTask } from '../../../activities/tasks/tasks.js';
import { additionReward } from '../../../activities/tasks/addition.js';
import { logger } from '../../../activities/common/log.js';
import { CharTokenizer } from '../../../activities/model/tokenizer.js';
import { instantiateReward, type RewardContext, type RewardFn, type RewardResult } from '../../../activities/reward/types.js';

const ctx: RewardContext = { step: 0, signal: new AbortController().signal, log: logger('test') };

function score(fn: RewardFn, reference: string | undefined, completion: string): RewardResult {
  return fn.score!({ promptId: 'p', sampleId: 1, prompt: '', completion, reference }, ctx) as RewardResult;
}

function reward(options: Record<string, unknown> = {}): RewardFn {
  return instantiateReward(additionReward, options);
}

test('prompt and gold completion round trip: "a+b=" → the digits of a+b, which the reward scores 1', () => {
  for (const [reverse, pad] of [
    [false, false],
    [true, false],
    [false, true],
    [true, true],
  ]) {
    const t = getTask('addition', { minDigits: 1, maxDigits: 4, reverse, pad });
    const fn = t.createReward();
    const tok = CharTokenizer.fromAlphabet(t.alphabet);
    for (const split of ['train', 'eval'] as const) {
      for (const it of t.prompts(9, split, 200)) {
        const m = /^(\d+)\+(\d+)=$/.exec(it.prompt);
        assert.ok(m, it.prompt);
        const a = Number(m[1]);
        const b = Number(m[2]);
        assert.deepEqual([it.metadata.a, it.metadata.b], [a, b]);
        assert.equal(it.reference, String(a + b));
        if (pad) assert.equal(it.prompt.length, 10, it.prompt);
        const gold = t.sftTarget(it);
        const sum = pad ? String(a + b).padStart(5, '0') : String(a + b);
        assert.equal(gold, reverse ? [...sum].reverse().join('') : sum);
        assert.deepEqual(score(fn, it.reference, gold), { reward: 1, components: { correct: 1, well_formed: 1 } });
        assert.ok(it.prompt.length <= t.maxPromptChars && gold.length <= t.maxCompletionChars);
        assert.equal(tok.decode(tok.encode(it.prompt + gold), { skipSpecialTokens: true }), it.prompt + gold);
      }
    }
  }
});

test('operand lengths follow minDigits/maxDigits, each length about equally often', () => {
  const t = getTask('addition', { minDigits: 2, maxDigits: 4 });
  const counts = new Map<number, number>();
  for (const it of t.prompts(4, 'train', 3000)) {
    for (const x of [it.metadata.a as number, it.metadata.b as number]) {
      const len = String(x).length;
      counts.set(len, (counts.get(len) ?? 0) + 1);
    }
  }
  assert.deepEqual([...counts.keys()].sort(), [2, 3, 4]);
  for (const c of counts.values()) assert.ok(Math.abs(c / 6000 - 1 / 3) < 0.03, `length counts ${[...counts]}`);
  assert.equal(t.maxPromptChars, 10);
  assert.equal(t.maxCompletionChars, 5);
  assert.equal(t.alphabet, '0123456789+=');
});

test('deterministic under the seed; slices agree; ids are unique', () => {
  const t = getTask('addition');
  const a = t.prompts(5, 'train', 100);
  assert.deepEqual(t.prompts(5, 'train', 100), a);
  assert.deepEqual(t.prompts(5, 'train', 30, 70), a.slice(70));
  assert.notDeepEqual(t.prompts(6, 'train', 100), a);
  assert.equal(new Set(a.map((i) => i.promptId)).size, 100);
  assert.equal(a[3]!.promptId, 'addition-train-000003');
});

test('train and eval never share a problem (a+b and b+a count as one), under any seeds', () => {
  // one-digit addition has only 100 problems: the split must still hold
  const t = getTask('addition', { minDigits: 1, maxDigits: 1, evalFraction: 0.2 });
  const key = (a: unknown, b: unknown) => [a as number, b as number].sort((x, y) => x - y).join('+');
  const train = new Set([1, 2, 3].flatMap((s) => t.prompts(s, 'train', 400)).map((i) => key(i.metadata.a, i.metadata.b)));
  const evalKeys = new Set([1, 4].flatMap((s) => t.prompts(s, 'eval', 200)).map((i) => key(i.metadata.a, i.metadata.b)));
  assert.ok(evalKeys.size >= 5, `eval has ${evalKeys.size} problems`);
  assert.ok(train.size >= 30, `train has ${train.size} problems`);
  for (const k of evalKeys) assert.ok(!train.has(k), `${k} is in both splits`);
  assert.equal(train.size + evalKeys.size, 55, 'together the splits cover all 55 unordered one-digit problems');
});

test('reward: exact numeric match, format component, reversed answers', () => {
  const fn = reward();
  const cases: [string, number, number][] = [
    ['168', 1, 1],
    [' 168\n', 1, 1],
    ['0168', 1, 1],
    ['<answer>168</answer>', 1, 1],
    ['167', 0, 1],
    ['861', 0, 1],
    ['1 68', 0, 0],
    ['168.0', 0, 0],
    ['-168', 0, 0],
    ['The answer is 168', 0, 0],
    ['', 0, 0],
  ];
  for (const [completion, correct, wellFormed] of cases) {
    assert.deepEqual(
      score(fn, '168', completion),
      { reward: correct, components: { correct, well_formed: wellFormed } },
      JSON.stringify(completion),
    );
  }
  assert.equal(score(reward({ formatReward: 0.1 }), '168', '167').reward, 0.1);
  assert.equal(score(reward({ formatReward: 0.1 }), '168', 'abc').reward, 0);
  assert.equal(score(reward({ correctReward: 5 }), '168', '168').reward, 5);
  assert.equal(score(reward({ reversed: true }), '168', '861').reward, 1);
  assert.equal(score(reward({ reversed: true }), '168', '168').reward, 0);
  assert.equal(score(reward({ reversed: true }), '100', '001').reward, 1);
  // large sums stay exact (no float rounding)
  assert.equal(score(fn, '1999999999999999', '1999999999999999').reward, 1);
  assert.equal(score(fn, '1999999999999999', '2000000000000000').reward, 0);
});

test('padded problems: fixed-width prompts and sums', () => {
  const t = getTask('addition', { maxDigits: 3, pad: true });
  const item = { promptId: 'x', prompt: '007+045=', reference: '52', metadata: { a: 7, b: 45 } };
  assert.equal(t.sftTarget(item), '0052');
  assert.equal(getTask('addition', { maxDigits: 3, pad: true, reverse: true }).sftTarget(item), '2500');
  assert.ok(t.prompts(1, 'train', 50).every((i) => /^\d{3}\+\d{3}=$/.test(i.prompt)));
  assert.throws(() => t.sftTarget({ ...item, reference: 'fifty-two' }), /item x has reference "fifty-two", not a sum in digits/);
});

test('reward: a sample without a usable reference is a data error', () => {
  assert.throws(() => score(reward(), undefined, '12'), /needs a reference answer but sample p\/1 has none/);
  assert.throws(() => score(reward(), 'twelve', '12'), /reference of sample p\/1 must be a whole number in digits, got "twelve"/);
});

test('bad task options are rejected naming the field', () => {
  assert.throws(() => getTask('addition', { maxDigits: 16 }), /options of task addition: maxDigits:/);
  assert.throws(() => getTask('addition', { minDigits: 3, maxDigits: 2 }), /minDigits: minDigits must not exceed maxDigits/);
  assert.throws(() => getTask('addition', { evalFraction: 1 }), /evalFraction:/);
  assert.throws(() => getTask('addition', { digits: 3 }), /digits/);
  assert.throws(() => getTask('addition').prompts(1, 'test' as 'eval', 1), /split must be "train" or "eval", got "test"/);
  assert.throws(() => getTask('addition').prompts(-1, 'train', 1), /seed must be a non-negative safe integer, got -1/);
});
