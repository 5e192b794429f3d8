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
import type { AdvantageBatch, AdvantageResult, PairedAggregation } from './types.js';

export * from './types.js';
export {
  selectGroups,
  selectedSamples,
  dynamicSamplingOptionsSchema,
  type DynamicSamplingOptions,
  type GroupSelection,
} from './dynamic-sampling.js';

/**
 * Every estimator: its option schema, the function, where it comes from, and the loss aggregation
 * its paper trains with (`aggregation`, see `PairedAggregation`; `why` says where it is from). A
 * run's rl phase takes this aggregation unless its `loss.options.aggregation` says otherwise
 * (activities/run/config.ts resolves it, so run.json records the value used).
 */
export const estimators = {
  grpo: {
    schema: grpoOptionsSchema,
    estimate: grpo,
    paper: 'DeepSeekMath (Shao et al. 2024)',
    aggregation: 'sequence_mean',
    why: 'DeepSeekMath eq. 3: (1/G) Σ_i (1/|o_i|) Σ_t — each completion\'s token mean, then the mean over the group (TRL loss_type "grpo")',
  },
  dr_grpo: {
    schema: drGrpoOptionsSchema,
    estimate: drGrpo,
    paper: 'Understanding R1-Zero-Like Training (Liu et al. 2025); OPTIAGENT',
    aggregation: 'constant',
    why: 'Dr.GRPO removes 1/|o_i|: token losses summed and divided by a constant, the generation budget (max completion tokens; TRL loss_type "dr_grpo" uses max_completion_length)',
  },
  rloo: {
    schema: rlooOptionsSchema,
    estimate: rloo,
    paper: 'Back to Basics (Ahmadian et al. 2024); Kool et al. 2019',
    aggregation: 'constant',
    why: 'Back to Basics models the whole completion as one action: REINFORCE on the sequence log-likelihood Σ_t log π, no length normalisation; "constant" is that sum over a fixed C (the generation budget), a learning-rate scale',
  },
  reinforce_pp: {
    schema: reinforcePpOptionsSchema,
    estimate: reinforcePp,
    paper: 'REINFORCE++ (Hu et al. 2025)',
    aggregation: 'token_mean',
    why: 'REINFORCE++ normalises token-level advantages over the batch and trains with the token-level loss of its implementation (OpenRLHF PolicyLoss, token_level_loss on)',
  },
  reinforce_pp_baseline: {
    schema: reinforcePpBaselineOptionsSchema,
    estimate: reinforcePpBaseline,
    paper: 'REINFORCE++ (Hu et al. 2025), group-baseline variant',
    aggregation: 'token_mean',
    why: 'as reinforce_pp: the same token-level loss of OpenRLHF (token_level_loss on)',
  },
  sibling_grpo: {
    schema: siblingGrpoOptionsSchema,
    estimate: siblingGrpo,
    paper: 'V-STAR (Jiang et al. 2026)',
    aggregation: 'sequence_mean',
    why: 'Sibling-GRPO keeps the GRPO objective (per-sequence token mean) on sibling-relative advantages',
  },
  r3l: {
    schema: r3lOptionsSchema,
    estimate: r3l,
    paper: 'R^3L (2026)',
    aggregation: 'sequence_mean',
    why: 'R^3L builds on the GRPO objective; the per-sequence mean is over the tokens its pivotal-credit mask keeps',
  },
} as const satisfies Record<string, { schema: unknown; estimate: unknown; aggregation: PairedAggregation; why: string; paper: string }>;

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
  if (!entry)
    throw new Error(
      `unknown advantage estimator "${String((config as { estimator: unknown }).estimator)}": use one of ${estimatorNames.join(', ')}`,
    );
  return (entry.estimate as (b: AdvantageBatch, o: AdvantageConfig) => AdvantageResult)(batch, config);
}

/**
 * The loss aggregation an estimator implies (its paper's; see `estimators`). Dr.GRPO and RLOO
 * imply `constant`, whose constant is the phase's generation budget (the run config fills it).
 */
export function impliedAggregation(config: { estimator: EstimatorName }): PairedAggregation {
  return estimators[config.estimator].aggregation;
}
