/**
 * A run's reward built from several reward functions — the user's own TypeScript / JavaScript
 * modules and the registry's rewards — and one composition of compose.ts (the run config's
 * `reward.functions` and `reward.compose`).
 *
 * Each function scores the sample; its reward becomes the component named by its id (metrics show
 * it as `reward/<id>`), its own components `<id>/<name>`; the composition turns those components
 * into the total (default: `weighted_sum` with each function's `weight`, default 1). Per-token
 * process rewards of the functions are summed token by token and handed to the composition.
 * With functions marked `verifiable`, the result also has `correct` (1 when every verifiable
 * function judged the sample correct: its `correct` component is 1, or without one its reward is
 * at least 1), which evaluations count as accuracy and pass@k.
 *
 * A module export is a plain function `(sample, ctx) => number | RewardResult | Promise<…>`, a
 * reward definition (`defineReward({ name, optionsSchema, create })`, built with the entry's
 * `options`), or a ready `RewardFn` (an object with `score` or `scoreBatch`). Modules are loaded
 * with dynamic `import()` (the workers and the CLI run under tsx, so `.ts` modules load as they are),
 * once per process; `checkRewardFunctions` loads them before a run starts and names the file and
 * the export of a module that cannot be used.
 */
import { existsSync } from 'node:fs';
import { basename, extname, isAbsolute, resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from '../common/config.js';
import { componentReferences, compositionConfigSchema, compositionNames, composeRewards, type CompositionConfig } from './compose.js';
import type { RewardRegistry } from './registry.js';
import { failureOf, validateResult } from './run.js';
import {
  instantiateReward,
  type RewardContext,
  type RewardDefinition,
  type RewardFn,
  type RewardResult,
  type RewardSample,
} from './types.js';

/** One entry of `reward.functions`: a module's export or a registry reward. */
export const rewardFunctionSchema = z
  .strictObject({
    /** A TypeScript / JavaScript module of the user's own (path relative to the config file; made absolute when the config is read). */
    module: z.string().min(1).optional(),
    /** With `module`: the export to use (default `default`). */
    export: z.string().min(1).optional(),
    /** Without `module`: a registry reward (activities/reward/README.md), e.g. `format_tags`. */
    name: z.string().min(1).optional(),
    /** Options of a registry reward or of a `defineReward` export (validated by its schema). */
    options: z.unknown().optional(),
    /** The component name (`reward/<id>` in metrics); default: the export's name (the file's for `default`) or the registry name. */
    id: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/, 'use letters, digits, "_", "." or "-"')
      .optional(),
    /** Weight in the default `weighted_sum` composition (default 1); with another composition, its own options weigh. */
    weight: z.number().finite().optional(),
    /** A verifiable reward: evaluations count a sample as correct when every verifiable function judged it so (see the file comment). */
    verifiable: z.boolean().default(false),
  })
  .refine((f) => (f.module === undefined) !== (f.name === undefined), {
    message: 'give either module (your own) or name (a registry reward)',
  })
  .refine((f) => f.module !== undefined || f.export === undefined, { message: 'export goes with module', path: ['export'] });
export type RewardFunctionSpec = z.output<typeof rewardFunctionSchema>;

/**
 * Whether evaluations of a run with these functions measure accuracy and pass@k: some function is
 * marked `verifiable` (its judgement of a sample is right or wrong). Without one, an evaluation
 * reports the mean reward only.
 */
export function anyVerifiable(functions: readonly RewardFunctionSpec[]): boolean {
  return functions.some((f) => f.verifiable);
}

/** The component id of a function entry. */
export function functionId(f: RewardFunctionSpec): string {
  if (f.id !== undefined) return f.id;
  if (f.module === undefined) return f.name!;
  const e = f.export ?? 'default';
  return e === 'default' ? basename(f.module, extname(f.module)) : e;
}

/** A config problem: the dotted path under `reward` and the message. */
export interface RewardConfigProblem {
  path: string;
  message: string;
}

/**
 * The composition of the functions, validated (compose.ts schemas, defaults filled): `compose`
 * as given (`{ name: 'gated', outcome: 'correctness', dense: { format_tags: 0.2 } }`), or
 * `weighted_sum` over the functions' weights when absent (a `weighted_sum` without `weights` takes
 * them too). Module paths are made absolute against `baseDir`. Every component the composition
 * names must be a function's id (or `<id>/<name>`, one of its own components). Problems name the field.
 */
