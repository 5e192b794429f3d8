/**
 * Checkpoints of a training run in the object store: checkpoint `v` (the weights after v optimizer
 * updates) is the committed prefix `checkpointPrefix(run, v)` (store/keys.ts) with two artifacts:
 *
 *   MODEL_NAME      the parameters, by their Hugging Face names (float32)
 *   OPTIMIZER_NAME  AdamW moments `adam_m.<param>` / `adam_v.<param>`; metadata `step` = updates applied
 *   MODEL_BF16_NAME the parameters rounded to bfloat16, in a run with `rollout.weights: bf16` only:
 *                   what its rollouts read (`loadRolloutWeights`), half MODEL_NAME's bytes
 *
 * and its manifest, written last: the checkpoint exists iff it does (store/manifest.ts). The bf16
 * snapshot is written with the other two, before the manifest, so a crash anywhere before the
 * commit leaves an uncommitted checkpoint whose re-executed writer writes the same three objects
 * (the snapshot is a pure function of the float32 parameters), and a committed checkpoint of such
 * a run always has it.
 *
 * The bytes are a deterministic function of the tensors (safetensors with sorted names), so a
 * re-executed learner writes the same content-addressed keys, and two runs with equal weights have
 * equal sha256s.
 *
 * Frozen parameters (a LoRA run's base weights: those without AdamW moments in the state) are
 * written once, in checkpoint 0; a later checkpoint holds only the parameters that train, with
 * metadata `frozen_from: "0"`, and reading it takes the others from checkpoint 0 (shared, read
 * once per run and process).
 */
import type { TrainState } from '../model/engine-types.js';
import type { WeightTensor } from '../model/graphs/common.js';
import { bf16ToFloat32, float32ToBf16, parseSafetensors, serializeSafetensors, toBf16, type Tensor } from '../model/safetensors.js';
import { IntegrityError } from '../store/errors.js';
import { checkpointPrefix, MODEL_BF16_NAME, MODEL_NAME, OPTIMIZER_NAME } from '../store/keys.js';
import { readArtifact, readEntry, readManifest, writeArtifact, type ManifestEntry } from '../store/manifest.js';
import type { ObjectStore } from '../store/object-store.js';
import { LruCache } from '../run/engines.js';

function toTensors(params: ReadonlyMap<string, WeightTensor>, prefix = ''): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const name of [...params.keys()].sort()) {
    const w = params.get(name)!;
    out.set(prefix + name, { dtype: 'F32', shape: [...w.shape], data: w.data });
  }
  return out;
}

function toWeights(tensors: Map<string, Tensor>, what: string, prefix = ''): Map<string, WeightTensor> {
  const out = new Map<string, WeightTensor>();
  for (const [name, t] of tensors) {
    if (!name.startsWith(prefix)) continue;
    if (t.dtype !== 'F32') throw new IntegrityError(what, `tensor ${name} is ${t.dtype}, expected F32`);
    out.set(name.slice(prefix.length), { shape: t.shape, data: t.data });
  }
  return out;
}

/** The checkpoint that holds the frozen parameters of later ones. */
const FROZEN_FROM = 0;

/** The weights a run's rollouts read (config `rollout.weights`). */
export type RolloutWeights = 'float32' | 'bf16';

/** What a checkpoint's writer needs of the run's config. */
export interface CheckpointOptions {
  /** 'bf16': also write MODEL_BF16_NAME (default 'float32': the two artifacts alone). */
  rolloutWeights?: RolloutWeights;
}

/**
 * The artifacts of checkpoint `version`, serialized (frozen parameters only in checkpoint 0), and
 * the bf16 snapshot of the parameters when the run's rollouts read one.
 */
export function encodeCheckpoint(
  state: TrainState,
  version = FROZEN_FROM,
  options: CheckpointOptions = {},
): { model: Uint8Array; optimizer: Uint8Array; modelBf16: Uint8Array | null } {
  const frozen = [...state.params.keys()].some((n) => !state.adamM.has(n));
  const bf16 = options.rolloutWeights === 'bf16';
  // the config check refuses bf16 with LoRA (activities/run/config.ts `rollout.weights`)
  if (bf16 && frozen) throw new Error('a bf16 rollout snapshot of a checkpoint with frozen parameters (LoRA) is not written');
  const model =
    frozen && version !== FROZEN_FROM
      ? serializeSafetensors(toTensors(new Map([...state.params].filter(([n]) => state.adamM.has(n)))), {
          format: 'pt',
          frozen_from: String(FROZEN_FROM),
        })
      : serializeSafetensors(toTensors(state.params), { format: 'pt' });
  const moments = new Map([...toTensors(state.adamM, 'adam_m.'), ...toTensors(state.adamV, 'adam_v.')]);
  const optimizer = serializeSafetensors(moments, { step: String(state.step) });
  const modelBf16 = bf16 ? serializeSafetensors(new Map([...state.params].map(([n, w]) => [n, toBf16(w)])), { format: 'pt' }) : null;
  return { model, optimizer, modelBf16 };
}

