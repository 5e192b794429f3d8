/**
 * Loss aggregation: how a per-token loss [B, T] becomes the scalar the optimiser minimises.
 *
 * - `token_mean`: Σ_{i,t} m·ℓ / Σ_{i,t} m — every token of the batch weighs the same, so long
 *   sequences count in proportion to their length (Yu et al. 2025, "DAPO: An Open-Source LLM
 *   Reinforcement Learning System at Scale", token-level policy-gradient loss).
 * - `sequence_mean`: mean over sequences of each sequence's token mean (the original GRPO
 *   objective, Shao et al. 2024, "DeepSeekMath"); rows with no loss token do not count.
 * - `constant`: Σ_{i,t} m·ℓ / (C · B) with C a constant such as the maximum completion length
 *   (Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective" — Dr.GRPO:
 *   no per-sequence length normalisation, so long wrong answers are not penalised less per token).
 *
 * Gradient accumulation: the engine averages the gradients of equally weighted micro-batches. With
 * `sequence_mean` and `constant` this equals the full-batch objective when the micro-batches have
 * the same number of rows. A token mean over the whole batch needs the batch's token count: pass
 * `tokenCount` (a scalar graph input holding total loss tokens / number of micro-batches).
 */
import type { Tensor } from '../model/graph.js';
import * as F from '../model/ops.js';

export type Aggregation = 'token_mean' | 'sequence_mean' | 'constant';

export interface AggregateOptions {
  /** `constant`: the per-sequence normaliser C (e.g. the max completion length). */
  constant?: number;
  /** `token_mean`: a scalar tensor replacing the micro-batch's own token count. */
  tokenCount?: Tensor;
}

/** The batch size B of a [B, T] tensor as a scalar of its dtype (a runtime value when symbolic). */
export function rowsOf(x: Tensor): Tensor {
  const g = x.g;
  const b = x.shape[0];
  if (typeof b === 'number') return g.scalar(b, x.dtype);
  return g.noTape(() => F.reshape(F.cast(F.dimOf(x, 0), x.dtype), [], []));
}

/** Aggregates a per-token loss `x` [B, T] over the tokens where `mask` [B, T] is 1. */
export function aggregate(x: Tensor, mask: Tensor, how: Aggregation, opts: AggregateOptions = {}): Tensor {
  const masked = F.mul(x, mask);
  switch (how) {
    case 'token_mean': {
      const n = opts.tokenCount ?? mask.g.noTape(() => F.reduceSum(mask));
      return F.div(F.reduceSum(masked), F.maximum(n, 1));
    }
    case 'sequence_mean': {
      const lens = mask.g.noTape(() => F.reduceSum(mask, [1])); // [B]
      const perSeq = F.div(F.reduceSum(masked, [1]), F.maximum(lens, 1)); // [B]
      const rows = mask.g.noTape(() => F.reduceSum(F.cast(F.greater(lens, 0), x.dtype)));
      return F.div(F.reduceSum(perSeq), F.maximum(rows, 1));
    }
    case 'constant': {
      const c = opts.constant;
      if (c === undefined || !(c > 0))
        throw new Error(`aggregation 'constant' needs a positive constant (e.g. the max completion length), got ${c}`);
      return F.div(F.reduceSum(masked), F.mul(rowsOf(x), c));
    }
  }
}
