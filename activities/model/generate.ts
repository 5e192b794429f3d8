/**
 * `generate()`: batched incremental generation through the decode graph. Prompts are left-padded
 * to one length and prefilled in one run; then every live sequence advances one token per run,
 * its keys/values appended to the cache. Sequences finish independently (a stop token or the
 * token budget); finished rows are dropped from the batch and from the cache, so later steps only
 * compute for live sequences.
 *
 * Token choice is pluggable: `pickToken(logits, seq, pos)` gets the raw next-token logits of one
 * sequence (samplers live in `activities/rollout/sampling.ts`). The logprob recorded for each
 * chosen token is under the model's untempered distribution (log-softmax of the raw logits), the
 * quantity the score graph computes for the same tokens.
 */
import ort from 'onnxruntime-node';
import { ModelInputError, type ModelEngine } from './engine.js';

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
}

export interface Generation {
  /** Generated tokens (the stop token included when one ended the sequence). */
  tokens: number[];
  /** log p(token) under the model for each generated token. */
  logprobs: number[];
  finishReason: 'stop' | 'length';
}

function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i]! - max);
  return max + Math.log(s);
}

/** Keeps rows `keep` (indices along dim 0) of a float32 tensor. */
function takeRows(t: ort.Tensor, keep: number[]): ort.Tensor {
  const dims = t.dims as number[];
  const rowSize = dims.slice(1).reduce((a, b) => a * b, 1);
  const src = t.data as Float32Array;
  const out = new Float32Array(keep.length * rowSize);
  keep.forEach((r, i) => out.set(src.subarray(r * rowSize, (r + 1) * rowSize), i * rowSize));
  return new ort.Tensor('float32', out, [keep.length, ...dims.slice(1)]);
}

/** Generates continuations of `prompts` with the engine's installed weights. */
export async function generate(engine: ModelEngine, prompts: readonly (readonly number[])[], opts: GenerateOptions): Promise<Generation[]> {
  const cfg = engine.config;
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 1) {
    throw new ModelInputError(`maxNewTokens must be a positive integer, got ${opts.maxNewTokens}`);
  }
  if (prompts.length === 0) throw new ModelInputError('generate needs at least one prompt');
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
  let feeds: Record<string, ort.Tensor> = { input_ids: checked.ids, attention_mask: checked.mask };
  for (let l = 0; l < cfg.layers; l++) {
    const empty = new ort.Tensor('float32', new Float32Array(0), [prompts.length, cfg.kvHeads, 0, cfg.headDim]);
    feeds[`past.${l}.key`] = empty;
    feeds[`past.${l}.value`] = empty;
  }

  for (let pos = 0; pos < opts.maxNewTokens; pos++) {
    const out = await session.run({ ...weightFeeds, ...feeds });
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
      res.logprobs.push(row[tok]! - logSumExp(row));
      if (stop.has(tok)) res.finishReason = 'stop';
      else {
        keep.push(r);
        next.push(tok);
      }
    });
    if (keep.length === 0 || pos + 1 === opts.maxNewTokens) break;
    const compact = keep.length !== live.length;
    live = keep.map((r) => live[r]!);
    maskRows = keep.map((r) => [...maskRows[r]!, 1]);
    const nf: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(next.map(BigInt)), [next.length, 1]),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from(maskRows.flat().map(BigInt)), [maskRows.length, maskRows[0]!.length]),
    };
    for (let l = 0; l < cfg.layers; l++) {
      for (const kv of ['key', 'value']) {
        const t = out[`present.${l}.${kv}`]!;
        nf[`past.${l}.${kv}`] = compact ? takeRows(t, keep) : t;
      }
    }
    feeds = nf;
  }
  return results;
}
