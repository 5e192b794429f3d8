/**
 * The advantage estimators by config name, their option schemas, and one entry point.
 *
 *   const cfg = parseAdvantageConfig({ estimator: 'grpo', scale: 'batch' });
 *   const { samples, stats, loss } = computeAdvantages(cfg, { samples: rewarded });
 *
 * The config is a zod discriminated union on `estimator`; each member's defaults live in its own
 * schema (see the estimator's file and README.md for the table of names, options and papers).
 */
import { parseConfig, z } from '../common/config.js';
import { drGrpo, drGrpoOptionsSchema, grpo, grpoOptionsSchema } from './grpo.js';
import { r3l, r3lOptionsSchema } from './r3l.js';
import { reinforcePp, reinforcePpBaseline, reinforcePpBaselineOptionsSchema, reinforcePpOptionsSchema } from './reinforce-pp.js';
import { rloo, rlooOptionsSchema } from './rloo.js';
import { siblingGrpo, siblingGrpoOptionsSchema } from './sibling-grpo.js';
import type { AdvantageBatch, AdvantageResult } from './types.js';

export * from './types.js';
export { selectGroups, selectedSamples, dynamicSamplingOptionsSchema, type DynamicSamplingOptions, type GroupSelection } from './dynamic-sampling.js';

/** Every estimator: its option schema, the function, and where it comes from. */
export const estimators = {
  grpo: { schema: grpoOptionsSchema, estimate: grpo, paper: 'DeepSeekMath (Shao et al. 2024)' },
  dr_grpo: { schema: drGrpoOptionsSchema, estimate: drGrpo, paper: 'Understanding R1-Zero-Like Training (Liu et al. 2025); OPTIAGENT' },
  rloo: { schema: rlooOptionsSchema, estimate: rloo, paper: 'Back to Basics (Ahmadian et al. 2024); Kool et al. 2019' },
  reinforce_pp: { schema: reinforcePpOptionsSchema, estimate: reinforcePp, paper: 'REINFORCE++ (Hu et al. 2025)' },
  reinforce_pp_baseline: { schema: reinforcePpBaselineOptionsSchema, estimate: reinforcePpBaseline, paper: 'REINFORCE++ (Hu et al. 2025), group-baseline variant' },
  sibling_grpo: { schema: siblingGrpoOptionsSchema, estimate: siblingGrpo, paper: 'V-STAR (Jiang et al. 2026)' },
  r3l: { schema: r3lOptionsSchema, estimate: r3l, paper: 'R^3L (2026)' },
} as const;

export type EstimatorName = keyof typeof estimators;
export const estimatorNames = Object.keys(estimators) as EstimatorName[];

export const advantageConfigSchema = z.discriminatedUnion('estimator', [
  grpoOptionsSchema,
  drGrpoOptionsSchema,
  rlooOptionsSchema,
  reinforcePpOptionsSchema,
  reinforcePpBaselineOptionsSchema,
  siblingGrpoOptionsSchema,
  r3lOptionsSchema,
]);
export type AdvantageConfig = z.output<typeof advantageConfigSchema>;

/** Validates an estimator config (filling defaults); the error names the bad field. */
export function parseAdvantageConfig(input: unknown): AdvantageConfig {
  return parseConfig(advantageConfigSchema, input, 'advantage config');
}

/** Runs the configured estimator on a batch. */
export function computeAdvantages(config: AdvantageConfig, batch: AdvantageBatch): AdvantageResult {
  const entry = estimators[config.estimator];
  if (!entry) throw new Error(`unknown advantage estimator "${String((config as { estimator: unknown }).estimator)}": use one of ${estimatorNames.join(', ')}`);
  return (entry.estimate as (b: AdvantageBatch, o: AdvantageConfig) => AdvantageResult)(batch, config);
}
