import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultRegistry } from '../../../activities/reward/registry.js';
import { extractAnswer, extractBoxed, extractChoice, extractLastNumber, extractAnswerIs } from '../../../activities/reward/extract.js';
import { normalizeAnswer } from '../../../activities/reward/verifiable.js';
import type { RewardFn, RewardResult, RewardSample } from '../../../activities/reward/types.js';
import { logger } from '../../../activities/common/log.js';

const ctx = { step: 0, signal: new AbortController().signal, log: logger('test') };
const reg = defaultRegistry();

function sample(completion: string, reference?: string | string[], metadata?: Record<string, unknown>): RewardSample {
  return { promptId: 'p1', sampleId: 0, prompt: 'q', completion, reference, metadata };
}
async function score(
  fn: RewardFn,
  completion: string,
  reference?: string | string[],
  metadata?: Record<string, unknown>,
): Promise<RewardResult> {
  return fn.score!(sample(completion, reference, metadata), ctx);
}

test('extractors find the last boxed, answer phrase and number', () => {
  assert.equal(extractBoxed('first \\boxed{1} then \\boxed{\\frac{1}{2}}'), '\\frac{1}{2}');
  assert.equal(extractBoxed('\\boxed{\\{1, 2\\}}'), '\\{1, 2\\}');
  assert.equal(extractBoxed('\\boxed 7 done'), '7');
  assert.equal(extractBoxed('no box'), undefined);
  assert.equal(extractAnswerIs('So the answer is 42. Great.'), '42');
  assert.equal(extractAnswerIs('**Final Answer:** $\\frac{3}{4}$ cups'), '\\frac{3}{4}');
  assert.equal(extractAnswerIs('Answer: 3.5'), '3.5');
  assert.equal(extractLastNumber('I had 3 apples, then 1,250.5 pears and -7 plums.'), '-7');
  assert.equal(extractLastNumber('ratio 3/4'), '3/4');
  assert.equal(extractLastNumber('nothing here'), undefined);
  assert.deepEqual(extractAnswer('x #### 72\nmore', ['boxed', 'hash']), { answer: '72', method: 'hash' });
});

test('math_equivalence: equal values in different forms are correct', async () => {
  const fn = reg.create({ name: 'math_equivalence' });
  const right: [string, string][] = [
    ['The answer is \\boxed{\\frac{1}{2}}', '0.5'],
    ['So we get $\\boxed{\\dfrac{6}{8}}$.', '3/4'],
    ['Natalia sold 48 + 24 = 72 clips.\n#### 72', '#### 72'],
    ['The answer is 1,234,567.', '1234567'],
    ['The final answer is -3', '\\boxed{-3}'],
    ['<answer>50%</answer>', '0.5'],
    ['... so $x = \\boxed{2\\sqrt{3}}$', '\\boxed{\\sqrt{12}}'],
    ['Therefore the answer is 42 apples.', '42'],
    ['I think it is 10, no wait, it is 12', '12'],
    ['\\boxed{\\left( 1, \\frac{1}{2} \\right)}', '(1, 0.5)'],
    ['\\boxed{x^2+1}', 'x^2 + 1'], // symbolic: normalised string fallback
    ['The answer is 123456789012345678901234567890', '123456789012345678901234567890'],
    ['\\boxed{2\\frac{1}{2}}', '5/2'],
  ];
  for (const [c, r] of right) {
    const res = await score(fn, c, r);
    assert.deepEqual(res, { reward: 1, components: { correct: 1, answered: 1 } }, `${c} vs ${r}`);
  }
});

test('math_equivalence: different values are wrong; no answer is not an error', async () => {
  const fn = reg.create({ name: 'math_equivalence', options: { noAnswerReward: -1 } });
  const wrong: [string, string][] = [
    ['\\boxed{\\frac{1}{3}}', '0.333'],
    ['The answer is 123456789012345678901234567891', '123456789012345678901234567890'],
    ['\\boxed{7}', '-7'],
    ['\\boxed{1.414}', '\\sqrt{2}'],
    ['\\boxed{x^2-1}', 'x^2+1'],
    ['\\boxed{(2, 1)}', '(1, 2)'],
  ];
  for (const [c, r] of wrong) {
    assert.deepEqual(await score(fn, c, r), { reward: 0, components: { correct: 0, answered: 1 } }, `${c} vs ${r}`);
  }
  for (const empty of ['', 'I do not know.', '日本語のみ']) {
    assert.deepEqual(await score(fn, empty, '3'), { reward: -1, components: { correct: 0, answered: 0 } }, JSON.stringify(empty));
  }
});

test('math_equivalence: several references, any may match; a missing reference is an error', async () => {
  const fn = reg.create({ name: 'math_equivalence' });
  assert.equal((await score(fn, '\\boxed{4}', ['2', '4'])).reward, 1);
  await assert.rejects(async () => score(fn, '\\boxed{4}'), /needs a reference answer.*p1\/0/);
  const strict = reg.create({ name: 'math_equivalence', options: { stringFallback: false } });
  await assert.rejects(async () => score(strict, '\\boxed{4}', 'Monday'), /reference answer "Monday" is not a number/);
});

