/**
 * `rollout.weights: bf16` (activities/run/config.ts; checkpoint.ts `loadRolloutWeights`) through the
 * activities that write and read it, on a tiny run (llama 64x1, one-digit addition, T = 1) in temp
 * file:// stores: initRun's checkpoint 0 and the learner's checkpoints carry a bf16 snapshot in
 * their manifest, a pure function of the float32 weights (a re-executed learner writes the same
 * bytes, and so does another store); rolloutShard reads it instead of the float32 weights (its
 * store reads shrink by the half of the weights' bytes it saves) and records the bf16 policy's
 * logprobs, which float32 scoring misses by a small nonzero mean |Δ| — the mismatch the learner logs
 * as `mismatch_logprob_diff` (rollout-correction.test.ts); gc treats the snapshot as the weights.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { encodeCheckpoint, loadTrainState, loadWeights } from '../../../activities/checkpoint/checkpoint.js';
import { commitStep } from '../../../activities/checkpoint/commit-step.js';
import { gcRun } from '../../../activities/checkpoint/gc.js';
import { initRun } from '../../../activities/checkpoint/init-run.js';
import { ConfigError } from '../../../activities/common/config.js';
import { learnerUpdate } from '../../../activities/learner/learner-update.js';
import type { WeightMap } from '../../../activities/model/graphs/common.js';
import { bf16ToFloat32, float32ToBf16 } from '../../../activities/model/safetensors.js';
import { releaseEngines } from '../../../activities/rollout/policy.js';
import { rolloutShard } from '../../../activities/rollout/rollout-shard.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { resolveRun } from '../../../activities/run/resolve.js';
import { checkpointPrefix, MODEL_BF16_NAME, MODEL_NAME, OPTIMIZER_NAME, runFolder, stepPrefix } from '../../../activities/store/keys.js';
import { readEntry, readManifest, sha256Hex, type ManifestEntry } from '../../../activities/store/manifest.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { openStore } from '../../../activities/store/open.js';
import { decodeRollouts } from '../../../activities/store/schemas.js';
import { emptyMetrics } from '../../../workflows/step-metrics.js';
import { firstShardInput, meanLogprobGap } from './fixture.js';

const RUN = 'bf16';
const base = (weights: 'float32' | 'bf16', phase: 'rl' | 'sft'): RunConfigInput => ({
  name: 'bf16-rollout',
  seed: 7,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  model: { hidden: 64, layers: 1, heads: 2 },
  phases: [
    phase === 'rl'
      ? { kind: 'rl', steps: 1, promptsPerStep: 4, groupSize: 4, sampling: { temperature: 1 } }
      : { kind: 'sft', steps: 2, batchSize: 8, lr: 1e-2 },
  ],
  rollout: { weights },
  learner: { microBatchSize: 8 },
  engine: { threads: 1 },
});

const stores: { dir: string; store: ObjectStore }[] = [];
after(async () => {
  await releaseEngines();
  for (const s of stores) {
    await s.store.close();
    await rm(s.dir, { recursive: true, force: true });
  }
});

/** A fresh store with the run initialised by initRun (checkpoint 0 committed). */
async function initialised(config: RunConfigInput): Promise<{ storeUri: string; store: ObjectStore }> {
  const dir = await mkdtemp(join(tmpdir(), 'bf16-rollout-'));
  const storeUri = pathToFileURL(dir).href;
  const store = openStore(storeUri);
  stores.push({ dir, store });
  await initRun({ storeUri, runId: RUN, config: parseRunConfig({ ...config, store: storeUri }), resumeFrom: null });
  return { storeUri, store };
}

const entries = async (store: ObjectStore, v: number) => (await readManifest(store, checkpointPrefix(RUN, v)))!.artifacts;
const entry = (es: readonly ManifestEntry[], name: string) => es.find((e) => e.name === name)!;
const rounded = (w: WeightMap): WeightMap =>
  new Map([...w].map(([n, t]) => [n, { shape: t.shape, data: bf16ToFloat32(float32ToBf16(t.data)) }]));

/** The expected snapshot of checkpoint v: the bf16 rounding of its committed float32 weights, serialised. */
async function expectedSnapshot(store: ObjectStore, v: number): Promise<string> {
  const { modelBf16 } = encodeCheckpoint(await loadTrainState(store, RUN, v), v, { rolloutWeights: 'bf16' });
  return sha256Hex(modelBf16!);
}

/** Mean |behaviour logprob − score under `weights`| over every completion token of the shard's rows. */
async function meanGap(rows: ReturnType<typeof decodeRollouts>, weights: WeightMap): Promise<number> {
  const gap = await meanLogprobGap(resolveRun(parseRunConfig(base('float32', 'rl'))).model, weights, rows);
  assert.ok(gap.tokens > 16, 'the shard generated tokens');
  return gap.mean;
}

