/**
 * A LoRA run end to end (issue 12 §1) on a real Temporal dev server with worker processes: the tiny
 * Qwen3 of test/fixtures/hf with rank-4 adapters trains SFT then GRPO; the learner SIGKILLed in
 * each phase changes no bit of the final adapter; every checkpoint after 0 stores the adapters
 * alone (a small fraction of checkpoint 0's bytes); the export holds the merged model and the
 * adapter as a PEFT directory.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ADAPTER_DIR, exportRun } from '../../../activities/checkpoint/export.js';
import { readPeftAdapter } from '../../../activities/model/peft.js';
import { checkpointPrefix, MODEL_NAME } from '../../../activities/store/keys.js';
import { readManifest } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { startTrainingRun } from '../../../workers/train-client.js';
import { totalSteps } from '../../../workflows/run-plan.js';
import { lazyFixture } from '../../support/fixture.js';
import { startWorkers, testTemporal, type TestTemporal } from '../../support/temporal.js';
import { assertCommittedRun, superviseWorker, tinyRunConfig, weightsSha } from '../../support/training.js';

const QWEN3 = fileURLToPath(new URL('../../fixtures/hf/qwen3', import.meta.url));
const storeDir = mkdtempSync(join(tmpdir(), 'training-lora-'));
const storeUri = pathToFileURL(storeDir).href;
const config = () => tinyRunConfig(storeUri, { name: 'lora-qwen3', model: { from: QWEN3, lora: { rank: 4 } } });
const TOTAL = totalSteps(config());
let t: TestTemporal;
let control: { stop(): Promise<void> };
let store: ObjectStore;

before(async () => {
  t = await testTemporal();
  control = await startWorkers(t, ['control']);
  store = openStore(storeUri);
});

after(async () => {
  await control?.stop();
  await t?.client.connection.close();
  await store?.close();
  rmSync(storeDir, { recursive: true, force: true });
});

/** Trains the run to the end with one worker process per queue, killed at `crashAt` (once each) and restarted. */
async function train(crashAt: string[]): Promise<{ runId: string; restarts: number }> {
  const onceDir = mkdtempSync(join(tmpdir(), 'lora-crash-once-'));
  const env: Record<string, string> = crashAt.length ? { DURABLE_RL_CRASH_AT: crashAt.join(','), DURABLE_RL_CRASH_ONCE: onceDir } : {};
  const workers = await Promise.all((['rollout', 'reward', 'learner'] as const).map((q) => superviseWorker([q], { ...t.env, ...env })));
  try {
    const run = await startTrainingRun(t.client, config());
    assert.equal((await run.result()).status, 'completed');
    return { runId: run.runId, restarts: workers.reduce((n, w) => n + w.restarts, 0) };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    rmSync(onceDir, { recursive: true, force: true });
  }
}

const uninterrupted = lazyFixture(async () => {
  const { runId } = await train([]);
  await assertCommittedRun(store, runId, TOTAL);
  return { runId, sha: await weightsSha(store, runId, TOTAL) };
});

/** Bytes of a checkpoint's model artifact. */
async function modelBytes(runId: string, version: number): Promise<number> {
  const m = await readManifest(store, checkpointPrefix(runId, version));
  return m!.artifacts.find((a) => a.name === MODEL_NAME)!.bytes;
}

test('a LoRA run trains SFT then GRPO storing the adapters alone after checkpoint 0, and exports the merged model with a PEFT adapter', async () => {
  const { runId, sha } = await uninterrupted();
  assert.notEqual(sha, await weightsSha(store, runId, 1), 'the adapters changed after the first update');
  const [base, adapters] = [await modelBytes(runId, 0), await modelBytes(runId, TOTAL)];
  assert.ok(adapters < base / 5, `checkpoint ${TOTAL} holds ${adapters} bytes, checkpoint 0 ${base}`);
  const dir = mkdtempSync(join(tmpdir(), 'lora-export-'));
  try {
    const r = await exportRun(storeUri, runId, TOTAL, dir);
    assert.ok(r.files.includes(`${ADAPTER_DIR}/adapter_model.safetensors`) && r.files.includes('model.safetensors'));
    const peft = await readPeftAdapter(join(dir, ADAPTER_DIR));
    assert.equal(peft.lora.rank, 4);
    assert.ok([...peft.tensors.keys()].every((n) => n.includes('.lora_')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a learner SIGKILLed in the SFT and in the GRPO phase of a LoRA run changes no bit of its final adapter', async () => {
  const reference = (await uninterrupted()).sha;
  const { runId, restarts } = await train(['learner@1', 'learner@3']);
  assert.equal(restarts, 2, 'each crash point killed the learner once');
  await assertCommittedRun(store, runId, TOTAL);
  assert.equal(await weightsSha(store, runId, TOTAL), reference, "the final adapter equals the uninterrupted run's");
});
