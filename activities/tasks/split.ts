/**
 * Train/eval splits of a synthetic task, and the seeded item stream both are drawn from.
 *
 * A problem belongs to the eval split iff a hash of its canonical key (e.g. the sorted numbers and
 * the target of a Countdown instance) falls below `evalFraction`. Membership depends on the problem
 * alone — not on the seed, the index or the options — so no eval problem is ever trained on, under
 * any seed. Item `i` of a split is drawn from the counter-based stream `(seed, task/split, i)`:
 * candidates are generated at successive attempts until one lies in the split.
 */
import { CounterRng } from '../common/rng.js';
import type { Split, TaskItem } from './types.js';

/** Whether the problem with this canonical key is in the eval split. */
export function inEvalSplit(task: string, key: string, evalFraction: number): boolean {
  return new CounterRng(`${task}:${key}`, 'eval-split').uniform(0) < evalFraction;
}

/** Random draws of one generation attempt: positions `attempt * 4096 + k` of the item's stream. */
export class Draws {
  private k = 0;
  constructor(
    private readonly rng: CounterRng,
    private readonly base: number,
  ) {}
  /** A float in [0, 1). */
  uniform(): number {
    if (this.k >= 4096) throw new Error('a generation attempt used more than 4096 random draws');
    return this.rng.uniform(this.base + this.k++);
  }
  /** An integer in [lo, hi] (inclusive). */
  intIn(lo: number, hi: number): number {
    return lo + Math.floor(this.uniform() * (hi - lo + 1));
  }
  /** One element of a non-empty list. */
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.uniform() * xs.length)]!;
  }
}

/** A candidate problem: its canonical key (for the split) and the item it becomes. */
export interface Candidate {
  key: string;
  item: Omit<TaskItem, 'promptId'>;
}

export interface StreamOptions {
  /** Task name: names the stream and salts the split hash. */
  task: string;
  seed: number;
  split: Split;
  count: number;
  offset: number;
  evalFraction: number;
  /** Attempts per item before giving up (each attempt is a fresh candidate). */
  maxAttempts: number;
  /** One candidate from an attempt's draws, or null when the attempt failed (e.g. target out of range). */
  candidate(draws: Draws): Candidate | null;
  /** What to suggest when an item cannot be made (names the options to change). */
  hint: string;
}

/** Items `offset .. offset+count-1` of a split. */
export function splitItems(o: StreamOptions): TaskItem[] {
  if (!Number.isSafeInteger(o.seed) || o.seed < 0) throw new RangeError(`seed must be a non-negative safe integer, got ${o.seed}`);
  if (o.split !== 'train' && o.split !== 'eval') throw new RangeError(`split must be "train" or "eval", got ${JSON.stringify(o.split)}`);
  if (!Number.isInteger(o.count) || o.count < 0) throw new RangeError(`count must be a non-negative integer, got ${o.count}`);
  if (!Number.isInteger(o.offset) || o.offset < 0 || o.offset + o.count > 0xffffffff) {
    throw new RangeError(`offset must be a non-negative integer with offset + count < 2^32, got offset ${o.offset}, count ${o.count}`);
  }
  const wantEval = o.split === 'eval';
  const out: TaskItem[] = [];
  for (let i = o.offset; i < o.offset + o.count; i++) {
    const rng = new CounterRng(o.seed, `${o.task}/${o.split}`, i);
    let found: Candidate | null = null;
    for (let attempt = 0; attempt < o.maxAttempts && !found; attempt++) {
      const c = o.candidate(new Draws(rng, attempt * 4096));
      if (c && inEvalSplit(o.task, c.key, o.evalFraction) === wantEval) found = c;
    }
    if (!found) {
      throw new Error(
        `${o.task}: no ${o.split} problem found for item ${i} in ${o.maxAttempts} attempts; ` +
          `the ${o.split} split is empty or very small under these options (evalFraction ${o.evalFraction}). ${o.hint}`,
      );
    }
    out.push({
      promptId: `${o.task}-${o.split}-${String(i).padStart(6, '0')}`,
      ...found.item,
      metadata: { task: o.task, split: o.split, ...found.item.metadata },
    });
  }
  return out;
}
