/**
 * The order a run reads its training rows in: epoch after epoch, each epoch a permutation of the n
 * training rows drawn from (seed, epoch) alone (Fisher–Yates over the counter RNG at
 * `(seed, 'data-order', epoch)`). Item i of the train stream is row `epochOrder(seed, ⌊i/n⌋, n)[i mod n]`.
 *
 * The data cursor is the item index, and the run plan gives every step its items as a pure function
 * of the config and the step (workflows/run-plan.ts, `planStep`): a retried activity, a worker
 * killed mid-step, a continue-as-new and a resume-from (which continues the step numbering of its
 * source run) all read exactly the items the seed's order gives those steps, none twice, none
 * skipped.
 */
import { CounterRng } from '../common/rng.js';

/** The permutation of epoch `epoch`: position → row index (0-based). */
export function epochOrder(seed: number, epoch: number, n: number): Uint32Array {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`a dataset order needs at least one row, got ${n}`);
  const rng = new CounterRng(seed, 'data-order', epoch);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i, i + 1);
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  return order;
}

/** Where item `i` of the train stream lies: its epoch, its position in the epoch, and the row (0-based) it reads. */
export interface StreamPosition {
  epoch: number;
  position: number;
  row: number;
}

/** Item → row mapping with the last few epochs' permutations kept. */
export class TrainOrder {
  private readonly cache = new Map<number, Uint32Array>();
  constructor(
    readonly seed: number,
    readonly n: number,
  ) {}

  at(i: number): StreamPosition {
    if (!Number.isSafeInteger(i) || i < 0) throw new RangeError(`a train item index is a non-negative integer, got ${i}`);
    const epoch = Math.floor(i / this.n);
    let order = this.cache.get(epoch);
    if (!order) {
      order = epochOrder(this.seed, epoch, this.n);
      if (this.cache.size >= 4) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(epoch, order);
    }
    const position = i - epoch * this.n;
    return { epoch, position, row: order[position]! };
  }
}
