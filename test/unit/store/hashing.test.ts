/**
 * Artifact hashing (activities/store/manifest.ts): `sha256HexStreamed` gives the same digest as a
 * one-shot sha256 — empty input, less than a chunk, an exact number of chunks and a partial last
 * chunk — and yields to the event loop between its 16 MiB chunks, so a callback queued before a
 * 40 MiB hash starts runs before the hash is done (a one-shot hash would finish first).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { HASH_CHUNK_BYTES, sha256HexStreamed } from '../../../activities/store/manifest.js';

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

test('a 40 MiB hash lets the event loop turn between chunks: a callback queued before it runs before it is done', async () => {
  const b = bytes(2.5 * HASH_CHUNK_BYTES);
  const order: string[] = [];
  setImmediate(() => order.push('event loop'));
  await sha256HexStreamed(b).then(() => order.push('hash'));
  assert.deepEqual(order, ['event loop', 'hash']);
});
