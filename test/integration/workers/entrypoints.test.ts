/**
 * The worker entrypoints (workers/*-worker.ts, all-in-one.ts) as real child processes against the
 * real Temporal dev server: the reward worker polls its queue, exits 0 on SIGTERM/SIGINT, and lets
 * an in-flight activity finish first. Plus how their options are read (flag > env > default).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { killHard, startWorkers, testTemporal, type TestTemporal } from '../../support/temporal.js';
import { startAnnotateRewards } from '../../../workers/client.js';
import { writeSampleInputs } from '../../../activities/reward/annotate-activities.js';
import { ENTRYPOINT_SHUTDOWN_GRACE_S, workerProcessOptions, WorkerUsageError } from '../../../workers/worker.js';
import { QUEUE_NAMES, TASK_QUEUES } from '../../../workflows/task-queues.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const tag = Date.now().toString(36);
let t: TestTemporal;
const children: ChildProcess[] = [];

before(async () => {
  t = await testTemporal();
});
after(async () => {
  await Promise.all(children.map(killHard));
  await t?.client.connection.close();
});

interface Spawned {
  child: ChildProcess;
  /** stdout + stderr so far. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function spawnEntrypoint(file: string, args: string[] = [], env: Record<string, string> = {}): Spawned {
  const child = spawn(process.execPath, ['--import', 'tsx', file, ...args], {
    cwd: root,
    env: { ...process.env, ...t.env, DURABLE_RL_LOG_FORMAT: 'json', DURABLE_RL_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => out, exited };
}

/** A TCP port free right now on 127.0.0.1. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Resolves with the entrypoint's "worker polling" log record once it is written. */
async function ready(s: Spawned, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const line = s
      .output()
      .split('\n')
      .find((l) => l.includes('"worker polling'));
    if (line) return JSON.parse(line) as Record<string, unknown>;
    if (s.child.exitCode !== null || s.child.signalCode !== null) assert.fail(`the worker exited before polling:\n${s.output()}`);
    if (Date.now() > deadline) assert.fail(`the worker did not start polling in ${timeoutMs} ms:\n${s.output()}`);
    await sleep(100);
  }
}

