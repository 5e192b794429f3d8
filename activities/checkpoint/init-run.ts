/**
 * `initRun` (learner queue): writes run.json and puts the run's first checkpoint in place: the
 * seeded initial weights (checkpoint 0) of a fresh run, or, for `resume-from`, a byte-for-byte copy
 * of the source run's checkpoint (and of the KL reference checkpoint when the resumed step lies
 * inside an rl phase past its first step).
 *
 * Idempotent: a re-execution after a crash completes what is missing and writes the same bytes
 * (content-addressed keys, canonical manifests).
 */
import { ApplicationFailure } from '@temporalio/common';
import { logger } from '../common/log.js';
import { parameterCount, withLora, type ModelConfig } from '../model/config.js';
import { isAdapterName } from '../model/lora.js';
import { initTrainState } from '../model/engine.js';
import { initWeights } from '../model/init.js';
import { checkParameters, ModelDirError } from '../model/hf.js';
import type { WeightTensor } from '../model/graphs/common.js';
import type { TensorMap } from '../model/safetensors.js';
import { stage } from '../run/stage.js';
import { parseStoredRunConfig, type Phase, type RunConfig } from '../run/config.js';
import {
  asRecorded,
  dataChange,
  dataRecord,
  firstDifference,
  loadRunData,
  readRunRecord,
  resolveRun,
  writeRunRecord,
} from '../run/resolve.js';
import type { InitRunInput, InitRunResult, RunRecord } from '../run/types.js';
import { preloadRunEnvironment } from '../run/environment.js';
import { checkpointPrefix, runRecordKey } from '../store/keys.js';
import { commit, committedSteps, manifestKey, readEntry, readManifest } from '../store/manifest.js';
import { getIfExists, type ObjectStore } from '../store/object-store.js';
import { hasOptimizerState, writeCheckpoint } from './checkpoint.js';
import {
  baseChange,
  readBaseModel,
  readModelSource,
  writeBaseModel,
  type BaseModelFiles,
  type BaseModelRecord,
} from '../run/base-model.js';

const log = logger('checkpoint');

/** A run's dataset as `loadRunData` reads it. */
type LoadedDataset = Awaited<ReturnType<typeof loadRunData>>;

/**
 * A pretrained model's tensors, checked against its config (names, shapes; F16/BF16 already upcast)
 * and in float32; with LoRA, the fresh adapters (`adapters`, PEFT's start: the base model exactly) added.
 */
function pretrainedWeights(
  model: ModelConfig,
  tensors: TensorMap,
  uri: string,
  adapters: () => Map<string, WeightTensor>,
): Map<string, WeightTensor> {
  let checked: TensorMap;
  try {
    checked = checkParameters(withLora(model, null), tensors, uri);
  } catch (err) {
    if (err instanceof ModelDirError) throw ApplicationFailure.nonRetryable(err.message, 'BadPretrainedModel');
    throw err;
  }
  const weights = new Map([...checked].map(([name, t]) => [name, { shape: t.shape, data: t.data as Float32Array }]));
  if (model.lora) for (const [name, w] of adapters()) if (isAdapterName(name)) weights.set(name, w);
  return weights;
}

