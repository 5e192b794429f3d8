/**
 * `s3://bucket/prefix` — the object store on AWS S3 or any S3-compatible server (MinIO in tests),
 * through @aws-sdk/client-s3.
 *
 * - Endpoint override and path-style addressing for S3-compatible servers; AWS's standard
 *   credential chain unless explicit keys are given.
 * - Every request goes through withRetry (retry.ts): capped exponential backoff with full jitter on
 *   throttling, 5xx and network errors. The SDK's own retries are off (maxAttempts 1) so the
 *   attempt count is the one configured here.
 * - Objects above `partSizeBytes` (and streams longer than one part) are sent as a multipart
 *   upload whose parts are retried one by one; a failed upload is aborted.
 * - `putIfAbsent` is a conditional PUT with `If-None-Match: *`; 412 means "already exists".
 * - Request checksums are sent only where S3 requires them (`WHEN_REQUIRED`): many S3-compatible
 *   servers reject the SDK's newer default trailers, and the manifests' sha256 (manifest.ts)
 *   already checks every committed byte end to end.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import type { Readable } from 'node:stream';
import { logger } from '../common/log.js';
import { NotFoundError, StoreError } from './errors.js';
import { validateKey, validatePrefix } from './keys.js';
import { chunksOf, type Body, type ObjectInfo, type ObjectStore } from './object-store.js';
import { describeError, httpStatus, withRetry, type RetryPolicy } from './retry.js';

/** Resolved S3 settings (see `S3OptionsSchema` in open.ts for each field's meaning and default). */
export interface S3Settings extends RetryPolicy {
  endpoint?: string | undefined;
  region: string;
  accessKeyId?: string | undefined;
  secretAccessKey?: string | undefined;
  sessionToken?: string | undefined;
  forcePathStyle: boolean;
  partSizeBytes: number;
  partConcurrency: number;
  connectTimeoutMs: number;
  idleTimeoutMs: number;
}

/** S3's limit for a single PUT (and so for putIfAbsent). */
const MAX_SINGLE_PUT = 5 * 1024 ** 3;
const MAX_PARTS = 10_000;

const log = logger('store');

function isNotFound(err: unknown): boolean {
  const name = (err as { name?: string } | null)?.name;
  if (name === 'NoSuchBucket') return false; // a configuration error, not a missing object
  return httpStatus(err) === 404 || name === 'NoSuchKey' || name === 'NotFound';
}

export class S3Store implements ObjectStore {
  readonly root: string;
  private readonly client: S3Client;

  constructor(
    readonly bucket: string,
    /** Key prefix inside the bucket, without leading or trailing `/` ('' for the bucket root). */
    readonly prefix: string,
    private readonly settings: S3Settings,
  ) {
    this.root = `s3://${bucket}${prefix ? `/${prefix}` : ''}`;
    const config: S3ClientConfig = {
      region: settings.region,
      forcePathStyle: settings.forcePathStyle,
      maxAttempts: 1,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: { connectionTimeout: settings.connectTimeoutMs, socketTimeout: settings.idleTimeoutMs },
    };
    if (settings.endpoint) config.endpoint = settings.endpoint;
    if (settings.accessKeyId && settings.secretAccessKey) {
      config.credentials = {
        accessKeyId: settings.accessKeyId,
        secretAccessKey: settings.secretAccessKey,
        ...(settings.sessionToken ? { sessionToken: settings.sessionToken } : {}),
      };
    }
    this.client = new S3Client(config);
  }

  uri(key: string): string {
    validateKey(key);
    return `${this.root}/${key}`;
  }

  private objectKey(key: string): string {
    validateKey(key);
    return this.prefix ? `${this.prefix}/${key}` : key;
  }

  /** Runs one S3 call with retries; a final failure becomes a StoreError naming the operation and URI. */
  private async call<T>(op: string, key: string, fn: () => Promise<T>): Promise<T> {
    const uri = key === '' ? this.root : this.uri(key);
    let attempts = 0;
    try {
      return await withRetry(`${op} ${uri}`, this.settings, (attempt) => {
        attempts = attempt;
        return fn();
      });
    } catch (err) {
      if (err instanceof StoreError) throw err;
      throw this.wrap(op, uri, err, attempts);
    }
  }

