/**
 * The losses by config name: `{ name, options }` → a `LossBuilder` for the engine's trainStep.
 *
 *   const loss = buildLoss({ name: 'clipped_surrogate', options: { clipLow: 0.2, clipHigh: 0.28 } });
 *   await engine.trainStep(state, batch, { loss, lr });
 *
 * The config is a zod discriminated union on `name`; each member's defaults live in its own
 * options schema (see README.md for the table of names, options and papers). A bad field raises
 * a ConfigError that names its path.
 */
import { parseConfig, z } from '../common/config.js';
import { sftLoss, type LossBuilder } from '../model/losses.js';
import { clippedSurrogateLoss, clippedSurrogateSchema } from './clipped-surrogate.js';
import { dpoLoss, dpoSchema } from './dpo.js';
import { bradleyTerryLoss, bradleyTerrySchema } from '../model/losses-reward.js';

export { aggregate, type Aggregation } from './aggregate.js';
export { klEstimatorSchema, klTensor, klValue, type KlDirection, type KlEstimator } from './kl.js';
export { klPenalisedRewards, klRewardOptionsSchema, KlRewardInputError, type KlRewardOptions } from './kl-reward.js';
export { clippedSurrogateLoss, clippedSurrogateSchema, type ClippedSurrogateOptions } from './clipped-surrogate.js';
export { dpoLoss, dpoPairRows, dpoSchema, logSigmoid, type DpoOptions } from './dpo.js';
// Bradley-Terry trains a scalar-head reward model; it needs the engine's classifier head, so it lives there.
export { bradleyTerryLoss, bradleyTerrySchema } from '../model/losses-reward.js';

const sftSchema = z.strictObject({
  /** Report the mean next-token entropy of the loss tokens. */
  entropyMetric: z.boolean().default(false),
});

export const lossConfigSchema = z.discriminatedUnion('name', [
  z.strictObject({ name: z.literal('clipped_surrogate'), options: clippedSurrogateSchema.prefault({}) }),
  z.strictObject({ name: z.literal('dpo'), options: dpoSchema.prefault({}) }),
  z.strictObject({ name: z.literal('sft'), options: sftSchema.prefault({}) }),
  z.strictObject({ name: z.literal('bradley_terry'), options: bradleyTerrySchema.prefault({}) }),
]);
export type LossConfig = z.output<typeof lossConfigSchema>;
export type LossName = LossConfig['name'];

/** Every loss: where it comes from (the README table lists the options). */
export const losses: Record<LossName, { paper: string }> = {
  clipped_surrogate: {
    paper:
      'PPO (Schulman et al. 2017); GRPO (Shao et al. 2024); DAPO (Yu et al. 2025); GSPO (Zheng et al. 2025); Dr.GRPO (Liu et al. 2025); dual-clip (Ye et al. 2020); RAPO forward KL',
  },
  dpo: { paper: 'DPO (Rafailov et al. 2023); From r to Q* (Rafailov et al. 2024); cDPO (Mitchell 2023)' },
  sft: { paper: 'supervised cross-entropy (activities/model/losses.ts)' },
  bradley_terry: {
    paper:
      'Bradley & Terry (1952) pairwise preferences, as the reward-model loss of InstructGPT (Ouyang et al. 2022); activities/model/losses-reward.ts',
  },
};

/** Validates a loss config (filling defaults); the ConfigError names the bad field. */
export function parseLossConfig(input: unknown): LossConfig {
  return parseConfig(lossConfigSchema, input, 'loss config');
}

/** The loss builder of a config (validated first). */
export function buildLoss(input: unknown): LossBuilder {
  const cfg = parseLossConfig(input);
  switch (cfg.name) {
    case 'clipped_surrogate':
      return clippedSurrogateLoss(cfg.options);
    case 'dpo':
      return dpoLoss(cfg.options);
    case 'sft':
      return sftLoss(cfg.options);
    case 'bradley_terry':
      return bradleyTerryLoss(cfg.options);
  }
}