/** Writes the artifacts of checkpoint `version` (uncommitted: `commit` them with the step). */
export async function writeCheckpoint(
  store: ObjectStore,
  runId: string,
  version: number,
  state: TrainState,
  options: CheckpointOptions = {},
): Promise<ManifestEntry[]> {
  const prefix = checkpointPrefix(runId, version);
  const { model, optimizer, modelBf16 } = encodeCheckpoint(state, version, options);
  return [
    await writeArtifact(store, prefix, { name: MODEL_NAME, bytes: model }),
    await writeArtifact(store, prefix, { name: OPTIMIZER_NAME, bytes: optimizer }),
    ...(modelBf16 ? [await writeArtifact(store, prefix, { name: MODEL_BF16_NAME, bytes: modelBf16 })] : []),
  ];
}

/** Whether checkpoint `version` is committed. */
export async function hasCheckpoint(store: ObjectStore, runId: string, version: number): Promise<boolean> {
  return (await readManifest(store, checkpointPrefix(runId, version))) !== undefined;
}

/**
 * Whether committed checkpoint `version` still holds its AdamW moments (what a resume trains on);
 * false for a weights-only one (retention `optimizerState: 'last'`, gc.ts) or one not committed.
 */
export async function hasOptimizerState(store: ObjectStore, runId: string, version: number): Promise<boolean> {
  const manifest = await readManifest(store, checkpointPrefix(runId, version));
  return manifest?.artifacts.some((e) => e.name === OPTIMIZER_NAME) ?? false;
}

/** Checkpoint 0's parameters of the two most recently used runs (per store), read once: the frozen base of a LoRA run's later checkpoints. */
const frozenBases = new LruCache<Promise<Map<string, WeightTensor>>>(2);

function frozenBase(store: ObjectStore, runId: string): Promise<Map<string, WeightTensor>> {
  const key = `${store.root}|${runId}`;
  let p = frozenBases.get(key);
  if (!p) {
    p = loadOwnWeights(store, runId, FROZEN_FROM).then((r) => r.weights);
    p.catch(() => frozenBases.delete(key));
    frozenBases.set(key, p);
  }
  return p;
}

async function loadOwnWeights(
  store: ObjectStore,
  runId: string,
  version: number,
): Promise<{ weights: Map<string, WeightTensor>; frozenFrom: number | null }> {
  const prefix = checkpointPrefix(runId, version);
  const what = store.uri(prefix) + MODEL_NAME;
  const parsed = parseSafetensors(await readArtifact(store, prefix, MODEL_NAME), what);
  const from = parsed.metadata.frozen_from;
  if (from !== undefined && from !== String(FROZEN_FROM))
    throw new IntegrityError(what, `metadata frozen_from is ${JSON.stringify(from)}, expected "${FROZEN_FROM}"`);
  return { weights: toWeights(parsed.tensors, what), frozenFrom: from === undefined ? null : FROZEN_FROM };
}

/**
 * Parameters of a committed checkpoint (size and sha256 verified); a checkpoint of trained
 * parameters only is completed with checkpoint 0's frozen ones (the same buffers, not copies).
 */
export async function loadWeights(store: ObjectStore, runId: string, version: number): Promise<Map<string, WeightTensor>> {
  const own = await loadOwnWeights(store, runId, version);
  if (own.frozenFrom === null) return own.weights;
  const base = await frozenBase(store, runId);
  return new Map([...base].map(([n, w]) => [n, own.weights.get(n) ?? w]));
}

/**
 * The parameters a run's rollouts decode with, from committed checkpoint `version`: with
 * `rollout.weights: bf16` its MODEL_BF16_NAME snapshot (half the bytes of MODEL_NAME), widened to
 * float32; a checkpoint without one (copied by resume-from from a run that wrote none) gives its
 * float32 parameters rounded the same way, so the values never depend on where they came from.
 * With 'float32', `loadWeights`.
 */
