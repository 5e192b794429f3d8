/**
 * Multi-turn episodes end to end (issue 15) on a real Temporal dev server with worker processes:
 * the `calculator` environment (tagged tool calls, a char model from scratch) trains SFT on gold
 * trajectories then GRPO on its episodes through the durable run; a rollout worker SIGKILLed
 * mid-episode (after a recorded turn) resumes from the last completed turn, and the run ends with
 * weights bitwise equal to the uninterrupted run's. The `lookup` environment trains the same way
 * (two-hop questions, the `lookup` tool's answers as observations).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { countryTable, lookupFact, RELATIONS } from '../../../activities/env/lookup.js';
import type { EvalRecord } from '../../../activities/run/types.js';
import {
  ADVANTAGES_NAME,
  EVAL_NAME,
  METRICS_NAME,
  evalPrefix,
  parseShardName,
  stepEpisodePartsPrefix,
  stepPrefix,
} from '../../../activities/store/keys.js';
import { readArtifact, readCommitted } from '../../../activities/store/manifest.js';
import { decodeAdvantages, decodeMetrics, decodeRewards, decodeRollouts, type RolloutsRow } from '../../../activities/store/schemas.js';
import { startTrainingRun } from '../../../workers/train-client.js';
import { totalSteps } from '../../../workflows/run-plan.js';
import { lazyFixture } from '../../support/fixture.js';
import { activityCalls } from '../../support/history.js';
import { assertCommittedRun, tinyRunConfig, trainingServers, weightsSha, withCrashingWorkers } from '../../support/training.js';

const storeDir = mkdtempSync(join(tmpdir(), 'training-episodes-'));
const storeUri = pathToFileURL(storeDir).href;
const SFT_STEPS = 3;
const config = () =>
  tinyRunConfig(storeUri, {
    name: 'episodes-calculator',
    environment: { name: 'calculator', options: { minDigits: 2, maxDigitsA: 2, maxDigitsB: 2, easyFraction: 0.25, maxTurns: 3 } },
    phases: [
      { kind: 'sft', steps: SFT_STEPS, updatesPerStep: 10, batchSize: 16, lr: 1e-2 },
      { kind: 'rl', steps: 3, promptsPerStep: 8, groupSize: 4, lr: 1e-3, sampling: { temperature: 1 } },
    ],
  });
const TOTAL = totalSteps(config());
const servers = trainingServers(storeUri, [storeDir]);

/** Trains the run to the end with one worker process per queue, killed at `crashAt` (once each) and restarted. */
async function train(crashAt: string[], runConfig = config) {
  const { result, restarts } = await withCrashingWorkers(servers.t.env, crashAt, async () => {
    const run = await startTrainingRun(servers.t.client, runConfig());
    const outcome = await run.result();
    assert.equal(outcome.status, 'completed');
    const events = (await servers.t.client.workflow.getHandle(run.runId).fetchHistory()).events ?? [];
    return { runId: run.runId, events };
  });
  return { ...result, restarts };
}

const uninterrupted = lazyFixture(async () => {
  const r = await train([]);
  await assertCommittedRun(servers.store, r.runId, TOTAL);
  return { ...r, sha: await weightsSha(servers.store, r.runId, TOTAL) };
});

/** The rollouts rows of a committed step, every shard in order. */
async function stepRollouts(runId: string, step: number): Promise<RolloutsRow[]> {
  const m = await readCommitted(servers.store, stepPrefix(runId, step));
  const rows: RolloutsRow[] = [];
  for (const e of m!.artifacts.filter((a) => parseShardName(a.name)?.kind === 'rollouts').sort((a, b) => (a.name < b.name ? -1 : 1)))
    rows.push(...decodeRollouts(await readArtifact(servers.store, stepPrefix(runId, step), e.name)));
  return rows;
}

/** The JSON result of every completed rolloutShard call of a history, with the attempt that completed it. */
function rolloutResults(events: Awaited<ReturnType<typeof train>>['events']) {
  const calls = activityCalls(events);
  const scheduled = new Map<number, { attempt: number; summary: string }>();
  const out: { attempt: number; summary: string; resumedTurns?: number }[] = [];
  const byId = new Map(calls.map((c) => [c.activityId, c]));
  for (const e of events) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s?.activityType?.name === 'rolloutShard') {
      const c = byId.get(s.activityId ?? '')!;
      scheduled.set(Number(e.eventId), c);
    }
    const done = e.activityTaskCompletedEventAttributes;
    const c = done && scheduled.get(Number(done.scheduledEventId));
    if (c) {
      const data = done.result?.payloads?.[0]?.data;
      const result = data ? (JSON.parse(Buffer.from(data).toString('utf8')) as { resumedTurns?: number }) : {};
      out.push({ ...c, ...(result.resumedTurns !== undefined ? { resumedTurns: result.resumedTurns } : {}) });
    }
  }
  return out;
}

