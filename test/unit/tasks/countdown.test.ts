import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getTask } from '../../../activities/tasks/tasks.js';
import { checkCountdown, solveCountdown, type CountdownRules } from '../../../activities/tasks/countdown-solver.js';
import { countdownReward } from '../../../activities/tasks/countdown.js';
import { evaluate, formatRational, printExpression } from '../../../activities/tasks/expression.js';
import { logger } from '../../../activities/common/log.js';
import { CharTokenizer } from '../../../activities/model/tokenizer.js';
import { instantiateReward, type RewardContext, type RewardFn, type RewardResult } from '../../../activities/reward/types.js';
import type { TaskItem } from '../../../activities/tasks/types.js';

const ctx: RewardContext = { step: 0, signal: new AbortController().signal, log: logger('test') };

function score(
  fn: RewardFn,
  item: { metadata?: Record<string, unknown> } & Partial<Omit<TaskItem, 'metadata'>>,
  completion: string,
): RewardResult {
  return fn.score!(
    {
      promptId: item.promptId ?? 'p',
      sampleId: 0,
      prompt: item.prompt ?? '',
      completion,
      reference: item.reference,
      metadata: item.metadata,
    },
    ctx,
  ) as RewardResult;
}

function reward(options: Record<string, unknown> = {}): RewardFn {
  return instantiateReward(countdownReward, options);
}

const failKeys = ['fail_unparseable', 'fail_numbers', 'fail_operator', 'fail_division_by_zero', 'fail_intermediate', 'fail_value'];

/** The one component that is 1 among correct and the fail_* set. */
function verdict(r: RewardResult): string {
  const on = ['correct', ...failKeys].filter((k) => r.components![k] === 1);
  assert.equal(on.length, 1, JSON.stringify(r.components));
  for (const k of ['correct', 'well_formed', ...failKeys]) assert.ok(k in r.components!, `component ${k} missing`);
  return on[0]!;
}

test('prompts are deterministic under the seed, and sliceable by offset', () => {
  const t = getTask('countdown');
  const a = t.prompts(11, 'train', 60);
  assert.deepEqual(t.prompts(11, 'train', 60), a);
  assert.deepEqual(t.prompts(11, 'train', 20, 40), a.slice(40));
  assert.notDeepEqual(
    t.prompts(12, 'train', 60).map((i) => i.prompt),
    a.map((i) => i.prompt),
  );
  assert.equal(new Set(a.map((i) => i.promptId)).size, 60);
  assert.equal(a[7]!.promptId, 'countdown-train-000007');
  for (const it of a) {
    const { numbers, target } = it.metadata as { numbers: number[]; target: number };
    assert.equal(it.prompt, `${numbers.join(',')}>${target}:`);
    assert.equal(it.reference, String(target));
    assert.ok(numbers.length >= 3 && numbers.length <= 4 && numbers.every((n) => n >= 1 && n <= 99));
    assert.ok(target >= 1 && target <= 100);
  }
});

test('train and eval are disjoint by instance (numbers in any order, same target), whatever the seeds', () => {
  const t = getTask('countdown', { minNumbers: 2, maxNumbers: 3, maxNumber: 9, maxTarget: 30, evalFraction: 0.2 });
  const key = (it: TaskItem) => {
    const m = it.metadata as { numbers: number[]; target: number };
    return `${[...m.numbers].sort((x, y) => x - y).join(',')}>${m.target}`;
  };
  const train = new Set([...t.prompts(1, 'train', 600), ...t.prompts(2, 'train', 600)].map(key));
  const evalItems = [...t.prompts(1, 'eval', 300), ...t.prompts(3, 'eval', 300)];
  const evalKeys = new Set(evalItems.map(key));
  assert.ok(evalKeys.size > 50, `eval has ${evalKeys.size} distinct instances`);
  for (const k of evalKeys) assert.ok(!train.has(k), `instance ${k} is in both splits`);
  assert.ok(evalItems.every((i) => i.promptId.startsWith('countdown-eval-') && i.metadata.split === 'eval'));
});

test("every generated instance is solvable and the solver's answer earns 1, under each rule set", () => {
  const configs: Record<string, unknown>[] = [
    {},
    { intermediates: 'integer', minNumbers: 2, maxNumbers: 5, maxNumber: 20, maxTarget: 200, sftSolution: 'first' },
    { intermediates: 'natural', numberUse: 'at_most_once' },
    { operators: ['+', '-'], minNumbers: 3, maxNumbers: 3, maxNumber: 9, maxTarget: 20 },
    { format: 'instruct', operators: ['*', '/', '-'], maxTarget: 1000 },
  ];
  for (const options of configs) {
    const t = getTask('countdown', options);
    const fn = t.createReward();
    const tok = CharTokenizer.fromAlphabet(t.alphabet);
    for (const split of ['train', 'eval'] as const) {
      for (const it of t.prompts(3, split, 60)) {
        const target = t.sftTarget(it);
        const r = score(fn, it, target);
        assert.equal(r.reward, 1, `${JSON.stringify(options)} ${it.prompt} → ${target}: ${JSON.stringify(r.components)}`);
        assert.ok([...it.prompt].length <= t.maxPromptChars, `prompt ${JSON.stringify(it.prompt)} longer than ${t.maxPromptChars}`);
        assert.ok([...target].length <= t.maxCompletionChars, `target ${target} longer than ${t.maxCompletionChars}`);
        tok.encode(it.prompt + target); // throws on a character outside the alphabet
      }
    }
  }
});

