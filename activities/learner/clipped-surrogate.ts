/**
 * The clipped surrogate objective of PPO (Schulman et al. 2017, "Proximal Policy Optimization
 * Algorithms") as used by GRPO (Shao et al. 2024, "DeepSeekMath") and its descendants, as a loss
 * builder for the engine's trainStep graph.
 *
 * Per token (m = loss mask, A = advantage, r = importance ratio π_θ / π_old):
 *   ℓ = max(−A·r, −A·clip(r, 1 − ε_low, 1 + ε_high))                       (PPO, clip-higher)
 *   ℓ = min(ℓ, −A·c)   where A < 0, when dual clipping is on                   (dual-clip PPO)
 *   ℓ = w·ℓ,  w = min(π_old / π_rollout, C)   with truncated importance sampling (TIS, `tis`)
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
 *   rollout_logprobs float32 [batch, seq]  (only with `tis`) the logprobs the rollout engine recorded;
 *                                       `old_logprobs` are then the learner's own logprobs of the
 *                                       policy that sampled (scored before the step's first update)
 * Values at positions outside the loss mask are ignored (they may be 0).
 *
 * Numerical guards (as verl has them): the per-token log-ratio is clamped to ±20 before exp
 * (TOKEN_LOG_RATIO_BOUND), the GSPO sequence log-ratio to ±10 (SEQUENCE_LOG_RATIO_BOUND; verl bounds
 * it above at 10), and the KL term's log π/π_ref to ±20 and its k3 estimate to ±10 (KL_BOUND). A
 * clamped value carries no gradient. Only a broken batch gets there: e^20 ≈ 5e8.
 *
 * Metrics (masked token means unless said otherwise): `pg_loss` (the surrogate term alone),
 * `clip_frac_low` (A < 0 and r < 1 − ε_low: the update is held back), `clip_frac_high` (A > 0 and
 * r > 1 + ε_high), `clip_frac` (their sum), `dual_clip_frac` (A < 0 and r > c), `ratio_mean`,
 * `approx_kl` (KL(π_old ‖ π_θ) by k3: r − 1 − log r, per token at most KL_BOUND), `logprob_diff`
 * (mean |log π_θ − log π_old|: at a step's first update without `tis` π_θ is the policy that
 * sampled and π_old the rollout's, so this is the disagreement between the rollout's logprobs and
 * the learner's — the sampling temperature, numerics, or a rollout engine that computes
 * differently; the learner reports it over the whole batch as `mismatch_*`), `log_ratio_clamped`
 * (fraction of loss tokens whose token or sequence log-ratio hit its bound), `kl` and `kl_clamped`
 * (with `kl`: fraction of loss tokens whose KL log-ratio or k3 value was clamped), `tis_weight_mean`
 * and `tis_clip_frac` (with `tis`: mean weight, fraction of tokens capped at C), `entropy` (with the
 * entropy metric or bonus), `tokens` (loss tokens in the micro-batch).
 */
import { parseConfig, z } from '../common/config.js';
import type { Tensor } from '../model/graph.js';
import type { LossBuilder, LossContext } from '../model/losses.js';
import * as F from '../model/ops.js';
import { aggregate, type Aggregation } from './aggregate.js';
import { klEstimatorSchema, klTensor } from './kl.js';

export const klTermSchema = z.strictObject({
  /**
   * Coefficient β of the KL penalty in the loss (GRPO: 0.04; DAPO and Dr.GRPO drop it: 0). With 0
   * the KL is still reported as the `kl` metric.
   */
  beta: z.number().min(0).default(0.04),
  /**
   * Per-token estimator (Schulman 2020, "Approximating KL Divergence"): k1, k2, k3 (GRPO), or
   * 'k3+' (k3's value with k2's gradient). What each optimises as a loss is tabled in README.md.
   */
  estimator: klEstimatorSchema.default('k3'),
  /**
   * 'reverse' KL(π‖π_ref) (GRPO), or 'forward' KL(π_ref‖π) (RAPO, "Unlocking Reasoning
   * Capabilities in LLMs via Reinforcement Learning Exploration": mass-covering, lets the policy
   * explore outside the reference's mode). Forward estimators are importance-weighted by
   * π_ref/π at the sampled tokens — see kl.ts.
   */
  direction: z.enum(['reverse', 'forward']).default('reverse'),
  /**
   * Put the KL into the reward instead of the loss (REINFORCE++, Hu et al. 2025: r_t − β·kl_t per
   * token before the returns are computed; the classic RLHF penalty of InstructGPT): the advantage
   * stage subtracts β·kl_t (this estimator and direction) from each token's reward, and the loss
   * adds no KL term (`kl` is still reported). REINFORCE++ uses k1.
   */
  inReward: z.boolean().default(false),
});

