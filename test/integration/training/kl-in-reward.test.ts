/**
 * REINFORCE++ with its KL in the reward in a real run (Temporal dev server, in-process workers,
 * file:// store): 2 sft steps, then 2 rl steps with estimator reinforce_pp and the loss's
 * kl.inReward. Each rl step scores its rollouts under the reference (the checkpoint where the rl
 * phase started) before its advantages (scoreReferenceLogprobs, behind the 'kl-in-reward' patch)
 * and commits the reference logprobs with its other artifacts. At the second rl step the policy has
 * moved from the reference, so the KL is not 0: its committed advantages are REINFORCE++ on the
 * rewards less β·kl_t, as recomputed from the committed artifacts, and differ from REINFORCE++ on
 * the plain rewards. The run completes and replays its own history.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from '@temporalio/worker';
import { stepAdvantages } from '../../../activities/advantage/step-advantages.js';
import { klPenalisedRewardRows, referenceByKey } from '../../../activities/advantage/step-kl-reward.js';
import { loadWeights } from '../../../activities/checkpoint/checkpoint.js';
import { ModelEngine } from '../../../activities/model/engine.js';
import { resolveRun } from '../../../activities/run/resolve.js';
import { openStore } from '../../../activities/store/open.js';
import { ADVANTAGES_NAME, METRICS_NAME, parseShardName, REFERENCE_LOGPROBS_NAME, stepPrefix } from '../../../activities/store/keys.js';
import { readArtifact, readCommitted } from '../../../activities/store/manifest.js';
import {
  decodeAdvantages,
  decodeMetrics,
  decodeReferenceLogprobs,
  decodeRewards,
  decodeRollouts,
  type RewardsRow,
  type RolloutsRow,
} from '../../../activities/store/schemas.js';
import { startTrainingRun } from '../../../workers/train-client.js';
import { workflowsPath } from '../../../workers/worker.js';
import { temporalWithWorkers } from '../../support/temporal.js';
import { assertCommittedRun, tinyRunConfig } from '../../support/training.js';

const temporal = temporalWithWorkers(['control', 'rollout', 'reward', 'learner']);
const storeUri = pathToFileURL(mkdtempSync(join(tmpdir(), 'kl-in-reward-run-'))).href;

const T = 0.8;
const BETA = 0.05;
const KL = { beta: BETA, estimator: 'k1', direction: 'reverse' } as const;

test('reinforce_pp with kl.inReward: every rl step commits its reference logprobs, its advantages charge β·kl per token (recomputed from the committed artifacts), the run completes and replays', async () => {
  const { client } = temporal();
  const config = tinyRunConfig(storeUri, {
    task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true, formatReward: 0.5 } },
    phases: [
      { kind: 'sft', steps: 2, batchSize: 16, lr: 3e-3 },
      {
        kind: 'rl',
        steps: 2,
        promptsPerStep: 8,
        groupSize: 4,
        lr: 1e-2,
        sampling: { temperature: T },
        advantage: { estimator: 'reinforce_pp' },
        loss: { name: 'clipped_surrogate', options: { kl: { ...KL, inReward: true } } },
      },
    ],
    eval: { prompts: 8, passK: 0 },
  });
  const run = await startTrainingRun(client, config);
  assert.equal((await run.result()).status, 'completed');
  const store = openStore(storeUri);
  await assertCommittedRun(store, run.runId, 4);
  const phase = config.phases[1]!;
  assert.ok(phase.kind === 'rl');

  const klSums: number[] = [];
  for (const step of [2, 3]) {
    const prefix = stepPrefix(run.runId, step);
    const manifest = await readCommitted(store, prefix);
    assert.ok(manifest, `step ${step} committed`);
    assert.ok(
      manifest.artifacts.some((a) => a.name === REFERENCE_LOGPROBS_NAME),
      `step ${step} commits ${REFERENCE_LOGPROBS_NAME}`,
    );
    const shards = manifest.artifacts
      .map((a) => parseShardName(a.name))
      .filter((x) => x?.kind === 'rollouts')
      .map((x) => x!.shard)
      .sort((a, b) => a - b);
    const pad = (k: number) => String(k).padStart(3, '0');
    const rollouts: RolloutsRow[] = [];
    const rewards: RewardsRow[] = [];
    for (const k of shards) {
      rollouts.push(...decodeRollouts(await readArtifact(store, prefix, `rollouts-${pad(k)}.arrow`)));
      rewards.push(...decodeRewards(await readArtifact(store, prefix, `rewards-${pad(k)}.arrow`)));
    }
    const refRows = decodeReferenceLogprobs(await readArtifact(store, prefix, REFERENCE_LOGPROBS_NAME));
    assert.equal(refRows.length, rollouts.length, 'one reference row per rollout row');
    assert.ok(refRows.every((r) => r.reference_version === 2 && r.temperature === T));

    // the reference logprobs are checkpoint 2's (where the rl phase started) at the sampling temperature
    const engine = new ModelEngine(resolveRun(config).model, { threads: 1 });
    try {
      engine.setWeights(await loadWeights(store, run.runId, 2), '2');
      for (const [i, r] of rollouts.slice(0, 4).entries()) {
        const { logprobs } = await engine.score({ ids: [[...r.prompt_token_ids, ...r.completion_token_ids]] }, { temperature: T });
        const p = r.prompt_token_ids.length;
        refRows[i]!.ref_logprobs.forEach((v, j) => assert.ok(Math.abs(v - logprobs[p + j]!) <= 1e-5, `step ${step} row ${i} token ${j}`));
      }
    } finally {
      await engine.close();
    }

    // the committed advantages are REINFORCE++ on the penalised rewards
    const committed = decodeAdvantages(await readArtifact(store, prefix, ADVANTAGES_NAME));
    const pen = klPenalisedRewardRows(rollouts, rewards, referenceByKey(refRows), KL);
    const want = stepAdvantages(phase.advantage, rollouts, pen.rewards).rows;
    const plain = stepAdvantages(phase.advantage, rollouts, rewards).rows;
    let worst = 0;
    let fromPlain = 0;
    committed.forEach((a, i) => {
      const n = rollouts[i]!.completion_token_ids.length;
      for (let t = 0; t < n; t++) {
        const got = a.token_advantages ? a.token_advantages[t]! : a.advantage!;
        const w = want[i]!;
        worst = Math.max(worst, Math.abs(got - (w.token_advantages ? w.token_advantages[t]! : w.advantage!)));
        const p = plain[i]!;
        fromPlain = Math.max(fromPlain, Math.abs(got - (p.token_advantages ? p.token_advantages[t]! : p.advantage!)));
      }
    });
    assert.ok(worst <= 1e-6, `step ${step}: largest |committed − recomputed advantage| ${worst}`);

    const metrics = decodeMetrics(await readArtifact(store, prefix, METRICS_NAME))[0]!;
    assert.ok(Math.abs(metrics.extra['kl_reward/kl_sum_mean']! - pen.klMean) <= 1e-9, `step ${step} kl_reward/kl_sum_mean`);
    assert.ok(Math.abs(metrics.extra['kl_reward/penalty_mean']! - pen.penaltyMean) <= 1e-9);
    assert.ok(metrics.kl !== null, 'the learner still reports kl');
    klSums.push(pen.klMean);
    if (step === 3) assert.ok(fromPlain > 1e-3, `step 3: the KL moved the advantages (largest change ${fromPlain})`);
  }
  // step 2's policy is the reference (the KL is rounding); step 3's has moved away from it
  assert.ok(Math.abs(klSums[0]!) < 1e-3, `step 2 mean Σ kl ${klSums[0]}`);
  assert.ok(Math.abs(klSums[1]!) > 10 * Math.abs(klSums[0]!), `step 3 mean Σ kl ${klSums[1]} vs step 2 ${klSums[0]}`);

  // the workflow replays its own history, the reference scoring behind the 'kl-in-reward' patch
  const history = await client.workflow.getHandle(run.runId).fetchHistory();
  const markers = (history.events ?? [])
    .flatMap((e) => Object.values(e.markerRecordedEventAttributes?.details ?? {}))
    .flatMap((p) => p.payloads ?? [])
    .map((p) => (typeof p.data === 'string' ? Buffer.from(p.data, 'base64') : Buffer.from(p.data ?? [])).toString('utf8'));
  assert.ok(
    markers.some((m) => m.includes('"kl-in-reward"')),
    `the patch marker is recorded: ${markers.join(' ')}`,
  );
  const scheduled = (history.events ?? []).filter(
    (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'scoreReferenceLogprobs',
  ).length;
  assert.equal(scheduled, 2, 'one reference scoring per rl step');
  await Worker.runReplayHistory({ workflowsPath }, history, run.runId);
  await store.close();
  console.log(`kl-in-reward: mean Σ kl per sample, steps 2 and 3: ${klSums.map((x) => x.toExponential(3)).join(', ')}`);
});
