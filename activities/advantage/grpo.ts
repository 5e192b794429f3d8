/**
 * GRPO and Dr.GRPO: the group-mean baseline family.
 *
 * GRPO (Shao et al. 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
 * Language Models"): for the G completions of one prompt with rewards r_1..r_G,
 *   A_i = (r_i - mean(r)) / (std(r) + eps),
 * the same advantage on every token of completion i (outcome supervision).
 *
 * Dr.GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective"; the
 * estimator OPTIAGENT trains with): A_i = r_i - mean(r), no std division (it over-weights
 * prompts that are too easy or too hard), and no per-sequence length normalisation in the loss
 * (exported as `loss.lengthNormalisation: false` for the learner).
 */
import { z } from '../common/config.js';
import { finish, groupMeanAdvantages, groupOptionsShape, scaledGroupOptionsShape } from './batch.js';
import type { AdvantageBatch, AdvantageResult } from './types.js';

export const grpoOptionsSchema = z.strictObject({
  estimator: z.literal('grpo'),
  ...scaledGroupOptionsShape,
  ...groupOptionsShape,
});
export type GrpoOptions = z.output<typeof grpoOptionsSchema>;

export const drGrpoOptionsSchema = z.strictObject({
  estimator: z.literal('dr_grpo'),
  ...groupOptionsShape,
});
export type DrGrpoOptions = z.output<typeof drGrpoOptionsSchema>;

/** GRPO advantages (DeepSeekMath). One scalar per sample, broadcast over its tokens. */
export function grpo(batch: AdvantageBatch, options: GrpoOptions): AdvantageResult {
  const { outputs, groups } = groupMeanAdvantages(batch.samples, options.scale, options.std, options.eps, options.dropZeroVarianceGroups);
  return finish('grpo', batch.samples, groups, outputs);
}

/** Dr.GRPO advantages: r - group mean, and a loss without per-sequence length normalisation. */
export function drGrpo(batch: AdvantageBatch, options: DrGrpoOptions): AdvantageResult {
  const { outputs, groups } = groupMeanAdvantages(batch.samples, 'none', 'sample', 0, options.dropZeroVarianceGroups);
  return finish('dr_grpo', batch.samples, groups, outputs);
}
