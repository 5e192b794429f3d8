/**
 * Dynamic sampling (DAPO, Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning
 * System at Scale"): a prompt whose completions all got the same reward (all right, all wrong)
 * has zero advantage under any group baseline and contributes no gradient, only noise and a
 * smaller effective batch. DAPO over-samples and keeps only groups with reward variance, rolling
 * out further prompts until the batch is full.
 *
 * `selectGroups` is the pure part of that loop: given the pool of completed groups so far and the
 * number of groups the batch needs, it picks the informative groups (in pool order), counts and
 * names the dropped ones, and says how many more prompts to roll out, estimated from the keep
 * rate observed in the pool. The workflow loops: roll out `morePrompts`, add them to the pool,
 * call again with `round + 1`, until `deficit` is 0 or `exhausted`.
 */
import { z } from '../common/config.js';
import { groupRewards, groupSamples, isFlat, validateSamples } from './batch.js';
import { AdvantageInputError, type AdvantageSample } from './types.js';

export const dynamicSamplingOptionsSchema = z.strictObject({
  /** Off: groups are taken in pool order whatever their rewards (no filtering, no refill). */
  enabled: z.boolean().default(true),
  /** Refill rounds allowed after the first rollout (DAPO's max_num_gen_batches minus one); 0: filter only. */
  maxRefillRounds: z.number().int().min(0).default(3),
  /** Floor on the estimated keep rate, so a pool with no informative group still asks for a finite number of prompts. */
  minKeepRate: z.number().gt(0).lte(1).default(0.1),
  /** Safety margin on the estimate: morePrompts = ceil(oversample * deficit / keepRate). */
  oversample: z.number().min(1).default(1.2),
  /** When refill rounds run out with the batch still short: `proceed` with fewer groups, or `fail`. */
  onExhausted: z.enum(['proceed', 'fail']).default('proceed'),
});
export type DynamicSamplingOptions = z.output<typeof dynamicSamplingOptionsSchema>;

export interface DroppedGroup {
  groupId: string;
  reason: 'zero-variance' | 'single-sample';
  /** The reward every sample of the group got. */
  reward: number;
}

export interface GroupSelection {
  /** Groups for this step's batch, in pool order, at most `targetGroups`. */
  selected: string[];
  /** Groups filtered out for lack of reward variance. */
  dropped: DroppedGroup[];
  /** Informative groups beyond the target, not used this step. */
  surplus: string[];
  /** Groups still missing: targetGroups - selected.length. */
  deficit: number;
  /** Prompts to roll out next to cover the deficit (0 when none is missing or refills are exhausted). */
  morePrompts: number;
  /** Fraction of the pool's groups that were informative. */
  keepRate: number;
  /** The batch is short and no refill round is left. */
  exhausted: boolean;
}

/**
 * Picks the informative groups of the pool for a batch of `targetGroups` prompt groups.
 * `round` counts refills already done (0 after the first rollout).
 */
export function selectGroups(
  pool: readonly AdvantageSample[],
  targetGroups: number,
  options: DynamicSamplingOptions,
  round = 0,
): GroupSelection {
  if (!Number.isSafeInteger(targetGroups) || targetGroups < 1) {
    throw new AdvantageInputError(`targetGroups is ${String(targetGroups)}: give the number of prompt groups per batch (an integer >= 1)`);
  }
  if (!Number.isSafeInteger(round) || round < 0) {
    throw new AdvantageInputError(`round is ${String(round)}: give the number of refill rounds already done (an integer >= 0)`);
  }
  validateSamples(pool);
  const groups = groupSamples(pool);
  const selected: string[] = [];
  const surplus: string[] = [];
  const dropped: DroppedGroup[] = [];
  let informative = 0;
  for (const g of groups) {
    const rewards = groupRewards(pool, g);
    if (options.enabled && isFlat(rewards)) {
      dropped.push({ groupId: g.groupId, reason: rewards.length < 2 ? 'single-sample' : 'zero-variance', reward: rewards[0]! });
      continue;
    }
    informative++;
    if (selected.length < targetGroups) selected.push(g.groupId);
    else surplus.push(g.groupId);
  }
  const deficit = targetGroups - selected.length;
  const keepRate = groups.length ? informative / groups.length : 0;
  const exhausted = deficit > 0 && (!options.enabled || round >= options.maxRefillRounds);
  if (exhausted && options.enabled && options.onExhausted === 'fail') {
    throw new AdvantageInputError(
      `dynamic sampling found ${selected.length} of ${targetGroups} prompt groups with reward variance after ${round} refill rounds ` +
        `(${dropped.length} groups had all-equal rewards): raise maxRefillRounds, lower the batch size, or set onExhausted: proceed`,
    );
  }
  // The 1e-9 keeps float noise (1.2 * 5 / 0.5 = 12.000000000000002) from asking for one prompt more.
  const morePrompts =
    deficit > 0 && !exhausted ? Math.ceil((options.oversample * deficit) / Math.max(keepRate, options.minKeepRate) - 1e-9) : 0;
  return { selected, dropped, surplus, deficit, morePrompts, keepRate, exhausted };
}

/** An rl phase's `dynamicSampling` config (activities/run/config.ts), as far as selection needs it. */
export interface DynamicSamplingSettings {
  mode: 'off' | 'filter' | 'refill';
  maxRounds: number;
  oversample: number;
  minKeepRate: number;
}

/**
 * The `selectGroups` options of a phase's setting: `filter` is selection without refill rounds,
 * `refill` allows `maxRounds`; a short batch after the last round proceeds with what it found
 * (a durable run does not fail a step for lack of informative prompts).
 */
export function selectionOptions(s: DynamicSamplingSettings): DynamicSamplingOptions {
  return {
    enabled: s.mode !== 'off',
    maxRefillRounds: s.mode === 'refill' ? s.maxRounds : 0,
    minKeepRate: s.minKeepRate,
    oversample: s.oversample,
    onExhausted: 'proceed',
  };
}

/** The samples of the selected groups, in pool order. */
export function selectedSamples<S extends AdvantageSample>(pool: readonly S[], selection: GroupSelection): S[] {
  const keep = new Set(selection.selected);
  return pool.filter((s) => keep.has(s.groupId));
}
