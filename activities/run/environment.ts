/**
 * The run config's `environment` option (issue 15): rollouts become multi-turn episodes of an
 * environment (activities/env/), and its task items, gold trajectories and trajectory reward become
 * the run's prompts, SFT targets and reward.
 *
 *   environment:
 *     name: calculator            # a built-in (calculator, lookup), or instead:
 *     # module: ./my-env.ts       # an environment module of your own (activities/env/module.ts),
 *     # export: searchEnv         #   path relative to the config file, export default `default`
 *     options: { maxTurns: 3 }    # the built-in's (or your definition's) options (format, limits, difficulty, reward)
 *     limits: { maxTurns: 4 }     # overrides of the environment's limits (any environment)
 *     toolRetry: { maxAttempts: 5 }
 *     toolConcurrency: 8          # episodes whose tool calls run at once within a turn
 */
import { z } from '../common/config.js';
import { environmentByName, environmentNames } from '../env/registry.js';
import { environmentFromModule, preloadEnvironmentModule } from '../env/module.js';
import { renderObservation } from '../env/format.js';
import type { EnvRow, Environment } from '../env/types.js';
import type { Task } from '../tasks/types.js';
import { DEFAULT_TOOL_CONCURRENCY, DEFAULT_TOOL_RETRY } from '../rollout/episode.js';

const posInt = z.number().int().positive();

/** The `environment` option of a run config. */
export const environmentConfigSchema = z
  .strictObject({
    /** A built-in environment (`calculator`: multiplication with a `calc` tool; `lookup`: two-hop questions over a shipped table with a `lookup` tool). */
    name: z
      .string()
      .refine((n) => environmentNames().includes(n), {
        message: `unknown environment; built-in environments: ${environmentNames().join(', ')}`,
      })
      .optional(),
    /**
     * Instead of `name`: an environment module of your own (TypeScript or JavaScript; a path relative
     * to the config file, made absolute when the config is read), loaded like reward modules and
     * checked before the run starts (activities/env/module.ts: an environment, a
     * `defineEnvironmentKind` definition built with `options`, or a function of `options`).
     */
    module: z.string().min(1).optional(),
    /** With `module`: the export to use (default `default`). */
    export: z.string().min(1).optional(),
    /** The built-in's options (activities/env/README.md: `format`, `maxTurns`, `maxTotalTokens`, `maxSeconds`, difficulty, reward weights), validated with defaults filled. */
    options: z.record(z.string(), z.unknown()).default({}),
    /**
     * Overrides of the environment's limits: most policy turns (`maxTurns` → finish reason
     * "max_turns"), most tokens of a whole episode, prompt included (`maxTotalTokens` → "length"),
     * most wall seconds (`maxSeconds` → "max_seconds"; not deterministic: a run that must replay
     * bitwise bounds its episodes by turns and tokens). Unset: the environment's own.
     */
    limits: z
      .strictObject({ maxTurns: posInt.optional(), maxTotalTokens: posInt.optional(), maxSeconds: z.number().positive().optional() })
      .default({}),
    /**
     * The credit of an episode's turns: `trajectory` (default) — the rl phase's estimator (GRPO
     * family) gives each episode one advantage, shared by all its turns; `turn` — per-turn
     * advantages (activities/advantage/turn-advantages.ts, after MT-GRPO, Zeng et al. 2025): the
     * return of each turn (outcome + the process rewards of that turn and later ones) normalised over
     * the group's episodes that reached that turn, on the samples the estimator kept.
     */
    advantage: z.enum(['trajectory', 'turn']).default('trajectory'),
    /**
     * How a tool call whose infrastructure fails (a ToolInfraError, a timeout) is retried: alone,
     * inside its turn, never the turn's generation nor the step. A call that fails on every attempt
     * ends its episode with finish reason "tool_failure": left out of the advantages, never scored 0.
     */
    toolRetry: z
      .strictObject({
        /** Runs of one call at most, the first included. */
        maxAttempts: posInt.max(100).default(DEFAULT_TOOL_RETRY.maxAttempts),
        /** Wait before the second run (ms). */
        initialBackoffMs: z.number().min(0).default(DEFAULT_TOOL_RETRY.initialBackoffMs),
        /** Each later wait is this many times the previous one. */
        backoffCoefficient: z.number().min(1).default(DEFAULT_TOOL_RETRY.backoffCoefficient),
        /** Longest wait (ms). */
        maxBackoffMs: z.number().min(0).default(DEFAULT_TOOL_RETRY.maxBackoffMs),
      })
      .prefault({}),
    /**
     * Most episodes of a rollout shard whose tool calls run at the same time within a turn (each
     * episode's own calls run in order). The turn's generation is batched over every live episode;
     * its tool calls then run concurrently, so one slow or retrying tool holds up its own episode's
     * answer and not every other episode's. Tools are deterministic given their arguments and
     * context, so the rollouts are the same bytes whatever the value: raise it for slow remote tools,
     * lower it for tools that each take a lot of the machine (a code sandbox).
     */
    toolConcurrency: posInt.max(1024).default(DEFAULT_TOOL_CONCURRENCY),
  })
  .refine((e) => (e.name === undefined) !== (e.module === undefined), { message: 'give either name (a built-in) or module (your own)' })
  .refine((e) => e.module !== undefined || e.export === undefined, { message: 'export goes with module', path: ['export'] });
