/**
 * Per-turn advantages of multi-turn episodes (the run's `environment.advantage: turn`): a turn-level
 * group baseline, after the turn-level credit assignment of multi-turn GRPO (MT-GRPO; Zeng et al.
 * 2025, "Reinforcing Multi-Turn Reasoning in LLM Agents via Turn-Level Credit Assignment").
 *
 * For episode i of a group with outcome reward R_i and per-turn process rewards p_{i,s} (the sum
 * of its `token_rewards` over turn s's policy tokens; 0 without them), the return of its turn t is
 *   G_{i,t} = R_i + Σ_{s ≥ t} p_{i,s}
 * and its advantage is normalised over the episodes of the group that reached turn t:
 *   A_{i,t} = (G_{i,t} − mean_j G_{j,t}) / (std_j G_{j,t} + eps)      (sample std, GRPO's)
 * put on every policy token of the turn (0 elsewhere: the loss mask is off there anyway). A turn
 * only one episode reached gets 0. With trajectory-level advantages (the default) every turn of an
 * episode shares GRPO's A_i instead; per turn, later turns are judged against the episodes that
 * got as far, so a good early call is not blamed for a wrong final answer it did not make alone.
 */
import { mean, std } from './batch.js';

/** One episode as the estimator sees it. */
export interface TurnEpisode {
  groupId: string;
  /** Total (outcome) reward. */
  reward: number;
  /** The policy turn of each completion token, -1 off the policy's turns (observations, glue). */
  tokenTurns: ArrayLike<number>;
  /** Per-token process rewards, when the reward gave them. */
  tokenRewards?: ArrayLike<number> | null;
}

/** The per-token advantages of each episode (same order), one per completion token. */
export function turnAdvantages(episodes: readonly TurnEpisode[], eps = 1e-6): Float64Array[] {
  // the returns G_{i,t} of each episode's turns
  const returns = episodes.map((e) => {
    const turns = Math.max(-1, ...Array.from(e.tokenTurns)) + 1;
    const process = new Array<number>(turns).fill(0);
    if (e.tokenRewards)
      for (let j = 0; j < e.tokenTurns.length; j++) if (e.tokenTurns[j]! >= 0) process[e.tokenTurns[j]!]! += e.tokenRewards[j]!;
    const g = new Array<number>(turns).fill(0);
    let acc = e.reward;
    for (let t = turns - 1; t >= 0; t--) g[t] = acc += process[t]!;
    return g;
  });
  const byGroupTurn = new Map<string, number[]>();
  episodes.forEach((e, i) =>
    returns[i]!.forEach((g, t) => {
      const k = `${e.groupId}\u0000${t}`;
      byGroupTurn.set(k, [...(byGroupTurn.get(k) ?? []), g]);
    }),
  );
  return episodes.map((e, i) => {
    const adv = returns[i]!.map((g, t) => {
      const peers = byGroupTurn.get(`${e.groupId}\u0000${t}`)!;
      return peers.length < 2 ? 0 : (g - mean(peers)) / (std(peers, 'sample') + eps);
    });
    return Float64Array.from(e.tokenTurns, (t) => (t >= 0 ? adv[t]! : 0));
  });
}

/** The policy turn of each completion token of an episode row (-1 on observation and glue tokens). */
export function tokenTurns(row: {
  completion_token_ids: ArrayLike<number>;
  segment_ends: ArrayLike<number> | null;
  segment_roles: readonly string[] | null;
  segment_turns: ArrayLike<number> | null;
}): Int32Array {
  const out = new Int32Array(row.completion_token_ids.length).fill(-1);
  if (!row.segment_ends || !row.segment_roles || !row.segment_turns) return out.fill(0);
  let start = 0;
  for (let k = 0; k < row.segment_ends.length; k++) {
    const end = row.segment_ends[k]!;
    if (row.segment_roles[k] === 'policy') out.fill(row.segment_turns[k]!, start, end);
    start = end;
  }
  return out;
}
