/**
 * The preference phases in a real run (Temporal dev server, in-process workers, file:// store): 2 sft
 * steps (the model learns the answer format), one online_dpo step (8 prompts × 4 samples, pairs
 * ranked by the task's reward with its format bonus) and one offline dpo step on a JSONL dataset.
 * The committed online_dpo step holds its rollouts, rewards and preference pairs; the pairs are the
 * best and worst sample of every group with a reward gap; the DPO update raised the chosen samples'
 * logprobs relative to the rejected ones; the metrics count the pairs kept and dropped. The
 * workflow replays its own history.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from '@temporalio/worker';
import { loadWeights } from '../../../activities/checkpoint/checkpoint.js';
import { ModelEngine } from '../../../activities/model/engine.js';
import { resolveRun } from '../../../activities/run/resolve.js';
import { getTask } from '../../../activities/tasks/tasks.js';
import { openStore } from '../../../activities/store/open.js';
import { METRICS_NAME, PREFERENCE_PAIRS_NAME, parseShardName, stepPrefix } from '../../../activities/store/keys.js';
import { readArtifact, readCommitted } from '../../../activities/store/manifest.js';
import {
  decodeMetrics,
  decodePreferencePairs,
  decodeRewards,
  decodeRollouts,
  type RolloutsRow,
} from '../../../activities/store/schemas.js';
import { loadRunReport } from '../../../activities/report/load.js';
import { startTrainingRun } from '../../../workers/train-client.js';
import { workflowsPath } from '../../../workers/worker.js';
import { temporalWithWorkers } from '../../support/temporal.js';
import { assertCommittedRun, tinyRunConfig } from '../../support/training.js';

const temporal = temporalWithWorkers(['control', 'rollout', 'reward', 'learner']);
const dir = mkdtempSync(join(tmpdir(), 'preference-run-'));
const storeUri = pathToFileURL(join(dir, 'store')).href;
const taskOptions = { minDigits: 1, maxDigits: 1, reverse: true, pad: true, formatReward: 0.5 };

/** A preference dataset from the task's train items: the gold answer over a wrong one (each digit + 3 mod 10). */
function writeDataset(): string {
  const task = getTask('addition', taskOptions);
  const lines = task.prompts(99, 'train', 6).map((item) => {
    const gold = task.sftTarget(item);
    const wrong = [...gold].map((c) => (/\d/.test(c) ? String((Number(c) + 3) % 10) : c)).join('');
    return JSON.stringify({ prompt: item.prompt, chosen: gold, rejected: wrong });
  });
  const file = join(dir, 'prefs.jsonl');
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

test('online_dpo then dpo: pairs from the rewards, the DPO update favours the chosen samples, artifacts and metrics committed', async () => {
  const { client } = temporal();
  const config = tinyRunConfig(storeUri, {
    task: { name: 'addition', options: taskOptions },
    phases: [
      { kind: 'sft', steps: 2, batchSize: 16, lr: 3e-3 },
      { kind: 'online_dpo', steps: 1, promptsPerStep: 8, groupSize: 4, lr: 5e-3, sampling: { temperature: 1 }, dpo: { beta: 0.1 } },
      { kind: 'dpo', steps: 1, batchSize: 4, lr: 5e-3, dataset: { path: writeDataset() } },
    ],
    eval: { prompts: 8, passK: 0 },
  });
  const run = await startTrainingRun(client, config);
  assert.equal((await run.result()).status, 'completed');
  const store = openStore(storeUri);
  await assertCommittedRun(store, run.runId, 4);

  // the online_dpo step (2): rollouts, rewards and pairs committed
  const prefix = stepPrefix(run.runId, 2);
  const manifest = await readCommitted(store, prefix);
  assert.ok(manifest);
  const names = manifest.artifacts.map((a) => a.name).sort();
  assert.deepEqual(
    names,
    [METRICS_NAME, PREFERENCE_PAIRS_NAME, 'rewards-000.arrow', 'rewards-001.arrow', 'rollouts-000.arrow', 'rollouts-001.arrow'].sort(),
  );
  const rollouts: RolloutsRow[] = [];
  const reward = new Map<string, number | null>();
  for (const k of manifest.artifacts
    .map((a) => parseShardName(a.name))
    .filter((x) => x?.kind === 'rollouts')
    .map((x) => x!.shard)
    .sort()) {
    rollouts.push(...decodeRollouts(await readArtifact(store, prefix, `rollouts-00${k}.arrow`)));
    for (const r of decodeRewards(await readArtifact(store, prefix, `rewards-00${k}.arrow`)))
      reward.set(`${r.prompt_id}#${r.sample_id}`, r.reward);
  }
  assert.equal(rollouts.length, 32);
  const pairs = decodePreferencePairs(await readArtifact(store, prefix, PREFERENCE_PAIRS_NAME));

  // every group with a reward gap has one pair: its first highest-reward sample over its first lowest
  const groups = new Map<string, RolloutsRow[]>();
  for (const r of rollouts) groups.set(r.group_id, [...(groups.get(r.group_id) ?? []), r]);
  const expected = [...groups.values()].flatMap((g) => {
    const scored = g.filter((r) => reward.get(`${r.prompt_id}#${r.sample_id}`) != null && r.completion_token_ids.length > 0);
    const rw = (r: RolloutsRow) => reward.get(`${r.prompt_id}#${r.sample_id}`)!;
    if (scored.length < 2) return [];
    const hi = Math.max(...scored.map(rw));
    const lo = Math.min(...scored.map(rw));
    if (hi === lo) return [];
    return [[g[0]!.prompt_id, scored.find((r) => rw(r) === hi)!.sample_id, scored.find((r) => rw(r) === lo)!.sample_id, hi, lo]];
  });
  assert.ok(expected.length > 0, 'the step had groups with a reward gap');
  assert.deepEqual(
    pairs.map((p) => [p.prompt_id, p.chosen_sample_id, p.rejected_sample_id, p.chosen_reward, p.rejected_reward]),
    expected,
  );

  const m = decodeMetrics(await readArtifact(store, prefix, METRICS_NAME))[0]!;
  assert.equal(m.phase, 'online_dpo');
  assert.equal(m.extra['pairs/kept'], pairs.length);
  assert.equal(m.extra['pairs/kept']! + m.extra['pairs/tied']! + m.extra['pairs/too_few']!, 8);
  assert.equal(m.extra['dpo/pairs'], pairs.length);
  assert.equal(m.num_samples, 2 * pairs.length);
  assert.ok(Math.abs(m.loss! - Math.LN2) < 1e-4, `first step of the phase: policy = reference, loss ${m.loss} = log 2`);
  assert.ok(m.reward_mean !== null && m.grad_norm! > 0);

  // the update raised the chosen samples' logprobs relative to the rejected ones (checkpoint 3 vs 2, T = 1)
  const run0 = resolveRun(config);
  const byKey = new Map(rollouts.map((r) => [`${r.prompt_id}#${r.sample_id}`, r]));
  const engine = new ModelEngine(run0.model, { threads: 1 });
  const seqLogprob = async (version: number, r: RolloutsRow) => {
    engine.setWeights(await loadWeights(store, run.runId, version), String(version));
    const s = await engine.score({ ids: [[...r.prompt_token_ids, ...r.completion_token_ids]] }, { entropy: false, temperature: 1 });
    return [...s.logprobs].slice(r.prompt_token_ids.length).reduce((a, b) => a + b, 0);
  };
  let margin = 0;
  try {
    for (const p of pairs) {
      const c = byKey.get(`${p.prompt_id}#${p.chosen_sample_id}`)!;
      const r = byKey.get(`${p.prompt_id}#${p.rejected_sample_id}`)!;
      margin += (await seqLogprob(3, c)) - (await seqLogprob(2, c)) - ((await seqLogprob(3, r)) - (await seqLogprob(2, r)));
    }
  } finally {
    await engine.close();
  }
  assert.ok(margin / pairs.length > 0, `mean change of log π(chosen) − log π(rejected): ${margin / pairs.length}`);

  // the dpo step (3): 4 dataset pairs against its own phase start (checkpoint 3)
  const d = decodeMetrics(await readArtifact(store, stepPrefix(run.runId, 3), METRICS_NAME))[0]!;
  assert.equal(d.phase, 'dpo');
  assert.equal(d.extra['dpo/pairs'], 4);
  assert.ok(Math.abs(d.loss! - Math.LN2) < 1e-4, `dpo loss ${d.loss}`);

  // the report reads the run (evals after each phase say which phase made the weights)
  const report = await loadRunReport(store, run.runId, {});
  assert.deepEqual(
    report.evals.map((e) => e.phase),
    ['init', 'sft', 'online_dpo', 'dpo'],
  );
  await store.close();

  const history = await client.workflow.getHandle(run.runId).fetchHistory();
  await Worker.runReplayHistory({ workflowsPath }, history, run.runId);
  console.log(
    `online_dpo: ${pairs.length} pairs, metrics ${JSON.stringify(m.extra)}; mean margin gain ${(margin / pairs.length).toFixed(4)}`,
  );
});