  private wrap(op: string, uri: string, err: unknown, attempts: number): StoreError {
    const name = (err as { name?: string } | null)?.name;
    const status = httpStatus(err);
    let hint = '';
    if (name === 'NoSuchBucket') hint = ` — bucket "${this.bucket}" does not exist; create it first`;
    else if (status === 403 || name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch') {
      hint =
        ' — check the credentials (DURABLE_RL_S3_ACCESS_KEY_ID / DURABLE_RL_S3_SECRET_ACCESS_KEY or the AWS credential chain) and the bucket policy';
    } else if (name === 'CredentialsProviderError') {
      hint =
        ' — no credentials found; set DURABLE_RL_S3_ACCESS_KEY_ID and DURABLE_RL_S3_SECRET_ACCESS_KEY or configure the AWS credential chain';
    }
    const tries = attempts > 1 ? ` after ${attempts} attempts` : '';
    return new StoreError('io', `${op} ${uri} failed${tries}: ${describeError(err)}${hint}`, { cause: err });
  }

  async put(key: string, body: Body): Promise<{ size: number }> {
    const objectKey = this.objectKey(key);
    const partSize = this.settings.partSizeBytes;
    if (body instanceof Uint8Array && body.byteLength <= partSize) {
      await this.call('PUT', key, () =>
        this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: objectKey, Body: body, ContentLength: body.byteLength })),
      );
      return { size: body.byteLength };
    }
    // Gather the first part: a stream that ends within it is a single PUT, anything longer is multipart.
    const parts = body instanceof Uint8Array ? slicesOf(body, partSize) : partsOf(chunksOf(body), partSize);
    const first = await parts.next();
    const firstPart = first.done ? new Uint8Array(0) : first.value;
    const second = first.done ? first : await parts.next();
    if (second.done) {
      await this.call('PUT', key, () =>
        this.client.send(
          new PutObjectCommand({ Bucket: this.bucket, Key: objectKey, Body: firstPart, ContentLength: firstPart.byteLength }),
        ),
      );
      return { size: firstPart.byteLength };
    }
    return this.multipart(key, objectKey, prepend([firstPart, second.value], parts));
  }

  private async multipart(key: string, objectKey: string, parts: AsyncIterator<Uint8Array>): Promise<{ size: number }> {
    const created = await this.call('CreateMultipartUpload', key, () =>
      this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey })),
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new StoreError('io', `CreateMultipartUpload ${this.uri(key)} returned no UploadId`);
    const done: CompletedPart[] = [];
    let size = 0;
    const inFlight = new Set<Promise<void>>();
    try {
      let failure: unknown;
      for (let partNumber = 1; ; partNumber++) {
        const next = await parts.next();
        if (next.done) break;
        if (partNumber > MAX_PARTS) {
          throw new StoreError('io', `PUT ${this.uri(key)}: more than ${MAX_PARTS} parts; raise partSizeBytes`);
        }
        const bytes = next.value;
        size += bytes.byteLength;
        const p = this.call(`UploadPart ${partNumber}`, key, () =>
          this.client.send(
            new UploadPartCommand({
              Bucket: this.bucket,
              Key: objectKey,
              UploadId: uploadId,
              PartNumber: partNumber,
              Body: bytes,
              ContentLength: bytes.byteLength,
            }),
          ),
        )
          .then((r) => {
            done.push({ PartNumber: partNumber, ETag: r.ETag });
          })
          .catch((err: unknown) => {
            failure ??= err;
          })
          .finally(() => inFlight.delete(p));
        inFlight.add(p);
        if (inFlight.size >= this.settings.partConcurrency) await Promise.race(inFlight);
        if (failure) throw failure;
      }
      await Promise.all(inFlight);
      if (failure) throw failure;
      done.sort((a, b) => a.PartNumber! - b.PartNumber!);
      await this.call('CompleteMultipartUpload', key, async () => {
        try {
          await this.client.send(
            new CompleteMultipartUploadCommand({
              Bucket: this.bucket,
              Key: objectKey,
              UploadId: uploadId,
              MultipartUpload: { Parts: done },
            }),
          );
        } catch (err) {
          // A retried Complete whose first try succeeded (answer lost) finds the upload gone.
          if ((err as { name?: string }).name === 'NoSuchUpload') {
            const h = await this.head(key);
            if (h?.size === size) return;
          }
          throw err;
        }
      });
      return { size };
    } catch (err) {
      // Parts still uploading would land after the abort and be kept (and billed) as orphans:
      // let them settle first (they never reject; their failures were recorded above).
      await Promise.all(inFlight);
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId }))
        .catch((abortErr: unknown) => log.warn({ uri: this.uri(key), err: describeError(abortErr) }, 'could not abort multipart upload'));
      throw err;
    }
  }

  async putIfAbsent(key: string, bytes: Uint8Array): Promise<boolean> {
    const objectKey = this.objectKey(key);
    if (bytes.byteLength > MAX_SINGLE_PUT) {
      throw new StoreError('io', `putIfAbsent ${this.uri(key)}: ${bytes.byteLength} bytes is over S3's single-PUT limit of 5 GiB`);
    }
    return this.call('PUT If-None-Match', key, async () => {
      try {
        await this.client.send(
          new PutObjectCommand({
            Bucket: this.bucket,
            Key: objectKey,
            Body: bytes,
            ContentLength: bytes.byteLength,
            IfNoneMatch: '*',
          }),
        );
        return true;
      } catch (err) {
        if (httpStatus(err) === 412 || (err as { name?: string }).name === 'PreconditionFailed') return false;
        throw err;
      }
    });
  }

  async get(key: string): Promise<Uint8Array> {
    const objectKey = this.objectKey(key);
    return this.call('GET', key, async () => {
      try {
        const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: objectKey }));
        if (!r.Body) return new Uint8Array(0);
        return await r.Body.transformToByteArray();
      } catch (err) {
        if (isNotFound(err)) throw new NotFoundError(this.uri(key));
        throw err;
      }
    });
  }

  async getStream(key: string): Promise<Readable> {
    const objectKey = this.objectKey(key);
    return this.call('GET', key, async () => {
      try {
        const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: objectKey }));
        if (!r.Body) throw new StoreError('io', `GET ${this.uri(key)} returned no body`);
        return r.Body as Readable;
      } catch (err) {
        if (isNotFound(err)) throw new NotFoundError(this.uri(key));
        throw err;
      }
    });
  }

  async head(key: string): Promise<{ size: number } | undefined> {
    const objectKey = this.objectKey(key);
    return this.call('HEAD', key, async () => {
      try {
        const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: objectKey }));
        return { size: r.ContentLength ?? 0 };
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    });
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    validatePrefix(prefix);
    const full = this.prefix ? `${this.prefix}/${prefix}` : prefix;
    const strip = this.prefix ? this.prefix.length + 1 : 0;
    let token: string | undefined;
    do {
      const page = await this.call('LIST', '', () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: full, ContinuationToken: token })),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue;
        yield { key: o.Key.slice(strip), size: o.Size ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    const objectKey = this.objectKey(key);
    await this.call('DELETE', key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey })));
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

/** Regroups a chunk stream into parts of exactly `size` bytes (the last may be shorter, never empty unless the stream is). */
async function* partsOf(chunks: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Uint8Array> {
  let buf = new Uint8Array(size);
  let fill = 0;
  for await (const chunk of chunks) {
    let off = 0;
    while (off < chunk.byteLength) {
      const n = Math.min(size - fill, chunk.byteLength - off);
      buf.set(chunk.subarray(off, off + n), fill);
      fill += n;
      off += n;
      if (fill === size) {
        yield buf;
        buf = new Uint8Array(size);
        fill = 0;
      }
    }
  }
  if (fill > 0) yield buf.subarray(0, fill);
}

/** Zero-copy parts of a byte array. */
async function* slicesOf(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.byteLength; at += size) yield bytes.subarray(at, Math.min(at + size, bytes.byteLength));
}

/** An iterator that yields `first` and then the rest of `rest`. */
function prepend<T>(first: T[], rest: AsyncIterator<T>): AsyncIterator<T> {
  let i = 0;
  return {
    next: async () => (i < first.length ? { done: false, value: first[i++]! } : rest.next()),
  };
}
