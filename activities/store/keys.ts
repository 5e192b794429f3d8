/**
 * Object keys: the rules every key obeys, and the one place the store's layout is spelled.
 *
 * A key is a relative, `/`-separated path inside a store: no leading or trailing `/`, no empty,
 * `.` or `..` segments, no backslashes, no control characters (NUL included), at most 1024 UTF-8
 * bytes (the S3 limit). The same rules hold for every backend, so a key that works on `file://`
 * works on `s3://` and cannot escape the store's root. The first segment `.tmp` is reserved for the
 * file store's in-flight writes.
 *
 * The layout. Every folder marked (c) is a committed prefix (manifest.ts): it exists iff its
 * `manifest.json` does, and each artifact in it is stored under its content-addressed key
 * (`contentKey`: the name with the first 16 hex digits of its sha256 before the extension, shown
 * here as `{sha16}`). Readers find an artifact by its name through the manifest, never by its key.
 *
 *   runs/{runId}/                                  runPrefix
 *     run.json                                     runRecordKey: the validated config + provenance (a plain object, written once)
 *     checkpoints/{v:06d}/ (c)                     checkpointPrefix: the weights after v optimizer updates
 *       model.{sha16}.safetensors                  MODEL_NAME: parameters by Hugging Face name
 *       optimizer.{sha16}.safetensors              OPTIMIZER_NAME: AdamW moments
 *       model-bf16.{sha16}.safetensors             MODEL_BF16_NAME: the parameters rounded to bfloat16 (runs with rollout.weights bf16)
 *     steps/{s:06d}/ (c)                           stepPrefix: training step s (0-based)
 *       rollouts-{k:03d}.{sha16}.arrow             rolloutsName(k): rollout shard k (RL steps; see "shard numbering")
 *       rewards-{k:03d}.{sha16}.arrow              rewardsName(k): rewards of rollout shard k (RL steps)
 *       advantages.{sha16}.arrow                   ADVANTAGES_NAME (RL steps)
 *       reference_logprobs.{sha16}.arrow           REFERENCE_LOGPROBS_NAME (RL steps whose loss has kl.inReward)
 *       preference_pairs.{sha16}.arrow             PREFERENCE_PAIRS_NAME (online DPO steps, in place of advantages)
 *       metrics.{sha16}.arrow                      METRICS_NAME: the step's one metrics row
 *       episodes-{k:03d}/turn-{t:04d}.json         episodePartKey: rollout shard k's episodes after t completed turns (uncommitted resume points of multi-turn episodes; deleted once the step commits)
 *     evals/{v:06d}/ (c)                           evalPrefix: the evaluation of checkpoint v
 *       eval.{sha16}.json                          EVAL_NAME
 *   annotations/{jobId}/ (c)                       annotationPrefix: default output prefix P of an offline reward-annotation job
 *     rewards.{sha16}.arrow, summary.{sha16}.json  ANNOTATION_REWARDS_NAME, ANNOTATION_SUMMARY_NAME: all rewards in input order
 *     shards/{i:06d}/ (c)                          annotationShardPrefix(P, i)
 *       rewards.{sha16}.arrow, job.{sha16}.json    ANNOTATION_REWARDS_NAME, ANNOTATION_JOB_NAME: shard i and what it is a function of
 *       parts/{c:06d}.arrow                        annotationPartKey(P, i, c): chunk c's rows (plain objects, resume points)
 *
 * Shard numbering of an RL step: its planned shards are 0..n-1 (workflows/run-plan.ts `planStep`);
 * with the phase's dynamicSampling `refill`, each refill round's shards are numbered on from the
 * step's shards so far (round 1: n..n+m-1, and so on; `planRefill`), so every shard of the step,
 * whatever its round, is `rolloutsName(k)` / `rewardsName(k)` with one k, and readers take all of
 * them in k order (`parseShardName`). A step's advantages cover every shard.
 *
 * `parseRunKey` reads a key below `runs/` back into run id, folder and number (`parseStep`,
 * `committedSteps` in manifest.ts and the report use it); `parseShardName` reads a shard artifact's
 * name back into its kind and shard number.
 */
import { InvalidKeyError } from './errors.js';