export async function loadRolloutWeights(
  store: ObjectStore,
  runId: string,
  version: number,
  weights: RolloutWeights,
): Promise<Map<string, WeightTensor>> {
  if (weights === 'float32') return loadWeights(store, runId, version);
  const prefix = checkpointPrefix(runId, version);
  const entry = (await readManifest(store, prefix))?.artifacts.find((e) => e.name === MODEL_BF16_NAME);
  if (!entry) {
    const exact = await loadWeights(store, runId, version);
    return new Map([...exact].map(([n, w]) => [n, { shape: w.shape, data: bf16ToFloat32(float32ToBf16(w.data)) }]));
  }
  const what = store.uri(prefix) + MODEL_BF16_NAME;
  const parsed = parseSafetensors(await readEntry(store, prefix, entry), what);
  for (const [name, dtype] of parsed.sourceDtypes)
    if (dtype !== 'BF16') throw new IntegrityError(what, `tensor ${name} is ${dtype}, expected BF16`);
  return toWeights(parsed.tensors, what);
}

/**
 * The KL reference of an rl phase that starts at checkpoint `version`: that checkpoint's weights;
 * for a LoRA model the base model itself, the adapters switched off (B = 0; TRL's reference for
 * PEFT models), on checkpoint 0's base tensors without copying them.
 */
export async function loadReferenceWeights(
  store: ObjectStore,
  runId: string,
  version: number,
  model: { lora?: unknown },
): Promise<Map<string, WeightTensor>> {
  if (!model.lora) return loadWeights(store, runId, version);
  const base = await frozenBase(store, runId);
  return new Map(
    [...base].map(([n, w]) => [n, n.endsWith('.lora_B.weight') ? { shape: w.shape, data: new Float32Array(w.data.length) } : w]),
  );
}

/** A value that is not finite (NaN, ±Infinity) in a train state: the tensor by its name in the checkpoint's files, and where. */
export interface NonFiniteValue {
  /** A parameter's HF name, or `adam_m.<param>` / `adam_v.<param>` for an AdamW moment (as OPTIMIZER_NAME names them). */
  tensor: string;
  index: number;
  value: number;
  /** How many of the tensor's values are not finite. */
  count: number;
}

/**
 * The first tensor of `state` (parameters, then AdamW moments, in name order) holding a value that
 * is not finite; undefined when every value is finite. `trainedOnly`: only the parameters that
 * train (those with moments; a LoRA run's frozen base never changes, so a state an update produced
 * needs no second scan of it). A plain scan of the float arrays: about 1 ms per million values.
 */
export function firstNonFinite(state: TrainState, opts: { trainedOnly?: boolean } = {}): NonFiniteValue | undefined {
  const groups: [string, ReadonlyMap<string, WeightTensor>][] = [
    ['', opts.trainedOnly ? new Map([...state.params].filter(([n]) => state.adamM.has(n))) : state.params],
    ['adam_m.', state.adamM],
    ['adam_v.', state.adamV],
  ];
  for (const [prefix, tensors] of groups) {
    for (const name of [...tensors.keys()].sort()) {
      const data = tensors.get(name)!.data;
      let first = -1;
      let count = 0;
      for (let i = 0; i < data.length; i++) {
        // x - x is NaN exactly for NaN and ±Infinity: one subtraction per value, no call
        if (data[i]! - data[i]! !== 0) {
          if (first < 0) first = i;
          count++;
        }
      }
      if (first >= 0) return { tensor: prefix + name, index: first, value: data[first]!, count };
    }
  }
  return undefined;
}

/** Parameters, AdamW moments and update count of a committed checkpoint. */
export async function loadTrainState(store: ObjectStore, runId: string, version: number): Promise<TrainState> {
  const prefix = checkpointPrefix(runId, version);
  const params = await loadWeights(store, runId, version);
  const what = store.uri(prefix) + OPTIMIZER_NAME;
  const opt = parseSafetensors(await readArtifact(store, prefix, OPTIMIZER_NAME), what);
  const step = Number(opt.metadata.step);
  if (!Number.isInteger(step) || step < 0)
    throw new IntegrityError(what, `metadata "step" is ${JSON.stringify(opt.metadata.step)}, expected a non-negative integer`);
  return { params, adamM: toWeights(opt.tensors, what, 'adam_m.'), adamV: toWeights(opt.tensors, what, 'adam_v.'), step };
}
