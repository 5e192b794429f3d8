/**
 * Rewards by name. A run config refers to a reward as `{ name, options }`; the registry validates
 * the options against the reward's zod schema (defaults filled, unknown fields rejected) and returns
 * a ready `RewardFn`. An unknown name is an error listing the known names; bad options are a
 * `ConfigError` naming the field.
 *
 * `defaultRegistry()` holds every built-in reward of this folder (see `builtins.ts` and README.md).
 * A project may build its own `RewardRegistry`, or `register` extra rewards on a fresh copy.
 */
import { ConfigError, parseConfig } from '../common/config.js';
import type { z } from 'zod';
import { instantiateReward, type RewardDefinition, type RewardFn, type RewardSpec } from './types.js';
import { builtinRewards } from './builtins.js';

export { defineReward } from './types.js';

const NAME = /^[a-z][a-z0-9_]*$/;

export class RewardRegistry {
  private readonly defs = new Map<string, RewardDefinition>();

  constructor(defs: readonly RewardDefinition[] = []) {
    for (const d of defs) this.register(d);
  }

  /** Adds a reward kind. Names are lower snake case and unique. */
  register<S extends z.ZodType>(def: RewardDefinition<S>): this {
    if (!NAME.test(def.name)) {
      throw new Error(`reward name ${JSON.stringify(def.name)} is invalid: use lower snake case, e.g. "math_equivalence"`);
    }
    if (this.defs.has(def.name)) {
      throw new Error(`reward ${JSON.stringify(def.name)} is already registered: pick another name`);
    }
    this.defs.set(def.name, def as unknown as RewardDefinition);
    return this;
  }

  /** Registered names, sorted. */
  names(): string[] {
    return [...this.defs.keys()].sort();
  }

  has(name: string): boolean {
    return this.defs.has(name);
  }

  /** The definition of a reward kind, or an error listing the known names. */
  definition(name: string): RewardDefinition {
    const def = this.defs.get(name);
    if (!def) {
      throw new ConfigError('reward spec', [
        { path: 'name', message: `unknown reward ${JSON.stringify(name)}; known rewards: ${this.names().join(', ')}` },
      ]);
    }
    return def;
  }

  /** Validates a spec's options only (for config checks before a run starts). */
  validate(spec: RewardSpec): unknown {
    const def = this.definition(spec.name);
    return parseConfig(def.optionsSchema, spec.options ?? {}, `options of reward ${spec.name}`);
  }

  /** A ready reward from `{ name, options }`. */
  create(spec: RewardSpec): RewardFn {
    if (spec === null || typeof spec !== 'object' || typeof spec.name !== 'string') {
      throw new ConfigError('reward spec', [{ path: 'name', message: 'a reward spec is { name: string, options?: object }' }]);
    }
    return instantiateReward(this.definition(spec.name), spec.options);
  }

  /** Rows for documentation: name, description, source. */
  describe(): { name: string; description: string; source?: string }[] {
    return this.names().map((n) => {
      const d = this.defs.get(n)!;
      return { name: d.name, description: d.description, source: d.source };
    });
  }
}

/** A fresh registry holding every built-in reward. */
export function defaultRegistry(): RewardRegistry {
  return new RewardRegistry(builtinRewards());
}

/** Shorthand: a ready built-in reward from `{ name, options }`. */
export function createReward(spec: RewardSpec): RewardFn {
  return defaultRegistry().create(spec);
}
