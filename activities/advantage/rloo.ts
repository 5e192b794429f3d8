/**
 * RLOO: REINFORCE with a leave-one-out baseline (Kool et al. 2019, "Buy 4 REINFORCE Samples, Get
 * a Baseline for Free!"; for LLMs, Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE
 * Style Optimization for Learning from Human Feedback in LLMs").
 *
 * For the G completions of one prompt, each is judged against the mean of the others:
 *   A_i = r_i - (1 / (G-1)) * sum_{j != i} r_j  =  G / (G-1) * (r_i - mean(r)),
 * an unbiased baseline because it does not depend on sample i. No std division. A single-sample
 * group has no peers: its advantage is 0 (and it is counted in `singletonGroups`).
 */
import { z } from '../common/config.js';
import { finish, groupOptionsShape, groupRewards, groupSamples, isFlat, scalarOutput, validateSamples } from './batch.js';
import type { AdvantageBatch, AdvantageResult, SampleAdvantage } from './types.js';

export const rlooOptionsSchema = z.strictObject({
  estimator: z.literal('rloo'),
  ...groupOptionsShape,
});
export type RlooOptions = z.output<typeof rlooOptionsSchema>;

export function rloo(batch: AdvantageBatch, options: RlooOptions): AdvantageResult {
  const samples = batch.samples;
  validateSamples(samples);
  const groups = groupSamples(samples);
  const outputs: SampleAdvantage[] = new Array(samples.length);
  for (const g of groups) {
    const rewards = groupRewards(samples, g);
    const keep = !(options.dropZeroVarianceGroups && isFlat(rewards));
    const n = rewards.length;
    const total = rewards.reduce((a, b) => a + b, 0);
    for (const i of g.indices) {
      const s = samples[i]!;
      const advantage = n < 2 ? 0 : s.reward - (total - s.reward) / (n - 1);
      outputs[i] = scalarOutput(s, advantage, keep);
    }
  }
  return finish('rloo', samples, groups, outputs);
}
