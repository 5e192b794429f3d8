/**
 * The KL in the reward (`kl.inReward`, REINFORCE++) through the activities of one rl step, on a
 * tiny run (llama 32x1, one-digit addition) in a temp file:// store: checkpoint 1 (the policy)
 * samples at T = 0.7, checkpoint 0 is the reference. scoreReferenceLogprobs writes the reference's
 * logprobs of the step's rollouts; computeStepAdvantages charges β·kl_t in each token's reward
 * before REINFORCE++'s returns; the learner takes the same logprobs for its kl metric instead of
 * scoring the reference again.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { computeStepAdvantages } from '../../../activities/advantage/step-advantages.js';
import { loadWeights, writeCheckpoint } from '../../../activities/checkpoint/checkpoint.js';
import { learnerUpdate } from '../../../activities/learner/learner-update.js';
import { scoreReferenceLogprobs } from '../../../activities/learner/reference-logprobs.js';
import { initTrainState, ModelEngine } from '../../../activities/model/engine.js';
import { initWeights } from '../../../activities/model/init.js';
import { releaseEngines } from '../../../activities/rollout/policy.js';
import { rolloutShard } from '../../../activities/rollout/rollout-shard.js';
import type { RunConfigInput } from '../../../activities/run/config.js';
import { checkpointPrefix, rewardsName, stepPrefix } from '../../../activities/store/keys.js';
import { commit, readEntry, writeArtifact, type ManifestEntry } from '../../../activities/store/manifest.js';
import {
  decodeAdvantages,
  decodeReferenceLogprobs,
  decodeRollouts,
  encodeRewards,
  REWARDS,
  type RolloutsRow,
} from '../../../activities/store/schemas.js';
import { runFixture, type RunFixture } from './fixture.js';

const RUN = 'kl-in-reward';
const T = 0.7;
const BETA = 0.1;
const STEP = 1;

const config = (): RunConfigInput => ({
  name: 'kl-in-reward',
  seed: 5,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  model: { hidden: 32, layers: 1, heads: 2, initStd: 0.5 },
  phases: [
    {
      kind: 'rl',
      steps: 2,
      promptsPerStep: 4,
      groupSize: 4,
      lr: 1e-2,
      sampling: { temperature: T },
      advantage: { estimator: 'reinforce_pp' },
      loss: { name: 'clipped_surrogate', options: { kl: { beta: BETA, estimator: 'k1', inReward: true } } },
    },
    // a phase with the KL in the loss: scoring its reference before the advantages is refused
    { kind: 'rl', steps: 1, promptsPerStep: 4, groupSize: 4, loss: { name: 'clipped_surrogate', options: { kl: { beta: 0.04 } } } },
  ],
  engine: { threads: 1 },
});

const ref = (f: RunFixture) => ({ storeUri: f.storeUri, runId: RUN });

let f: RunFixture;
let rows: RolloutsRow[];
let rollouts: ManifestEntry;
let rewards: ManifestEntry;
/** The task reward of each row: 1 for even sample ids, 0 for odd. */
const rewardOf = (r: RolloutsRow) => (r.sample_id % 2 === 0 ? 1 : 0);

before(async () => {
  f = await runFixture(RUN, config(), { checkpoint0: true });
  // checkpoint 1, the policy of step 1: other initial weights, so π_old and π_ref differ
  const state1 = initTrainState(f.run.model, initWeights(f.run.model, 99));
  await commit(f.store, checkpointPrefix(RUN, 1), await writeCheckpoint(f.store, RUN, 1, state1));
  const r = await rolloutShard({
    ...ref(f),
    step: STEP,
    policyVersion: 1,
    phaseIndex: 0,
    shard: 0,
    shards: 1,
    promptOffset: 0,
    promptCount: 4,
  });
  rollouts = r.rollouts;
  rows = decodeRollouts(await readEntry(f.store, stepPrefix(RUN, STEP), rollouts));
  rewards = await writeArtifact(f.store, stepPrefix(RUN, STEP), {
    name: rewardsName(0),
    schema: REWARDS,
    bytes: encodeRewards(
      rows.map((x) => ({ run_id: RUN, step: STEP, prompt_id: x.prompt_id, sample_id: x.sample_id, reward: rewardOf(x), components: {} })),
    ),
  });
});
after(async () => {
  await releaseEngines();
  await f.teardown();
});