/** "215k" / "1.2M": a parameter count in a few characters. */
function shortCount(n: number): string {
  if (n < 1000) return String(n);
  if (n < 1e6) return `${Math.round(n / 1000)}k`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)}M`;
  return `${(n / 1e9).toFixed(2)}B`;
}

/** One line for the UI: `llama 2×96, 215k params, vocab 16`. */
function describeModel(model: ModelConfig): string {
  return `${model.modelType} ${model.layers}×${model.hidden}, ${shortCount(parameterCount(model))} params, vocab ${model.vocabSize}`;
}

/** The phase that step `step` belongs to, with its index and first step; undefined past the last phase. */
function phaseAt(config: RunConfig, step: number): { index: number; start: number; phase: Phase } | undefined {
  let start = 0;
  for (const [index, phase] of config.phases.entries()) {
    if (step < start + phase.steps) return { index, start, phase };
    start += phase.steps;
  }
  return undefined;
}

/**
 * Why `config` cannot continue the training of `source` (a different model, task, dataset or seed), or
 * undefined when it can. The comparison is on the resolved model (so `hidden: 96` spelled out and
 * the default agree) and on the validated task options.
 */
async function incompatibility(
  store: ObjectStore,
  record: RunRecord,
  config: RunConfig,
  data: LoadedDataset | undefined,
  base: { files: BaseModelFiles; record: BaseModelRecord } | undefined,
): Promise<string | undefined> {
  const source = record.config;
  if ((source.model.from !== null) !== (base !== undefined))
    return `the model differs: the source run ${source.model.from !== null ? `starts from ${source.model.from}` : 'trains a model from scratch'}, this one ${base ? `from ${base.record.uri}` : 'from scratch'}`;
  // a pretrained start: the same files, byte for byte (the tokenizer and chat template shape every prompt)
  const baseDiffers =
    base &&
    (record.base_model
      ? baseChange(record.base_model, base.record, 'the pretrained model differs')
      : 'the source run recorded no pretrained model');
  if (baseDiffers) return baseDiffers;
  if (Boolean(source.data) !== Boolean(data))
    return `the prompts differ: the source run reads ${source.data ? 'a dataset (data)' : `task ${source.task.name}`}, this one ${data ? 'a dataset (data)' : `task ${config.task.name}`}`;
  if (data) {
    // the same files, byte for byte: the data order (and the char vocabulary) follows from them
    const change = record.data ? dataChange(record.data, dataRecord(data), 'the dataset differs') : 'the source run recorded no dataset';
    if (change) return change;
  }
  await preloadRunEnvironment(source);
  const a = resolveRun(source, data, base ? await readBaseModel(store, record.run_id) : undefined);
  const b = resolveRun(config, data, base?.files);
  const show = (v: unknown) => (v === undefined ? '(default)' : JSON.stringify(v));
  if (a.task.name !== b.task.name)
    return `the task differs: task.name is ${show(b.task.name)} here but ${show(a.task.name)} in the source run`;
  const task = firstDifference(a.task.options, b.task.options, 'task.options');
  if (task) return `the task differs: ${task.path} is ${show(task.b)} here but ${show(task.a)} in the source run`;
  const model = firstDifference(a.model, b.model, 'model');
  if (model) {
    // name the config field the user wrote where one differs (initStd only shapes checkpoint 0)
    const spec = (['type', 'hidden', 'layers', 'heads', 'intermediate', 'maxPositions'] as const).find(
      (k) => JSON.stringify(source.model[k]) !== JSON.stringify(config.model[k]),
    );
    if (spec)
      return `the model differs: model.${spec} is ${show(config.model[spec])} here but ${show(source.model[spec])} in the source run (a resumed run trains the same model)`;
    return `the model differs: its resolved ${model.path} is ${show(model.b)} here but ${show(model.a)} in the source run (it follows from the task and sampling.max_tokens settings; set them as the source run had them)`;
  }
  if (source.seed !== config.seed)
    return `seed is ${config.seed} here but ${source.seed} in the source run (a resumed run keeps the seed, so its prompts and samples continue the same streams)`;
  return undefined;
}

/** Copies committed prefix `from` to `to` byte for byte (verified reads), committing it; returns the manifest URI. */
async function copyCommitted(store: ObjectStore, from: string, to: string): Promise<{ created: boolean }> {
  if (await readManifest(store, to)) return { created: false };
  const manifest = await readManifest(store, from);
  if (!manifest)
    throw ApplicationFailure.nonRetryable(`${store.uri(manifestKey(from))} is not committed: nothing to copy`, 'CheckpointMissing');
  const artifacts = [];
  for (const e of manifest.artifacts) artifacts.push({ name: e.name, bytes: await readEntry(store, from, e), schema: e.schema });
  const r = await commit(store, to, artifacts);
  return { created: r.created };
}

/**
 * Starts (or restarts) a run: validates and writes run.json, then makes sure the run's first
 * checkpoint is committed. Safe to re-execute: run.json is written once (a different config under
 * the same run id is refused), and committed checkpoints are left as they are.
 */
export async function initRun(input: InitRunInput): Promise<InitRunResult> {
  return stage('initRun', input.storeUri, async (ctx) => {
    const { progress, store } = ctx;
    const { runId } = input;
    // the config as the client passed it: a run started before an upgrade passes an older version, migrated here
    const config = parseStoredRunConfig(input.config, 'initRun config');
    // a run on data: read it now; run.json records what was read, and a re-execution that finds run.json checks the files against it
    const existing = config.data || config.model.from !== null ? await getIfExists(store, runRecordKey(runId)) : undefined;
    const recorded = existing ? (JSON.parse(new TextDecoder().decode(existing)) as RunRecord).data : undefined;
    let data = config.data ? await loadRunData(config, recorded, `run "${runId}"`) : undefined;
    if (data && !recorded && input.resumeFrom) {
      // resuming: the same files (checked below) with the vocabulary and limits the source's weights were built with
      // (a missing source run is refused below, with the checks of the resume)
      const sourceData = (await readRunRecord(store, input.resumeFrom.runId).catch(() => undefined))?.data;
      if (sourceData) data = asRecorded(data, sourceData);
    }
    // a run from a pretrained model reads its directory once here; run.json records every file's size and sha256
    const base = config.model.from !== null ? await readModelSource(config.model.from) : undefined;
    const recordedBase = base && existing ? (JSON.parse(new TextDecoder().decode(existing)) as RunRecord).base_model : undefined;
    const changed = base && recordedBase ? baseChange(recordedBase, base.record, `run "${runId}"`) : undefined;
    if (changed) throw ApplicationFailure.nonRetryable(changed, 'BaseModelChanged');
    await preloadRunEnvironment(config); // an environment module of the user's, imported once per process
    const run = resolveRun(config, data, base?.files);
    const from = input.resumeFrom;
    let startStep = 0;
    let referenceVersion: number | null = null;
    let referenceFrom: number | null = null;

    if (from) {
      // Check everything before writing anything: a refused resume leaves no run behind.
      const c = from.checkpoint;
      if (!Number.isSafeInteger(c) || c < 0) {
        throw ApplicationFailure.nonRetryable(
          `resume-from checkpoint must be a non-negative integer, got ${JSON.stringify(c)}`,
          'BadResume',
        );
      }
      if (from.runId === runId) {
        throw ApplicationFailure.nonRetryable(
          `resume-from names this run itself ("${runId}"); a resumed run gets a new run id`,
          'BadResume',
        );
      }
      const total = config.phases.reduce((n, p) => n + p.steps, 0);
      if (c > total) {
        throw ApplicationFailure.nonRetryable(
          `resume-from checkpoint ${c} is past the end of this run's ${total} steps; add steps to config.phases or resume from an earlier checkpoint`,
          'BadResume',
        );
      }
      const source: RunRecord = await readRunRecord(store, from.runId);
      const committed = await committedSteps(store, from.runId, 'checkpoints');
      if (!committed.includes(c)) {
        throw ApplicationFailure.nonRetryable(
          `run "${from.runId}" has no committed checkpoint ${c} (committed checkpoints: ${committed.length ? committed.join(', ') : 'none'}); resume from one of those`,
          'CheckpointMissing',
        );
      }
      if (!(await hasOptimizerState(store, from.runId, c))) {
        throw ApplicationFailure.nonRetryable(
          `checkpoint ${c} of run "${from.runId}" holds the weights only: the run's retention policy (optimizerState 'last') removed its AdamW moments, which a resumed run trains on; resume from the latest checkpoint (${committed.at(-1)}), or export or evaluate this one`,
          'CheckpointWeightsOnly',
        );
      }
      const why = await incompatibility(store, source, config, data, base);
      if (why) throw ApplicationFailure.nonRetryable(`cannot resume run "${from.runId}" at checkpoint ${c}: ${why}`, 'ResumeIncompatible');
      const at = phaseAt(config, c);
      // (sft and reward_model phases have no reference policy)
      if (at && at.phase.kind !== 'sft' && at.phase.kind !== 'reward_model' && c > at.start) {
        if (!committed.includes(at.start)) {
          throw ApplicationFailure.nonRetryable(
            `run "${from.runId}" has no committed checkpoint ${at.start}, the reference policy of the ${at.phase.kind} phase (phases.${at.index}) that checkpoint ${c} continues (committed checkpoints: ${committed.join(', ')})`,
            'CheckpointMissing',
          );
        }
        referenceFrom = at.start;
      }
      startStep = c;
    }

    await writeRunRecord(store, {
      run_id: runId,
      name: config.name,
      resumed_from: from ? { run_id: from.runId, step: from.checkpoint, checkpoint: from.checkpoint } : null,
      config,
      ...(data ? { data: dataRecord(data) } : {}),
      ...(base ? { base_model: base.record } : {}),
    });
    // every stage tokenises with the run's own copy of the pretrained model's files
    if (base) await writeBaseModel(store, runId, base.files);

    if (!from) {
      if (!(await readManifest(store, checkpointPrefix(runId, 0)))) {
        progress({ phase: base ? 'pretrained weights' : 'initial weights' });
        const weights = base
          ? pretrainedWeights(run.model, base.weights, base.record.uri, () => initWeights(run.model, config.seed))
          : initWeights(run.model, config.seed, { std: config.model.initStd });
        const state = initTrainState(run.model, weights);
        const entries = await writeCheckpoint(store, runId, 0, state, { rolloutWeights: config.rollout.weights });
        await commit(store, checkpointPrefix(runId, 0), entries);
        log.info({ runId, params: parameterCount(run.model) }, 'initial checkpoint committed');
      }
    } else {
      progress({ phase: 'copy checkpoint', checkpoint: from.checkpoint });
      await copyCommitted(store, checkpointPrefix(from.runId, from.checkpoint), checkpointPrefix(runId, from.checkpoint));
      if (run.model.lora && from.checkpoint !== 0) {
        // a LoRA checkpoint holds the adapters only: the frozen base lives in checkpoint 0 (checkpoint.ts)
        progress({ phase: 'copy base checkpoint', checkpoint: 0 });
        await copyCommitted(store, checkpointPrefix(from.runId, 0), checkpointPrefix(runId, 0));
      }
      if (referenceFrom !== null) {
        progress({ phase: 'copy reference checkpoint', checkpoint: referenceFrom });
        await copyCommitted(store, checkpointPrefix(from.runId, referenceFrom), checkpointPrefix(runId, referenceFrom));
        referenceVersion = referenceFrom;
      }
      log.info({ runId, from: from.runId, checkpoint: from.checkpoint, referenceVersion }, 'resumed from checkpoint');
    }

    return {
      startStep,
      referenceVersion,
      parameters: parameterCount(run.model),
      model: describeModel(run.model),
      runUri: store.uri(runRecordKey(runId)),
    };
  });
}
