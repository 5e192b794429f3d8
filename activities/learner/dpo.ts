/**
 * Direct Preference Optimization (Rafailov et al. 2023, "Direct Preference Optimization: Your
 * Language Model is Secretly a Reward Model") in its token-level reading (Rafailov et al. 2024,
 * "From r to Q*: Your Language Model is Secretly a Q-Function"): the implicit reward of a
 * response is β Σ_t log π_θ(y_t)/π_ref(y_t) over its tokens — a sum of per-token credits — and the
 * loss is the Bradley-Terry likelihood of the preferred response winning.
 *
 * Batch layout: rows come in pairs, row 2k the chosen and row 2k+1 the rejected response to the
 * same prompt (so the batch size is even; `dpoPairRows` builds and checks such a batch). Per pair:
 *   h = β [(S_c − S_c^ref) − (S_r − S_r^ref)],  S = Σ_t m_t log π(y_t)
 *   loss = −(1 − ε) log σ(h) − ε log σ(−h)
 * ε is the label smoothing of conservative DPO (cDPO, Mitchell 2023, "A note on DPO with noisy
 * preferences": labels flipped with probability ε); ε = 0 is plain DPO. The loss is the mean over
 * the micro-batch's pairs.
 *
 * Graph input it declares: `ref_sequence_logprobs` float32 [batch] — S^ref of each row, the sum of
 * the reference policy's logprobs over the row's loss-mask tokens (score graph output × mask).
 *
 * Metrics: `reward_accuracy` (fraction of pairs with h > 0), `chosen_reward`, `rejected_reward`
 * (mean β(S − S^ref)), `reward_margin` (mean h), `pairs`.
 */
import { parseConfig, z } from '../common/config.js';
import type { Tensor } from '../model/graph.js';
import type { LossBuilder } from '../model/losses.js';
import * as F from '../model/ops.js';

export const dpoSchema = z.strictObject({
  /** β: the strength of the implicit KL constraint to the reference (DPO: 0.1–0.5). */
  beta: z.number().positive().default(0.1),
  /** ε in [0, 0.5): conservative DPO label smoothing (Mitchell 2023); 0 is plain DPO. */
  labelSmoothing: z.number().min(0).lt(0.5).default(0),
});
export type DpoOptions = z.output<typeof dpoSchema>;

/**
 * log σ(x), stable for large |x| and with the exact gradient 1 − σ(x) everywhere (x = 0 included):
 * x − log(1 + eˣ) for x < 0, −log(1 + e⁻ˣ) otherwise, each branch on a clipped argument so the
 * branch not taken stays finite (no 0·∞ in its gradient).
 */
export function logSigmoid(x: Tensor): Tensor {
  const neg = F.clip(x, undefined, 0);
  const pos = F.clip(x, 0, undefined);
  const forNeg = F.sub(x, F.log(F.add(F.exp(neg), 1)));
  const forPos = F.neg(F.log(F.add(F.exp(F.neg(pos)), 1)));
  return F.where(F.less(x, 0), forNeg, forPos);
}

export function dpoLoss(input: z.input<typeof dpoSchema> = {}): LossBuilder {
  const o = parseConfig(dpoSchema, input, 'dpo options');
  return {
    key: `dpo:${JSON.stringify(o)}`,
    build(ctx) {
      const g = ctx.g;
      const refSums = ctx.input('ref_sequence_logprobs', 'float32', ['batch']);
      const sums = F.reduceSum(F.mul(ctx.logprobs, ctx.lossMask), [1]); // [B]
      const rewards = F.mul(F.sub(sums, refSums), o.beta); // β (S − S_ref), [B]
      const pairs = F.reshape(rewards, [-1, 2], [null, 2]); // [P, 2]: chosen, rejected
      const [c, r] = F.split(pairs, [1, 1], 1);
      const chosen = F.squeeze(c!, [1]);
      const rejected = F.squeeze(r!, [1]);
      const h = F.sub(chosen, rejected); // [P]
      let perPair = F.neg(logSigmoid(h));
      if (o.labelSmoothing > 0) {
        perPair = F.add(F.mul(perPair, 1 - o.labelSmoothing), F.mul(F.neg(logSigmoid(F.neg(h))), o.labelSmoothing));
      }
      const loss = F.reduceMean(perPair);
      const metrics: Record<string, Tensor> = g.noTape(() => ({
        reward_accuracy: F.reduceMean(F.cast(F.greater(h, 0), h.dtype)),
        chosen_reward: F.reduceMean(chosen),
        rejected_reward: F.reduceMean(rejected),
        reward_margin: F.reduceMean(h),
        pairs: F.cast(F.reshape(F.dimOf(h, 0), [], []), h.dtype),
      }));
      return { loss, metrics };
    },
  };
}

/**
 * Interleaves preference pairs into the row order `dpoLoss` expects (chosen, rejected, chosen, …)
 * and checks them: both rows of a pair need the same length and at least one loss token.
 */
export function dpoPairRows<R extends { ids: readonly number[]; lossMask: readonly number[] }>(
  pairs: readonly { chosen: R; rejected: R }[],
): R[] {
  if (pairs.length === 0) throw new Error('DPO: no preference pairs: give at least one { chosen, rejected }');
  const rows: R[] = [];
  pairs.forEach((p, k) => {
    for (const [which, row] of [
      ['chosen', p.chosen],
      ['rejected', p.rejected],
    ] as const) {
      if (row.ids.length !== row.lossMask.length)
        throw new Error(`DPO pair ${k}: ${which} has ${row.ids.length} ids but ${row.lossMask.length} loss-mask entries`);
      if (!row.lossMask.some((v) => v !== 0))
        throw new Error(`DPO pair ${k}: ${which} has no loss tokens: mark its response tokens in lossMask`);
    }
    if (p.chosen.ids.length !== p.rejected.ids.length) {
      throw new Error(
        `DPO pair ${k}: chosen has ${p.chosen.ids.length} tokens, rejected ${p.rejected.ids.length}: pad both rows of the batch to one length`,
      );
    }
    rows.push(p.chosen, p.rejected);
  });
  return rows;
}
