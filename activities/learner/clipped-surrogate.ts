/**
 * The clipped surrogate objective of PPO (Schulman et al. 2017, "Proximal Policy Optimization
 * Algorithms") as used by GRPO (Shao et al. 2024, "DeepSeekMath") and its descendants, as a loss
 * builder for the engine's trainStep graph.
 *
 * Per token (m = loss mask, A = advantage, r = importance ratio π_θ / π_old):
 *   ℓ = max(−A·r, −A·clip(r, 1 − ε_low, 1 + ε_high))                       (PPO, clip-higher)
 *   ℓ = min(ℓ, −A·c)   where A < 0, when dual clipping is on                   (dual-clip PPO)
 *   loss = agg(ℓ) + β·agg(kl) − α·agg(H)
 * with `agg` the configured aggregation (`aggregate.ts`), kl a per-token KL estimate to the
 * reference policy (`kl.ts`) and H the next-token entropy.
 *
 * Graph inputs it declares (fed through `TrainBatch.extra`):
 *   old_logprobs  float32 [batch, seq]  behaviour-policy logprobs of the batch's tokens, aligned
 *                                       like the score graph's output (entry t predicts token t)
 *   advantages    float32 [batch] or [batch, seq]   (option `advantages`)
 *   ref_logprobs  float32 [batch, seq]  reference-policy logprobs (only with `kl`)
 *   loss_token_count float32 []         (only with `globalTokenCount`) total loss tokens of the
 *                                       whole batch / number of micro-batches
 * Values at positions outside the loss mask are ignored (they may be 0).
 *
 * Metrics (masked token means unless said otherwise): `pg_loss` (the surrogate term alone),
 * `clip_frac_low` (A < 0 and r < 1 − ε_low: the update is held back), `clip_frac_high` (A > 0 and
 * r > 1 + ε_high), `clip_frac` (their sum), `dual_clip_frac` (A < 0 and r > c), `ratio_mean`,
 * `approx_kl` (KL(π_old ‖ π_θ) by k3: r − 1 − log r), `logprob_diff` (mean |log π_θ − log π_old|:
 * at a step's first update π_θ is the policy that sampled, so this is the disagreement between the
 * rollout's logprobs and the learner's — the sampling temperature, numerics, or a rollout engine
 * that computes differently), `kl` (with `kl`), `entropy` (with the entropy metric or bonus),
 * `tokens` (loss tokens in the micro-batch).
 */
import { parseConfig, z } from '../common/config.js';
import type { Tensor } from '../model/graph.js';
import type { LossBuilder, LossContext } from '../model/losses.js';
import * as F from '../model/ops.js';
import { aggregate, type Aggregation } from './aggregate.js';
import { klTensor } from './kl.js';

export const klTermSchema = z.strictObject({
  /**
   * Coefficient β of the KL penalty in the loss (GRPO: 0.04; DAPO and Dr.GRPO drop it: 0). With 0
   * the KL is still reported as the `kl` metric.
   */
  beta: z.number().min(0).default(0.04),
  /** Per-token estimator (Schulman 2020, "Approximating KL Divergence"); GRPO uses k3. */
  estimator: z.enum(['k1', 'k2', 'k3']).default('k3'),
  /**
   * 'reverse' KL(π‖π_ref) (GRPO), or 'forward' KL(π_ref‖π) (RAPO, "Unlocking Reasoning
   * Capabilities in LLMs via Reinforcement Learning Exploration": mass-covering, lets the policy
   * explore outside the reference's mode). Forward estimators are importance-weighted by
   * π_ref/π at the sampled tokens — see kl.ts.
   */
  direction: z.enum(['reverse', 'forward']).default('reverse'),
});