export const MAX_KEY_BYTES = 1024;

/** The file store keeps in-flight temp files under this top-level folder; keys may not use it. */
export const RESERVED_TOP_SEGMENT = '.tmp';

/** Name of the commit marker of a prefix (see manifest.ts). */
export const MANIFEST_NAME = 'manifest.json';

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

function checkSegments(key: string, segments: string[]): void {
  for (const s of segments) {
    if (s === '') throw new InvalidKeyError(key, 'empty path segment (leading, trailing or doubled "/")');
    if (s === '.' || s === '..') throw new InvalidKeyError(key, `"${s}" segments are not allowed; keys are plain relative paths`);
  }
}

/** Throws InvalidKeyError (naming the key and the broken rule) unless `key` is a valid object key. */
export function validateKey(key: string): string {
  if (typeof key !== 'string') throw new InvalidKeyError(String(key), `a key must be a string, got ${typeof key}`);
  if (key.length === 0) throw new InvalidKeyError(key, 'a key must not be empty');
  if (key.startsWith('/')) throw new InvalidKeyError(key, 'absolute paths are not allowed; use a key relative to the store root');
  if (key.includes('\\')) throw new InvalidKeyError(key, 'backslashes are not allowed; separate segments with "/"');
  if (CONTROL.test(key)) throw new InvalidKeyError(key, 'control characters (NUL, newline, ...) are not allowed');
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw new InvalidKeyError(key, `longer than ${MAX_KEY_BYTES} UTF-8 bytes`);
  const segments = key.split('/');
  checkSegments(key, segments);
  if (segments[0] === RESERVED_TOP_SEGMENT)
    throw new InvalidKeyError(key, `the top-level folder "${RESERVED_TOP_SEGMENT}" is reserved for in-flight writes`);
  return key;
}

/**
 * Validates a listing prefix: like a key, but it may be empty (everything) and may end with `/`
 * (everything below a folder). A prefix matches keys by plain string prefix, as in S3.
 */
export function validatePrefix(prefix: string): string {
  if (prefix === '') return prefix;
  const body = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (body === '') throw new InvalidKeyError(prefix, 'a prefix of only "/" is not allowed; use "" to list everything');
  validateKey(body);
  return prefix;
}

/** Joins key parts with `/` and validates the result. Parts may themselves contain `/`. */
export function joinKey(...parts: string[]): string {
  return validateKey(parts.filter((p) => p !== '').join('/'));
}

/** Validates one segment of a key (an id that becomes a folder name): non-empty, no `/`. */
export function validateSegment(what: string, value: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidKeyError(String(value), `${what} must be a non-empty string`);
  }
  if (value.includes('/')) throw new InvalidKeyError(value, `${what} must not contain "/" (it becomes one folder name)`);
  validateKey(value);
  return value;
}

/** A step, checkpoint, evaluation or shard number as a folder name: zero-padded to six digits. */
function folderNumber(what: string, n: number, width = 6): string {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new InvalidKeyError(String(n), `${what} must be a non-negative integer`);
  }
  return String(n).padStart(width, '0');
}

// ── training runs ───────────────────────────────────────────────────────────────────────────────

/** The numbered folders of a run: committed steps, checkpoints and evaluations. */
export type RunFolder = 'steps' | 'checkpoints' | 'evals';

/** Name of a run's record (its validated config), directly below the run prefix. */
export const RUN_RECORD_NAME = 'run.json';
/** Artifact of a checkpoint: the parameters by their Hugging Face names (safetensors, float32). */
export const MODEL_NAME = 'model.safetensors';
/** Artifact of a checkpoint: the AdamW moments `adam_m.<param>` / `adam_v.<param>` (safetensors). */
export const OPTIMIZER_NAME = 'optimizer.safetensors';
/**
 * Artifact of a checkpoint of a run with `rollout.weights: bf16`: MODEL_NAME's parameters rounded to
 * bfloat16 (safetensors BF16), what its rollouts read (activities/checkpoint/checkpoint.ts).
 */
