/**
 * A training run that starts `from` a pretrained Hugging Face model directory (issue 11 §3), end to
 * end on a real Temporal dev server with worker processes: the tiny Qwen3 that transformers saved
 * for the parity fixtures (byte-level BPE tokenizer, ChatML template, generation config) trains SFT
 * then GRPO on addition; a learner SIGKILLed in each phase changes no bit of the final weights; the
 * rollouts hold prompts rendered through the chat template; the export loads back with the model's
 * config, tokenizer and template.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { exportRun } from '../../../activities/checkpoint/export.js';
import { loadHfModel } from '../../../activities/model/hf.js';
import { parseModelConfig } from '../../../activities/model/config.js';
import { loadRun } from '../../../activities/run/resolve.js';
import { rolloutsName, stepPrefix } from '../../../activities/store/keys.js';
import { readArtifact } from '../../../activities/store/manifest.js';
import { decodeRollouts } from '../../../activities/store/schemas.js';
import { resumeFromRun, startTrainingRun } from '../../../workers/train-client.js';
import { loadRunReport, renderReport } from '../../../activities/report/index.js';
import { totalSteps } from '../../../workflows/run-plan.js';
import { lazyFixture } from '../../support/fixture.js';
import {
  assertCommittedRun,
  terminateBefore,
  tinyRunConfig,
  trainingServers,
  weightsSha,
  withCrashingWorkers,
} from '../../support/training.js';

const QWEN3 = fileURLToPath(new URL('../../fixtures/hf/qwen3', import.meta.url));
const storeDir = mkdtempSync(join(tmpdir(), 'training-pretrained-'));
const storeUri = pathToFileURL(storeDir).href;
const config = () => tinyRunConfig(storeUri, { name: 'from-qwen3', model: { from: QWEN3 } });
const TOTAL = totalSteps(config());
const servers = trainingServers(storeUri, [storeDir]);

/** Runs `fn` with one worker process per queue, killed at `crashAt` (once each) and restarted. */
const withWorkers = <T>(crashAt: string[], fn: () => Promise<T>) => withCrashingWorkers(servers.t.env, crashAt, fn);

/** Trains the run to the end; returns its id. */
async function train(crashAt: string[]): Promise<{ runId: string; restarts: number }> {
  const { result, restarts } = await withWorkers(crashAt, async () => {
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

test('a run from a pretrained model directory trains SFT then GRPO with prompts rendered through its chat template', async () => {
  const { runId, sha } = await uninterrupted();
  assert.notEqual(sha, await weightsSha(servers.store, runId, 0), 'training changed the pretrained weights');
  const { run } = await loadRun(servers.store, runId);
  const rlStep = TOTAL - 1; // the last step is an rl step: its rollouts were sampled from the pretrained policy's descendant
  const rows = decodeRollouts(await readArtifact(servers.store, stepPrefix(runId, rlStep), rolloutsName(0)));
  assert.ok(rows.length > 0);
  for (const r of rows) {
    const prompt = run.tokenizer.decode([...r.prompt_token_ids]);
    assert.equal(prompt, `<|im_start|>user\n${r.prompt_text}<|im_end|>\n<|im_start|>assistant\n`);
  }
});

test('a learner SIGKILLed in the SFT and in the GRPO phase of a pretrained run changes no bit of its final weights', async () => {
  const reference = (await uninterrupted()).sha;
  const { runId, restarts } = await train(['learner@1', 'learner@3']);
  assert.equal(restarts, 2, 'each crash point killed the learner once');
  await assertCommittedRun(servers.store, runId, TOTAL);
  assert.equal(await weightsSha(servers.store, runId, TOTAL), reference, "weights equal the uninterrupted run's");
});

test('the export of a pretrained run loads back with its config, tokenizer and chat template', async () => {
  const { runId } = await uninterrupted();
  const dir = mkdtempSync(join(tmpdir(), 'pretrained-export-'));
  try {
    await exportRun(storeUri, runId, TOTAL, dir);
    const back = await loadHfModel(dir, { requireTokenizer: true });
    assert.deepEqual(back.config, parseModelConfig(JSON.parse(readFileSync(join(QWEN3, 'config.json'), 'utf8'))));
    assert.equal(readFileSync(join(dir, 'chat_template.jinja'), 'utf8'), readFileSync(join(QWEN3, 'chat_template.jinja'), 'utf8'));
    assert.deepEqual(back.tokenizer!.encode('12+34=46'), (await loadRun(servers.store, runId)).run.tokenizer.encode('12+34=46'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('resume-from a terminated pretrained run ends with the uninterrupted weights, and its report renders', async () => {
  const reference = (await uninterrupted()).sha;
  const { result: resumed } = await withWorkers([], async () => {
    const b = await startTrainingRun(servers.t.client, config());
    await terminateBefore(servers.t.client, b, 3);
    const c = await resumeFromRun(servers.t.client, b.runId);
    assert.equal(c.checkpoint, 3, 'resumes from the checkpoint after step 2');
    assert.equal((await c.result()).status, 'completed');
    return c;
  });
  await assertCommittedRun(servers.store, resumed.runId, TOTAL, resumed.checkpoint);
  assert.equal(await weightsSha(servers.store, resumed.runId, TOTAL), reference, "resume-from gives the uninterrupted run's weights");
  const report = renderReport(await loadRunReport(servers.store, resumed.runId));
  assert.ok(report.includes(resumed.runId) && report.includes('<svg'), 'the report names the run and charts it');
});
