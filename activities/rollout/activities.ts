/**
 * Activities of the rollout queue of a training run (workflows/training-run.ts):
 *
 * - `rolloutShard` — samples `groupSize` completions for each prompt of one shard of an RL step
 *   with the policy of checkpoint `policyVersion`, and writes `rolloutsName(shard)` under the step
 *   prefix (uncommitted; the workflow commits it with the step).
 * - `evaluate` — greedy accuracy and pass@k of a checkpoint on the task's eval split, committed as
 *   `eval.json` under `evalPrefix(run, v)` (store/keys.ts).
 *
 * Determinism: every token is drawn from the counter stream of (seed, step, prompt_id, sample_id)
 * at its completion position (`sampleStream`), never from the run id, so a re-executed or resumed
 * shard writes the same bytes. Greedy decoding takes the argmax (lowest id on ties). The engine runs
 * with the config's fixed thread count.
 *
 * Idempotence: a shard of a committed step, or an evaluation already committed, returns the
 * committed artifact at once without generating.
 *
 * Engines: one `ModelEngine` per (store, run) (`RunEngines`, run/engines.ts: the two most recently
 * used runs). The engine takes the weights as graph inputs (`bakeWeights: false`), so one decode
 * session serves every policy version: `setWeights` only swaps the tensors fed to it. Uses of one
 * engine are serialised, so a switch to another version never lands under a running generation.
 * The weights of the two most recently used (store, run, version) stay loaded.
 */
import { ApplicationFailure } from '@temporalio/common';
import { CounterRng } from '../common/rng.js';
import { hasCheckpoint, loadWeights } from '../checkpoint/checkpoint.js';
import { generate, type Generation } from '../model/generate.js';
import type { ModelEngine } from '../model/engine.js';
import type { WeightMap } from '../model/graphs/common.js';
import type { RewardFn, RewardSample } from '../reward/types.js';
import { scoreSamples, type RewardRow } from '../reward/run.js';
import { stage } from '../run/activity.js';
import { LruCache, MAX_RUNS, RunEngines, runKey } from '../run/engines.js';
import type { RlPhase } from '../run/config.js';
import { crashPoint } from '../run/faults.js';
import { loadRun, type ResolvedRun } from '../run/resolve.js';
import type { EvalRecord, EvaluateInput, EvaluateResult, RolloutShardInput, RolloutShardResult } from '../run/types.js';
import { EVAL_NAME, evalPrefix, rolloutsName, stepPrefix } from '../store/keys.js';
import { canonicalJson, commit, manifestKey, readEntry, readManifest, writeArtifact, type Manifest, type ManifestEntry } from '../store/manifest.js';
import type { ObjectStore } from '../store/object-store.js';
import { ROLLOUTS, decodeRollouts, encodeRollouts, type RolloutsInput, type RolloutsRow } from '../store/schemas.js';
import { parseSamplingParams, sampleAt, sampleStream, StopChecker, type SamplingParams } from './sampling.js';

/** Most sequences in one `generate` call (the KV cache of a batch is allocated at once). */
export const MAX_BATCH_SEQUENCES = 256;

const badInput = (message: string) => ApplicationFailure.nonRetryable(message, 'BadInput');

// ── engine and weights cache ────────────────────────────────────────────────────────────────────

interface EngineSlot {
  engine: ModelEngine;
  /** Tail of the chain of uses of this engine: each use waits for the previous one. */
  tail: Promise<unknown>;
}

const engines = new RunEngines<EngineSlot>({
  // the policy changes every step: weights as inputs keep one decode session for all versions
  // instead of building (and optimising) a new one per step
  engine: { bakeWeights: false },
  slot: (engine) => ({ engine, tail: Promise.resolve() }),
  // a released engine finishes the uses already chained on it first
  release: (slot) => slot.tail.then(() => slot.engine.close()).catch(() => undefined),
});
/** Loaded policy weights by (store, run, version), the most recently used MAX_RUNS. */
const weights = new LruCache<Promise<WeightMap>>(MAX_RUNS);

