/**
 * Helpers every estimator shares: input validation with errors that name the sample, grouping
 * by prompt, mean/std with an explicit population-or-sample choice, the options common to
 * group-based estimators, and assembling the result with its statistics.
 */
import { z } from '../common/config.js';
import { AdvantageInputError, type AdvantageResult, type AdvantageSample, type AdvantageStats, type SampleAdvantage } from './types.js';

/**
 * Which standard deviation normalises advantages. `sample` (divide by n-1, Bessel's correction)
 * is what TRL's GRPOTrainer and verl compute (`torch.std`), so numbers match those trainers;
 * `population` (divide by n) is the plain definition and gives advantages of exactly unit
 * variance within the group. DeepSeekMath (Shao et al. 2024) writes std(r) without saying which;
 * the difference matters only for small groups (a factor sqrt((n-1)/n)).
 */
export const stdModeSchema = z.enum(['sample', 'population']);
export type StdMode = z.infer<typeof stdModeSchema>;

/** Options shared by the estimators that compare samples within a prompt group. */
export const groupOptionsShape = {
  /**
   * Mark groups whose rewards are all equal (and single-sample groups) `keep: false`, so they
   * take no part in the update: they carry no comparative signal and only dilute the batch.
   * This is DAPO's dynamic-sampling filter (Yu et al. 2025, "DAPO: An Open-Source LLM
   * Reinforcement Learning System at Scale") applied without refill; to refill the batch from
   * further prompts use `selectGroups` in dynamic-sampling.ts before estimating.
   */
  dropZeroVarianceGroups: z.boolean().default(false),
};

/** The scaling options of the group-mean-baseline estimators (GRPO, and R^3L on top of it). */
export const scaledGroupOptionsShape = {
  /**
   * What the centred reward is divided by. `group`: the std of the prompt's own rewards
   * (DeepSeekMath GRPO). `batch`: the std of all rewards in the batch — keeps the group-mean
   * baseline but stops easy and hard prompts from being up-weighted (the "group mean, batch std"
   * recipe of Liu et al. 2025, "Part I: Tricks or Traps? A Deep Dive into RL for LLM Reasoning";
   * TRL's `scale_rewards="batch"`). `none`: no division (as Dr.GRPO).
   */
  scale: z.enum(['group', 'batch', 'none']).default('group'),
  /** Population or sample std; see `stdModeSchema`. Default `sample`, as TRL and verl. */
  std: stdModeSchema.default('sample'),
  /** Added to the std before dividing, so zero-variance groups give 0 rather than NaN (verl's 1e-6). */
  eps: z.number().nonnegative().default(1e-6),
};

export interface Group {
  groupId: string;
  /** Indices into the batch, in input order. */
  indices: number[];
}

export interface ValidationNeeds {
  /** Every sample must give `completionLength` (why, for the message). */
  completionLength?: string;
}

function describe(s: AdvantageSample, i: number): string {
  return typeof s.sampleId === 'string' && s.sampleId.length > 0
    ? `sample "${s.sampleId}"${typeof s.groupId === 'string' ? ` (group "${s.groupId}")` : ''}`
    : `sample at index ${i}`;
}

/**
 * Checks the fields every estimator reads. Throws AdvantageInputError naming the first bad
 * sample and saying what to fix.
 */
export function validateSamples(samples: readonly AdvantageSample[], needs: ValidationNeeds = {}): void {
  if (!Array.isArray(samples) || samples.length === 0) {
    throw new AdvantageInputError('advantage batch is empty: pass at least one rewarded sample');
  }
  const seen = new Set<string>();
  samples.forEach((s, i) => {
    const who = describe(s, i);
    if (typeof s.sampleId !== 'string' || s.sampleId.length === 0) {
      throw new AdvantageInputError(`${who} has no sampleId: every sample needs a non-empty string id`);
    }
    if (seen.has(s.sampleId)) {
      throw new AdvantageInputError(`${who} appears twice in the batch: sample ids must be unique`);
    }
    seen.add(s.sampleId);
    if (typeof s.groupId !== 'string' || s.groupId.length === 0) {
      throw new AdvantageInputError(`${who} has no groupId: set it to the prompt id the sample was generated for`);
    }
    if (typeof s.reward !== 'number' || !Number.isFinite(s.reward)) {
      throw new AdvantageInputError(
        `reward of ${who} is ${String(s.reward)}: rewards must be finite numbers; a reward function that ` +
          'fails must be recorded as a failure and handled by the reward failure policy, not passed on as NaN',
      );
    }
    const len = s.completionLength;
    if (len !== undefined && (!Number.isSafeInteger(len) || len < 0)) {
      throw new AdvantageInputError(`completionLength of ${who} is ${String(len)}: give the number of completion tokens (an integer >= 0)`);
    }
    if (len === undefined && needs.completionLength) {
      throw new AdvantageInputError(`${who} has no completionLength: ${needs.completionLength}`);
    }
    if (s.processRewards !== undefined) {
      if (len === undefined) {
        throw new AdvantageInputError(
          `${who} has processRewards but no completionLength: give both (one process reward per completion token)`,
        );
      }
      if (s.processRewards.length !== len) {
        throw new AdvantageInputError(
          `${who} has ${s.processRewards.length} process rewards for ${len} completion tokens: give exactly one per token (0 where no step ends)`,
        );
      }
      for (let t = 0; t < len; t++) {
        const v = s.processRewards[t]!;
        if (!Number.isFinite(v)) {
          throw new AdvantageInputError(`process reward of ${who} at token ${t} is ${String(v)}: process rewards must be finite numbers`);
        }
      }
    }
  });
}

