/**
 * Workers: one per task queue. `(await createWorkers({ queues: ['control', 'reward'], ... })).run()`
 * polls those queues in this process; the all-in-one worker polls them all. The control queue runs
 * workflows; each other queue's worker registers exactly the activities that workflows schedule on
 * it (`activitiesFor`, from workflows/activity-queues.ts). Graceful shutdown: SIGINT/SIGTERM let
 * in-flight activities finish (up to `shutdownGraceTimeMs`), then the process exits.
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Worker, bundleWorkflowCode, type NativeConnection, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { ACTIVITIES, LOCAL_ACTIVITIES, type Activities } from '../activities/index.js';
import { logger } from '../activities/common/log.js';
import { activityNamesOn, type ActivityName, type ActivityQueue } from '../workflows/activity-queues.js';
import { TASK_QUEUES, type QueueName } from '../workflows/task-queues.js';
import { up } from '../infra/index.js';
import { connectWorker, temporalConfig, temporalEnv, type TemporalConfig } from './temporal.js';
import { installRuntime, METRICS_ENV, metricsBindAddress } from './runtime.js';

export interface WorkerOptions {
  temporal: TemporalConfig;
  queues: readonly QueueName[];
  /**
   * Activity tasks run at once per activity queue (default 4 each). A reward shard scores its own
   * records concurrently too (errorPolicy.concurrency), so this bounds shards, not reward calls.
   */
  maxConcurrentActivities?: Partial<Record<QueueName, number>>;
  /** How long in-flight activities get to finish on shutdown, in ms (default 10 000); then they are cancelled. */
  shutdownGraceTimeMs?: number;
  /** Stops the workers when aborted (tests, embedding). */
  signal?: AbortSignal;
  /** Identity shown in the Web UI for this worker's pollers. */
  identity?: string;
  /** A prebuilt workflow bundle (see `bundleWorkflows`); default: bundle `workflows/index.ts` now. */
  workflowBundle?: WorkflowBundleWithSourceMap;
  /** Workflow tasks run at once by the control worker (default: the Temporal SDK's default). */
  maxConcurrentWorkflowTasks?: number;
}

export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/** Bundles the workflow code once (seconds), for processes that create several workers. */
export function bundleWorkflows(): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({ workflowsPath, logger: quietBundlerLogger });
}

const quietBundlerLogger = {
  log() {},
  trace() {},
  debug() {},
  info() {},
  warn: (m: string, meta?: object) => logger('bundler').warn(meta ?? {}, m),
  error: (m: string, meta?: object) => logger('bundler').error(meta ?? {}, m),
};

/** Workers of one process, sharing one connection. */
export interface WorkerGroup {
  workers: Worker[];
  /** Runs every worker until shutdown; then closes the connection (if the group opened it). */
  run(): Promise<void>;
  /** Asks every worker to stop polling and finish in-flight tasks. */
  shutdown(): void;
}

// The queue table and the registered activities name the same activities (a compile error otherwise).
type Unlisted = Exclude<keyof Activities, ActivityName>;
type Unregistered = Exclude<ActivityName, keyof Activities>;
const _sameActivities: [Unlisted, Unregistered] extends [never, never] ? true : { unlisted: Unlisted; unregistered: Unregistered } = true;

/** The activities a worker of `queue` registers: those workflows/activity-queues.ts puts on it (none for control). */
export function activitiesFor(queue: QueueName): Partial<Activities> {
  return Object.fromEntries(activityNamesOn(queue).map((name) => [name, ACTIVITIES[name]]));
}

/** What `Worker.create` gets for an activity queue: its activities, concurrency, identity, grace. */
export function activityWorkerOptions(opts: WorkerOptions, q: ActivityQueue, conn: NativeConnection) {
  return {
    ...baseWorkerOptions(opts, q, conn),
    activities: activitiesFor(q),
    maxConcurrentActivityTaskExecutions: opts.maxConcurrentActivities?.[q] ?? 4,
  };
}

