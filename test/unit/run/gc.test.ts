/**
 * gcRun (activities/checkpoint/gc.ts) on a real file:// store made by a short run: initRun, then 6
 * sft steps (learnerUpdate + commitStep, outside Temporal) of a tiny llama 32x1 with retention
 * { keepLast: 2, keepEvery: 3 }, so checkpoints 0..6. Each test works on its own copy of that store.
 * With `apply: 'every_step'` (the default) the commit of every step applies the policy itself.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ApplicationFailure } from '@temporalio/common';
import { gcRun } from '../../../activities/checkpoint/gc.js';
import { commitStep } from '../../../activities/checkpoint/commit-step.js';
import { initRun } from '../../../activities/checkpoint/init-run.js';
import { loadWeights } from '../../../activities/checkpoint/checkpoint.js';
import { learnerUpdate } from '../../../activities/learner/learner-update.js';
import { parseRunConfig, type RunConfig } from '../../../activities/run/config.js';
import type { LearnerInput } from '../../../activities/run/types.js';
import { checkpointPrefix, MODEL_NAME, OPTIMIZER_NAME, runFolder, stepPrefix } from '../../../activities/store/keys.js';
import { committedSteps, readCommitted, readManifest } from '../../../activities/store/manifest.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { openStore } from '../../../activities/store/open.js';
import { emptyMetrics } from '../../../workflows/step-metrics.js';

const SRC = 'gc-src';
const STEPS = 6;
let source: string; // the directory of the source store, copied by each test
const made: string[] = [];
/** sha256 of model.safetensors of checkpoints 0..STEPS, before any gc. */
const modelSha: string[] = [];

/** The source run applies its policy only when told (`apply: 'manual'`): the tests below run gc themselves. */
function config(storeUri: string, apply: 'manual' | 'every_step' = 'manual'): RunConfig {
  return parseRunConfig({
    name: 'gc',
    seed: 5,
    store: storeUri,
    task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
    model: { hidden: 32, layers: 1, heads: 2 },
    phases: [{ kind: 'sft', steps: 8, batchSize: 8, lr: 3e-3 }],
    learner: { microBatchSize: 8 },
    engine: { threads: 1 },
    retention: { keepLast: 2, keepEvery: 3, apply },
  });
}

const sftInput = (storeUri: string, runId: string, step: number): LearnerInput => ({
  storeUri,
  runId,
  step,
  phaseIndex: 0,
  phase: 'sft',
  lr: 3e-3,
  referenceVersion: null,
  promptOffset: step * 8,
  batchSize: 8,
  rollouts: [],
  advantages: null,
});

/** Trains step `step` of `runId` and commits it; returns checkpoint step + 1's model sha256. */
async function trainStep(storeUri: string, runId: string, step: number): Promise<string> {
  const r = await learnerUpdate(sftInput(storeUri, runId, step));
  await commitStep({ storeUri, runId, step, phase: 'sft', checkpoint: r.checkpoint, artifacts: [], metrics: emptyMetrics() });
  return r.checkpoint.find((e) => e.name === MODEL_NAME)!.sha256;
}

/** A fresh copy of the source store. */
async function copy(): Promise<{ storeUri: string; store: ObjectStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'gc-copy-'));
  made.push(dir);
  await cp(source, dir, { recursive: true });
  const storeUri = pathToFileURL(dir).href;
  return { storeUri, store: openStore(storeUri) };
}

/** Every object below the run's checkpoints: key → size. */
async function checkpointObjects(store: ObjectStore, runId = SRC): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const o of store.list(`${runFolder(runId, 'checkpoints')}/`)) out.set(o.key, o.size);
  return out;
}

const under = (objects: Map<string, number>, v: number) => [...objects.keys()].filter((k) => k.startsWith(`${checkpointPrefix(SRC, v)}/`));
const total = (objects: Map<string, number>) => [...objects.values()].reduce((a, b) => a + b, 0);

/** A store whose `delete` throws once `deletes` calls have gone through: a gc process killed there. */
function crashingAfter(store: ObjectStore, deletes: number): ObjectStore {
  let n = 0;
  return {
    root: store.root,
    put: (k, b) => store.put(k, b),
    putIfAbsent: (k, b) => store.putIfAbsent(k, b),
    get: (k) => store.get(k),
    getStream: (k) => store.getStream(k),
    head: (k) => store.head(k),
    list: (p) => store.list(p),
    uri: (k) => store.uri(k),
    close: () => store.close(),
    delete: async (k) => {
      if (n++ >= deletes) throw new Error(`killed before deleting ${k}`);
      await store.delete(k);
    },
  };
}

before(async () => {
  source = await mkdtemp(join(tmpdir(), 'gc-src-'));
  made.push(source);
  const storeUri = pathToFileURL(source).href;
  await initRun({ storeUri, runId: SRC, config: config(storeUri), resumeFrom: null });
  const store = openStore(storeUri);
  modelSha.push((await readManifest(store, checkpointPrefix(SRC, 0)))!.artifacts.find((e) => e.name === MODEL_NAME)!.sha256);
  for (let step = 0; step < STEPS; step++) modelSha.push(await trainStep(storeUri, SRC, step));
  await store.close();
});

