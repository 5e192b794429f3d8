/**
 * Environments of the user's own: a TypeScript / JavaScript module named in the run config
 * (`environment: { module: ./my-env.ts, export: searchEnv, options: {…} }`), loaded with the same
 * loader as reward modules (`loadModuleExport` of ../reward/functions.ts: dynamic `import()`, once
 * per process) and checked before a run starts, with one-line errors naming the file and export.
 *
 * An export may be an environment (`defineEnvironment({ … })`), a definition
 * (`defineEnvironmentKind({ name, optionsSchema, create })`, built with the entry's `options`), or a
 * function `(options) => Environment`.
 */
import { parseConfig } from '../common/config.js';
import { loadModuleExport } from '../reward/functions.js';
import { toolTag } from './format.js';
import { environmentByName } from './registry.js';
import type { Environment, EnvironmentDefinition } from './types.js';

const FORMATS = ['hermes', 'tagged'];

/** What is wrong with an environment's shape (the first problem, with its field), or null. */
export function environmentProblem(value: unknown): string | null {
  if (value === null || typeof value !== 'object') return `is ${value === null ? 'null' : typeof value}, not an environment object`;
  const e = value as Record<string, unknown>;
  if (typeof e.name !== 'string' || e.name === '') return 'name must be a non-empty string';
  if (typeof e.format !== 'string' || !FORMATS.includes(e.format))
    return `format must be one of ${FORMATS.join(', ')}, got ${JSON.stringify(e.format)}`;
  if (typeof e.reset !== 'function') return 'reset must be a function (row) => messages';
  if (e.step !== undefined && typeof e.step !== 'function')
    return 'step must be a function (turn, history, ctx) => { observations, done } when given';
  if (e.gold !== undefined && typeof e.gold !== 'function') return 'gold must be a function (row) => trajectory when given';
  const limits = e.limits as Record<string, unknown> | undefined;
  if (limits === null || typeof limits !== 'object') return 'limits must be { maxTurns, maxTotalTokens, maxSeconds }';
  for (const k of ['maxTurns', 'maxTotalTokens', 'maxSeconds']) {
    const v = limits[k];
    if (typeof v !== 'number' || !(v > 0) || (k !== 'maxSeconds' && !Number.isInteger(v)))
      return `limits.${k} must be a positive ${k === 'maxSeconds' ? 'number' : 'integer'}, got ${JSON.stringify(v)}`;
  }
  if (!Array.isArray(e.tools)) return 'tools must be an array of { spec, run }';
  const names = new Set<string>();
  const tags = new Set<string>();
  for (const [i, t] of (e.tools as unknown[]).entries()) {
    const tool = t as Record<string, unknown> | null;
    if (tool === null || typeof tool !== 'object') return `tools[${i}] must be { spec, run }`;
    const spec = tool.spec as Record<string, unknown> | undefined;
    if (spec === null || typeof spec !== 'object') return `tools[${i}].spec must be { name, description, parameters }`;
    if (typeof spec.name !== 'string' || !/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(spec.name))
      return `tools[${i}].spec.name must be a name (letters, digits, _ . -), got ${JSON.stringify(spec.name)}`;
    if (typeof spec.description !== 'string') return `tools[${i}].spec.description must be a string`;
    const params = spec.parameters as Record<string, unknown> | undefined;
    if (params === null || typeof params !== 'object' || params.type !== 'object')
      return `tools[${i}].spec.parameters must be a JSON schema of type "object"`;
    if (typeof tool.run !== 'function') return `tools[${i}].run must be a function (args, ctx) => text`;
    if (tool.timeoutMs !== undefined && !(typeof tool.timeoutMs === 'number' && tool.timeoutMs > 0))
      return `tools[${i}].timeoutMs must be a positive number of ms`;
    if (names.has(spec.name)) return `tools[${i}].spec.name "${spec.name}" names another tool too`;
    names.add(spec.name);
    if (e.format === 'tagged') {
      const tag = toolTag(t as never);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(tag) || ['a', 'o', 'think'].includes(tag))
        return `tools[${i}].tag ${JSON.stringify(tag)} cannot be a tag of the tagged format (letters, digits, _; not a, o, think)`;
      if (tags.has(tag)) return `tools[${i}].tag "${tag}" is another tool's tag too`;
      tags.add(tag);
    }
  }
  return null;
}

/** The environment an export makes (see the file comment); `where` names the file and export in errors. */
export function environmentFromExport(value: unknown, options: unknown, where: string): Environment {
  let env: unknown = value;
  if (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as EnvironmentDefinition).create === 'function' &&
    (value as EnvironmentDefinition).optionsSchema
  ) {
    const def = value as EnvironmentDefinition;
    env = def.create(parseConfig(def.optionsSchema, options ?? {}, `options of ${where}`));
  } else if (typeof value === 'function') {
    env = (value as (o: unknown) => unknown)(options ?? {});
  } else if (options !== undefined && !(options !== null && typeof options === 'object' && Object.keys(options).length === 0)) {
    throw new Error(
      `${where} is an environment object: options are for a defineEnvironmentKind export or a function (options) => Environment`,
    );
  }
  const problem = environmentProblem(env);
  if (problem) throw new Error(`${where}: ${problem}`);
  return env as Environment;
}

/**
 * Loads a user's environment: the module at `module` (an absolute path; the run config makes it
 * absolute against the config file), its export `exportName` (default `default`), built with
 * `options`. Throws one line naming the file and export: it does not import, has no such export, or
 * the export is not an environment (the field named).
 */
export async function loadEnvironmentModule(module: string, exportName = 'default', options?: unknown): Promise<Environment> {
  const value = await loadModuleExport(module, exportName);
  return environmentFromExport(value, options, `export "${exportName}" of ${module}`);
}

/** How a run names its environment: a built-in by `name`, or a `module` of the user's own (with `export`); `options` for either. */
export interface EnvironmentSource {
  name?: string;
  module?: string;
  export?: string;
  options?: unknown;
}

/** The environment a run names (a built-in through `environmentByName`, a module through `loadEnvironmentModule`). */
export async function loadEnvironment(source: EnvironmentSource): Promise<Environment> {
  if (source.module !== undefined) return loadEnvironmentModule(source.module, source.export, source.options);
  if (source.name === undefined) throw new Error('an environment needs a name (calculator, lookup) or a module of your own');
  return environmentByName(source.name, source.options);
}

/** Exports of environment modules loaded in this process, by `module#export`: what `environmentFromModule` builds from without waiting. */
const preloaded = new Map<string, unknown>();
const cacheKey = (module: string, exportName: string) => `${module}#${exportName}`;

/**
 * Loads a module's export once per process and keeps it, so a synchronous caller (resolving a run)
 * can build the environment afterwards (`environmentFromModule`). Errors as `loadEnvironmentModule`'s;
 * the export's shape is checked when it is built, with the options.
 */
export async function preloadEnvironmentModule(module: string, exportName = 'default'): Promise<void> {
  const key = cacheKey(module, exportName);
  if (!preloaded.has(key)) preloaded.set(key, await loadModuleExport(module, exportName));
}

/** The environment of a preloaded module export, built with `options` (one-line errors naming the file and export). */
export function environmentFromModule(module: string, exportName = 'default', options?: unknown): Environment {
  const key = cacheKey(module, exportName);
  if (!preloaded.has(key))
    throw new Error(`environment module ${module} (export "${exportName}") is not loaded in this process: preloadEnvironmentModule first`);
  return environmentFromExport(preloaded.get(key), options, `export "${exportName}" of ${module}`);
}
