/**
 * The graph builder: ModelProto encoding (round trip through the protobuf decoder and through
 * onnxruntime), symbolic dims, name scoping, constants deduplication, the text dump, build-time
 * shape errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { Graph, decodeModel, OPSET } from '../../../activities/model/graph.js';
import * as F from '../../../activities/model/ops.js';

test('a built model encodes to a ModelProto that decodes to the same graph and runs in onnxruntime', async () => {
  const g = new Graph({ name: 'tiny' });
  const x = g.input('x', 'float32', ['batch', 3]);
  const w = g.initializer('w', 'float32', [3, 2], Float32Array.from([1, 2, 3, 4, 5, 6]));
  const y = g.scope('layer.0', () => F.add(F.matmul(x, w), 1));
  g.output(y, 'y');
  const bytes = g.toBytes();
  const m = decodeModel(bytes);
  const gp = m.graph!;
  const dims = gp.input![0]!.type!.tensorType!.shape!.dim!;
  assert.equal(Number(m.irVersion), 9);
  assert.deepEqual(
    m.opsetImport.map((o) => [o.domain, Number(o.version)]),
    [['', OPSET]],
  );
  assert.equal(gp.input![0]!.name, 'x');
  assert.equal(dims[0]!.dimParam, 'batch');
  assert.equal(Number(dims[1]!.dimValue), 3);
  assert.deepEqual(
    gp.node!.map((n) => n.opType),
    ['MatMul', 'Add'],
    'a named output renames its producer (no Identity copy)',
  );
  assert.deepEqual(gp.node![1]!.output, ['y']);
  assert.ok(gp.node![0]!.output![0]!.startsWith('layer.0/'), 'values are named under their scope');
  const wInit = gp.initializer!.find((i) => i.name === 'w')!;
  assert.deepEqual(Array.from(new Float32Array(Uint8Array.from(wInit.rawData!).buffer)), [1, 2, 3, 4, 5, 6]);

  const s = await ort.InferenceSession.create(bytes);
  const r = await s.run({ x: new ort.Tensor('float32', Float32Array.from([1, 0, 0, 0, 1, 1]), [2, 3]) });
  assert.deepEqual(r.y!.dims, [2, 2]);
  assert.deepEqual(Array.from(r.y!.data as Float32Array), [2, 3, 9, 11]);
});

test('a value output twice, or a graph input output, gets an Identity', () => {
  const g = new Graph();
  const x = g.input('x', 'float32', [2]);
  const y = F.neg(x);
  g.output(y, 'first');
  g.output(y, 'second');
  g.output(x, 'x_again');
  assert.deepEqual(
    g.nodes.map((n) => n.opType),
    ['Neg', 'Identity', 'Identity'],
  );
  const m = decodeModel(g.toBytes());
  assert.deepEqual(m.graph!.node![1]!.input, ['first'], 'consumers of a renamed value use its new name');
});

test('small constants are deduplicated and the dump lists inputs, initializers, nodes, outputs', () => {
  const g = new Graph({ name: 'dump' });
  const x = g.input('x', 'float64', [null, 4]);
  const a = F.mul(x, 2);
  const b = F.mul(a, 2);
  g.output(b, 'out');
  assert.equal(g.initializers.length, 1, 'the scalar 2 is stored once');
  const text = g.dump();
  assert.match(text, /input {2}x: float64\[\?, 4\]/);
  assert.match(text, /init {3}const_\d+: float64\[\] = \[2\]/);
  assert.match(text, /= Mul\(x, const_\d+\)/);
  assert.match(text, /output out: float64\[\?, 4\]/);
});

test('build-time shape checks name the op and the shapes', () => {
  const g = new Graph();
  const a = g.input('a', 'float32', [2, 3]);
  const b = g.input('b', 'float32', [4, 3]);
  assert.throws(() => F.add(a, b), /Add: shapes \[2, 3\] and \[4, 3\] do not broadcast/);
  assert.throws(() => F.matmul(a, b), /MatMul: inner dimensions differ: \[2, 3\] @ \[4, 3\]/);
  assert.throws(() => F.reshape(a, [5, -1]), /cannot reshape \[2, 3\]/);
  const i = g.input('i', 'int64', [2]);
  assert.throws(() => F.add(a, i), /operand dtypes differ \(float32 vs int64: i\)/);
  assert.throws(() => g.input('a', 'float32', [1]), /input name "a" is already used/);
});

test('symbolic dims flow through broadcasting and reshapes with 0', () => {
  const g = new Graph();
  const x = g.input('x', 'float32', ['batch', 'seq', 8]);
  const y = F.reshape(F.add(x, g.input('b', 'float32', [8])), [0, 0, 2, 4]);
  assert.deepEqual(y.shape, ['batch', 'seq', 2, 4]);
  assert.deepEqual(F.reshape(x, [-1, 8]).shape, [null, 8]);
});
