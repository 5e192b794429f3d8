/**
 * Checkpoints of a training run in the object store: checkpoint `v` (the weights after v optimizer
 * updates) is the committed prefix `checkpointPrefix(run, v)` (store/keys.ts) with two artifacts:
 *
 *   MODEL_NAME      the parameters, by their Hugging Face names (float32)
 *   OPTIMIZER_NAME  AdamW moments `adam_m.<param>` / `adam_v.<param>`; metadata `step` = updates applied
 *
 * and its manifest, written last: the checkpoint exists iff it does (store/manifest.ts).
 *
 * The bytes are a deterministic function of the tensors (safetensors with sorted names), so a
 * re-executed learner writes the same content-addressed keys, and two runs with equal weights have
 * equal sha256s.
 */
import type { TrainState } from '../model/engine-types.js';
import type { WeightTensor } from '../model/graphs/common.js';
import { parseSafetensors, serializeSafetensors, type Tensor } from '../model/safetensors.js';
import { IntegrityError } from '../store/errors.js';
import { checkpointPrefix, MODEL_NAME, OPTIMIZER_NAME } from '../store/keys.js';
import { readArtifact, readManifest, writeArtifact, type ManifestEntry } from '../store/manifest.js';
import type { ObjectStore } from '../store/object-store.js';

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

/** The two artifacts of a checkpoint, serialized. */
export function encodeCheckpoint(state: TrainState): { model: Uint8Array; optimizer: Uint8Array } {
  const model = serializeSafetensors(toTensors(state.params), { format: 'pt' });
  const moments = new Map([...toTensors(state.adamM, 'adam_m.'), ...toTensors(state.adamV, 'adam_v.')]);
  const optimizer = serializeSafetensors(moments, { step: String(state.step) });
  return { model, optimizer };
}

/** Writes the artifacts of checkpoint `version` (uncommitted: `commit` them with the step). */
export async function writeCheckpoint(store: ObjectStore, runId: string, version: number, state: TrainState): Promise<ManifestEntry[]> {
  const prefix = checkpointPrefix(runId, version);
  const { model, optimizer } = encodeCheckpoint(state);
  return [
    await writeArtifact(store, prefix, { name: MODEL_NAME, bytes: model }),
    await writeArtifact(store, prefix, { name: OPTIMIZER_NAME, bytes: optimizer }),
  ];
}

/** Whether checkpoint `version` is committed. */
export async function hasCheckpoint(store: ObjectStore, runId: string, version: number): Promise<boolean> {
  return (await readManifest(store, checkpointPrefix(runId, version))) !== undefined;
}

/** Parameters of a committed checkpoint (size and sha256 verified). */
export async function loadWeights(store: ObjectStore, runId: string, version: number): Promise<Map<string, WeightTensor>> {
  const prefix = checkpointPrefix(runId, version);
  const bytes = await readArtifact(store, prefix, MODEL_NAME);
  return toWeights(parseSafetensors(bytes, store.uri(prefix) + MODEL_NAME).tensors, store.uri(prefix) + MODEL_NAME);
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
