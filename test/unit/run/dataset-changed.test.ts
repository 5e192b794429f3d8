/**
 * The workers' refusal of a dataset file that changed under its URI after a run recorded it
 * (run.json's `data`): `loadRun`, which every stage activity calls, `initRun` re-executed for the
 * same run, and `initRun` resuming from the run — each non-retryable, naming the sha256 the run
 * recorded and the one the file has now. Called directly in a temp file:// store (no server).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ApplicationFailure } from '@temporalio/common';
import { initRun } from '../../../activities/checkpoint/init-run.js';
import { parseRunConfig, type RunConfig } from '../../../activities/run/config.js';
import { loadRun } from '../../../activities/run/resolve.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { openStore } from '../../../activities/store/open.js';

const rowsA = ['{"prompt":"1+1=","completion":"2"}', '{"prompt":"2+2=","completion":"4"}', '{"prompt":"3+3=","completion":"6"}'];
const textA = rowsA.join('\n') + '\n';
/** The same rows, one answer edited: what a user's re-export of the file under the same name might hold. */
const textB = textA.replace('"6"', '"7"');
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

let dir: string;
let storeUri: string;
let train: string;
let config: RunConfig;
let store: ObjectStore;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dataset-changed-'));
  storeUri = pathToFileURL(join(dir, 'store')).href;
  train = join(dir, 'train.jsonl');
  store = openStore(storeUri);
  config = parseRunConfig({
    name: 'changed',
    seed: 3,
    store: storeUri,
    data: { train },
    model: { hidden: 16, layers: 1, heads: 2 },
    phases: [{ kind: 'rl', steps: 1, promptsPerStep: 2, groupSize: 2 }],
    engine: { threads: 1 },
  });
});

