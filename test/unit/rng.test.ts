import { test } from 'node:test';
import assert from 'node:assert/strict';
import { philox4x32, CounterRng, hash32 } from '../../activities/common/rng.js';

const hex = (w: Uint32Array) => Array.from(w, (x) => x.toString(16).padStart(8, '0'));

test('philox4x32-10 matches the Random123 known-answer vectors', () => {
  assert.deepEqual(hex(philox4x32(0, 0, 0, 0, 0, 0)), ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']);
  const f = 0xffffffff;
  assert.deepEqual(hex(philox4x32(f, f, f, f, f, f)), ['408f276d', '41c83b0e', 'a20bc7c6', '6d5451fd']);
  assert.deepEqual(hex(philox4x32(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0)), [
    'd16cfe09',
    '94fdcceb',
    '5001e420',
    '24126ea1',
  ]);
});

test('a stream is random-access and depends on every coordinate', () => {
  const a = new CounterRng(1234, 3, 'prompt-7', 2);
  const forward = Array.from({ length: 20 }, (_, i) => a.uniform(i));
  const b = new CounterRng(1234, 3, 'prompt-7', 2);
  assert.equal(b.uniform(17), forward[17]);
  for (const other of [
    new CounterRng(1235, 3, 'prompt-7', 2),
    new CounterRng(1234, 4, 'prompt-7', 2),
    new CounterRng(1234, 3, 'prompt-8', 2),
    new CounterRng(1234, 3, 'prompt-7', 3),
  ]) {
    assert.notEqual(other.uniform(0), forward[0]);
  }
});

test('uniforms lie in [0,1) with mean near 1/2, normals have mean 0 and variance 1', () => {
  const r = new CounterRng(99);
  const n = 20000;
  let s = 0,
    sn = 0,
    sn2 = 0;
  for (let i = 0; i < n; i++) {
    const u = r.uniform(i);
    assert.ok(u >= 0 && u < 1);
    s += u;
    const z = r.normal(i + n);
    sn += z;
    sn2 += z * z;
  }
  assert.ok(Math.abs(s / n - 0.5) < 0.01, `uniform mean ${s / n}`);
  assert.ok(Math.abs(sn / n) < 0.03, `normal mean ${sn / n}`);
  assert.ok(Math.abs(sn2 / n - 1) < 0.05, `normal variance ${sn2 / n}`);
});

test('bad seeds and coordinates are rejected with the offending value', () => {
  assert.throws(() => new CounterRng(-1), /seed must be a non-negative safe integer, got -1/);
  assert.throws(() => new CounterRng(1, 1.5), /coordinate must be an integer/);
  assert.equal(hash32(''), 0x811c9dc5);
});
