/**
 * Weight-only quantisation of the decode graph's linear layers: each weight row (one output
 * feature, K inputs) is cut into blocks of `blockSize` inputs, and each block is stored as
 * `bits`-bit integers with one float32 scale (symmetric, round to nearest; the layout of
 * onnxruntime's `com.microsoft.MatMulNBits`, whose CPU kernels run the product in int8 on
 * VNNI/AMX units with `accuracy_level` 4). The activations stay float32 and are quantised per
 * block by the kernel itself. Dettmers et al., "LLM.int8()", 2022, and Frantar et al., "GPTQ",
 * 2023, for why weight-only blockwise quantisation keeps a language model's logprobs close.
 *
 *   w ≈ scale · (q − 2^(bits−1)),  scale = max|w in block| / (2^(bits−1) − 1),  q ∈ [1, 2^bits − 1]
 *
 * A 4-bit byte holds two consecutive values, the first in its low nibble. Rows whose K is not a
 * multiple of the block size end with a block padded with zeros (q = 2^(bits−1)).
 *
 * Only the rollout's decode graph is quantised (graphs/decode.ts, `quantize`): score and trainStep
 * stay float32, so the learner's logprobs differ from the behaviour logprobs by the quantisation
 * error — the rollout/learner mismatch the learner logs every step (`mismatch_logprob_diff`) and
 * truncated importance sampling (the loss's `tis`) corrects.
 */
import type { Graph, Tensor } from './graph.js';

/** Which decode weights are quantised, and how (the engine's `quantize` option). */
export interface QuantizeSpec {
  /** 8 (int8, the default) or 4 bits per weight. */
  bits: 4 | 8;
  /** Inputs per block sharing one scale (a power of two ≥ 16; MatMulNBits' `block_size`). */
  blockSize: number;
}

/** How a rollout's decode quantises its weights (`rollout.quantize` of the run config; null: float32). */
export type DecodeQuantize = 'int8' | 'int4';

/** The layout of a `DecodeQuantize` choice: blocks of 32 inputs, one scale each (null: not quantised). */
export function quantizeSpec(q: DecodeQuantize | null | undefined): QuantizeSpec | null {
  if (!q) return null;
  return { bits: q === 'int4' ? 4 : 8, blockSize: 32 };
}

/** A [N, K] weight (rows are output features) in MatMulNBits' layout. */
export interface QuantizedWeight {
  n: number;
  k: number;
  blocks: number;
  /** uint8 [N, blocks, blockSize · bits / 8]. */
  packed: Uint8Array;
  /** float32 [N · blocks]. */
  scales: Float32Array;
}

/**
 * Quantises a weight given as float32 `data` of shape [N, K] (`out_in`, nn.Linear's layout) or
 * [K, N] (`in_out`, GPT-2's Conv1D), block by block along K.
 */
export function quantizeWeight(
  data: Float32Array,
  dims: readonly number[],
  layout: 'out_in' | 'in_out',
  spec: QuantizeSpec,
): QuantizedWeight {
  const [n, k] = layout === 'out_in' ? [dims[0]!, dims[1]!] : [dims[1]!, dims[0]!];
  const { bits, blockSize } = spec;
  const at = layout === 'out_in' ? (r: number, c: number) => data[r * k + c]! : (r: number, c: number) => data[c * n + r]!;
  const blocks = Math.ceil(k / blockSize);
  const blob = (blockSize * bits) / 8;
  const zero = 1 << (bits - 1);
  const packed = new Uint8Array(n * blocks * blob);
  const scales = new Float32Array(n * blocks);
  if (bits === 4)
    packed.fill(0x88); // padding holds the zero point
  else packed.fill(zero);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const end = Math.min(k, (b + 1) * blockSize);
      let amax = 0;
      for (let c = b * blockSize; c < end; c++) amax = Math.max(amax, Math.abs(at(r, c)));
      const scale = amax / (zero - 1);
      scales[r * blocks + b] = scale;
      if (scale === 0) continue;
      for (let c = b * blockSize; c < end; c++) {
        const q = Math.round(at(r, c) / scale) + zero; // in [1, 2^bits - 1] by the choice of scale
        const i = (r * blocks + b) * blockSize + (c - b * blockSize);
        if (bits === 8) packed[i] = q;
        else {
          const byte = i >> 1;
          packed[byte] = i & 1 ? (packed[byte]! & 0x0f) | (q << 4) : (packed[byte]! & 0xf0) | q;
        }
      }
    }
  }
  return { n, k, blocks, packed, scales };
}

/** The float32 [N, K] weight a quantised one stands for (tests and error measurements). */
export function dequantizeWeight(q: QuantizedWeight, spec: QuantizeSpec): Float32Array {
  const { bits, blockSize } = spec;
  const zero = 1 << (bits - 1);
  const out = new Float32Array(q.n * q.k);
  for (let r = 0; r < q.n; r++) {
    for (let c = 0; c < q.k; c++) {
      const b = Math.floor(c / blockSize);
      const i = (r * q.blocks + b) * blockSize + (c - b * blockSize);
      const v = bits === 8 ? q.packed[i]! : i & 1 ? q.packed[i >> 1]! >> 4 : q.packed[i >> 1]! & 0x0f;
      out[r * q.k + c] = q.scales[r * q.blocks + b]! * (v - zero);
    }
  }
  return out;
}

/**
 * x Wᵀ with the baked float32 weight `w` ([N, K] `out_in` or [K, N] `in_out`) replaced by its
 * quantised form: one MatMulNBits node (`accuracy_level` 4: int8 products where the CPU has them)
 * on two new initializers, `{w}.q{bits}` and `{w}.scales`. The float32 initializer is left for any
 * other use (a tied embedding's Gather) and dropped from the model when nothing else reads it.
 */
export function quantizedMatMul(x: Tensor, w: Tensor, data: Float32Array, layout: 'out_in' | 'in_out', spec: QuantizeSpec): Tensor {
  const g: Graph = x.g;
  const q = quantizeWeight(data, w.shape as number[], layout, spec);
  const packed = g.initializer(`${w.name}.q${spec.bits}`, 'uint8', [q.n, q.blocks, (spec.blockSize * spec.bits) / 8], q.packed);
  const scales = g.initializer(`${w.name}.scales`, 'float32', [q.n * q.blocks], q.scales);
  const attrs = { K: q.k, N: q.n, bits: spec.bits, block_size: spec.blockSize, accuracy_level: 4 };
  return g.node1('MatMulNBits', [x, packed, scales], x.dtype, [...x.shape.slice(0, -1), q.n], attrs, 'com.microsoft');
}
