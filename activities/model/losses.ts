/**
 * Pluggable losses for the trainStep graph.
 *
 * A `LossBuilder` runs at graph-build time. It receives the policy's per-token logprobs of the
 * batch's tokens (a differentiable tensor of the graph) and the batch's masks, may declare extra
 * graph inputs (old / reference logprobs, advantages, ...), and returns a scalar loss tensor plus
 * named scalar metrics. The trainStep graph differentiates the loss with respect to every
 * parameter, so anything built from `ctx.logprobs` / `ctx.entropy()` with the ops of `ops.ts`
 * trains. Tensors built from extra inputs alone are constants (no gradient flows into inputs).
 *
 * Shapes and alignment (B = batch, T = sequence length of `input_ids`):
 * - `ctx.logprobs` float32 [B, T]: entry t = log p(input_ids[t] | input_ids[<t]); entry 0 is 0
 *   (nothing predicts the first token). Per-token tensors you declare should use the same
 *   alignment (e.g. `old_logprobs` [B, T] as returned by the score graph).
 * - `ctx.lossMask` float32 [B, T]: the `loss_mask` input, 1 where a token counts (completion
 *   tokens, never position 0 or padding).
 * - `ctx.attentionMask` float32 [B, T]: 1 for real tokens, 0 for padding.
 *
 * Extra inputs: `ctx.input(name, dtype, dims)` declares a graph input; dims are numbers or the
 * symbols 'batch' / 'seq'. The caller feeds it under the same name (`TrainBatch.extra[name]`).
 * Metric names must be unique; they come out of the graph as `metric.<name>` and are reported per
 * step next to `loss` and `grad_norm`.
 *
 * Gradient accumulation: each micro-batch's gradient is the gradient of its own loss; the apply
 * step averages over micro-batches (see `train.ts`). A loss that wants a different normaliser
 * (e.g. DAPO's token-level mean over the whole batch) can declare a scalar input for it.
 *
 * `key` identifies the loss and its build-time options: it is part of the session-cache key, so
 * two builders with different options must have different keys.
 */
import type { DType, Graph, Tensor } from './graph.js';
import type { TrainBatch } from './engine-types.js';
import * as F from './ops.js';

export interface LossContext {
  readonly g: Graph;
  /**
   * float32 [B, T] per-token logprobs under the current parameters (differentiable). Reading it
   * throws for a sequence-classifier model (no LM head).
   */
  readonly logprobs: Tensor;
  /**
   * float32 [B] the score head's reward of each sequence, differentiable: present only for a
   * sequence-classifier model (`config.classifier`, see `graphs/reward.ts`), undefined otherwise.
   */
  readonly rewards?: Tensor;
  /** float32 [B, T] from the `loss_mask` input. */
  readonly lossMask: Tensor;
  /** float32 [B, T]: 1 for real tokens. */
  readonly attentionMask: Tensor;
  /** float32 [B, T] entropy of each next-token distribution (differentiable; built on first use). */
  entropy(): Tensor;
  /** Declares an extra graph input (dims: numbers, 'batch' or 'seq'). */
  input(name: string, dtype: DType, dims: (number | 'batch' | 'seq')[]): Tensor;
}

export interface LossResult {
  /** Scalar loss to minimise. */
  loss: Tensor;
  /** Named scalar metrics exported with the step. */
  metrics?: Record<string, Tensor>;
}

export interface LossBuilder {
  /** Identifies the loss and its build-time options (session-cache key). */
  readonly key: string;
  build(ctx: LossContext): LossResult;
  /**
   * Optional check of a batch before any work (`ModelEngine.trainStep` calls it per micro-batch):
   * throws an error naming `what` and the problem (e.g. an odd number of rows for pairwise losses).
   */
  validate?(batch: TrainBatch, what: string): void;
}

/** Masked mean of a [B, T] tensor over the tokens where `mask` is 1 (0 when the mask is empty). */
export function maskedMean(x: Tensor, mask: Tensor): Tensor {
  const n = F.maximum(F.reduceSum(mask), 1);
  return F.div(F.reduceSum(F.mul(x, mask)), n);
}

/**
 * Supervised fine-tuning: token-level cross-entropy (negative log-likelihood) averaged over the
 * tokens of `loss_mask`. Metrics: `tokens` (count), `ppl` (exp of the loss), `entropy` (mean
 * next-token entropy over the same tokens, not differentiated into the loss).
 */
export function sftLoss(opts: { entropyMetric?: boolean } = {}): LossBuilder {
  const withEntropy = opts.entropyMetric ?? false;
  return {
    key: `sft:${withEntropy ? 'H' : ''}`,
    build(ctx) {
      const loss = F.neg(maskedMean(ctx.logprobs, ctx.lossMask));
      const metrics: Record<string, Tensor> = {
        tokens: ctx.g.noTape(() => F.reduceSum(ctx.lossMask)),
        ppl: ctx.g.noTape(() => F.exp(loss)),
      };
      if (withEntropy) metrics.entropy = ctx.g.noTape(() => maskedMean(ctx.entropy(), ctx.lossMask));
      return { loss, metrics };
    },
  };
}
