/**
 * Opening a store by URI:
 *
 *   file:///abs/dir, file://relative/dir   the embedded store (file-store.ts); a relative path is
 *                                          resolved against the working directory
 *   s3://bucket, s3://bucket/some/prefix   AWS S3 or an S3-compatible server (s3-store.ts)
 *
 * S3 settings come from `options.s3` or, where absent, from the environment (`s3OptionsFromEnv`).
 */
import { fileURLToPath } from 'node:url';
import { parseConfig, z } from '../common/config.js';
import { InvalidUriError } from './errors.js';
import { validateKey } from './keys.js';
import { FileStore } from './file-store.js';
import type { ObjectStore } from './object-store.js';
import { S3Store } from './s3-store.js';

const MiB = 1024 * 1024;

/** Settings of the s3:// backend. Every field optional; defaults live here. */
export const S3OptionsSchema = z
  .strictObject({
    /** Endpoint URL of an S3-compatible server (`http://127.0.0.1:9000` for MinIO); unset for AWS S3. */
    endpoint: z.url().optional(),
    /** Signing region. Default: `AWS_REGION`, else `us-east-1` (what MinIO expects unless configured). */
    region: z.string().min(1).optional(),
    /** Explicit access key; give both keys or neither. Neither = the standard AWS credential chain (env, profile, SSO, IMDS...). */
    accessKeyId: z.string().min(1).optional(),
    /** Explicit secret key; see accessKeyId. */
    secretAccessKey: z.string().min(1).optional(),
    /** Session token to go with explicit temporary keys. */
    sessionToken: z.string().min(1).optional(),
    /** Path-style URLs (`endpoint/bucket/key`) instead of virtual-host style. Default: true when `endpoint` is set (MinIO needs it). */
    forcePathStyle: z.boolean().optional(),
    /** Attempts per request, first try included, before a transient error (throttling, 5xx, network) is final. */
    maxAttempts: z.number().int().min(1).max(20).default(5),
    /** Backoff cap before the first retry (ms); doubles per retry, full jitter. */
    baseDelayMs: z.number().min(0).default(100),
    /** Upper bound of a single backoff (ms). */
    maxDelayMs: z.number().min(0).default(10_000),
    /** Multipart part size in bytes; objects larger than one part are uploaded in parts. S3 needs at least 5 MiB. */
    partSizeBytes: z
      .number()
      .int()
      .min(5 * MiB)
      .max(5 * 1024 * MiB)
      .default(8 * MiB),
    /** Parts uploaded at once (memory: partSizeBytes × this). */
    partConcurrency: z.number().int().min(1).max(64).default(4),
    /** TCP connect timeout (ms). */
    connectTimeoutMs: z.number().int().min(1).default(10_000),
    /** A socket idle this long (ms) is dropped and the request retried. */
    idleTimeoutMs: z.number().int().min(1).default(120_000),
  })
  .refine((o) => (o.accessKeyId === undefined) === (o.secretAccessKey === undefined), {
    message: 'give both accessKeyId and secretAccessKey, or neither (to use the AWS credential chain)',
    path: ['secretAccessKey'],
  });
export type S3Options = z.input<typeof S3OptionsSchema>;

/** Settings of the file:// backend. */
export const FileOptionsSchema = z.strictObject({
  /** fsync written files and their directories (durable across power loss). Turn off only for throwaway data. */
  fsync: z.boolean().default(true),
});
export type FileOptions = z.input<typeof FileOptionsSchema>;

export interface StoreOptions {
  /** s3:// settings; when absent, read from the environment (s3OptionsFromEnv). */
  s3?: S3Options;
  file?: FileOptions;
}

export type ParsedStoreUri = { scheme: 'file'; dir: string } | { scheme: 's3'; bucket: string; prefix: string };