export const clippedSurrogateSchema = z.strictObject({
  /** ε_low: the ratio is clipped below at 1 − ε_low (PPO: 0.2; GSPO: 3e-4 with sequence ratios). */
  clipLow: z.number().min(0).lt(1).default(0.2),
  /**
   * ε_high: the ratio is clipped above at 1 + ε_high. Raising it above ε_low ("clip-higher", DAPO,
   * Yu et al. 2025: 0.28) leaves room for low-probability tokens to grow and fights entropy
   * collapse. GSPO: 4e-4.
   */
  clipHigh: z.number().min(0).default(0.2),
  /**
   * Dual clip c > 1 (Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep
   * Reinforcement Learning"): for negative advantages the loss is bounded by −A·c, so a token whose
   * ratio has run far above 1 cannot produce an unbounded update. Null: off (verl uses 3).
   */
  dualClip: z.number().gt(1).nullable().default(null),
  /**
   * Importance ratio level:
   * - 'token': r_t = π_θ(y_t)/π_old(y_t) (PPO/GRPO).
   * - 'sequence': s_i = exp(mean_t log(π_θ/π_old)) — the length-normalised sequence ratio of GSPO
   *   (Zheng et al. 2025, "Group Sequence Policy Optimization"), shared by every token of the row.
   * - 'sequence_token': GSPO-token, s_{i,t} = sg[s_i]·π_θ(y_t)/sg[π_θ(y_t)]: the value of s_i with a
   *   per-token gradient, for per-token advantages.
   */
  ratioLevel: z.enum(['token', 'sequence', 'sequence_token']).default('token'),
  /** Shape of the `advantages` input: one per sequence ([batch]) or one per token ([batch, seq]). */
  advantages: z.enum(['sequence', 'token']).default('sequence'),
  /**
   * 'token_mean' (DAPO), 'sequence_mean' (GRPO: mean of per-sequence token means; GSPO averages
   * per-sequence losses, which this gives with sequence ratios), 'constant' (Dr.GRPO: Σ / (C·B)
   * with C = `constantNormaliser`). See aggregate.ts.
   */
  aggregation: z.enum(['token_mean', 'sequence_mean', 'constant']).default('token_mean'),
  /** C for 'constant' aggregation: typically the max completion length (Dr.GRPO). */
  constantNormaliser: z.number().positive().optional(),
  /**
   * 'token_mean' over the whole batch across micro-batches: declares the scalar input
   * `loss_token_count` (total loss tokens / number of micro-batches) used as the denominator.
   */
  globalTokenCount: z.boolean().default(false),
  /** KL penalty to a reference policy (declares `ref_logprobs`); null: none. */
  kl: klTermSchema.nullable().default(null),
  /** Entropy bonus coefficient α: the loss subtracts α·agg(H) (PPO's entropy bonus). */
  entropyCoef: z.number().min(0).default(0),
  /** Report the mean next-token entropy as a metric (costs one pass over the logits). */
  entropyMetric: z.boolean().default(true),
}).superRefine((o, ctx) => {
  if (o.aggregation === 'constant' && o.constantNormaliser === undefined) {
    ctx.addIssue({ code: 'custom', path: ['constantNormaliser'], message: "aggregation 'constant' needs constantNormaliser (e.g. the max completion length)" });
  }
  if (o.globalTokenCount && o.aggregation !== 'token_mean') {
    ctx.addIssue({ code: 'custom', path: ['globalTokenCount'], message: "globalTokenCount applies to aggregation 'token_mean' only" });
  }
});
export type ClippedSurrogateOptions = z.output<typeof clippedSurrogateSchema>;
export type ClippedSurrogateInput = z.input<typeof clippedSurrogateSchema>;

/** Masked token mean, not differentiated (for metrics). */
function tokenMean(ctx: LossContext, x: Tensor): Tensor {
  return ctx.g.noTape(() => F.div(F.reduceSum(F.mul(x, ctx.lossMask)), F.maximum(F.reduceSum(ctx.lossMask), 1)));
}

function fraction(ctx: LossContext, cond: Tensor): Tensor {
  return tokenMean(ctx, ctx.g.noTape(() => F.cast(cond, ctx.logprobs.dtype)));
}

