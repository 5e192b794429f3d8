/**
 * Reward-model training: the Bradley-Terry pairwise loss for a sequence classifier (a model with
 * `config.classifier`, whose training graph gives losses `ctx.rewards` [B]), and a helper that lays
 * preference pairs out as a training batch.
 *
 * Bradley & Terry ("Rank analysis of incomplete block designs", 1952) model the probability that
 * `chosen` is preferred to `rejected` as sigmoid(r_c − r_r); the reward model minimises the negative
 * log-likelihood of the observed preferences (Stiennon et al., "Learning to summarize from human
 * feedback", 2020; Ouyang et al., "Training language models to follow instructions with human
 * feedback", 2022):
 *
 *     loss = −mean_i log σ(r_c,i − r_r,i − m_i)
 *
 * Layout: rows 2i and 2i+1 of the batch are pair i's chosen and rejected sequence (the batch size
 * must be even). The score head `score.weight` is a parameter like any other: AdamW, clipping and
 * gradient accumulation of `trainStep` apply unchanged (with micro-batches, each holds whole pairs).
 */
import { z } from '../common/config.js';
import { parseConfig } from '../common/config.js';
import type { Tensor } from './graph.js';
import * as F from './ops.js';
import type { LossBuilder } from './losses.js';
import { ModelInputError, type TrainBatch } from './engine-types.js';

export const bradleyTerrySchema = z.strictObject({
  /**
   * A constant margin m the chosen reward must exceed the rejected one by: loss = −log σ(r_c − r_r
   * − m) (Touvron et al., "Llama 2", 2023, §3.2.2, use a margin per preference rating). Default 0.
   */
  margin: z.number().finite().default(0),
  /**
   * Per-pair margins instead: the loss declares an extra input `margin` float32 [batch] and reads
   * pair i's margin from row 2i (the chosen row; the rejected row's value is ignored). Added to
   * the constant `margin`. TRL's RewardTrainer `margin` column. Default false.
   */
  perPairMargin: z.boolean().default(false),
  /**
   * Coefficient c of an auxiliary loss c·mean((r_c + r_r)²) that keeps rewards centred on zero
   * (Eisenstein et al., "Helping or Herding? Reward Model Ensembles Mitigate but do not Eliminate
   * Reward Hacking", 2023; TRL's `center_rewards_coefficient`). Default 0 (off).
   */
  centerRewardsCoefficient: z.number().min(0).default(0),
});
export type BradleyTerryOptions = z.output<typeof bradleyTerrySchema>;
export type BradleyTerryInput = z.input<typeof bradleyTerrySchema>;

/**
 * log σ(x), stable for any x and smooth at 0: min(x, 0) − log(1 + exp(−|x|)), written with
 * `where` on a constant condition so no branch overflows (exp of a non-positive number only) and
 * the gradient at x = 0 is exactly σ(−0) = 1/2 (a max/min formulation would send ties one way).
 */
export function logSigmoid(x: Tensor): Tensor {
  const neg = x.g.noTape(() => F.less(x, 0));
  const negAbs = F.where(neg, x, F.neg(x)); // −|x|
  const lower = F.where(neg, x, 0); // min(x, 0)
  return F.sub(lower, F.log(F.add(F.exp(negAbs), 1)));
}

/**
 * The Bradley-Terry loss. Metrics: `accuracy` (fraction of pairs with r_c > r_r), `margin` (mean
 * r_c − r_r), `chosen_reward` and `rejected_reward` (means), `pairs` (count).
 */
