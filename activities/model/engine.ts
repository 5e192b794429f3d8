/**
 * The model engine: builds the three graphs of a model (decode, score, trainStep and its
 * accumulation variants), creates onnxruntime sessions for them, caches the sessions, validates
 * every input before any work, and feeds parameters as ort.Tensors over the caller's own
 * Float32Arrays (no copies on the way in).
 *
 * Execution: CPU by default with `threads` intra-op threads (0: onnxruntime's default, one per
 * core). `executionProviders` is passed through to onnxruntime unchanged — e.g. `['cuda', 'cpu']`
 * on a GPU host with the CUDA build of onnxruntime-node, or `['webgpu', 'cpu']`; providers not
 * compiled into the installed binary make session creation fail with onnxruntime's message.
 *
 * Weights: `setWeights(weights, version)` installs what decode, score and reward use. With
 * `bakeWeights` (the default) their sessions hold the weights as initializers (onnxruntime
 * pre-packs them), so each weights version gets its own sessions and `setWeights` releases those of
 * the previous version; with `bakeWeights: false` (the rollout, whose policy changes every step)
 * the weights are graph inputs fed from the installed Float32Arrays, and one session serves every
 * version. Training sessions always take the parameters as inputs and live across steps.
 *
 * Session cache: one session per (graph kind, graph options, and the weights version when baked),
 * least recently used released beyond `maxSessions`. The graphs have symbolic batch and sequence
 * dimensions, so one session serves every batch shape.
 */
import ort from 'onnxruntime-node';
import { parseConfig, z } from '../common/config.js';
import { logger } from '../common/log.js';
import { parameterShapes, parseModelConfig, trainableNames, type ModelConfig } from './config.js';
import { archOf } from './arch/index.js';
import type { Graph } from './graph.js';
import { TEMPERATURE_INPUT, type WeightMap, type WeightTensor } from './graphs/common.js';
import { buildDecodeGraph, type DecodeGraphOptions } from './graphs/decode.js';
import { quantizeSpec, type DecodeQuantize } from './quantize.js';
import { buildScoreGraph } from './graphs/score.js';
import { buildRewardGraph } from './graphs/reward.js';
import {
  TRAIN_SESSION_CONFIG,
  buildTrainGraph,
  parseOptimizer,
  type OptimizerInput,
  type TrainGraph,
  type TrainGraphKind,
} from './graphs/train.js';
import type { LossBuilder } from './losses.js';
import { ResidentTensor, SessionHost, type HostedFeed, type HostedSession, type KvCacheHandle } from './session-host.js';
import { logprobTemperature, ModelInputError, type ExtraValue, type TokenBatch, type TrainBatch, type TrainState } from './engine-types.js';

const log = logger('model:engine');

/** The training graphs that only update (no forward, so no loss in their session key). */
const UPDATE_KINDS: ReadonlySet<TrainGraphKind> = new Set(['apply', 'gradNorm', 'applyPart']);

export const engineOptionsSchema = z.object({
  /** Intra-op threads of CPU sessions; 0 lets onnxruntime use one per core. */
  threads: z.number().int().min(0).default(0),
  /**
   * onnxruntime execution providers in order of preference, passed through as given: names
   * ('cpu', 'cuda', 'webgpu', ...) or provider objects ({ name: 'cuda', deviceId: 0 }).
   */
  executionProviders: z.array(z.union([z.string(), z.looseObject({ name: z.string() })])).default(['cpu']),
  /** onnxruntime graph optimisation level. */
  optimization: z.enum(['disabled', 'basic', 'extended', 'all']).default('all'),
  /**
   * onnxruntime's CPU memory arena: 'auto' keeps it for decode/score (many small, steady
   * allocations) and turns it off for training graphs, whose large activations made the arena grow
   * to about twice the memory actually live (6.6 vs 3.2 GB peak RSS at 8x512 on the 30M bench model).
   */
  memArena: z.enum(['auto', 'on', 'off']).default('auto'),
  /**
   * Decode/score sessions bake the weights in as initializers (true: onnxruntime pre-packs them,
   * fastest) or take them as inputs fed from the installed tensors without copies (false: one copy
   * of the weights in memory however many sessions, for large models).
   */
  bakeWeights: z.boolean().default(true),
  /**
   * Training graphs recompute cheap activations (SwiGLU products, norm outputs, attention
   * probabilities) in the backward pass instead of keeping them (`rematerialize` in
   * graphs/train.ts; Chen et al., "Training Deep Nets with Sublinear Memory Cost", 2016):
   * peak RSS of a trainStep at 8x512 on the 30M bench model 4.3-4.5 -> 2.6-2.9 GiB, no slowdown
   * visible in the run-to-run noise (bench/README.md). Off: every activation is kept.
   */
  recompute: z.boolean().default(true),
  /**
   * The update after accumulated micro-batches (clipping + AdamW) of a model whose trained
   * parameters exceed this many MiB runs in parts of at most this size (a larger tensor alone):
   * one run computes the global gradient norm, then each part's parameters and moments are
   * updated and that part's inputs freed before the next, so the old and the new state are both
   * held for one part at a time instead of the whole model (`gradNorm` and `applyPart` in
   * graphs/train.ts). Bitwise the same state as one update; a one-batch step (no accumulation)
   * updates in its own graph and is not split. 0: never in parts.
   */
  updatePartMiB: z.number().min(0).default(512),
  /**
   * onnxruntime's profiler: every session of this engine writes a Chrome-trace JSON of its node
   * timings to `{profilePrefix}_{date}.json` when it is released (engine.close). null (default): off.
   * `bench/profile.ts` sums such a file by operator.
   */
  profilePrefix: z.string().min(1).nullable().default(null),
  /** Most sessions kept alive at once (least recently used are released first). */
  maxSessions: z.number().int().positive().default(8),
  /**
   * Where the sessions run: 'worker', a worker thread of this engine's own (the event loop keeps
   * turning during a run, so heartbeats and cancellation flow; feeds are copied to the worker,
   * parameters once per call, see session-host.ts), or 'main', the calling thread (no copies, but
   * every run blocks the event loop until it returns). Results are bitwise the same.
   */
  thread: z.enum(['worker', 'main']).default('worker'),
});
export type EngineOptions = z.output<typeof engineOptionsSchema>;
export type EngineOptionsInput = z.input<typeof engineOptionsSchema>;