/** Builds the clipped-surrogate loss (options validated; defaults filled). */
export function clippedSurrogateLoss(input: ClippedSurrogateInput = {}): LossBuilder {
  const o = parseConfig(clippedSurrogateSchema, input, 'clipped_surrogate options');
  return {
    key: `clipped_surrogate:${JSON.stringify(o)}`,
    build(ctx) {
      const { g, lossMask: mask } = ctx;
      const lp = ctx.logprobs;
      const old = ctx.input('old_logprobs', 'float32', ['batch', 'seq']);
      const adv = ctx.input('advantages', 'float32', o.advantages === 'sequence' ? ['batch'] : ['batch', 'seq']);
      const A = o.advantages === 'sequence' ? F.unsqueeze(adv, [1]) : adv; // [B,1] or [B,T]
      const tokenCount = o.globalTokenCount ? ctx.input('loss_token_count', 'float32', []) : undefined;
      const agg = (x: Tensor) => aggregate(x, mask, o.aggregation as Aggregation, { constant: o.constantNormaliser, tokenCount });

      // log ratio, zeroed outside the mask (so junk there cannot overflow exp)
      const tokLogRatio = F.mul(F.sub(lp, old), mask);
      let logRatio: Tensor;
      if (o.ratioLevel === 'token') logRatio = tokLogRatio;
      else {
        const len = g.noTape(() => F.maximum(F.reduceSum(mask, [1], true), 1));
        const seqLogRatio = F.div(F.reduceSum(tokLogRatio, [1], true), len); // [B,1]
        logRatio = o.ratioLevel === 'sequence'
          ? F.mul(F.expand(seqLogRatio, mask), mask) // broadcast to [B,T]
          : F.mul(F.add(F.stopGradient(seqLogRatio), F.sub(lp, F.stopGradient(lp))), mask);
      }
      const ratio = F.exp(logRatio);
      const clipped = F.clip(ratio, 1 - o.clipLow, 1 + o.clipHigh);
      const negA = F.neg(A);
      let pg = F.maximum(F.mul(negA, ratio), F.mul(negA, clipped));
      if (o.dualClip !== null) {
        const bound = F.mul(negA, o.dualClip);
        pg = F.where(F.less(A, 0), F.minimum(pg, bound), pg);
      }
      const pgLoss = agg(pg);
      let loss = pgLoss;

      const metrics: Record<string, Tensor> = {};
      metrics.pg_loss = g.noTape(() => F.identity(pgLoss));
      g.noTape(() => {
        const low = F.and(F.less(A, 0), F.less(ratio, 1 - o.clipLow));
        const high = F.and(F.greater(A, 0), F.greater(ratio, 1 + o.clipHigh));
        metrics.clip_frac_low = fraction(ctx, low);
        metrics.clip_frac_high = fraction(ctx, high);
        metrics.clip_frac = F.add(metrics.clip_frac_low, metrics.clip_frac_high);
        if (o.dualClip !== null) metrics.dual_clip_frac = fraction(ctx, F.and(F.less(A, 0), F.greater(ratio, o.dualClip)));
        metrics.ratio_mean = tokenMean(ctx, ratio);
        metrics.approx_kl = tokenMean(ctx, F.sub(F.sub(ratio, 1), logRatio));
        metrics.logprob_diff = tokenMean(ctx, F.maximum(tokLogRatio, F.neg(tokLogRatio)));
        metrics.tokens = F.reduceSum(mask);
      });

      if (o.kl) {
        const ref = ctx.input('ref_logprobs', 'float32', ['batch', 'seq']);
        const kl = klTensor(F.mul(F.sub(lp, ref), mask), o.kl.estimator, o.kl.direction);
        if (o.kl.beta > 0) loss = F.add(loss, F.mul(agg(kl), o.kl.beta));
        metrics.kl = tokenMean(ctx, kl);
      }
      if (o.entropyCoef > 0 || o.entropyMetric) {
        const h = ctx.entropy();
        if (o.entropyCoef > 0) loss = F.sub(loss, F.mul(agg(h), o.entropyCoef));
        metrics.entropy = tokenMean(ctx, h);
      }
      return { loss, metrics };
    },
  };
}