function policyWeights(store: ObjectStore, runId: string, version: number): Promise<WeightMap> {
  const key = `${runKey(store.root, runId)}|${version}`;
  let p = weights.get(key);
  if (p) return p;
  p = loadWeights(store, runId, version);
  p.catch(() => weights.delete(key));
  weights.set(key, p);
  return p;
}

/** Releases every cached engine and weights (worker shutdown, tests); later calls build new ones. */
export async function releaseEngines(): Promise<void> {
  weights.drain();
  await engines.releaseAll();
}

/**
 * Runs `fn` with the run's engine holding the weights of checkpoint `version` (loaded once per
 * (run, version)); uses of one engine run one at a time.
 */
async function withPolicy<T>(store: ObjectStore, runId: string, run: ResolvedRun, version: number, fn: (engine: ModelEngine) => Promise<T>): Promise<T> {
  if (!Number.isInteger(version) || version < 0) throw badInput(`policyVersion must be a non-negative integer, got ${version}`);
  if (!(await hasCheckpoint(store, runId, version))) {
    throw badInput(`checkpoint ${version} of run "${runId}" is not committed in ${store.root}: a policy can only be loaded from a committed checkpoint`);
  }
  const slot = engines.slot(store.root, runId, run);
  const w = await policyWeights(store, runId, version);
  const use = slot.tail.then(async () => {
    slot.engine.setWeights(w, String(version));
    return fn(slot.engine);
  });
  slot.tail = use.catch(() => undefined);
  return use;
}

// ── generation ──────────────────────────────────────────────────────────────────────────────────

/** One sequence to generate: its prompt tokens and how its tokens are chosen. */
interface SequenceJob {
  prompt: number[];
  pick: (logits: Float32Array, pos: number) => number;
}

/** Generates every job in batches of at most MAX_BATCH_SEQUENCES; results in job order. */
async function generateAll(
  engine: ModelEngine,
  jobs: readonly SequenceJob[],
  maxNewTokens: number,
  stopTokenIds: readonly number[],
  onBatch: (done: number) => void,
): Promise<Generation[]> {
  const out: Generation[] = [];
  for (let start = 0; start < jobs.length; start += MAX_BATCH_SEQUENCES) {
    const batch = jobs.slice(start, start + MAX_BATCH_SEQUENCES);
    const gens = await generate(engine, batch.map((j) => j.prompt), {
      maxNewTokens,
      stopTokenIds,
      pickToken: (logits, seq, pos) => batch[seq]!.pick(logits, pos),
    });
    out.push(...gens);
    onBatch(out.length);
  }
  return out;
}

/** The argmax of a logits row, lowest id on ties. */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
  return best;
}

/** A completion after its stop conditions: the tokens kept, the text, and why it ended. */
export interface Completion {
  tokens: number[];
  logprobs: number[];
  text: string;
  finishReason: 'stop' | 'length';
}

/**
 * Applies the stop conditions to a generation: a stop token ends it (kept in the tokens, left out
 * of the text); a stop string (sampling.stop) cuts it at the token that completed the match (text
 * cut before the string unless include_stop_str_in_output). Both finish as "stop"; reaching the
 * budget is "length".
 */
export function finishCompletion(gen: Generation, params: SamplingParams, stopIds: ReadonlySet<number>, decode: (ids: number[]) => string): Completion {
  if (params.stop.length > 0) {
    const checker = new StopChecker({ ...params, stop_token_ids: [...stopIds], ignore_eos: true }, []);
    for (let i = 0; i < gen.tokens.length; i++) {
      const tok = gen.tokens[i]!;
      const text = decode(stopIds.has(tok) ? gen.tokens.slice(0, i) : gen.tokens.slice(0, i + 1));
      const r = checker.push(tok, text);
      if (r) {
        const n = r.tokens;
        return {
          tokens: gen.tokens.slice(0, n),
          logprobs: gen.logprobs.slice(0, n),
          text: r.text,
          finishReason: r.reason === 'length' ? 'length' : 'stop',
        };
      }
    }
  }
  const last = gen.tokens[gen.tokens.length - 1];
  const stopped = gen.finishReason === 'stop' && last !== undefined && stopIds.has(last);
  return {
    tokens: gen.tokens,
    logprobs: gen.logprobs,
    text: decode(stopped ? gen.tokens.slice(0, -1) : gen.tokens),
    finishReason: gen.finishReason,
  };
}

