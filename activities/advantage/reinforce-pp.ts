/**
 * REINFORCE++ (Hu et al. 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large
 * Language Models"): no critic, no per-prompt baseline; token-level returns normalised with the
 * mean and std of the whole batch ("global advantage normalisation"), which the paper argues is
 * more stable than GRPO's per-prompt normalisation. Its `baseline` variant first subtracts the
 * prompt group's mean reward, then normalises over the batch.
 *
 * Token rewards. A sample's `reward` is its trajectory total; `processRewards` (when given) say
 * how much of it arrives at each token, and the remainder arrives at the last token:
 *   r_t = p_t + [t = L-1] * (R - sum_t p_t)          (plain)
 *   r_t = p_t + [t = L-1] * (R - mean_group(R) - sum_t p_t)   (baseline variant)
 * so with gamma = 1 the return at token 0 is always R (resp. R - mean_group(R)): process rewards
 * redistribute credit in time, they never change a trajectory's total. Returns-to-go:
 *   G_t = r_t + gamma * G_{t+1},    A_t = (G_t - mu) / (sigma + eps),
 * with mu, sigma over every kept token (`normaliseOver: tokens`, as OpenRLHF) or over the
 * per-sample returns G_0 (`samples`). REINFORCE++ keeps the KL out of the loss and folds it into
 * the token rewards, r_t − β·kl_t, before the returns: in a run that is the rl phase's
 * `loss.options.kl.inReward`, which makes the advantage activity (step-advantages.ts) apply
 * `klPenalisedRewards` (activities/learner/kl-reward.ts) to the samples' processRewards before this
 * estimator runs; the estimator itself sees only rewards.
 */
import { z } from '../common/config.js';
import {
  finish,
  groupOptionsShape,
  groupRewards,
  groupSamples,
  isFlat,
  mean,
  scalarOutput,
  stdModeSchema,
  tokenOutput,
  validateSamples,
} from './batch.js';
import { AdvantageInputError, type AdvantageBatch, type AdvantageResult, type AdvantageSample, type SampleAdvantage } from './types.js';

const commonShape = {
  /**
   * Population over which the normalising mean and std are taken. `tokens`: every kept token's
   * return, so long completions weigh more (OpenRLHF's REINFORCE++); needs `completionLength`
   * on every sample. `samples`: one return (G_0) per kept sample.
   */
  normaliseOver: z.enum(['tokens', 'samples']).default('tokens'),
  /** Discount of returns-to-go; 1 (no discount) as in the paper for LLM completions. */
  gamma: z.number().gt(0).lte(1).default(1),
  /** Population or sample std; see `stdModeSchema` in batch.ts. */
  std: stdModeSchema.default('sample'),
  /** Added to the std before dividing (OpenRLHF's whitening uses 1e-8). */
  eps: z.number().nonnegative().default(1e-8),
  ...groupOptionsShape,
};

export const reinforcePpOptionsSchema = z.strictObject({ estimator: z.literal('reinforce_pp'), ...commonShape });
export const reinforcePpBaselineOptionsSchema = z.strictObject({ estimator: z.literal('reinforce_pp_baseline'), ...commonShape });
export type ReinforcePpOptions = z.output<typeof reinforcePpOptionsSchema>;
export type ReinforcePpBaselineOptions = z.output<typeof reinforcePpBaselineOptionsSchema>;

/** Returns-to-go of one sample given the (possibly group-centred) total it must sum to. */
function returnsToGo(s: AdvantageSample, total: number, gamma: number): Float64Array {
  const len = s.completionLength!;
  const g = new Float64Array(len);
  if (len === 0) return g;
  const p = s.processRewards;
  let processSum = 0;
  if (p) for (let t = 0; t < len; t++) processSum += p[t]!;
  let acc = 0;
  for (let t = len - 1; t >= 0; t--) {
    const r = (p ? p[t]! : 0) + (t === len - 1 ? total - processSum : 0);
    acc = r + gamma * acc;
    g[t] = acc;
  }
  return g;
}

function estimate(batch: AdvantageBatch, options: ReinforcePpOptions | ReinforcePpBaselineOptions, withBaseline: boolean): AdvantageResult {
  const samples = batch.samples;
  const perToken = (s: AdvantageSample) => s.processRewards !== undefined || options.gamma < 1;
  validateSamples(samples);
  for (const s of samples) {
    if (s.completionLength === undefined && (options.normaliseOver === 'tokens' || perToken(s))) {
      throw new AdvantageInputError(
        `sample "${s.sampleId}" (group "${s.groupId}") has no completionLength: ${options.estimator} with ` +
          `normaliseOver "${options.normaliseOver}" and gamma ${options.gamma} needs it; give it, or use normaliseOver "samples" with gamma 1`,
      );
    }
  }
  const groups = groupSamples(samples);
  const keep = new Array<boolean>(samples.length).fill(true);
  const totals = samples.map((s) => s.reward);
  for (const g of groups) {
    const rewards = groupRewards(samples, g);
    const flat = options.dropZeroVarianceGroups && isFlat(rewards);
    const m = mean(rewards);
    for (const i of g.indices) {
      if (flat) keep[i] = false;
      if (withBaseline) totals[i] = samples[i]!.reward - m;
    }
  }
  // Returns per sample (null: scalar sample whose every token's return is its total).
  const returns = samples.map((s, i) => (perToken(s) ? returnsToGo(s, totals[i]!, options.gamma) : null));

  // Normalising statistics over kept samples (their G_0) or kept tokens.
  let n = 0;
  let sum = 0;
  const forEachValue = (fn: (v: number) => void) => {
    samples.forEach((s, i) => {
      if (!keep[i]) return;
      const g = returns[i];
      if (options.normaliseOver === 'samples') fn(g && g.length > 0 ? g[0]! : totals[i]!);
      else if (g) for (const v of g) fn(v);
      else for (let t = 0; t < s.completionLength!; t++) fn(totals[i]!);
    });
  };
  forEachValue((v) => {
    sum += v;
    n++;
  });
  const mu = n ? sum / n : 0;
  let ss = 0;
  forEachValue((v) => {
    ss += (v - mu) ** 2;
  });
  const sigma = options.std === 'sample' ? (n > 1 ? Math.sqrt(ss / (n - 1)) : 0) : n ? Math.sqrt(ss / n) : 0;
  const denom = sigma + options.eps;

  const outputs: SampleAdvantage[] = samples.map((s, i) => {
    const g = returns[i];
    if (!g) return scalarOutput(s, (totals[i]! - mu) / denom, keep[i]!);
    const a = new Float64Array(g.length);
    for (let t = 0; t < g.length; t++) a[t] = (g[t]! - mu) / denom;
    return tokenOutput(s, a, new Uint8Array(g.length).fill(1), keep[i]!);
  });
  return finish(options.estimator, samples, groups, outputs);
}

/** REINFORCE++: batch-normalised returns, no group baseline. */
export function reinforcePp(batch: AdvantageBatch, options: ReinforcePpOptions): AdvantageResult {
  return estimate(batch, options, false);
}

/** REINFORCE++ with group baseline: subtract the prompt group's mean reward, then batch-normalise. */
export function reinforcePpBaseline(batch: AdvantageBatch, options: ReinforcePpBaselineOptions): AdvantageResult {
  return estimate(batch, options, true);
}
