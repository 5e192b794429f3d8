/**
 * Artifact hashing (activities/store/manifest.ts, hash-thread.ts): `sha256HexStreamed` gives the
 * same digest as a one-shot sha256 — empty input, less than a chunk, sizes around the chunk
 * boundary (where it switches from hashing here to the hashing thread, and where the thread's
 * chunks end), several hashes at once — and leaves the caller's bytes as they were. The main
 * thread's event loop keeps turning while a large buffer is hashed: a callback queued before a
 * 40 MiB hash runs before the hash is done, and a 256 MiB hash lets many turns through (the
 * hash runs on another thread; hashed here between 16 chunks it would let about 16).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { HASH_CHUNK_BYTES } from '../../../activities/store/hash-thread.js';
import { sha256HexStreamed } from '../../../activities/store/manifest.js';

function bytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 2654435761) >>> 24;
  return b;
}
const oneShot = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('the streamed sha256 of 0 bytes, 1 KiB, 2 chunks and 2.5 chunks is the one-shot sha256', async () => {
  assert.equal(await sha256HexStreamed(new Uint8Array(0)), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  for (const n of [1024, 2 * HASH_CHUNK_BYTES, 2.5 * HASH_CHUNK_BYTES]) {
    const b = bytes(n);
    assert.equal(await sha256HexStreamed(b), oneShot(b), `${n} bytes`);
  }
});

test('around the chunk boundary (one chunk ± 1 byte, two chunks ± 1 byte) the digest is crypto’s one-shot sha256, and the bytes are unchanged', async () => {
  const C = HASH_CHUNK_BYTES;
  const big = bytes(2 * C + 1);
  const before = oneShot(big);
  for (const n of [C - 1, C, C + 1, 2 * C - 1, 2 * C, 2 * C + 1]) {
    const b = big.subarray(0, n); // a view of a larger buffer: only its own bytes are hashed
    assert.equal(await sha256HexStreamed(b), oneShot(b), `${n} bytes`);
  }
  assert.equal(big.byteLength, 2 * C + 1, 'the caller’s buffer was detached');
  assert.equal(oneShot(big), before, 'the caller’s bytes changed');
});

test('three large hashes at once each get their own digest', async () => {
  const inputs = [bytes(HASH_CHUNK_BYTES + 7), bytes(3 * HASH_CHUNK_BYTES).reverse(), bytes(2 * HASH_CHUNK_BYTES).fill(5)];
  const got = await Promise.all(inputs.map((b) => sha256HexStreamed(b)));
  assert.deepEqual(
    got,
    inputs.map((b) => oneShot(b)),
  );
  assert.equal(new Set(got).size, 3);
});

test('a 40 MiB hash lets the event loop turn: a callback queued before it runs before it is done', async () => {
  const b = bytes(2.5 * HASH_CHUNK_BYTES);
  const order: string[] = [];
  setImmediate(() => order.push('event loop'));
  await sha256HexStreamed(b).then(() => order.push('hash'));
  assert.deepEqual(order, ['event loop', 'hash']);
});

test('while a 256 MiB buffer is hashed the main thread’s event loop turns over 1000 times (16 chunks: hashed here, about 16)', async () => {
  const b = new Uint8Array(256 << 20).fill(0xa5);
  const chunks = b.byteLength / HASH_CHUNK_BYTES;
  const expected = oneShot(b);
  await sha256HexStreamed(new Uint8Array(HASH_CHUNK_BYTES)); // the hashing thread started, so its start-up is not counted
  let ticks = 0;
  let hashing = true;
  const spin = () => {
    ticks++;
    if (hashing) setImmediate(spin);
  };
  setImmediate(spin);
  const hex = await sha256HexStreamed(b);
  hashing = false;
  assert.equal(hex, expected);
  assert.ok(ticks > 1000, `${ticks} turns of the event loop during a hash of ${chunks} chunks`);
});