function baseWorkerOptions(opts: WorkerOptions, q: QueueName, conn: NativeConnection) {
  return {
    connection: conn,
    namespace: opts.temporal.namespace,
    taskQueue: TASK_QUEUES[q],
    shutdownGraceTime: opts.shutdownGraceTimeMs ?? 10_000,
    identity: `${opts.identity ?? `pid-${process.pid}`}@${q}`,
  };
}

async function createWorker(opts: WorkerOptions, q: QueueName, conn: NativeConnection): Promise<Worker> {
  if (q === 'control') {
    const workflowBundle = opts.workflowBundle ?? (await bundleWorkflows());
    return Worker.create({
      ...baseWorkerOptions(opts, q, conn),
      workflowBundle,
      activities: LOCAL_ACTIVITIES, // the workflows' local activities run where the workflow runs
      maxConcurrentActivityTaskExecutions: 1, // (none is scheduled on the control queue: this only caps that idle poller)
      ...(opts.maxConcurrentWorkflowTasks ? { maxConcurrentWorkflowTaskExecutions: opts.maxConcurrentWorkflowTasks } : {}),
    });
  }
  return Worker.create(activityWorkerOptions(opts, q, conn));
}

export async function createWorkers(opts: WorkerOptions, connection?: NativeConnection): Promise<WorkerGroup> {
  const log = logger('worker');
  const conn = connection ?? (await connectWorker(opts.temporal));
  const workers: Worker[] = [];
  try {
    for (const q of opts.queues) {
      workers.push(await createWorker(opts, q, conn));
      log.debug({ queue: TASK_QUEUES[q] }, 'worker ready');
    }
  } catch (err) {
    // Release what was created: a worker that never runs, and the connection it holds, would
    // keep this process alive (and deaf to SIGTERM, which the SDK's runtime handles).
    await Promise.all(workers.map((w) => w.runUntil(Promise.resolve()).catch(() => undefined)));
    if (!connection) await conn.close().catch(() => undefined);
    throw err;
  }
  let running: Promise<void> | undefined;
  let stopRequested = false;
  const shutdown = () => {
    // A worker that is not running yet cannot be shut down (the SDK throws); run() then stops it at once.
    stopRequested = true;
    for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
  };
  if (opts.signal?.aborted) shutdown();
  else opts.signal?.addEventListener('abort', shutdown, { once: true });
  return {
    workers,
    shutdown,
    run() {
      running ??= Promise.all(workers.map((w) => (stopRequested ? w.runUntil(Promise.resolve()) : w.run()))).then(
        async () => {
          if (!connection) await conn.close();
        },
        async (err: unknown) => {
          shutdown();
          if (!connection) await conn.close().catch(() => undefined);
          throw err;
        },
      );
      return running;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Process entrypoints (rollout-worker.ts, reward-worker.ts, learner-worker.ts, control-worker.ts,
// all-in-one.ts): each is `workerMain({ name, queues })`; the code they share is below.

/**
 * Default concurrency of the process entrypoints, per queue: activity tasks at once for the
 * activity queues, workflow tasks at once for control (undefined = the Temporal SDK's default).
 * Rollout and learner run one activity at a time: each holds an onnxruntime session cache and
 * already uses every core (or the GPU). Reward activities are mostly waiting (verifiers, judges,
 * sandboxes), so four shards run at once.
 */
export const ENTRYPOINT_CONCURRENCY: Record<QueueName, number | undefined> = { control: undefined, rollout: 1, reward: 4, learner: 1 };

/** Grace period of the entrypoints on SIGTERM/SIGINT, in seconds, unless --shutdown-grace says otherwise. */
export const ENTRYPOINT_SHUTDOWN_GRACE_S = 30;

/** What a worker entrypoint runs. */
export interface WorkerProcessSpec {
  /** Program name for usage text and logs, e.g. `reward-worker`. */
  name: string;
  /** The queues its workers poll. */
  queues: readonly QueueName[];
}

/** The settings of a worker process, from its command line and environment. */
export interface WorkerProcessOptions {
  /** Per queue: activity tasks at once (workflow tasks for control); absent = SDK default. */
  concurrency: Partial<Record<QueueName, number>>;
  shutdownGraceTimeMs: number;
  /** Bind address of the SDK's Prometheus exporter (`--metrics PORT|HOST:PORT`, env DURABLE_RL_METRICS_ADDRESS); absent = none. */
  metrics?: string;
}

/** A bad command line or environment variable of a worker entrypoint (exit code 2). */
export class WorkerUsageError extends Error {}

const envConcurrency = (q: QueueName) => `DURABLE_RL_${q.toUpperCase()}_CONCURRENCY`;

function positive(value: string, what: string, integer: boolean): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new WorkerUsageError(`${what} must be a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(value)}`);
  }
  return n;
}

export function workerUsage(spec: WorkerProcessSpec): string {
  const single = spec.queues.length === 1;
  const conc = single
    ? [
        `  --concurrency N           ${spec.queues[0] === 'control' ? 'workflow' : 'activity'} tasks at once (env ${envConcurrency(spec.queues[0]!)}; default ${ENTRYPOINT_CONCURRENCY[spec.queues[0]!] ?? 'the SDK default'})`,
      ]
    : spec.queues.map(
        (q) =>
          `  --${q}-concurrency N`.padEnd(28) +
          `${q === 'control' ? 'workflow' : 'activity'} tasks at once on ${q} (env ${envConcurrency(q)}; default ${ENTRYPOINT_CONCURRENCY[q] ?? 'the SDK default'})`,
      );
  return [
    `usage: ${spec.name} [options]`,
    '',
    `Polls ${spec.queues.map((q) => TASK_QUEUES[q]).join(', ')} until SIGTERM/SIGINT, then lets in-flight tasks finish and exits 0.`,
    'Temporal from DURABLE_RL_TEMPORAL_* (workers/temporal.ts), else the local dev server (started if needed).',
    '',
    'options:',
    ...conc,
    `  --shutdown-grace S        seconds in-flight activities get to finish on shutdown, then they are cancelled (env DURABLE_RL_SHUTDOWN_GRACE_SECONDS; default ${ENTRYPOINT_SHUTDOWN_GRACE_S})`,
    `  --metrics PORT|HOST:PORT  serve the Temporal SDK's worker metrics for Prometheus at http://HOST:PORT/metrics (PORT alone: every interface; env ${METRICS_ENV}; default none)`,
    '  -h, --help                this text',
  ].join('\n');
}

/** Reads a worker entrypoint's options: a flag wins over its environment variable, which wins over the default. */
export function workerProcessOptions(
  spec: WorkerProcessSpec,
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
): WorkerProcessOptions & { help: boolean } {
  const single = spec.queues.length === 1;
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    'shutdown-grace': { type: 'string' },
    metrics: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  };
  if (single) options.concurrency = { type: 'string' };
  else for (const q of spec.queues) options[`${q}-concurrency`] = { type: 'string' };
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options, allowPositionals: false, strict: true }));
  } catch (err) {
    throw new WorkerUsageError(`${(err as Error).message} (try ${spec.name} --help)`);
  }
  const concurrency: Partial<Record<QueueName, number>> = {};
  for (const q of spec.queues) {
    const flag = single ? 'concurrency' : `${q}-concurrency`;
    const fromFlag = values[flag] as string | undefined;
    const fromEnv = env[envConcurrency(q)];
    if (fromFlag !== undefined) concurrency[q] = positive(fromFlag, `--${flag}`, true);
    else if (fromEnv !== undefined && fromEnv !== '') concurrency[q] = positive(fromEnv, envConcurrency(q), true);
    else if (ENTRYPOINT_CONCURRENCY[q] !== undefined) concurrency[q] = ENTRYPOINT_CONCURRENCY[q];
  }
  const graceFlag = values['shutdown-grace'] as string | undefined;
  const graceEnv = env.DURABLE_RL_SHUTDOWN_GRACE_SECONDS;
  const graceS =
    graceFlag !== undefined
      ? positive(graceFlag, '--shutdown-grace', false)
      : graceEnv !== undefined && graceEnv !== ''
        ? positive(graceEnv, 'DURABLE_RL_SHUTDOWN_GRACE_SECONDS', false)
        : ENTRYPOINT_SHUTDOWN_GRACE_S;
  const metricsFlag = values.metrics as string | undefined;
  const metricsEnv = env[METRICS_ENV];
  let metrics: string | undefined;
  try {
    if (metricsFlag !== undefined) metrics = metricsBindAddress(metricsFlag, '--metrics');
    else if (metricsEnv) metrics = metricsBindAddress(metricsEnv, METRICS_ENV);
  } catch (err) {
    throw new WorkerUsageError((err as Error).message);
  }
  return { concurrency, shutdownGraceTimeMs: Math.round(graceS * 1000), ...(metrics ? { metrics } : {}), help: values.help === true };
}

