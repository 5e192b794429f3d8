/**
 * An object store that counts the bytes that go through it: what an activity read and wrote
 * (activities/run/stage.ts wraps each activity's store in one; the step metrics sum them as
 * `io/bytes_read` and `io/bytes_written`).
 *
 * Read: whole objects (`get`) and streamed ones as they are consumed (`getStream`). Written: what
 * `put` stored and what `putIfAbsent` created (an object that already existed wrote nothing).
 * Listing, `head` and `delete` move no object bytes.
 */
import { Transform, type Readable } from 'node:stream';
import type { Body, ObjectStore } from './object-store.js';

export interface ByteCounts {
  bytesRead: number;
  bytesWritten: number;
}

export interface CountingStore extends ObjectStore {
  /** Bytes read and written through this store so far. */
  counts(): ByteCounts;
}

/** `store` with byte counters (the underlying store is used as is; closing this closes it). */
export function countingStore(store: ObjectStore): CountingStore {
  const c: ByteCounts = { bytesRead: 0, bytesWritten: 0 };
  return {
    root: store.root,
    async put(key: string, body: Body) {
      const r = await store.put(key, body);
      c.bytesWritten += r.size;
      return r;
    },
    async putIfAbsent(key: string, bytes: Uint8Array) {
      const created = await store.putIfAbsent(key, bytes);
      if (created) c.bytesWritten += bytes.length;
      return created;
    },
    async get(key: string) {
      const bytes = await store.get(key);
      c.bytesRead += bytes.length;
      return bytes;
    },
    async getStream(key: string): Promise<Readable> {
      const source = await store.getStream(key);
      const counter = new Transform({
        transform(chunk: Buffer, _enc, done) {
          c.bytesRead += chunk.length;
          done(null, chunk);
        },
      });
      source.once('error', (e) => counter.destroy(e));
      counter.once('close', () => {
        if (!source.destroyed) source.destroy();
      });
      return source.pipe(counter);
    },
    head: (key) => store.head(key),
    list: (prefix) => store.list(prefix),
    delete: (key) => store.delete(key),
    uri: (key) => store.uri(key),
    close: () => store.close(),
    counts: () => ({ ...c }),
  };
}
