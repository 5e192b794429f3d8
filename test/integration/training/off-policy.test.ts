/**
 * Async steps, still deterministic (`rollout.offPolicySteps`, issue 14 §5), against the real
 * servers with every queue's worker in a process of its own: a k = 1 run (1 sft step, 5 rl steps,
 * continue-as-new every 2 steps) rolls out step n + 1 from checkpoint n while the learner updates
 * step n, carries the rollouts in flight over continue-as-new as claim checks (the next execution
 * rolls none of them out again), and, with the rollout, reward, learner and commit workers SIGKILLed
 * at crash points and the workflow worker SIGKILLed mid-run, ends with final weights bitwise equal
 * to the uninterrupted k = 1 run. A resume-from of such a run rolls out its first steps from the
 * resumed checkpoint (and is bitwise equal across a SIGKILL), and a stop ends a k = 1 run with the
 * answered number of steps committed while the next step's rollouts run ahead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import type { RunConfig } from '../../../activities/run/config.js';
import { METRICS_NAME, rolloutsName, stepPrefix } from '../../../activities/store/keys.js';
import { committedSteps, readArtifact } from '../../../activities/store/manifest.js';
import { decodeMetrics, decodeRollouts } from '../../../activities/store/schemas.js';
import { resumeFromRun, startTrainingRun, stopRun, type StartedRun } from '../../../workers/train-client.js';
import { policyVersion, totalSteps } from '../../../workflows/run-plan.js';
import type { TrainingRunInput } from '../../../workflows/training-run.js';
import { assertCommittedRun, superviseWorker, tinyRunConfig, trainingServers, waitFor, weightsSha } from '../../support/training.js';

const dir = mkdtempSync(join(tmpdir(), 'off-policy-run-'));
const storeUri = pathToFileURL(join(dir, 'store')).href;
const servers = trainingServers(storeUri, [dir]);

/** Steps 0 (sft), 1..5 (rl, 2 shards of 4 prompts); k = 1; a new execution every 2 steps. */
const config = (): RunConfig =>
  tinyRunConfig(storeUri, {
    phases: [
      { kind: 'sft', steps: 1, batchSize: 16, lr: 3e-3 },
      { kind: 'rl', steps: 5, promptsPerStep: 8, groupSize: 4, lr: 1e-2 },
    ],
    rollout: { promptsPerShard: 4, maxConcurrentShards: 2, offPolicySteps: 1 },
    eval: { prompts: 8, passK: 0 },
    workflow: { heartbeatTimeoutSeconds: 3, continueAsNewEvery: 2 },
  });

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** The checkpoint that generated the rollouts of each of `steps` of a committed run (one per step: every row agrees). */
async function rolloutVersions(runId: string, steps: number[]): Promise<number[]> {
  return Promise.all(
    steps.map(async (step) => {
      const versions = new Set<number>();
      for (const shard of [0, 1])
        for (const r of decodeRollouts(await readArtifact(servers.store, stepPrefix(runId, step), rolloutsName(shard))))
          versions.add(r.policy_version);
      assert.equal(versions.size, 1, `step ${step}: one policy version, got ${[...versions].join(', ')}`);
      return [...versions][0]!;
    }),
  );
}

/** The histories of a run's executions, first to last (from the latest back along continue-as-new). */
async function executions(client: Client, workflowId: string): Promise<HistoryEvent[][]> {
  const out: HistoryEvent[][] = [];
  for (let runId: string | null | undefined = undefined; ;) {
    const events: HistoryEvent[] = (await client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? [];
    out.unshift(events);
    runId = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId;
    if (!runId) return out;
  }
}

const decode = (p: temporal.api.common.v1.IPayload | undefined): unknown =>
  JSON.parse(Buffer.from(p?.data ?? new Uint8Array()).toString('utf8'));

/** Each activity scheduled in an execution: its type, its input's step, when it was scheduled and completed (event ids). */
function activities(events: HistoryEvent[]) {
  const byId = new Map<
    number,
    { type: string; step: number; policyVersion?: number; referenceVersion?: number | null; scheduled: number; completed?: number }
  >();
  for (const e of events) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s) {
      const input = decode(s.input?.payloads?.[0]) as { step?: number; policyVersion?: number; referenceVersion?: number | null };
      byId.set(Number(e.eventId), {
        type: s.activityType?.name ?? '',
        step: input.step ?? -1,
        ...(input.policyVersion !== undefined ? { policyVersion: input.policyVersion } : {}),
        ...(input.referenceVersion !== undefined ? { referenceVersion: input.referenceVersion } : {}),
        scheduled: Number(e.eventId),
      });
    }
    const c = e.activityTaskCompletedEventAttributes;
    if (c) byId.get(Number(c.scheduledEventId))!.completed = Number(e.eventId);
  }
  return [...byId.values()];
}