/**
 * Whether sessions with these execution providers run on an accelerator (any provider but the
 * CPU's first): there, graph inputs fed from the caller's arrays cross to the device on every run,
 * while initializers are uploaded once with the session.
 */
export function onDevice(executionProviders: EngineOptions['executionProviders']): boolean {
  const first = executionProviders[0];
  const name = typeof first === 'string' ? first : first?.name;
  return name !== undefined && name !== 'cpu';
}

export interface TrainStepOptions {
  loss: LossBuilder;
  /** Learning rate of this step. */
  lr: number;
  optimizer?: OptimizerInput;
  /**
   * Temperature T of the policy being trained: logprobs and entropy are of softmax(logits / T).
   * An RL phase passes its sampling temperature, so the importance ratio compares the
   * distribution the rollout sampled from (TRL, verl). Default 1 (SFT, greedy).
   */
  temperature?: number;
  /**
   * Checked before every session run (each micro-batch, the update): once aborted, trainStep
   * throws the signal's reason (an activity's cancellation) instead of starting the next run.
   */
  signal?: AbortSignal;
  /** Called after every session run: `done` of `of` runs (micro-batches, then the update when there are several). */
  onProgress?: (done: number, of: number) => void;
  /**
   * The caller gives `state` up: where sessions run on a worker thread, the buffers of its
   * parameters and moments that own their whole ArrayBuffer move there instead of being copied
   * (one copy of the model and its moments less at peak), and are detached afterwards — reading
   * `state` again, even after an error, is an error of the caller's. Installed decode/score
   * weights that are `state.params` are uninstalled. Default false (state is copied).
   */
  moveState?: boolean;
}

export interface TrainStepResult {
  state: TrainState;
  /** loss, grad_norm, skipped and the loss builder's metrics (means over micro-batches). */
  metrics: Record<string, number>;
}

export interface ScoreResult {
  dims: [number, number];
  /** [B·T] row-major: log p(ids[t] | ids[<t]); 0 at t = 0 and at padding. */
  logprobs: Float32Array;
  /** [B·T] entropy of the distribution predicting each token (same alignment), when requested. */
  entropy?: Float32Array;
}

class SessionCache {
  private readonly entries = new Map<string, { session: Promise<HostedSession>; ready?: HostedSession }>();
  constructor(
    private readonly max: number,
    private readonly host: SessionHost,
    private readonly options: ort.InferenceSession.SessionOptions,
  ) {}

  get(key: string, build: () => Graph, extra: ort.InferenceSession.SessionOptions = {}): Promise<HostedSession> {
    const hit = this.entries.get(key);
    if (hit && (!hit.ready || hit.ready.alive)) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit.session;
    }
    this.entries.delete(key); // a session of an exited worker: build it again
    const t0 = performance.now();
    const bytes = build().toBytes();
    const n = bytes.length;
    const entry: { session: Promise<HostedSession>; ready?: HostedSession } = {
      session: this.host.create(bytes, { ...this.options, ...extra }).then((s) => {
        log.debug({ key, bytes: n, ms: Math.round(performance.now() - t0) }, 'session created');
        entry.ready = s;
        return s;
      }),
    };
    entry.session.catch(() => {
      if (this.entries.get(key) === entry) this.entries.delete(key);
    });
    this.entries.set(key, entry);
    while (this.entries.size > this.max) this.evict(this.entries.keys().next().value!);
    return entry.session;
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  evict(key: string): void {
    const e = this.entries.get(key);
    this.entries.delete(key);
    e?.session.then((s) => s.release()).catch(() => undefined);
  }

  evictWhere(pred: (key: string) => boolean): void {
    for (const k of [...this.entries.keys()]) if (pred(k)) this.evict(k);
  }

  async releaseAll(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => e.session.then((s) => s.release()).catch(() => undefined)));
  }
}