test('bf16 rollout weights: checkpoint 0 lists the snapshot (half the weights’ bytes), the rollout reads it instead of the float32 weights and records the bf16 policy’s logprobs', async () => {
  const read: Record<string, number> = {};
  const model: Record<string, ManifestEntry> = {};
  let snapshot: ManifestEntry | undefined;
  let rows: ReturnType<typeof decodeRollouts> = [];
  let store: ObjectStore | undefined;
  for (const weights of ['float32', 'bf16'] as const) {
    const s = await initialised(base(weights, 'rl'));
    const es = await entries(s.store, 0);
    assert.deepEqual(
      es.map((e) => e.name).sort(),
      weights === 'bf16' ? [MODEL_BF16_NAME, MODEL_NAME, OPTIMIZER_NAME].sort() : [MODEL_NAME, OPTIMIZER_NAME].sort(),
    );
    model[weights] = entry(es, MODEL_NAME);
    if (weights === 'bf16') {
      snapshot = entry(es, MODEL_BF16_NAME);
      assert.equal(snapshot.sha256, await expectedSnapshot(s.store, 0), 'the snapshot is the bf16 rounding of the float32 weights');
      store = s.store;
    }
    await releaseEngines(); // no weights cached from another run: the shard reads its checkpoint
    const r = await rolloutShard(firstShardInput(s.storeUri, RUN, 4));
    read[weights] = r.io!.bytesRead;
    if (weights === 'bf16') rows = decodeRollouts(await readEntry(s.store, stepPrefix(RUN, 0), r.rollouts));
  }
  assert.equal(model.bf16!.sha256, model.float32!.sha256, 'the same float32 checkpoint 0 either way');
  const saved = model.float32!.bytes - snapshot!.bytes;
  assert.ok(snapshot!.bytes < 0.51 * model.float32!.bytes, `snapshot ${snapshot!.bytes} bytes, weights ${model.float32!.bytes}`);
  // the reads differ by the bytes the snapshot saves, less the manifest's entry for it (the manifest is read twice)
  assert.ok(
    Math.abs(read.float32! - read.bf16! - saved) < 1024,
    `bytes read: float32 ${read.float32}, bf16 ${read.bf16}; the snapshot saves ${saved} (weights ${model.float32!.bytes})`,
  );
  assert.ok(read.bf16! < 0.6 * read.float32!, `bytes read: float32 ${read.float32}, bf16 ${read.bf16}`);

  const exact = await loadWeights(store!, RUN, 0);
  const vsFloat32 = await meanGap(rows, exact);
  const vsBf16 = await meanGap(rows, rounded(exact));
  // measured: vs float32 3.6e-4, vs the bf16 weights 5e-8
  assert.ok(vsBf16 <= 1e-4, `bf16 rollout vs scoring with the bf16 weights: ${vsBf16}`);
  assert.ok(
    vsFloat32 > 2 * vsBf16 && vsFloat32 > 2e-5 && vsFloat32 < 0.02,
    `bf16 rollout vs float32 scoring: ${vsFloat32} (vs bf16: ${vsBf16})`,
  );
});

test('the learner’s checkpoints carry the snapshot too: a re-executed update and another store write the same bytes, and gc keeps it with the weights', async () => {
  const a = await initialised(base('bf16', 'sft'));
  const b = await initialised(base('bf16', 'sft'));
  const input = (storeUri: string, step: number) => ({
    storeUri,
    runId: RUN,
    step,
    phaseIndex: 0,
    phase: 'sft' as const,
    lr: 1e-2,
    referenceVersion: null,
    promptOffset: step * 8,
    batchSize: 8,
    rollouts: [],
    advantages: null,
  });
  const first = await learnerUpdate(input(a.storeUri, 0));
  const retried = await learnerUpdate(input(a.storeUri, 0)); // a retry of the same step (e.g. after a crash before its commit)
  const elsewhere = await learnerUpdate(input(b.storeUri, 0));
  const snapshot = entry(first.checkpoint, MODEL_BF16_NAME);
  assert.deepEqual(entry(retried.checkpoint, MODEL_BF16_NAME), snapshot);
  assert.deepEqual(entry(elsewhere.checkpoint, MODEL_BF16_NAME), snapshot);
  for (const step of [0, 1]) {
    const r = step === 0 ? first : await learnerUpdate(input(a.storeUri, step));
    await commitStep({
      storeUri: a.storeUri,
      runId: RUN,
      step,
      phase: 'sft',
      checkpoint: r.checkpoint,
      artifacts: [],
      metrics: emptyMetrics(),
    });
  }
  assert.deepEqual(entry(await entries(a.store, 1), MODEL_BF16_NAME), snapshot, 'committed as written');
  assert.equal(snapshot.sha256, await expectedSnapshot(a.store, 1), 'the bf16 rounding of checkpoint 1’s float32 weights');

  // weights-only (retention optimizerState 'last'): the snapshot stays beside the weights
  await gcRun(a.store, RUN, { policy: { keepLast: 3, optimizerState: 'last' } });
  assert.deepEqual((await entries(a.store, 1)).map((e) => e.name).sort(), [MODEL_BF16_NAME, MODEL_NAME].sort());
  // dropped: the snapshot goes with the checkpoint
  await gcRun(a.store, RUN, { policy: { keepLast: 1 } });
  const left: string[] = [];
  for await (const o of a.store.list(`${runFolder(RUN, 'checkpoints')}/`)) left.push(o.key);
  assert.deepEqual(
    left.filter((k) => !k.startsWith(`${checkpointPrefix(RUN, 2)}/`)),
    [],
    'nothing of checkpoints 0 and 1 is left',
  );
});

test('rollout.weights defaults to float32; bf16 with LoRA is refused naming rollout.weights', () => {
  assert.equal(parseRunConfig({}).rollout.weights, 'float32');
  assert.throws(
    () => parseRunConfig({ ...base('bf16', 'sft'), model: { hidden: 64, layers: 1, heads: 2, lora: { rank: 4 } } }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /rollout\.weights: .*LoRA.*remove rollout\.weights or model\.lora/);
      return true;
    },
  );
});
