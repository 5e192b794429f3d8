/**
 * Built-in tasks by name. A run config names a task as `{ name, options }`; `getTask` validates the
 * options against the task's zod schema (defaults filled, unknown fields rejected, errors name the
 * field) and returns a ready `Task`. An unknown name is an error listing the known names.
 *
 * The tasks' rewards are reward kinds like any other: `registerTaskRewards(registry)` adds them
 * (`addition`, `countdown`) to a `RewardRegistry`, after which `task.reward` (a `{ name, options }`
 * spec) can be created through the registry like any reward spec of a run config.
 */
import { ConfigError, parseConfig } from '../common/config.js';
import type { RewardDefinition } from '../reward/types.js';
import { additionReward, additionTask } from './addition.js';
import { countdownReward, countdownTask } from './countdown.js';
import type { Task, TaskDefinition } from './types.js';

export type { Split, Task, TaskDefinition, TaskItem } from './types.js';

const TASKS: readonly TaskDefinition[] = [additionTask, countdownTask] as unknown as TaskDefinition[];

/** Names of the built-in tasks, sorted. */
export function taskNames(): string[] {
  return TASKS.map((t) => t.name).sort();
}

/** The definition of a built-in task, or a `ConfigError` listing the known names. */
export function taskDefinition(name: string): TaskDefinition {
  const def = TASKS.find((t) => t.name === name);
  if (!def) {
    throw new ConfigError('task spec', [
      { path: 'name', message: `unknown task ${JSON.stringify(name)}; known tasks: ${taskNames().join(', ')}` },
    ]);
  }
  return def;
}

/** A ready task from its name and options (validated; defaults filled). */
export function getTask(name: string, options: unknown = {}): Task {
  if (typeof name !== 'string') {
    throw new ConfigError('task spec', [
      { path: 'name', message: `a task name is a string (one of ${taskNames().join(', ')}), got ${typeof name}` },
    ]);
  }
  const def = taskDefinition(name);
  const validated = parseConfig(def.optionsSchema, options ?? {}, `options of task ${name}`);
  return { ...def.create(validated), name: def.name, optionsSchema: def.optionsSchema, options: validated };
}

/** Rows for documentation: name, description, source. */
export function describeTasks(): { name: string; description: string; source?: string }[] {
  return taskNames().map((n) => {
    const d = taskDefinition(n);
    return { name: d.name, description: d.description, source: d.source };
  });
}

/** The reward kinds the built-in tasks score with. */
export function taskRewardDefinitions(): RewardDefinition[] {
  return [additionReward, countdownReward] as unknown as RewardDefinition[];
}

/** Registers the tasks' reward kinds on a registry (e.g. `registerTaskRewards(defaultRegistry())`). */
export function registerTaskRewards<R extends { register(def: RewardDefinition): unknown }>(registry: R): R {
  for (const def of taskRewardDefinitions()) registry.register(def);
  return registry;
}
