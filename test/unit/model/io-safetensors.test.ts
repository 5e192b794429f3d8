import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  f32,
  parseSafetensors,
  readCheckpointDir,
  readSafetensorsFile,
  serializeSafetensors,
  writeCheckpointDir,
  writeSafetensorsFile,
  SafetensorsError,
  toBf16,
  type Tensor,
} from '../../../activities/model/safetensors.js';

/** Builds a safetensors file by hand from a header object and raw data bytes (no padding). */
function handMade(header: Record<string, unknown>, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}
const u16 = (...v: number[]) => new Uint8Array(new Uint16Array(v).buffer);
const readHeaderLength = (file: Uint8Array) => Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));

async function tempDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'durable-rl-st-'));
}

test('round-trip keeps names, shapes, dtypes, metadata and exact float bits', () => {
  const weird = new Float32Array([1.5, -0, NaN, Infinity, -3.25e-38, 1e-45]);
  const tensors = new Map<string, Tensor>([
    ['b.weight', { dtype: 'F32', shape: [2, 3], data: weird }],
    ['a.ids', { dtype: 'I64', shape: [3], data: new BigInt64Array([1n, -2n, 9007199254740993n]) }],
    ['c.count', { dtype: 'I32', shape: [], data: new Int32Array([-7]) }],
    ['empty', { dtype: 'F32', shape: [0, 4], data: new Float32Array(0) }],
  ]);
  const bytes = serializeSafetensors(tensors, { format: 'pt' });
  const back = parseSafetensors(bytes);
  assert.deepEqual(back.metadata, { format: 'pt' });
  assert.deepEqual([...back.tensors.keys()].sort(), ['a.ids', 'b.weight', 'c.count', 'empty']);
  const b = back.tensors.get('b.weight')!;
  assert.equal(b.dtype, 'F32');
  assert.deepEqual(b.shape, [2, 3]);
  assert.deepEqual(new Uint8Array(b.data.buffer), new Uint8Array(weird.buffer));
  assert.deepEqual(back.tensors.get('a.ids')!.data, new BigInt64Array([1n, -2n, 9007199254740993n]));
  assert.deepEqual(back.tensors.get('c.count'), { dtype: 'I32', shape: [], data: new Int32Array([-7]) });
  assert.deepEqual(back.tensors.get('empty')!.shape, [0, 4]);
});

