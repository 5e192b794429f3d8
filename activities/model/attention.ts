/**
 * Causal scaled dot-product attention composed from the differentiable primitives (Vaswani et al.,
 * "Attention Is All You Need", 2017), with grouped-query attention (Ainslie et al., "GQA", 2023)
 * by broadcasting: queries are viewed as [B, Hkv, G, T, hd] against keys/values [B, Hkv, 1, S, hd],
 * so KV heads are never copied.
 *
 * Masking: query i (at absolute index past + i, past = S - T) sees key j iff j <= past + i and
 * the key is not padding. Masked scores are replaced (Where) by a large negative finite number,
 * so a row with every key masked (a left-padding query) gives finite, ignorable output.
 */
import type { Tensor } from './graph.js';
import * as F from './ops.js';

export interface AttentionOptions {
  /** bool [B, S]: true where the key/value position holds a real token (false = padding). */
  keyMask?: Tensor;
  /** Score scale; default 1/sqrt(head dim). */
  scale?: number;
}

function maskValue(dtype: string): number {
  return dtype === 'float16' ? -6e4 : -1e30;
}

/** A bool [T, S] mask: key j visible to query i iff j - i <= S - T. */
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
 * q [B, Hq, T, hd], k and v [B, Hkv, S, hd] (S >= T: keys may include a cache of past positions);
 * Hq a multiple of Hkv. Returns [B, Hq, T, hd].
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

  let allowed = causalMask(q, k); // [T, S]
  let qv = F.mul(q, scale);
  let kv = k;
  let vv = v;
  if (groups > 1) {
    qv = F.reshape(qv, [0, hkv, groups, -1, hd], [b!, hkv, groups, t!, hd]);
    kv = F.unsqueeze(k, [2]);
    vv = F.unsqueeze(v, [2]);
  }
  const rank = qv.rank;
  if (opts.keyMask) {
    // [B, S] -> [B, 1, (1,) 1, S]
    const km = F.unsqueeze(opts.keyMask, [...Array(rank - 2).keys()].map((i) => i + 1));
    allowed = F.and(allowed, km);
  }
  const scores = F.matmul(qv, F.transpose(kv, [...Array(rank - 2).keys(), rank - 1, rank - 2]));
  const masked = F.where(allowed, scores, maskValue(scores.dtype));
  const probs = F.softmax(masked, -1);
  let out = F.matmul(probs, vv);
  if (groups > 1) out = F.reshape(out, [0, hq, -1, hd], [b!, hq, t!, hd]);
  return out;
}
