/**
 * Causal scaled dot-product attention composed from the differentiable primitives (Vaswani et al.,
 * "Attention Is All You Need", 2017), with grouped-query attention (Ainslie et al., "GQA", 2023)
 * by broadcasting: queries are viewed as [B, Hkv, G, T, hd] against keys/values [B, Hkv, 1, S, hd],
 * so KV heads are never copied.
 *
 * Masking: query i (at absolute index past + i, past = S - T) sees key j iff j <= past + i and
 * the key is not padding. Masked scores get a large negative finite bias added, so their
 * probabilities are exactly 0 and a row with every key masked (a left-padding query) gives finite,
 * ignorable output.
 */
import type { DType, Tensor } from './graph.js';
import * as F from './ops.js';

export interface AttentionOptions {
  /**
   * Cached keys/values of earlier positions [B, Hkv, P, hd], attended to before `k`/`v` (key
   * positions 0..P-1, then the chunk's). Used without concatenating: scores against the cache and
   * against the chunk are computed apart and joined only at [.., T, P + T] size.
   */
  past?: { key: Tensor; value: Tensor };
  /** bool [B, S]: true where the key/value position holds a real token (false = padding). */
  keyMask?: Tensor;
  /** A precomputed additive bias [B, 1, T, S] from `attentionBias` (then `keyMask` is unused). */
  bias?: Tensor;
  /** Score scale; default 1/sqrt(head dim). */
  scale?: number;
}

function maskValue(dtype: DType): number {
  return dtype === 'float16' ? -6e4 : -1e30;
}

/** A bool [T, S] mask: key j visible to query i iff j - i <= S - T (T from `q`, S from `k`, axis -2). */
export function causalMask(q: Tensor, k: Tensor): Tensor {
  const g = q.g;
  const tDim = q.dim(-2);
  const sDim = k.dim(-2);
  const scalarDim = (x: Tensor, d: number | string | null): Tensor =>
    typeof d === 'number' ? g.constant([d], 'int64', []) : g.node1('Squeeze', [F.dimOf(x, -2), g.ints([0])], 'int64', []);
  const t = scalarDim(q, tDim);
  const s = scalarDim(k, sDim);
  const zero = g.constant([0], 'int64', []);
  const one = g.constant([1], 'int64', []);
  const qi = g.node1('Range', [zero, t, one], 'int64', [tDim]);
  const kj = g.node1('Range', [zero, s, one], 'int64', [sDim]);
  const rel = g.node1('Sub', [F.unsqueeze(kj, [0]), F.unsqueeze(qi, [1])], 'int64', [tDim, sDim]);
  const offset = g.node1('Sub', [s, t], 'int64', []);
  return g.node1('LessOrEqual', [rel, offset], 'bool', [tDim, sDim]);
}

/**
 * The additive attention bias [B, 1, T, S] for queries `ids` [B, T] (only its shape is used) over
 * keys whose padding mask is `keyMask` bool [B, S]: 0 where visible (causal and not padding), a
 * large negative number elsewhere. Computed once and shared by every layer; adding it (instead of
 * a Where per layer) needs no backward pass of its own, as masked probabilities are exactly 0.
 */
export function attentionBias(ids: Tensor, keyMask: Tensor, dtype: DType): Tensor {
  const g = ids.g;
  return g.noTape(() => {
    const allowed = F.and(causalMask(F.unsqueeze(ids, [-1]), F.unsqueeze(keyMask, [-1])), F.unsqueeze(keyMask, [1, 2])); // [B, 1, T, S]
    return F.where(allowed, g.scalar(0, dtype), g.scalar(maskValue(dtype), dtype));
  });
}

/**
 * `bias` (from `attentionBias`) narrowed to a sliding window (Mistral; Beltagy et al., "Longformer",
 * 2020): query position p also stops seeing keys at positions <= p - window. Positions count real
 * tokens only (queries: `positions` [B, T]; keys: from `keyMask` [B, S]), so left padding and unused
 * cache slots do not shift the window.
 */