export function resolveRewardFunctions(
  functions: RewardFunctionSpec[],
  compose: Record<string, unknown> | null,
  baseDir: string | undefined,
  problems: RewardConfigProblem[],
): CompositionConfig | null {
  const ids = new Map<string, number>();
  functions.forEach((f, i) => {
    if (f.module !== undefined && !isAbsolute(f.module)) f.module = resolvePath(baseDir ?? process.cwd(), f.module);
    const id = functionId(f);
    if (ids.has(id))
      problems.push({ path: `functions.${i}.id`, message: `"${id}" names functions.${ids.get(id)} too: give each function its own id` });
    ids.set(id, i);
  });
  const raw: Record<string, unknown> = compose ?? { name: 'weighted_sum' };
  const weights = Object.fromEntries(functions.map((f) => [functionId(f), f.weight ?? 1]));
  if (raw.name !== 'weighted_sum') {
    functions.forEach((f, i) => {
      if (f.weight !== undefined)
        problems.push({
          path: `functions.${i}.weight`,
          message: `weight is the weighted_sum composition's; compose ${JSON.stringify(raw.name)} weighs by its own options`,
        });
    });
  }
  const input = raw.name === 'weighted_sum' && raw.weights === undefined ? { ...raw, weights } : raw;
  const parsed = compositionConfigSchema.safeParse(input);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const message = issue.path[0] === 'name' ? `unknown composition; one of ${compositionNames.join(', ')}` : issue.message;
      problems.push({ path: ['compose', ...issue.path].join('.'), message });
    }
    return null;
  }
  // every component the composition names is a function's id, or `<id>/<name>` (a function's own component)
  const known = [...ids.keys()];
  for (const ref of componentReferences(parsed.data)) {
    if (ids.has(ref.name) || known.some((id) => ref.name.startsWith(`${id}/`))) continue;
    problems.push({
      path: ['compose', ...ref.path].join('.'),
      message: `"${ref.name}" is not the id of a reward function; the ids are ${known.map((id) => `"${id}"`).join(', ')} (a function's own component is "<id>/<name>")`,
    });
  }
  return parsed.data;
}

/** What a module export can be, made into a reward function named by the entry's id. */
function rewardFromExport(value: unknown, f: RewardFunctionSpec, where: string): RewardFn {
  const id = functionId(f);
  if (typeof value === 'function') {
    if (f.options !== undefined) throw new Error(`${where} is a plain function: options are for a defineReward export`);
    const fn = value as (s: RewardSample, c: RewardContext) => unknown;
    return {
      name: id,
      optionsSchema: z.unknown(),
      options: undefined,
      async score(sample, ctx) {
        const out = await fn(sample, ctx);
        return typeof out === 'number' ? { reward: out } : (out as RewardResult);
      },
    };
  }
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (typeof o.create === 'function' && o.optionsSchema !== undefined) return instantiateReward(value as RewardDefinition, f.options);
    if (typeof o.score === 'function' || typeof o.scoreBatch === 'function') {
      if (f.options !== undefined) throw new Error(`${where} is a ready reward (score/scoreBatch): options are for a defineReward export`);
      return value as RewardFn;
    }
  }
  throw new Error(
    `${where} is ${value === null ? 'null' : typeof value}: export a function (sample, ctx) => number | RewardResult, a defineReward(...) definition, or an object with score`,
  );
}

const modules = new Map<string, Promise<Record<string, unknown>>>();

/** The module's namespace, imported once per process. */
function importModule(path: string): Promise<Record<string, unknown>> {
  let p = modules.get(path);
  if (!p) {
    p = import(pathToFileURL(path).href) as Promise<Record<string, unknown>>;
    p.catch(() => modules.delete(path));
    modules.set(path, p);
  }
  return p;
}

/**
 * One export of a user's module (an absolute path), the module imported once per process; errors
 * in one line naming the file: `<path> does not exist: …`, `<path> throws at import: …`,
 * `<path> has no export "x" (it exports "a", "b")`. Reward modules and environment modules (activities/env/module.ts) load
 * through it.
 */
