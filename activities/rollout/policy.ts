/**
 * Running the policy, shared by the rollout queue's two activities (`rolloutShard` in
 * rollout-shard.ts, `evaluate` in evaluate.ts): the engine of a run holding the weights of one
 * checkpoint, batched generation, and the stop conditions that turn a generation into a completion.
 *
 * Determinism: every token is drawn from the counter stream of (seed, step, prompt_id, sample_id)
 * at its completion position (`sampleStream`), never from the run id, so a re-executed or resumed
 * shard writes the same bytes. Greedy decoding takes the argmax (lowest id on ties). The engine runs
 * with the config's fixed thread count.
 *
 * Engines: one `ModelEngine` per (store, run) (`RunEngines`, run/engines.ts: the two most recently
 * used runs). On the CPU the engine takes the weights as graph inputs (`bakeWeights: false`), so one
 * decode session serves every policy version: `setWeights` only swaps the tensors fed to it. On an
 * accelerator (`engine.executionProviders` led by cuda, webgpu, …) inputs fed from host arrays
 * would cross to the device on every decode step, the whole model each time; there the weights are
 * baked (`rolloutEngineOptions`): uploaded once per policy version with that version's session. Uses of one
 * engine are serialised, so a switch to another version never lands under a running generation.
 * The weights of the two most recently used (store, run, version) stay loaded.
 */
import { hasCheckpoint, loadRolloutWeights, type RolloutWeights } from '../checkpoint/checkpoint.js';
import { generate, type Generation } from '../model/generate.js';
import type { DecodeQuantize } from '../model/quantize.js';
import { onDevice, type EngineOptionsInput, type ModelEngine } from '../model/engine.js';
import type { WeightMap } from '../model/graphs/common.js';
import { LruCache, MAX_RUNS, RunEngines, runKey } from '../run/engines.js';
import { type ResolvedRun } from '../run/resolve.js';
import { manifestKey, type Manifest, type ManifestEntry } from '../store/manifest.js';
import type { ObjectStore } from '../store/object-store.js';
import { StopChecker, type SamplingParams } from './sampling.js';
import { renderPrompt, type ChatRendering } from '../env/format.js';
import type { EnvRow } from '../env/types.js';
import { CHAT_TEMPLATE_DATE } from '../run/resolve.js';
import type { EpisodeOptions, EpisodeStart } from './episode.js';
import { badInput } from '../common/failures.js';

// ── engine and weights cache ────────────────────────────────────────────────────────────────────

interface EngineSlot {
  engine: ModelEngine;
  /** Tail of the chain of uses of this engine: each use waits for the previous one. */
  tail: Promise<unknown>;
}

/**
 * The rollout engine's options for a run: weights as inputs on the CPU (the policy changes every
 * step: one decode session for all versions instead of building and optimising one per step),
 * baked on an accelerator (weights stay on the device between decode steps).
 */
export function rolloutEngineOptions(run: Pick<ResolvedRun, 'config'>): EngineOptionsInput {
  return { bakeWeights: onDevice(run.config.engine.executionProviders) };
}

const engines = new RunEngines<EngineSlot>({
  engine: rolloutEngineOptions,
  slot: (engine) => ({ engine, tail: Promise.resolve() }),
  // a released engine finishes the uses already chained on it first
  release: (slot) => slot.tail.then(() => slot.engine.close()).catch(() => undefined),
});
/** Loaded policy weights by (store, run, version, precision), the most recently used MAX_RUNS. */
const weights = new LruCache<Promise<WeightMap>>(MAX_RUNS);

function policyWeights(store: ObjectStore, runId: string, version: number, precision: RolloutWeights): Promise<WeightMap> {
  const key = `${runKey(store.root, runId)}|${version}|${precision}`;
  let p = weights.get(key);
  if (p) return p;
  p = loadRolloutWeights(store, runId, version, precision);
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
 * (run, version, precision)); uses of one engine run one at a time. `precision`: the checkpoint's
 * float32 parameters (evaluations), or the run's `rollout.weights` (rollouts: with 'bf16' the
 * checkpoint's bfloat16 snapshot, widened; checkpoint.ts `loadRolloutWeights`).
 */
export async function withPolicy<T>(
  store: ObjectStore,
  runId: string,
  run: ResolvedRun,
  version: number,
  precision: RolloutWeights,
  fn: (engine: ModelEngine) => Promise<T>,
): Promise<T> {
  if (!Number.isInteger(version) || version < 0) throw badInput(`policyVersion must be a non-negative integer, got ${version}`);
  if (!(await hasCheckpoint(store, runId, version))) {
    throw badInput(
      `checkpoint ${version} of run "${runId}" is not committed in ${store.root}: a policy can only be loaded from a committed checkpoint`,
    );
  }
  const slot = engines.slot(store.root, runId, run);
  const w = await policyWeights(store, runId, version, precision);
  const use = slot.tail.then(async () => {
    slot.engine.setWeights(w, precision === 'float32' ? String(version) : `${version}/${precision}`);
    return fn(slot.engine);
  });
  slot.tail = use.catch(() => undefined);
  return use;
}

// ── generation ──────────────────────────────────────────────────────────────────────────────────