/** |log π_θ − log π_old| per token is clamped to this before exp (verl: ±20). */
export const TOKEN_LOG_RATIO_BOUND = 20;
/** |GSPO sequence log-ratio| (mean over the row's loss tokens) is clamped to this before exp (verl: ≤ 10). */
export const SEQUENCE_LOG_RATIO_BOUND = 10;
/** The k3 KL estimate per token is clamped to ±this (verl's low_var_kl: ±10). */
export const KL_BOUND = 10;

/**
 * Truncated importance sampling (Yao et al. 2025, "Your Efficient RL Framework Secretly Brings You
 * Off-Policy RL Training"; verl's `tis_imp_ratio_cap`): the rollout engine's logprobs π_rollout
 * differ from the learner's π_old for the same weights (another kernel, quantisation, another
 * engine), so samples of π_rollout are re-weighted per token by w = min(π_old(y)/π_rollout(y), C),
 * a constant (no gradient), capped for variance. The PPO ratio is then π_θ/π_old with the learner's
 * own π_old (verl's old_log_prob vs rollout_log_probs).
 */
export const tisSchema = z.strictObject({
  /** The cap C of the weight (the paper and verl's examples: 2). At least 1: on-policy tokens keep weight 1. */
  cap: z.number().min(1).default(2),
});

export const clippedSurrogateSchema = z
  .strictObject({
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
     * with C = `constantNormaliser`). See aggregate.ts. Unset: 'token_mean' for a loss built on its
     * own; in a run's rl phase, the advantage estimator's paired aggregation (GSPO's sequence ratios:
     * 'sequence_mean'), resolved by activities/run/config.ts and recorded in run.json.
     */
    aggregation: z.enum(['token_mean', 'sequence_mean', 'constant']).optional(),
    /** C for 'constant' aggregation: typically the max completion length (Dr.GRPO). */
    constantNormaliser: z.number().positive().optional(),
    /**
     * 'token_mean' over the whole batch across micro-batches: declares the scalar input
     * `loss_token_count` (total loss tokens / number of micro-batches) used as the denominator.
     */
    globalTokenCount: z.boolean().default(false),
    /** KL penalty to a reference policy (declares `ref_logprobs`); null: none. */
    kl: klTermSchema.nullable().default(null),
    /**
     * Truncated importance sampling on the rollout/learner ratio (`tisSchema`; declares
     * `rollout_logprobs`). The learner then scores the batch under the sampling weights before the
     * step's first update and feeds those as `old_logprobs`. Null: off (the ratio's π_old is the
     * rollout's logprob).
     */
    tis: tisSchema.nullable().default(null),
    /** Entropy bonus coefficient α: the loss subtracts α·agg(H) (PPO's entropy bonus). */
    entropyCoef: z.number().min(0).default(0),
    /** Report the mean next-token entropy as a metric (costs one pass over the logits). */
    entropyMetric: z.boolean().default(true),
  })
  .superRefine((o, ctx) => {
    if (o.aggregation === 'constant' && o.constantNormaliser === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['constantNormaliser'],
        message: "aggregation 'constant' needs constantNormaliser (e.g. the max completion length)",
      });
    }
    if (o.globalTokenCount && (o.aggregation ?? 'token_mean') !== 'token_mean') {
      ctx.addIssue({ code: 'custom', path: ['globalTokenCount'], message: "globalTokenCount applies to aggregation 'token_mean' only" });
    }
  });
export type ClippedSurrogateOptions = z.output<typeof clippedSurrogateSchema>;
export type ClippedSurrogateInput = z.input<typeof clippedSurrogateSchema>;

/** Masked token mean, not differentiated (for metrics). */
function tokenMean(ctx: LossContext, x: Tensor): Tensor {
  return ctx.g.noTape(() => F.div(F.reduceSum(F.mul(x, ctx.lossMask)), F.maximum(F.reduceSum(ctx.lossMask), 1)));
}

/** |x| (no Abs op in the library: max(x, −x)). */
const absOf = (x: Tensor) => F.maximum(x, F.neg(x));