test('the solver: deterministic, exact, null when impossible, and it respects the rules', () => {
  const all: CountdownRules = { numberUse: 'exactly_once', intermediates: 'rational', operators: ['+', '-', '*', '/'] };
  const e = solveCountdown({ numbers: [3, 3, 8, 8], target: 24 }, all);
  assert.ok(e);
  // the classic 8/(3-8/3): only reachable through a fraction
  const v = evaluate(e!, 'rational');
  assert.ok(v.ok && formatRational(v.value) === '24');
  assert.equal(solveCountdown({ numbers: [3, 3, 8, 8], target: 24 }, { ...all, intermediates: 'integer' }), null);
  assert.equal(solveCountdown({ numbers: [1, 1, 1], target: 50 }, all), null);
  assert.equal(solveCountdown({ numbers: [2, 3], target: 6 }, { ...all, operators: ['+', '-'] }), null);
  // at most once: a subset suffices, the smallest is used
  const sub = solveCountdown({ numbers: [5, 9, 4, 1], target: 9 }, { ...all, numberUse: 'at_most_once' });
  assert.equal(sub && sub.kind, 'num');
  assert.equal(solveCountdown({ numbers: [5, 9, 4, 1], target: 9 }, all) !== null, true);
  // natural: no zero or negative intermediate, so 4-(2-3) is not an answer but 3-2+4 is
  const natRules: CountdownRules = { ...all, intermediates: 'natural' };
  const nat = solveCountdown({ numbers: [2, 3, 4], target: 5 }, natRules);
  assert.equal(printExpression(nat!), '3-2+4');
  assert.equal(checkCountdown(printExpression(nat!), { numbers: [2, 3, 4], target: 5 }, natRules).verdict, 'correct');
  assert.equal(printExpression(solveCountdown({ numbers: [2, 3, 4], target: 5 }, all)!), '4-(2-3)');
  // the same instance, the same answer
  assert.equal(printExpression(solveCountdown({ numbers: [3, 3, 8, 8], target: 24 }, all)!), '8/(3-8/3)');
  // shortest: the fewest parentheses among all solutions
  assert.equal(printExpression(solveCountdown({ numbers: [72, 52, 99], target: 79 }, all, 'first')!), '99-(72-52)');
  assert.equal(printExpression(solveCountdown({ numbers: [72, 52, 99], target: 79 }, all, 'shortest')!), '52-72+99');
  assert.equal(
    printExpression(solveCountdown({ numbers: [72, 52, 99], target: 79 }, natRules, 'shortest')!),
    '99-72+52',
    'natural: 52-72 < 0 is not allowed',
  );
  const t = getTask('countdown');
  for (const it of t.prompts(8, 'train', 40)) {
    const m = it.metadata as { numbers: number[]; target: number };
    const first = printExpression(solveCountdown(m, all, 'first')!);
    assert.ok(t.sftTarget(it).length <= first.length, `${t.sftTarget(it)} vs ${first}`);
  }
});

const b = { metadata: { numbers: [4, 6, 9], target: 15 } };

test('reward: right answers earn 1 in any order and notation; wrong ones earn the format reward with the reason', () => {
  const fn = reward();
  const cases: [string, string, number][] = [
    ['4*6-9', 'correct', 1],
    ['6*4-9', 'correct', 1],
    [' (6 * 4) - 9 ', 'correct', 1],
    ['<think>24-9</think> <answer>4 * 6 - 9</answer>', 'correct', 1],
    ['4*6-9 = 15', 'correct', 1],
    ['4*6+9', 'fail_value', 0.1],
    ['4+6+9', 'fail_value', 0.1],
    ['9+6', 'fail_numbers', 0.1], // 4 left out
    ['4*6-9-9+9', 'fail_numbers', 0.1], // 9 reused
    ['4*6-8+1-1', 'fail_numbers', 0.1], // 8 and 1 are not given
    ['I think it is 15', 'fail_unparseable', 0],
    ['', 'fail_unparseable', 0],
    ['4*6-', 'fail_unparseable', 0],
    ['<answer></answer>', 'fail_unparseable', 0],
  ];
  for (const [completion, why, want] of cases) {
    const r = score(fn, b, completion);
    assert.equal(verdict(r), why, completion);
    assert.equal(r.reward, want, completion);
    assert.equal(r.components!.well_formed, why === 'fail_unparseable' ? 0 : 1, completion);
  }
});

