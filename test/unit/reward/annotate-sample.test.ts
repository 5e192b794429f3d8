import { test } from 'node:test';
import assert from 'node:assert/strict';
import { additionProblems, noisyCompletions } from '../../../activities/reward/annotate-sample.js';

test('addition problems are seeded, correct, and of the requested size', () => {
  const a = additionProblems(7, 50, { digits: 3 });
  const b = additionProblems(7, 50, { digits: 3 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(additionProblems(8, 50, { digits: 3 }), a);
  for (const p of a) {
    assert.equal(Number(p.answer), p.a + p.b);
    assert.ok(p.a < 1000 && p.b < 1000 && p.b >= 1);
    assert.equal(p.prompt, `What is ${p.a} + ${p.b}?`);
  }
  assert.equal(new Set(a.map((p) => p.promptId)).size, 50);
});

test('the noisy solver is right about as often as asked, and wrong answers differ', () => {
  const probs = additionProblems(1, 2000);
  const comps = noisyCompletions(probs, 2, 0.7);
  let right = 0;
  comps.forEach((c, i) => {
    const nums = c.replace(/,/g, '').match(/\d+/g)!;
    if (Number(nums[nums.length - 1]) === Number(probs[i]!.answer)) right++;
  });
  assert.ok(Math.abs(right / 2000 - 0.7) < 0.04, `accuracy ${right / 2000}`);
  assert.deepEqual(noisyCompletions(probs, 2, 0.7), comps);
});

test('bad sizes are rejected with the value', () => {
  assert.throws(() => additionProblems(1, 3, { digits: 0 }), /digits must be an integer in \[1, 15\], got 0/);
  assert.throws(() => additionProblems(1, -1), /count must be a non-negative integer, got -1/);
});