function int64(rows: readonly (readonly number[])[]): BigInt64Array {
  const out = new BigInt64Array(rows.length * (rows[0]?.length ?? 0));
  let k = 0;
  for (const r of rows) for (const v of r) out[k++] = BigInt(v);
  return out;
}

function float32(rows: readonly (readonly number[])[]): Float32Array {
  const out = new Float32Array(rows.length * (rows[0]?.length ?? 0));
  let k = 0;
  for (const r of rows) for (const v of r) out[k++] = v;
  return out;
}

export class ModelEngine {
  readonly config: ModelConfig;
  /** The parameters that train (a LoRA model's adapters; else all): moments, accumulators and new values for these only. */
  private readonly trainable: ReadonlySet<string>;
  readonly options: EngineOptions;
  private readonly sessions: SessionCache;
  /** Where the sessions run (a worker thread unless `thread: 'main'`). */
  private readonly host: SessionHost;
  private weights: WeightMap | null = null;
  private version = '';

  /** `config`: a normalised ModelConfig or a raw HF config.json object. */
  constructor(config: ModelConfig | Record<string, unknown>, options: EngineOptionsInput = {}) {
    this.config = 'arch' in config && 'hidden' in config ? (config as ModelConfig) : parseModelConfig(config);
    this.trainable = trainableNames(this.config);
    archOf(this.config); // unknown architecture: fail now
    this.options = parseConfig(engineOptionsSchema, options, 'model engine options');
    const so: ort.InferenceSession.SessionOptions = {
      executionProviders: this.options.executionProviders as ort.InferenceSession.ExecutionProviderConfig[],
      graphOptimizationLevel: this.options.optimization,
      enableCpuMemArena: this.options.memArena !== 'off',
    };
    if (this.options.threads > 0) so.intraOpNumThreads = this.options.threads;
    if (this.options.profilePrefix !== null) Object.assign(so, { enableProfiling: true, profileFilePrefix: this.options.profilePrefix });
    this.host = new SessionHost(this.options.thread);
    this.sessions = new SessionCache(this.options.maxSessions, this.host, so);
  }

  /** The weights version decode/score currently use ('' before `setWeights`). */
  get weightsVersion(): string {
    return this.version;
  }

  /**
   * Installs the weights decode, score and reward use, under a version name (e.g. the policy
   * version). Validates every tensor first; with baked weights, the sessions of the previous
   * version are released.
   */
  setWeights(weights: WeightMap, version: string): void {
    this.checkWeights(weights, 'weights');
    if (version === this.version && weights === this.weights) return;
    const old = this.version;
    this.dropWeightFeeds();
    this.weights = weights;
    this.version = version;
    // baked sessions (keys ending `@version`) hold the old tensors: drop those of the old version
    // and of this version name when it is reused for different tensors (weight-input sessions have
    // no version in their key and stay)
    this.sessions.evictWhere((k) => k.endsWith(`@${old}`) || k.endsWith(`@${version}`));
  }

  /**
   * Throws ModelInputError naming each missing, unexpected, misshapen or non-float32 tensor; `only`
   * narrows the expected set (the trainable parameters, for AdamW moments).
   */
  checkWeights(weights: WeightMap, what: string, only?: ReadonlySet<string>): void {
    const problems: string[] = [];
    const specs = parameterShapes(this.config).filter((s) => !only || only.has(s.name));
    const expected = new Set(specs.map((s) => s.name));
    for (const s of specs) {
      const w = weights.get(s.name);
      if (!w) {
        problems.push(`missing ${s.name} [${s.shape.join(', ')}]`);
        continue;
      }
      if (!(w.data instanceof Float32Array))
        problems.push(`${s.name} must be float32 (Float32Array), got ${(w.data as object)?.constructor?.name}`);
      else if (w.shape.length !== s.shape.length || w.shape.some((d, i) => d !== s.shape[i])) {
        problems.push(`${s.name} has shape [${w.shape.join(', ')}], expected [${s.shape.join(', ')}]`);
      } else if (w.data.length !== s.shape.reduce((a, b) => a * b, 1)) {
        problems.push(
          `${s.name} has ${w.data.length} elements, its shape [${s.shape.join(', ')}] needs ${s.shape.reduce((a, b) => a * b, 1)}`,
        );
      }
    }
    for (const name of weights.keys()) if (!expected.has(name)) problems.push(`unexpected tensor ${name}`);
    if (problems.length) {
      throw new ModelInputError(
        `${what} do not fit ${this.config.modelType} (${specs.length} parameters): ${problems.slice(0, 12).join('; ')}${problems.length > 12 ? `; and ${problems.length - 12} more` : ''}`,
      );
    }
  }

  private requireWeights(): WeightMap {
    if (!this.weights) throw new ModelInputError('no weights installed: call setWeights(weights, version) before decode or score');
    return this.weights;
  }

