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
import {
  finish,
  groupOptionsShape,
  groupRewards,
  groupSamples,
  isFlat,
  mean,
  scalarOutput,
  std,
  stdModeSchema,
  validateSamples,
} from './batch.js';
import type { AdvantageBatch, AdvantageResult, SampleAdvantage } from './types.js';

export const grpoOptionsSchema = z.strictObject({
  estimator: z.literal('grpo'),
  /**
   * What the centred reward is divided by. `group`: the std of the prompt's own rewards
   * (DeepSeekMath GRPO). `batch`: the std of all rewards in the batch — keeps the group-mean
   * baseline but stops easy and hard prompts from being up-weighted (the "group mean, batch std"
   * recipe of Liu et al. 2025, "Part I: Tricks or Traps? A Deep Dive into RL for LLM Reasoning";
   * TRL's `scale_rewards="batch"`). `none`: no division (as Dr.GRPO).
   */
  scale: z.enum(['group', 'batch', 'none']).default('group'),
  /** Population or sample std; see `stdModeSchema` in batch.ts. Default `sample`, as TRL and verl. */
  std: stdModeSchema.default('sample'),
  /** Added to the std before dividing, so zero-variance groups give 0 rather than NaN (verl's 1e-6). */
  eps: z.number().nonnegative().default(1e-6),
  ...groupOptionsShape,
});
export type GrpoOptions = z.output<typeof grpoOptionsSchema>;

export const drGrpoOptionsSchema = z.strictObject({
  estimator: z.literal('dr_grpo'),
  ...groupOptionsShape,
});
export type DrGrpoOptions = z.output<typeof drGrpoOptionsSchema>;

/** Group-mean-baseline advantages with the given scaling; shared by GRPO and Dr.GRPO. */
function groupMeanAdvantages(
  batch: AdvantageBatch,
  scale: 'group' | 'batch' | 'none',
  stdMode: 'sample' | 'population',
  eps: number,
  dropFlat: boolean,
): { outputs: SampleAdvantage[]; groups: ReturnType<typeof groupSamples> } {
  const samples = batch.samples;
  validateSamples(samples);
  const groups = groupSamples(samples);
  const keepGroup = groups.map((g) => !(dropFlat && isFlat(groupRewards(samples, g))));
  let batchStd = 0;
  if (scale === 'batch') {
    const all: number[] = [];
    groups.forEach((g, k) => {
      if (keepGroup[k]) for (const i of g.indices) all.push(samples[i]!.reward);
    });
    batchStd = std(all, stdMode);
  }
  const outputs: SampleAdvantage[] = new Array(samples.length);
  groups.forEach((g, k) => {
    const rewards = groupRewards(samples, g);
    const m = mean(rewards);
    const denom = scale === 'group' ? std(rewards, stdMode) + eps : scale === 'batch' ? batchStd + eps : 1;
    for (const i of g.indices) {
      const s = samples[i]!;
      outputs[i] = scalarOutput(s, (s.reward - m) / denom, keepGroup[k]!);
    }
  });
  return { outputs, groups };
}

/** GRPO advantages (DeepSeekMath). One scalar per sample, broadcast over its tokens. */
export function grpo(batch: AdvantageBatch, options: GrpoOptions): AdvantageResult {
  const { outputs, groups } = groupMeanAdvantages(batch, options.scale, options.std, options.eps, options.dropZeroVarianceGroups);
  return finish('grpo', batch.samples, groups, outputs, { lengthNormalisation: true });
}

/** Dr.GRPO advantages: r - group mean, and a loss without per-sequence length normalisation. */
export function drGrpo(batch: AdvantageBatch, options: DrGrpoOptions): AdvantageResult {
  const { outputs, groups } = groupMeanAdvantages(batch, 'none', 'sample', 0, options.dropZeroVarianceGroups);
  return finish('dr_grpo', batch.samples, groups, outputs, { lengthNormalisation: false });
}
