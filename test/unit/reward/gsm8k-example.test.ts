/**
 * The example of "Your data and your reward" (README): docs/configs/gsm8k-style.yaml with its reward
 * module docs/rewards/gsm8k.ts — the config's paths, its check before a run starts on the generated
 * data, and the module's two functions and their composition on samples.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { wordProblem, wordProblemsJsonl } from '../../../activities/data/gsm8k-style.js';
import { scoreSamples } from '../../../activities/reward/run.js';
import type { RewardContext, RewardSample } from '../../../activities/reward/types.js';
import { loadRunConfig, parseRunConfig } from '../../../activities/run/config.js';
import { checkRunConfig } from '../../../activities/run/resolve.js';
import { correctness, format } from '../../../docs/rewards/gsm8k.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const CONFIG = join(root, 'docs/configs/gsm8k-style.yaml');

const row = wordProblem(1, 0);
/** A number other than the row's answer. */
const wrong = String(Number(row.answer) + 1);
const sample = (completion: string, reference = row.answer): RewardSample => ({
  promptId: 'data-train-000000',
  sampleId: 0,
  prompt: row.prompt,
  completion,
  reference,
  metadata: { question: row.question },
});
const ctx = { step: 0, signal: new AbortController().signal } as RewardContext;

test('the example config reads ../../data/gsm8k-style.jsonl and the two exports of docs/rewards/gsm8k.ts (correctness verifiable, weights 1 and 0.2), relative to its own directory', () => {
  const config = loadRunConfig(CONFIG);
  assert.equal(config.data?.train, pathToFileURL(join(root, 'data/gsm8k-style.jsonl')).href);
  assert.deepEqual(
    config.reward.functions!.map((f) => [f.module, f.export, f.weight, f.verifiable]),
    [
      [join(root, 'docs/rewards/gsm8k.ts'), 'correctness', 1, true],
      [join(root, 'docs/rewards/gsm8k.ts'), 'format', 0.2, false],
    ],
  );
});

test('the example config passes the check before a run starts on 5000 generated rows: dataset, char model from its alphabet, both exports loaded', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gsm8k-example-'));
  try {
    const file = join(dir, 'gsm8k-style.jsonl');
    writeFileSync(file, wordProblemsJsonl(1, 5000));
    const config = loadRunConfig(CONFIG);
    config.data!.train = file;
    const run = await checkRunConfig(config);
    assert.equal(run.task.evalItems, 100, 'evalFraction 0.02 of 5000 rows');
    for (const ch of '<answer>0123456789+-*=.') assert.ok(run.task.alphabet.includes(ch), ch);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('correctness: the gold completion 1, another number 0, no tag 0, and a GSM8K solution as the reference ("… #### 15") read as its number (15.0 = 15)', async () => {
  assert.deepEqual(await correctness(sample(row.completion), ctx), { reward: 1, components: { correct: 1, answered: 1 } });
  assert.equal((await correctness(sample(`${row.completion.split('<answer>')[0]}<answer>${wrong}</answer>`), ctx)).reward, 0);
  assert.equal((await correctness(sample(row.completion.split(' <answer>')[0]!), ctx)).reward, 0);
  assert.equal((await correctness(sample('<answer>15.0</answer>', 'Tom earns 14 * 4 = <<14*4=56>>56 dollars.\n#### 15'), ctx)).reward, 1);
});

test('format: one <answer> tag at the end holding a number 1; holding words 0.5; no tag, two tags or text after it 0', () => {
  assert.equal(format(sample(row.completion)), 1);
  assert.equal(format(sample('so <answer>1,234</answer> ')), 1);
  assert.equal(format(sample('<answer>fifteen</answer>')), 0.5);
  assert.equal(format(sample('15')), 0);
  assert.equal(format(sample('<answer>1</answer> <answer>15</answer>')), 0);
  assert.equal(format(sample('<answer>15</answer> dollars')), 0);
});

test("the config's reward on samples: gold 1 + 0.2·1 = 1.2, a wrong number 0 + 0.2 = 0.2, no tag 0; components reward/correctness and reward/format", async () => {
  const run = await checkRunConfig(Object.assign(loadRunConfig(CONFIG), { data: null, task: { name: 'addition', options: {} } }));
  const out = await scoreSamples(
    run.createReward(),
    [sample(row.completion), sample(`<answer>${wrong}</answer>`), sample(row.answer)],
    run.config.reward.errorPolicy,
    { step: 0 },
  );
  assert.deepEqual(
    out.rows.map((r) => Math.round(r.reward! * 1e9) / 1e9),
    [1.2, 0.2, 0],
  );
  assert.deepEqual(
    out.rows.map((r) => [r.components!.correctness, r.components!.format, r.components!.correct]),
    [
      [1, 1, 1],
      [0, 1, 0],
      [0, 0, 0],
    ],
  );
});

test('the same data and reward from a pretrained model (the tiny Qwen3 fixture, model.from) with a system message: prompts go through its chat template as system + user turns, completions end with <|im_end|>', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gsm8k-pretrained-'));
  try {
    const file = join(dir, 'gsm8k-style.jsonl');
    writeFileSync(file, wordProblemsJsonl(1, 50));
    const example = loadRunConfig(CONFIG);
    const config = parseRunConfig({
      name: 'gsm8k-from-qwen3',
      data: { train: file, evalFraction: 0.1, referenceColumn: 'answer', system: 'You solve word problems.' },
      model: { from: join(root, 'test/fixtures/hf/qwen3') },
      reward: { functions: example.reward.functions },
      phases: [{ kind: 'rl', steps: 1, promptsPerStep: 2, groupSize: 2 }],
    });
    const run = await checkRunConfig(config);
    const [item] = run.task.prompts(config.seed, 'train', 1);
    assert.deepEqual(item!.messages, [
      { role: 'system', content: 'You solve word problems.' },
      { role: 'user', content: item!.metadata.question + ' Give the final answer in <answer></answer> tags.' },
    ]);
    assert.equal(
      run.tokenizer.decode(run.encodePrompt(item!.prompt, item!.messages)),
      `<|im_start|>system\nYou solve word problems.<|im_end|>\n<|im_start|>user\n${item!.messages![1]!.content}<|im_end|>\n<|im_start|>assistant\n`,
    );
    assert.equal(run.tokenizer.decode(run.encodeCompletion('<answer>15</answer>')), '<answer>15</answer><|im_end|>');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
