/**
 * Preference pairs from a group of scored samples, for online DPO (Guo et al. 2024, "Direct
 * Language Model Alignment from Online AI Feedback": two samples of the policy per prompt, the
 * annotator's preference decides; here the run's reward ranks `groupSize` samples, as Self-Exploring
 * Language Models rank theirs with a reward model): per group, chosen = the sample with the highest
 * reward and rejected = the one with the lowest, the first in the group's order on a tie for either
 * place. A group gives no pair when all its scored rewards are equal (`tied`) or when it has fewer
 * than two usable samples (`tooFew`; a sample is usable when it has a reward and at least one
 * completion token). Pure and deterministic: the same samples in the same order give the same pairs.
 */

/** One sample as the pair selection sees it. */
export interface PreferenceSample {
  groupId: string;
  promptId: string;
  sampleId: number;
  /** The run's total reward; null when the reward failed and the error policy dropped the sample. */
  reward: number | null;
  completionLength: number;
}

export interface PreferencePair {
  groupId: string;
  promptId: string;
  chosen: PreferenceSample & { reward: number };
  rejected: PreferenceSample & { reward: number };
}

export interface PreferencePairsResult {
  /** One per group with a reward gap, in order of each group's first sample. */
  pairs: PreferencePair[];
  /** Groups whose usable samples' rewards are all equal. */
  tied: number;
  /** Groups with fewer than two usable samples. */
  tooFew: number;
}

export function preferencePairs(samples: readonly PreferenceSample[]): PreferencePairsResult {
  const groups = new Map<string, PreferenceSample[]>();
  for (const s of samples) {
    const g = groups.get(s.groupId);
    if (g) g.push(s);
    else groups.set(s.groupId, [s]);
  }
  const pairs: PreferencePair[] = [];
  let tied = 0;
  let tooFew = 0;
  for (const [groupId, group] of groups) {
    const usable = group.filter((s): s is PreferenceSample & { reward: number } => s.reward !== null && s.completionLength > 0);
    if (usable.length < 2) {
      tooFew++;
      continue;
    }
    let best = usable[0]!;
    let worst = usable[0]!;
    for (const s of usable) {
      if (s.reward > best.reward) best = s;
      if (s.reward < worst.reward) worst = s;
    }
    if (!(best.reward > worst.reward)) {
      tied++;
      continue;
    }
    pairs.push({ groupId, promptId: best.promptId, chosen: best, rejected: worst });
  }
  return { pairs, tied, tooFew };
}