after(async () => {
  for (const d of made) await rm(d, { recursive: true, force: true });
});

describe('gcRun', () => {
  it('--dry-run with keepLast 2, keepEvery 3 over checkpoints 0..6 names checkpoints 1, 2, 4 and their bytes, and removes nothing', async () => {
    const { store } = await copy();
    const objects = await checkpointObjects(store);
    const r = await gcRun(store, SRC, { dryRun: true });
    assert.deepEqual(r.plan.keep, [0, 3, 5, 6]);
    assert.deepEqual(
      r.removed.map((x) => [x.what, x.checkpoint, x.keys.length]),
      [
        ['checkpoint', 1, 3],
        ['checkpoint', 2, 3],
        ['checkpoint', 4, 3],
      ],
    );
    const expected = [1, 2, 4].flatMap((v) => under(objects, v)).reduce((n, k) => n + objects.get(k)!, 0);
    assert.equal(r.bytesFreed, expected);
    assert.ok(r.bytesFreed > 0);
    assert.deepEqual(await checkpointObjects(store), objects, 'nothing removed');
    await store.close();
  });

  it('removes checkpoints 1, 2, 4 (manifest and both artifacts: the bytes it reports), keeps 0, 3, 5, 6 verified and every committed step 0..5 readable', async () => {
    const { store } = await copy();
    const before = await checkpointObjects(store);
    const r = await gcRun(store, SRC);
    const afterGc = await checkpointObjects(store);
    assert.equal(total(before) - total(afterGc), r.bytesFreed);
    assert.deepEqual(await committedSteps(store, SRC, 'checkpoints'), [0, 3, 5, 6]);
    for (const v of [1, 2, 4]) assert.deepEqual(under(afterGc, v), [], `no object of checkpoint ${v} left`);
    for (const v of [0, 3, 5, 6]) {
      const m = await readCommitted(store, checkpointPrefix(SRC, v));
      assert.deepEqual(
        m!.artifacts.map((e) => e.name),
        [MODEL_NAME, OPTIMIZER_NAME],
      );
    }
    assert.deepEqual(await committedSteps(store, SRC, 'steps'), [0, 1, 2, 3, 4, 5]);
    for (let s = 0; s < STEPS; s++) assert.ok(await readCommitted(store, stepPrefix(SRC, s)), `step ${s} verifies`);
    const again = await gcRun(store, SRC);
    assert.deepEqual([again.removed, again.bytesFreed], [[], 0], 'a second gc finds nothing to remove');
    await store.close();
  });

  it('resume-from works from every kept checkpoint: 0, 3 and 5 continue bitwise to the source’s checkpoints 1, 4 and 6; 6 continues as the source does', async () => {
    const { storeUri, store } = await copy();
    await gcRun(store, SRC);
    for (const c of [0, 3, 5, 6]) {
      const runId = `gc-resumed-${c}`;
      const r = await initRun({ storeUri, runId, config: config(storeUri), resumeFrom: { runId: SRC, checkpoint: c } });
      assert.equal(r.startStep, c);
      const sha = await trainStep(storeUri, runId, c);
      const expected = c < STEPS ? modelSha[c + 1] : await trainStep(storeUri, SRC, c);
      assert.equal(sha, expected, `resumed from checkpoint ${c}`);
    }
    await store.close();
  });

  it('killed after deleting checkpoint 1’s manifest: 1 is no longer committed, the rest are; the next gc removes 1’s 2 leftover objects and finishes', async () => {
    const { store } = await copy();
    await assert.rejects(gcRun(crashingAfter(store, 1), SRC), /killed before deleting/);
    assert.deepEqual(await committedSteps(store, SRC, 'checkpoints'), [0, 2, 3, 4, 5, 6]);
    for (const v of [0, 2, 3, 4, 5, 6]) assert.ok(await readCommitted(store, checkpointPrefix(SRC, v)), `checkpoint ${v} verifies`);
    const r = await gcRun(store, SRC);
    assert.deepEqual(
      r.removed.map((x) => [x.what, x.checkpoint, x.keys.length]),
      [
        ['leftover', 1, 2],
        ['checkpoint', 2, 3],
        ['checkpoint', 4, 3],
      ],
    );
    const objects = await checkpointObjects(store);
    for (const v of [1, 2, 4]) assert.deepEqual(under(objects, v), []);
    assert.deepEqual(await committedSteps(store, SRC, 'checkpoints'), [0, 3, 5, 6]);
    await store.close();
  });

  it("optimizerState 'last' leaves 0, 3, 5 weights-only (they load and verify, a third of their bytes), refuses resume-from 3 with CheckpointWeightsOnly, resumes from 6", async () => {
    const { storeUri, store } = await copy();
    const r = await gcRun(store, SRC, { policy: { optimizerState: 'last' } });
    assert.deepEqual(r.plan.dropOptimizer, [0, 3, 5]);
    for (const v of [0, 3, 5]) {
      const m = (await readCommitted(store, checkpointPrefix(SRC, v)))!;
      assert.deepEqual(
        m.artifacts.map((e) => e.name),
        [MODEL_NAME],
      );
      assert.equal(m.artifacts[0]!.sha256, modelSha[v], `checkpoint ${v}'s weights unchanged`);
      assert.equal((await loadWeights(store, SRC, v)).size > 0, true);
      const objs = under(await checkpointObjects(store), v);
      assert.equal(objs.length, 2, 'manifest and model only');
    }
    // the moments are 2 of every 3 floats: the model file is about a third of what a checkpoint held
    const optBytes = r.removed.filter((x) => x.what === 'optimizer').reduce((n, x) => n + x.bytes, 0);
    const modelBytes = (await readManifest(store, checkpointPrefix(SRC, 0)))!.artifacts[0]!.bytes;
    assert.ok(Math.abs(optBytes / 3 - 2 * modelBytes) / (2 * modelBytes) < 0.01, `${optBytes} bytes of moments over 3 checkpoints`);
    await assert.rejects(
      initRun({ storeUri, runId: 'gc-weights-only', config: config(storeUri), resumeFrom: { runId: SRC, checkpoint: 3 } }),
      (e: unknown) => e instanceof ApplicationFailure && e.type === 'CheckpointWeightsOnly' && /latest checkpoint \(6\)/.test(e.message),
    );
    const resumed = await initRun({ storeUri, runId: 'gc-last', config: config(storeUri), resumeFrom: { runId: SRC, checkpoint: 6 } });
    assert.equal(resumed.startStep, 6);
    assert.equal(await trainStep(storeUri, 'gc-last', 6), await trainStep(storeUri, SRC, 6));
    await store.close();
  });

  it('killed between rewriting checkpoint 0’s manifest and deleting its moments: 0 verifies as weights-only; the next gc removes the 1 leftover object', async () => {
    const { store } = await copy();
    // deletes: checkpoint 1, 2, 4 (3 keys each) go through, then the kill before the moments of 0
    await assert.rejects(gcRun(crashingAfter(store, 9), SRC, { policy: { optimizerState: 'last' } }), /killed before deleting/);
    const m0 = (await readCommitted(store, checkpointPrefix(SRC, 0)))!;
    assert.deepEqual(
      m0.artifacts.map((e) => e.name),
      [MODEL_NAME],
    );
    const r = await gcRun(store, SRC, { policy: { optimizerState: 'last' } });
    assert.deepEqual(
      r.removed.map((x) => [x.what, x.checkpoint, x.keys.length]),
      [
        ['leftover', 0, 1],
        ['optimizer', 3, 1],
        ['optimizer', 5, 1],
      ],
    );
    assert.equal(under(await checkpointObjects(store), 0).length, 2);
    await store.close();
  });

  it("apply 'every_step' (the default): after each commit the store holds just the kept checkpoints — {0,1}, {0,1,2}, {0,2,3}, {0,3,4}, {0,3,4,5}, {0,3,5,6} — and trains the same weights", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gc-auto-'));
    made.push(dir);
    const storeUri = pathToFileURL(dir).href;
    const runId = 'gc-auto';
    const cfg = config(storeUri, 'every_step');
    assert.equal(parseRunConfig({ ...cfg, retention: { keepLast: 2 } }).retention.apply, 'every_step', 'the default');
    await initRun({ storeUri, runId, config: cfg, resumeFrom: null });
    const store = openStore(storeUri);
    const kept: number[][] = [];
    for (let step = 0; step < STEPS; step++) {
      assert.equal(await trainStep(storeUri, runId, step), modelSha[step + 1], `checkpoint ${step + 1} as the manual run's`);
      kept.push(await committedSteps(store, runId, 'checkpoints'));
      // nothing but the kept checkpoints' objects is left (no leftovers of the removed ones)
      const objects = await checkpointObjects(store, runId);
      const folders = new Set([...objects.keys()].map((k) => Number(/checkpoints\/(\d+)\//.exec(k)![1])));
      assert.deepEqual(
        [...folders].sort((a, b) => a - b),
        kept.at(-1),
        `after step ${step}: objects only under kept checkpoints`,
      );
    }
    assert.deepEqual(kept, [
      [0, 1],
      [0, 1, 2],
      [0, 2, 3],
      [0, 3, 4],
      [0, 3, 4, 5],
      [0, 3, 5, 6],
    ]);
    // a retried commit of a committed step applies the policy again and removes nothing more
    await commitStep({ storeUri, runId, step: STEPS - 1, phase: 'sft', checkpoint: [], artifacts: [], metrics: emptyMetrics() });
    assert.deepEqual(await committedSteps(store, runId, 'checkpoints'), [0, 3, 5, 6]);
    await store.close();
  });
});
