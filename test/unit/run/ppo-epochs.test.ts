/**
 * Several updates per rl step (the phase's ppoEpochs × miniBatches), through learnerUpdate on a tiny
 * run (llama 32x1, one-digit addition, T = 0.7) in temp file:// stores: the later updates see
 * ratios away from 1 and the clip range binds; the checkpoint is the state after every update,
 * bitwise reproducible; the mini-batch order is drawn from the seed; a token mean is over each
 * mini-batch's own tokens.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { epochOrder, learnerUpdate } from '../../../activities/learner/learner-update.js';
import { loadTrainState, writeCheckpoint } from '../../../activities/checkpoint/checkpoint.js';
import { releaseEngines } from '../../../activities/rollout/policy.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import type { LearnerInput, LearnerResult } from '../../../activities/run/types.js';
import { checkpointPrefix, MODEL_NAME, OPTIMIZER_NAME } from '../../../activities/store/keys.js';
import { commit, type ManifestEntry } from '../../../activities/store/manifest.js';
import { runFixture, type RunFixture } from './fixture.js';
import { completionLogprobs, goldAndWrong, writeRlStep, type Sample } from './rl-step.js';

const T = 0.7;
/** Logprobs of the decode, score and train graphs agree to this on the same weights and tokens. */
const PARITY = 1e-4;

type RlOver = { ppoEpochs?: number; miniBatches?: number; lr?: number; microBatchSize?: number; seed?: number };

const config = (o: RlOver = {}): RunConfigInput => ({
  name: 'ppo',
  seed: o.seed ?? 3,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  model: { hidden: 32, layers: 1, heads: 2 },
  phases: [
    {
      kind: 'rl',
      steps: 1,
      promptsPerStep: 4,
      groupSize: 2,
      lr: o.lr ?? 5e-2,
      sampling: { temperature: T },
      ppoEpochs: o.ppoEpochs ?? 1,
      miniBatches: o.miniBatches ?? 1,
      loss: { name: 'clipped_surrogate', options: { clipLow: 0.2, clipHigh: 0.2, entropyMetric: false } },
    },
  ],
  learner: { microBatchSize: o.microBatchSize ?? 2 },
  engine: { threads: 1 },
});

const fixtures: RunFixture[] = [];
after(async () => {
  await releaseEngines();
  for (const f of fixtures) await f.teardown();
});

let n = 0;
/**
 * A run of `config(o)` whose checkpoint 0 is `weightsOf`'s (default its own seeded weights) and
 * whose step 0 holds `xs` with their on-policy behaviour logprobs (or `behaviour`); one learner update.
 */
async function step(
  o: RlOver,
  batch: { xs: (f: RunFixture) => Sample[]; behaviour?: number[][]; advantageLr?: number },
  weightsOf?: RunFixture,
): Promise<{ f: RunFixture; r: LearnerResult; runId: string }> {
  const runId = `ppo-${n++}`;
  const f = await runFixture(runId, config(o), { checkpoint0: !weightsOf });
  fixtures.push(f);
  if (weightsOf) await commit(f.store, checkpointPrefix(runId, 0), await writeCheckpoint(f.store, runId, 0, weightsOf.state!));
  const xs = batch.xs(weightsOf ?? f);
  const behaviour = batch.behaviour ?? (await completionLogprobs(f.store, runId, f.run, xs, T));
  const e = await writeRlStep(f.store, runId, f.run, xs, behaviour);
  const input: LearnerInput = {
    storeUri: f.storeUri,
    runId,
    step: 0,
    phaseIndex: 0,
    phase: 'rl',
    lr: batch.advantageLr ?? o.lr ?? 5e-2,
    referenceVersion: null,
    promptOffset: 0,
    batchSize: 4,
    rollouts: e.rollouts,
    advantages: e.advantages,
  };
  return { f, runId, r: await learnerUpdate(input) };
}

const sha = (entries: ManifestEntry[], name = MODEL_NAME) => entries.find((e) => e.name === name)!.sha256;
/** 4 prompts × (gold A = +2, wrong A = −2): large advantages, so that a large lr moves the ratios far. */
const clipBatch = { xs: (f: RunFixture) => goldAndWrong(f.run, 4, 2) };

