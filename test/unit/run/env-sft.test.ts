/**
 * The sft phase of a run with an environment (issue 15): learnerUpdate trains on the environment's
 * gold trajectories tokenised segment by segment (run/gold-episode.ts), the policy's turns in the
 * loss and the observations not.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { learnerUpdate } from '../../../activities/learner/learner-update.js';
import { commitStep } from '../../../activities/checkpoint/commit-step.js';
import { writeCheckpoint } from '../../../activities/checkpoint/checkpoint.js';
import { parseRunConfig } from '../../../activities/run/config.js';
import { encodeGoldEpisode } from '../../../activities/run/gold-episode.js';
import { loadRun, writeRunRecord } from '../../../activities/run/resolve.js';
import { initTrainState } from '../../../activities/model/engine.js';
import { initWeights } from '../../../activities/model/init.js';
import { checkpointPrefix } from '../../../activities/store/keys.js';
import { commit } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { emptyMetrics } from '../../../workflows/step-metrics.js';

let dir: string;
let storeUri: string;
let store: ObjectStore;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'env-sft-'));
  storeUri = pathToFileURL(dir).href;
  store = openStore(storeUri);
});
after(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

test('an sft step of a calculator run trains on the policy turns of 8 gold episodes only: its loss tokens are their loss-mask ones, and the loss falls over 4 steps', async () => {
  const runId = 'env-sft';
  const config = parseRunConfig({
    name: 'env-sft',
    seed: 3,
    store: storeUri,
    environment: { name: 'calculator' },
    model: { hidden: 32, layers: 1, heads: 2 },
    phases: [{ kind: 'sft', steps: 4, batchSize: 8, lr: 3e-3 }],
    learner: { microBatchSize: 8 },
    engine: { threads: 1 },
  });
  await writeRunRecord(store, { run_id: runId, name: config.name, resumed_from: null, config });
  const { run } = await loadRun(store, runId);
  assert.ok(run.environment, 'the run resolves its environment');
  const state = initTrainState(run.model, initWeights(run.model, config.seed, { std: config.model.initStd }));
  await commit(store, checkpointPrefix(runId, 0), await writeCheckpoint(store, runId, 0, state));
  const items = run.task.prompts(config.seed, 'train', 8, 0);
  const rows = items.map((it) => encodeGoldEpisode(run, run.environment!, it));
  const trained = rows.reduce((n, r) => n + r.lossMask.reduce((a, b) => a + b, 0), 0);
  const losses: number[] = [];
  for (let step = 0; step < 4; step++) {
    const r = await learnerUpdate({
      storeUri,
      runId,
      step,
      phaseIndex: 0,
      phase: 'sft',
      lr: 3e-3,
      referenceVersion: null,
      promptOffset: 0,
      batchSize: 8,
      rollouts: [],
      advantages: null,
    });
    // the batch's loss tokens are the gold episodes' policy tokens, fewer than their completions (observations are left out)
    assert.equal(r.tokens, trained);
    losses.push(r.metrics.loss!);
    await commitStep({ storeUri, runId, step, phase: 'sft', checkpoint: r.checkpoint, artifacts: [], metrics: emptyMetrics() });
  }
  const completions = rows.reduce((n, r) => n + r.ids.length - r.segmentEnds[0]!, 0);
  assert.ok(trained < completions, `${trained} trained of ${completions} completion tokens`);
  assert.ok(losses[3]! < losses[0]!, `loss ${losses.map((l) => l.toFixed(3)).join(' -> ')}`);
});
