/**
 * The MinIO server: command line and environment, credentials, health, and the bucket.
 *
 * MinIO listens on loopback only (S3 API and console), stores one drive under the state dir, and
 * uses root credentials generated once per state dir (kept in the 0600 state file). The bucket is
 * created through @aws-sdk/client-s3 with path-style addressing, the same client the object store
 * uses, so a healthy `up` means the store's S3 path works.
 */
import { randomBytes } from 'node:crypto';
import { CreateBucketCommand, HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { LOOPBACK } from './proc.js';
import type { MinioState } from './state.js';

export const MINIO_PORTS = ['api', 'console'] as const;

export function minioEndpoint(s: Pick<MinioState, 'ports'>): string {
  return `http://${LOOPBACK}:${s.ports.api}`;
}

export function minioConsoleUrl(s: Pick<MinioState, 'ports'>): string {
  return `http://${LOOPBACK}:${s.ports.console}`;
}

/**
 * Fresh root credentials. These are secrets, so they come from the OS CSPRNG (node:crypto), not
 * from the project's seeded CounterRng, whose outputs are reproducible by design.
 */
export function generateCredentials(): { accessKeyId: string; secretAccessKey: string } {
  return {
    accessKeyId: `drl${randomBytes(8).toString('hex')}`, // 19 chars (MinIO: 3..20)
    secretAccessKey: randomBytes(30).toString('base64url'), // 40 chars (MinIO: 8..40)
  };
}

export function minioArgs(s: Pick<MinioState, 'ports' | 'dataDir'>): string[] {
  return ['server', s.dataDir, '--address', `${LOOPBACK}:${s.ports.api}`, '--console-address', `${LOOPBACK}:${s.ports.console}`, '--quiet'];
}

/** The server's environment: credentials and region; no update checks (we pin the version). */
export function minioEnv(s: Pick<MinioState, 'accessKeyId' | 'secretAccessKey' | 'region'>, base: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return {
    ...base,
    MINIO_ROOT_USER: s.accessKeyId,
    MINIO_ROOT_PASSWORD: s.secretAccessKey,
    MINIO_SITE_REGION: s.region,
    MINIO_UPDATE: 'off',
  };
}

/** One liveness probe of /minio/health/live; returns the reason when unhealthy. */
export async function minioProbe(s: Pick<MinioState, 'ports'>, timeoutMs = 2_000): Promise<string | null> {
  const url = `${minioEndpoint(s)}/minio/health/live`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.ok ? null : `${url}: HTTP ${res.status}`;
  } catch (e) {
    return `${url}: ${(e as Error).message}`;
  }
}

/** An S3 client for this server (path-style, static credentials). The caller destroys it. */
export function s3Client(s: Pick<MinioState, 'ports' | 'accessKeyId' | 'secretAccessKey' | 'region'>): S3Client {
  return new S3Client({
    endpoint: minioEndpoint(s),
    region: s.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey },
  });
}

/** Creates the bucket unless it exists. Returns true when it was created now. */
export async function ensureBucket(
  s: Pick<MinioState, 'ports' | 'accessKeyId' | 'secretAccessKey' | 'region' | 'bucket'>,
): Promise<boolean> {
  const client = s3Client(s);
  try {
    try {
      await client.send(new HeadBucketCommand({ Bucket: s.bucket }));
      return false;
    } catch (e) {
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status !== 404)
        throw new Error(`checking bucket ${s.bucket} at ${minioEndpoint(s)}: ${(e as Error).name} ${(e as Error).message}`);
    }
    try {
      await client.send(new CreateBucketCommand({ Bucket: s.bucket }));
    } catch (e) {
      const name = (e as Error).name;
      if (name === 'BucketAlreadyOwnedByYou' || name === 'BucketAlreadyExists') return false;
      throw new Error(`creating bucket ${s.bucket} at ${minioEndpoint(s)}: ${name} ${(e as Error).message}`);
    }
    return true;
  } finally {
    client.destroy();
  }
}
