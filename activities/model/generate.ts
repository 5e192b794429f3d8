/**
 * `generate()`: batched incremental generation through the decode graph. Prompts are left-padded
 * to one length and prefilled in one run; then every live sequence advances one token per run,
 * its keys/values appended to the cache. Sequences finish independently (a stop token or the
 * token budget); finished rows are dropped from the batch and from the cache, so later steps only
 * compute for live sequences. The KV cache lives in one preallocated buffer per layer tensor: each
 * step writes the graph's `fresh` keys/values into it and feeds the whole buffer as `past`, its
 * unused slots masked (no per-step cache copies, no per-step allocations).
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

/**
 * One layer tensor of the KV cache: a preallocated [batch, kvHeads, capacity, headDim] buffer whose
 * first `length` positions of every (row, head) are filled; the rest is masked out.
 */
class CacheBuffer {
  private readonly data: Float32Array;
  constructor(
    private batch: number,
    private readonly heads: number,
    private readonly capacity: number,
    private readonly headDim: number,
  ) {
    this.data = new Float32Array(batch * heads * capacity * headDim);
  }

  /** The whole buffer as a [batch, heads, capacity, headDim] tensor (a view, no copy). */
  view(): ort.Tensor {
    const { batch, heads, capacity, headDim } = this;
    return new ort.Tensor('float32', this.data.subarray(0, batch * heads * capacity * headDim), [batch, heads, capacity, headDim]);
  }

  /** Writes a [batch, heads, n, headDim] chunk at positions length..length+n-1. */
  write(length: number, chunk: Float32Array, n: number): void {
    const { heads, capacity, headDim } = this;
    const span = n * headDim;
    for (let bh = 0; bh < this.batch * heads; bh++) {
      this.data.set(chunk.subarray(bh * span, (bh + 1) * span), (bh * capacity + length) * headDim);
    }
  }

  /** Keeps batch rows `keep` (ascending), in place. */
  compact(keep: number[]): void {
    const block = this.heads * this.capacity * this.headDim;
    keep.forEach((r, i) => {
      if (r !== i) this.data.copyWithin(i * block, r * block, (r + 1) * block);
    });
    this.batch = keep.length;
  }
}

/** Generates continuations of `prompts` with the engine's installed weights. */
export async function generate(engine: ModelEngine, prompts: readonly (readonly number[])[], opts: GenerateOptions): Promise<Generation[]> {
  const cfg = engine.config;
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 1) {
    throw new ModelInputError(`maxNewTokens must be a positive integer, got ${opts.maxNewTokens}`);
  }
  if (prompts.length === 0) throw new ModelInputError('generate needs at least one prompt');
  const T = logprobTemperature(opts.temperature ?? 1);
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new ModelInputError(`prompt ${i} is empty: every prompt needs at least one token (e.g. BOS)`);
  });
  const stop = new Set(opts.stopTokenIds ?? cfg.eosTokenIds);
  const pad = opts.padTokenId ?? cfg.padTokenId ?? 0;
  const plen = Math.max(...prompts.map((p) => p.length));
  if (cfg.arch === 'gpt2' && Math.max(...prompts.map((p) => p.length)) + opts.maxNewTokens > cfg.maxPositions) {
    throw new ModelInputError(`prompt (${plen} tokens) + maxNewTokens (${opts.maxNewTokens}) exceeds n_positions ${cfg.maxPositions}`);
  }
  const ids = prompts.map((p) => [...Array<number>(plen - p.length).fill(pad), ...p]);
  const mask = prompts.map((p) => [...Array<number>(plen - p.length).fill(0), ...Array<number>(p.length).fill(1)]);
  const checked = engine.checkTokens({ ids, attentionMask: mask }, 'prompts');
  const session = await engine.decodeSession();
  const weightFeeds = engine.weightFeeds();
  const V = cfg.vocabSize;

  const results: Generation[] = prompts.map(() => ({ tokens: [], logprobs: [], finishReason: 'length' }));
  let live = prompts.map((_, i) => i); // original index of each batch row
  let maskRows = mask;
  const capacity = plen + opts.maxNewTokens - 1; // positions ever held in the cache
  const cache: CacheBuffer[] = [];
  for (let l = 0; l < 2 * cfg.layers; l++) cache.push(new CacheBuffer(prompts.length, cfg.kvHeads, capacity, cfg.headDim));
  let length = 0; // positions filled in the cache
  const emptyPast = new ort.Tensor('float32', new Float32Array(0), [prompts.length, cfg.kvHeads, 0, cfg.headDim]);
  let feeds: Record<string, ort.Tensor> = { input_ids: checked.ids, attention_mask: checked.mask };

  for (let pos = 0; pos < opts.maxNewTokens; pos++) {
    for (let l = 0; l < cfg.layers; l++) {
      // prefill: no past at all; later steps: the whole buffer, unfilled slots masked
      feeds[`past.${l}.key`] = pos === 0 ? emptyPast : cache[2 * l]!.view();
      feeds[`past.${l}.value`] = pos === 0 ? emptyPast : cache[2 * l + 1]!.view();
    }
    const out = await session.run({ ...weightFeeds, ...feeds });
    const chunk = pos === 0 ? plen : 1;
    if (pos + 1 < opts.maxNewTokens) {
      for (let l = 0; l < cfg.layers; l++) {
        cache[2 * l]!.write(length, out[`fresh.${l}.key`]!.data as Float32Array, chunk);
        cache[2 * l + 1]!.write(length, out[`fresh.${l}.value`]!.data as Float32Array, chunk);
      }
    }
    length += chunk;
    const logits = out.logits!.data as Float32Array;
    const next: number[] = [];
    const keep: number[] = [];
    live.forEach((seq, r) => {
      const row = logits.subarray(r * V, (r + 1) * V);
      const tok = opts.pickToken(row, seq, pos);
      if (!Number.isInteger(tok) || tok < 0 || tok >= V) {
        throw new ModelInputError(`pickToken returned ${tok} for sequence ${seq} at position ${pos}: not a token id (vocab_size ${V})`);
      }
      const res = results[seq]!;
      res.tokens.push(tok);
      res.logprobs.push(tokenLogprob(row, tok, T));
      if (stop.has(tok)) res.finishReason = 'stop';
      else {
        keep.push(r);
        next.push(tok);
      }
    });
    if (keep.length === 0 || pos + 1 === opts.maxNewTokens) break;
    if (keep.length !== live.length) for (const c of cache) c.compact(keep);
    live = keep.map((r) => live[r]!);
    const cacheMask = keep.map((r) => maskRows[r]!); // one entry per filled cache position
    // attention mask: filled cache slots (real or left padding), unused slots (0), the new token (1)
    const width = capacity + 1;
    const am = new BigInt64Array(live.length * width);
    cacheMask.forEach((row, r) => {
      row.forEach((v, j) => (am[r * width + j] = BigInt(v)));
      am[r * width + capacity] = 1n;
    });
    maskRows = cacheMask.map((row) => [...row, 1]); // the new token's keys/values join the cache after the run
    feeds = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(next.map(BigInt)), [next.length, 1]),
      attention_mask: new ort.Tensor('int64', am, [live.length, width]),
    };
  }
  return results;
}
