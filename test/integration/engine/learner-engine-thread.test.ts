/**
 * The engine off the event loop, end to end on the real dev server (issue 12 §2): a learnerUpdate
 * activity runs in this process's own worker, under the run config's default heartbeat timeout
 * (10 s) and a single attempt, so a heartbeat timeout would fail it.
 *
 * - One engine call longer than the heartbeat timeout (one micro-batch, sized by timing this
 *   machine to take about 3 timeouts): heartbeats reach the server during the call and the
 *   activity completes on its first attempt.
 * - A learner step of 40 micro-batches, its workflow cancelled after the first: the activity ends
 *   cancelled at the next micro-batch boundary after the cancellation reaches it (at most the
 *   micro-batch in flight finishes), before its last micro-batch, and writes no checkpoint.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Context } from '@temporalio/activity';
import { defaultPayloadConverter } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import { learnerUpdate } from '../../../activities/learner/learner-update.js';
import { writeCheckpoint } from '../../../activities/checkpoint/checkpoint.js';
import { initTrainState } from '../../../activities/model/engine.js';
import { initWeights } from '../../../activities/model/init.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { loadRun, writeRunRecord } from '../../../activities/run/resolve.js';
import type { LearnerInput } from '../../../activities/run/types.js';
import { checkpointPrefix } from '../../../activities/store/keys.js';
import { commit } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { testTemporal, type TestTemporal } from '../../support/temporal.js';

const TASK_QUEUE = `engine-thread-${process.pid}`;
/** The run config's default heartbeat timeout. */
const HEARTBEAT_TIMEOUT_MS =
  parseRunConfig({ name: 'x', task: { name: 'addition' }, phases: [{ kind: 'sft', steps: 1 }] }).workflow.heartbeatTimeoutSeconds * 1000;

const runConfig = (storeUri: string, batchSize: number, microBatchSize: number): RunConfigInput => ({
  name: 'engine-thread',
  seed: 3,
  store: storeUri,
  task: { name: 'addition', options: { minDigits: 3, maxDigits: 3, reverse: true, pad: true } },
  model: { hidden: 256, layers: 4, heads: 4 },
  phases: [{ kind: 'sft', steps: 1, batchSize, lr: 1e-3 }],
  learner: { microBatchSize },
  engine: { threads: 1 },
});

/** What the test's activity wrapper saw: every heartbeat (time, details), the abort, the end. */
interface Seen {
  beats: { t: number; d: Record<string, unknown> }[];
  aborted?: { t: number; microBatchesDone: number };
  ended?: { t: number; error?: Error };
}
const seen = new Map<string, Seen>();
const lastDone = (s: Seen) => Number(s.beats.findLast((b) => b.d.phase === 'train')?.d.microBatchesDone ?? 0);

let t: TestTemporal;
let worker: Worker;
let running: Promise<void>;
let connection: NativeConnection;
let dir: string;
let storeUri: string;
let store: ObjectStore;
/** Sequences one engine call trains on per second on this machine (measured in `before`). */
let perSecond: number;

async function newRun(runId: string, batchSize: number, microBatchSize: number): Promise<LearnerInput> {
  const config = parseRunConfig(runConfig(storeUri, batchSize, microBatchSize));
  await writeRunRecord(store, { run_id: runId, name: config.name, resumed_from: null, config });
  const { run } = await loadRun(store, runId);
  const state = initTrainState(run.model, initWeights(run.model, config.seed));
  await commit(store, checkpointPrefix(runId, 0), await writeCheckpoint(store, runId, 0, state));
  return {
    storeUri,
    runId,
    step: 0,
    phaseIndex: 0,
    phase: 'sft',
    lr: 1e-3,
    referenceVersion: null,
    promptOffset: 0,
    batchSize,
    rollouts: [],
    advantages: null,
  };
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'engine-thread-'));
  storeUri = pathToFileURL(dir).href;
  store = openStore(storeUri);
  // calibration, outside Temporal: warm learner steps of one micro-batch of 128 and of 1024
  // sequences; their difference leaves out what a step spends besides the engine call
  const small = await newRun('calibrate-128', 128, 128);
  const large = await newRun('calibrate-1024', 1024, 1024);
  await learnerUpdate(small); // builds the session
  const time = async (input: LearnerInput) => {
    const t0 = performance.now();
    await learnerUpdate(input);
    return (performance.now() - t0) / 1000;
  };
  const t128 = await time(small);
  const t1024 = await time(large);
  perSecond = (1024 - 128) / Math.max(t1024 - t128, 1e-3);

  t = await testTemporal();
  connection = await NativeConnection.connect({ address: t.config.address });
  worker = await Worker.create({
    connection,
    namespace: t.config.namespace,
    taskQueue: TASK_QUEUE,
    workflowsPath: fileURLToPath(new URL('./learner-probe-workflow.ts', import.meta.url)),
    activities: {
      async learnerUpdate(input: LearnerInput) {
        const ctx = Context.current();
        const s: Seen = { beats: [] };
        seen.set(input.runId, s);
        const send = ctx.heartbeat;
        // stage() heartbeats through this Context's own property: record each call, then send it
        (ctx as { heartbeat: (d?: unknown) => void }).heartbeat = (d?: unknown) => {
          s.beats.push({ t: Date.now(), d: d as Record<string, unknown> });
          send(d);
        };
        ctx.cancellationSignal.addEventListener('abort', () => (s.aborted = { t: Date.now(), microBatchesDone: lastDone(s) }));
        try {
          const r = await learnerUpdate(input);
          s.ended = { t: Date.now() };
          return r;
        } catch (error) {
          s.ended = { t: Date.now(), error: error as Error };
          throw error;
        }
      },
    },
  });
  running = worker.run();
});

