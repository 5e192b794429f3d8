/**
 * Gradient checks of linear algebra and attention (see gradcheck.ts for method and tolerances):
 * batched MatMul with broadcast batch dims, the 2-D-weight GEMM path, Gemm with transposes, and
 * causal self-attention with a padding mask composed from the primitive ops.
 */
import { test } from 'node:test';
import * as F from '../../../activities/model/ops.js';
import { causalAttention } from '../../../activities/model/attention.js';
import { checkGrad } from './gradcheck.js';

test('MatMul with broadcast batch dimensions', () =>
  checkGrad({
    name: 'matmul-batched',
    inputs: [
      { name: 'a', shape: [2, 1, 3, 4] },
      { name: 'b', shape: [3, 4, 2] },
    ],
    build: (a, b) => F.matmul(a, b),
  }));

test('MatMul of activations by a 2-D weight (flattened GEMM gradient)', () =>
  checkGrad({
    name: 'matmul-2d',
    inputs: [
      { name: 'x', shape: [2, 3, 4] },
      { name: 'w', shape: [4, 5] },
    ],
    build: (x, w) => F.matmul(x, w),
  }));

test('MatMul of a transposed weight (HF Linear layout)', () =>
  checkGrad({
    name: 'matmul-t',
    inputs: [
      { name: 'x', shape: [2, 3, 4] },
      { name: 'w', shape: [5, 4] },
    ],
    build: (x, w) => F.matmul(x, F.transpose(w, [1, 0])),
  }));

for (const layout of ['in_out', 'out_in'] as const) {
  test(`linear layer, weight stored ${layout}, with bias`, () =>
    checkGrad({
      name: `linear-${layout}`,
      inputs: [
        { name: 'x', shape: [2, 3, 4] },
        { name: 'w', shape: layout === 'in_out' ? [4, 5] : [5, 4] },
        { name: 'b', shape: [5] },
      ],
      build: (x, w, b) => F.linear(x, w, b, layout),
    }));
}

for (const [ta, tb] of [
  [false, false],
  [true, false],
  [false, true],
  [true, true],
] as const) {
  test(`Gemm transA=${ta} transB=${tb} with bias`, () =>
    checkGrad({
      name: `gemm-${ta}-${tb}`,
      inputs: [
        { name: 'a', shape: ta ? [4, 3] : [3, 4] },
        { name: 'b', shape: tb ? [2, 4] : [4, 2] },
        { name: 'c', shape: [2] },
      ],
      build: (a, b, c) => F.gemm(a, b, { transA: ta, transB: tb, c }),
    }));
}

test('causal attention with grouped KV heads and a padding mask', () =>
  checkGrad({
    name: 'attention',
    inputs: [
      { name: 'q', shape: [2, 4, 3, 2], declared: ['batch', 4, 'seq', 2] },
      { name: 'k', shape: [2, 2, 3, 2], declared: ['batch', 2, 'seq', 2] },
      { name: 'v', shape: [2, 2, 3, 2], declared: ['batch', 2, 'seq', 2] },
      { name: 'mask', shape: [2, 3], kind: 'bool', values: [0, 1, 1, 1, 1, 1], declared: ['batch', 'seq'] },
    ],
    // Outputs of padding queries are zeroed, as the models' loss masks do: a query that sees no
    // key at all gets uniform weights whatever its scores, so only its gradient to v is defined.
    build: (q, k, v, mask) => F.mul(causalAttention(q, k, v, { keyMask: mask }), F.unsqueeze(F.cast(mask, 'float64'), [1, 3])),
  }));
