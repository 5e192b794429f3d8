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
  /** Called after every decode step with the steps done (1 after the prefill). */
  onStep?: (steps: number) => void;
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
  opts.signal?.throwIfAborted();
  const session = await engine.decodeSession({ quantize: opts.quantize });
  const weightFeeds = await engine.decodeFeeds(opts.quantize);
  const V = cfg.vocabSize;

  const results: Generation[] = prompts.map(() => ({ tokens: [], logprobs: [], finishReason: 'length' }));
  let live = prompts.map((_, i) => i); // original index of each batch row
  let maskRows = mask;
  const capacity = plen + opts.maxNewTokens - 1; // positions ever held in the cache
  const cache = await engine.decodeCache(prompts.length, capacity);
  const past: string[] = [];
  const fresh: string[] = [];
  for (let l = 0; l < cfg.layers; l++) {
    past.push(`past.${l}.key`, `past.${l}.value`);
    fresh.push(`fresh.${l}.key`, `fresh.${l}.value`);
  }
  let length = 0; // positions filled in the cache
  let feeds: Record<string, ort.Tensor> = { input_ids: checked.ids, attention_mask: checked.mask };

  try {
    for (let pos = 0; pos < opts.maxNewTokens; pos++) {
      if (pos > 0) opts.signal?.throwIfAborted();
      const chunk = pos === 0 ? plen : 1;
      // prefill: no past at all; later steps: the whole buffer, unfilled slots masked
      const { outputs: out } = await session.exec(
        { ...weightFeeds, ...feeds },
        { cache: { handle: cache, inputs: past, outputs: fresh, length, chunk, write: pos + 1 < opts.maxNewTokens } },
      );
      length += chunk;
      opts.onStep?.(pos + 1);
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
        if (stop.has(tok) || opts.endSequence?.(seq, tok, pos)) res.finishReason = 'stop';
        else {
          keep.push(r);
          next.push(tok);
        }
      });
      if (keep.length === 0 || pos + 1 === opts.maxNewTokens) break;
      if (keep.length !== live.length) await cache.compact(keep);
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
  } finally {
    await cache.release().catch(() => undefined);
  }
  return results;
}