function rlPhase(run: ResolvedRun, phaseIndex: number): RlPhase {
  const phase = run.config.phases[phaseIndex];
  if (!phase) throw badInput(`phaseIndex ${phaseIndex} is out of range: the run has ${run.config.phases.length} phases`);
  if (phase.kind !== 'rl') throw badInput(`phase ${phaseIndex} is a "${phase.kind}" phase; rollouts are generated for "rl" phases only`);
  return phase;
}

/** Sampling params of an rl phase's rollouts, max_tokens filled with the run's budget. */
export function rolloutSampling(run: ResolvedRun, phase: RlPhase): SamplingParams {
  return parseSamplingParams({ ...phase.sampling, max_tokens: run.maxNewTokens(phase) }, 'phase sampling');
}

function shardSummary(rows: readonly RolloutsRow[] | readonly RolloutsInput[]) {
  let completionTokens = 0;
  let promptTokens = 0;
  let truncated = 0;
  let maxCompletionTokens = 0;
  for (const r of rows) {
    completionTokens += r.completion_token_ids.length;
    maxCompletionTokens = Math.max(maxCompletionTokens, r.completion_token_ids.length);
    promptTokens += r.prompt_token_ids.length;
    if (r.finish_reason === 'length') truncated++;
  }
  return { samples: rows.length, completionTokens, maxCompletionTokens, promptTokens, truncated };
}

function committedEntry(store: ObjectStore, prefix: string, manifest: Manifest, name: string): ManifestEntry {
  const entry = manifest.artifacts.find((e) => e.name === name);
  if (!entry) {
    throw badInput(`${store.uri(manifestKey(prefix))} is committed without "${name}" (it lists ${manifest.artifacts.map((e) => e.name).join(', ') || 'nothing'}); a committed step is never changed — check the shard number`);
  }
  return entry;
}

/** Generates one rollout shard of an RL step and writes `rolloutsName(shard)` (uncommitted). */
export async function rolloutShard(input: RolloutShardInput): Promise<RolloutShardResult> {
  return stage('rollout', input.storeUri, async ({ store, progress }) => {
    const t0 = performance.now();
    const { runId, step, shard } = input;
    if (!Number.isInteger(shard) || shard < 0 || !Number.isInteger(input.shards) || shard >= input.shards) {
      throw badInput(`shard ${shard} of ${input.shards}: give 0 <= shard < shards`);
    }
    if (!Number.isInteger(input.promptCount) || input.promptCount < 1) throw badInput(`promptCount must be a positive integer, got ${input.promptCount}`);
    if (!Number.isInteger(input.promptOffset) || input.promptOffset < 0) throw badInput(`promptOffset must be a non-negative integer, got ${input.promptOffset}`);
    const prefix = stepPrefix(runId, step);
    const name = rolloutsName(shard);
    const seconds = () => (performance.now() - t0) / 1000;

    const committed = await readManifest(store, prefix);
    if (committed) {
      const entry = committedEntry(store, prefix, committed, name);
      const rows = decodeRollouts(await readEntry(store, prefix, entry), store.uri(prefix));
      return { rollouts: entry, ...shardSummary(rows), seconds: seconds() };
    }

    const { run } = await loadRun(store, runId);
    const phase = rlPhase(run, input.phaseIndex);
    const params = rolloutSampling(run, phase);
    const { config, tokenizer } = run;
    const items = run.task.prompts(config.seed, 'train', input.promptCount, input.promptOffset);
    const G = phase.groupSize;
    const stopIds = [...new Set([...(params.ignore_eos ? [] : tokenizer.eosIds), ...params.stop_token_ids])];
    const V = tokenizer.vocabSize;
    const jobs: SequenceJob[] = [];
    const promptIds = items.map((it) => tokenizer.encode(it.prompt));
    items.forEach((item, p) => {
      for (let s = 0; s < G; s++) {
        const stream = sampleStream({ seed: config.seed, step, promptId: item.promptId, sampleId: s });
        jobs.push({ prompt: promptIds[p]!, pick: (logits, pos) => sampleAt(logits.subarray(0, V), params, stream, pos).token });
      }
    });
    progress({ done: 0, of: items.length });
    const gens = await withPolicy(store, runId, run, input.policyVersion, (engine) =>
      generateAll(engine, jobs, params.max_tokens, stopIds, (done) => progress({ done: Math.floor(done / G), of: items.length })));
    crashPoint('rollout', step);

    const stopSet = new Set(stopIds);
    const decode = (ids: number[]) => tokenizer.decode(ids);
    const rows: RolloutsInput[] = gens.map((gen, i) => {
      const item = items[Math.floor(i / G)]!;
      const c = finishCompletion(gen, params, stopSet, decode);
      return {
        run_id: runId, step, prompt_id: item.promptId, sample_id: i % G, group_id: item.promptId,
        node_id: null, parent_node_id: null, policy_version: input.policyVersion,
        prompt_text: item.prompt, prompt_token_ids: promptIds[Math.floor(i / G)]!,
        completion_text: c.text, completion_token_ids: c.tokens, behaviour_logprobs: c.logprobs,
        finish_reason: c.finishReason,
      };
    });
    const entry = await writeArtifact(store, prefix, { name, bytes: encodeRollouts(rows), schema: ROLLOUTS });
    progress({ done: items.length, of: items.length });
    return { rollouts: entry, ...shardSummary(rows), seconds: seconds() };
  });
}