/** log softmax(logits / temperature) of every completion token of every row under checkpoint `version`, one row at a time. */
async function scored(version: number, temperature: number): Promise<Float32Array[]> {
  const engine = new ModelEngine(f.run.model, { threads: 1 });
  try {
    engine.setWeights(await loadWeights(f.store, RUN, version), String(version));
    const out: Float32Array[] = [];
    for (const row of rows) {
      const { logprobs } = await engine.score(
        { ids: [[...row.prompt_token_ids, ...row.completion_token_ids]] },
        { entropy: false, temperature },
      );
      const p = row.prompt_token_ids.length;
      out.push(logprobs.slice(p, p + row.completion_token_ids.length));
    }
    return out;
  } finally {
    await engine.close();
  }
}

const largest = (a: ArrayLike<number>[], b: ArrayLike<number>[]) =>
  Math.max(...a.map((x, i) => Math.max(0, ...Array.from(x, (v, j) => Math.abs(v - b[i]![j]!)))));

let referenceEntry: ManifestEntry;

describe('kl.inReward through the activities', () => {
  it(`scoreReferenceLogprobs: one row per rollout row (16), ref_logprobs = engine.score of checkpoint 0 at T = ${T} within 1e-5 (at T = 1 not within 1e-2); reference_version 0, temperature ${T}; the same bytes when run again`, async () => {
    const r = await scoreReferenceLogprobs({ ...ref(f), step: STEP, phaseIndex: 0, referenceVersion: 0, rollouts: [rollouts] });
    referenceEntry = r.referenceLogprobs;
    const got = decodeReferenceLogprobs(await readEntry(f.store, stepPrefix(RUN, STEP), r.referenceLogprobs));
    assert.equal(got.length, 16);
    assert.equal(r.samples, 16);
    assert.equal(
      r.tokens,
      rows.reduce((n, x) => n + x.completion_token_ids.length, 0),
    );
    assert.deepEqual(
      got.map((g) => [g.prompt_id, g.sample_id, g.reference_version, g.temperature]),
      rows.map((x) => [x.prompt_id, x.sample_id, 0, T]),
    );
    const refs = got.map((g) => g.ref_logprobs);
    const atT = largest(refs, await scored(0, T));
    const atOne = largest(refs, await scored(0, 1));
    assert.ok(atT <= 1e-5, `largest |ref_logprobs − score(checkpoint 0, T ${T})| ${atT}`);
    assert.ok(atOne > 1e-2, `at T = 1 the largest difference is ${atOne}`);
    // the reference is not the policy: π_old and π_ref differ (the KL is not ~0)
    assert.ok(
      largest(
        refs,
        Array.from(rows, (x) => x.behaviour_logprobs),
      ) > 0.1,
    );
    const again = await scoreReferenceLogprobs({ ...ref(f), step: STEP, phaseIndex: 0, referenceVersion: 0, rollouts: [rollouts] });
    assert.equal(again.referenceLogprobs.sha256, r.referenceLogprobs.sha256);
  });

  it('scoreReferenceLogprobs names bad input: a phase without kl.inReward, a reference past the step, no rollouts', async () => {
    await assert.rejects(
      scoreReferenceLogprobs({ ...ref(f), step: STEP, phaseIndex: 1, referenceVersion: 0, rollouts: [rollouts] }),
      /phases\.1\.loss\.options\.kl\.inReward is not set/,
    );
    await assert.rejects(
      scoreReferenceLogprobs({ ...ref(f), step: STEP, phaseIndex: 0, referenceVersion: 2, rollouts: [rollouts] }),
      /referenceVersion is 2; give the checkpoint where the rl phase started \(0\.\.1\)/,
    );
    await assert.rejects(
      scoreReferenceLogprobs({ ...ref(f), step: STEP, phaseIndex: 0, referenceVersion: 0, rollouts: [] }),
      /no rollouts shards given/,
    );
  });

  it(`computeStepAdvantages (reinforce_pp, k1, β ${BETA}): token rewards −β·(log π_old − log π_ref), returns-to-go G_t = R·[t = last] − β Σ_{s≥t} kl_s, whitened over every token; klReward reports mean Σ kl and β times it`, async () => {
    const input = { ...ref(f), step: STEP, phaseIndex: 0, rollouts: [rollouts], rewards: [rewards] };
    await assert.rejects(computeStepAdvantages(input), /phases\.0\.loss\.options\.kl\.inReward is set but no referenceLogprobs entry/);
    const r = await computeStepAdvantages({ ...input, referenceLogprobs: referenceEntry });
    const refs = decodeReferenceLogprobs(await readEntry(f.store, stepPrefix(RUN, STEP), referenceEntry)).map((g) => g.ref_logprobs);

    // by hand: per-token KL, penalised returns, whitening over all tokens (sample std, eps 1e-8)
    const kl = rows.map((x, i) => Array.from(x.behaviour_logprobs, (lp, t) => lp - refs[i]![t]!));
    const G = rows.map((x, i) => {
      const n = x.completion_token_ids.length;
      const g = new Array<number>(n).fill(0);
      let acc = 0;
      for (let t = n - 1; t >= 0; t--) {
        acc += (t === n - 1 ? rewardOf(x) : 0) - BETA * kl[i]![t]!;
        g[t] = acc;
      }
      return g;
    });
    const all = G.flat();
    const mu = all.reduce((a, b) => a + b, 0) / all.length;
    const sd = Math.sqrt(all.reduce((a, b) => a + (b - mu) ** 2, 0) / (all.length - 1));
    const want = G.map((g) => g.map((v) => (v - mu) / (sd + 1e-8)));

    const adv = decodeAdvantages(await readEntry(f.store, stepPrefix(RUN, STEP), r.advantages));
    assert.equal(adv.length, 16);
    const got = adv.map((a) => Array.from(a.token_advantages!));
    assert.ok(largest(got, want) <= 1e-4, `largest |advantage − by hand| ${largest(got, want)}`);
    // without the penalty the whitened returns differ (the KL moves them)
    const plain = G.map((g, i) => g.map(() => rewardOf(rows[i]!)));
    assert.ok(largest(plain, G) > 1e-3);

    const klSums = kl.map((k) => k.reduce((a, b) => a + b, 0));
    const klSumMean = klSums.reduce((a, b) => a + b, 0) / klSums.length;
    assert.ok(r.klReward, 'klReward reported');
    assert.ok(Math.abs(r.klReward.klSumMean - klSumMean) <= 1e-4, `klSumMean ${r.klReward.klSumMean} vs ${klSumMean}`);
    assert.ok(Math.abs(r.klReward.penaltyMean - BETA * klSumMean) <= 1e-5);
  });

  it('the learner with kl.inReward takes ref_logprobs from the artifact: it scores nothing (one update, no tis), and its loss and kl metric equal those of a learner that scores the reference itself', async () => {
    const adv = await computeStepAdvantages({
      ...ref(f),
      step: STEP,
      phaseIndex: 0,
      rollouts: [rollouts],
      rewards: [rewards],
      referenceLogprobs: referenceEntry,
    });
    const input = {
      ...ref(f),
      step: STEP,
      phaseIndex: 0,
      phase: 'rl' as const,
      lr: 1e-2,
      referenceVersion: 0,
      promptOffset: 0,
      batchSize: 4,
      rollouts: [rollouts],
      advantages: adv.advantages,
    };
    const score = ModelEngine.prototype.score;
    let calls = 0;
    ModelEngine.prototype.score = function (this: ModelEngine, ...args: Parameters<typeof score>) {
      calls++;
      return score.apply(this, args);
    };
    try {
      const fromArtifact = await learnerUpdate({ ...input, referenceLogprobs: referenceEntry });
      assert.equal(calls, 0, 'score calls with the artifact');
      const scoredItself = await learnerUpdate(input);
      assert.ok(calls > 0, 'without the artifact the learner scores the reference');
      assert.equal(fromArtifact.sequences, 16);
      assert.ok(fromArtifact.metrics.kl! > 0.05, `kl ${fromArtifact.metrics.kl}`);
      assert.ok(
        Math.abs(fromArtifact.metrics.kl! - scoredItself.metrics.kl!) <= 1e-5,
        `kl ${fromArtifact.metrics.kl} vs ${scoredItself.metrics.kl}`,
      );
      assert.ok(
        Math.abs(fromArtifact.metrics.loss! - scoredItself.metrics.loss!) <= 1e-6,
        `loss ${fromArtifact.metrics.loss} vs ${scoredItself.metrics.loss}`,
      );
    } finally {
      ModelEngine.prototype.score = score;
    }
  });

  it('a committed step returns its committed reference logprobs without scoring', async () => {
    await commit(f.store, stepPrefix(RUN, STEP), [rollouts, rewards, referenceEntry]);
    const r = await scoreReferenceLogprobs({ ...ref(f), step: STEP, phaseIndex: 0, referenceVersion: 0, rollouts: [] });
    assert.equal(r.referenceLogprobs.sha256, referenceEntry.sha256);
    assert.equal(r.samples, 16);
  });
});