export async function loadModuleExport(module: string, exportName = 'default'): Promise<unknown> {
  let ns: Record<string, unknown>;
  try {
    ns = await importModule(module);
  } catch (err) {
    // a path that names no file is the user's typo, not the module's failure (a module that exists
    // and imports a package that does not is still "throws at import")
    if (!existsSync(module)) throw new Error(`${module} does not exist: check the path (relative to the config file's directory)`);
    throw new Error(`${module} throws at import: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!(exportName in ns)) {
    const have = Object.keys(ns).filter((k) => k !== '__esModule');
    throw new Error(
      `${module} has no export "${exportName}" (it exports ${have.length ? have.map((k) => `"${k}"`).join(', ') : 'nothing'})`,
    );
  }
  return ns[exportName];
}

/** The reward function of one entry (a module's export loaded, or the registry's reward). */
export async function loadRewardFunction(f: RewardFunctionSpec, registry: RewardRegistry): Promise<RewardFn> {
  if (f.module === undefined) return registry.create({ name: f.name!, options: f.options });
  const name = f.export ?? 'default';
  return rewardFromExport(await loadModuleExport(f.module, name), f, `export "${name}" of ${f.module}`);
}

/**
 * Loads every function before a run starts (the module imports, the export is usable, registry
 * options valid); problems name `functions.N.module` / `.export` / `.name` / `.options`.
 */
export async function checkRewardFunctions(functions: RewardFunctionSpec[], registry: RewardRegistry): Promise<RewardConfigProblem[]> {
  const problems: RewardConfigProblem[] = [];
  for (const [i, f] of functions.entries()) {
    try {
      const fn = await loadRewardFunction(f, registry);
      await fn.close?.();
    } catch (err) {
      const msg = (err as Error).message;
      const field =
        f.module === undefined
          ? /unknown reward/.test(msg)
            ? 'name'
            : 'options'
          : / has no export | export "/.test(msg)
            ? 'export'
            : /options/.test(msg) && !/throws at import|does not exist/.test(msg)
              ? 'options'
              : 'module';
      const issues = (err as { issues?: { path: string; message: string }[] }).issues;
      problems.push({
        path: `functions.${i}.${field}`,
        message: issues ? issues.map((x) => (x.path ? `${x.path}: ${x.message}` : x.message)).join('; ') : msg,
      });
    }
  }
  return problems;
}

/** One function's result for a sample, validated (a number made `{ reward }`; NaN, a wrong shape: an error naming the function). */
async function scoreWith(fn: RewardFn, id: string, sample: RewardSample, ctx: RewardContext): Promise<RewardResult> {
  const out = fn.score ? await fn.score(sample, ctx) : (await fn.scoreBatch!([sample], ctx))[0];
  return validateResult(typeof out === 'number' ? { reward: out } : out, id);
}

/**
 * The run's reward from its functions and composition. The functions are loaded on first use (once
 * per reward instance); a function that throws, returns NaN or a malformed result makes the sample
 * fail with a message naming the function, for the run's error policy.
 */
export function composedReward(functions: RewardFunctionSpec[], composition: CompositionConfig, registry: RewardRegistry): RewardFn {
  const ids = functions.map(functionId);
  let loaded: Promise<RewardFn[]> | undefined;
  const load = () => {
    loaded ??= Promise.all(functions.map((f) => loadRewardFunction(f, registry)));
    loaded.catch(() => (loaded = undefined));
    return loaded;
  };
  return {
    name: 'functions',
    optionsSchema: z.unknown(),
    options: { functions, compose: composition },
    async score(sample, ctx) {
      const fns = await load();
      const components: Record<string, number> = {};
      let process: number[] | undefined;
      const correct: boolean[] = [];
      for (const [i, fn] of fns.entries()) {
        const id = ids[i]!;
        let r: RewardResult;
        try {
          r = await scoreWith(fn, id, sample, ctx);
        } catch (err) {
          // named, and of the kind it was (a NaN counts as non_finite in the step metrics, not as thrown)
          throw failureOf(`reward function ${id}`, err);
        }
        components[id] = r.reward;
        for (const [k, v] of Object.entries(r.components ?? {})) components[`${id}/${k}`] = v;
        if (r.processRewards) {
          process ??= new Array<number>(r.processRewards.length).fill(0);
          r.processRewards.forEach((v, t) => (process![t] = (process![t] ?? 0) + v));
        }
        if (functions[i]!.verifiable) correct.push(r.components?.correct !== undefined ? r.components.correct === 1 : r.reward >= 1);
      }
      const [out] = composeRewards(
        composition,
        [
          {
            sampleId: `${sample.promptId}/${sample.sampleId}`,
            components,
            ...(process ? { processRewards: process } : {}),
            ...(sample.completionTokens !== undefined ? { completionLength: sample.completionTokens } : {}),
          },
        ],
        { step: ctx.step },
      );
      return {
        reward: out!.total,
        components: { ...components, ...(correct.length > 0 ? { correct: correct.every(Boolean) ? 1 : 0 } : {}) },
        ...(out!.processRewards ? { processRewards: Array.from(out!.processRewards) } : {}),
      };
    },
  };
}