  /** Validates a token batch; returns its dims and int64 tensors. */
  checkTokens(batch: TokenBatch, what = 'batch'): { b: number; t: number; ids: ort.Tensor; mask: ort.Tensor; maskRows: number[][] } {
    const rows = batch.ids;
    if (!Array.isArray(rows) || rows.length === 0) throw new ModelInputError(`${what}.ids must be a non-empty array of token-id rows`);
    const t = rows[0]!.length;
    if (t === 0) throw new ModelInputError(`${what}.ids rows must not be empty`);
    const V = this.config.vocabSize;
    for (let i = 0; i < rows.length; i++) {
      const r: readonly number[] = rows[i]!;
      if (r.length !== t)
        throw new ModelInputError(
          `${what}.ids row ${i} has ${r.length} tokens, row 0 has ${t}: pad rows to one length and mark padding in attentionMask`,
        );
      for (let j = 0; j < t; j++) {
        const v = r[j]!;
        if (!Number.isInteger(v) || v < 0 || v >= V) {
          throw new ModelInputError(`${what}.ids[${i}][${j}] = ${v} is not a token id of this model (vocab_size ${V})`);
        }
      }
    }
    const maskRows = (batch.attentionMask ?? rows.map((r) => r.map(() => 1))).map((r) => [...r]);
    if (maskRows.length !== rows.length)
      throw new ModelInputError(`${what}.attentionMask has ${maskRows.length} rows, ids has ${rows.length}`);
    maskRows.forEach((r, i) => {
      if (r.length !== t) throw new ModelInputError(`${what}.attentionMask row ${i} has ${r.length} entries, ids rows have ${t}`);
      if (r.some((v) => v !== 0 && v !== 1)) throw new ModelInputError(`${what}.attentionMask row ${i} must hold only 0 and 1`);
    });
    if (this.config.arch === 'gpt2') {
      const longest = Math.max(...maskRows.map((r) => r.reduce((a, b) => a + b, 0)));
      if (longest > this.config.maxPositions)
        throw new ModelInputError(`${what}: ${longest} tokens exceed n_positions ${this.config.maxPositions}`);
    }
    return {
      b: rows.length,
      t,
      ids: new ort.Tensor('int64', int64(rows), [rows.length, t]),
      mask: new ort.Tensor('int64', int64(maskRows), [rows.length, t]),
      maskRows,
    };
  }

  /** Throws for a sequence classifier, which has no LM head (`what` names the call). */
  private requireLm(what: string): void {
    if (this.config.classifier)
      throw new ModelInputError(`${what} needs an LM head, but this model is a sequence classifier (score head): use reward()`);
  }

  /**
   * The decode session of the installed weights. With `quantize` ('int8' or 'int4', `quantize.ts`)
   * its linear layers run on weight-only quantised weights, baked whatever `bakeWeights` says (the
   * quantised kernels pre-pack them): one session per weights version. Feed it `decodeFeeds(quantize)`.
   */
  async decodeSession(opts: { output?: DecodeGraphOptions['output']; quantize?: DecodeQuantize | null } = {}): Promise<HostedSession> {
    this.requireLm('decode');
    const w = this.requireWeights();
    const output = opts.output ?? 'logits';
    const quantize = quantizeSpec(opts.quantize);
    if (quantize)
      return this.sessions.get(`decode:${output}:${opts.quantize}@${this.version}`, () =>
        buildDecodeGraph(this.config, w, { output, quantize }),
      );
    const src = this.options.bakeWeights ? w : 'inputs';
    return this.sessions.get(`decode:${output}${this.versionKey()}`, () => buildDecodeGraph(this.config, src, { output }));
  }

  /** The parameter feeds of a decode session: none when it is quantised (its weights are baked), else `weightFeeds()`. */
  decodeFeeds(quantize?: DecodeQuantize | null): Promise<Record<string, HostedFeed>> {
    return quantizeSpec(quantize) ? Promise.resolve({}) : this.weightFeeds();
  }

  /** The session-cache suffix of weight-dependent sessions (none when weights are inputs). */
  private versionKey(): string {
    return this.options.bakeWeights ? `@${this.version}` : '';
  }

  /**
   * Feeds for the parameters of decode/score sessions: empty when the weights are baked in, else
   * one resident tensor per parameter, made from the installed Float32Arrays once per `setWeights`
   * (copied to the session worker once, then fed by reference to every run).
   */
  weightFeeds(): Promise<Record<string, HostedFeed>> {
    const w = this.requireWeights();
    if (this.options.bakeWeights) return Promise.resolve({});
    const cached = this.weightTensors;
    if (cached?.source === w && Object.values(cached.ready ?? {}).every((t) => t.generation === this.host.generation))
      return cached.tensors;
    this.dropWeightFeeds();
    const entry: WeightFeeds = { source: w, tensors: this.uploadWeights(w) };
    entry.tensors.then(
      (t) => (entry.ready = t),
      () => {
        if (this.weightTensors === entry) this.weightTensors = null;
      },
    );
    this.weightTensors = entry;
    return entry.tensors;
  }

  private async uploadWeights(w: WeightMap): Promise<Record<string, ResidentTensor>> {
    const tensors: Record<string, ResidentTensor> = {};
    for (const s of parameterShapes(this.config)) tensors[s.name] = await this.host.put(tensorOf(w.get(s.name)!));
    return tensors;
  }

  private weightTensors: WeightFeeds | null = null;