test('calculator trains SFT on gold trajectories then GRPO on its episodes: rows with turns, tool calls and observations masked out of the loss, rewards on final answers, episode metrics and evaluations, and no activity per turn', async () => {
  const { runId, events } = await uninterrupted();
  let multiTurn = 0;
  let calls = 0;
  for (let step = SFT_STEPS; step < TOTAL; step++) {
    const rows = await stepRollouts(runId, step);
    assert.equal(rows.length, 8 * 4, `step ${step}: 8 prompts × 4 episodes`);
    const prefix = stepPrefix(runId, step);
    const metrics = decodeMetrics(await readArtifact(servers.store, prefix, METRICS_NAME))[0]!;
    assert.equal(metrics.extra['episodes/turns_mean'], rows.reduce((a, r) => a + r.turns!, 0) / rows.length);
    assert.equal(metrics.extra['episodes/tool_calls_mean'], rows.reduce((a, r) => a + r.tool_calls!.length, 0) / rows.length);
    const adv = new Map(
      decodeAdvantages(await readArtifact(servers.store, prefix, ADVANTAGES_NAME)).map((a) => [`${a.prompt_id}#${a.sample_id}`, a]),
    );
    for (const r of rows) {
      assert.ok(
        r.segment_ends && r.loss_mask && r.turns! >= 1 && r.turns! <= 3,
        `step ${step} ${r.prompt_id}/${r.sample_id} is an episode`,
      );
      if (r.turns! > 1) multiTurn++;
      calls += r.tool_calls!.length;
      const a = adv.get(`${r.prompt_id}#${r.sample_id}`)!;
      a.loss_mask!.forEach((m, t) => assert.ok(!m || r.loss_mask![t], `step ${step}: an observation token is in the loss`));
    }
    const m = await readCommitted(servers.store, prefix);
    for (const e of m!.artifacts.filter((x) => parseShardName(x.name)?.kind === 'rewards'))
      for (const w of decodeRewards(await readArtifact(servers.store, prefix, e.name))) {
        assert.ok(w.reward !== null, `step ${step}: every episode scored (no tool failures here)`);
        assert.ok(w.components.correct === 0 || w.components.correct === 1);
      }
  }
  assert.ok(multiTurn > 0 && calls > 0, `the policy called the tool (${calls} calls, ${multiTurn} multi-turn episodes)`);

  const evalRecord = JSON.parse(
    new TextDecoder().decode(await readArtifact(servers.store, evalPrefix(runId, TOTAL), EVAL_NAME)),
  ) as EvalRecord;
  assert.ok(evalRecord.episodes && evalRecord.episodes.turns_mean >= 1, 'the evaluation ran episodes');
  assert.ok(evalRecord.greedy_accuracy !== null);

  // turns are not activities: an rl step schedules one rollout and one reward call per shard (2 shards)
  const rollouts = activityCalls(events).filter((c) => c.type === 'rolloutShard');
  assert.equal(rollouts.length, 3 * 2);
  assert.ok(
    rollouts.every((c) => /calculator episodes/.test(c.summary)),
    rollouts[0]?.summary,
  );
  assert.ok(
    rolloutResults(events).every((r) => r.resumedTurns === 0),
    'an uninterrupted run resumes no shard',
  );
});

test('a rollout worker SIGKILLed mid-episode resumes from the last completed turn and the run ends bitwise equal to the uninterrupted one', async () => {
  const reference = (await uninterrupted()).sha;
  // killed in the first and the last rl step, each time after a shard recorded a turn with turns to go
  const { runId, restarts, events } = await train([`episode@${SFT_STEPS}`, `episode@${TOTAL - 1}`]);
  assert.equal(restarts, 2, 'the rollout worker was killed twice, each time after a recorded turn');
  await assertCommittedRun(servers.store, runId, TOTAL);
  const retried = rolloutResults(events).filter((r) => r.attempt > 1);
  assert.equal(retried.length, 2, 'two rollout shards ran a second attempt');
  for (const r of retried) assert.ok(r.resumedTurns! >= 1, `${r.summary}: the retry resumed after ${r.resumedTurns} recorded turn(s)`);
  assert.equal(await weightsSha(servers.store, runId, TOTAL), reference, "the final weights equal the uninterrupted run's");
});

