/**
 * The training run on the real Temporal dev server with in-process workers and a file:// store:
 * it commits every step once (across continue-as-new), evaluates, shows itself in the UI's search
 * attributes and current details, obeys pause / resume / stop, records a flaky reward per its
 * policy, and a bad config never starts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { WorkflowNotFoundError } from '@temporalio/client';
import { ConfigError } from '../../../activities/common/config.js';
import { openStore } from '../../../activities/store/open.js';
import { METRICS_NAME, rewardsName, stepPrefix } from '../../../activities/store/keys.js';
import { committedSteps, readArtifact } from '../../../activities/store/manifest.js';
import { decodeMetrics, decodeRewards } from '../../../activities/store/schemas.js';
import { newRunId, pauseRun, resumeRun, runProgress, startTrainingRun, stopRun } from '../../../workers/train-client.js';
import { temporalWithWorkers } from '../../support/temporal.js';
import { assertCommittedRun, tinyRunConfig, waitFor } from '../../support/training.js';

const temporal = temporalWithWorkers(['control', 'rollout', 'reward', 'learner']);
const storeUri = pathToFileURL(mkdtempSync(join(tmpdir(), 'training-run-'))).href;

test('a run commits every step once across continue-as-new, evaluates, and shows itself in the UI', async () => {
  const { client } = temporal();
  const config = tinyRunConfig(storeUri, { workflow: { continueAsNewEvery: 2, heartbeatTimeoutSeconds: 3 } });
  const run = await startTrainingRun(client, config);
  const result = await run.result();
  assert.equal(result.status, 'completed');
  assert.equal(result.steps, 5);

  const store = openStore(storeUri);
  await assertCommittedRun(store, run.runId, 5);
  const phases = [];
  for (const s of [0, 1, 2, 3, 4]) phases.push(decodeMetrics(await readArtifact(store, stepPrefix(run.runId, s), METRICS_NAME))[0]!.phase);
  assert.deepEqual(phases, ['sft', 'sft', 'rl', 'rl', 'rl']);
  const rl = decodeMetrics(await readArtifact(store, stepPrefix(run.runId, 3), METRICS_NAME))[0]!;
  assert.equal(rl.num_prompts, 8);
  assert.ok(rl.reward_mean !== null && rl.reward_mean >= 0 && rl.reward_mean <= 1);
  assert.ok(rl.loss !== null && Number.isFinite(rl.loss));
  // The step's store traffic before its commit: at least the artifacts it committed were written
  // (rollouts, rewards, advantages; the manifest and metrics come after the row), and read back.
  let artifactBytes = 0;
  for await (const o of store.list(`${stepPrefix(run.runId, 3)}/`))
    if (!o.key.endsWith('/manifest.json') && !o.key.endsWith(`/${METRICS_NAME}`)) artifactBytes += o.size;
  assert.ok(artifactBytes > 0);
  assert.ok(rl.extra['io/bytes_written']! >= artifactBytes, `io/bytes_written ${rl.extra['io/bytes_written']} < ${artifactBytes}`);
  assert.ok(rl.extra['io/bytes_read']! >= artifactBytes, `io/bytes_read ${rl.extra['io/bytes_read']} < ${artifactBytes}`);
  // Evaluations: the initial weights, the end of sft (before RL), the end of the run.
  assert.deepEqual(
    result.evals.map((e) => e.policyVersion),
    [0, 2, 5],
  );
  for (const e of result.evals) assert.ok(e.greedyAccuracy !== null && e.greedyAccuracy >= 0 && e.greedyAccuracy <= 1);

  // Continue-as-new every 2 steps: three executions in the chain, the last one completed.
  const executions: { runId: string; status: string; startTime: Date }[] = [];
  for await (const w of client.workflow.list({ query: `WorkflowId = '${run.runId}'` }))
    executions.push({ runId: w.runId, status: w.status.name, startTime: w.startTime });
  executions.sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
  assert.deepEqual(
    executions.map((e) => e.status),
    ['CONTINUED_AS_NEW', 'CONTINUED_AS_NEW', 'COMPLETED'],
  );
  if (process.env.DURABLE_RL_RECORD_FIXTURES === '1') {
    // Replay fixtures (test/unit/replay.test.ts): the first execution (ends in continue-as-new)
    // and the last one (starts from the carried state).
    const dir = new URL('../../fixtures/histories/', import.meta.url);
    for (const [i, e] of [
      [1, executions[0]!],
      [3, executions[2]!],
    ] as const) {
      const history = await client.workflow.getHandle(run.runId, e.runId).fetchHistory();
      writeFileSync(new URL(`training-run-exec${i}.json`, dir), JSON.stringify(history));
    }
  }

  // What the Web UI shows: search attributes and the markdown current details.
  const d = await client.workflow.getHandle(run.runId).describe();
  // ... and, with no worker needed (kept with the closed workflow), its summary and details: the
  // first execution's static summary and details, and every execution's memo (continue-as-new
  // carries the memo, not the static ones).
  const summary = /^tiny: sft ×2 → rl ×3 on addition$/;
  const staticDetails = new RegExp(`^## Training run \`${run.runId}\` \\(tiny\\)\n- \\*\\*phases:\\*\\* sft ×2 → rl ×3 \\(5 steps\\)`);
  const first = await client.workflow.getHandle(run.runId, executions[0]!.runId).describe();
  assert.match((await first.staticSummary()) ?? '', summary);
  assert.match((await first.staticDetails()) ?? '', staticDetails);
  assert.match(String(d.memo?.summary), summary);
  assert.match(String(d.memo?.details), staticDetails);
  const sa = d.typedSearchAttributes;
  assert.equal(sa.get({ name: 'DurableRlRunName', type: 'KEYWORD' } as never), 'tiny');
  assert.equal(sa.get({ name: 'DurableRlStatus', type: 'KEYWORD' } as never), 'completed');
  assert.equal(sa.get({ name: 'DurableRlStep', type: 'INT' } as never), 5);
  assert.equal(sa.get({ name: 'DurableRlPhase', type: 'KEYWORD' } as never), 'rl');
  assert.equal(typeof sa.get({ name: 'DurableRlMeanReward', type: 'DOUBLE' } as never), 'number');
  const meta = await client.workflow.getHandle(run.runId).query<{ currentDetails?: string }>('__temporal_workflow_metadata');
  assert.match(meta.currentDetails ?? '', /## Training run/);
  assert.match(meta.currentDetails ?? '', /step:\*\* 5 \/ 5/);
  assert.match(meta.currentDetails ?? '', /greedy accuracy/);
  assert.match(meta.currentDetails ?? '', /continued as new 2 time/);
  await store.close();
});

test('pause holds the run between steps, resume continues it, stop ends it after committing the step', async () => {
  const { client } = temporal();
  const config = tinyRunConfig(storeUri, { phases: [{ kind: 'sft', steps: 200, batchSize: 8 }] });
  const run = await startTrainingRun(client, config);
  const store = openStore(storeUri);
  await waitFor('step 1 committed', async () => ((await committedSteps(store, run.runId)).includes(1) ? true : undefined));
  await pauseRun(client, run.runId);
  const paused = await waitFor('paused', async () =>
    (await runProgress(client, run.runId))?.status === 'paused' ? (await runProgress(client, run.runId))! : undefined,
  );
  assert.equal(paused.stage, 'paused');
  const held = (await committedSteps(store, run.runId)).length;
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal((await committedSteps(store, run.runId)).length, held, 'no step is committed while paused');

  await resumeRun(client, run.runId);
  await waitFor('a step after resume', async () => ((await committedSteps(store, run.runId)).length > held + 1 ? true : undefined));
  // Stop a paused run: it ends at once, with no further step.
  await pauseRun(client, run.runId);
  await waitFor('paused again', async () => ((await runProgress(client, run.runId))?.status === 'paused' ? true : undefined));
  const before = (await committedSteps(store, run.runId)).length;
  await stopRun(client, run.runId, 'test');
  const result = await run.result();
  assert.equal(result.status, 'stopped');
  assert.equal(result.steps, before, 'no step after a stop while paused');
  const steps = await committedSteps(store, run.runId);
  assert.equal(steps.length, result.steps, 'the result counts the committed steps');
  assert.ok(result.steps < 200);
  await assertCommittedRun(store, run.runId, result.steps);
  const d = await client.workflow.getHandle(run.runId).describe();
  assert.equal(d.typedSearchAttributes.get({ name: 'DurableRlStatus', type: 'KEYWORD' } as never), 'stopped');
  await store.close();
});

test('a reward that fails on some samples is handled by the drop policy and counted in the metrics', async () => {
  const { client } = temporal();
  const config = tinyRunConfig(storeUri, {
    phases: [{ kind: 'rl', steps: 2, promptsPerStep: 8, groupSize: 4 }],
    reward: { errorPolicy: { onError: 'drop' }, faults: { rate: 0.25, kind: 'throw', seed: 3 } },
  });
  const run = await startTrainingRun(client, config);
  assert.equal((await run.result()).status, 'completed');
  const store = openStore(storeUri);
  let errors = 0;
  for (const s of [0, 1]) {
    const m = decodeMetrics(await readArtifact(store, stepPrefix(run.runId, s), METRICS_NAME))[0]!;
    const rewards = [
      ...decodeRewards(await readArtifact(store, stepPrefix(run.runId, s), rewardsName(0))),
      ...decodeRewards(await readArtifact(store, stepPrefix(run.runId, s), rewardsName(1))),
    ];
    const failed = rewards.filter((r) => r.error !== null);
    assert.equal(m.reward_errors, failed.length, `step ${s}: metrics count every failed reward`);
    for (const r of failed) {
      assert.equal(r.reward, null, 'a dropped sample has no reward (never a silent zero)');
      assert.match(r.error!, /injected reward fault/);
    }
    assert.ok(m.dropped_samples >= failed.length);
    errors += failed.length;
  }
  assert.ok(errors > 0, 'the drill failed some rewards');
  await store.close();
});

test('a bad config is refused before anything starts, naming the field', async () => {
  const { client } = temporal();
  const runId = newRunId('bad');
  await assert.rejects(
    () => startTrainingRun(client, { store: storeUri, phases: [{ kind: 'rl', steps: 2, groupSize: 1 }] }, { runId }),
    (err: unknown) => err instanceof ConfigError && /phases\.0\.groupSize/.test(err.message),
  );
  await assert.rejects(() => client.workflow.getHandle(runId).describe(), WorkflowNotFoundError);
});
