/**
 * Length rewards.
 *
 * - `overlong_penalty`: DAPO's soft overlong punishment (Yu et al. 2025, "DAPO: An Open-Source LLM
 *   Reinforcement Learning System at Scale", §3.4). With L_max the generation limit and L_cache the
 *   punishment buffer:
 *
 *       R(y) = 0                                  |y| ≤ L_max − L_cache
 *            = ((L_max − L_cache) − |y|) / L_cache  L_max − L_cache < |y| ≤ L_max
 *            = −1                                 |y| > L_max
 *
 *   scaled by `penaltyFactor` (verl's `overlong_penalty_factor`). It is meant to be added to the
 *   task reward (see compose.ts).
 * - `length_penalty`: 0 inside [minLength, maxLength], a linear penalty outside that reaches
 *   −maxPenalty `rampLength` units beyond the bound (a plain length-control term).
 *
 * Length is counted in `tokens` (the rollout's `completionTokens`), `chars` (Unicode code points) or
 * `words` (whitespace-separated).
 */
import { z } from '../common/config.js';
import { defineReward, type RewardSample } from './types.js';

const unit = z.enum(['tokens', 'chars', 'words']).default('tokens');

/** Length of a completion in the unit; tokens need the rollout's `completionTokens`. */
export function completionLength(sample: RewardSample, u: 'tokens' | 'chars' | 'words'): number {
  if (u === 'tokens') {
    const n = sample.completionTokens;
    if (n === undefined || !Number.isInteger(n) || n < 0) {
      throw new Error(
        `sample ${sample.promptId}/${sample.sampleId} has no completionTokens (got ${JSON.stringify(n)}): ` +
          'the rollout must record token counts, or set the reward option unit: "chars"',
      );
    }
    return n;
  }
  if (u === 'chars') return [...sample.completion].length;
  return sample.completion.split(/\s+/u).filter((w) => w !== '').length;
}

export const OverlongOptions = z
  .strictObject({
    /** L_max: the generation limit (DAPO: 20480 tokens). */
    maxLength: z.number().int().positive().default(20480),
    /** L_cache: the buffer before L_max in which the penalty grows linearly from 0 to −1 (DAPO: 4096). */
    cacheLength: z.number().int().positive().default(4096),
    /** Multiplies the penalty (verl's overlong_penalty_factor). */
    penaltyFactor: z.number().nonnegative().default(1),
    /** Unit of length. */
    unit,
  })
  .refine((o) => o.cacheLength <= o.maxLength, { message: 'cacheLength must not exceed maxLength', path: ['cacheLength'] });

/** DAPO's soft overlong punishment, in [−1, 0] (before the factor). */
export function softOverlong(length: number, maxLength: number, cacheLength: number): number {
  const start = maxLength - cacheLength;
  if (length <= start) return 0;
  if (length <= maxLength) return (start - length) / cacheLength;
  return -1;
}

export const overlongPenalty = defineReward({
  name: 'overlong_penalty',
  description: 'DAPO soft overlong punishment: 0, then linear to −1 over the buffer before the max length, −1 beyond',
  source: 'DAPO (Yu et al. 2025), soft overlong punishment',
  optionsSchema: OverlongOptions,
  create: (o) => ({
    score(s) {
      const len = completionLength(s, o.unit);
      const r = o.penaltyFactor * softOverlong(len, o.maxLength, o.cacheLength);
      return { reward: r, components: { length: len, overlong: r } };
    },
  }),
});

export const LengthPenaltyOptions = z
  .strictObject({
    /** Shortest length without penalty. */
    minLength: z.number().int().nonnegative().default(0),
    /** Longest length without penalty. */
    maxLength: z.number().int().positive(),
    /** Units beyond a bound at which the penalty reaches maxPenalty (and stays). */
    rampLength: z.number().int().positive().default(256),
    /** Largest penalty (a positive number; the reward is its negative). */
    maxPenalty: z.number().positive().default(1),
    unit,
  })
  .refine((o) => o.minLength <= o.maxLength, { message: 'minLength must not exceed maxLength', path: ['minLength'] });

export const lengthPenalty = defineReward({
  name: 'length_penalty',
  description: 'linear penalty for completions shorter than minLength or longer than maxLength',
  source: 'length control term (cf. Kimi k1.5 length penalty; DAPO overlong shaping)',
  optionsSchema: LengthPenaltyOptions,
  create: (o) => ({
    score(s) {
      const len = completionLength(s, o.unit);
      const dist = len < o.minLength ? o.minLength - len : len > o.maxLength ? len - o.maxLength : 0;
      const r = -o.maxPenalty * Math.min(1, dist / o.rampLength);
      return { reward: r === 0 ? 0 : r, components: { length: len } };
    },
  }),
});
