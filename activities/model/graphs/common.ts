/**
 * Pieces the three graphs share, so that decode, score and trainStep compute logprobs the same
 * way: parameter declaration (baked initializers or graph inputs), positions and key masks from
 * the HF-style `attention_mask`, and per-token logprobs / entropy from logits.
 */
import type { Graph, Shape, Tensor } from '../graph.js';
import { parameterShapes, type ModelConfig } from '../config.js';
import * as F from '../ops.js';
import type { ParamFn } from '../arch/index.js';

/** Weights by HF name: float32 data in row-major order (the shape `parameterShapes` lists). */
export interface WeightTensor {
  shape: number[];
  data: Float32Array;
}
export type WeightMap = Map<string, WeightTensor> | ReadonlyMap<string, WeightTensor>;

/** Symbolic dimension names used by every graph. */
export const DIM = { batch: 'batch', seq: 'seq', past: 'past', total: 'total' } as const;

/**
 * Parameters as initializers (weights baked into the model: onnxruntime can pre-pack them) or as
 * graph inputs (trainStep: they change every step).
 */
export function declareParams(g: Graph, cfg: ModelConfig, source: { weights: WeightMap } | 'inputs'): { p: ParamFn; params: Tensor[] } {
  const byName = new Map<string, Tensor>();
  const params: Tensor[] = [];
  for (const spec of parameterShapes(cfg)) {
    let t: Tensor;
    if (source === 'inputs') t = g.input(spec.name, 'float32', spec.shape);
    else {
      const w = source.weights.get(spec.name);
      if (!w) throw new Error(`weights: missing tensor ${spec.name} [${spec.shape.join(', ')}]`);
      t = g.initializer(spec.name, 'float32', spec.shape, w.data);
    }
    byName.set(spec.name, t);
    params.push(t);
  }
  const p: ParamFn = (name) => {
    const t = byName.get(name);
    if (!t) throw new Error(`model ${cfg.modelType}: no parameter named ${name}`);
    return t;
  };
  return { p, params };
}

/**
 * From `attention_mask` (int64 [batch, total], 1 = real token) and the chunk's ids [batch, seq]
 * (the last `seq` positions of `total`): positions of the chunk's tokens (number of real tokens
 * before each, HF's `cumsum(mask) - 1` clamped at 0) and the bool key mask.
 */
export function positionsAndMask(g: Graph, attentionMask: Tensor, ids: Tensor): { positions: Tensor; keyMask: Tensor } {
  return g.noTape(() => {
    const cum = g.node1('CumSum', [attentionMask, g.constant([1], 'int64', [])], 'int64', attentionMask.shape);
    const pos = F.maximum(F.sub(cum, 1), 0);
    let positions = pos;
    if (ids.dim(1) !== attentionMask.dim(1)) {
      // the chunk is the last `seq` positions: slice from (total - seq)
      const start = g.node1('Sub', [F.dimOf(attentionMask, 1), F.dimOf(ids, 1)], 'int64', [1]);
      positions = g.node1('Slice', [pos, start, g.ints([2 ** 62]), g.ints([1])], 'int64', ids.shape);
    }
    const keyMask = F.cast(attentionMask, 'bool');
    return { positions, keyMask };
  });
}

/**
 * The sampling temperature as a graph input: float32 [] named `temperature`. Score and train graphs
 * divide their next-token logits by it (`tempered`) before any logprob or entropy, so the learner
 * computes log softmax(logits / T) — the distribution the rollout sampled from (TRL and verl do
 * the same). Fed 1 outside RL phases; x / 1 is exact, so T = 1 changes no bit.
 */
export const TEMPERATURE_INPUT = 'temperature';

/** Declares the `temperature` input and returns the logits divided by it. */
export function tempered(g: Graph, logits: Tensor): Tensor {
  const T = g.input(TEMPERATURE_INPUT, 'float32', []);
  return F.div(logits, T);
}

/** Log-softmax of next-token logits; shared so all graphs normalise identically. */
export function logSoftmax(logits: Tensor): Tensor {
  return F.logSoftmax(logits, -1);
}

/**
 * Per-token logprobs aligned with `ids` [batch, seq]: entry t is log p(ids[t] | ids[<t]) from
 * `logp` [batch, seq-1, vocab] (the log-softmax at positions 0..seq-2); entry 0 is 0.
 */
export function tokenLogprobs(logp: Tensor, ids: Tensor): Tensor {
  const targets = F.unsqueeze(F.slice(ids, [1], [2 ** 62], [1]), [-1]);
  const picked = F.squeeze(F.gatherElements(logp, targets, -1), [-1]); // [B, T-1]
  return F.pad(picked, [1, 0], [1]);
}

/** Entropy of each next-token distribution, aligned like `tokenLogprobs` (entry 0 is 0). */
export function tokenEntropy(logp: Tensor): Tensor {
  const h = F.neg(F.reduceSum(F.mul(F.exp(logp), logp), [-1])); // [B, T-1]
  return F.pad(h, [1, 0], [1]);
}

/**
 * float32 [batch, seq]: 1 where a token is real and so is the token before it (a token predicted
 * from real context); 0 at position 0, at padding and at the first token after left padding.
 */
export function predictedMask(attentionMask: Tensor): Tensor {
  const m = F.cast(attentionMask, 'float32');
  const prev = F.pad(F.slice(m, [0], [-1], [1]), [1, 0], [1]);
  return F.mul(m, prev);
}

/** Hidden states of all but the last position (the ones that predict a next token in the chunk). */
export function allButLast(hidden: Tensor): Tensor {
  return F.slice(hidden, [0], [-1], [1]);
}

export function batchSeq(): Shape {
  return [DIM.batch, DIM.seq];
}