test('writing is deterministic: insertion order does not matter, header is 8-byte aligned, keys sorted', () => {
  const a = f32([2, 2], [1, 2, 3, 4]);
  const b = f32([3], [5, 6, 7]);
  const one = serializeSafetensors(
    new Map([
      ['z', a],
      ['y', b],
      ['__proto__', b],
    ]),
    { b: '2', a: '1' },
  );
  const two = serializeSafetensors(
    new Map([
      ['__proto__', b],
      ['y', b],
      ['z', a],
    ]),
    { a: '1', b: '2' },
  );
  assert.deepEqual(one, two);
  const n = Number(new DataView(one.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  const header = new TextDecoder().decode(one.subarray(8, 8 + n));
  assert.match(header, /^\{"__metadata__":\{"a":"1","b":"2"\},"__proto__":.*"y":.*"z":.*\} *$/);
  assert.deepEqual(parseSafetensors(one).tensors.get('__proto__')!.data, new Float32Array([5, 6, 7]));
  const sha = (x: Uint8Array) => createHash('sha256').update(x).digest('hex');
  assert.equal(sha(serializeSafetensors({ w: f32([2], [0.5, 0.25]) })), sha(serializeSafetensors(new Map([['w', f32([2], [0.5, 0.25])]]))));
});

test('BF16 and F16 are upcast to F32 exactly; I32/I64 read as integers', () => {
  const bf16 = u16(0x3f80, 0xc000, 0x7f80, 0x3e20, 0x0001); // 1, -2, inf, 0.15625, smallest bf16 subnormal
  const f16 = u16(0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x3555); // 1, -2, 65504, 2^-24, inf, 0.333251953125
  const i32 = new Uint8Array(new Int32Array([-1, 2147483647]).buffer);
  const data = new Uint8Array(bf16.length + f16.length + i32.length);
  data.set(bf16, 0);
  data.set(f16, bf16.length);
  data.set(i32, bf16.length + f16.length);
  const file = handMade(
    {
      h: { dtype: 'F16', shape: [6], data_offsets: [10, 22] },
      b: { dtype: 'BF16', shape: [5], data_offsets: [0, 10] },
      i: { dtype: 'I32', shape: [2, 1], data_offsets: [22, 30] },
    },
    data,
  );
  const { tensors, sourceDtypes } = parseSafetensors(file);
  assert.deepEqual(tensors.get('b')!.data, new Float32Array([1, -2, Infinity, 0.15625, 2 ** -133]));
  assert.deepEqual(tensors.get('h')!.data, new Float32Array([1, -2, 65504, 2 ** -24, Infinity, 0.333251953125]));
  assert.equal(tensors.get('b')!.dtype, 'F32');
  assert.equal(sourceDtypes.get('b'), 'BF16');
  assert.deepEqual(tensors.get('i'), { dtype: 'I32', shape: [2, 1], data: new Int32Array([-1, 2147483647]) });
});

test('BF16 is written rounded to nearest, ties to even (overflow to inf, NaN kept), and reads back as the rounded values', () => {
  const bits = [
    0x3f800000, // 1 → 0x3f80
    0x3f808000, // halfway between 0x3f80 and 0x3f81 → the even 0x3f80
    0x3f818000, // halfway between 0x3f81 and 0x3f82 → the even 0x3f82
    0x3f808001, // past halfway → 0x3f81
    0xbf7fffff, // -(1 - 2^-24) → -1 (0xbf80, the carry into the exponent)
    0x7f7fffff, // the largest float32 → inf (past the largest bf16)
    0x80000000, // -0 → 0x8000
    0x7f800001, // a signalling NaN → a quiet NaN (0x7fc0), never inf
  ];
  const data = new Float32Array(new Uint32Array(bits).buffer);
  const t = toBf16({ shape: [bits.length], data });
  assert.deepEqual([...t.data], [0x3f80, 0x3f80, 0x3f82, 0x3f81, 0xbf80, 0x7f80, 0x8000, 0x7fc0]);
  const file = serializeSafetensors({ w: t }, { format: 'pt' });
  const { tensors, sourceDtypes } = parseSafetensors(file);
  assert.equal(sourceDtypes.get('w'), 'BF16');
  assert.equal(file.byteLength - readHeaderLength(file) - 8, bits.length * 2, 'two bytes per value');
  const back = new Uint32Array((tensors.get('w')!.data as Float32Array).buffer);
  assert.deepEqual([...back], [0x3f800000, 0x3f800000, 0x3f820000, 0x3f810000, 0xbf800000, 0x7f800000, 0x80000000, 0x7fc00000]);
});

test('bad headers are rejected with the tensor named', () => {
  const eight = new Uint8Array(8);
  const cases: [Record<string, unknown>, Uint8Array, RegExp][] = [
    [{ w: { dtype: 'F33', shape: [2], data_offsets: [0, 8] } }, eight, /"w": unknown dtype "F33"/],
    [{ w: { dtype: 'U16', shape: [4], data_offsets: [0, 8] } }, eight, /"w": dtype U16 is not supported/],
    [{ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, eight, /"w": data_offsets span 8 bytes but F32 \[3\] needs 12/],
    [{ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, eight, /"w": .*beyond the data region.*truncated/],
    [
      { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, w: { dtype: 'F32', shape: [1], data_offsets: [2, 6] } },
      eight,
      /"w": data_offsets begin 2 but the previous tensor ends at 4/,
    ],
    [{ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, eight, /"a": data_offsets begin 4 but the previous tensor ends at 0/],
    [{ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, eight, /cover 4 bytes but the data region holds 8/],
    [{ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, eight, /"w": shape \[-1\]/],
    [{ __metadata__: { n: 3 } }, new Uint8Array(0), /__metadata__ must be an object of strings/],
  ];
  for (const [header, data, re] of cases) {
    assert.throws(
      () => parseSafetensors(handMade(header, data), 'x.safetensors'),
      (e: unknown) => e instanceof SafetensorsError && re.test(e.message) && e.message.startsWith('x.safetensors'),
      String(re),
    );
  }
  assert.throws(() => parseSafetensors(new Uint8Array(4)), /too short/);
  const huge = new Uint8Array(16);
  new DataView(huge.buffer).setBigUint64(0, 100n, true);
  assert.throws(() => parseSafetensors(huge), /header length 100 runs past the end/);
  const notJson = handMade({}, new Uint8Array(0));
  notJson[8] = 0x5b; // '[' — then '}' makes it invalid JSON
  assert.throws(() => parseSafetensors(notJson), /not valid UTF-8 JSON/);
});

test('files: written atomically, read back tensor by tensor, truncation detected with the file named', async () => {
  const dir = await tempDir();
  try {
    const file = path.join(dir, 'w.safetensors');
    const tensors = { 'x.weight': f32([4, 2], [1, 2, 3, 4, 5, 6, 7, 8]), 'x.bias': f32([2], [9, 10]) };
    await writeSafetensorsFile(file, tensors);
    const back = await readSafetensorsFile(file);
    assert.deepEqual(back.tensors.get('x.weight')!.data, tensors['x.weight'].data);
    assert.deepEqual(await readdir(dir), ['w.safetensors']);
    const bytes = await readFile(file);
    await writeFile(file, bytes.subarray(0, bytes.length - 3));
    await assert.rejects(
      readSafetensorsFile(file),
      (e: unknown) => e instanceof SafetensorsError && e.message.includes(file) && /"x.weight".*truncated|trailing|cover/.test(e.message),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('sharded checkpoints: written with an index, read back whole; single file when small', async () => {
  const dir = await tempDir();
  try {
    const tensors = new Map<string, Tensor>();
    for (let i = 0; i < 5; i++)
      tensors.set(
        `layer.${i}.w`,
        f32(
          [4, 4],
          Array.from({ length: 16 }, (_, j) => i * 100 + j),
        ),
      );
    const files = await writeCheckpointDir(dir, tensors, { maxShardBytes: 130 }); // two 64-byte tensors per shard
    assert.deepEqual(files, [
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      'model.safetensors.index.json',
    ]);
    const index = JSON.parse(await readFile(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    assert.equal(index.metadata.total_size, 5 * 64);
    assert.equal(index.weight_map['layer.4.w'], 'model-00003-of-00003.safetensors');
    const back = await readCheckpointDir(dir);
    assert.equal(back.tensors.size, 5);
    for (const [name, t] of tensors) assert.deepEqual(back.tensors.get(name)!.data, t.data);
    // Re-writing small replaces the shards with one file.
    assert.deepEqual(await writeCheckpointDir(dir, tensors), ['model.safetensors']);
    assert.deepEqual((await readdir(dir)).sort(), ['model.safetensors']);
    assert.equal((await readCheckpointDir(dir)).tensors.size, 5);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('sharded checkpoints: index/shard disagreements are named', async () => {
  const dir = await tempDir();
  try {
    await writeCheckpointDir(dir, { a: f32([2]), b: f32([2]), c: f32([4]) }, { maxShardBytes: 16 }); // [a, b], [c]
    const indexPath = path.join(dir, 'model.safetensors.index.json');
    const index = JSON.parse(await readFile(indexPath, 'utf8'));
    await writeFile(indexPath, JSON.stringify({ ...index, weight_map: { ...index.weight_map, d: 'model-00002-of-00002.safetensors' } }));
    await assert.rejects(readCheckpointDir(dir), /tensor "d" is listed in model.safetensors.index.json but missing from the shard/);
    await writeFile(
      indexPath,
      JSON.stringify({ weight_map: { a: 'model-00001-of-00002.safetensors', c: 'model-00002-of-00002.safetensors' } }),
    );
    await assert.rejects(readCheckpointDir(dir), /tensor "b" is in the shard but model.safetensors.index.json does not map it/);
    await writeFile(indexPath, JSON.stringify({ weight_map: { a: '../evil.safetensors' } }));
    await assert.rejects(readCheckpointDir(dir), /weight_map\["a"\] must be a shard file name/);
    await writeFile(indexPath, JSON.stringify({ weight_map: { a: 'model-00009-of-00009.safetensors' } }));
    await assert.rejects(readCheckpointDir(dir), /shard model-00009-of-00009.safetensors .* does not exist/);
    await rm(dir, { recursive: true });
    await assert.rejects(readCheckpointDir(dir), /no model.safetensors and no model.safetensors.index.json/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('writing rejects tensors whose data does not match shape or dtype', () => {
  assert.throws(
    () => serializeSafetensors({ w: { dtype: 'F32', shape: [3], data: new Float32Array(2) } }),
    /"w": 2 elements do not fill shape \[3\]/,
  );
  assert.throws(
    () => serializeSafetensors({ w: { dtype: 'I64', shape: [1], data: new Float32Array(1) } as unknown as Tensor }),
    /"w": dtype I64 does not match its Float32Array/,
  );
});