  /** Frozen parameters made resident by trainStep, by name, with the buffer they were copied from. */
  private readonly frozen = new Map<string, { data: Float32Array; tensor: ResidentTensor }>();

  /** Copies of frozen parameters made so far (diagnostics: a LoRA run copies its base once, not every step). */
  get frozenUploads(): number {
    return this.frozenCopies;
  }
  private frozenCopies = 0;

  /** The resident copy of frozen parameter `name`: made once per buffer (a new buffer replaces it). */
  private async frozenFeed(name: string, w: WeightTensor): Promise<ResidentTensor> {
    const hit = this.frozen.get(name);
    if (hit?.data === w.data) return hit.tensor;
    if (hit) await this.host.drop([hit.tensor]);
    this.frozenCopies++;
    const tensor = await this.host.put(tensorOf(w));
    this.frozen.set(name, { data: w.data, tensor });
    return tensor;
  }

  /** Frees the resident weight feeds of the installed weights (they are about to change). */
  private dropWeightFeeds(): void {
    const old = this.weightTensors;
    this.weightTensors = null;
    old?.tensors.then((t) => this.host.drop(Object.values(t))).catch(() => undefined);
  }

  /**
   * A KV cache for `generate` where the sessions run: 2 x layers float32 buffers
   * [batch, kvHeads, capacity, headDim] (keys and values of each layer, in that order), with room
   * for `rows` (default `batch`) rows when more are admitted later (continuous batching).
   */
  decodeCache(batch: number, capacity: number, rows = batch): Promise<KvCacheHandle> {
    const c = this.config;
    return this.host.kvCache({ tensors: 2 * c.layers, batch, heads: c.kvHeads, capacity, headDim: c.headDim, rows });
  }

  /**
   * Per-token logprobs (and entropy) of the given sequences under the installed weights, of
   * softmax(logits / temperature) (default temperature 1; see `TrainStepOptions.temperature`).
   */
  async score(batch: TokenBatch, opts: { entropy?: boolean; temperature?: number; signal?: AbortSignal } = {}): Promise<ScoreResult> {
    this.requireLm('score');
    const w = this.requireWeights();
    const { b, t, ids, mask } = this.checkTokens(batch);
    if (t < 2) throw new ModelInputError('score needs sequences of at least 2 tokens (the first token has no logprob)');
    const entropy = opts.entropy ?? true;
    const src = this.options.bakeWeights ? w : 'inputs';
    const s = await this.sessions.get(`score:${entropy}${this.versionKey()}`, () => buildScoreGraph(this.config, src, { entropy }));
    opts.signal?.throwIfAborted();
    const r = await s.run({
      ...(await this.weightFeeds()),
      input_ids: ids,
      attention_mask: mask,
      [TEMPERATURE_INPUT]: temperatureTensor(opts.temperature),
    });
    return { dims: [b, t], logprobs: r.logprobs!.data as Float32Array, entropy: entropy ? (r.entropy!.data as Float32Array) : undefined };
  }

  /**
   * Rewards of whole sequences under the installed weights of a sequence classifier
   * (`config.classifier`): float32 [B], the score head at each row's last real token (rightmost
   * attention-mask 1; right or left padding). See `graphs/reward.ts`.
   */
  async reward(batch: TokenBatch): Promise<Float32Array> {
    if (!this.config.classifier)
      throw new ModelInputError(
        `reward() needs a sequence classifier (score head score.weight); this ${this.config.modelType} model has an LM head`,
      );
    const w = this.requireWeights();
    const { ids, mask, maskRows } = this.checkTokens(batch);
    const empty = maskRows.findIndex((r) => !r.includes(1));
    if (empty >= 0)
      throw new ModelInputError(`batch.attentionMask row ${empty} has no real token: a sequence to reward needs at least one`);
    const src = this.options.bakeWeights ? w : 'inputs';
    const s = await this.sessions.get(`reward${this.versionKey()}`, () => buildRewardGraph(this.config, src));
    const r = await s.run({ ...(await this.weightFeeds()), input_ids: ids, attention_mask: mask });
    return r.rewards!.data as Float32Array;
  }

  /** A training graph session (parameters are inputs; cached across steps). */
  async trainSession(
    kind: TrainGraphKind,
    loss: LossBuilder,
    optimizer: OptimizerInput = {},
    part?: readonly string[],
  ): Promise<{ session: HostedSession; graph: TrainGraphInfo }> {
    const opt = parseOptimizer(optimizer);
    const what = kind === 'applyPart' ? `${part![0]}..${part!.at(-1)}#${part!.length}` : UPDATE_KINDS.has(kind) ? '' : loss.key;
    const key = `${kind}:${what}:${JSON.stringify(opt)}`;
    let info = this.trainInfo.get(key);
    const session = await this.sessions.get(
      key,
      () => {
        const tg = buildTrainGraph(this.config, kind, loss, opt, { recompute: this.options.recompute, part });
        info = { extraInputs: tg.extraInputs, metrics: tg.metrics, temperature: tg.temperature };
        this.trainInfo.set(key, info);
        return tg.graph;
      },
      { enableCpuMemArena: this.options.memArena === 'on', extra: TRAIN_SESSION_CONFIG },
    );
    return { session, graph: info ?? this.trainInfo.get(key)! };
  }