/** One sequence to generate: its prompt tokens and how its tokens are chosen. */
export interface SequenceJob {
  prompt: number[];
  pick: (logits: Float32Array, pos: number) => number;
  /** Ends the sequence after `token` at `pos` besides the stop tokens (generate.ts `endSequence`): an episode turn's stop strings and budget. */
  ends?: (token: number, pos: number) => boolean;
}

/**
 * Generates every job, at most `maxBatch` sequences decoding at once (the run's
 * `rollout.maxBatchSequences`; more jobs join as earlier ones finish: continuous batching,
 * generate.ts); results in job order. The logprobs recorded are at `temperature` (the sampling
 * temperature; see generate.ts), what the learner recomputes for the importance ratio.
 */
export async function generateAll(
  engine: ModelEngine,
  jobs: readonly SequenceJob[],
  opts: {
    maxNewTokens: number;
    stopTokenIds: readonly number[];
    temperature: number;
    /** Most sequences decoding at once. */
    maxBatch: number;
    /** The activity's cancellation: checked before every decode step (generate.ts). */
    signal?: AbortSignal;
    /** After every session run (prefill or decode step): the runs done (1 after the first prefill). */
    onStep?: (steps: number) => void;
    /** Decode on quantised weights (the run's `rollout.quantize`; generate.ts). */
    quantize?: DecodeQuantize | null;
  },
  onFinished: (done: number) => void,
): Promise<Generation[]> {
  const { maxNewTokens, stopTokenIds, temperature, maxBatch, signal, onStep, quantize } = opts;
  if (jobs.length === 0) return [];
  return generate(
    engine,
    jobs.map((j) => j.prompt),
    {
      maxNewTokens,
      stopTokenIds,
      temperature,
      maxBatch,
      signal,
      onStep,
      onFinished,
      quantize,
      pickToken: (logits, seq, pos) => jobs[seq]!.pick(logits, pos),
      ...(jobs.some((j) => j.ends) ? { endSequence: (seq: number, tok: number, pos: number) => jobs[seq]!.ends?.(tok, pos) ?? false } : {}),
    },
  );
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
export function finishCompletion(
  gen: Generation,
  params: SamplingParams,
  stopIds: ReadonlySet<number>,
  decode: (ids: number[]) => string,
): Completion {
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

/** The entry `name` of a committed manifest; a committed prefix without it is bad input (it is never changed). */
export function committedEntry(store: ObjectStore, prefix: string, manifest: Manifest, name: string): ManifestEntry {
  const entry = manifest.artifacts.find((e) => e.name === name);
  if (!entry) {
    throw badInput(
      `${store.uri(manifestKey(prefix))} is committed without "${name}" (it lists ${manifest.artifacts.map((e) => e.name).join(', ') || 'nothing'}); a committed step is never changed — check the shard number`,
    );
  }
  return entry;
}

// ── episodes ────────────────────────────────────────────────────────────────────────────────────

/**
 * The episodes of `items` for the run's environment, `samples` per item (sample ids 0..samples-1,
 * item-major): each starts from `env.reset(item)`, its prompt rendered with the tools by the chat
 * template of a pretrained model (fixed date), or as the char model's BOS + the user text.
 */
export function episodeStarts(
  run: ResolvedRun,
  items: readonly EnvRow[],
  samples: number,
): { starts: EpisodeStart[]; promptTokens: number[][]; chat: ChatRendering | null } {
  const env = run.environment!;
  const template = run.pretrained?.chatTemplate ?? null;
  const chat: ChatRendering | null = template ? { template, tools: env.tools, now: CHAT_TEMPLATE_DATE } : null;
  const starts: EpisodeStart[] = [];
  const promptTokens = items.map((item) => {
    const messages = env.reset(item);
    const text = renderPrompt(messages, chat);
    const ids = chat ? run.tokenizer.encode(text, { addSpecialTokens: false }) : run.encodePrompt(text);
    for (let s = 0; s < samples; s++) starts.push({ promptId: item.promptId, sampleId: s, row: item, messages, promptTokens: ids });
    return ids;
  });
  return { starts, promptTokens, chat };
}

/** What `runEpisodes` needs of the run and its engine (the rest — resume, records, progress — is the caller's). */
export function episodeOptions(
  run: ResolvedRun,
  engine: ModelEngine,
  o: { step: number; params: SamplingParams; stopIds: readonly number[]; chat: ChatRendering | null; signal: AbortSignal },
): EpisodeOptions {
  const { tokenizer } = run;
  return {
    env: run.environment!,
    seed: run.config.seed,
    step: o.step,
    params: o.params,
    stopIds: o.stopIds,
    vocabSize: tokenizer.vocabSize,
    encode: (text) => tokenizer.encode(text, { addSpecialTokens: false }),
    decode: (ids) => tokenizer.decode([...ids]),
    chat: o.chat,
    toolRetry: run.config.environment?.toolRetry,
    toolConcurrency: run.config.environment?.toolConcurrency,
    signal: o.signal,
    generate: (jobs, maxNewTokens) =>
      generateAll(
        engine,
        jobs,
        {
          maxNewTokens,
          stopTokenIds: o.stopIds,
          temperature: o.params.temperature,
          maxBatch: run.config.rollout.maxBatchSequences,
          signal: o.signal,
          quantize: run.config.rollout.quantize,
        },
        () => undefined,
      ),
  };
}
