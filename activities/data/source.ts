/**
 * Where a dataset file is and how its bytes are read: a local path (`./data/train.jsonl`,
 * `/abs/train.parquet`), a `file://` URL or an `s3://bucket/key` object read through the project's
 * object store (activities/store/open.ts: the same S3 settings, `DURABLE_RL_S3_*` or the AWS
 * chain, as the run's store). Every file is identified by its URI, size and sha256, which run.json
 * records; a file that changes under the same URI is refused by the run that recorded it.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { openStore } from '../store/open.js';

/** The identity of a dataset file, as run.json records it. */
export interface DataFileIdentity {
  /** `file:///abs/path` or `s3://bucket/key`. */
  uri: string;
  /** Bytes. */
  size: number;
  /** sha256 of the bytes, hex. */
  sha256: string;
}

/** A file that cannot be read (missing, no permission, no such object); the message names the URI. */
export class DataSourceError extends Error {
  override readonly name = 'DataSourceError';
}

/**
 * The canonical URI of a dataset reference: `s3://…` as given; `file:///abs` as given; a relative
 * path or `file://relative` resolved against `baseDir` (the config file's directory; the working
 * directory when a config is not read from a file). Idempotent on its own output.
 */
export function resolveDataUri(ref: string, baseDir: string = process.cwd()): string {
  if (ref.startsWith('s3://')) return ref;
  if (ref.startsWith('file:///') || ref.startsWith('file://localhost/')) return pathToFileURL(fileURLToPath(ref)).href;
  const path = ref.startsWith('file://') ? decodeURIComponent(ref.slice('file://'.length)) : ref;
  return pathToFileURL(isAbsolute(path) ? path : resolvePath(baseDir, path)).href;
}

/** Splits `s3://bucket/dir/name` into the store URI of its directory and the object key under it. */
function s3Parts(uri: string): { storeUri: string; key: string } {
  const rest = uri.slice('s3://'.length);
  const slash = rest.lastIndexOf('/');
  if (slash < 0 || slash === rest.length - 1) throw new DataSourceError(`${uri}: an s3:// dataset names an object: s3://bucket/key`);
  return { storeUri: `s3://${rest.slice(0, slash)}`, key: rest.slice(slash + 1) };
}

/** The bytes of a dataset file and its identity. */
export async function readDataFile(uri: string): Promise<{ bytes: Uint8Array; identity: DataFileIdentity }> {
  let bytes: Uint8Array;
  try {
    if (uri.startsWith('s3://')) {
      const { storeUri, key } = s3Parts(uri);
      const store = openStore(storeUri);
      try {
        bytes = await store.get(key);
      } finally {
        await store.close();
      }
    } else {
      bytes = await readFile(fileURLToPath(resolveDataUri(uri)));
    }
  } catch (err) {
    if (err instanceof DataSourceError) throw err;
    throw new DataSourceError(`cannot read ${uri}: ${(err as Error).message.split('\n')[0]}`);
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return { bytes, identity: { uri, size: bytes.byteLength, sha256 } };
}