test('math_equivalence: options change the comparison', async () => {
  const noThousands = reg.create({ name: 'math_equivalence', options: { thousandsSeparators: false } });
  assert.equal((await score(noThousands, '\\boxed{1,000}', '1000')).reward, 0);
  const loose = reg.create({ name: 'math_equivalence', options: { relTol: 1e-3 } });
  assert.equal((await score(loose, '\\boxed{1.414}', '\\sqrt{2}')).reward, 1);
  const tagOnly = reg.create({ name: 'math_equivalence', options: { extract: ['answer_tag'] } });
  assert.equal((await score(tagOnly, 'the answer is 5', '5')).components!.answered, 0);
});

test('exact_match: normalisation of case, whitespace, end punctuation, articles', async () => {
  const fn = reg.create({ name: 'exact_match' });
  assert.equal((await score(fn, '<answer>  Paris. </answer>', 'paris')).reward, 1);
  assert.equal((await score(fn, 'New   York!', 'new york')).reward, 1);
  assert.equal((await score(fn, '\\boxed{ＡＢＣ}', 'abc')).reward, 1); // NFKC folds full-width letters
  assert.equal((await score(fn, 'Zürich', 'zurich')).reward, 0);
  assert.equal((await score(fn, 'Zürich', 'ZÜRICH')).reward, 1);
  assert.equal((await score(fn, 'the Eiffel Tower', 'Eiffel Tower')).reward, 0);
  const squad = reg.create({ name: 'exact_match', options: { removeArticles: true, punctuation: 'all' } });
  assert.equal((await score(squad, 'the Eiffel-Tower', 'Eiffel Tower')).reward, 1);
  const cs = reg.create({ name: 'exact_match', options: { caseSensitive: true } });
  assert.equal((await score(cs, 'paris', 'Paris')).reward, 0);
  assert.deepEqual(await score(fn, '', 'x'), { reward: 0, components: { correct: 0, answered: 0 } });
  assert.equal(
    normalizeAnswer(' A  b\tC ', {
      caseSensitive: false,
      whitespace: 'remove',
      punctuation: 'ends',
      removeArticles: false,
      unicode: 'none',
    }),
    'abc',
  );
});

test('multiple_choice: robust letter extraction', () => {
  const L = 'ABCD';
  const cases: [string, string | undefined][] = [
    ['The answer is (C).', 'C'],
    ['Answer: B', 'B'],
    ['**Answer:** **D**', 'D'],
    ['A good first step is to expand. ... The correct option is B because it balances.', 'B'],
    ['\\boxed{\\text{A}}', 'A'],
    ['<answer>(d)</answer>', 'D'],
    ['Let me think.\n\nC', 'C'],
    ['Reasoning...\nSo the answer is A or C.', undefined], // ambiguous
    ['(A) 1 (B) 2 (C) 3 (D) 4', undefined], // a restated option list is no answer
    ['A bird in the hand is worth two in the bush.', undefined],
    ['The answer is E', undefined], // not an allowed letter
    ['the answer is a bit unclear', undefined],
    ['', undefined],
    ['First I thought the answer is A. On reflection the answer is D.', 'D'],
    ['The correct answer is: (C) 42 apples', 'C'],
    ['Answer: C. 42', 'C'],
    ['Option B or (D)? The answer is (B) or (D).', undefined],
    ['经过计算，选 (B)。', 'B'], // unicode prose, one bracketed letter in the last paragraph
    ['**Answer:** Ｃ', 'C'], // full-width letters are folded (NFKC)
  ];
  for (const [text, want] of cases) assert.equal(extractChoice(text, L), want, JSON.stringify(text));
});

test('multiple_choice reward: letters narrowed by metadata.choices; bad reference is an error', async () => {
  const fn = reg.create({ name: 'multiple_choice' });
  assert.equal((await score(fn, 'The answer is (B)', 'B')).reward, 1);
  assert.equal((await score(fn, 'The answer is (B)', '(B) Paris')).reward, 1);
  assert.equal((await score(fn, 'The answer is (C)', 'B')).reward, 0);
  assert.equal((await score(fn, 'I cannot tell', 'B')).components!.answered, 0);
  // With three choices E is not a letter the model may pick.
  assert.equal((await score(fn, 'The answer is E', 'A', { choices: ['x', 'y', 'z'] })).components!.answered, 0);
  await assert.rejects(async () => score(fn, 'The answer is A', 'Z', { choices: ['x', 'y'] }), /reference "Z".*not one of the letters AB/);
});

test('bad options name the field', () => {
  assert.throws(() => reg.create({ name: 'math_equivalence', options: { relTol: -1 } }), /relTol/);
  assert.throws(() => reg.create({ name: 'exact_match', options: { whitespace: 'squash' } }), /whitespace/);
  assert.throws(() => reg.create({ name: 'multiple_choice', options: { letters: 'abc' } }), /letters: upper-case letters only/);
  assert.throws(() => reg.create({ name: 'exact_match', options: { caseSensitiv: true } }), /caseSensitiv/);
});
