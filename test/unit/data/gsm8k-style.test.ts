/**
 * The example dataset of `durable-rl make-dataset gsm8k-style` (activities/data/gsm8k-style.ts):
 * seeded rows, worked solutions that compute, the columns the example config maps, and the command.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { INSTRUCTION, wordProblem, wordProblemsJsonl } from '../../../activities/data/gsm8k-style.js';
import { loadDataset } from '../../../activities/data/dataset.js';
import { dataConfigSchema } from '../../../activities/data/dataset.js';
import { runCli } from '../../support/cli.js';

const lines = (text: string) => text.trimEnd().split('\n');

test('row r depends only on (seed, r): 50 rows of seed 1 begin with its 20 rows, byte for byte; seed 2 gives other problems', () => {
  const twenty = lines(wordProblemsJsonl(1, 20));
  assert.deepEqual(lines(wordProblemsJsonl(1, 50)).slice(0, 20), twenty);
  assert.equal(wordProblemsJsonl(1, 20), wordProblemsJsonl(1, 20));
  const other = lines(wordProblemsJsonl(2, 20));
  assert.ok(other.filter((l, i) => l !== twenty[i]).length >= 18, 'seed 2 differs in nearly every row');
});

test('every one of 2000 rows: prompt = question + the instruction; each step "a op b = c." computes; the last c is the answer, a whole number >= 0, in <answer> tags', () => {
  const ops: Record<string, (a: number, b: number) => number> = { '+': (a, b) => a + b, '-': (a, b) => a - b, '*': (a, b) => a * b };
  const openings = new Set<string>();
  for (let r = 0; r < 2000; r++) {
    const p = wordProblem(1, r);
    assert.equal(p.prompt, `${p.question} ${INSTRUCTION}`);
    assert.match(p.answer, /^\d+$/, `row ${r}: ${p.answer}`);
    const m = /^(.*) <answer>(\d+)<\/answer>$/.exec(p.completion);
    assert.ok(m, `row ${r}: ${p.completion}`);
    assert.equal(m[2], p.answer);
    const steps = m[1]!.split('. ').map((s) => /^(\d+) ([-+*]) (\d+) = (\d+)\.?$/.exec(s));
    assert.equal(steps.length, 2, `row ${r}: two steps`);
    for (const s of steps) {
      assert.ok(s, `row ${r}: ${p.completion}`);
      assert.equal(ops[s[2]!]!(Number(s[1]), Number(s[3])), Number(s[4]), `row ${r}: ${s[0]}`);
    }
    assert.equal(steps[1]![4], p.answer);
    openings.add(
      p.question
        .split(' ')
        .slice(0, 2)
        .join(' ')
        .replace(/^[A-Z][a-z]+ /, 'NAME '),
    );
  }
  assert.ok(openings.size >= 6, `several templates in use: ${[...openings].join(' | ')}`);
});

test("the file loads as a run's dataset with the example config's columns: 5000 rows, 4% held out (200), question in the metadata", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gsm8k-style-'));
  try {
    const file = join(dir, 'train.jsonl');
    writeFileSync(file, wordProblemsJsonl(1, 5000));
    const config = dataConfigSchema.parse({
      train: file,
      evalFraction: 0.04,
      promptColumn: 'prompt',
      completionColumn: 'completion',
      referenceColumn: 'answer',
    });
    const data = await loadDataset(config, { seed: 1, needCompletion: true });
    assert.equal(data.train.length, 4800);
    assert.equal(data.eval.length, 200);
    const x = data.train[0]!;
    assert.equal(x.prompt, wordProblem(1, x.row - 1).prompt);
    assert.equal(x.completion, wordProblem(1, x.row - 1).completion);
    assert.equal(x.reference, wordProblem(1, x.row - 1).answer);
    assert.deepEqual(Object.keys(x.metadata), ['question']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('durable-rl make-dataset gsm8k-style --rows 10 --seed 3 --out FILE writes wordProblemsJsonl(3, 10); an unknown kind exits 2 naming it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'make-dataset-'));
  try {
    const out = join(dir, 'sub', 'g.jsonl');
    const r = await runCli(['make-dataset', 'gsm8k-style', '--rows', '10', '--seed', '3', '--out', out], {});
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /wrote 10 GSM8K-style word problems \(seed 3\) to /);
    assert.equal(readFileSync(out, 'utf8'), wordProblemsJsonl(3, 10));
    const bad = await runCli(['make-dataset', 'gsm9k'], {});
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown dataset kind "gsm9k"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
