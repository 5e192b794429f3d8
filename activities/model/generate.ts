/**
 * `generate()`: batched incremental generation through the decode graph. Prompts are left-padded
 * to one length and prefilled in one run; then every live sequence advances one token per run,
 * its keys/values appended to the cache. Sequences finish independently (a stop token or the
 * token budget); finished rows are dropped from the batch and from the cache, so later steps only
 * compute for live sequences. The KV cache lives where the sessions run (the engine's session
 * worker, `engine.decodeCache`) in one preallocated buffer per layer tensor: each step writes the
 * graph's `fresh` keys/values into it and feeds the whole buffer as `past`, its unused slots masked
 * (no per-step cache copies, no per-step allocations; per step only the new tokens, the attention
 * mask and the logits cross threads). `signal` is checked before every step, `onStep` called after.
 *
 * Token choice is pluggable: `pickToken(logits, seq, pos)` gets the raw next-token logits of one
 * sequence (samplers live in `activities/rollout/sampling.ts`). The logprob recorded for each
 * chosen token is `log softmax(logits / T)[token]` over the model's whole vocabulary, T the
 * `temperature` option: the distribution the sampler drew from before any truncation, and the
 * quantity the score and train graphs compute for the same tokens when fed the same temperature.
 * Truncation (top-k, top-p, min-p) is not part of it, as in TRL and verl: the learner's graphs
 * cannot reproduce a per-token nucleus, and the importance ratio of an unchanged policy stays 1.
 */
import ort from 'onnxruntime-node';
import type { ModelEngine } from './engine.js';
import { logprobTemperature, ModelInputError } from './engine-types.js';
import type { DecodeQuantize } from './quantize.js';
import type { KvCacheHandle } from './session-host.js';

export interface GenerateOptions {
  /** Most tokens to generate per sequence (>= 1). */
  maxNewTokens: number;
  /**
   * Chooses the next token of sequence `seq` (index into `prompts`) at completion position `pos`
   * (0 for the first generated token) from its logits (float32 [vocab]; a view that is only valid
   * during the call — copy it to keep it).
   */
  pickToken: (logits: Float32Array, seq: number, pos: number) => number;
  /** Tokens that end a sequence (included in its output). Default: the config's eos ids. */
  stopTokenIds?: readonly number[];
  /** Token id placed in left padding (masked, so any valid id works). Default pad id or 0. */
  padTokenId?: number;
  /**
   * Sampling temperature T the recorded logprobs refer to: log softmax(logits / T). Default 1; 0
   * (greedy decoding: no sampling distribution) records the model's own logprob at T = 1.
   */
  temperature?: number;
  /**
   * Ends sequence `seq` after the token just picked at position `pos` (finish reason "stop", the
   * token kept), besides the stop tokens: e.g. when its text now ends with a stop string, or its
   * own token budget is reached. Default: never.
   */
  endSequence?: (seq: number, token: number, pos: number) => boolean;
  /** Checked before every decode step: once aborted, generate throws the signal's reason. */
  signal?: AbortSignal;
  /** Called after every session run (a prefill or a decode step) with the runs done (1 after the first prefill). */
  onStep?: (steps: number) => void;
  /** Called when sequences finish, with how many have finished so far. */
  onFinished?: (finished: number) => void;
  /**
   * Most sequences decoding at once (default: all the prompts). With more prompts than this, the
   * rest wait in a queue and join as finished sequences free their slots (continuous batching, the
   * scheduling of vLLM and Orca): a wave of queued prompts is prefilled and joins the running batch
   * once a quarter of its slots are free (or the rest of the queue fits), so short completions do
   * not hold the next prompts back while the longest one finishes. What a sequence generates does
   * not depend on when it joined or beside whom (its tokens; its logprobs within float rounding).
   */
  maxBatch?: number;
  /**
   * Decode on weight-only quantised linear layers ('int8' or 'int4', `quantize.ts`): faster, and
   * the recorded logprobs are the quantised policy's (the learner measures the mismatch). Default
   * null: float32.
   */
  quantize?: DecodeQuantize | null;
}

export interface Generation {
  /** Generated tokens (the stop token included when one ended the sequence). */
  tokens: number[];
  /** log softmax(logits / T)[token] for each generated token (T: `GenerateOptions.temperature`). */
  logprobs: number[];
  finishReason: 'stop' | 'length';
}