/** Groups in order of first appearance; indices within a group in input order. */
export function groupSamples(samples: readonly AdvantageSample[]): Group[] {
  const byId = new Map<string, Group>();
  const out: Group[] = [];
  samples.forEach((s, i) => {
    let g = byId.get(s.groupId);
    if (!g) {
      g = { groupId: s.groupId, indices: [] };
      byId.set(s.groupId, g);
      out.push(g);
    }
    g.indices.push(i);
  });
  return out;
}

export function mean(xs: ArrayLike<number>): number {
  if (xs.length === 0) return 0;
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return s / xs.length;
}

/** Standard deviation; 0 for fewer than two values in `sample` mode, or for an empty list. */
export function std(xs: ArrayLike<number>, mode: StdMode): number {
  const n = xs.length;
  if (n === 0 || (mode === 'sample' && n < 2)) return 0;
  const m = mean(xs);
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (xs[i]! - m) ** 2;
  return Math.sqrt(ss / (mode === 'sample' ? n - 1 : n));
}

/** True when a group carries no comparative signal: one sample, or all rewards equal. */
export function isFlat(rewards: readonly number[]): boolean {
  return rewards.length < 2 || rewards.every((r) => r === rewards[0]);
}

export function groupRewards(samples: readonly AdvantageSample[], g: Group): number[] {
  return g.indices.map((i) => samples[i]!.reward);
}

/** A sample output whose one advantage applies to every token. */
export function scalarOutput(s: AdvantageSample, advantage: number, keep: boolean): SampleAdvantage {
  const len = s.completionLength;
  return {
    sampleId: s.sampleId,
    groupId: s.groupId,
    keep,
    advantage: keep ? advantage : 0,
    tokenAdvantages: null,
    lossMask: len === undefined ? null : new Uint8Array(len).fill(keep ? 1 : 0),
  };
}

/** A sample output with per-token advantages; `advantage` becomes their mean over kept tokens. */
export function tokenOutput(s: AdvantageSample, tokenAdvantages: Float64Array, lossMask: Uint8Array, keep: boolean): SampleAdvantage {
  if (!keep) {
    tokenAdvantages.fill(0);
    lossMask.fill(0);
  }
  let sum = 0;
  let n = 0;
  for (let t = 0; t < lossMask.length; t++) {
    if (lossMask[t]) {
      sum += tokenAdvantages[t]!;
      n++;
    }
  }
  return { sampleId: s.sampleId, groupId: s.groupId, keep, advantage: n ? sum / n : 0, tokenAdvantages, lossMask };
}

/** Assembles the result and computes the statistics every estimator reports. */
export function finish(
  estimator: string,
  samples: readonly AdvantageSample[],
  groups: readonly Group[],
  outputs: SampleAdvantage[],
  extra: Record<string, number> = {},
): AdvantageResult {
  let zeroVarianceGroups = 0;
  let singletonGroups = 0;
  let droppedGroups = 0;
  for (const g of groups) {
    if (g.indices.length === 1) singletonGroups++;
    else if (isFlat(groupRewards(samples, g))) zeroVarianceGroups++;
    if (g.indices.every((i) => !outputs[i]!.keep)) droppedGroups++;
  }
  const kept = outputs.filter((o) => o.keep).map((o) => o.advantage);
  let tokens = 0;
  let maskedTokens = 0;
  for (const o of outputs) {
    if (!o.lossMask) continue;
    tokens += o.lossMask.length;
    for (let t = 0; t < o.lossMask.length; t++) if (!o.lossMask[t]) maskedTokens++;
  }
  const stats: AdvantageStats = {
    estimator,
    samples: samples.length,
    groups: groups.length,
    zeroVarianceGroups,
    singletonGroups,
    droppedGroups,
    keptSamples: kept.length,
    advantageMean: mean(kept),
    advantageStd: std(kept, 'population'),
    advantageMin: kept.length ? kept.reduce((a, b) => Math.min(a, b)) : 0,
    advantageMax: kept.length ? kept.reduce((a, b) => Math.max(a, b)) : 0,
    tokens,
    maskedTokens,
    extra,
  };
  return { samples: outputs, stats };
}

/**
 * Group-mean-baseline advantages, (r_i - mean(group)) / denominator, one scalar per sample: the
 * core of GRPO and Dr.GRPO, and the base R^3L adjusts. Validates the samples. Groups whose rewards
 * are all equal are marked `keep: false` when `dropFlat`, and left out of the batch std.
 */
export function groupMeanAdvantages(
  samples: readonly AdvantageSample[],
  scale: 'group' | 'batch' | 'none',
  stdMode: StdMode,
  eps: number,
  dropFlat: boolean,
): { outputs: SampleAdvantage[]; groups: Group[] } {
  validateSamples(samples);
  const groups = groupSamples(samples);
  const keepGroup = groups.map((g) => !(dropFlat && isFlat(groupRewards(samples, g))));
  const batchStd =
    scale === 'batch'
      ? std(
          groups.flatMap((g, k) => (keepGroup[k] ? groupRewards(samples, g) : [])),
          stdMode,
        )
      : 0;
  const outputs: SampleAdvantage[] = new Array(samples.length);
  groups.forEach((g, k) => {
    const rewards = groupRewards(samples, g);
    const m = mean(rewards);
    const denom = scale === 'group' ? std(rewards, stdMode) + eps : scale === 'batch' ? batchStd + eps : 1;
    for (const i of g.indices) outputs[i] = scalarOutput(samples[i]!, (samples[i]!.reward - m) / denom, keepGroup[k]!);
  });
  return { outputs, groups };
}
