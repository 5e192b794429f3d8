import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { dataConfigSchema, DatasetError, loadDataset, renderChat, type DataConfig } from '../../../activities/data/dataset.js';
import { datasetTask } from '../../../activities/data/dataset-task.js';
import { epochOrder, TrainOrder } from '../../../activities/data/order.js';
import { resolveDataUri } from '../../../activities/data/source.js';
import { CharTokenizer } from '../../../activities/model/tokenizer.js';

const dir = mkdtempSync(join(tmpdir(), 'dataset-'));
const file = (name: string, text: string | Uint8Array) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
const cfg = (o: Partial<DataConfig> & { train: string }): DataConfig => dataConfigSchema.parse(o);
const load = (o: Partial<DataConfig> & { train: string }, needCompletion = false, seed = 1) =>
  loadDataset(cfg(o), { seed, needCompletion });
const problems = Array.from({ length: 10 }, (_, i) => ({ prompt: `${i}+1=`, completion: String(i + 1), level: i % 3 }));

test('a JSONL dataset: prompt, completion as reference, unmapped columns in metadata, size and sha256 of the file', async () => {
  const text = jsonl(problems);
  const d = await load({ train: file('a.jsonl', text) });
  assert.equal(d.train.length, 10);
  assert.deepEqual(d.train[3], { row: 4, prompt: '3+1=', messages: null, completion: '4', reference: '4', metadata: { level: 0 } });
  assert.equal(d.files.train.size, Buffer.byteLength(text));
  assert.equal(d.files.train.sha256, createHash('sha256').update(text).digest('hex'));
  assert.equal(d.files.train.uri, pathToFileURL(join(dir, 'a.jsonl')).href);
  assert.equal(d.alphabet, '+0123456789=', 'every character of prompts and completions once, in code-point order');
  assert.equal(d.maxPromptChars, 4);
  assert.equal(d.maxCompletionChars, 2);
});

test('a Parquet dataset reads the same rows as its JSONL twin (strings, numbers, chat-message lists)', async () => {
  const rows = [
    { messages: [{ role: 'user', content: 'hi' }], answer: 7 },
    { messages: [{ role: 'user', content: 'yo' }], answer: 8 },
  ];
  const pq = parquetWriteBuffer({
    columnData: [
      { name: 'messages', data: rows.map((r) => r.messages) },
      { name: 'answer', data: rows.map((r) => r.answer), type: 'INT32' },
    ],
  });
  const a = await load({ train: file('chat.parquet', new Uint8Array(pq)), completionColumn: 'answer', promptColumn: 'messages' });
  const b = await load({ train: file('chat.jsonl', jsonl(rows)), completionColumn: 'answer', promptColumn: 'messages' });
  assert.deepEqual(a.train, b.train);
  assert.equal(a.train[0]!.prompt, 'user: hi\nassistant:');
  assert.deepEqual(a.train[0]!.messages, [{ role: 'user', content: 'hi' }]);
  assert.equal(a.train[1]!.completion, '8');
});

test('template fills the prompt from columns ({{ }} literal), system makes it chat: "system: S\\nuser: Q: 3?\\nassistant:"', async () => {
  const d = await load({
    train: file('t.jsonl', jsonl([{ q: '3?', a: '3', id: 9 }])),
    template: 'Q: {q} {{x}}',
    completionColumn: 'a',
    system: 'S',
  });
  assert.equal(
    d.train[0]!.prompt,
    renderChat([
      { role: 'system', content: 'S' },
      { role: 'user', content: 'Q: 3? {x}' },
    ]),
  );
  assert.equal(d.train[0]!.prompt, 'system: S\nuser: Q: 3? {x}\nassistant:');
  assert.deepEqual(d.train[0]!.metadata, { id: 9 }, 'template columns are mapped, the others are metadata');
});

test('referenceColumn: rewards compare with its value, SFT trains on the completion', async () => {
  const d = await load({ train: file('r.jsonl', jsonl([{ prompt: 'p', completion: 'so 4', answer: 4 }])), referenceColumn: 'answer' });
  assert.equal(d.train[0]!.completion, 'so 4');
  assert.equal(d.train[0]!.reference, '4');
});