function fraction(ctx: LossContext, cond: Tensor): Tensor {
  return tokenMean(
    ctx,
    ctx.g.noTape(() => F.cast(cond, ctx.logprobs.dtype)),
  );
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
      const agg = (x: Tensor) =>
        aggregate(x, mask, (o.aggregation ?? 'token_mean') as Aggregation, { constant: o.constantNormaliser, tokenCount });

      // log ratio, zeroed outside the mask (so junk there cannot overflow exp), clamped before exp
      const rawLogRatio = F.mul(F.sub(lp, old), mask);
      const tokLogRatio = F.clip(rawLogRatio, -TOKEN_LOG_RATIO_BOUND, TOKEN_LOG_RATIO_BOUND);
      let clamped = g.noTape(() => F.greater(absOf(rawLogRatio), TOKEN_LOG_RATIO_BOUND));
      let logRatio: Tensor;
      if (o.ratioLevel === 'token') logRatio = tokLogRatio;
      else {
        const len = g.noTape(() => F.maximum(F.reduceSum(mask, [1], true), 1));
        const seqLogRatio = F.div(F.reduceSum(tokLogRatio, [1], true), len); // [B,1]
        const bound = SEQUENCE_LOG_RATIO_BOUND;
        const raw =
          o.ratioLevel === 'sequence'
            ? F.expand(seqLogRatio, mask) // broadcast to [B,T]
            : F.add(F.stopGradient(seqLogRatio), F.sub(lp, F.stopGradient(lp))); // value s_i, per-token gradient
        logRatio = F.mul(F.clip(raw, -bound, bound), mask);
        clamped = g.noTape(() => F.or(clamped, F.greater(absOf(F.expand(seqLogRatio, mask)), bound)));
      }
      const ratio = F.exp(logRatio);
      const clipped = F.clip(ratio, 1 - o.clipLow, 1 + o.clipHigh);
      const negA = F.neg(A);
      let pg = F.maximum(F.mul(negA, ratio), F.mul(negA, clipped));
      if (o.dualClip !== null) {
        const bound = F.mul(negA, o.dualClip);
        pg = F.where(F.less(A, 0), F.minimum(pg, bound), pg);
      }
      let tisWeight: Tensor | null = null;
      let tisCapped: Tensor | null = null;
      if (o.tis) {
        // w = min(π_old/π_rollout, C) = exp(min(log π_old − log π_rollout, log C)): a constant weight
        const rollout = ctx.input('rollout_logprobs', 'float32', ['batch', 'seq']);
        const logCap = Math.log(o.tis.cap);
        g.noTape(() => {
          const x = F.mul(F.sub(old, rollout), mask);
          tisWeight = F.exp(F.minimum(x, logCap));
          tisCapped = F.greater(x, logCap);
        });
        pg = F.mul(pg, tisWeight!);
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
        metrics.approx_kl = tokenMean(ctx, F.minimum(F.sub(F.sub(ratio, 1), logRatio), KL_BOUND)); // k3 ≥ 0, clamped like the KL term
        metrics.logprob_diff = tokenMean(ctx, absOf(tokLogRatio));
        metrics.log_ratio_clamped = fraction(ctx, clamped);
        if (tisWeight && tisCapped) {
          metrics.tis_weight_mean = tokenMean(ctx, tisWeight);
          metrics.tis_clip_frac = fraction(ctx, tisCapped);
        }
        metrics.tokens = F.reduceSum(mask);
      });

      if (o.kl) {
        const ref = ctx.input('ref_logprobs', 'float32', ['batch', 'seq']);
        const rawKlLogRatio = F.mul(F.sub(lp, ref), mask);
        let kl = klTensor(F.clip(rawKlLogRatio, -TOKEN_LOG_RATIO_BOUND, TOKEN_LOG_RATIO_BOUND), o.kl.estimator, o.kl.direction);
        let klClamped = g.noTape(() => F.greater(absOf(rawKlLogRatio), TOKEN_LOG_RATIO_BOUND));
        if (String(o.kl.estimator).startsWith('k3')) {
          const unclamped = kl;
          kl = F.clip(kl, -KL_BOUND, KL_BOUND);
          klClamped = g.noTape(() => F.or(klClamped, F.greater(absOf(unclamped), KL_BOUND)));
        }
        if (o.kl.beta > 0 && !o.kl.inReward) loss = F.add(loss, F.mul(agg(kl), o.kl.beta));
        metrics.kl = tokenMean(ctx, kl);
        metrics.kl_clamped = fraction(ctx, klClamped);
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
