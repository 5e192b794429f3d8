/**
 * Gradient checks of shape and indexing ops (see gradcheck.ts for method and tolerances): Reshape,
 * Transpose, Slice, Concat, Split, Unsqueeze, Squeeze, Expand, Gather (embedding lookup with
 * repeated ids: scatter-add), GatherElements.
 */
import { test } from 'node:test';
import * as F from '../../../activities/model/ops.js';
import { checkGrad } from './gradcheck.js';

test('Reshape with 0 and -1', () =>
  checkGrad({ name: 'reshape', inputs: [{ name: 'x', shape: [2, 3, 4] }], build: (x) => F.tanh(F.reshape(x, [0, -1, 2])) }));

test('Transpose with a 3-cycle permutation', () =>
  checkGrad({ name: 'transpose', inputs: [{ name: 'x', shape: [2, 3, 4] }], build: (x) => F.transpose(x, [2, 0, 1]) }));

test('Slice with negative starts, clamped ends and two axes', () =>
  checkGrad({
    name: 'slice',
    inputs: [{ name: 'x', shape: [4, 5, 3] }],
    build: (x) => F.add(F.slice(x, [1, -3], [3, 1000], [0, 1]), F.slice(x, [0, 0], [2, 3], [0, 1])),
  }));

test('Concat of three tensors (one reused)', () =>
  checkGrad({
    name: 'concat',
    inputs: [
      { name: 'a', shape: [2, 3] },
      { name: 'b', shape: [2, 1] },
    ],
    build: (a, b) => F.concat([a, b, a], 1),
  }));

test('Split into unequal parts, one part unused', () =>
  checkGrad({
    name: 'split',
    inputs: [{ name: 'x', shape: [6, 2] }],
    build: (x) => {
      const [p, q] = F.split(x, [2, 3, 1], 0);
      return F.concat([F.mul(p!, 2), F.tanh(q!)], 0);
    },
  }));

test('Unsqueeze and Squeeze', () =>
  checkGrad({
    name: 'unsqueeze',
    inputs: [{ name: 'x', shape: [3, 1, 4] }],
    build: (x) => F.mul(F.unsqueeze(F.squeeze(x, [1]), [0, -1]), 3),
  }));

test('Expand broadcasts and sums the gradient back', () =>
  checkGrad({ name: 'expand', inputs: [{ name: 'x', shape: [3, 1] }], build: (x) => F.expand(x, [2, 3, 4]) }));

test('Gather (embedding lookup) with repeated ids scatter-adds', () =>
  checkGrad({
    name: 'gather',
    inputs: [
      { name: 'w', shape: [5, 3] },
      { name: 'ids', shape: [2, 4], kind: 'int', values: [0, 3, 3, 1, 4, 0, 3, 2] },
    ],
    build: (w, ids) => F.gather(w, ids, 0),
  }));

test('GatherElements picks per-row entries (target logprobs)', () =>
  checkGrad({
    name: 'gatherelements',
    inputs: [
      { name: 'x', shape: [2, 3, 5] },
      { name: 'ids', shape: [2, 3, 1], kind: 'int', values: [4, 0, 2, 2, 1, 4] },
    ],
    build: (x, ids) => F.gatherElements(F.logSoftmax(x, -1), ids, -1),
  }));

test('Pad with zeros at both ends of two axes', () =>
  checkGrad({ name: 'pad', inputs: [{ name: 'x', shape: [2, 3] }], build: (x) => F.tanh(F.pad(x, [1, 0, 2, 1], [0, 1])) }));
