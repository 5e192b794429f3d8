/**
 * Workers: one per task queue. `(await createWorkers({ queues: ['control', 'reward'], ... })).run()`
 * polls those queues in this process; the all-in-one worker polls them all. The control queue runs workflows; the other
 * queues run the activities of their stage. Graceful shutdown: SIGINT/SIGTERM let in-flight
 * activities finish (up to `shutdownGraceTimeMs`), then the process exits.
 */
import { fileURLToPath } from 'node:url';
import { Worker, bundleWorkflowCode, type NativeConnection, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities } from '../activities/index.js';
import { logger } from '../activities/common/log.js';
import { TASK_QUEUES, type QueueName } from '../workflows/task-queues.js';
import { connectWorker, type TemporalConfig } from './temporal.js';

export const ALL_QUEUES: QueueName[] = ['control', 'rollout', 'reward', 'learner'];

export interface WorkerOptions {
  temporal: TemporalConfig;
  queues: QueueName[];
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
}

export const workflowsPath = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

/** Bundles the workflow code once (seconds), for processes that create several workers. */
export function bundleWorkflows(): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({ workflowsPath, logger: quietBundlerLogger });
}

const quietBundlerLogger = {
  log() {}, trace() {}, debug() {}, info() {},
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

async function createWorker(opts: WorkerOptions, q: QueueName, conn: NativeConnection, activities: ReturnType<typeof createActivities>): Promise<Worker> {
  const base = {
    connection: conn,
    namespace: opts.temporal.namespace,
    taskQueue: TASK_QUEUES[q],
    shutdownGraceTime: opts.shutdownGraceTimeMs ?? 10_000,
    identity: `${opts.identity ?? `pid-${process.pid}`}@${q}`,
  };
  if (q === 'control') {
    const workflowBundle = opts.workflowBundle ?? (await bundleWorkflows());
    return Worker.create({ ...base, workflowBundle });
  }
  return Worker.create({
    ...base,
    activities,
    maxConcurrentActivityTaskExecutions: opts.maxConcurrentActivities?.[q] ?? 4,
  });
}

export async function createWorkers(opts: WorkerOptions, connection?: NativeConnection): Promise<WorkerGroup> {
  const log = logger('worker');
  const conn = connection ?? (await connectWorker(opts.temporal));
  const activities = createActivities();
  const workers: Worker[] = [];
  try {
    for (const q of opts.queues) {
      workers.push(await createWorker(opts, q, conn, activities));
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