export function bradleyTerryLoss(input: BradleyTerryInput = {}): LossBuilder {
  const o = parseConfig(bradleyTerrySchema, input, 'bradley-terry loss options');
  return {
    key: `bradley-terry:${o.margin}:${o.perPairMargin ? 'M' : ''}:${o.centerRewardsCoefficient}`,
    validate(batch, what) {
      const n = batch.ids.length;
      if (n % 2 !== 0) {
        throw new ModelInputError(
          `${what}: the Bradley-Terry loss needs preference pairs (rows 2i chosen, 2i+1 rejected), got an odd number of rows (${n})`,
        );
      }
    },
    build(ctx) {
      const r = ctx.rewards;
      if (!r) {
        throw new Error(
          'the Bradley-Terry loss needs a sequence-classifier model (config.classifier: a score head `score.weight`); this model has an LM head',
        );
      }
      // [B] -> [P, 2]: column 0 chosen, column 1 rejected
      const pairs = F.reshape(r, [-1, 2], [null, 2]);
      const [chosenCol, rejectedCol] = F.split(pairs, [1, 1], 1) as [Tensor, Tensor];
      const chosen = F.squeeze(chosenCol, [1]);
      const rejected = F.squeeze(rejectedCol, [1]);
      const diff = F.sub(chosen, rejected);
      let shifted = o.margin !== 0 ? F.sub(diff, o.margin) : diff;
      if (o.perPairMargin) {
        const m = ctx.input('margin', 'float32', ['batch']);
        const mPairs = ctx.g.noTape(() => F.squeeze(F.slice(F.reshape(m, [-1, 2], [null, 2]), [0], [1], [1]), [1]));
        shifted = F.sub(shifted, mPairs);
      }
      let loss = F.neg(F.reduceMean(logSigmoid(shifted)));
      if (o.centerRewardsCoefficient > 0) {
        const sum = F.add(chosen, rejected);
        loss = F.add(loss, F.mul(F.reduceMean(F.mul(sum, sum)), o.centerRewardsCoefficient));
      }
      const g = ctx.g;
      const metrics = g.noTape(() => ({
        accuracy: F.reduceMean(F.cast(F.greater(diff, 0), 'float32')),
        margin: F.reduceMean(diff),
        chosen_reward: F.reduceMean(chosen),
        rejected_reward: F.reduceMean(rejected),
        pairs: F.reduceSum(F.cast(F.dimOf(pairs, 0), 'float32')),
      }));
      return { loss, metrics };
    },
  };
}

/** One preference pair: token ids of the preferred (`chosen`) and dispreferred (`rejected`) sequence. */
export interface PreferencePair {
  chosen: readonly number[];
  rejected: readonly number[];
  /** Per-pair margin (for `perPairMargin`), default 0. */
  margin?: number;
}

/**
 * Lays pairs out as a training batch for `bradleyTerryLoss`: rows 2i / 2i+1 are pair i's chosen /
 * rejected ids, right-padded with `padId` to the longest row (padding masked out), a zero
 * `lossMask` (a classifier's loss ignores it) and, with `perPairMargin`, the `margin` extra input.
 */
export function preferenceBatch(pairs: readonly PreferencePair[], opts: { padId?: number; perPairMargin?: boolean } = {}): TrainBatch {
  if (pairs.length === 0) throw new Error('preferenceBatch: no pairs given');
  const padId = opts.padId ?? 0;
  const rows: (readonly number[])[] = [];
  pairs.forEach((p, i) => {
    if (!p.chosen?.length || !p.rejected?.length)
      throw new Error(`preference pair ${i}: chosen and rejected must both be non-empty token-id arrays`);
    rows.push(p.chosen, p.rejected);
  });
  const len = Math.max(...rows.map((r) => r.length));
  const ids = rows.map((r) => [...r, ...Array<number>(len - r.length).fill(padId)]);
  const attentionMask = rows.map((r) => [...r.map(() => 1), ...Array<number>(len - r.length).fill(0)]);
  const lossMask = rows.map(() => Array<number>(len).fill(0));
  const batch: TrainBatch = { ids, attentionMask, lossMask };
  if (opts.perPairMargin) batch.extra = { margin: pairs.flatMap((p) => [p.margin ?? 0, p.margin ?? 0]) };
  return batch;
}
