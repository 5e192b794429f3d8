/**
 * KL folded into the reward: the classic RLHF penalty r − β·KL(π ‖ π_ref) (Stiennon et al. 2020,
 * "Learning to summarize from human feedback"; Ouyang et al. 2022, InstructGPT; REINFORCE++, Hu
 * et al. 2025, which keeps KL out of the loss), applied to the rewarded samples *before* the
 * advantage estimator runs. Pure TypeScript over the rollout's logprobs: no graph, no I/O. In a
 * run, the rl phase's `loss.options.kl.inReward` asks for it (the loss then has no KL term) and the
 * advantage stage applies it to the rewards rows (activities/advantage/step-kl-reward.ts).
 *
 * The per-token KL is computed from the behaviour policy's logprobs (the rollout's, π ≈ π_old)
 * and the reference policy's logprobs of the same completion tokens, with the estimators of
 * `kl.ts` (reverse or forward direction, k1/k2/k3).
 *
 * Placement:
 * - `sequence`: reward ← reward − β Σ_t kl_t (one scalar penalty per sample).
 * - `token`: also processRewards_t ← processRewards_t − β kl_t, and the total reward likewise, so a
 *   token-level estimator (REINFORCE++ returns-to-go) charges each token its own KL while the
 *   remainder `reward − Σ processRewards` (the outcome reward on the last token) is unchanged.
 */
import { parseConfig, z } from '../common/config.js';
import { klEstimatorSchema, klValue } from './kl.js';

export const klRewardOptionsSchema = z.strictObject({
  /** Penalty coefficient β (InstructGPT / REINFORCE++: around 0.01–0.05); 0 leaves rewards unchanged. */
  beta: z.number().min(0).default(0.01),
  /** Per-token estimator (Schulman 2020): k1 is the classic reward penalty log π/π_ref ('k3+' is k3 here: a value, no gradient). */
  estimator: klEstimatorSchema.default('k1'),
  /** reverse KL(π‖π_ref), or forward KL(π_ref‖π) as in RAPO (importance-weighted, see kl.ts). */
  direction: z.enum(['reverse', 'forward']).default('reverse'),
  /** 'token': per-token penalties in processRewards (and the total); 'sequence': the total only. */
  placement: z.enum(['token', 'sequence']).default('token'),
});
export type KlRewardOptions = z.output<typeof klRewardOptionsSchema>;

/** The sample fields the penalty reads and rewrites (an `AdvantageSample` fits). */
export interface KlRewardSample {
  sampleId?: string;
  reward: number;
  processRewards?: ArrayLike<number>;
}

/** Logprobs of one sample's completion tokens, aligned token by token. */
export interface KlRewardLogprobs {
  /** Behaviour-policy logprobs of the completion tokens (from the rollout). */
  logprobs: ArrayLike<number>;
  /** Reference-policy logprobs of the same tokens. */
  refLogprobs: ArrayLike<number>;
  /** Optional 0/1 mask: tokens with 0 get no penalty (e.g. tool output inserted by the environment). */
  mask?: ArrayLike<number>;
}

export interface KlRewardResult<S> {
  /** Copies of the samples with penalised rewards (input order). */
  samples: S[];
  /** Σ_t kl_t per sample (before β). */
  klSums: Float64Array;
  /** Mean over samples of Σ_t kl_t, and mean penalty β Σ_t kl_t. */
  klMean: number;
  penaltyMean: number;
}

export class KlRewardInputError extends Error {
  override readonly name = 'KlRewardInputError';
}

/** Applies the KL penalty to every sample; `logprobs[i]` belongs to `samples[i]`. */
export function klPenalisedRewards<S extends KlRewardSample>(
  samples: readonly S[],
  logprobs: readonly KlRewardLogprobs[],
  options: z.input<typeof klRewardOptionsSchema> = {},
): KlRewardResult<S> {
  const o = parseConfig(klRewardOptionsSchema, options, 'KL reward options');
  if (logprobs.length !== samples.length) {
    throw new KlRewardInputError(
      `KL reward: ${samples.length} samples but ${logprobs.length} logprob entries: give one { logprobs, refLogprobs } per sample, in order`,
    );
  }
  const klSums = new Float64Array(samples.length);
  const out = samples.map((s, i) => {
    const who = s.sampleId !== undefined ? `sample ${s.sampleId}` : `sample #${i}`;
    const { logprobs: lp, refLogprobs: ref, mask } = logprobs[i]!;
    const n = lp.length;
    if (ref.length !== n)
      throw new KlRewardInputError(
        `KL reward: ${who} has ${n} behaviour logprobs but ${ref.length} reference logprobs: both must cover the same completion tokens`,
      );
    if (mask && mask.length !== n) throw new KlRewardInputError(`KL reward: ${who} has a mask of ${mask.length} entries for ${n} tokens`);
    if (s.processRewards && s.processRewards.length !== n) {
      throw new KlRewardInputError(`KL reward: ${who} has ${s.processRewards.length} process rewards for ${n} completion tokens`);
    }
    if (!Number.isFinite(s.reward)) throw new KlRewardInputError(`KL reward: ${who} has a non-finite reward ${s.reward}`);
    const kl = new Float64Array(n);
    let sum = 0;
    for (let t = 0; t < n; t++) {
      if (mask && !mask[t]) continue;
      const a = lp[t]!;
      const b = ref[t]!;
      if (!Number.isFinite(a) || !Number.isFinite(b)) {
        throw new KlRewardInputError(
          `KL reward: ${who} token ${t} has logprob ${a} and reference logprob ${b}: both must be finite (mask the token out if it has none)`,
        );
      }
      kl[t] = klValue(a - b, o.estimator, o.direction);
      sum += kl[t]!;
    }
    klSums[i] = sum;
    const copy: S = { ...s, reward: s.reward - o.beta * sum };
    if (o.placement === 'token') {
      const pr = new Float64Array(n);
      for (let t = 0; t < n; t++) pr[t] = (s.processRewards ? s.processRewards[t]! : 0) - o.beta * kl[t]!;
      copy.processRewards = pr;
    }
    return copy;
  });
  const klMean = samples.length ? klSums.reduce((a, b) => a + b, 0) / samples.length : 0;
  return { samples: out, klSums, klMean, penaltyMean: o.beta * klMean };
}
