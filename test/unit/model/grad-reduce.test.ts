/**
 * Gradient checks of reductions and normalisations (see gradcheck.ts for method and tolerances):
 * ReduceSum/Mean/Max with and without keepdims, Softmax, LogSoftmax, LayerNormalization, RMSNorm.
 */
import { test } from 'node:test';
import * as F from '../../../activities/model/ops.js';
import { checkGrad } from './gradcheck.js';

test('ReduceSum over several axes, keepdims and not', () =>
  checkGrad({
    name: 'reducesum',
    inputs: [{ name: 'x', shape: [2, 3, 4] }],
    build: (x) => F.add(F.reduceSum(x, [0, 2], true), F.unsqueeze(F.reduceSum(x, [-1]), [-1])),
  }));

test('ReduceSum over all axes to a scalar', () =>
  checkGrad({ name: 'reducesum-all', inputs: [{ name: 'x', shape: [3, 2] }], build: (x) => F.reduceSum(F.mul(x, x)) }));

test('ReduceMean with keepdims and without', () =>
  checkGrad({
    name: 'reducemean',
    inputs: [{ name: 'x', shape: [2, 3, 4] }],
    build: (x) => F.add(F.reduceMean(x, [1], true), F.unsqueeze(F.reduceMean(x, [0, 1]), [0, 1])),
  }));

test('ReduceMax routes the gradient to the maximum', () =>
  checkGrad({
    name: 'reducemax',
    inputs: [{ name: 'x', shape: [3, 5] }],
    build: (x) => F.add(F.reduceMax(x, [1], true), F.unsqueeze(F.reduceMax(x, [0]), [0])),
  }));

test('Softmax on the last and on a middle axis', () =>
  checkGrad({
    name: 'softmax',
    inputs: [{ name: 'x', shape: [2, 3, 4] }],
    build: (x) => F.add(F.softmax(x, -1), F.softmax(x, 1)),
  }));

test('LogSoftmax', () => checkGrad({ name: 'logsoftmax', inputs: [{ name: 'x', shape: [3, 6] }], build: (x) => F.logSoftmax(x, -1) }));

test('LayerNormalization over the last axis with scale and bias', () =>
  checkGrad({
    name: 'layernorm',
    inputs: [
      { name: 'x', shape: [2, 3, 5] },
      { name: 'w', shape: [5] },
      { name: 'b', shape: [5] },
    ],
    build: (x, w, b) => F.layerNorm(x, w, b, 1e-5),
  }));

test('LayerNormalization over the last two axes without bias', () =>
  checkGrad({
    name: 'layernorm2',
    inputs: [
      { name: 'x', shape: [2, 3, 4] },
      { name: 'w', shape: [3, 4] },
    ],
    build: (x, w) => F.layerNorm(x, w, null, 1e-5, 1),
  }));

test('RMSNorm (composite)', () =>
  checkGrad({
    name: 'rmsnorm',
    inputs: [
      { name: 'x', shape: [2, 3, 6] },
      { name: 'w', shape: [6] },
    ],
    build: (x, w) => F.rmsNorm(x, w, 1e-6),
  }));
