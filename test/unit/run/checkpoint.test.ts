/**
 * initRun, commitStep (activities/checkpoint/init-run.ts, commit-step.ts) and exportRun (export.ts) called
 * directly, outside Temporal, in a temp file:// store: the initial checkpoint, resume-from (byte
 * copies, the KL reference, refusals with clear messages), a commit completed after a real SIGKILL
 * between its two halves, and an export that loads back with the checkpoint's weights.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ApplicationFailure } from '@temporalio/common';
import { commitStep } from '../../../activities/checkpoint/commit-step.js';
import { initRun } from '../../../activities/checkpoint/init-run.js';
import { exportRun } from '../../../activities/checkpoint/export.js';
import { loadTrainState, loadWeights, writeCheckpoint } from '../../../activities/checkpoint/checkpoint.js';
import { parseRunConfig, type RunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { resolveRun, writeRunRecord } from '../../../activities/run/resolve.js';
import type { CommitStepInput, StepMetrics } from '../../../activities/run/types.js';
import { initTrainState } from '../../../activities/model/engine.js';
import { initWeights } from '../../../activities/model/init.js';
import { parameterCount } from '../../../activities/model/config.js';
import { loadHfModel } from '../../../activities/model/hf.js';
import { checkpointPrefix, MANIFEST_NAME, METRICS_NAME, runRecordKey, stepPrefix } from '../../../activities/store/keys.js';
import { artifactKey, commit, committedSteps, readArtifact, readManifest } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { decodeMetrics } from '../../../activities/store/schemas.js';
import { lazyFixture } from '../../support/fixture.js';

const configOf = (storeUri: string, over: Partial<RunConfigInput> = {}): RunConfig =>
  parseRunConfig({
    name: 'tiny',
    seed: 7,
    store: storeUri,
    task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
    model: { hidden: 32, layers: 1, heads: 2 },
    // steps 0-1 sft, steps 2-4 rl (its reference: checkpoint 2)
    phases: [
      { kind: 'sft', steps: 2, batchSize: 4 },
      { kind: 'rl', steps: 3, promptsPerStep: 2, groupSize: 2 },
    ],
    engine: { threads: 1 },
    ...over,
  });

const metrics = (): StepMetrics => ({
  num_prompts: 4,
  num_samples: 4,
  reward_mean: null,
  reward_std: null,
  reward_min: null,
  reward_max: null,
  loss: 2.5,
  kl: null,
  entropy: 2.7,
  clip_fraction: null,
  grad_norm: 0.9,
  learning_rate: 3e-3,
  prompt_length_mean: null,
  completion_length_mean: null,
  completion_length_max: null,
  tokens_per_second: null,
  rollout_seconds: null,
  reward_seconds: null,
  advantage_seconds: null,
  learner_seconds: 0.5,
  step_seconds: 0.6,
  reward_errors: 0,
  dropped_samples: 0,
  truncated_samples: 0,
  extra: { tokens: 12 },
});

let dir: string;
let storeUri: string;
let store: ObjectStore;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'checkpoint-'));
  storeUri = pathToFileURL(join(dir, 'store')).href;
  store = openStore(storeUri);
});
after(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/**
 * Run "src", the run the resume and export tests read: run.json and committed checkpoints 0..4
 * (distinct seeded weights, step = version). Resolves to its run id.
 */
const sourceRun = lazyFixture(async () => {
  const runId = 'src';
  const config = configOf(storeUri);
  await writeRunRecord(store, { run_id: runId, name: config.name, resumed_from: null, config });
  const model = resolveRun(config).model;
  for (let v = 0; v <= 4; v++) {
    const state = { ...initTrainState(model, initWeights(model, 100 + v)), step: v };
    await commit(store, checkpointPrefix(runId, v), await writeCheckpoint(store, runId, v, state));
  }
  return runId;
});

async function runRecord(runId: string): Promise<Record<string, unknown>> {
  return JSON.parse(new TextDecoder().decode(await store.get(runRecordKey(runId)))) as Record<string, unknown>;
}