  private readonly trainInfo = new Map<string, TrainGraphInfo>();

  /**
   * The trained parameters in the parts the update runs in (`updatePartMiB`): consecutive in
   * parameter order, each at most the budget (a larger tensor alone). One part: not split.
   */
  updateParts(): string[][] {
    const budget = this.options.updatePartMiB * 2 ** 20;
    const trained = parameterShapes(this.config).filter((s) => this.trainable.has(s.name));
    if (budget === 0) return [trained.map((s) => s.name)];
    const parts: string[][] = [];
    let bytes = Infinity;
    for (const s of trained) {
      const b = 4 * s.shape.reduce((a, d) => a * d, 1);
      if (bytes + b > budget) {
        parts.push([]);
        bytes = 0;
      }
      parts.at(-1)!.push(s.name);
      bytes += b;
    }
    return parts;
  }

  /**
   * One optimizer step: forward, loss, backward, clipping and AdamW. Several micro-batches
   * accumulate their gradients (the update uses their mean) before one update. The parameters and
   * moments go to the session worker once per call (moved with `moveState`), the accumulated
   * gradients stay there between micro-batches, and the new state comes back without a copy.
   */
  async trainStep(state: TrainState, batches: TrainBatch | TrainBatch[], opts: TrainStepOptions): Promise<TrainStepResult> {
    const list = Array.isArray(batches) ? batches : [batches];
    if (list.length === 0) throw new ModelInputError('trainStep needs at least one micro-batch');
    if (!Number.isFinite(opts.lr) || opts.lr < 0) throw new ModelInputError(`lr must be a finite number >= 0, got ${opts.lr}`);
    this.checkState(state);
    const opt = parseOptimizer(opts.optimizer ?? {});
    const specs = parameterShapes(this.config);
    // what trains (a LoRA model's adapters; else every parameter) has moments, accumulators and new values; the rest is fed as is
    const { trainable } = this;
    const trained = specs.filter((s) => trainable.has(s.name));

    const kind: TrainGraphKind = list.length === 1 ? 'trainStep' : 'grad';
    const { session, graph } = await this.trainSession(kind, opts.loss, opt);
    const temperature = temperatureTensor(opts.temperature);
    const feedsOf = list.map((b, i) => {
      opts.loss.validate?.(b, `batch ${i}`); // the loss's own layout rules (e.g. preference pairs)
      const feeds: Record<string, HostedFeed> = this.batchFeeds(b, graph, `batch ${i}`); // validate all first
      if (graph.temperature) feeds[TEMPERATURE_INPUT] = temperature;
      return feeds;
    });
    // after accumulation: one update run, or a norm run and the update in parts (updatePartMiB)
    const parts = kind === 'grad' ? this.updateParts() : [];
    const apply = parts.length === 1 ? await this.trainSession('apply', opts.loss, opt) : null;
    const norm = parts.length > 1 ? await this.trainSession('gradNorm', opts.loss, opt) : null;
    const { signal, onProgress } = opts;
    signal?.throwIfAborted();

    const move = opts.moveState === true;
    if (move && this.weights === state.params) {
      // the installed weights are about to move away: nothing may build a session from them later
      this.dropWeightFeeds();
      this.sessions.evictWhere((k) => k.endsWith(`@${this.version}`));
      this.weights = null;
      this.version = '';
    }
    const resident: ResidentTensor[] = [];
    const upload = async (prefix: string, m: Map<string, WeightTensor>, into: Record<string, HostedFeed>, which = specs) => {
      for (const s of which) {
        if (prefix === '' && !trainable.has(s.name)) {
          // frozen parameters (a LoRA model's base) stay resident between steps: one copy where the sessions run
          into[s.name] = await this.frozenFeed(s.name, m.get(s.name)!);
          continue;
        }
        const t = await this.host.put(tensorOf(m.get(s.name)!), { move });
        resident.push(t);
        into[`${prefix}${s.name}`] = t;
      }
    };
    const paramFeeds: Record<string, HostedFeed> = {};
    const optFeeds: Record<string, HostedFeed> = {
      step: new ort.Tensor('int64', BigInt64Array.of(BigInt(state.step)), []),
      lr: new ort.Tensor('float32', Float32Array.of(opts.lr), []),
    };
    const sums: Record<string, number> = {};
    const addMetrics = (r: Record<string, ort.Tensor>) => {
      const add = (k: string, v: number) => (sums[k] = (sums[k] ?? 0) + v);
      add('loss', Number(r.loss!.data[0]));
      for (const m of graph.metrics) add(m, Number(r[`metric.${m}`]!.data[0]));
    };
    const runs = list.length + (apply ? 1 : 0) + (norm ? 1 + parts.length : 0);
    let done = 0;
    const ran = () => onProgress?.(++done, runs);

    let out: Record<string, ort.Tensor>;
    try {
      await upload('', state.params, paramFeeds);
      await upload('adam_m.', state.adamM, optFeeds, trained);
      await upload('adam_v.', state.adamV, optFeeds, trained);
      if (kind !== 'grad') {
        signal?.throwIfAborted();
        out = (await session.exec({ ...paramFeeds, ...optFeeds, ...feedsOf[0]! })).outputs;
        addMetrics(out);
        ran();
      } else {
        let acc: Record<string, ResidentTensor> = {};
        for (const s of trained) resident.push((acc[`acc.${s.name}`] = await this.host.zeros(s.shape)));
        const keep = trained.map((s) => `new.acc.${s.name}`);
        for (const f of feedsOf) {
          signal?.throwIfAborted();
          const r = await session.exec({ ...paramFeeds, ...acc, ...f }, { keep });
          addMetrics(r.outputs);
          await this.host.drop(Object.values(acc));
          acc = {};
          for (const s of trained) resident.push((acc[`acc.${s.name}`] = r.kept[`new.acc.${s.name}`]!));
          ran();
        }
        signal?.throwIfAborted();
        const gradScale = new ort.Tensor('float32', Float32Array.of(1 / list.length), []);
        if (apply) {
          out = (await apply.session.exec({ ...paramFeeds, ...optFeeds, ...acc, grad_scale: gradScale })).outputs;
          ran();
        } else {
          const n = (await norm!.session.exec({ ...acc, grad_scale: gradScale })).outputs;
          ran();
          out = { grad_norm: n.grad_norm!, skipped: n.skipped! };
          // a skipped update (non-finite norm) runs no part: the moved state is taken back whole below
          if (!Number(n.skipped!.data[0])) {
            for (const names of parts) {
              signal?.throwIfAborted();
              const feeds: Record<string, HostedFeed> = {
                grad_scale: gradScale,
                grad_norm: n.grad_norm!,
                step: optFeeds.step!,
                lr: optFeeds.lr!,
              };
              for (const name of names)
                for (const k of [name, `adam_m.${name}`, `adam_v.${name}`, `acc.${name}`])
                  feeds[k] = paramFeeds[k] ?? optFeeds[k] ?? acc[k]!;
              const { session: part } = await this.trainSession('applyPart', opts.loss, opt, names);
              Object.assign(out, (await part.exec(feeds)).outputs);
              // this part's old parameters, moments and gradients are done with: freed before the next part runs
              await this.host.drop(Object.values(feeds).filter((f): f is ResidentTensor => f instanceof ResidentTensor));
              ran();
            }
          }
        }
      }
      const metrics: Record<string, number> = {};
      for (const [k, v] of Object.entries(sums)) metrics[k] = v / list.length;
      metrics.grad_norm = Number(out.grad_norm!.data[0]);
      metrics.skipped = Number(out.skipped!.data[0]);
      if (metrics.skipped) {
        // a non-finite gradient: the update is skipped, parameters, moments and step stay as they were
        log.warn({ step: state.step, grad_norm: metrics.grad_norm }, 'non-finite gradient: update skipped');
        return { state: move ? await this.takeBack(state, paramFeeds, optFeeds) : state, metrics };
      }
      const take = (prefix: string) =>
        new Map(trained.map((s) => [s.name, { shape: s.shape.slice(), data: out[`${prefix}${s.name}`]!.data as Float32Array }]));
      const params = new Map(specs.map((s) => [s.name, trainable.has(s.name) ? take('new.').get(s.name)! : state.params.get(s.name)!]));
      return {
        state: { params, adamM: take('new.adam_m.'), adamV: take('new.adam_v.'), step: Number(out['new.step']!.data[0]) },
        metrics,
      };
    } finally {
      await this.host.drop(resident).catch(() => undefined);
    }
  }

