/**
 * Temporal helpers for integration tests: a client and in-process workers on the real dev server,
 * and child-process workers that a test can SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import type { Worker, WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { endpointsEnv } from '../../infra/index.js';
import { servers } from './servers.js';
import { connectClient, temporalConfig, type TemporalConfig } from '../../workers/temporal.js';
import { bundleWorkflows, createWorkers } from '../../workers/worker.js';
import type { QueueName } from '../../workflows/task-queues.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

export interface TestTemporal {
  config: TemporalConfig;
  client: Client;
  env: Record<string, string>;
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** Real servers up, their endpoints exported to this process's env (S3 stores read them), a client. */
export async function testTemporal(): Promise<TestTemporal> {
  const e = await servers();
  const env = endpointsEnv(e);
  Object.assign(process.env, env);
  const config = temporalConfig({ address: e.temporal.address, namespace: e.temporal.namespace, uiUrl: e.temporal.uiUrl });
  return { config, client: await connectClient(config), env };
}

/** In-process workers for the given queues, running until `stop()`. */
export async function startWorkers(t: TestTemporal, queues: QueueName[]): Promise<{ workers: Worker[]; stop(): Promise<void> }> {
  bundle ??= bundleWorkflows();
  const group = await createWorkers({ temporal: t.config, queues, workflowBundle: await bundle, shutdownGraceTimeMs: 1000 });
  const running = group.run();
  return {
    workers: group.workers,
    async stop() {
      group.shutdown();
      await running;
    },
  };
}

/**
 * A worker in a child process (`durable-rl worker --queues ...`) with `env` over this process's
 * environment; `ready` resolves once it polls and rejects, with its output, if it exits first.
 */
export function spawnWorkerProcess(queues: QueueName[], env: Record<string, string>): { child: ChildProcess; ready: Promise<void> } {
  const child = spawn(process.execPath, ['--import', 'tsx', 'workers/cli.ts', 'worker', '--queues', queues.join(',')], {
    cwd: root,
    env: { ...process.env, ...env, DURABLE_RL_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out = (out + d.toString()).slice(-20_000);
      if (out.includes('workers polling')) resolve();
    });
    child.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-20_000)));
    child.once('exit', (code, sig) => reject(new Error(`worker ${queues.join(',')} exited before polling (${code ?? sig}):\n${out}`)));
  });
  ready.catch(() => undefined); // a caller that stops waiting must not leave an unhandled rejection
  return { child, ready };
}

/** A worker in a child process on the test servers, resolved once it polls. */
export async function spawnWorker(t: TestTemporal, queues: QueueName[]): Promise<ChildProcess> {
  const { child, ready } = spawnWorkerProcess(queues, t.env);
  await ready;
  return child;
}

export async function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
}

/**
 * For a test file: registers `before`/`after` hooks that bring up the servers, a client and
 * in-process workers on `queues`, and close them after the file's tests. Returns a getter for
 * the client and config (available once `before` has run).
 */
export function temporalWithWorkers(queues: QueueName[]): () => TestTemporal {
  let t: TestTemporal | undefined;
  let stop: (() => Promise<void>) | undefined;
  before(async () => {
    t = await testTemporal();
    ({ stop } = await startWorkers(t, queues));
  });
  after(async () => {
    await stop?.();
    await t?.client.connection.close();
  });
  return () => {
    if (!t) throw new Error('temporalWithWorkers: used before its before() hook ran');
    return t;
  };
}

/** The run's markdown current details, as the Web UI reads them (the metadata query a control worker answers). */
export async function currentDetails(client: Client, workflowId: string): Promise<string> {
  return (
    (await client.workflow.getHandle(workflowId).query<{ currentDetails?: string }>('__temporal_workflow_metadata')).currentDetails ?? ''
  );
}

/** The run's DurableRlStatus search attribute. */
export async function runStatusAttribute(client: Client, workflowId: string): Promise<string> {
  const status = { name: 'DurableRlStatus', type: 'KEYWORD' } as never;
  return (await client.workflow.getHandle(workflowId).describe()).typedSearchAttributes.get(status) as unknown as string;
}
