/**
 * The engines a stage process keeps between activities: one `ModelEngine` per (store, run), built
 * from the run's resolved model and `engine` options, in a least-recently-used cache of `MAX_RUNS`
 * runs (the least recently used engine is released when another run's is built). The rollout and
 * the learner each keep one `RunEngines` of their own: their engines differ in options (rollout
 * feeds the weights as inputs) and in what a stage keeps beside the engine (`S`).
 */
import { ModelEngine, type EngineOptionsInput } from '../model/engine.js';
import type { ResolvedRun } from './resolve.js';

/** Most runs one process keeps an engine (and, in the rollout, loaded weights) for. */
export const MAX_RUNS = 2;

/** A map that keeps its `max` most recently used entries and hands each one it drops to `onEvict`. */
export class LruCache<V> {
  private readonly entries = new Map<string, V>();

  constructor(
    readonly max: number,
    private readonly onEvict: (value: V) => void = () => undefined,
  ) {}

  /** The entry of `key`, now the most recently used; undefined when absent. */
  get(key: string): V | undefined {
    const v = this.entries.get(key);
    if (v !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, v);
    }
    return v;
  }

  /** Stores `value` as the most recently used entry, evicting the least recently used beyond `max`. */
  set(key: string, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    while (this.entries.size > this.max) {
      const [oldest, old] = this.entries.entries().next().value!;
      this.entries.delete(oldest);
      this.onEvict(old);
    }
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  /** Removes every entry and returns them, least recently used first (nothing is evicted). */
  drain(): V[] {
    const all = [...this.entries.values()];
    this.entries.clear();
    return all;
  }
}

/** The cache key of a run: runs of different stores never share an engine. */
export function runKey(storeRoot: string, runId: string): string {
  return `${storeRoot}|${runId}`;
}

export interface RunEnginesOptions<S> {
  /** Engine options on top of the run config's `engine.threads` and `engine.executionProviders` (or a function of the run giving them). */
  engine?: EngineOptionsInput | ((run: ResolvedRun) => EngineOptionsInput);
  /** What the stage keeps for a run around its new engine. */
  slot(engine: ModelEngine): S;
  /** Releases a slot's engine (on eviction and in `releaseAll`); a failure must not throw. */
  release(slot: S): Promise<void>;
}

/** One engine per run, with what the stage keeps beside it, least recently used released first. */
export class RunEngines<S extends { engine: ModelEngine }> {
  private readonly slots: LruCache<S>;

  constructor(private readonly options: RunEnginesOptions<S>) {
    this.slots = new LruCache<S>(MAX_RUNS, (slot) => void options.release(slot));
  }

  /** The slot of run `runId` of the store at `storeRoot`, built on first use. */
  slot(storeRoot: string, runId: string, run: ResolvedRun): S {
    const key = runKey(storeRoot, runId);
    let slot = this.slots.get(key);
    if (!slot) {
      const engine = new ModelEngine(run.model, {
        threads: run.config.engine.threads,
        executionProviders: run.config.engine.executionProviders,
        ...(typeof this.options.engine === 'function' ? this.options.engine(run) : this.options.engine),
      });
      slot = this.options.slot(engine);
      this.slots.set(key, slot);
    }
    return slot;
  }

  /** Releases every engine (worker shutdown, tests); later uses build new ones. */
  async releaseAll(): Promise<void> {
    await Promise.all(this.slots.drain().map((s) => this.options.release(s)));
  }
}