describe('rl: ppoEpochs and miniBatches', () => {
  it('one update per step (the default): ratio 1, clip_frac 0, the rollout/learner mismatch from that update', async () => {
    const { r } = await step({}, clipBatch);
    assert.equal(r.metrics.updates, 1);
    assert.ok(Math.abs(r.metrics.ratio_mean! - 1) <= PARITY, `ratio_mean ${r.metrics.ratio_mean}`);
    assert.equal(r.metrics.clip_frac, 0);
    assert.ok(r.metrics.mismatch_logprob_diff! <= PARITY, `mismatch_logprob_diff ${r.metrics.mismatch_logprob_diff}`);
    assert.equal(r.metrics.clip_frac_last_epoch, undefined, 'one epoch: no last-epoch metrics');
  });

  it("ppoEpochs 2 × miniBatches 2 at lr 5e-2, A = ±2: 4 AdamW updates, the last epoch's ratio_mean is not 1 and its clip fraction is above 0", async () => {
    const { f, r, runId } = await step({ ppoEpochs: 2, miniBatches: 2 }, clipBatch);
    assert.equal(r.metrics.updates, 4);
    assert.equal(r.sequences, 4 * 4, 'each update trains on one mini-batch of 4 of the 8 rows');
    assert.equal(r.microBatches, 4 * 2, 'each mini-batch of 4 rows is 2 micro-batches of 2');
    assert.ok(Math.abs(r.metrics.ratio_mean_last_epoch! - 1) > 1e-2, `ratio_mean of the last epoch ${r.metrics.ratio_mean_last_epoch}`);
    assert.ok(r.metrics.clip_frac_last_epoch! > 0, `clip_frac of the last epoch ${r.metrics.clip_frac_last_epoch}`);
    assert.ok(
      r.metrics.clip_frac! > 0 && r.metrics.clip_frac! <= r.metrics.clip_frac_last_epoch!,
      `mean clip_frac ${r.metrics.clip_frac} (the first update is on-policy, unclipped)`,
    );
    // scored once before the first update: the batch is on-policy
    assert.ok(r.metrics.mismatch_logprob_diff! <= PARITY, `mismatch_logprob_diff ${r.metrics.mismatch_logprob_diff}`);
    await commit(f.store, checkpointPrefix(runId, 1), r.checkpoint);
    assert.equal((await loadTrainState(f.store, runId, 1)).step, 4, 'checkpoint 1 is the state after the 4 updates');
  });

  it('is deterministic: the same checkpoint, batch and seed in two fresh runs give bitwise the same model and optimizer', async () => {
    const a = await step({ ppoEpochs: 2, miniBatches: 2 }, clipBatch);
    const b = await step({ ppoEpochs: 2, miniBatches: 2 }, clipBatch, a.f);
    assert.equal(sha(b.r.checkpoint), sha(a.r.checkpoint));
    assert.equal(sha(b.r.checkpoint, OPTIMIZER_NAME), sha(a.r.checkpoint, OPTIMIZER_NAME));
  });

  it('the mini-batch order comes from the seed: seeds 3 and 4 on the same weights and batch differ with 2 mini-batches, agree with 1', async () => {
    const three = await step({ ppoEpochs: 2, miniBatches: 2 }, clipBatch);
    const four = await step({ ppoEpochs: 2, miniBatches: 2, seed: 4 }, clipBatch, three.f);
    assert.notEqual(sha(four.r.checkpoint), sha(three.r.checkpoint));
    const oneA = await step({ ppoEpochs: 2, miniBatches: 1 }, clipBatch, three.f);
    const oneB = await step({ ppoEpochs: 2, miniBatches: 1, seed: 4 }, clipBatch, three.f);
    assert.equal(sha(oneA.r.checkpoint), sha(oneB.r.checkpoint), 'one mini-batch per epoch: no order to draw');
    // the order itself: a permutation, a function of (seed, step, epoch)
    const rows = Array.from({ length: 8 }, (_, i) => i);
    const o = epochOrder(rows, 3, 0, 0);
    assert.deepEqual([...o].sort(), rows);
    assert.deepEqual(epochOrder(rows, 3, 0, 0), o);
    assert.notDeepEqual(epochOrder(rows, 4, 0, 0), o);
    assert.notDeepEqual(epochOrder(rows, 3, 0, 1), o);
    assert.notDeepEqual(epochOrder(rows, 3, 1, 0), o);
  });

  it("a token mean is over each mini-batch's own tokens: A = 1 everywhere, rows of unequal lengths, 2 mini-batches × 1-row micro-batches, lr 0 → pg_loss −1", async () => {
    const ones = { xs: (f: RunFixture) => goldAndWrong(f.run, 4, 1, true).map((x) => ({ ...x, advantage: 1 })), advantageLr: 0 };
    const { r } = await step({ miniBatches: 2, microBatchSize: 1, lr: 1e-3 }, ones);
    assert.equal(r.metrics.updates, 2);
    assert.equal(r.microBatches, 8);
    // the batch's count would give −½; the micro-batch's own, −(their mean of tokens_k / tokens_mini · 4)
    assert.ok(Math.abs(r.metrics.pg_loss! + 1) <= 1e-3, `pg_loss ${r.metrics.pg_loss}`);
  });

  it('refuses bad values naming the field: ppoEpochs 0, miniBatches 0, more mini-batches than samples', () => {
    const bad = (o: Record<string, unknown>) => () => parseRunConfig({ ...config(), phases: [{ ...config().phases![0]!, ...o }] });
    assert.throws(bad({ ppoEpochs: 0 }), /phases\.0\.ppoEpochs/);
    assert.throws(bad({ miniBatches: 0 }), /phases\.0\.miniBatches/);
    assert.throws(bad({ miniBatches: 9 }), /phases\.0\.miniBatches: 9 mini-batches but a step has only 8 samples/);
    assert.equal((parseRunConfig(config()).phases[0] as { ppoEpochs: number }).ppoEpochs, 1);
  });
});