const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** Splits a store URI into its parts; InvalidUriError says what is wrong and what forms are accepted. */
export function parseStoreUri(uri: string): ParsedStoreUri {
  if (typeof uri !== 'string' || uri === '') throw new InvalidUriError(String(uri), 'expected file://DIR or s3://bucket/prefix');
  if (uri.startsWith('file://')) {
    let dir: string;
    if (uri.startsWith('file:///') || uri.startsWith('file://localhost/')) {
      try {
        dir = fileURLToPath(uri);
      } catch (err) {
        throw new InvalidUriError(uri, `not a valid file URL (${(err as Error).message})`);
      }
    } else {
      dir = decodeURIComponent(uri.slice('file://'.length)); // file://relative/dir
    }
    if (dir === '') throw new InvalidUriError(uri, 'no directory given; use file:///absolute/dir or file://relative/dir');
    return { scheme: 'file', dir };
  }
  if (uri.startsWith('s3://')) {
    const rest = uri.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    let prefix = slash < 0 ? '' : rest.slice(slash + 1);
    if (prefix.endsWith('/')) prefix = prefix.slice(0, -1);
    if (!BUCKET.test(bucket) || bucket.includes('..')) {
      throw new InvalidUriError(uri, `"${bucket}" is not a valid bucket name (3-63 characters: lowercase letters, digits, "." and "-")`);
    }
    if (prefix !== '') {
      try {
        validateKey(prefix);
      } catch (err) {
        throw new InvalidUriError(uri, `bad prefix: ${(err as Error).message}`);
      }
    }
    return { scheme: 's3', bucket, prefix };
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(uri)?.[1];
  throw new InvalidUriError(
    uri,
    scheme
      ? `unsupported scheme "${scheme}:"; use file://DIR or s3://bucket/prefix`
      : 'not a URI; use file:///absolute/dir, file://relative/dir or s3://bucket/prefix',
  );
}

/**
 * S3 options from the environment: `DURABLE_RL_S3_ENDPOINT`, `DURABLE_RL_S3_REGION`,
 * `DURABLE_RL_S3_ACCESS_KEY_ID`, `DURABLE_RL_S3_SECRET_ACCESS_KEY`, `DURABLE_RL_S3_SESSION_TOKEN`,
 * `DURABLE_RL_S3_MAX_ATTEMPTS`. Unset variables are left out (defaults and the AWS chain apply).
 */
export function s3OptionsFromEnv(env: NodeJS.ProcessEnv = process.env): S3Options {
  const o: S3Options = {};
  const v = (name: string) => {
    const x = env[`DURABLE_RL_S3_${name}`];
    return x === undefined || x === '' ? undefined : x;
  };
  const endpoint = v('ENDPOINT');
  if (endpoint) o.endpoint = endpoint;
  const region = v('REGION');
  if (region) o.region = region;
  const id = v('ACCESS_KEY_ID');
  if (id) o.accessKeyId = id;
  const secret = v('SECRET_ACCESS_KEY');
  if (secret) o.secretAccessKey = secret;
  const token = v('SESSION_TOKEN');
  if (token) o.sessionToken = token;
  const attempts = v('MAX_ATTEMPTS');
  if (attempts) o.maxAttempts = Number(attempts);
  return o;
}

/** Opens the store a URI names. Options are validated (ConfigError names the bad field); empty strings count as unset. */
export function openStore(uri: string, options: StoreOptions = {}): ObjectStore {
  const parsed = parseStoreUri(uri);
  if (parsed.scheme === 'file') {
    const fileOptions = parseConfig(FileOptionsSchema, options.file ?? {}, 'file store options');
    return new FileStore(parsed.dir, fileOptions);
  }
  // '' means "not set" (as in environment variables and infra's endpoint records).
  const given = Object.fromEntries(Object.entries(options.s3 ?? s3OptionsFromEnv()).filter(([, v]) => v !== ''));
  // Settings read from the environment say so, so that "maxAttempts" leads to DURABLE_RL_S3_MAX_ATTEMPTS.
  const what = options.s3 ? 's3 store options' : 's3 store options from the DURABLE_RL_S3_* environment variables';
  const s3 = parseConfig(S3OptionsSchema, given, what);
  return new S3Store(parsed.bucket, parsed.prefix, {
    ...s3,
    region: s3.region ?? process.env.AWS_REGION ?? 'us-east-1',
    forcePathStyle: s3.forcePathStyle ?? s3.endpoint !== undefined,
  });
}

/** Runs `fn` with the store a URI names, closing the store afterwards (whatever `fn` does). */
export async function withStore<T>(uri: string, fn: (store: ObjectStore) => Promise<T>, options: StoreOptions = {}): Promise<T> {
  const store = openStore(uri, options);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}
