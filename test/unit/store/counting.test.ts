import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { countingStore } from '../../../activities/store/counting.js';
import { openStore } from '../../../activities/store/open.js';

test('counting store: put 10 + putIfAbsent 5 written (a second putIfAbsent of 7 writes 0), get 10 + a consumed stream of 5 read; list, head, delete move 0', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'durable-rl-counting-'));
  const store = countingStore(openStore(pathToFileURL(dir).href));
  try {
    await store.put('a', new Uint8Array(10));
    assert.equal(await store.putIfAbsent('b', new Uint8Array(5)), true);
    assert.equal(await store.putIfAbsent('b', new Uint8Array(7)), false);
    assert.deepEqual(store.counts(), { bytesRead: 0, bytesWritten: 15 });
    assert.equal((await store.get('a')).length, 10);
    let streamed = 0;
    for await (const chunk of await store.getStream('b')) streamed += (chunk as Buffer).length;
    assert.equal(streamed, 5);
    assert.equal((await store.head('a'))?.size, 10);
    for await (const _ of store.list('')) void _;
    await store.delete('a');
    assert.deepEqual(store.counts(), { bytesRead: 15, bytesWritten: 15 });
    await assert.rejects(() => store.getStream('a'), /a/);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
});