export const MODEL_BF16_NAME = 'model-bf16.safetensors';
/** Artifact of a step: its one METRICS row. */
export const METRICS_NAME = 'metrics.arrow';
/** Artifact of an RL step: the ADVANTAGES table, one row per rollout row. */
export const ADVANTAGES_NAME = 'advantages.arrow';
/**
 * Artifact of an RL step whose loss has `kl.inReward` (REINFORCE++): the REFERENCE_LOGPROBS table,
 * the reference policy's logprobs of every rollout row's completion tokens, which the advantage
 * stage charges as a KL penalty in the rewards.
 */
export const REFERENCE_LOGPROBS_NAME = 'reference_logprobs.arrow';
/** An online_dpo step's (chosen, rejected) pairs, one per prompt with a reward gap: what its learner trains on. */
export const PREFERENCE_PAIRS_NAME = 'preference_pairs.arrow';
/** Artifact of an evaluation: the EvalRecord as canonical JSON. */
export const EVAL_NAME = 'eval.json';

/** `runs/{runId}` — everything a run writes lives below it. */
export function runPrefix(runId: string): string {
  return `runs/${validateSegment('run id', runId)}`;
}

/** `runs/{runId}/{folder}` — the folder of a run's steps, checkpoints or evaluations (for listings). */
export function runFolder(runId: string, folder: RunFolder): string {
  return `${runPrefix(runId)}/${folder}`;
}

/** `runs/{runId}/run.json` — the run's record. */
export function runRecordKey(runId: string): string {
  return joinKey(runPrefix(runId), RUN_RECORD_NAME);
}

/**
 * `runs/{runId}/base` — the pretrained model a `model.from` run starts from: its config.json and
 * tokenizer files, copied once by initRun and committed by a manifest (the weights are checkpoint 0).
 */
export function basePrefix(runId: string): string {
  return `${runPrefix(runId)}/base`;
}

/** `runs/{runId}/steps/{step:06d}` — the artifacts and manifest of one training step. */
export function stepPrefix(runId: string, step: number): string {
  return `${runFolder(runId, 'steps')}/${folderNumber('a step', step)}`;
}

/** `runs/{runId}/checkpoints/{step:06d}` — weights and optimizer state after a step. */
export function checkpointPrefix(runId: string, step: number): string {
  return `${runFolder(runId, 'checkpoints')}/${folderNumber('a step', step)}`;
}

/** `runs/{runId}/evals/{version:06d}` — where the evaluation of checkpoint `version` is committed. */
export function evalPrefix(runId: string, version: number): string {
  return `${runFolder(runId, 'evals')}/${folderNumber('a policy version', version)}`;
}

/** The kinds of per-shard artifacts of an RL step. */
export type ShardArtifact = 'rollouts' | 'rewards';

function shardName(kind: ShardArtifact, shard: number): string {
  return `${kind}-${String(shard).padStart(3, '0')}.arrow`;
}

/** Artifact of an RL step: rollout shard `shard` (planned or refill, see "shard numbering" above), `rollouts-{shard:03d}.arrow`. */
export function rolloutsName(shard: number): string {
  return shardName('rollouts', shard);
}

/** Artifact of an RL step: the rewards of rollout shard `shard`, `rewards-{shard:03d}.arrow`. */
export function rewardsName(shard: number): string {
  return shardName('rewards', shard);
}

/**
 * `runs/{runId}/steps/{step:06d}/episodes-` — the plain-string prefix of every rollout shard's
 * `episodePartsPrefix` in a step (what commitStep lists to delete them once the step commits).
 */
export function stepEpisodePartsPrefix(runId: string, step: number): string {
  return `${stepPrefix(runId, step)}/episodes-`;
}

/**
 * `runs/{runId}/steps/{step:06d}/episodes-{shard:03d}` — the resume points of rollout shard
 * `shard`'s multi-turn episodes (activities/rollout/episode.ts): plain JSON objects, never
 * committed, one per completed turn; read by a retried shard until the step commits, then deleted
 * (activities/checkpoint/commit-step.ts).
 */
export function episodePartsPrefix(runId: string, step: number, shard: number): string {
  return `${stepEpisodePartsPrefix(runId, step)}${folderNumber('a shard', shard, 3)}`;
}