/** The manifest of a checkpoint and every artifact's bytes. */
async function checkpointBytes(runId: string, v: number): Promise<{ keys: string[]; bytes: Buffer[] }> {
  const prefix = checkpointPrefix(runId, v);
  const m = (await readManifest(store, prefix))!;
  return {
    keys: m.artifacts.map((e) => e.key),
    bytes: await Promise.all(m.artifacts.map(async (e) => Buffer.from(await store.get(artifactKey(prefix, e))))),
  };
}

/** Rejects with a non-retryable ApplicationFailure whose message matches `re`. */
async function refuses(p: Promise<unknown>, re: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(err)}`);
    assert.equal(err.nonRetryable, true, 'bad input is not retried');
    assert.match(err.message, re);
    return true;
  });
}

describe('initRun', () => {
  it('fresh: writes run.json and commits checkpoint 0 with the seeded initial weights, once', async () => {
    const config = configOf(storeUri);
    const model = resolveRun(config).model;
    const r = await initRun({ storeUri, runId: 'fresh', config, resumeFrom: null });
    assert.equal(r.startStep, 0);
    assert.equal(r.referenceVersion, null);
    assert.equal(r.parameters, parameterCount(model));
    assert.equal(r.model, `llama 1×32, ${Math.round(parameterCount(model) / 1000)}k params, vocab ${model.vocabSize}`);
    assert.equal(r.runUri, store.uri(runRecordKey('fresh')));
    const record = await runRecord('fresh');
    assert.equal(record.resumed_from, null);
    assert.equal(record.name, 'tiny');

    const state = await loadTrainState(store, 'fresh', 0);
    assert.equal(state.step, 0);
    const want = initWeights(model, config.seed, { std: config.model.initStd });
    for (const [name, t] of want) assert.deepEqual(state.params.get(name)!.data, t.data, `${name} is the seeded init`);
    assert.ok(
      [...state.adamM.values()].every((t) => t.data.every((x) => x === 0)),
      'AdamW moments start at 0',
    );

    const first = await checkpointBytes('fresh', 0);
    const again = await initRun({ storeUri, runId: 'fresh', config, resumeFrom: null });
    assert.deepEqual({ ...again, io: undefined }, { ...r, io: undefined });
    assert.equal(again.io?.bytesWritten, 0, 're-running writes nothing');
    assert.ok(r.io!.bytesWritten > 0, 'the first run wrote the checkpoint');
    assert.deepEqual(await checkpointBytes('fresh', 0), first, 're-running changes nothing');
    await refuses(
      initRun({ storeUri, runId: 'fresh', config: configOf(storeUri, { seed: 8 }), resumeFrom: null }),
      /already holds a different config/,
    );
  });

  it('resume inside an rl phase: copies the checkpoint and the phase-start reference byte for byte', async () => {
    await sourceRun();
    const r = await initRun({ storeUri, runId: 'res3', config: configOf(storeUri), resumeFrom: { runId: 'src', checkpoint: 3 } });
    assert.equal(r.startStep, 3);
    assert.equal(r.referenceVersion, 2, 'step 3 is inside the rl phase that started at step 2');
    assert.deepEqual(await committedSteps(store, 'res3', 'checkpoints'), [2, 3]);
    for (const v of [2, 3])
      assert.deepEqual(await checkpointBytes('res3', v), await checkpointBytes('src', v), `checkpoint ${v} copied byte for byte`);
    assert.deepEqual((await runRecord('res3')).resumed_from, { run_id: 'src', step: 3, checkpoint: 3 });
  });

  it('resume at the first step of the rl phase or inside sft: no reference to copy; other settings may change', async () => {
    await sourceRun();
    const at2 = await initRun({ storeUri, runId: 'res2', config: configOf(storeUri), resumeFrom: { runId: 'src', checkpoint: 2 } });
    assert.deepEqual([at2.startStep, at2.referenceVersion], [2, null]);
    assert.deepEqual(await committedSteps(store, 'res2', 'checkpoints'), [2]);
    // the same model spelled out (intermediate = the llama default 88) with other learning rates and more steps
    const changed = configOf(storeUri, {
      model: { hidden: 32, layers: 1, heads: 2, intermediate: 88 },
      phases: [
        { kind: 'sft', steps: 2, batchSize: 4, lr: 1e-3 },
        { kind: 'rl', steps: 6, promptsPerStep: 2, groupSize: 2, lr: 5e-4 },
      ],
    });
    const at1 = await initRun({ storeUri, runId: 'res1', config: changed, resumeFrom: { runId: 'src', checkpoint: 1 } });
    assert.deepEqual([at1.startStep, at1.referenceVersion], [1, null]);
    assert.deepEqual(await committedSteps(store, 'res1', 'checkpoints'), [1]);
  });

  it('refuses a checkpoint the source has not committed, naming the run and the committed ones; writes nothing', async () => {
    await sourceRun();
    await refuses(
      initRun({ storeUri, runId: 'bad1', config: configOf(storeUri), resumeFrom: { runId: 'src', checkpoint: 5 } }),
      /run "src" has no committed checkpoint 5 \(committed checkpoints: 0, 1, 2, 3, 4\)/,
    );
    assert.equal(await store.head(runRecordKey('bad1')), undefined, 'no run.json for a refused resume');
    await refuses(
      initRun({ storeUri, runId: 'bad2', config: configOf(storeUri), resumeFrom: { runId: 'nope', checkpoint: 1 } }),
      /run "nope" has no .*run\.json/,
    );
  });

  it('refuses a config that trains a different model, task or seed, naming the field', async () => {
    await sourceRun();
    const from = { runId: 'src', checkpoint: 3 };
    await refuses(
      initRun({ storeUri, runId: 'bad3', config: configOf(storeUri, { model: { hidden: 64, layers: 1, heads: 2 } }), resumeFrom: from }),
      /model\.hidden is 64 here but 32 in the source run/,
    );
    await refuses(
      initRun({ storeUri, runId: 'bad4', config: configOf(storeUri, { model: { hidden: 32, layers: 2, heads: 2 } }), resumeFrom: from }),
      /model\.layers is 2 here but 1 in the source run/,
    );
    await refuses(
      initRun({ storeUri, runId: 'bad5', config: configOf(storeUri, { seed: 9 }), resumeFrom: from }),
      /seed is 9 here but 7 in the source run/,
    );
    await refuses(
      initRun({
        storeUri,
        runId: 'bad6',
        config: configOf(storeUri, { task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: false, pad: true } } }),
        resumeFrom: from,
      }),
      /task\.options\.reverse is false here but true in the source run/,
    );
    assert.deepEqual(await committedSteps(store, 'bad3', 'checkpoints'), []);
  });
});

describe('commitStep', () => {
  it('completes the commit after a SIGKILL between the checkpoint and the step commit', async () => {
    const runId = 'crash';
    await initRun({ storeUri, runId, config: configOf(storeUri), resumeFrom: null });
    const model = resolveRun(configOf(storeUri)).model;
    const checkpoint = await writeCheckpoint(store, runId, 1, { ...initTrainState(model, initWeights(model, 55)), step: 1 });
    const input: CommitStepInput = { storeUri, runId, step: 0, phase: 'sft', checkpoint, artifacts: [], metrics: metrics() };

    // a worker process that dies (SIGKILL, as a preempted machine) right after the checkpoint commit
    const url = (p: string) => pathToFileURL(join(process.cwd(), p)).href;
    const child = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `const { commitStep } = await import(${JSON.stringify(url('activities/checkpoint/commit-step.ts'))});
       await commitStep(JSON.parse(process.env.COMMIT_INPUT));
       console.log('survived');`,
      ],
      {
        env: { ...process.env, DURABLE_RL_CRASH_AT: 'commit-mid@0', COMMIT_INPUT: JSON.stringify(input), LOG_LEVEL: 'silent' },
        encoding: 'utf8',
      },
    );
    assert.equal(child.signal, 'SIGKILL', `the child should die at commit-mid: status ${child.status}, stderr ${child.stderr}`);
    assert.doesNotMatch(child.stdout, /survived/);
    assert.ok(await readManifest(store, checkpointPrefix(runId, 1)), 'checkpoint 1 was committed before the crash');
    assert.equal(await readManifest(store, stepPrefix(runId, 0)), undefined, 'step 0 was not');

    const r = await commitStep(input);
    assert.equal(r.created, true);
    assert.equal(r.stepUri, store.uri(`${stepPrefix(runId, 0)}/${MANIFEST_NAME}`));
    assert.equal(r.checkpointUri, store.uri(`${checkpointPrefix(runId, 1)}/${MANIFEST_NAME}`));
    const rows = decodeMetrics(await readArtifact(store, stepPrefix(runId, 0), METRICS_NAME));
    assert.equal(rows.length, 1);
    assert.deepEqual([rows[0]!.run_id, rows[0]!.step, rows[0]!.phase, rows[0]!.policy_version], [runId, 0, 'sft', 0]);
    assert.equal(rows[0]!.loss, 2.5);
    assert.deepEqual(rows[0]!.extra, { tokens: 12 });

    const stepManifest = await readManifest(store, stepPrefix(runId, 0));
    const again = await commitStep(input);
    assert.equal(again.created, false, 'a committed step is not committed again');
    assert.deepEqual(await readManifest(store, stepPrefix(runId, 0)), stepManifest);
  });

  it('commits the step artifacts it is given next to metrics.arrow', async () => {
    const runId = 'with-artifacts';
    await writeRunRecord(store, { run_id: runId, name: 'with-artifacts', resumed_from: null, config: configOf(storeUri) }); // initRun's part
    const model = resolveRun(configOf(storeUri)).model;
    const checkpoint = await writeCheckpoint(store, runId, 2, { ...initTrainState(model, initWeights(model, 56)), step: 2 });
    const { writeArtifact } = await import('../../../activities/store/manifest.js');
    const extra = await writeArtifact(store, stepPrefix(runId, 1), { name: 'notes.bin', bytes: Uint8Array.of(1, 2, 3) });
    const r = await commitStep({ storeUri, runId, step: 1, phase: 'rl', checkpoint, artifacts: [extra], metrics: metrics() });
    assert.equal(r.created, true);
    const m = (await readManifest(store, stepPrefix(runId, 1)))!;
    assert.deepEqual(
      m.artifacts.map((e) => e.name),
      [METRICS_NAME, 'notes.bin'],
    );
    assert.deepEqual((await loadWeights(store, runId, 2)).get('model.norm.weight')!.shape, [32]);
  });
});

describe('exportRun', () => {
  it('exports the latest committed checkpoint as a model directory that loads back with the same weights', async () => {
    await sourceRun();
    const out = join(dir, 'export-latest');
    const r = await exportRun(storeUri, 'src', undefined, out);
    assert.equal(r.version, 4);
    assert.equal(r.dir, out);
    const files = await readdir(out);
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'decode.onnx', 'decode.json'])
      assert.ok(files.includes(f), `${f} in ${files.join(', ')}`);
    const loaded = await loadHfModel(out, { requireTokenizer: true });
    const weights = await loadWeights(store, 'src', 4);
    assert.equal(loaded.tensors.size, weights.size);
    for (const [name, t] of weights) assert.deepEqual(loaded.tensors.get(name)!.data, t.data, `${name} exported as stored`);
    assert.equal(loaded.tokenizer!.vocabSize, resolveRun(configOf(storeUri)).tokenizer.vocabSize);
  });

  it('exports a chosen checkpoint, and names the committed ones when it is absent', async () => {
    await sourceRun();
    const r = await exportRun(storeUri, 'src', 2, join(dir, 'export-2'));
    assert.equal(r.version, 2);
    const loaded = await loadHfModel(join(dir, 'export-2'));
    assert.deepEqual(
      loaded.tensors.get('model.embed_tokens.weight')!.data,
      (await loadWeights(store, 'src', 2)).get('model.embed_tokens.weight')!.data,
    );
    await assert.rejects(
      exportRun(storeUri, 'src', 7, join(dir, 'export-7')),
      /run "src" has no committed checkpoint 7 \(committed checkpoints: 0, 1, 2, 3, 4\)/,
    );
  });
});