export function slidingWindowBias(bias: Tensor, positions: Tensor, keyMask: Tensor, window: number): Tensor {
  const g = bias.g;
  return g.noTape(() => {
    const maskInt = F.cast(keyMask, 'int64');
    const keyPositions = F.sub(g.node1('CumSum', [maskInt, g.constant([1], 'int64', [])], 'int64', maskInt.shape), 1); // [B, S]
    const distance = F.sub(F.unsqueeze(positions, [1, 3]), F.unsqueeze(keyPositions, [1, 2])); // [B, 1, T, S]
    const inWindow = g.node1('Less', [distance, g.constant([window], 'int64', [])], 'bool', distance.shape);
    return F.where(inWindow, bias, g.scalar(maskValue(bias.dtype), bias.dtype));
  });
}

/**
 * q [B, Hq, T, hd], k and v [B, Hkv, S, hd] (S >= T: keys may include a cache of past positions);
 * Hq a multiple of Hkv. Returns [B, Hq, T, hd]. Masking: `bias` from `attentionBias` (shared across
 * layers), or else computed here from `keyMask`.
 */
export function causalAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const [b, hq, t, hd] = q.shape;
  const hkv = k.dim(1);
  if (typeof hq !== 'number' || typeof hkv !== 'number' || typeof hd !== 'number') {
    throw new Error(`attention: head counts and head size must be static, got q ${q} and k ${k}`);
  }
  if (hq % hkv !== 0) throw new Error(`attention: ${hq} query heads are not a multiple of ${hkv} KV heads`);
  const groups = hq / hkv;
  const scale = opts.scale ?? 1 / Math.sqrt(hd);

  let bias = opts.bias;
  if (!bias) {
    const g = q.g;
    const allowed = g.noTape(() => {
      const causal = causalMask(q, k); // [T, S]
      return opts.keyMask ? F.and(causal, F.unsqueeze(opts.keyMask, [1, 2])) : causal; // [B, 1, T, S]
    });
    bias = g.noTape(() => F.where(allowed, g.scalar(0, q.dtype), g.scalar(maskValue(q.dtype), q.dtype)));
  }
  let qv = F.mul(q, scale);
  const grouped = (x: Tensor) => (groups > 1 ? F.unsqueeze(x, [2]) : x);
  if (groups > 1) {
    qv = F.reshape(qv, [0, hkv, groups, -1, hd], [b!, hkv, groups, t!, hd]);
    if (bias.rank === 4) bias = q.g.noTape(() => F.unsqueeze(bias!, [2]));
  }
  const kv = grouped(k);
  const vv = grouped(v);
  const rank = qv.rank;
  const kT = (x: Tensor) => F.transpose(x, [...Array(rank - 2).keys(), rank - 1, rank - 2]);
  let out: Tensor;
  if (opts.past) {
    const pk = grouped(opts.past.key);
    const pv = grouped(opts.past.value);
    const scores = F.concat([F.matmul(qv, kT(pk)), F.matmul(qv, kT(kv))], -1);
    const probs = F.softmax(F.add(scores, bias), -1);
    const pastLen = F.dimOf(pk, -2);
    const probsPast = q.g.node1('Slice', [probs, q.g.ints([0]), pastLen, q.g.ints([-1])], probs.dtype, [
      ...probs.shape.slice(0, -1),
      pk.dim(-2),
    ]);
    const probsNew = q.g.node1('Slice', [probs, pastLen, q.g.ints([2 ** 62]), q.g.ints([-1])], probs.dtype, [
      ...probs.shape.slice(0, -1),
      kv.dim(-2),
    ]);
    out = F.add(F.matmul(probsPast, pv), F.matmul(probsNew, vv));
  } else {
    const scores = F.matmul(qv, kT(kv));
    const probs = F.softmax(F.add(scores, bias), -1);
    out = F.matmul(probs, vv);
  }
  if (groups > 1) out = F.reshape(out, [0, hq, -1, hd], [b!, hq, t!, hd]);
  return out;
}
