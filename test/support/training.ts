/**
 * Helpers for training-run integration tests: a tiny run config (seconds per step on 2 cores),
 * supervised child-process workers that come back after a SIGKILL, and checks on what a run
 * committed.
 */
import type { ChildProcess } from 'node:child_process';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { openStore } from '../../activities/store/open.js';
import { parseRunConfig, type RunConfig, type RunConfigInput } from '../../activities/run/config.js';
import { checkpointPrefix, METRICS_NAME, MODEL_NAME, stepPrefix } from '../../activities/store/keys.js';
import { committedSteps, readArtifact, readCommitted } from '../../activities/store/manifest.js';
import { decodeMetrics } from '../../activities/store/schemas.js';
import type { ObjectStore } from '../../activities/store/object-store.js';
import type { QueueName } from '../../workflows/task-queues.js';
import type { Client } from '@temporalio/client';
import { pauseRun, runProgress, type StartedRun } from '../../workers/train-client.js';
import { spawnWorkerProcess, startWorkers, testTemporal, type TestTemporal } from './temporal.js';

/** A run that trains a 1-layer model on 1-digit addition: 2 sft steps then 3 rl steps, 2 rollout shards per step. */
export function tinyRunConfig(store: string, overrides: Partial<RunConfigInput> = {}): RunConfig {
  return parseRunConfig({
    name: 'tiny',
    seed: 11,
    store,
    task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
    model: { hidden: 32, layers: 1, heads: 2 },
    phases: [
      { kind: 'sft', steps: 2, batchSize: 16, lr: 3e-3 },
      { kind: 'rl', steps: 3, promptsPerStep: 8, groupSize: 4, lr: 1e-3 },
    ],
    rollout: { promptsPerShard: 4, maxConcurrentShards: 2 },
    learner: { microBatchSize: 16 },
    eval: { prompts: 16, passK: 2 },
    engine: { threads: 1 },
    workflow: { heartbeatTimeoutSeconds: 3 },
    ...overrides,
  });
}

/** A worker process for `queues` that is started again whenever it dies (as a process supervisor would). */
export interface SupervisedWorker {
  /** Times the process died and was restarted. */
  readonly restarts: number;
  /** SIGKILLs the running process (a crash); the supervisor starts another. Resolves once the new one polls. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export async function superviseWorker(queues: QueueName[], env: Record<string, string>): Promise<SupervisedWorker> {
  let stopping = false;
  let restarts = 0;
  let current = spawnWorkerProcess(queues, env);
  let restarted: (() => void) | undefined;
  const watch = (c: ChildProcess) => {
    c.once('exit', () => {
      if (stopping) return;
      restarts++;
      current = spawnWorkerProcess(queues, env);
      watch(current.child);
      const next = restarted;
      restarted = undefined;
      void current.ready.then(next, next);
    });
  };
  watch(current.child);
  await current.ready;
  return {
    get restarts() {
      return restarts;
    },
    async kill() {
      const back = new Promise<void>((r) => (restarted = r));
      current.child.kill('SIGKILL');
      await back;
    },
    async stop() {
      stopping = true;
      const c = current.child;
      if (c.exitCode !== null || c.signalCode !== null) return;
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
      await gone;
      clearTimeout(t);
    },
  };
}

/** Every step 0..total-1 committed exactly once, with its own metrics row; checkpoints 0..total. */
export async function assertCommittedRun(store: ObjectStore, runId: string, total: number, firstStep = 0): Promise<void> {
  const expectSteps = Array.from({ length: total - firstStep }, (_, i) => firstStep + i);
  assert.deepEqual(await committedSteps(store, runId, 'steps'), expectSteps, 'committed steps');
  const cps = await committedSteps(store, runId, 'checkpoints');
  for (let v = firstStep + 1; v <= total; v++) assert.ok(cps.includes(v), `checkpoint ${v} committed`);
  for (const s of expectSteps) {
    const m = await readCommitted(store, stepPrefix(runId, s));
    assert.ok(m, `step ${s} manifest`);
    const rows = decodeMetrics(await readArtifact(store, stepPrefix(runId, s), METRICS_NAME));
    assert.equal(rows.length, 1, `step ${s}: one metrics row`);
    assert.equal(rows[0]!.step, s);
    assert.equal(rows[0]!.run_id, runId);
  }
}

/** sha256 of the model weights of a committed checkpoint (from its verified manifest). */
export async function weightsSha(store: ObjectStore, runId: string, version: number): Promise<string> {
  const m = await readCommitted(store, checkpointPrefix(runId, version));
  assert.ok(m, `checkpoint ${version} of ${runId} is committed`);
  const e = m.artifacts.find((a) => a.name === MODEL_NAME);
  assert.ok(e, `${MODEL_NAME} in the checkpoint`);
  return e.sha256;
}

/** Polls `fn` until it returns a value that is not undefined (or throws after `timeoutMs`). */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * A run dies at a chosen point, deterministically: it is asked to pause before `step` (the pause
 * Update, sent before that step can have started), and terminated once paused, with steps
 * 0..step-1 committed — however fast the machine trains. (Waiting for a commit and then
 * terminating races the run: a fast machine commits the last steps before the terminate lands.)
 */
export async function terminateBefore(client: Client, run: StartedRun, step: number): Promise<void> {
  const answer = await pauseRun(client, run.runId, step);
  assert.equal(answer.step, step, answer.message);
  await waitFor(`${run.runId} to pause before step ${step}`, async () =>
    (await runProgress(client, run.runId))?.status === 'paused' ? true : undefined,
  );
  await run.handle.terminate('test: the run dies');
}

/** What a training integration test runs against: the dev server (with a control worker) and a store. */
export interface TrainingServers {
  readonly t: TestTemporal;
  readonly store: ObjectStore;
}

/**
 * Registers node:test `before`/`after` hooks that start the test's Temporal (and a control worker)
 * and open the store at `storeUri`, and tear both down (removing `cleanup` directories). The fields
 * are read inside tests, after `before` ran.
 */
export function trainingServers(storeUri: string, cleanup: string[] = []): TrainingServers {
  let t: TestTemporal | undefined;
  let control: { stop(): Promise<void> } | undefined;
  let store: ObjectStore | undefined;
  before(async () => {
    t = await testTemporal();
    control = await startWorkers(t, ['control']);
    store = openStore(storeUri);
  });
  after(async () => {
    await control?.stop();
    await t?.client.connection.close();
    await store?.close();
    for (const d of cleanup) rmSync(d, { recursive: true, force: true });
  });
  return {
    get t() {
      return t!;
    },
    get store() {
      return store!;
    },
  };
}

/**
 * Runs `fn` with one supervised worker process per activity queue (rollout, reward, learner), each
 * SIGKILLed at the crash points `crashAt` (`learner@3`: once across processes) and restarted; returns
 * what `fn` returned and how many restarts there were.
 */
export async function withCrashingWorkers<T>(
  env: Record<string, string>,
  crashAt: string[],
  fn: () => Promise<T>,
): Promise<{ result: T; restarts: number }> {
  const onceDir = mkdtempSync(join(tmpdir(), 'crash-once-'));
  const crash: Record<string, string> = crashAt.length ? { DURABLE_RL_CRASH_AT: crashAt.join(','), DURABLE_RL_CRASH_ONCE: onceDir } : {};
  const workers = await Promise.all((['rollout', 'reward', 'learner'] as const).map((q) => superviseWorker([q], { ...env, ...crash })));
  try {
    const result = await fn();
    return { result, restarts: workers.reduce((n, w) => n + w.restarts, 0) };
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
    rmSync(onceDir, { recursive: true, force: true });
  }
}
