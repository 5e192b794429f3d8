/**
 * Gradient checks of the elementwise ops (see gradcheck.ts for the method and tolerances):
 * broadcasting binary ops, unary ops, Where, Clip, Cast, composite SiLU.
 */
import { test } from 'node:test';
import * as F from '../../../activities/model/ops.js';
import { checkGrad } from './gradcheck.js';

test('Add with broadcasting (rank and size-1 dims)', () =>
  checkGrad({
    name: 'add',
    inputs: [
      { name: 'a', shape: [2, 3, 4] },
      { name: 'b', shape: [3, 1] },
    ],
    build: (a, b) => F.add(a, b),
  }));

test('Sub with broadcasting on both sides', () =>
  checkGrad({
    name: 'sub',
    inputs: [
      { name: 'a', shape: [2, 1, 4] },
      { name: 'b', shape: [3, 1] },
    ],
    build: (a, b) => F.sub(a, b),
  }));

test('Mul with broadcasting and a reused operand (gradient accumulation)', () =>
  checkGrad({
    name: 'mul',
    inputs: [
      { name: 'a', shape: [2, 3] },
      { name: 'b', shape: [3] },
    ],
    build: (a, b) => F.mul(F.mul(a, b), F.add(a, b)),
  }));

test('Div with broadcasting', () =>
  checkGrad({
    name: 'div',
    inputs: [
      { name: 'a', shape: [4, 3] },
      { name: 'b', shape: [1, 3], kind: 'positive' },
    ],
    build: (a, b) => F.div(a, b),
  }));

test('Pow with a tensor exponent (both gradients)', () =>
  checkGrad({
    name: 'pow',
    inputs: [
      { name: 'a', shape: [2, 3], kind: 'positive' },
      { name: 'b', shape: [3] },
    ],
    build: (a, b) => F.pow(a, b),
  }));

test('Pow with a constant exponent', () =>
  checkGrad({ name: 'pow-const', inputs: [{ name: 'a', shape: [5] }], build: (a) => F.pow(a, 3) }));

test('Min and Max of two tensors with broadcasting', () =>
  checkGrad({
    name: 'minmax',
    inputs: [
      { name: 'a', shape: [3, 4] },
      { name: 'b', shape: [4] },
    ],
    build: (a, b) => F.add(F.minimum(a, b), F.mul(F.maximum(a, b), 2)),
  }));

test('Where with a broadcast condition', () =>
  checkGrad({
    name: 'where',
    inputs: [
      { name: 'c', shape: [3, 1], kind: 'bool' },
      { name: 'a', shape: [3, 4] },
      { name: 'b', shape: [4] },
    ],
    build: (c, a, b) => F.where(c, a, b),
  }));

test('Neg, Exp, Tanh, Sigmoid', () =>
  checkGrad({
    name: 'unary',
    inputs: [{ name: 'x', shape: [2, 5] }],
    build: (x) => F.add(F.add(F.neg(F.exp(x)), F.tanh(x)), F.sigmoid(x)),
  }));

test('Log and Sqrt on positive inputs', () =>
  checkGrad({ name: 'logsqrt', inputs: [{ name: 'x', shape: [2, 4], kind: 'positive' }], build: (x) => F.mul(F.log(x), F.sqrt(x)) }));

// onnxruntime's CPU Erf and Gelu kernels are float32 only: float32 tolerances.
test('Erf (float32)', () => checkGrad({ name: 'erf', dtype: 'float32', inputs: [{ name: 'x', shape: [3, 4] }], build: (x) => F.erf(x) }));

test('Gelu exact and tanh approximation', () =>
  checkGrad({
    name: 'gelu',
    dtype: 'float32',
    inputs: [{ name: 'x', shape: [3, 4] }],
    build: (x) => F.add(F.gelu(x, 'none'), F.mul(F.gelu(x, 'tanh'), 0.5)),
  }));

// onnxruntime's QuickGelu fusion rewrites x * sigmoid(x) into a float32-only kernel even in double
// graphs, so this float64 check runs with basic optimisations.
test('SiLU (composite)', () =>
  checkGrad({ name: 'silu', inputs: [{ name: 'x', shape: [6] }], build: (x) => F.silu(x), optimization: 'basic' }));

test('Clip with both bounds and with one', () =>
  checkGrad({
    name: 'clip',
    inputs: [{ name: 'x', shape: [12] }],
    build: (x) => F.add(F.clip(x, -0.5, 0.7), F.clip(x, undefined, 0.2)),
  }));

test('Cast float32 <-> float64 carries the gradient (float32 tolerances)', () =>
  checkGrad({
    name: 'cast',
    dtype: 'float32',
    inputs: [{ name: 'x', shape: [2, 3] }],
    build: (x) => F.cast(F.tanh(F.cast(x, 'float64')), 'float32'),
  }));

test('Relu', () => checkGrad({ name: 'relu', inputs: [{ name: 'x', shape: [10] }], build: (x) => F.relu(x) }));