  /** A moved state, back from the session worker unchanged (an update skipped by a non-finite gradient). */
  private async takeBack(state: TrainState, params: Record<string, HostedFeed>, opt: Record<string, HostedFeed>): Promise<TrainState> {
    const { trainable } = this;
    const specs = parameterShapes(this.config).filter((s) => trainable.has(s.name)); // only these moved
    const back = async (feeds: Record<string, HostedFeed>, prefix: string) => {
      const m = new Map<string, WeightTensor>();
      for (const s of specs) {
        const t = await this.host.take(feeds[`${prefix}${s.name}`] as ResidentTensor);
        m.set(s.name, { shape: s.shape.slice(), data: t.data as Float32Array });
      }
      return m;
    };
    const moved = await back(params, '');
    const all = new Map([...state.params].map(([n, w]) => [n, moved.get(n) ?? w]));
    return { params: all, adamM: await back(opt, 'adam_m.'), adamV: await back(opt, 'adam_v.'), step: state.step };
  }

  private checkState(state: TrainState): void {
    const { trainable } = this;
    this.checkWeights(state.params, 'train state params');
    this.checkWeights(state.adamM, 'train state adamM', trainable);
    this.checkWeights(state.adamV, 'train state adamV', trainable);
    if (!Number.isSafeInteger(state.step) || state.step < 0)
      throw new ModelInputError(`train state step must be a non-negative integer, got ${state.step}`);
  }