/** Runs `fn` with a supervised worker process per queue (control included; `env` for the activity workers) and stops them after. */
async function withProcesses<T>(env: Record<string, string>, fn: (killControl: () => Promise<void>) => Promise<T>) {
  const { t } = servers;
  const workers = await Promise.all(
    (['control', 'rollout', 'reward', 'learner'] as const).map((q) => superviseWorker([q], { ...t.env, ...(q === 'control' ? {} : env) })),
  );
  try {
    const result = await fn(() => workers[0]!.kill());
    return { result, restarts: workers.map((w) => w.restarts) };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

/** Runs `cfg` (or what `start` starts) to completion on worker processes; its run, final weights' sha256 and worker restarts. */
async function runWithProcesses(
  cfg: RunConfig,
  env: Record<string, string>,
  during?: (runId: string, killControl: () => Promise<void>) => Promise<void>,
  start: () => Promise<StartedRun> = () => startTrainingRun(servers.t.client, cfg),
) {
  const { result, restarts } = await withProcesses(env, async (killControl) => {
    const run = await start();
    await during?.(run.runId, killControl);
    assert.equal((await run.result()).status, 'completed');
    return { run, sha: await weightsSha(servers.store, run.runId, totalSteps(cfg)) };
  });
  return { ...result, restarts };
}

test("k = 1: step n+1 rolls out from checkpoint n beside step n's learner, rollouts in flight cross continue-as-new as claim checks, and SIGKILLs of every worker leave the final weights bitwise equal", async () => {
  const { t, store } = servers;
  const cfg = config();
  const total = totalSteps(cfg);

  // ── the uninterrupted k = 1 run ──
  const clean = await runWithProcesses(cfg, {});
  const runId = clean.run.runId;
  await assertCommittedRun(store, runId, total);
  // each step's rollouts were generated by the checkpoint the plan fixes: 1, 1, 2, 3, 4 for steps 1..5
  const expected = [1, 1, 2, 3, 4];
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((s) => policyVersion(cfg, s)),
    expected,
  );
  for (const [i, step] of [1, 2, 3, 4, 5].entries()) {
    for (const shard of [0, 1]) {
      const rows = decodeRollouts(await readArtifact(store, stepPrefix(runId, step), rolloutsName(shard)));
      assert.ok(
        rows.length === 16 && rows.every((r) => r.policy_version === expected[i]),
        `step ${step} shard ${shard}: policy_version ${expected[i]}`,
      );
    }
    const m = decodeMetrics(await readArtifact(store, stepPrefix(runId, step), METRICS_NAME))[0]!;
    assert.equal(m.policy_version, step, `step ${step}: the learner updated checkpoint ${step}`);
    assert.deepEqual(
      [m.extra['off_policy/behaviour_version'], m.extra['off_policy/staleness']],
      [expected[i], step - expected[i]!],
      `step ${step}: off_policy metrics`,
    );
  }

  // executions: steps 0-1, 2-3, 4-5; each continue-as-new carries the rollouts of the next step
  const execs = await executions(t.client, runId);
  assert.equal(execs.length, 3, 'three executions (continueAsNewEvery 2)');
  const rolled = execs.map((ev) =>
    [
      ...new Set(
        activities(ev)
          .filter((a) => a.type === 'rolloutShard')
          .map((a) => a.step),
      ),
    ].sort((a, b) => a - b),
  );
  assert.deepEqual(
    rolled,
    [[1, 2], [3, 4], [5]],
    'steps 2 and 4 are rolled out by the execution before theirs (beside the learner of steps 1 and 3), never again',
  );
  for (const [i, ev] of execs.slice(1).entries()) {
    const input = decode(ev[0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]) as TrainingRunInput;
    const ahead = input.carry?.ahead ?? [];
    assert.deepEqual(
      ahead.map((b) => [b.step, b.policyVersion, b.rollouts.length, b.rewards.length]),
      [[2 + 2 * i, 1 + 2 * i, 2, 2]],
      `execution ${i + 2} starts with the claim checks of step ${2 + 2 * i}`,
    );
  }
  // the rollouts of steps 2..5 are scheduled before the learner update of the step before completes
  for (const ev of execs) {
    const acts = activities(ev);
    for (const learner of acts.filter((a) => a.type === 'learnerUpdate' && a.step >= 1 && a.step < total - 1)) {
      const next = acts.filter((a) => a.type === 'rolloutShard' && a.step === learner.step + 1);
      assert.ok(
        next.length === 2 && next.every((r) => r.policyVersion === learner.step && r.scheduled < learner.completed!),
        `the rollouts of step ${learner.step + 1} start before step ${learner.step}'s learner update completes`,
      );
    }
  }
  // the KL reference stays the rl phase's first checkpoint (1) whatever generated the rollouts
  const learners = execs.flatMap((ev) => activities(ev).filter((a) => a.type === 'learnerUpdate' && a.step >= 1));
  assert.deepEqual(
    learners.map((a) => [a.step, a.referenceVersion]),
    [1, 2, 3, 4, 5].map((s) => [s, 1]),
  );
  const markers = execs.flat().filter((e) => e.markerRecordedEventAttributes);
  assert.ok(markers.length >= 1, 'the off-policy-steps patch marker is recorded');
  if (process.env.DURABLE_RL_RECORD_FIXTURES === '1') {
    // a replay fixture (test/unit/replay.test.ts): the middle execution starts with a step rolled
    // out ahead, rolls out the next beside its learner, and continues as new with it
    writeFileSync(
      new URL('../../fixtures/histories/training-run-off-policy.json', import.meta.url),
      JSON.stringify(
        await t.client.workflow
          .getHandle(runId, execs[2]![0]!.workflowExecutionStartedEventAttributes!.continuedExecutionRunId!)
          .fetchHistory(),
      ),
    );
  }

  // ── the same run with crashes: rollout of step 3 (running ahead, beside step 2's learner), reward of
  // step 4, learner of step 3, commit of step 4, and the workflow worker once step 2 is committed ──
  const onceDir = mkdtempSync(join(tmpdir(), 'crash-once-'));
  const points = ['rollout@3', 'reward@4', 'learner@3', 'commit@4'];
  try {
    const crashed = await runWithProcesses(
      cfg,
      { DURABLE_RL_CRASH_AT: points.join(','), DURABLE_RL_CRASH_ONCE: onceDir },
      async (id, killControl) => {
        await waitFor('step 2 committed', async () => ((await committedSteps(store, id)).includes(2) ? true : undefined), 600_000);
        await killControl();
      },
    );
    assert.deepEqual(readdirSync(onceDir).sort(), [...points].sort(), 'every crash point was reached');
    assert.deepEqual(crashed.restarts, [1, 1, 1, 2], 'control once (killed), rollout once, reward once, learner twice');
    await assertCommittedRun(store, crashed.run.runId, total);
    assert.equal(crashed.sha, clean.sha, 'final weights bitwise equal to the uninterrupted k = 1 run');
  } finally {
    rmSync(onceDir, { recursive: true, force: true });
  }
});

test('resume-from checkpoint 3 of a k = 1 run rolls out steps 3, 4, 5 from checkpoints 3, 3, 4 (none before the resumed one), and with the rollout worker SIGKILLed on the step rolled out ahead ends bitwise equal to a clean resume', async () => {
  const { store } = servers;
  const cfg = config();
  const total = totalSteps(cfg);
  const source = await runWithProcesses(cfg, {});
  const resume = () => resumeFromRun(servers.t.client, source.run.runId, { step: 2 });
  const clean = await runWithProcesses(cfg, {}, undefined, resume);
  assert.equal((clean.run as StartedRun & { checkpoint: number }).checkpoint, 3);
  await assertCommittedRun(store, clean.run.runId, total, 3);
  assert.deepEqual(await rolloutVersions(clean.run.runId, [3, 4, 5]), [3, 3, 4]);
  assert.deepEqual(
    [3, 4, 5].map((s) => policyVersion(cfg, s, 3)),
    [3, 3, 4],
  );
  // the source's own steps 3..5 rolled out from 2, 3, 4: a resumed k = 1 run is its own run from checkpoint 3
  assert.deepEqual(await rolloutVersions(source.run.runId, [3, 4, 5]), [2, 3, 4]);

  const onceDir = mkdtempSync(join(tmpdir(), 'crash-once-'));
  try {
    const crashed = await runWithProcesses(cfg, { DURABLE_RL_CRASH_AT: 'rollout@4', DURABLE_RL_CRASH_ONCE: onceDir }, undefined, resume);
    assert.deepEqual(readdirSync(onceDir), ['rollout@4'], 'the crash point was reached');
    await assertCommittedRun(store, crashed.run.runId, total, 3);
    assert.equal(crashed.sha, clean.sha, 'final weights bitwise equal to the clean resume');
  } finally {
    rmSync(onceDir, { recursive: true, force: true });
  }
});

test('stop of a k = 1 run ends it with the answered number of steps committed (never a step rolled out ahead), stopped, not failed', async () => {
  const { t, store } = servers;
  const cfg = tinyRunConfig(storeUri, {
    phases: [
      { kind: 'sft', steps: 1, batchSize: 16, lr: 3e-3 },
      { kind: 'rl', steps: 200, promptsPerStep: 8, groupSize: 4, lr: 1e-2 },
    ],
    rollout: { promptsPerShard: 4, maxConcurrentShards: 2, offPolicySteps: 1 },
    eval: { prompts: 8, passK: 0 },
  });
  await withProcesses({}, async () => {
    const run = await startTrainingRun(t.client, cfg);
    await waitFor('step 2 committed', async () => ((await committedSteps(store, run.runId)).includes(2) ? true : undefined), 600_000);
    const stop = await stopRun(t.client, run.runId, 'test');
    const result = await run.result();
    assert.equal(result.status, 'stopped');
    assert.ok(stop.step !== null && stop.step >= 3, `stop answered step ${stop.step}`);
    assert.equal(result.steps, stop.step);
    await assertCommittedRun(store, run.runId, stop.step);
  });
});