const LOOKUP_SFT_STEPS = 6;
const lookupConfig = () =>
  tinyRunConfig(storeUri, {
    name: 'episodes-lookup',
    environment: { name: 'lookup', options: { maxTurns: 3 } },
    phases: [
      { kind: 'sft', steps: LOOKUP_SFT_STEPS, updatesPerStep: 10, batchSize: 16, lr: 1e-2 },
      // a cool temperature: a model this small and this briefly trained spells the relation right mostly at its mode
      { kind: 'rl', steps: 2, promptsPerStep: 8, groupSize: 4, lr: 1e-3, sampling: { temperature: 0.3 } },
    ],
  });

test('lookup trains SFT on gold trajectories then GRPO on its episodes: rollouts hold lookup calls answered from the table, their observations out of the loss, a reward for every episode, episode evaluations', async () => {
  const total = totalSteps(lookupConfig());
  const { runId, events } = await train([], lookupConfig);
  await assertCommittedRun(servers.store, runId, total);
  const table = countryTable();
  let calls = 0;
  let observations = 0;
  for (let step = LOOKUP_SFT_STEPS; step < total; step++) {
    const rows = await stepRollouts(runId, step);
    assert.equal(rows.length, 8 * 4, `step ${step}: 8 prompts × 4 episodes`);
    for (const r of rows) {
      const who = `step ${step} ${r.prompt_id}/${r.sample_id}`;
      assert.ok(r.segment_ends && r.segment_roles && r.loss_mask && r.turns! >= 1 && r.turns! <= 3, `${who} is an episode`);
      // each call ran the lookup tool: its output is the table's answer, and it is the observation the policy read next
      for (const c of r.tool_calls!.map(
        (x) => JSON.parse(x) as { name: string; arguments: { entity: string; relation: string }; output: string },
      )) {
        assert.equal(c.name, 'lookup', who);
        assert.ok((RELATIONS as readonly string[]).includes(c.arguments.relation), who);
        assert.equal(c.output, lookupFact(table, c.arguments.entity, c.arguments.relation as (typeof RELATIONS)[number]), who);
        if (r.finish_reason !== 'length') assert.ok(r.completion_text.includes(`<o>${c.output}</o>`), `${who}: ${r.completion_text}`);
        calls++;
      }
      // every observation token is out of the loss (behaviour logprob 0), every policy token in it
      let start = 0;
      r.segment_roles!.forEach((role, k) => {
        const end = r.segment_ends![k]!;
        for (let t = start; t < end; t++) {
          assert.equal(r.loss_mask![t], role === 'policy', `${who} token ${t} (${role})`);
          if (role === 'observation') assert.equal(r.behaviour_logprobs[t], 0, `${who} token ${t}`);
        }
        if (role === 'observation') observations++;
        start = end;
      });
    }
    const prefix = stepPrefix(runId, step);
    const m = await readCommitted(servers.store, prefix);
    const rewards = [];
    for (const e of m!.artifacts.filter((x) => parseShardName(x.name)?.kind === 'rewards'))
      rewards.push(...decodeRewards(await readArtifact(servers.store, prefix, e.name)));
    assert.equal(rewards.length, rows.length);
    for (const w of rewards) assert.ok(w.reward !== null && Number.isFinite(w.reward), `step ${step}: every episode scored`);
    const parts: string[] = [];
    for await (const o of servers.store.list(stepEpisodePartsPrefix(runId, step))) parts.push(o.key);
    assert.deepEqual(parts, [], `step ${step}: its committed step deleted the episodes' resume points`);
  }
  assert.ok(calls > 0 && observations > 0, `the policy called the lookup tool (${calls} calls, ${observations} observation segments)`);

  const evalRecord = JSON.parse(
    new TextDecoder().decode(await readArtifact(servers.store, evalPrefix(runId, total), EVAL_NAME)),
  ) as EvalRecord;
  assert.ok(evalRecord.episodes && evalRecord.episodes.turns_mean >= 1, 'the evaluation ran episodes');
  assert.ok(evalRecord.greedy_accuracy !== null);
  const rollouts = activityCalls(events).filter((c) => c.type === 'rolloutShard');
  assert.equal(rollouts.length, 2 * 2, 'two rollout activities per rl step (2 shards), whatever the turns');
  assert.ok(
    rollouts.every((c) => /lookup episodes/.test(c.summary)),
    rollouts[0]?.summary,
  );
});
