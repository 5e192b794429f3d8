/**
 * DAPO dynamic sampling in a real run (Temporal dev server, in-process workers, file:// store): a
 * tiny run whose rl step finds groups with all-equal rewards. With `refill` the workflow rolls out
 * further rounds on fresh prompts (shards numbered on past the planned ones) until promptsPerStep
 * informative groups are found; the committed step holds every round's rollouts, the advantages
 * train on exactly the selected groups, and the metrics record the rounds. With `filter` the flat
 * groups are dropped and nothing more is rolled out.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openStore } from '../../../activities/store/open.js';
import { ADVANTAGES_NAME, METRICS_NAME, parseShardName, stepPrefix } from '../../../activities/store/keys.js';
import { readArtifact, readCommitted } from '../../../activities/store/manifest.js';
import { decodeAdvantages, decodeMetrics, decodeRewards, decodeRollouts, type MetricsRow } from '../../../activities/store/schemas.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { loadRunReport } from '../../../activities/report/load.js';
import { Worker } from '@temporalio/worker';
import { startTrainingRun } from '../../../workers/train-client.js';
import { workflowsPath } from '../../../workers/worker.js';
import { temporalWithWorkers } from '../../support/temporal.js';
import { assertCommittedRun, tinyRunConfig } from '../../support/training.js';

const temporal = temporalWithWorkers(['control', 'rollout', 'reward', 'learner']);
const storeUri = pathToFileURL(mkdtempSync(join(tmpdir(), 'dapo-run-'))).href;

const P = 8;
const G = 4;
/** 2 sft steps (the model learns the answer format, not the sums), then one rl step with dynamic sampling. */
const dapoConfig = (dynamicSampling: Record<string, unknown>) =>
  tinyRunConfig(storeUri, {
    task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true, formatReward: 0.5 } },
    phases: [
      { kind: 'sft', steps: 2, batchSize: 16, lr: 3e-3 },
      { kind: 'rl', steps: 1, promptsPerStep: P, groupSize: G, lr: 1e-3, sampling: { temperature: 1 }, dynamicSampling } as never,
    ],
    eval: { prompts: 8, passK: 0 },
  });

interface StepData {
  metrics: MetricsRow;
  shards: number[];
  rows: { prompt: string; group: string; reward: number | null; inLoss: boolean; lossTokens: number }[];
}

async function rlStep(store: ObjectStore, runId: string, step: number): Promise<StepData> {
  const prefix = stepPrefix(runId, step);
  const manifest = await readCommitted(store, prefix);
  assert.ok(manifest, `step ${step} committed`);
  const shards = manifest.artifacts
    .map((a) => parseShardName(a.name))
    .filter((x) => x?.kind === 'rollouts')
    .map((x) => x!.shard)
    .sort((a, b) => a - b);
  const rollouts = [];
  const rewards = new Map<string, number | null>();
  for (const k of shards) {
    rollouts.push(...decodeRollouts(await readArtifact(store, prefix, `rollouts-${String(k).padStart(3, '0')}.arrow`)));
    for (const r of decodeRewards(await readArtifact(store, prefix, `rewards-${String(k).padStart(3, '0')}.arrow`)))
      rewards.set(`${r.prompt_id}#${r.sample_id}`, r.reward);
  }
  const adv = new Map(
    decodeAdvantages(await readArtifact(store, prefix, ADVANTAGES_NAME)).map((a) => [`${a.prompt_id}#${a.sample_id}`, a]),
  );
  const rows = rollouts.map((r) => {
    const a = adv.get(`${r.prompt_id}#${r.sample_id}`);
    assert.ok(a, `advantages row of ${r.prompt_id}/${r.sample_id}`);
    const lossTokens = a.loss_mask === null ? r.completion_token_ids.length : a.loss_mask.filter(Boolean).length;
    return {
      prompt: r.prompt_id,
      group: r.group_id,
      reward: rewards.get(`${r.prompt_id}#${r.sample_id}`) ?? null,
      inLoss: lossTokens > 0,
      lossTokens,
    };
  });
  const metrics = decodeMetrics(await readArtifact(store, prefix, METRICS_NAME))[0]!;
  return { metrics, shards, rows };
}

/** Groups in rollout order with their rewards and whether they entered the loss. */
function groupsOf(rows: StepData['rows']) {
  const out = new Map<string, { rewards: (number | null)[]; inLoss: boolean[] }>();
  for (const r of rows) {
    const g = out.get(r.group) ?? { rewards: [], inLoss: [] };
    g.rewards.push(r.reward);
    g.inLoss.push(r.inLoss);
    out.set(r.group, g);
  }
  return [...out.entries()].map(([id, g]) => {
    const scored = g.rewards.filter((x): x is number => x !== null);
    return {
      id,
      informative: scored.length > 1 && scored.some((x) => x !== scored[0]),
      trained: g.inLoss.some(Boolean),
      allTrained: g.inLoss.every(Boolean),
    };
  });
}

