/**
 * Reward-model training in a real run (Temporal dev server, in-process workers, file:// store): a
 * run whose model is a sequence classifier (`model.classifier`) trains 8 reward_model steps with the
 * Bradley-Terry loss on a JSONL preference set (chosen = the correct sum, rejected = a wrong one),
 * its evaluations record held-out preference accuracy, `durable-rl export` (exportRun) writes an HF
 * classifier directory, and the `reward_model` reward loads it and scores the chosen answer above
 * the rejected one in most pairs. The workflow replays its own history.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from '@temporalio/worker';
import { exportRun } from '../../../activities/checkpoint/export.js';
import { defaultRegistry } from '../../../activities/reward/registry.js';
import { getTask } from '../../../activities/tasks/tasks.js';
import { openStore } from '../../../activities/store/open.js';
import { METRICS_NAME, stepPrefix } from '../../../activities/store/keys.js';
import { readArtifact } from '../../../activities/store/manifest.js';
import { decodeMetrics } from '../../../activities/store/schemas.js';
import { startTrainingRun } from '../../../workers/train-client.js';
import { workflowsPath } from '../../../workers/worker.js';
import { temporalWithWorkers } from '../../support/temporal.js';
import { assertCommittedRun, tinyRunConfig } from '../../support/training.js';

const temporal = temporalWithWorkers(['control', 'rollout', 'reward', 'learner']);
const dir = mkdtempSync(join(tmpdir(), 'reward-model-run-'));
const storeUri = pathToFileURL(join(dir, 'store')).href;
const taskOptions = { minDigits: 1, maxDigits: 1, reverse: true, pad: true };

/** 16 pairs from the task's train items: the gold answer over a wrong one (each digit + 3 mod 10). */
function writeDataset(): { file: string; rows: { prompt: string; chosen: string; rejected: string }[] } {
  const task = getTask('addition', taskOptions);
  const rows = task.prompts(99, 'train', 16).map((item) => {
    const gold = task.sftTarget(item);
    const wrong = [...gold].map((c) => (/\d/.test(c) ? String((Number(c) + 3) % 10) : c)).join('');
    return { prompt: item.prompt, chosen: gold, rejected: wrong };
  });
  const file = join(dir, 'sums.jsonl');
  writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return { file, rows };
}

test('a reward_model run trains a classifier; its export is loaded by the reward_model reward, which prefers the chosen answers', async () => {
  const { client } = temporal();
  const data = writeDataset();
  const config = tinyRunConfig(storeUri, {
    name: 'rm-run',
    task: { name: 'addition', options: taskOptions },
    model: { hidden: 32, layers: 1, heads: 2, classifier: true },
    phases: [{ kind: 'reward_model', steps: 8, batchSize: 12, lr: 3e-3, dataset: { path: data.file }, eval: { fraction: 0.25 } }],
    learner: { microBatchSize: 8 },
  });
  const run = await startTrainingRun(client, config);
  const result = await run.result();
  assert.equal(result.status, 'completed');
  const store = openStore(storeUri);
  await assertCommittedRun(store, run.runId, 8);

  const m = await Promise.all(
    [0, 7].map(async (s) => decodeMetrics(await readArtifact(store, stepPrefix(run.runId, s), METRICS_NAME))[0]!),
  );
  assert.ok(m.every((r) => r.phase === 'reward_model' && r.extra['rm/pairs'] === 12));
  assert.ok(m[1]!.loss! < m[0]!.loss!, `loss ${m[0]!.loss} -> ${m[1]!.loss}`);
  // evaluations at checkpoints 0 and 8, on the 4 held-out pairs
  assert.deepEqual(
    result.evals.map((e) => [e.policyVersion, e.phase]),
    [
      [0, 'init'],
      [8, 'reward_model'],
    ],
  );
  await store.close();

  const exported = await exportRun(storeUri, run.runId, undefined, join(dir, 'rm'));
  assert.equal(exported.version, 8);
  const reward = defaultRegistry().create({ name: 'reward_model', options: { path: exported.dir, appendEos: true } });
  const samples = data.rows.flatMap((r, i) =>
    [r.chosen, r.rejected].map((completion, k) => ({
      promptId: `p${i}`,
      sampleId: k,
      prompt: r.prompt,
      completion,
      reference: r.chosen,
      metadata: {},
      promptTokens: 0,
      completionTokens: completion.length,
    })),
  );
  const scored = await reward.scoreBatch!(samples, { signal: new AbortController().signal, step: 0 } as never);
  await reward.close?.();
  let wins = 0;
  for (let i = 0; i < data.rows.length; i++) if (scored[2 * i]!.reward > scored[2 * i + 1]!.reward) wins++;
  assert.ok(wins > data.rows.length / 2, `chosen scored above rejected in ${wins}/${data.rows.length} pairs`);

  const history = await client.workflow.getHandle(run.runId).fetchHistory();
  await Worker.runReplayHistory({ workflowsPath }, history, run.runId);
  console.log(
    `reward_model run: loss ${m[0]!.loss!.toFixed(4)} -> ${m[1]!.loss!.toFixed(4)}, step accuracy ${m[0]!.extra['rm/accuracy']} -> ${m[1]!.extra['rm/accuracy']}; evals ${JSON.stringify(result.evals.map((e) => e.greedyAccuracy))}; exported reward prefers chosen in ${wins}/${data.rows.length}`,
  );
});
