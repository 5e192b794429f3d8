/**
 * The sequence-classifier (reward-model) head and the `reward` graph.
 *
 * A reward model is the policy's backbone with a scalar score head instead of the LM head
 * (Ouyang et al., "Training language models to follow instructions with human feedback", 2022;
 * HF `*ForSequenceClassification` with one label): `score.weight` [1, hidden] (no bias) applied to
 * the final hidden state (after the final norm) of each sequence's last real token. The last real
 * token is the rightmost position whose `attention_mask` is 1, so right padding (rewards of
 * prompt+completion batches) and left padding (prompt batches) both work; HF's newer
 * implementations pick the same token from the pad ids.
 *
 * `reward` graph inputs:  input_ids int64 [batch, seq]; attention_mask int64 [batch, seq].
 *                 output: rewards float32 [batch] (0 for a row without any real token; the engine
 *                         rejects such rows).
 * Weights are baked in as initializers, or (`'inputs'`) are graph inputs named by HF names.
 */
import { Graph, type Tensor } from '../graph.js';
import type { ModelConfig } from '../config.js';
import * as F from '../ops.js';
import { archOf, type ParamFn } from '../arch/index.js';
import { DIM, declareParams, positionsAndMask, type WeightMap } from './common.js';

/** The score head's parameter (HF name). */
export const SCORE_WEIGHT = 'score.weight';

/**
 * float32 [batch, seq]: 1 at each row's last real token (rightmost position with mask 1), else 0.
 * Not differentiated (a function of the mask alone).
 */
export function lastTokenOneHot(attentionMask: Tensor): Tensor {
  const g = attentionMask.g;
  return g.noTape(() => {
    // real tokens at or after t, counted from the right; the last real token is where it is 1
    const after = g.node1('CumSum', [attentionMask, g.constant([1], 'int64', [])], 'int64', attentionMask.shape, { reverse: 1 });
    const isLast = F.and(F.equal(attentionMask, 1), F.equal(after, 1));
    return F.cast(isLast, 'float32');
  });
}

/**
 * Rewards float32 [batch] from final hidden states [batch, seq, hidden]: the score head applied at
 * every position ([B, T], one small GEMV) and the last real token's value picked by a one-hot
 * product (differentiable into the hidden states and `score.weight`).
 */
export function sequenceRewards(cfg: ModelConfig, p: ParamFn, hidden: Tensor, attentionMask: Tensor): Tensor {
  if (!cfg.classifier) throw new Error(`model ${cfg.modelType} is not a sequence classifier: it has no ${SCORE_WEIGHT} head`);
  const perToken = F.squeeze(F.linear(hidden, p(SCORE_WEIGHT), null, 'out_in'), [-1]); // [B, T]
  return F.reduceSum(F.mul(perToken, lastTokenOneHot(attentionMask)), [1]);
}

/** The forward pass of a classifier: rewards [batch] of `ids` under `attentionMask`. */
export function classifierForward(g: Graph, cfg: ModelConfig, p: ParamFn, ids: Tensor, attentionMask: Tensor): Tensor {
  const { positions, keyMask } = positionsAndMask(g, attentionMask, ids);
  const { hidden } = archOf(cfg).body(g, cfg, p, { ids, positions, keyMask });
  return sequenceRewards(cfg, p, hidden, attentionMask);
}

/** Builds the `reward` graph of a sequence classifier. */
export function buildRewardGraph(cfg: ModelConfig, weights: WeightMap | 'inputs'): Graph {
  const g = new Graph({ name: `reward-${cfg.modelType}` });
  const { p } = declareParams(g, cfg, weights === 'inputs' ? 'inputs' : { weights });
  const ids = g.input('input_ids', 'int64', [DIM.batch, DIM.seq]);
  const mask = g.input('attention_mask', 'int64', [DIM.batch, DIM.seq]);
  g.output(classifierForward(g, cfg, p, ids, mask), 'rewards');
  return g;
}
