/**
 * Rollout/learner mismatch through learnerUpdate on a tiny run (llama 32x1, one-digit addition,
 * T = 0.7) in temp file:// stores. The behaviour logprobs of a batch are the learner's own minus
 * δ = 0.3 on every completion token, as if a different engine (another kernel, quantised weights)
 * had computed them: the step reports the mismatch (mean |Δlogprob| = δ, k3 KL = e^δ − 1 − δ),
 * truncated importance sampling re-weights the surrogate by min(e^δ, C), and without it the PPO
 * ratio starts at e^δ and clips. A batch whose behaviour logprobs are absurd (−200) still gives a
 * finite loss and gradient, and the clamped tokens are counted.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { learnerUpdate } from '../../../activities/learner/learner-update.js';
import { releaseEngines } from '../../../activities/rollout/policy.js';
import type { RunConfigInput } from '../../../activities/run/config.js';
import type { LearnerResult } from '../../../activities/run/types.js';
import { MODEL_NAME } from '../../../activities/store/keys.js';
import type { ManifestEntry } from '../../../activities/store/manifest.js';
import { runFixture, type RunFixture } from './fixture.js';
import { completionLogprobs, goldAndWrong, writeRlStep } from './rl-step.js';

const T = 0.7;
const PARITY = 1e-4;
const DELTA = 0.3;

const config = (tis: { cap: number } | null, ppoEpochs = 1): RunConfigInput => ({
  name: 'tis',
  seed: 5,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  model: { hidden: 32, layers: 1, heads: 2 },
  phases: [
    {
      kind: 'rl',
      steps: 1,
      promptsPerStep: 4,
      groupSize: 2,
      lr: 1e-2,
      sampling: { temperature: T },
      ppoEpochs,
      loss: { name: 'clipped_surrogate', options: { clipLow: 0.2, clipHigh: 0.2, tis, entropyMetric: false } },
    },
  ],
  learner: { microBatchSize: 4 },
  engine: { threads: 1 },
});

const fixtures: RunFixture[] = [];
after(async () => {
  await releaseEngines();
  for (const f of fixtures) await f.teardown();
});

let n = 0;
/** One learner update of a fresh run (same seed: same checkpoint 0 and batch) whose behaviour logprobs are the on-policy ones mapped by `perturb`. */
async function update(
  tis: { cap: number } | null,
  perturb: (lp: number, row: number, j: number) => number,
  ppoEpochs = 1,
): Promise<LearnerResult> {
  const runId = `tis-${n++}`;
  const f = await runFixture(runId, config(tis, ppoEpochs), { checkpoint0: true });
  fixtures.push(f);
  // gold A = +1, wrong A = −0.5: a surrogate that is not 0 at ratio 1
  const xs = goldAndWrong(f.run, 4, 1).map((x) => (x.advantage < 0 ? { ...x, advantage: -0.5 } : x));
  const onPolicy = await completionLogprobs(f.store, runId, f.run, xs, T);
  const e = await writeRlStep(
    f.store,
    runId,
    f.run,
    xs,
    onPolicy.map((row, i) => row.map((lp, j) => perturb(lp, i, j))),
  );
  return learnerUpdate({
    storeUri: f.storeUri,
    runId,
    step: 0,
    phaseIndex: 0,
    phase: 'rl',
    lr: 1e-2,
    referenceVersion: null,
    promptOffset: 0,
    batchSize: 4,
    rollouts: e.rollouts,
    advantages: e.advantages,
  });
}

const shifted = (lp: number) => lp - DELTA;
const sha = (entries: ManifestEntry[]) => entries.find((e) => e.name === MODEL_NAME)!.sha256;
const near = (got: number | undefined, want: number, tol: number, what: string) =>
  assert.ok(got !== undefined && Math.abs(got - want) <= tol, `${what}: ${got}, expected ${want} ± ${tol}`);

