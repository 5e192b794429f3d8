/**
 * The `decode` graph: batched incremental generation with a KV cache. One graph serves the prefill
 * (past length 0, the whole left-padded prompt as the chunk) and every later step (a chunk of one
 * token per sequence, the cache of earlier positions as `past.*`).
 *
 * Inputs:  input_ids int64 [batch, seq]; attention_mask int64 [batch, past + seq] (1 = real token,
 *          0 = padding or an unused cache slot; left padding for prompts);
 *          past.{i}.key / past.{i}.value float32 [batch, kvHeads, past, headDim] per layer.
 * Outputs: logits (or logprobs) float32 [batch, vocab] of the token after the chunk's last position;
 *          fresh.{i}.key / fresh.{i}.value float32 [batch, kvHeads, seq, headDim]: the chunk's own
 *          keys (after RoPE) and values, for the caller to write into its cache.
 *
 * The graph never returns (or concatenates) the whole cache: the caller keeps one preallocated
 * [batch, kvHeads, capacity, headDim] buffer per tensor, writes `fresh` into it and feeds the whole
 * buffer as `past` with unused slots masked out in `attention_mask`. Returning the concatenated
 * cache every step cost more than the step itself at batch 32 (fresh output buffers of tens of MB).
 * Positions come from the attention mask (count of real tokens before each), as in every graph.
 * Weights are baked in as initializers, or (`'inputs'`) are graph inputs named by HF names. With
 * `quantize` (baked weights only) every linear layer but LoRA's adapters runs on int8 or 4-bit
 * weights (`../quantize.ts`).
 */
import { Graph } from '../graph.js';
import type { QuantizeSpec } from '../quantize.js';
import type { ModelConfig } from '../config.js';
import * as F from '../ops.js';
import { archOf, type LayerKV } from '../arch/index.js';
import { DIM, declareParams, positionsAndMask, logSoftmax, type WeightMap } from './common.js';

export interface DecodeGraphOptions {
  /** What the graph returns for the next token: raw logits (default) or log-softmax. */
  output?: 'logits' | 'logprobs';
  /** Weight-only quantised linear layers (`../quantize.ts`); needs baked weights. */
  quantize?: QuantizeSpec | null;
}

export function buildDecodeGraph(cfg: ModelConfig, weights: WeightMap | 'inputs', opts: DecodeGraphOptions = {}): Graph {
  if (opts.quantize && weights === 'inputs') throw new Error('a quantized decode graph bakes its weights: pass the weights, not "inputs"');
  const g = new Graph({ name: `decode-${cfg.modelType}`, quantize: opts.quantize ?? null });
  const arch = archOf(cfg);
  const { p } = declareParams(g, cfg, weights === 'inputs' ? 'inputs' : { weights });
  const ids = g.input('input_ids', 'int64', [DIM.batch, DIM.seq]);
  const mask = g.input('attention_mask', 'int64', [DIM.batch, DIM.total]);
  const past: LayerKV[] = [];
  for (let i = 0; i < cfg.layers; i++) {
    past.push({
      key: g.input(`past.${i}.key`, 'float32', [DIM.batch, cfg.kvHeads, DIM.past, cfg.headDim]),
      value: g.input(`past.${i}.value`, 'float32', [DIM.batch, cfg.kvHeads, DIM.past, cfg.headDim]),
    });
  }
  const { positions, keyMask } = positionsAndMask(g, mask, ids);
  const { hidden, fresh } = arch.body(g, cfg, p, { ids, positions, keyMask, past });
  const last = F.squeeze(F.slice(hidden, [-1], [2 ** 62], [1]), [1]); // [B, D]
  const logits = arch.head(g, cfg, p, last);
  g.output(opts.output === 'logprobs' ? logSoftmax(logits) : logits, opts.output === 'logprobs' ? 'logprobs' : 'logits');
  fresh.forEach((kv, i) => {
    g.output(kv.key, `fresh.${i}.key`);
    g.output(kv.value, `fresh.${i}.value`);
  });
  return g;
}
