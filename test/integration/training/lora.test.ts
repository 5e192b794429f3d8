/**
 * A LoRA run end to end (issue 12 §1) on a real Temporal dev server with worker processes: the tiny
 * Qwen3 of test/fixtures/hf with rank-4 adapters trains SFT then GRPO; the learner SIGKILLed in
 * each phase changes no bit of the final adapter; every checkpoint after 0 stores the adapters
 * alone (a small fraction of checkpoint 0's bytes); the export holds the merged model and the
 * adapter as a PEFT directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ADAPTER_DIR, exportRun } from '../../../activities/checkpoint/export.js';
import { readPeftAdapter } from '../../../activities/model/peft.js';
import { checkpointPrefix, MODEL_NAME } from '../../../activities/store/keys.js';
import { readManifest } from '../../../activities/store/manifest.js';
import { startTrainingRun } from '../../../workers/train-client.js';
import { totalSteps } from '../../../workflows/run-plan.js';
import { lazyFixture } from '../../support/fixture.js';
import { assertCommittedRun, tinyRunConfig, trainingServers, weightsSha, withCrashingWorkers } from '../../support/training.js';

const QWEN3 = fileURLToPath(new URL('../../fixtures/hf/qwen3', import.meta.url));
const storeDir = mkdtempSync(join(tmpdir(), 'training-lora-'));
const storeUri = pathToFileURL(storeDir).href;
const config = () => tinyRunConfig(storeUri, { name: 'lora-qwen3', model: { from: QWEN3, lora: { rank: 4 } } });
const TOTAL = totalSteps(config());
const servers = trainingServers(storeUri, [storeDir]);

/** Trains the run to the end with one worker process per queue, killed at `crashAt` (once each) and restarted. */
async function train(crashAt: string[]): Promise<{ runId: string; restarts: number }> {
  const { result, restarts } = await withCrashingWorkers(servers.t.env, crashAt, async () => {
    const run = await startTrainingRun(servers.t.client, config());
    assert.equal((await run.result()).status, 'completed');
    return run.runId;
  });
  return { runId: result, restarts };
}

const uninterrupted = lazyFixture(async () => {
  const { runId } = await train([]);
  await assertCommittedRun(servers.store, runId, TOTAL);
  return { runId, sha: await weightsSha(servers.store, runId, TOTAL) };
});

/** Bytes of a checkpoint's model artifact. */
async function modelBytes(runId: string, version: number): Promise<number> {
  const m = await readManifest(servers.store, checkpointPrefix(runId, version));
  return m!.artifacts.find((a) => a.name === MODEL_NAME)!.bytes;
}

test('a LoRA run trains SFT then GRPO storing the adapters alone after checkpoint 0, and exports the merged model with a PEFT adapter', async () => {
  const { runId, sha } = await uninterrupted();
  assert.notEqual(sha, await weightsSha(servers.store, runId, 1), 'the adapters changed after the first update');
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
  await assertCommittedRun(servers.store, runId, TOTAL);
  assert.equal(await weightsSha(servers.store, runId, TOTAL), reference, "the final adapter equals the uninterrupted run's");
});