/** `…/episodes-{shard:03d}/turn-{turns:04d}.json` — the state of shard `shard`'s episodes after `turns` completed turns. */
export function episodePartKey(runId: string, step: number, shard: number, turns: number): string {
  return `${episodePartsPrefix(runId, step, shard)}/turn-${folderNumber('a turn count', turns, 4)}.json`;
}

/** The kind and shard number of a name `rolloutsName` or `rewardsName` builds, or undefined. */
export function parseShardName(name: string): { kind: ShardArtifact; shard: number } | undefined {
  const m = /^(rollouts|rewards)-(\d+)\.arrow$/.exec(name);
  return m ? { kind: m[1] as ShardArtifact, shard: Number(m[2]) } : undefined;
}

/** A key below a run's prefix, read back into its parts. */
export interface RunKey {
  runId: string;
  /** The numbered folder the key is in, or null for a key directly below the run (`run.json`). */
  folder: RunFolder | null;
  /** The step, checkpoint or evaluation number of that folder, or null. */
  number: number | null;
  /** The rest of the key below the numbered folder ('' for the folder itself), or below the run. */
  rest: string;
}

/**
 * Reads a key (or prefix) below a run, `runs/{runId}/...`, back into its parts; undefined for any
 * other key (the run prefix itself included). The inverse of the builders above:
 * `parseRunKey(stepPrefix(r, s) + '/' + METRICS_NAME)` is `{ runId: r, folder: 'steps', number: s, rest: METRICS_NAME }`.
 * Folder numbers of six or more digits are read.
 */
export function parseRunKey(key: string): RunKey | undefined {
  const run = /^runs\/([^/]+)\/(.+)$/s.exec(key);
  if (!run) return undefined;
  const runId = run[1]!;
  const below = run[2]!;
  const numbered = /^(steps|checkpoints|evals)\/(\d{6,})(?:\/(.*))?$/s.exec(below);
  if (!numbered) return { runId, folder: null, number: null, rest: below };
  return { runId, folder: numbered[1] as RunFolder, number: Number(numbered[2]), rest: numbered[3] ?? '' };
}

/** The step number of a step or checkpoint prefix (or a key below one), or undefined. */
export function parseStep(key: string): number | undefined {
  const k = parseRunKey(key);
  return k && (k.folder === 'steps' || k.folder === 'checkpoints') ? k.number! : undefined;
}

// ── offline reward annotation ───────────────────────────────────────────────────────────────────

/** Artifact of an annotation shard and of the whole job: the REWARDS table. */
export const ANNOTATION_REWARDS_NAME = 'rewards.arrow';
/** Artifact of an annotation shard: the job settings its rewards are a function of. */
export const ANNOTATION_JOB_NAME = 'job.json';
/** Artifact of an annotation job: its totals (records, mean reward, accuracy, errors). */
export const ANNOTATION_SUMMARY_NAME = 'summary.json';

/** `annotations/{jobId}` — the default output prefix of an annotation job. */
export function annotationPrefix(jobId: string): string {
  return `annotations/${validateSegment('job id', jobId)}`;
}

/** `{outputPrefix}/shards/{shard:06d}` — the committed prefix of one annotation shard. */
export function annotationShardPrefix(outputPrefix: string, shard: number): string {
  return `${outputPrefix}/shards/${folderNumber('a shard index', shard)}`;
}

/** `{outputPrefix}/shards/{shard:06d}/parts/{chunk:06d}.arrow` — a scored chunk of a shard (a resume point, not committed). */
export function annotationPartKey(outputPrefix: string, shard: number, chunk: number): string {
  return `${annotationShardPrefix(outputPrefix, shard)}/parts/${folderNumber('a chunk index', chunk)}.arrow`;
}

// ── content addressing ──────────────────────────────────────────────────────────────────────────

/** `dir/stem.ext` + sha → `dir/stem.{sha[0:16]}.ext` (the content-addressed key of an artifact). */
export function contentKey(name: string, sha256: string): string {
  const slash = name.lastIndexOf('/');
  const dir = name.slice(0, slash + 1);
  const base = name.slice(slash + 1);
  const dot = base.lastIndexOf('.');
  const tag = sha256.slice(0, 16);
  return dot > 0 ? `${dir}${base.slice(0, dot)}.${tag}${base.slice(dot)}` : `${dir}${base}.${tag}`;
}