// ── evaluation ──────────────────────────────────────────────────────────────────────────────────

/** Whether a scored row counts as correct: its `correct` component is 1, else (no such component) reward >= 1. */
export function isCorrect(row: Pick<RewardRow, 'reward' | 'components'> | undefined): boolean {
  if (!row || row.reward === null) return false;
  const c = row.components?.correct;
  return c !== undefined ? c === 1 : row.reward >= 1;
}

/** Scores completions with the run's reward; a failing reward counts as wrong (never throws for it). */
async function scoreEval(run: ResolvedRun, reward: RewardFn, samples: RewardSample[], step: number): Promise<RewardRow[]> {
  if (samples.length === 0) return [];
  const { onError: _onError, defaultReward: _defaultReward, ...rest } = run.config.reward.errorPolicy;
  const { rows } = await scoreSamples(reward, samples, { ...rest, onError: 'drop' }, { step });
  return rows;
}

/**
 * Evaluates checkpoint `policyVersion` on the first `eval.prompts` items of the eval split:
 * greedy accuracy, mean reward of the greedy completions, and pass@k over `eval.passK` samples per
 * prompt at `eval.temperature` (the unbiased estimator of Chen et al. 2021 with n = k, i.e. the
 * fraction of prompts with at least one correct sample). Commits `eval.json` under
 * `evalPrefix(run, v)`; an evaluation already committed is returned as stored.
 */
