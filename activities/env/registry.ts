/**
 * The built-in environments by name: `environmentByName('calculator', options)` validates the
 * options against the environment's schema (a ConfigError names the field) and builds it.
 */
import { parseConfig } from '../common/config.js';
import { calculator } from './calculator.js';
import { lookup } from './lookup.js';
import type { Environment, EnvironmentDefinition } from './types.js';

const BUILTIN: readonly EnvironmentDefinition[] = [calculator, lookup];

/** Names of the built-in environments. */
export function environmentNames(): string[] {
  return BUILTIN.map((d) => d.name);
}

/** The definition of a built-in environment, or an error listing the names there are. */
export function environmentDefinition(name: string): EnvironmentDefinition {
  const def = BUILTIN.find((d) => d.name === name);
  if (!def)
    throw new Error(`unknown environment "${name}": one of ${environmentNames().join(', ')}, or a module of your own (module, export)`);
  return def;
}

/** A built-in environment with its options validated (defaults filled). */
export function environmentByName(name: string, options: unknown = {}): Environment {
  const def = environmentDefinition(name);
  return def.create(parseConfig(def.optionsSchema, options ?? {}, `options of environment ${name}`));
}
