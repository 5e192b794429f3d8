/**
 * The KL penalty in the rewards of a step, before its advantages (REINFORCE++, Hu et al. 2025:
 * r_t = [t = last]·r − β·kl_t, then returns-to-go; the per-token RLHF penalty of InstructGPT,
 * Ouyang et al. 2022). The rl phase asks for it with `loss.options.kl.inReward`; the loss then has
 * no KL term. Pure: rewards rows in, penalised rewards rows out, which the estimator reads as
 * before (the total in `reward`, the per-token part in `token_rewards`, so REINFORCE++ charges
 * each token its own KL and a group estimator sees the total reward − β Σ_t kl_t).
 *
 * kl_t is `klValue` (activities/learner/kl.ts) of log π_old(y_t) − log π_ref(y_t): π_old is the
 * rollout's `behaviour_logprobs` (the sampling distribution, after temperature), π_ref the phase's
 * reference checkpoint scored on the same tokens at the same temperature — `reference` maps
 * `${prompt_id}#${sample_id}` to those logprobs, one per completion token. In a run they are the
 * step's reference_logprobs artifact (scoreReferenceLogprobs, activities/learner/reference-logprobs.ts),
 * read with `referenceByKey`; computeStepAdvantages passes them to `stepAdvantages` as `klReward`.
 */
import { klPenalisedRewards, type KlRewardOptions } from '../learner/kl-reward.js';
import type { ReferenceLogprobsRow, RewardsRow, RolloutsRow } from '../store/schemas.js';
import { AdvantageInputError } from './types.js';

/**
 * The reference logprobs of a step's reference_logprobs artifact (scoreReferenceLogprobs,
 * activities/learner/reference-logprobs.ts) as `klPenalisedRewardRows` takes them, by
 * `${prompt_id}#${sample_id}`; a sample listed twice is an error.
 */
export function referenceByKey(rows: readonly ReferenceLogprobsRow[]): Map<string, ArrayLike<number>> {
  const out = new Map<string, ArrayLike<number>>();
  for (const r of rows) {
    const k = `${r.prompt_id}#${r.sample_id}`;
    if (out.has(k))
      throw new AdvantageInputError(`sample ${r.prompt_id}/${r.sample_id} has two reference logprobs rows: each rollout is scored once`);
    out.set(k, r.ref_logprobs);
  }
  return out;
}

/** The KL term of the loss options that `inReward` moves into the rewards. */
export type KlInReward = Pick<KlRewardOptions, 'beta' | 'estimator' | 'direction'>;

export interface PenalisedRewards {
  rewards: RewardsRow[];
  /** Mean over the penalised samples of Σ_t kl_t, and of the penalty β Σ_t kl_t. */
  klMean: number;
  penaltyMean: number;
}

/** Applies the per-token KL penalty to every rewards row that has a reward (rows without one pass unchanged). */
export function klPenalisedRewardRows(
  rollouts: readonly RolloutsRow[],
  rewards: readonly RewardsRow[],
  reference: ReadonlyMap<string, ArrayLike<number>>,
  kl: KlInReward,
): PenalisedRewards {
  const key = (r: { prompt_id: string; sample_id: number }) => `${r.prompt_id}#${r.sample_id}`;
  const rolloutOf = new Map(rollouts.map((r) => [key(r), r]));
  const which: number[] = [];
  const samples: { sampleId: string; reward: number; processRewards?: ArrayLike<number> }[] = [];
  const logprobs: { logprobs: ArrayLike<number>; refLogprobs: ArrayLike<number> }[] = [];
  rewards.forEach((w, i) => {
    if (w.reward === null) return;
    const k = key(w);
    const r = rolloutOf.get(k);
    if (!r)
      throw new AdvantageInputError(
        `rewards row ${w.prompt_id}/${w.sample_id} belongs to no rollout row: pass the rewards of this step's shards only`,
      );
    const ref = reference.get(k);
    if (!ref)
      throw new AdvantageInputError(
        `sample ${w.prompt_id}/${w.sample_id} has no reference logprobs: kl.inReward needs π_ref of every rewarded completion`,
      );
    which.push(i);
    samples.push({
      sampleId: `${w.prompt_id}/${w.sample_id}`,
      reward: w.reward,
      ...(w.token_rewards ? { processRewards: w.token_rewards } : {}),
    });
    logprobs.push({ logprobs: r.behaviour_logprobs, refLogprobs: ref });
  });
  let out: RewardsRow[] = rewards.slice();
  let klMean = 0;
  let penaltyMean = 0;
  if (samples.length > 0) {
    let res: ReturnType<typeof klPenalisedRewards<(typeof samples)[number]>>;
    try {
      res = klPenalisedRewards(samples, logprobs, { ...kl, placement: 'token' });
    } catch (err) {
      throw new AdvantageInputError((err as Error).message);
    }
    out = rewards.slice();
    which.forEach((i, j) => {
      const s = res.samples[j]!;
      out[i] = { ...rewards[i]!, reward: s.reward, token_rewards: Float32Array.from(s.processRewards!) };
    });
    klMean = res.klMean;
    penaltyMean = res.penaltyMean;
  }
  return { rewards: out, klMean, penaltyMean };
}