/** log softmax(row / T)[token], in float64. */
function tokenLogprob(row: Float32Array, token: number, T: number): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp((row[i]! - max) / T);
  return (row[token]! - max) / T - Math.log(s);
}

/** Generates continuations of `prompts` with the engine's installed weights. */
export async function generate(engine: ModelEngine, prompts: readonly (readonly number[])[], opts: GenerateOptions): Promise<Generation[]> {
  const cfg = engine.config;
  const maxNew = opts.maxNewTokens;
  if (!Number.isInteger(maxNew) || maxNew < 1) {
    throw new ModelInputError(`maxNewTokens must be a positive integer, got ${maxNew}`);
  }
  if (prompts.length === 0) throw new ModelInputError('generate needs at least one prompt');
  if (opts.maxBatch !== undefined && !(Number.isInteger(opts.maxBatch) && opts.maxBatch >= 1)) {
    throw new ModelInputError(`maxBatch must be a positive integer, got ${opts.maxBatch}`);
  }
  const T = logprobTemperature(opts.temperature ?? 1);
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new ModelInputError(`prompt ${i} is empty: every prompt needs at least one token (e.g. BOS)`);
  });
  const stop = new Set(opts.stopTokenIds ?? cfg.eosTokenIds);
  const pad = opts.padTokenId ?? cfg.padTokenId ?? 0;
  const plen = Math.max(...prompts.map((p) => p.length));
  if (cfg.arch === 'gpt2' && plen + maxNew > cfg.maxPositions) {
    throw new ModelInputError(`prompt (${plen} tokens) + maxNewTokens (${maxNew}) exceeds n_positions ${cfg.maxPositions}`);
  }
  const width = Math.min(prompts.length, opts.maxBatch ?? prompts.length);
  const queued = width < prompts.length;
  // Positions ever held: a batch that starts together needs its prompt and all but the last token.
  // With admissions, a row joins at position <= plen + maxNew - 2 (after the leading slots no row
  // uses are dropped) and the rows live then need at most maxNew - 2 more writes.
  const capacity = queued ? plen + 2 * maxNew - 2 : plen + maxNew - 1;
  // a wave of queued prompts joins once this many slots are free (or the rest of the queue fits)
  const waveAt = Math.max(1, Math.ceil(width / 4));
  opts.signal?.throwIfAborted();
  const session = await engine.decodeSession({ quantize: opts.quantize });
  const weightFeeds = await engine.decodeFeeds(opts.quantize);
  const V = cfg.vocabSize;
  const past: string[] = [];
  const fresh: string[] = [];
  for (let l = 0; l < cfg.layers; l++) {
    past.push(`past.${l}.key`, `past.${l}.value`);
    fresh.push(`fresh.${l}.key`, `fresh.${l}.value`);
  }

  const results: Generation[] = prompts.map(() => ({ tokens: [], logprobs: [], finishReason: 'length' }));
  let live: number[] = []; // the prompt index of each batch row
  // per row, its first real cache position: a row's real tokens fill [first, length), the slots
  // before (left padding, or positions other rows used) are masked
  let first: number[] = [];
  let next: number[] = []; // per row, the token to feed next
  let length = 0; // positions filled in the cache
  let queue = 0; // prompts[queue..] have not joined yet
  let runs = 0;
  let finished = 0;

  /** Records each row's pick from its logits; returns the rows that go on. */
  const pickRows = (logits: Float32Array, seqs: readonly number[]): number[] => {
    const keep: number[] = [];
    seqs.forEach((seq, r) => {
      const res = results[seq]!;
      const pos = res.tokens.length;
      const row = logits.subarray(r * V, (r + 1) * V);
      const tok = opts.pickToken(row, seq, pos);
      if (!Number.isInteger(tok) || tok < 0 || tok >= V) {
        throw new ModelInputError(`pickToken returned ${tok} for sequence ${seq} at position ${pos}: not a token id (vocab_size ${V})`);
      }
      res.tokens.push(tok);
      res.logprobs.push(tokenLogprob(row, tok, T));
      if (stop.has(tok) || opts.endSequence?.(seq, tok, pos)) res.finishReason = 'stop';
      else if (pos + 1 < maxNew) keep.push(r);
    });
    finished += seqs.length - keep.length;
    if (keep.length < seqs.length) opts.onFinished?.(finished);
    return keep;
  };
  const run = async (feeds: Record<string, ort.Tensor>, cache: KvCacheHandle, at: number, chunk: number, write: boolean) => {
    opts.signal?.throwIfAborted();
    const { outputs } = await session.exec(
      { ...weightFeeds, ...feeds },
      { cache: { handle: cache, inputs: past, outputs: fresh, length: at, chunk, write } },
    );
    runs += 1;
    opts.onStep?.(runs);
    return outputs.logits!.data as Float32Array;
  };

  /** Prefills the next `n` queued prompts and adds the ones that go on to the batch. */
  const admit = async (n: number) => {
    const wave = prompts.slice(queue, queue + n);
    const seqs = wave.map((_, i) => queue + i);
    queue += n;
    const wl = Math.max(...wave.map((p) => p.length));
    const ids = wave.map((p) => [...Array<number>(wl - p.length).fill(pad), ...p]);
    const mask = wave.map((p) => [...Array<number>(wl - p.length).fill(0), ...Array<number>(p.length).fill(1)]);
    const checked = engine.checkTokens({ ids, attentionMask: mask }, 'prompts');
    // the first wave (or one into an emptied batch) prefills straight into the cache, its rows reset to the wave's
    const into = live.length === 0 ? cache : await engine.decodeCache(n, wl);
    if (into === cache) await cache.reset(n);
    try {
      const keep = pickRows(await run({ input_ids: checked.ids, attention_mask: checked.mask }, into, 0, wl, true), seqs);
      if (into === cache) {
        length = wl;
        if (keep.length < n) await cache.compact(keep);
        live = keep.map((r) => seqs[r]!);
        first = keep.map((r) => wl - wave[r]!.length);
        next = keep.map((r) => results[seqs[r]!]!.tokens.at(-1)!);
        return;
      }
      if (keep.length === 0) return;
      if (keep.length < n) await into.compact(keep);
      // drop the leading positions no row uses, then make room for the wave's prompt length
      const drop = Math.min(...first);
      const by = drop - Math.max(0, wl - (length - drop));
      if (by !== 0) {
        await cache.shift(by, length);
        first = first.map((f) => f - by);
        length -= by;
      }
      await cache.admit(into, length);
      for (const r of keep) {
        live.push(seqs[r]!);
        first.push(length - wave[r]!.length);
        next.push(results[seqs[r]!]!.tokens.at(-1)!);
      }
    } finally {
      if (into !== cache) await into.release().catch(() => undefined);
    }
  };

  const cache = await engine.decodeCache(width, capacity);
  try {
    for (;;) {
      const free = width - live.length;
      const waiting = prompts.length - queue;
      if (waiting > 0 && (live.length === 0 || free >= Math.min(waveAt, waiting))) await admit(Math.min(free, waiting));
      if (live.length === 0) {
        if (queue === prompts.length) break;
        continue;
      }
      // attention mask: each row's real cache positions, then the new token (capacity); the rest 0
      const rows = live.length;
      const span = capacity + 1;
      const am = new BigInt64Array(rows * span);
      first.forEach((f, r) => {
        am.fill(1n, r * span + f, r * span + length);
        am[r * span + capacity] = 1n;
      });
      // the new tokens' keys/values are kept when a row will need them (not after anyone's last token)
      const write = live.some((seq) => results[seq]!.tokens.length + 1 < maxNew);
      if (write && length >= capacity) throw new Error(`generate: KV cache full at ${length} positions (a bug: capacity ${capacity})`);
      const feeds = {
        input_ids: new ort.Tensor('int64', BigInt64Array.from(next.map(BigInt)), [rows, 1]),
        attention_mask: new ort.Tensor('int64', am, [rows, span]),
      };
      const logits = await run(feeds, cache, length, 1, write);
      if (write) length += 1;
      const keep = pickRows(logits, live);
      if (keep.length !== rows) await cache.compact(keep);
      live = keep.map((r) => live[r]!);
      first = keep.map((r) => first[r]!);
      next = live.map((seq) => results[seq]!.tokens.at(-1)!);
    }
  } finally {
    await cache.release().catch(() => undefined);
  }
  return results;
}