async function within<T>(p: Promise<T>, ms: number, what: string, out: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms:\n${out()}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Identities of the recent pollers of an activity task queue, as the server reports them (DescribeTaskQueue). */
async function activityPollers(taskQueue: string): Promise<string[]> {
  const res = await t.client.workflowService.describeTaskQueue({
    namespace: t.config.namespace,
    taskQueue: { name: taskQueue },
    taskQueueType: 2, // TASK_QUEUE_TYPE_ACTIVITY
  });
  return (res.pollers ?? []).map((p) => p.identity ?? '');
}

test('the reward worker entrypoint polls durable-rl.reward, then exits 0 within seconds of SIGTERM', async () => {
  const w = spawnEntrypoint('workers/reward-worker.ts', ['--shutdown-grace', '5']);
  const rec = await ready(w);
  const identity = `pid-${w.child.pid}@reward`;
  assert.deepEqual(rec.identity, [identity]);
  assert.deepEqual(rec.taskQueues, [TASK_QUEUES.reward]);
  assert.deepEqual(rec.concurrency, { reward: 4 }, 'reward runs 4 activities at once by default');

  // The server sees it polling.
  const deadline = Date.now() + 20_000;
  while (!(await activityPollers(TASK_QUEUES.reward)).includes(identity)) {
    if (Date.now() > deadline) assert.fail(`${identity} never showed among the pollers of ${TASK_QUEUES.reward}`);
    await sleep(200);
  }

  const t0 = Date.now();
  w.child.kill('SIGTERM');
  const { code, signal } = await within(w.exited, 10_000, 'exit after SIGTERM', w.output);
  assert.equal(signal, null, `killed by ${signal}:\n${w.output()}`);
  assert.equal(code, 0, w.output());
  assert.ok(Date.now() - t0 < 10_000);
  assert.match(w.output(), /"worker stopped"/);
});

test("with --metrics 127.0.0.1:PORT the worker serves the SDK's Prometheus metrics, its reward queue's 4 free activity slots among them", async () => {
  const port = await freePort();
  const w = spawnEntrypoint('workers/reward-worker.ts', ['--metrics', `127.0.0.1:${port}`, '--shutdown-grace', '5']);
  await ready(w);
  const slots = new RegExp(`^temporal_worker_task_slots_available\\{[^}]*task_queue="${TASK_QUEUES.reward}"[^}]*\\} (\\d+)`, 'm');
  let body = '';
  const deadline = Date.now() + 30_000;
  while (!slots.test(body)) {
    if (Date.now() > deadline) assert.fail(`no task-slot gauge of ${TASK_QUEUES.reward} in the scrape:\n${body.slice(0, 2000)}`);
    await sleep(500);
    body = await fetch(`http://127.0.0.1:${port}/metrics`).then(
      (r) => r.text(),
      () => '',
    );
  }
  assert.equal(Number(slots.exec(body)![1]), 4, 'four activity slots free: the reward default concurrency, none taken');
  assert.match(body, /^# TYPE temporal_\w+ (counter|gauge|histogram)$/m);
  w.child.kill('SIGTERM');
  assert.equal((await within(w.exited, 10_000, 'exit after SIGTERM', w.output)).code, 0, w.output());
});

test('SIGINT stops it the same way, with the concurrency taken from DURABLE_RL_REWARD_CONCURRENCY', async () => {
  const w = spawnEntrypoint('workers/reward-worker.ts', [], { DURABLE_RL_REWARD_CONCURRENCY: '7' });
  const rec = await ready(w);
  assert.deepEqual(rec.concurrency, { reward: 7 });
  w.child.kill('SIGINT');
  const { code } = await within(w.exited, 10_000, 'exit after SIGINT', w.output);
  assert.equal(code, 0, w.output());
});

test('on SIGTERM an in-flight reward shard finishes in the worker before it exits', async () => {
  const control = await startWorkers(t, ['control']);
  let finisher: Awaited<ReturnType<typeof startWorkers>> | undefined;
  try {
    const w = spawnEntrypoint('workers/reward-worker.ts', ['--concurrency', '1', '--shutdown-grace', '30']);
    await ready(w);
    const identity = `pid-${w.child.pid}@reward`;

    // One shard of 12 records at 3 records/s: about 4 s in the worker.
    const storeUri = pathToFileURL(mkdtempSync(join(tmpdir(), 'drl-entrypoints-'))).href;
    await writeSampleInputs(storeUri, 'inputs/sample.arrow', 12, 5);
    const jobId = `it-entrypoint-sigterm-${tag}`;
    const started = await startAnnotateRewards(t.client, {
      jobId,
      storeUri,
      inputKey: 'inputs/sample.arrow',
      shardSize: 12,
      chunkSize: 2,
      maxRecordsPerSecond: 3,
    });

    // Wait until the shard is running in our worker, then SIGTERM it.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const pending = (await started.handle.describe()).raw.pendingActivities ?? [];
      const shard = pending.find((a) => a.activityType?.name === 'annotateShard');
      if (shard?.lastStartedTime && shard.lastWorkerIdentity === identity) break;
      if (shard?.lastWorkerIdentity && shard.lastWorkerIdentity !== identity) {
        assert.fail(`another worker (${shard.lastWorkerIdentity}) took the shard: is a stray worker polling ${TASK_QUEUES.reward}?`);
      }
      if (Date.now() > deadline) assert.fail(`the shard never started in ${identity}:\n${w.output()}`);
      await sleep(100);
    }
    w.child.kill('SIGTERM');
    const { code } = await within(w.exited, 30_000, 'exit after SIGTERM', w.output);
    assert.equal(code, 0, w.output());

    // The shard was completed by that worker, on its first attempt: not cancelled and retried elsewhere.
    const history = await started.handle.fetchHistory();
    const events = history.events ?? [];
    const scheduled = events.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'annotateShard');
    assert.ok(scheduled, 'the shard was scheduled');
    const sid = Number(scheduled.eventId);
    const startedEv = events.find((e) => Number(e.activityTaskStartedEventAttributes?.scheduledEventId) === sid);
    const completed = events.find((e) => Number(e.activityTaskCompletedEventAttributes?.scheduledEventId) === sid);
    assert.ok(completed, `the in-flight shard completed before the worker exited:\n${w.output()}`);
    assert.equal(completed.activityTaskCompletedEventAttributes!.identity, identity);
    assert.equal(startedEv?.activityTaskStartedEventAttributes?.attempt, 1);

    // Another reward worker finalizes the job; all 12 records were scored once.
    finisher = await startWorkers(t, ['reward']);
    const result = await started.result();
    assert.equal(result.records, 12);
  } finally {
    await finisher?.stop();
    await control.stop();
  }
});