export type EnvironmentConfig = z.output<typeof environmentConfigSchema>;

/** The run's environment: the built-in with its options, the config's limits over its own. Throws ConfigError on a bad option. */
export function resolveEnvironment(cfg: EnvironmentConfig): Environment {
  const env =
    cfg.module !== undefined
      ? environmentFromModule(cfg.module, cfg.export, Object.keys(cfg.options).length > 0 ? cfg.options : undefined)
      : environmentByName(cfg.name!, cfg.options);
  const { maxTurns, maxTotalTokens, maxSeconds } = cfg.limits;
  return {
    ...env,
    limits: {
      maxTurns: maxTurns ?? env.limits.maxTurns,
      maxTotalTokens: maxTotalTokens ?? env.limits.maxTotalTokens,
      maxSeconds: maxSeconds ?? env.limits.maxSeconds,
    },
  };
}

/**
 * Loads the run's environment module, if it names one, so that `resolveEnvironment` (and
 * `resolveRun`) can build it synchronously; once per process. One-line errors name the file and export.
 */
export async function preloadRunEnvironment(config: { environment: EnvironmentConfig | null }): Promise<void> {
  const e = config.environment;
  if (e?.module !== undefined) await preloadEnvironmentModule(e.module, e.export);
}

/**
 * A gold trajectory as one text after the prompt (the tagged format: the policy's turns and the
 * observations between them, `<c>12*34</c><o>408</o><a>408</a>`): what a char model's SFT target
 * and budget are measured in.
 */
export function goldText(env: Environment, row: EnvRow): string {
  const gold = env.gold?.(row);
  if (!gold) throw new Error(`environment ${env.name} has no gold trajectories: an sft phase needs them`);
  let text = '';
  for (let i = 0; i < gold.length; i++) {
    const m = gold[i]!;
    if (m.role === 'assistant') text += m.content;
    else {
      const observations = [m];
      while (gold[i + 1]?.role === 'tool') observations.push(gold[++i]!);
      text += renderObservation(env.format, { history: [{ role: 'assistant', content: '' }], observations });
    }
  }
  return text;
}

/**
 * The environment as the run's task: its items (train/eval splits by seed), its alphabet, its
 * trajectory reward, and its gold trajectories as SFT targets (`goldText`).
 */
export function environmentTask(env: Environment, cfg: EnvironmentConfig): Task {
  const source = env.task;
  if (!source) throw new Error(`environment ${env.name} has no task items of its own`);
  const reward = env.reward;
  if (!reward) throw new Error(`environment ${env.name} has no reward: give reward.spec or reward.functions`);
  return {
    name: env.name,
    optionsSchema: z.record(z.string(), z.unknown()),
    options: cfg.options,
    prompts: (seed, split, count, offset) => source.prompts(seed, split, count, offset),
    sftTarget: (item) => goldText(env, item),
    reward: { name: reward.name, options: {} },
    rewardDefinition: reward as never,
    // a fresh instance each time, as a task's (a caller may close it)
    createReward: () => resolveEnvironment(cfg).reward!,
    alphabet: source.alphabet,
    maxPromptChars: source.maxPromptChars,
    maxCompletionChars: source.maxEpisodeChars,
  };
}