test('reward: division by zero and forbidden intermediates are well-formed misses, per the option', () => {
  const c = { metadata: { numbers: [3, 3, 8, 8], target: 24 } };
  const r0 = score(reward(), c, '8/(3-3)*8');
  assert.equal(verdict(r0), 'fail_division_by_zero');
  assert.equal(r0.reward, 0.1);
  assert.equal(score(reward(), c, '8/(3-8/3)').reward, 1);
  const ri = score(reward({ intermediates: 'integer' }), c, '8/(3-8/3)');
  assert.equal(verdict(ri), 'fail_intermediate');
  assert.equal(ri.reward, 0.1);
  const d = { metadata: { numbers: [2, 3, 4], target: 5 } };
  assert.equal(score(reward({ intermediates: 'integer' }), d, '4-(2-3)').reward, 1);
  assert.equal(verdict(score(reward({ intermediates: 'natural' }), d, '4-(2-3)')), 'fail_intermediate');
  assert.equal(score(reward({ intermediates: 'natural' }), d, '3-2+4').reward, 1);
});

test('reward options: number use, operators, reward values, stated results', () => {
  assert.equal(score(reward({ numberUse: 'at_most_once' }), b, '9+6').reward, 1);
  assert.equal(verdict(score(reward({ numberUse: 'at_most_once' }), b, '9+6+9')), 'fail_numbers');
  const op = score(reward({ operators: ['+', '-'] }), b, '4*6-9');
  assert.equal(verdict(op), 'fail_operator');
  assert.equal(op.reward, 0.1);
  const custom = reward({ correctReward: 2, formatReward: 0.25 });
  assert.equal(score(custom, b, '4*6-9').reward, 2);
  assert.equal(score(custom, b, '4*6+9').reward, 0.25);
  assert.equal(score(custom, b, 'no idea').reward, 0);
  assert.equal(verdict(score(reward({ allowStatedResult: false }), b, '4*6-9=15')), 'fail_unparseable');
  assert.equal(score(reward(), b, '4*6-9 = 16').reward, 1, 'the stated result is dropped, not trusted');
  assert.equal(score(reward({ answerTag: 'eq' }), b, '<eq>4*6-9</eq>').reward, 1);
});

test('reward: a sample without the instance in its metadata is a data error naming the field', () => {
  assert.throws(() => score(reward(), { metadata: { target: 15 } }, '4*6-9'), /sample p\/0 needs metadata \{ numbers.*metadata\.numbers/);
  assert.throws(() => score(reward(), { metadata: { numbers: [4, 6.5], target: 15 } }, '4*6-9'), /metadata\.numbers\.1/);
  assert.throws(() => score(reward(), { metadata: undefined }, '4*6-9'), /needs metadata/);
});

test('bad task options are rejected naming the field', () => {
  assert.throws(() => getTask('countdown', { maxNumbers: 6 }), /options of task countdown: maxNumbers: /);
  assert.throws(() => getTask('countdown', { minNumber: 50, maxNumber: 10 }), /minNumber: minNumber must not exceed maxNumber/);
  assert.throws(() => getTask('countdown', { operators: ['+', '%'] }), /operators\.1/);
  assert.throws(() => getTask('countdown', { operators: ['+', '+'] }), /operators must not repeat/);
  assert.throws(
    () => getTask('countdown', { intermediates: 'natural', minNumber: 0 }),
    /minNumber: the natural rule allows positive numbers only/,
  );
  assert.throws(() => getTask('countdown', { difficulty: 3 }), /difficulty/);
});

test('an impossible split is an error that says which knobs to turn', () => {
  // two numbers in 1..2 give a handful of instances; with operators + only, targets 2..4, few in eval
  const t = getTask('countdown', { minNumbers: 2, maxNumbers: 2, maxNumber: 2, operators: ['+'], minTarget: 50, maxTarget: 60 });
  assert.throws(
    () => t.prompts(1, 'train', 1),
    /countdown: no train problem found for item 0 in 2000 attempts.*Widen \[minTarget, maxTarget\]/,
  );
});

test('sftTarget of an instance without a solution says so', () => {
  const t = getTask('countdown');
  assert.throws(
    () => t.sftTarget({ promptId: 'x', prompt: '', reference: '50', metadata: { numbers: [1, 1, 1], target: 50 } }),
    /item x \(numbers 1, 1, 1, target 50\) has no solution/,
  );
});

test('compact and instruct formats', () => {
  const c = getTask('countdown');
  assert.equal(c.alphabet, '0123456789,>:+-*/()');
  assert.equal(c.maxPromptChars, 4 * 2 + 3 + 1 + 3 + 1);
  assert.equal(c.maxCompletionChars, 4 * 2 + 3 + 4);
  const i = getTask('countdown', { format: 'instruct', numberUse: 'at_most_once' });
  const it = i.prompts(2, 'train', 1)[0]!;
  const m = it.metadata as { numbers: number[]; target: number };
  assert.ok(
    it.prompt.startsWith(`Using the numbers [${m.numbers.join(', ')}], write an arithmetic expression that equals ${m.target}.`),
    it.prompt,
  );
  assert.match(it.prompt, /each number at most once/);
  assert.match(i.sftTarget(it), /^<answer>[\d()+\-*/ ]+<\/answer>$/);
  assert.deepEqual(i.reward, {
    name: 'countdown',
    options: { numberUse: 'at_most_once', intermediates: 'rational', operators: ['+', '-', '*', '/'], formatReward: 0.1 },
  });
});