test('validation names the first bad row: missing prompt column at row 3 (line 4), blank lines skipped', async () => {
  const p = file('bad.jsonl', '{"prompt":"a"}\n\n{"prompt":"b"}\n{"question":"c"}\n');
  await assert.rejects(load({ train: p }), (e: unknown) => {
    assert.ok(e instanceof DatasetError);
    assert.equal(e.field, 'promptColumn');
    assert.match(e.message, /bad\.jsonl row 3 \(line 4\) has no "prompt" column/);
    return true;
  });
});

test('validation: a missing completion is an error only where sft needs it (row 2 named)', async () => {
  const p = file('nocomp.jsonl', jsonl([{ prompt: 'a', completion: 'x' }, { prompt: 'b' }]));
  assert.equal((await load({ train: p })).train[1]!.completion, null);
  await assert.rejects(load({ train: p }, true), /row 2 \(line 2\) has no "completion" completion, which the run's sft phases train on/);
});

test('validation: an unreadable file, an unknown extension, an empty split, a non-JSON line, a bad Parquet file', async () => {
  await assert.rejects(
    load({ train: join(dir, 'missing.jsonl') }),
    (e: unknown) => e instanceof DatasetError && e.field === 'train' && /cannot read/.test(e.message),
  );
  await assert.rejects(load({ train: file('x.csv', 'a,b') }), /unknown dataset format; name the file \.jsonl/);
  await assert.rejects(load({ train: file('empty.jsonl', '\n\n') }), /has no rows: the train split is empty/);
  await assert.rejects(load({ train: file('junk.jsonl', '{"prompt":"a"}\nnope\n') }), /row 2 \(line 2\) is not valid JSON/);
  await assert.rejects(load({ train: file('junk.parquet', 'not parquet at all') }), /is not a readable Parquet file/);
  await assert.rejects(
    load({ train: file('e.jsonl', jsonl(problems)), eval: file('ev.jsonl', '') }),
    (e: unknown) => e instanceof DatasetError && e.field === 'eval' && /the eval split is empty/.test(e.message),
  );
});

test('evalFraction 0.3 holds out round(0.3 · 10) = 3 rows chosen by the seed; the same seed holds out the same rows', async () => {
  const p = file('f.jsonl', jsonl(problems));
  const a = await load({ train: p, evalFraction: 0.3 }, false, 5);
  const b = await load({ train: p, evalFraction: 0.3 }, false, 5);
  const c = await load({ train: p, evalFraction: 0.3 }, false, 6);
  assert.equal(a.eval.length, 3);
  assert.equal(a.train.length, 7);
  assert.equal(a.evalSource, 'held_out');
  assert.deepEqual(
    a.eval.map((x) => x.row),
    b.eval.map((x) => x.row),
  );
  assert.notDeepEqual(
    a.eval.map((x) => x.row),
    c.eval.map((x) => x.row),
    'another seed, other rows (for these seeds)',
  );
  assert.deepEqual(
    [...a.train, ...a.eval].map((x) => x.row).sort((x, y) => x - y),
    problems.map((_, i) => i + 1),
    'the two splits partition the rows',
  );
  await assert.rejects(load({ train: p, evalFraction: 0.01 }), /holds out 0: leave at least one row on each side/);
  await assert.rejects(load({ train: p, evalFraction: 0.1, eval: p }), /either an eval file or evalFraction/);
});

test('evalFraction: the held-out rows are in the alphabet and the prompt and completion limits (the run tokenizes them too)', async () => {
  // row i has a letter no other row has, and the longest prompt and completion are row 10's
  const rows = Array.from({ length: 10 }, (_, i) => ({
    prompt: `${String.fromCharCode(97 + i)}${'?'.repeat(i)}`,
    completion: '!'.repeat(i + 1),
  }));
  const p = file('held-out-chars.jsonl', jsonl(rows));
  let seed = 1;
  while (!(await load({ train: p, evalFraction: 0.3 }, false, seed)).eval.some((x) => x.row === 10)) seed++;
  const d = await load({ train: p, evalFraction: 0.3 }, false, seed);
  assert.ok(
    d.eval.some((x) => x.row === 10),
    `seed ${seed} holds out row 10`,
  );
  assert.equal(d.alphabet, '!?abcdefghij', 'the letters of the held-out rows too, in code-point order');
  for (const x of d.eval) for (const ch of x.prompt) assert.ok(d.alphabet.includes(ch), `row ${x.row}'s ${ch} is in the alphabet`);
  assert.equal(d.maxPromptChars, 10, "row 10's prompt (held out) is the longest");
  assert.equal(d.maxCompletionChars, 10, "row 10's completion (held out) is the longest");
  const again = await load({ train: p, evalFraction: 0.3 }, false, seed);
  assert.equal(again.alphabet, d.alphabet, 'the same seed, the same alphabet');
  // the char tokenizer built from it encodes every held-out prompt
  const tokenizer = CharTokenizer.fromAlphabet(d.alphabet);
  for (const x of d.eval) assert.equal(tokenizer.encode(x.prompt, { addSpecialTokens: false }).length, [...x.prompt].length);
});

test('epoch order: each epoch a permutation of the rows, from (seed, epoch) alone', () => {
  const e0 = epochOrder(3, 0, 50);
  assert.deepEqual(
    [...e0].sort((a, b) => a - b),
    Array.from({ length: 50 }, (_, i) => i),
  );
  assert.deepEqual(epochOrder(3, 0, 50), e0, 'same seed and epoch, same order');
  assert.notDeepEqual(epochOrder(3, 1, 50), e0, 'the next epoch is reshuffled');
  assert.notDeepEqual(epochOrder(4, 0, 50), e0, 'another seed, another order');
  const o = new TrainOrder(3, 50);
  assert.deepEqual(o.at(53), { epoch: 1, position: 3, row: epochOrder(3, 1, 50)[3] });
});

test('the dataset task: train item i is row order(seed, ⌊i/n⌋)[i mod n]; any slice agrees with the whole stream', async () => {
  const d = await load({ train: file('task.jsonl', jsonl(problems)) });
  const task = datasetTask(d);
  const whole = task.prompts(7, 'train', 25, 0);
  assert.deepEqual(task.prompts(7, 'train', 6, 9), whole.slice(9, 15));
  assert.equal(whole[12]!.promptId, 'data-train-000012');
  const row = epochOrder(7, 1, 10)[2]!;
  assert.equal(whole[12]!.prompt, problems[row]!.prompt);
  assert.equal(task.sftTarget(whole[12]!), problems[row]!.completion);
  const firstEpoch = whole.slice(0, 10).map((x) => x.prompt);
  assert.deepEqual([...firstEpoch].sort(), problems.map((p) => p.prompt).sort(), 'an epoch uses every row once');
});

test('the dataset task: eval items in file order, at most evalItems of them; its default reward is exact_match on the reference', async () => {
  const d = await load({ train: file('tr.jsonl', jsonl(problems)), eval: file('ev2.jsonl', jsonl(problems.slice(0, 2))) });
  const task = datasetTask(d);
  assert.equal(task.evalItems, 2);
  assert.deepEqual(
    task.prompts(1, 'eval', 2).map((x) => [x.promptId, x.prompt]),
    [
      ['data-eval-000000', '0+1='],
      ['data-eval-000001', '1+1='],
    ],
  );
  assert.throws(() => task.prompts(1, 'eval', 3), /the eval split has 2 rows/);
  const fn = task.createReward();
  const r = await fn.score!(
    { promptId: 'x', sampleId: 0, prompt: '0+1=', completion: '1', reference: '1' },
    { step: 0, signal: new AbortController().signal, log: console as never },
  );
  assert.equal(r.reward, 1);
});

test('resolveDataUri: relative paths against the base directory, file:// and s3:// kept', () => {
  assert.equal(resolveDataUri('data/x.jsonl', '/cfg'), 'file:///cfg/data/x.jsonl');
  assert.equal(resolveDataUri('file://data/x.jsonl', '/cfg'), 'file:///cfg/data/x.jsonl');
  assert.equal(resolveDataUri('file:///abs/x.jsonl', '/cfg'), 'file:///abs/x.jsonl');
  assert.equal(resolveDataUri('/abs/x.jsonl', '/cfg'), 'file:///abs/x.jsonl');
  assert.equal(resolveDataUri('s3://bucket/k/x.parquet', '/cfg'), 's3://bucket/k/x.parquet');
});