  private batchFeeds(batch: TrainBatch, graph: TrainGraphInfo, what: string): Record<string, ort.Tensor> {
    const { b, t, ids, mask, maskRows } = this.checkTokens(batch, what);
    if (t < 2) throw new ModelInputError(`${what}: sequences need at least 2 tokens`);
    const lm: readonly (readonly number[])[] = batch.lossMask;
    if (!Array.isArray(lm) || lm.length !== b || lm.some((r) => r.length !== t)) {
      throw new ModelInputError(`${what}.lossMask must be ${b} rows of ${t} numbers (aligned with ids)`);
    }
    for (let i = 0; i < b; i++) {
      for (let j = 0; j < t; j++) {
        const v = lm[i]![j]!;
        if (!Number.isFinite(v)) throw new ModelInputError(`${what}.lossMask[${i}][${j}] is ${v}`);
        if (v === 0) continue;
        if (j === 0) throw new ModelInputError(`${what}.lossMask[${i}][0] must be 0: the first token has no prediction`);
        if (maskRows[i]![j] === 0) throw new ModelInputError(`${what}.lossMask[${i}][${j}] marks a padding position`);
        if (maskRows[i]![j - 1] === 0)
          throw new ModelInputError(`${what}.lossMask[${i}][${j}]: the token before is padding, so nothing predicts this one`);
      }
    }
    const feeds: Record<string, ort.Tensor> = {
      input_ids: ids,
      attention_mask: mask,
      loss_mask: new ort.Tensor('float32', float32(lm), [b, t]),
    };
    const extra = batch.extra ?? {};
    const declared = new Set(graph.extraInputs.map((e) => e.name));
    for (const name of Object.keys(extra)) {
      if (!declared.has(name))
        throw new ModelInputError(`${what}.extra.${name} is not an input of this loss (inputs: ${[...declared].join(', ') || 'none'})`);
    }
    for (const e of graph.extraInputs) {
      const v = extra[e.name];
      if (v === undefined) throw new ModelInputError(`${what}.extra.${e.name} is missing: the loss declares it as an input`);
      feeds[e.name] = extraTensor(v, e.dtype, `${what}.extra.${e.name}`, b, t);
    }
    return feeds;
  }

  /** Keys of the cached sessions, least recently used first (for inspection and tests). */
  cachedSessions(): string[] {
    return this.sessions.keys();
  }

  /** Releases every cached session and stops the session worker (a later call starts a new one). */
  async close(): Promise<void> {
    this.dropWeightFeeds();
    this.frozen.clear(); // freed with the session worker
    await this.sessions.releaseAll();
    await this.host.close();
  }
}

/** The resident weight feeds of one installed WeightMap (`weightFeeds`). */
interface WeightFeeds {
  source: WeightMap;
  tensors: Promise<Record<string, ResidentTensor>>;
  ready?: Record<string, ResidentTensor>;
}

interface TrainGraphInfo {
  extraInputs: TrainGraph['extraInputs'];
  metrics: string[];
  temperature: boolean;
}

/** The `temperature` feed for a sampling temperature (default 1; 0, greedy, is scored at 1). */
function temperatureTensor(t = 1): ort.Tensor {
  return new ort.Tensor('float32', Float32Array.of(logprobTemperature(t)), []);
}

function tensorOf(w: WeightTensor): ort.Tensor {
  return new ort.Tensor('float32', w.data, w.shape);
}

function extraTensor(v: ExtraValue, dtype: string, what: string, b: number, t: number): ort.Tensor {
  if (typeof v === 'object' && !Array.isArray(v) && 'dims' in v) {
    const want = dtype === 'float32' ? Float32Array : dtype === 'int64' ? BigInt64Array : dtype === 'bool' ? Uint8Array : null;
    if (!want || !(v.data instanceof want)) throw new ModelInputError(`${what} must be ${dtype} data`);
    return new ort.Tensor(dtype as 'float32', v.data as Float32Array, v.dims);
  }
  if (dtype !== 'float32') throw new ModelInputError(`${what}: give ${dtype} inputs as { data, dims }`);
  if (typeof v === 'number') return new ort.Tensor('float32', Float32Array.of(v), []);
  const arr = v as readonly (number | readonly number[])[];
  if (arr.length !== b) throw new ModelInputError(`${what} has ${arr.length} rows, the batch has ${b}`);
  if (typeof arr[0] === 'number') return new ort.Tensor('float32', Float32Array.from(arr as number[]), [b]);
  const rows = arr as readonly (readonly number[])[];
  if (rows.some((r) => r.length !== t)) throw new ModelInputError(`${what} rows must have ${t} entries (aligned with ids)`);
  return new ort.Tensor('float32', float32(rows), [b, t]);
}

/** A fresh training state: the given parameters (validated by trainStep), zero moments for those that train, step 0. */
export function initTrainState(cfg: ModelConfig, params: Map<string, WeightTensor>): TrainState {
  const trainable = trainableNames(cfg);
  const zeros = () =>
    new Map(
      parameterShapes(cfg)
        .filter((s) => trainable.has(s.name))
        .map((s) => [s.name, { shape: s.shape.slice(), data: new Float32Array(s.shape.reduce((a, b) => a * b, 1)) }]),
    );
  return { params, adamM: zeros(), adamV: zeros(), step: 0 };
}
