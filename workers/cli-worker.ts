/**
 * `durable-rl worker`: workers for some or all queues in this process, until SIGINT/SIGTERM. The
 * same per-queue concurrency defaults, environment variables and shutdown grace as the process
 * entrypoints (workers/worker.ts `workerProcessOptions`: rollout 1, learner 1, reward 4, control the
 * SDK default; DURABLE_RL_<QUEUE>_CONCURRENCY; DURABLE_RL_SHUTDOWN_GRACE_SECONDS, default 30 s), so a
 * worker started from the CLI behaves like one started from `rollout-worker.ts` and the others.
 * Flags win over the environment, which wins over the defaults.
 *
 * worker.ts is imported lazily: it takes seconds to load, and only the commands that run workers need it.
 */
import { QUEUE_NAMES, TASK_QUEUES, type QueueName } from '../workflows/task-queues.js';
import { int, resolveTemporal, say, UsageError } from './cli-common.js';
import type { WorkerProcessOptions } from './worker.js';

/** The `worker` command's own flags, as given (strings, validated here). */
export interface WorkerFlags {
  /** `--queues a,b`: the queues to poll (default all). */
  queues?: string;
  /** `--shutdown-grace S`: seconds in-flight activities get on shutdown. */
  shutdownGrace?: string;
  /** `--<queue>-concurrency N`: tasks at once on that queue. */
  concurrency?: Partial<Record<QueueName, string | undefined>>;
  /** `--metrics PORT|HOST:PORT`: the SDK's Prometheus exporter. */
  metrics?: string;
}

/** `--queues a,b` → queue names; an unknown or repeated name is a UsageError. */
export function parseQueues(list: string | undefined): QueueName[] {
  if (list === undefined) return [...QUEUE_NAMES];
  const names = list.split(',').map((q) => q.trim());
  const queues: QueueName[] = [];
  for (const q of names) {
    if (!QUEUE_NAMES.includes(q as QueueName)) throw new UsageError(`unknown queue "${q}" in --queues: use ${QUEUE_NAMES.join(', ')}`);
    if (queues.includes(q as QueueName)) throw new UsageError(`queue "${q}" given twice in --queues`);
    queues.push(q as QueueName);
  }
  return queues;
}

/**
 * The settings of a `durable-rl worker` process: the entrypoints' rules (worker.ts
 * `workerProcessOptions`) applied to these queues, with this command's flags as its command line.
 * A bad flag or environment variable is a UsageError naming it (exit 2).
 */
export async function workerSettings(
  queues: readonly QueueName[],
  flags: Omit<WorkerFlags, 'queues'>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<WorkerProcessOptions> {
  const { workerProcessOptions, WorkerUsageError } = await import('./worker.js');
  const single = queues.length === 1;
  // workerProcessOptions names the flag of a one-queue process `--concurrency`; ours is always per queue.
  const argv: string[] = [];
  for (const q of QUEUE_NAMES) {
    const v = flags.concurrency?.[q];
    if (v === undefined) continue;
    if (!queues.includes(q)) throw new UsageError(`--${q}-concurrency: this worker does not poll ${q} (--queues ${queues.join(',')})`);
    const n = int(v, `${q}-concurrency`, 1);
    argv.push(single ? `--concurrency=${n}` : `--${q}-concurrency=${n}`);
  }
  if (flags.shutdownGrace !== undefined) argv.push(`--shutdown-grace=${flags.shutdownGrace}`);
  if (flags.metrics !== undefined) argv.push(`--metrics=${flags.metrics}`);
  try {
    const { help: _help, ...opts } = workerProcessOptions({ name: 'durable-rl worker', queues }, argv, env);
    return opts;
  } catch (err) {
    throw err instanceof WorkerUsageError ? new UsageError(err.message) : err;
  }
}

/** "rollout 1, reward 4, learner 1, control SDK default": what the polling line shows. */
export function concurrencyText(queues: readonly QueueName[], concurrency: WorkerProcessOptions['concurrency']): string {
  return queues.map((q) => `${q} ${concurrency[q] ?? 'SDK default'}`).join(', ');
}

/** Runs the workers until SIGINT/SIGTERM (the Temporal SDK's runtime stops them gracefully); exit code 0. */
export async function workerCommand(flags: WorkerFlags): Promise<number> {
  const queues = parseQueues(flags.queues);
  const opts = await workerSettings(queues, flags); // before connecting: a bad setting starts nothing
  const temporal = await resolveTemporal();
  const [{ createWorkers }, { installRuntime }] = await Promise.all([import('./worker.js'), import('./runtime.js')]);
  installRuntime({ metrics: opts.metrics });
  const { control: workflowTasks, ...activityTasks } = opts.concurrency;
  const group = await createWorkers({
    temporal,
    queues,
    maxConcurrentActivities: activityTasks,
    maxConcurrentWorkflowTasks: workflowTasks,
    shutdownGraceTimeMs: opts.shutdownGraceTimeMs,
  });
  // Tests and supervisors wait for "workers polling": keep that prefix.
  say(`workers polling ${queues.map((q) => TASK_QUEUES[q]).join(', ')} on ${temporal.address}; Ctrl-C to stop`);
  say(`  tasks at once: ${concurrencyText(queues, opts.concurrency)}; shutdown grace ${opts.shutdownGraceTimeMs / 1000} s`);
  if (opts.metrics) say(`  Prometheus metrics at http://${opts.metrics}/metrics`);
  await group.run();
  return 0;
}
