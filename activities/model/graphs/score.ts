/**
 * The `score` graph: per-token logprobs (and entropy) of given token ids.
 *
 * Inputs:  input_ids int64 [batch, seq]; attention_mask int64 [batch, seq] (1 = real token);
 *          temperature float32 [] (the logits are divided by it: logprobs at the sampling temperature).
 * Outputs: logprobs float32 [batch, seq], entry t = log p(ids[t] | ids[<t]) (entry 0 is 0, padding
 *          positions and the first real token after left padding are 0); entropy float32 [batch, seq] of the distribution that predicted each
 *          token (same alignment), when requested.
 * Weights are baked in as initializers, or (`'inputs'`) are graph inputs named by HF names.
 */
import { Graph } from '../graph.js';
import type { ModelConfig } from '../config.js';
import * as F from '../ops.js';
import { archOf } from '../arch/index.js';
import {
  DIM,
  allButLast,
  declareParams,
  logSoftmax,
  positionsAndMask,
  predictedMask,
  tempered,
  tokenEntropy,
  tokenLogprobs,
  type WeightMap,
} from './common.js';

export interface ScoreGraphOptions {
  /** Also output the per-token entropy (default true). */
  entropy?: boolean;
}

export function buildScoreGraph(cfg: ModelConfig, weights: WeightMap | 'inputs', opts: ScoreGraphOptions = {}): Graph {
  const g = new Graph({ name: `score-${cfg.modelType}` });
  const arch = archOf(cfg);
  const { p } = declareParams(g, cfg, weights === 'inputs' ? 'inputs' : { weights });
  const ids = g.input('input_ids', 'int64', [DIM.batch, DIM.seq]);
  const mask = g.input('attention_mask', 'int64', [DIM.batch, DIM.seq]);
  const { positions, keyMask } = positionsAndMask(g, mask, ids);
  const { hidden } = arch.body(g, cfg, p, { ids, positions, keyMask });
  const logp = logSoftmax(tempered(g, arch.head(g, cfg, p, allButLast(hidden))));
  const valid = predictedMask(mask);
  g.output(F.mul(tokenLogprobs(logp, ids), valid), 'logprobs');
  if (opts.entropy ?? true) g.output(F.mul(tokenEntropy(logp), valid), 'entropy');
  return g;
}