after(async () => {
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Starts run `runId` on textA (run.json records its hash), then writes textB under the same path. */
async function runThenChangeTheFile(runId: string): Promise<void> {
  await writeFile(train, textA);
  await initRun({ storeUri, runId, config, resumeFrom: null });
  await writeFile(train, textB);
}

/** A non-retryable failure of `type` whose message names both hashes, in the run record's words. */
function namesBothHashes(type: string) {
  return (err: unknown) => {
    assert.ok(err instanceof ApplicationFailure, `an ApplicationFailure, got ${String(err)}`);
    assert.equal(err.type, type);
    assert.equal(err.nonRetryable, true, 'a changed file is not retried');
    assert.ok(
      err.message.includes(`run.json records sha256 ${sha(textA)} (${Buffer.byteLength(textA)} bytes)`),
      `the recorded hash in: ${err.message}`,
    );
    assert.ok(
      err.message.includes(`the file now has sha256 ${sha(textB)} (${Buffer.byteLength(textB)} bytes)`),
      `the file's hash in: ${err.message}`,
    );
    assert.ok(err.message.includes(`the train dataset ${pathToFileURL(train).href} changed`), err.message);
    return true;
  };
}

test('loadRun (every stage activity) refuses a dataset changed after run.json recorded it, naming both sha256 hashes', async () => {
  await runThenChangeTheFile('load');
  await assert.rejects(loadRun(store, 'load'), namesBothHashes('DatasetChanged'));
});

test('initRun re-executed for the same run refuses the changed dataset, naming both hashes', async () => {
  await runThenChangeTheFile('again');
  await assert.rejects(initRun({ storeUri, runId: 'again', config, resumeFrom: null }), namesBothHashes('DatasetChanged'));
});

test('initRun resuming from a run whose dataset changed refuses it (ResumeIncompatible), naming both hashes', async () => {
  await runThenChangeTheFile('source');
  await assert.rejects(initRun({ storeUri, runId: 'resumed', config, resumeFrom: { runId: 'source', checkpoint: 0 } }), (err: unknown) => {
    assert.match((err as Error).message, /^cannot resume run "source" at checkpoint 0: the dataset differs: /);
    return namesBothHashes('ResumeIncompatible')(err);
  });
});

test('the unchanged file is accepted by all three (the refusals above are the change, not the setup)', async () => {
  await runThenChangeTheFile('same');
  await writeFile(train, textA);
  const { run } = await loadRun(store, 'same');
  assert.equal(run.task.prompts(config.seed, 'train', 3).length, 3);
  await initRun({ storeUri, runId: 'same', config, resumeFrom: null });
  await initRun({ storeUri, runId: 'same-resumed', config, resumeFrom: { runId: 'same', checkpoint: 0 } });
});

test('a run keeps the alphabet run.json recorded, even where this code would derive another from the same file (its weights were built for it)', async () => {
  await writeFile(train, textA);
  await initRun({ storeUri, runId: 'alphabet', config, resumeFrom: null });
  const recordPath = join(dir, 'store', 'runs', 'alphabet', 'run.json');
  const record = JSON.parse(await readFile(recordPath, 'utf8')) as { data: { alphabet: string } };
  const derived = record.data.alphabet;
  // what an older derivation might have recorded: one character more than today's
  await writeFile(recordPath, JSON.stringify({ ...record, data: { ...record.data, alphabet: derived + 'x' } }));
  await initRun({ storeUri, runId: 'alphabet-as-derived', config, resumeFrom: null });
  const { run } = await loadRun(store, 'alphabet');
  const { run: asDerived } = await loadRun(store, 'alphabet-as-derived');
  assert.equal(run.tokenizer.vocabSize, asDerived.tokenizer.vocabSize + 1);
  assert.equal(run.model.vocabSize, asDerived.model.vocabSize + 1, "the model's embedding follows the recorded vocabulary");
  assert.equal(
    run.tokenizer.decode(run.tokenizer.encode('x', { addSpecialTokens: false })),
    'x',
    'the recorded character is in the vocabulary',
  );
  assert.throws(() => asDerived.tokenizer.encode('x', { addSpecialTokens: false }), /not in the tokenizer's alphabet/);
});

test("a run keeps the length limits run.json recorded; a record from before they were recorded gets them as that code derived them (held-out rows left out); a resumed run takes its source's", async () => {
  // 8 rows, 2 held out by the seed; one long prompt and one long completion somewhere among them
  const rows = Array.from({ length: 8 }, (_, i) =>
    JSON.stringify({ prompt: i === 5 ? `${i}+${i}=`.padEnd(20, ' ') : `${i}+${i}=`, completion: i === 6 ? '1'.repeat(12) : String(2 * i) }),
  );
  const limitsFile = join(dir, 'limits.jsonl');
  await writeFile(limitsFile, rows.join('\n') + '\n');
  const held = parseRunConfig({ ...config, data: { train: limitsFile, evalFraction: 0.25 } });
  await initRun({ storeUri, runId: 'limits', config: held, resumeFrom: null });
  const recordPath = join(dir, 'store', 'runs', 'limits', 'run.json');
  const record = JSON.parse(await readFile(recordPath, 'utf8')) as { data: { maxPromptChars: number; maxCompletionChars: number } };
  assert.equal(record.data.maxPromptChars, 20, 'recorded: the longest prompt of both splits');
  assert.equal(record.data.maxCompletionChars, 12);
  const budget = async (runId: string) => (await loadRun(store, runId)).run.maxNewTokens();

  // recorded limits win over what the files give today
  await writeFile(recordPath, JSON.stringify({ ...record, data: { ...record.data, maxCompletionChars: 30 } }));
  assert.equal(await budget('limits'), 30 + 4);

  // a record without limits: derived from the training rows only, as the code that wrote it did
  await initRun({ storeUri, runId: 'limits-old', config: held, resumeFrom: null });
  const oldPath = join(dir, 'store', 'runs', 'limits-old', 'run.json');
  const old = JSON.parse(await readFile(oldPath, 'utf8')) as { data: Record<string, unknown> };
  delete old.data.maxPromptChars;
  delete old.data.maxCompletionChars;
  await writeFile(oldPath, JSON.stringify(old));
  const { run: oldRun } = await loadRun(store, 'limits-old');
  const trainRows = oldRun.task.prompts(held.seed, 'train', 6);
  const longestTrainAnswer = Math.max(...trainRows.map((it) => [...oldRun.task.sftTarget(it)].length));
  assert.ok(longestTrainAnswer < 12, `the long completion is held out by this seed (train answers up to ${longestTrainAnswer})`);
  assert.equal(oldRun.maxNewTokens(), longestTrainAnswer + 4);

  // resume-from: the new run records and uses the source's limits
  await initRun({ storeUri, runId: 'limits-resumed', config: held, resumeFrom: { runId: 'limits', checkpoint: 0 } });
  const resumed = JSON.parse(await readFile(join(dir, 'store', 'runs', 'limits-resumed', 'run.json'), 'utf8')) as {
    data: { maxCompletionChars: number };
  };
  assert.equal(resumed.data.maxCompletionChars, 30);
  assert.equal(await budget('limits-resumed'), 30 + 4);
});