test('bad options exit 2 with a message naming the option', async () => {
  const w = spawnEntrypoint('workers/learner-worker.ts', ['--concurrency', 'two']);
  const { code } = await within(w.exited, 30_000, 'exit', w.output);
  assert.equal(code, 2);
  assert.match(w.output(), /learner-worker: --concurrency must be a positive integer, got "two"/);
});

test('entrypoint options: a flag wins over its environment variable, which wins over the per-queue default', () => {
  const reward = { name: 'reward-worker', queues: ['reward' as const] };
  assert.deepEqual(workerProcessOptions(reward, [], {}), {
    concurrency: { reward: 4 },
    shutdownGraceTimeMs: ENTRYPOINT_SHUTDOWN_GRACE_S * 1000,
    help: false,
  });
  assert.equal(workerProcessOptions(reward, [], { DURABLE_RL_REWARD_CONCURRENCY: '9' }).concurrency.reward, 9);
  assert.equal(workerProcessOptions(reward, ['--concurrency', '2'], { DURABLE_RL_REWARD_CONCURRENCY: '9' }).concurrency.reward, 2);
  assert.equal(workerProcessOptions(reward, [], { DURABLE_RL_SHUTDOWN_GRACE_SECONDS: '2.5' }).shutdownGraceTimeMs, 2500);
  assert.equal(
    workerProcessOptions(reward, ['--shutdown-grace', '1'], { DURABLE_RL_SHUTDOWN_GRACE_SECONDS: '2.5' }).shutdownGraceTimeMs,
    1000,
  );

  const all = workerProcessOptions({ name: 'all-in-one', queues: QUEUE_NAMES }, ['--learner-concurrency', '2'], {
    DURABLE_RL_CONTROL_CONCURRENCY: '50',
  });
  assert.deepEqual(all.concurrency, { control: 50, rollout: 1, reward: 4, learner: 2 });
  assert.deepEqual(
    workerProcessOptions({ name: 'control-worker', queues: ['control'] }, [], {}).concurrency,
    {},
    'control keeps the SDK default',
  );

  assert.throws(
    () => workerProcessOptions(reward, [], { DURABLE_RL_REWARD_CONCURRENCY: '1.5' }),
    (e: Error) => e instanceof WorkerUsageError && /DURABLE_RL_REWARD_CONCURRENCY must be a positive integer, got "1.5"/.test(e.message),
  );
  assert.throws(() => workerProcessOptions(reward, ['--shutdown-grace=-1']), /--shutdown-grace must be a positive number/);
  assert.equal(workerProcessOptions(reward, ['--metrics', '9464']).metrics, '0.0.0.0:9464', 'a port alone: every interface');
  assert.equal(workerProcessOptions(reward, [], { DURABLE_RL_METRICS_ADDRESS: '127.0.0.1:9100' }).metrics, '127.0.0.1:9100');
  assert.equal(workerProcessOptions(reward, ['--metrics=9464'], { DURABLE_RL_METRICS_ADDRESS: '127.0.0.1:9100' }).metrics, '0.0.0.0:9464');
  assert.throws(
    () => workerProcessOptions(reward, ['--metrics', 'localhost:99999']),
    /--metrics must be PORT or HOST:PORT .*"localhost:99999"/,
  );
  assert.throws(
    () => workerProcessOptions(reward, ['--reward-concurrency', '2']),
    /Unknown option '--reward-concurrency'.*reward-worker --help/,
  );
});
