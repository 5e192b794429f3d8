/**
 * R^3L credit assignment (2026, "R^3L: Reflect-then-Retry Reinforcement Learning with
 * Language-Guided Exploration, Pivotal Credit, and Positive Amplification").
 *
 * Reflect-then-retry turns a failed trajectory into a retry that restarts from the diagnosed
 * failure point, so the two share a prefix and differ from the pivot on. On top of group-mean
 * advantages (GRPO's, with the same scaling choices) this estimator applies the paper's two
 * exploitation mechanisms:
 *
 * - Pivotal Credit Assignment: for every failed/retry pair, the shared prefix [0, pivot) is
 *   excluded from the gradient of both trajectories (loss mask 0) — the prefix was not what made
 *   one fail and the other succeed, and a trajectory-level reward would wrongly penalise it on
 *   the failed one. Only the diverging suffixes carry the contrastive signal. The pairing is
 *   explicit input (`AdvantageBatch.pairs`): `{ failedSampleId, retrySampleId, pivot? }`; without
 *   `pivot`, it is the first position where the two samples' `tokenIds` differ. A sample in
 *   several pairs keeps the shortest shared prefix masked (it diverges from some partner after it).
 *
 * - Positive Amplification: failures dominate groups on hard tasks and retries are off-policy,
 *   so the few positive signals are up-weighted: a successful sample (reward >= successThreshold)
 *   with a positive advantage has it multiplied by `amplification`.
 */
import { z } from '../common/config.js';
import { finish, groupMeanAdvantages, groupOptionsShape, scaledGroupOptionsShape } from './batch.js';
import { AdvantageInputError, type AdvantageBatch, type AdvantageResult } from './types.js';

export const r3lOptionsSchema = z.strictObject({
  estimator: z.literal('r3l'),
  /** Scaling of the group-mean-centred reward, exactly as GRPO's. */
  ...scaledGroupOptionsShape,
  /**
   * Positive Amplification factor (R^3L) on positive advantages of successful samples; 1 turns
   * it off. The abstract gives no value: 2 is a starting point to tune.
   */
  amplification: z.number().min(1).default(2),
  /** A sample with reward >= this is successful (1 for binary verifiable rewards). */
  successThreshold: z.number().default(1),
  /** Pivotal Credit Assignment on the given pairs (R^3L); false: pairs are ignored. */
  pivotalCredit: z.boolean().default(true),
  ...groupOptionsShape,
});
export type R3lOptions = z.output<typeof r3lOptionsSchema>;

export function r3l(batch: AdvantageBatch, options: R3lOptions): AdvantageResult {
  const samples = batch.samples;
  // GRPO's advantages (this validates the samples); R^3L then masks pivots and amplifies.
  const { outputs, groups } = groupMeanAdvantages(samples, options.scale, options.std, options.eps, options.dropZeroVarianceGroups);
  const index = new Map(samples.map((s, i) => [s.sampleId, i]));

  // Pivots: the start of each paired sample's gradient-carrying suffix.
  const maskStart = new Map<number, number>();
  const pairs = options.pivotalCredit ? (batch.pairs ?? []) : [];
  pairs.forEach((pair, k) => {
    const what = `pair ${k} (failed "${pair.failedSampleId}", retry "${pair.retrySampleId}")`;
    const fi = index.get(pair.failedSampleId);
    const ri = index.get(pair.retrySampleId);
    if (fi === undefined || ri === undefined) {
      throw new AdvantageInputError(`${what} names a sample that is not in the batch: pair only samples of this batch`);
    }
    if (fi === ri) throw new AdvantageInputError(`${what} pairs a sample with itself: a retry is a separate trajectory`);
    const f = samples[fi]!;
    const r = samples[ri]!;
    if (f.groupId !== r.groupId) {
      throw new AdvantageInputError(
        `${what} spans groups "${f.groupId}" and "${r.groupId}": a retry answers the same prompt as the failure`,
      );
    }
    if (f.completionLength === undefined || r.completionLength === undefined) {
      throw new AdvantageInputError(`${what}: both samples need completionLength, pivotal credit masks their shared prefix`);
    }
    const limit = Math.min(f.completionLength, r.completionLength);
    let pivot = pair.pivot;
    const ft = f.tokenIds;
    const rt = r.tokenIds;
    if (pivot === undefined) {
      if (!ft || !rt)
        throw new AdvantageInputError(`${what} has no pivot and the samples lack tokenIds: give the pivot or both token id lists`);
      if (ft.length !== f.completionLength || rt.length !== r.completionLength) {
        throw new AdvantageInputError(`${what}: tokenIds must hold exactly completionLength ids for both samples`);
      }
      pivot = 0;
      while (pivot < limit && ft[pivot] === rt[pivot]) pivot++;
    } else {
      if (!Number.isSafeInteger(pivot) || pivot < 0 || pivot > limit) {
        throw new AdvantageInputError(
          `${what} has pivot ${String(pivot)}: give a position in [0, ${limit}] (the shorter completion's length)`,
        );
      }
      if (ft && rt) {
        for (let t = 0; t < pivot; t++) {
          if (ft[t] !== rt[t]) {
            throw new AdvantageInputError(
              `${what} has pivot ${pivot} but the token ids already differ at position ${t}: the prefix before the pivot must be shared`,
            );
          }
        }
      }
    }
    for (const i of [fi, ri]) maskStart.set(i, Math.min(maskStart.get(i) ?? Infinity, pivot));
  });

  let amplifiedSamples = 0;
  let pivotMaskedTokens = 0;
  outputs.forEach((out, i) => {
    if (!out.keep) return;
    if (out.advantage > 0 && samples[i]!.reward >= options.successThreshold && options.amplification !== 1) {
      out.advantage *= options.amplification;
      amplifiedSamples++;
    }
    const start = maskStart.get(i);
    if (start !== undefined && out.lossMask) {
      out.lossMask.fill(0, 0, start);
      pivotMaskedTokens += start;
    }
  });
  return finish('r3l', samples, groups, outputs, {
    pairs: pairs.length,
    pairedSamples: maskStart.size,
    amplifiedSamples,
    pivotMaskedTokens,
  });
}