export async function evaluate(input: EvaluateInput): Promise<EvaluateResult> {
  return stage('eval', input.storeUri, async ({ store, progress }) => {
    const t0 = performance.now();
    const { runId, policyVersion: v } = input;
    if (!Number.isInteger(v) || v < 0) throw badInput(`policyVersion must be a non-negative integer, got ${v}`);
    const prefix = evalPrefix(runId, v);
    const uri = store.uri(manifestKey(prefix));
    const stored = async (m: Manifest): Promise<EvaluateResult> => {
      const bytes = await readEntry(store, prefix, committedEntry(store, prefix, m, EVAL_NAME));
      const record = JSON.parse(new TextDecoder().decode(bytes)) as EvalRecord;
      return { ...record, uri, seconds: (performance.now() - t0) / 1000 };
    };
    const existing = await readManifest(store, prefix);
    if (existing) return stored(existing);

    const { run } = await loadRun(store, runId);
    const { config, tokenizer } = run;
    const items = run.task.prompts(config.seed, 'eval', config.eval.prompts, 0);
    const k = config.eval.passK;
    const maxNew = run.maxNewTokens();
    const V = tokenizer.vocabSize;
    const stopIds = tokenizer.eosIds;
    const stopSet = new Set(stopIds);
    const greedyParams = parseSamplingParams({ temperature: 0, max_tokens: maxNew });
    const passParams = parseSamplingParams({ temperature: config.eval.temperature, max_tokens: maxNew });
    const prompts = items.map((it) => tokenizer.encode(it.prompt));
    const jobs: SequenceJob[] = items.map((_, i) => ({ prompt: prompts[i]!, pick: (logits) => argmax(logits.subarray(0, V)) }));
    items.forEach((item, i) => {
      for (let s = 0; s < k; s++) {
        const stream = new CounterRng(config.seed, `eval@${v}`, item.promptId, s);
        jobs.push({ prompt: prompts[i]!, pick: (logits, pos) => sampleAt(logits.subarray(0, V), passParams, stream, pos).token });
      }
    });
    const total = jobs.length;
    progress({ done: 0, of: total });
    const gens = await withPolicy(store, runId, run, v, (engine) =>
      generateAll(engine, jobs, maxNew, stopIds, (done) => progress({ done, of: total })));
    const decode = (ids: number[]) => tokenizer.decode(ids);
    const sample = (i: number, sampleId: number): RewardSample => {
      const item = items[i]!;
      const gen = gens[sampleId === -1 ? i : items.length + i * k + sampleId]!;
      const c = finishCompletion(gen, sampleId === -1 ? greedyParams : passParams, stopSet, decode);
      return {
        promptId: item.promptId, sampleId: sampleId === -1 ? 'greedy' : sampleId, prompt: item.prompt, completion: c.text,
        reference: item.reference, metadata: item.metadata, promptTokens: prompts[i]!.length, completionTokens: c.tokens.length,
      };
    };
    const greedySamples = items.map((_, i) => sample(i, -1));
    const passSamples = items.flatMap((_, i) => Array.from({ length: k }, (_x, s) => sample(i, s)));
    const reward = run.createReward({ faults: false }); // a fault drill tests training, not the yardstick
    let greedyRows: RewardRow[];
    let passRows: RewardRow[];
    try {
      greedyRows = await scoreEval(run, reward, greedySamples, v);
      passRows = await scoreEval(run, reward, passSamples, v);
    } finally {
      await reward.close?.();
    }
    const n = items.length;
    const correct = greedyRows.filter((r) => isCorrect(r)).length;
    const rewarded = greedyRows.filter((r) => r.reward !== null);
    let passed = 0;
    for (let i = 0; i < n; i++) if (passRows.slice(i * k, (i + 1) * k).some((r) => isCorrect(r))) passed++;
    const record: EvalRecord = {
      run_id: runId,
      policy_version: v,
      step: v,
      phase: input.phase,
      greedy_accuracy: n > 0 ? correct / n : 0,
      pass_at_k: k > 0 ? { k, value: n > 0 ? passed / n : 0 } : null,
      mean_reward: rewarded.length > 0 ? rewarded.reduce((a, r) => a + r.reward!, 0) / rewarded.length : 0,
      num_prompts: n,
      samples: greedySamples.slice(0, 16).map((s, i) => ({
        prompt_id: s.promptId, prompt: s.prompt, completion: s.completion, reward: greedyRows[i]!.reward, reference: items[i]!.reference,
      })),
    };
    const { manifest, created } = await commit(store, prefix, [{ name: EVAL_NAME, bytes: new TextEncoder().encode(canonicalJson(record)) }], { run_id: runId, step: v });
    progress({ done: total, of: total });
    if (!created) return stored(manifest);
    return { ...record, uri, seconds: (performance.now() - t0) / 1000 };
  });
}
