/**
 * The benchmarks' workers, as a user runs them: `startAllInOne`, every queue (control, rollout,
 * reward, learner) in this process on one connection with the entrypoints' default concurrency
 * (`ENTRYPOINT_CONCURRENCY`, what `npm start` runs); `spawnWorker`, a `durable-rl worker` process
 * (all queues, or the ones given), resolved once it polls.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TemporalConfig } from '../workers/temporal.js';
import { createWorkers, ENTRYPOINT_CONCURRENCY, type WorkerGroup } from '../workers/worker.js';
import { QUEUE_NAMES } from '../workflows/task-queues.js';

/** Every queue's worker in this process; returns the group and the promise of its run. */
export async function startAllInOne(temporal: TemporalConfig): Promise<{ group: WorkerGroup; running: Promise<void> }> {
  const { control, ...activities } = ENTRYPOINT_CONCURRENCY;
  const group = await createWorkers({
    temporal,
    queues: QUEUE_NAMES,
    maxConcurrentActivities: activities,
    maxConcurrentWorkflowTasks: control,
    shutdownGraceTimeMs: 2000,
  });
  return { group, running: group.run() };
}

const root = fileURLToPath(new URL('..', import.meta.url));

/** A `durable-rl worker` process for `queues` (all of them when omitted) with `env` over this process's; resolves once it polls. */
export function spawnWorker(env: Record<string, string>, queues?: readonly string[]): Promise<ChildProcess> {
  const args = ['--import', 'tsx', 'workers/cli.ts', 'worker', ...(queues ? ['--queues', queues.join(',')] : [])];
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...env, DURABLE_RL_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out = (out + d.toString()).slice(-20_000);
      if (out.includes('workers polling')) resolve(child);
    });
    child.stderr.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
    child.once('exit', (code, sig) => reject(new Error(`worker ${queues?.join(',') ?? 'all-in-one'} exited (${code ?? sig}):\n${out}`)));
  });
}
