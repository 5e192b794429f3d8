import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  tokenize13a,
  sentenceBleu,
  corpusBleu,
  sentenceChrf,
  corpusChrf,
  rougeL,
  lcsLength,
} from '../../../activities/reward/reference.js';
import { defaultRegistry } from '../../../activities/reward/registry.js';
import { logger } from '../../../activities/common/log.js';

const close = (a: number, b: number, tol = 1e-9) => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);

test('13a tokenisation splits punctuation but keeps numbers, apostrophes and hyphens', () => {
  assert.equal(tokenize13a('Hello, world!'), 'Hello , world !');
  assert.equal(tokenize13a("It wasn't 3.5 or 1,000."), "It wasn't 3.5 or 1,000 .");
  assert.equal(tokenize13a('e-mail 12-3 (x) a/b'), 'e-mail 12 - 3 ( x ) a / b');
  assert.equal(tokenize13a('&quot;hi&quot; &amp; &lt;'), '" hi " & <');
  assert.equal(tokenize13a('line-\nbreak\nnext <skipped>'), 'linebreak next');
  assert.equal(tokenize13a('  many   spaces\u3000here '), 'many spaces here');
});

test('sentence BLEU, computed by hand: exp smoothing of a missing 4-gram', () => {
  // hyp: the cat sat on the mat / ref: the cat is on the mat
  // 1-grams 5/6, 2-grams 3/5, 3-grams 1/4, 4-grams 0/3 -> exp smoothing gives 1/(2*3); BP = 1.
  const b = sentenceBleu('the cat sat on the mat', ['the cat is on the mat']);
  close(b.score, 100 * Math.pow((5 / 6) * (3 / 5) * (1 / 4) * (1 / 6), 1 / 4));
  assert.deepEqual(b.correct, [5, 3, 1, 0]);
  assert.deepEqual(b.total, [6, 5, 4, 3]);
  assert.equal(b.bp, 1);
});

test('sentence BLEU, by hand: effective order and brevity penalty', () => {
  // 2 tokens against 6: orders 1 and 2 are perfect, order 3 has no hypothesis n-grams -> effective order 2; BP = e^(1-6/2).
  const b = sentenceBleu('the cat', ['the cat sat on the mat']);
  close(b.score, 100 * Math.exp(1 - 3));
  // Without effective order the missing orders are zero: BLEU is (numerically) zero.
  close(sentenceBleu('the cat', ['the cat sat on the mat'], { effectiveOrder: false }).score, 0);
  // Closest reference length: 2 tokens, references of 6 and 3 tokens -> 3 is used.
  close(sentenceBleu('the cat', ['the cat sat on the mat', 'the cat sat']).bp, Math.exp(1 - 3 / 2));
  // Clipping: "the the the" against "the cat" matches only one "the".
  assert.equal(sentenceBleu('the the the', ['the cat']).correct[0], 1);
});

test('sacreBLEU README example: corpus BLEU 48.53 and chrF2 59.73', () => {
  const refs = [
    ['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
    ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.'],
  ];
  const sys = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.'];
  const b = corpusBleu(sys, refs);
  assert.equal(b.score.toFixed(2), '48.53');
  assert.deepEqual(
    b.precisions.map((p) => p.toFixed(1)),
    ['82.4', '50.0', '45.5', '37.5'],
  );
  assert.equal(b.bp.toFixed(3), '0.943');
  assert.equal(b.sysLen, 17);
  assert.equal(b.refLen, 18);
  assert.equal(corpusChrf(sys, refs).toFixed(2), '59.73');
});

test('agrees with sacreBLEU 2.4.3 outputs on unicode, entities, empty strings and multiple references', () => {
  const fx = JSON.parse(readFileSync(new URL('./fixtures/sacrebleu-2.4.3.json', import.meta.url), 'utf8')) as {
    cases: { hyp: string; refs: string[]; tok13a: string; bleu: number; chrf: number }[];
    corpus_bleu: number;
    corpus_chrf: number;
  };
  for (const c of fx.cases) {
    assert.equal(tokenize13a(c.hyp), c.tok13a, c.hyp);
    close(sentenceBleu(c.hyp, c.refs).score, c.bleu);
    close(sentenceChrf(c.hyp, c.refs), c.chrf);
  }
  const hyps = fx.cases.map((c) => c.hyp);
  const stream = [fx.cases.map((c) => c.refs[0]!)];
  close(corpusBleu(hyps, stream).score, fx.corpus_bleu);
  close(corpusChrf(hyps, stream), fx.corpus_chrf);
});

test('chrF by hand: "ab" against "abc"', () => {
  // order 1: P = 2/2, R = 2/3; order 2: P = 1/1, R = 1/2; orders 3..6: no hypothesis n-grams (not counted).
  // avgP = 1, avgR = 7/12, F2 = 5 * 1 * 7/12 / (4 * 1 + 7/12) = 7/11.
  close(sentenceChrf('ab', ['abc']), 700 / 11);
  close(sentenceChrf('a b', ['abc']), 700 / 11); // whitespace is removed
  close(sentenceChrf('xyz', ['abc']), 0);
  close(sentenceChrf('日本語', ['日本語']), 100); // code points, not UTF-16 units
});

test('ROUGE-L by hand: LCS F-measure, best reference, unicode tokens', () => {
  assert.equal(lcsLength(['a', 'b', 'c', 'd'], ['b', 'd', 'a']), 2);
  const r = rougeL('The cat sat on the mat today', ['the cat was on a mat']);
  // LCS = the cat on mat (4); P = 4/7, R = 4/6.
  close(r.precision, 4 / 7);
  close(r.recall, 4 / 6);
  close(r.f, (2 * (4 / 7) * (4 / 6)) / (4 / 7 + 4 / 6));
  close(rougeL('x', ['y', 'x']).f, 1);
  close(rougeL('', ['x']).f, 0);
  close(rougeL('Größe Straße', ['größe straße']).f, 1);
});

test('rewards: 0..1 by default, components, extraction, missing reference is an error', async () => {
  const reg = defaultRegistry();
  const ctx = { step: 0, signal: new AbortController().signal, log: logger('test') };
  const s = { promptId: 'p', sampleId: 1, prompt: 'q', completion: 'the cat sat on the mat', reference: 'the cat is on the mat' };
  const bleu = await reg.create({ name: 'bleu' }).score!(s, ctx);
  close(bleu.reward, Math.pow((5 / 6) * (3 / 5) * (1 / 4) * (1 / 6), 1 / 4));
  assert.equal(bleu.components!.brevity_penalty, 1);
  const pct = await reg.create({ name: 'bleu', options: { scale: 'percent' } }).score!(s, ctx);
  close(pct.reward, bleu.reward * 100);
  const chrf = await reg.create({ name: 'chrf' }).score!({ ...s, completion: 'ab', reference: ['zzz', 'abc'] }, ctx);
  close(chrf.reward, 7 / 11);
  const rouge = await reg.create({ name: 'rouge_l', options: { extract: ['answer_tag', 'whole'] } }).score!(
    { ...s, completion: 'thinking... <answer>the cat was on a mat</answer>' },
    ctx,
  );
  close(rouge.reward, 4 / 6); // LCS "the cat on mat": P = R = 4/6
  const empty = await reg.create({ name: 'bleu' }).score!({ ...s, completion: '' }, ctx);
  assert.equal(empty.reward, 0);
  await assert.rejects(async () => reg.create({ name: 'chrf' }).score!({ ...s, reference: undefined }, ctx), /needs a reference/);
  assert.throws(() => reg.create({ name: 'bleu', options: { smooth: 'magic' } }), /smooth/);
});