describe('rollout/learner mismatch and truncated importance sampling', () => {
  it(`behaviour logprobs δ = ${DELTA} below the learner's: mismatch_logprob_diff = δ and mismatch_kl = e^δ − 1 − δ = ${(Math.exp(DELTA) - 1 - DELTA).toFixed(4)}, with and without TIS`, async () => {
    for (const tis of [{ cap: 2 }, null]) {
      const r = await update(tis, shifted);
      near(r.metrics.mismatch_logprob_diff, DELTA, PARITY, `mismatch_logprob_diff (tis ${JSON.stringify(tis)})`);
      near(r.metrics.mismatch_kl, Math.exp(DELTA) - 1 - DELTA, PARITY, `mismatch_kl (tis ${JSON.stringify(tis)})`);
    }
  });

  it("TIS weight min(π_learner/π_rollout, C): capped at C = 1.2 (every token), e^δ under C = 2; the surrogate scales by it; the PPO ratio is the learner's own, 1", async () => {
    const base = await update(null, (lp) => lp); // exact rollout engine, no TIS: pg_loss = −token mean of A
    near(base.metrics.pg_loss, -0.25, 1e-4, 'pg_loss of the exact engine (−(1 − 0.5)/2, equal lengths)');
    const capped = await update({ cap: 1.2 }, shifted);
    near(capped.metrics.tis_weight_mean, 1.2, 1e-6, 'tis_weight_mean at C = 1.2');
    assert.equal(capped.metrics.tis_clip_frac, 1, 'every token capped');
    near(capped.metrics.ratio_mean, 1, PARITY, "ratio_mean (old = the learner's logprobs)");
    assert.equal(capped.metrics.clip_frac, 0);
    near(capped.metrics.pg_loss, 1.2 * base.metrics.pg_loss!, 1e-4, "pg_loss = C × the exact engine's");

    const under = await update({ cap: 2 }, shifted);
    near(under.metrics.tis_weight_mean, Math.exp(DELTA), 1e-4, 'tis_weight_mean at C = 2');
    assert.equal(under.metrics.tis_clip_frac, 0);
    near(under.metrics.pg_loss, Math.exp(DELTA) * base.metrics.pg_loss!, 1e-4, "pg_loss = e^δ × the exact engine's");
  });

  it('without TIS the perturbed batch trains differently: the ratio starts at e^δ and the clip range (1.2) binds', async () => {
    const withTis = await update({ cap: 2 }, shifted);
    const without = await update(null, shifted);
    near(without.metrics.ratio_mean, Math.exp(DELTA), 1e-3, 'ratio_mean without TIS');
    assert.ok(without.metrics.clip_frac! > 0, `clip_frac ${without.metrics.clip_frac}`);
    assert.equal(without.metrics.tis_weight_mean, undefined);
    assert.notEqual(sha(without.checkpoint), sha(withTis.checkpoint));
  });

  it("TIS with ppoEpochs 2: the learner's logprobs, scored once, are the ratio's old for both epochs; the weight stays min(e^δ, C)", async () => {
    const r = await update({ cap: 1.2 }, shifted, 2);
    assert.equal(r.metrics.updates, 2);
    near(r.metrics.tis_weight_mean, 1.2, 1e-6, 'tis_weight_mean');
    near(r.metrics.mismatch_logprob_diff, DELTA, PARITY, 'mismatch_logprob_diff');
    assert.ok(Math.abs(r.metrics.ratio_mean_last_epoch! - 1) > 1e-4, `the second update's ratio moved: ${r.metrics.ratio_mean_last_epoch}`);
  });

  it('behaviour logprobs of −200 on every other token (a broken engine): finite loss and gradient, the update applied, log_ratio_clamped counts those tokens', async () => {
    const r = await update(null, (lp, _i, j) => (j % 2 === 0 ? -200 : lp));
    assert.ok(
      Number.isFinite(r.metrics.loss) && Number.isFinite(r.metrics.grad_norm),
      `loss ${r.metrics.loss}, grad_norm ${r.metrics.grad_norm}`,
    );
    assert.equal(r.metrics.skipped, 0, 'the gradient is finite: the update is applied');
    near(r.metrics.log_ratio_clamped, 2 / 3, 1e-6, 'log_ratio_clamped (tokens 0 and 2 of every 3-token completion)');
    assert.ok(
      r.metrics.mismatch_kl! <= 10 && Number.isFinite(r.metrics.mismatch_kl),
      `mismatch_kl ${r.metrics.mismatch_kl} (k3 clamped at 10 per token)`,
    );
  });
});
