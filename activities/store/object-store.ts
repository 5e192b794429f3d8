/**
 * The object-store interface: a flat namespace of immutable-by-convention byte objects under
 * validated keys (see keys.ts). Two implementations, chosen by URI in open.ts: `file://DIR`
 * (file-store.ts) and `s3://bucket/prefix` (s3-store.ts). Both write atomically: a reader sees
 * either the whole old object, the whole new one, or none — never part of one.
 */
import type { Readable } from 'node:stream';
import { NotFoundError } from './errors.js';

/** What `put` accepts: bytes, or a stream of byte chunks (a Node Readable is one). */
export type Body = Uint8Array | AsyncIterable<Uint8Array>;

export interface ObjectInfo {
  /** Key relative to the store root. */
  key: string;
  /** Size in bytes. */
  size: number;
}

export interface ObjectStore {
  /** The store's own URI (`file:///abs/dir`, `s3://bucket/prefix`), for messages. */
  readonly root: string;
  /** Writes (or replaces) an object atomically. Streams of any size; S3 uses multipart when large. */
  put(key: string, body: Body): Promise<{ size: number }>;
  /**
   * Creates the object only if no object has the key; true if this call created it, false if it
   * already existed (its content is left untouched). Of concurrent callers exactly one gets true.
   */
  putIfAbsent(key: string, bytes: Uint8Array): Promise<boolean>;
  /** The whole object; NotFoundError (naming the URI) if absent. */
  get(key: string): Promise<Uint8Array>;
  /** The object as a stream; NotFoundError is thrown before the stream is returned. */
  getStream(key: string): Promise<Readable>;
  /** Size of the object, or undefined if absent. */
  head(key: string): Promise<{ size: number } | undefined>;
  /** Every object whose key starts with `prefix` (plain string prefix), in ascending UTF-8 byte order of keys. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Removes the object; removing an absent key is not an error. */
  delete(key: string): Promise<void>;
  /** Full URI of a key, for messages and UIs. Validates the key. */
  uri(key: string): string;
  /** Releases connections (S3 client sockets). The store must not be used afterwards. */
  close(): Promise<void>;
}

/** Byte-wise (UTF-8) ordering of keys, the order S3 lists in. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** Normalises a Body into an async iterable of Uint8Array chunks. */
export async function* chunksOf(body: Body): AsyncIterable<Uint8Array> {
  if (body instanceof Uint8Array) {
    yield body;
    return;
  }
  for await (const chunk of body) {
    if (typeof chunk === 'string') yield Buffer.from(chunk, 'utf8');
    else yield chunk;
  }
}

/** Reads a whole stream into one Uint8Array. */
export async function readAll(stream: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of stream) {
    parts.push(chunk);
    size += chunk.byteLength;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** The object at `key`, or undefined when there is none (other errors are thrown). */
export async function getIfExists(store: ObjectStore, key: string): Promise<Uint8Array | undefined> {
  try {
    return await store.get(key);
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
}