test('refill: a step with flat groups rolls out further rounds on fresh prompts until it holds promptsPerStep informative groups', async () => {
  const { client } = temporal();
  const run = await startTrainingRun(client, dapoConfig({ mode: 'refill', maxRounds: 3 }));
  assert.equal((await run.result()).status, 'completed');
  const store = openStore(storeUri);
  await assertCommittedRun(store, run.runId, 3);
  const s = await rlStep(store, run.runId, 2);
  const x = s.metrics.extra;
  const groups = groupsOf(s.rows);
  const informative = groups.filter((g) => g.informative);

  // Round 0 had flat groups, so at least one refill round ran and its shards are in the step.
  assert.ok(x['dynamic/rounds']! >= 1, `refill rounds ${x['dynamic/rounds']}`);
  assert.ok(s.shards.length > 2, `shards ${s.shards}: the planned 2 and the refill rounds'`);
  assert.deepEqual(
    s.shards,
    s.shards.map((_, i) => i),
    'shards numbered on without gaps',
  );
  assert.ok(s.rows.length > P * G, `${s.rows.length} rollout rows > promptsPerStep × groupSize = ${P * G}`);
  assert.equal(s.rows.length, x['dynamic/prompts_rolled']! * G, 'every rolled prompt is committed with its group');
  assert.equal(new Set(s.rows.map((r) => r.prompt)).size, x['dynamic/prompts_rolled'], 'no prompt is rolled out twice');
  // Refill prompts come from past the run's planned items (2 × 16 sft examples + 8 rl prompts).
  const refillPrompts = s.rows.slice(P * G).map((r) => Number(/(\d+)$/.exec(r.prompt)![1]));
  assert.ok(
    refillPrompts.every((i) => i >= 2 * 16 + P),
    `refill prompt indices ${Math.min(...refillPrompts)}..`,
  );

  // The metrics agree with the committed data.
  assert.equal(x['dynamic/informative_groups'], informative.length);
  assert.equal(x['dynamic/dropped_groups'], groups.length - informative.length);
  assert.ok(x['dynamic/dropped_groups']! > 0);
  // The advantages keep exactly the first promptsPerStep informative groups, in rollout order.
  const trained = groups.filter((g) => g.trained);
  assert.equal(trained.length, Math.min(P, informative.length));
  assert.equal(x['dynamic/selected_groups'], trained.length);
  assert.deepEqual(
    trained.map((g) => g.id),
    informative.slice(0, P).map((g) => g.id),
  );
  for (const g of trained) assert.ok(g.allTrained && g.informative, `group ${g.id}`);
  if (x['dynamic/rounds']! < 3) assert.equal(trained.length, P, 'the batch was filled before the rounds ran out');
  assert.equal(s.metrics.num_samples, trained.length * G);
  // The learner read every round's shards: it trained on the loss tokens of exactly the selected groups.
  assert.equal(
    x.tokens,
    s.rows.reduce((n, r) => n + r.lossTokens, 0),
  );
  assert.ok(
    s.rows.slice(P * G).some((r) => r.inLoss),
    'refilled groups are in the loss',
  );

  // The workflow replays its own history (the refill rounds, behind the 'dapo-refill' patch) deterministically.
  const history = await client.workflow.getHandle(run.runId).fetchHistory();
  const patches = (history.events ?? [])
    .flatMap((e) => Object.values(e.markerRecordedEventAttributes?.details ?? {}))
    .flatMap((p) => p.payloads ?? [])
    .map((p) => (typeof p.data === 'string' ? Buffer.from(p.data, 'base64') : Buffer.from(p.data ?? [])).toString('utf8'));
  assert.ok(
    patches.some((m) => m.includes('"dapo-refill"')),
    `the patch marker is recorded: ${patches.join(' ')}`,
  );
  await Worker.runReplayHistory({ workflowsPath }, history, run.runId);

  // The report reads every round's rollouts and marks what entered the loss.
  const report = await loadRunReport(store, run.runId, { maxSamples: 1000 });
  assert.equal(report.samples!.total, s.rows.length);
  assert.deepEqual(
    report.samples!.rows.map((r) => r.in_loss),
    s.rows.map((r) => r.inLoss),
  );
  await store.close();
  console.log(`refill: ${JSON.stringify(Object.fromEntries(Object.entries(x).filter(([k]) => k.startsWith('dynamic/'))))}`);
});

test('filter: flat groups are dropped from the update and nothing more is rolled out', async () => {
  const { client } = temporal();
  const run = await startTrainingRun(client, dapoConfig({ mode: 'filter' }));
  assert.equal((await run.result()).status, 'completed');
  const store = openStore(storeUri);
  const s = await rlStep(store, run.runId, 2);
  const x = s.metrics.extra;
  const groups = groupsOf(s.rows);
  assert.deepEqual(s.shards, [0, 1]);
  assert.equal(s.rows.length, P * G);
  assert.equal(x['dynamic/rounds'], 0);
  assert.equal(x['dynamic/prompts_rolled'], P);
  assert.ok(x['dynamic/dropped_groups']! > 0, 'the step had flat groups');
  for (const g of groups) assert.equal(g.trained, g.informative, `group ${g.id}: trained iff informative`);
  assert.equal(x['dynamic/selected_groups'], groups.filter((g) => g.informative).length);
  await store.close();
});
