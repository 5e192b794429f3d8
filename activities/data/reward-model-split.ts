/**
 * The held-out split of a `reward_model` phase's preference dataset (activities/run/config.ts,
 * `rewardModelPhaseSchema.eval.fraction`): round(fraction · n) of the n rows, drawn by the run seed,
 * are held out for the run's evaluations and never trained on; the training rows keep file order.
 * A pure function of (rows, fraction, seed): the learner, the evaluation and the config check agree
 * on every row, in any process.
 */
import { CounterRng } from '../common/rng.js';

/** How many of `n` rows a `fraction` holds out: round(fraction · n). */
export function heldOutCount(n: number, fraction: number): number {
  return Math.round(fraction * n);
}

/**
 * Splits `rows` into training and held-out rows: the held-out ones are the first heldOutCount(n,
 * fraction) indices of a Fisher–Yates permutation drawn from the counter RNG at (seed,
 * 'reward-model-held-out'); both parts keep file order.
 */
export function splitHeldOut<T>(rows: readonly T[], fraction: number, seed: number): { train: T[]; heldOut: T[] } {
  const k = heldOutCount(rows.length, fraction);
  if (k === 0) return { train: [...rows], heldOut: [] };
  const rng = new CounterRng(seed, 'reward-model-held-out');
  const order = rows.map((_, i) => i);
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i, i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const held = new Set(order.slice(0, k));
  return { train: rows.filter((_, i) => !held.has(i)), heldOut: rows.filter((_, i) => held.has(i)) };
}
