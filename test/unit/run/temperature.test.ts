/**
 * The sampling temperature end to end, on one batch of a tiny run (llama 32x1, one-digit addition)
 * in a temp file:// store: rolloutShard samples at T = 0.7 and stores the logprobs of the
 * distribution it sampled from; the learner, fed the phase's temperature, computes the same
 * logprobs before its update (importance ratio 1, as TRL and verl have it).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { learnerUpdate } from '../../../activities/learner/learner-update.js';
import { loadWeights } from '../../../activities/checkpoint/checkpoint.js';
import { ModelEngine } from '../../../activities/model/engine.js';
import { releaseEngines } from '../../../activities/rollout/policy.js';
import { rolloutShard } from '../../../activities/rollout/rollout-shard.js';
import type { RunConfigInput } from '../../../activities/run/config.js';
import { ADVANTAGES_NAME, stepPrefix } from '../../../activities/store/keys.js';
import { readEntry, writeArtifact, type ManifestEntry } from '../../../activities/store/manifest.js';
import { ADVANTAGES, decodeRollouts, encodeAdvantages, type RolloutsRow } from '../../../activities/store/schemas.js';
import { firstShardInput, runFixture, type RunFixture } from './fixture.js';

const RUN = 'temperature';
const T = 0.7;
/** Logprobs of the decode, score and train graphs agree to this on the same weights and tokens. */
const PARITY = 1e-4;

const config = (): RunConfigInput => ({
  name: 'temperature',
  seed: 11,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  // initStd 0.5: peaked next-token distributions, so that T = 0.7 and T = 1 give clearly different logprobs
  model: { hidden: 32, layers: 1, heads: 2, initStd: 0.5 },
  phases: [
    {
      kind: 'rl',
      steps: 1,
      promptsPerStep: 4,
      groupSize: 4,
      lr: 1e-2,
      sampling: { temperature: T },
      loss: { name: 'clipped_surrogate', options: { kl: { beta: 0.04 } } },
    },
  ],
  engine: { threads: 1 },
});

let f: RunFixture;
let rows: RolloutsRow[];
let rollouts: ManifestEntry;
before(async () => {
  f = await runFixture(RUN, config(), { checkpoint0: true });
  const r = await rolloutShard(firstShardInput(f.storeUri, RUN, 4));
  rollouts = r.rollouts;
  rows = decodeRollouts(await readEntry(f.store, stepPrefix(RUN, 0), rollouts));
});
after(async () => {
  await releaseEngines();
  await f.teardown();
});

/** Largest |behaviour logprob − score graph logprob| over every completion token, scored at `temperature`. */
async function largestDifference(temperature: number): Promise<number> {
  const engine = new ModelEngine(f.run.model, { threads: 1 });
  try {
    engine.setWeights(await loadWeights(f.store, RUN, 0), '0');
    let worst = 0;
    for (const row of rows) {
      const ids = [...row.prompt_token_ids, ...row.completion_token_ids];
      const { logprobs } = await engine.score({ ids: [ids] }, { entropy: false, temperature });
      row.behaviour_logprobs.forEach((lp, j) => {
        worst = Math.max(worst, Math.abs(lp - logprobs[row.prompt_token_ids.length + j]!));
      });
    }
    return worst;
  } finally {
    await engine.close();
  }
}

describe('sampling temperature', () => {
  it(`the rollout's behaviour logprobs are log softmax(logits / ${T}): the score graph at T = ${T} gives them within ${PARITY}, at T = 1 not within 1e-2`, async () => {
    assert.equal(rows.length, 16);
    assert.ok(rows.every((r) => r.completion_token_ids.length > 0));
    const atT = await largestDifference(T);
    const atOne = await largestDifference(1);
    assert.ok(atT <= PARITY, `largest difference at T = ${T}: ${atT}`);
    assert.ok(atOne > 1e-2, `at T = 1 (the logprobs a learner without the temperature computes) the largest difference is ${atOne}`);
  });

  it(`the learner of a T = ${T} phase recomputes the rollout's logprobs before its update: mean |Δlogprob| below ${PARITY}, ratio 1, KL to the same weights 0`, async () => {
    const advantages = await writeArtifact(f.store, stepPrefix(RUN, 0), {
      name: ADVANTAGES_NAME,
      schema: ADVANTAGES,
      bytes: encodeAdvantages(
        rows.map((r) => ({
          run_id: RUN,
          step: 0,
          prompt_id: r.prompt_id,
          sample_id: r.sample_id,
          advantage: r.sample_id % 2 === 0 ? 1 : -1,
          loss_mask: null,
        })),
      ),
    });
    const r = await learnerUpdate({
      storeUri: f.storeUri,
      runId: RUN,
      step: 0,
      phaseIndex: 0,
      phase: 'rl',
      lr: 1e-2,
      referenceVersion: 0,
      promptOffset: 0,
      batchSize: 4,
      rollouts: [rollouts],
      advantages,
    });
    assert.equal(r.sequences, 16);
    assert.ok(r.metrics.logprob_diff! <= PARITY, `logprob_diff ${r.metrics.logprob_diff}`);
    assert.ok(Math.abs(r.metrics.ratio_mean! - 1) <= PARITY, `ratio_mean ${r.metrics.ratio_mean}`);
    assert.ok(Math.abs(r.metrics.approx_kl!) <= 1e-6, `approx_kl ${r.metrics.approx_kl}`);
    assert.ok(Math.abs(r.metrics.kl!) <= 1e-6, `kl to the reference (checkpoint 0, scored at the same temperature) ${r.metrics.kl}`);
  });
});