after(async () => {
  worker?.shutdown();
  await running;
  await connection?.close();
  await t?.client.connection.close();
  await store?.close();
  await rm(dir, { recursive: true, force: true });
});

/** The server's view of the pending learner activity: last heartbeat time (ms) and details. */
async function pendingHeartbeat(workflowId: string): Promise<{ at: number; details: Record<string, unknown> } | null> {
  const pending = (await t.client.workflow.getHandle(workflowId).describe()).raw.pendingActivities ?? [];
  const a = pending[0];
  const ts = a?.lastHeartbeatTime;
  if (!a || !ts) return null;
  const payload = a.heartbeatDetails?.payloads?.[0];
  const details = payload ? (defaultPayloadConverter.fromPayload(payload) as Record<string, unknown>) : {};
  return { at: Number(ts.seconds) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6), details };
}

test('heartbeats reach the server during one engine call 3x the default 10 s heartbeat timeout, and the single-attempt activity completes', async (tc) => {
  const runId = 'long-call';
  const batch = Math.ceil((perSecond * 3 * HEARTBEAT_TIMEOUT_MS) / 1000);
  const input = await newRun(runId, batch, batch); // one micro-batch: one session run
  const handle = await t.client.workflow.start('learnerProbe', {
    taskQueue: TASK_QUEUE,
    workflowId: `engine-thread-long-${process.pid}-${Date.now()}`,
    args: [input, HEARTBEAT_TIMEOUT_MS],
  });
  const atServer = new Set<number>();
  const done = handle.result();
  let finished = false;
  done.then(
    () => (finished = true),
    () => (finished = true),
  );
  while (!finished) {
    const hb = await pendingHeartbeat(handle.workflowId).catch(() => null);
    if (hb) atServer.add(hb.at);
    await sleep(250);
  }
  const result = await done;
  assert.equal(result.microBatches, 1, 'the step was one micro-batch');
  const s = seen.get(runId)!;
  const start = s.beats.find((b) => b.d.phase === 'train' && b.d.microBatchesDone === 0)!.t;
  const end = s.beats.find((b) => b.d.phase === 'train' && b.d.microBatchesDone === 1)!.t;
  const during = [...atServer].filter((at) => at > start + 500 && at < end);
  tc.diagnostic(
    `batch ${batch}: engine call ${end - start} ms; server heartbeats at ${[...atServer].map((x) => x - start).join(', ')} ms from its start`,
  );
  assert.ok(
    end - start > HEARTBEAT_TIMEOUT_MS,
    `the engine call (${end - start} ms, batch ${batch}) is longer than the heartbeat timeout (${HEARTBEAT_TIMEOUT_MS} ms)`,
  );
  assert.ok(
    during.length >= 1,
    `heartbeats recorded by the server during the call: ${during.map((x) => x - start).join(', ')} ms after it began (all: ${[...atServer].map((x) => x - start).join(', ')})`,
  );
  const history = await handle.fetchHistory();
  const started = history.events!.find((e) => e.activityTaskStartedEventAttributes);
  assert.equal(started?.activityTaskStartedEventAttributes?.attempt, 1, 'no retry: the activity never timed out');
});

test('a cancelled learner activity stops at the next micro-batch boundary: at most the micro-batch in flight completes, none after, no checkpoint written', async (tc) => {
  const runId = 'cancelled';
  const parts = 40;
  const micro = Math.ceil(perSecond); // about 1 s a micro-batch: cancellation (up to a heartbeat throttle interval, 8 s) arrives well before the last
  const input = await newRun(runId, micro * parts, micro);
  const handle = await t.client.workflow.start('learnerProbe', {
    taskQueue: TASK_QUEUE,
    workflowId: `engine-thread-cancel-${process.pid}-${Date.now()}`,
    args: [input, HEARTBEAT_TIMEOUT_MS],
  });
  const deadline = Date.now() + 120_000;
  for (;;) {
    const s = seen.get(runId);
    if (s && lastDone(s) >= 1) break;
    if (Date.now() > deadline) assert.fail('the first micro-batch never finished');
    await sleep(100);
  }
  const cancelledAt = Date.now();
  await handle.cancel();
  await assert.rejects(handle.result());
  const s = seen.get(runId)!;
  assert.ok(s.aborted, 'the activity saw the cancellation');
  assert.equal(s.ended?.error?.name, 'CancelledFailure', `the activity ended cancelled (${s.ended?.error?.message})`);
  const doneAtEnd = lastDone(s);
  tc.diagnostic(
    `micro-batches of ${micro}: cancellation seen ${s.aborted.t - cancelledAt} ms after the request with ${s.aborted.microBatchesDone} done; ended ${s.ended!.t - s.aborted.t} ms later with ${doneAtEnd} of ${parts} done`,
  );
  assert.ok(
    doneAtEnd <= s.aborted.microBatchesDone + 1,
    `${doneAtEnd} micro-batches done at the end, ${s.aborted.microBatchesDone} when the cancellation arrived`,
  );
  assert.ok(doneAtEnd < parts, `stopped before the last of ${parts} micro-batches (${doneAtEnd} done)`);
  assert.ok(!s.beats.some((b) => b.d.phase === 'write'), 'no checkpoint write began');
  const written: string[] = [];
  for await (const o of store.list(checkpointPrefix(runId, 1))) written.push(o.key);
  assert.deepEqual(written, [], 'nothing written under checkpoint 1');
});