/** Temporal from the environment, else the local dev server that infra/ starts (as `durable-rl worker` does). */
async function entrypointTemporal(env: NodeJS.ProcessEnv): Promise<TemporalConfig> {
  const fromEnv = temporalEnv(env);
  if (fromEnv.address) return temporalConfig(fromEnv);
  const e = await up({ components: ['temporal'], quiet: true, env });
  return temporalConfig({ address: e.temporal.address, namespace: e.temporal.namespace, uiUrl: e.temporal.uiUrl || undefined });
}

/**
 * Runs a worker process: parses its options, connects, polls its queues until SIGTERM or SIGINT,
 * then stops polling and lets in-flight activities finish (up to the grace period; after it they
 * are cancelled). A second signal exits at once with code 1. Resolves to the exit code: 0 after
 * a signalled, graceful stop; 2 for bad options. Fails if the workers cannot start or fail.
 */
export async function runWorkerProcess(
  spec: WorkerProcessSpec,
  argv: string[] = process.argv.slice(2),
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const opts = workerProcessOptions(spec, argv, env);
  if (opts.help) {
    process.stdout.write(`${workerUsage(spec)}\n`);
    return 0;
  }
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const log = logger('worker', { entrypoint: spec.name });
  const stop = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      log.warn({ signal: sig }, 'second signal: exiting without waiting for in-flight activities');
      process.exit(1);
    }
    log.info(
      { signal: sig, graceSeconds: opts.shutdownGraceTimeMs / 1000 },
      'shutting down: no new tasks; in-flight activities get the grace period to finish',
    );
    stop.abort();
  };
  // Ours from the start (a signal during startup stops the process too); the SDK's runtime adds its
  // own while workers run, which shuts them down the same way.
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    installRuntime({ metrics: opts.metrics });
    const temporal = await entrypointTemporal(env);
    const { control: workflowTasks, ...activityTasks } = opts.concurrency;
    const group = await createWorkers({
      temporal,
      queues: spec.queues,
      maxConcurrentActivities: activityTasks,
      maxConcurrentWorkflowTasks: workflowTasks,
      shutdownGraceTimeMs: opts.shutdownGraceTimeMs,
      signal: stop.signal,
    });
    log.info(
      {
        address: temporal.address,
        namespace: temporal.namespace,
        taskQueues: spec.queues.map((q) => TASK_QUEUES[q]),
        concurrency: opts.concurrency,
        identity: group.workers.map((w) => w.options.identity),
      },
      'worker polling; SIGTERM or Ctrl-C to stop',
    );
    await group.run();
    log.info('worker stopped');
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  }
}

/** The body of a worker entrypoint file: runs the process and exits with its code; errors print one line. */
export function workerMain(spec: WorkerProcessSpec): void {
  runWorkerProcess(spec).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${spec.name}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(err instanceof WorkerUsageError ? 2 : 1);
    },
  );
}
