/**
 * The environment variables through which servers are handed to processes: `endpointsEnv` writes
 * them for child processes; `externalTemporal` / `externalS3` read externally provided servers,
 * which `up` then uses instead of starting its own. TLS and API-key settings for a production
 * cluster or Temporal Cloud (DURABLE_RL_TEMPORAL_TLS_*, DURABLE_RL_TEMPORAL_API_KEY) are read by
 * workers/temporal.ts, which makes the connections; infra never connects to external servers.
 *
 *   DURABLE_RL_TEMPORAL_ADDRESS        host:port of the Temporal frontend (gRPC)
 *   DURABLE_RL_TEMPORAL_NAMESPACE      namespace (default "default")
 *   DURABLE_RL_TEMPORAL_UI             Web UI URL, for links in logs (optional)
 *   DURABLE_RL_S3_ENDPOINT             S3 endpoint URL (MinIO or another S3-compatible server)
 *   DURABLE_RL_S3_ACCESS_KEY_ID, DURABLE_RL_S3_SECRET_ACCESS_KEY   static credentials; leave both
 *                                      unset to use the AWS SDK's standard credential chain
 *   DURABLE_RL_S3_BUCKET               bucket (default "durable-rl")
 *   DURABLE_RL_S3_REGION               region (default "us-east-1")
 */
import { parseConfig, z } from '../activities/common/config.js';

export interface TemporalEndpoint {
  /** gRPC address, host:port. */
  address: string;
  namespace: string;
  /** Web UI URL ('' when unknown). */
  uiUrl: string;
}

export interface S3Endpoint {
  /** Endpoint URL, e.g. http://127.0.0.1:9000 ('' for AWS S3's default endpoints). */
  endpoint: string;
  region: string;
  bucket: string;
  /** Static credentials; both '' means "use the AWS SDK's default credential chain". */
  accessKeyId: string;
  secretAccessKey: string;
}

export interface InfraEndpoints {
  temporal: TemporalEndpoint;
  minio: S3Endpoint;
}

/** The default bucket and region of durable-rl's object store. */
export const DEFAULT_BUCKET = 'durable-rl';
export const DEFAULT_REGION = 'us-east-1';
export const DEFAULT_NAMESPACE = 'default';

/** env vars (DURABLE_RL_TEMPORAL_*, DURABLE_RL_S3_*) describing `e`, for child processes. */
export function endpointsEnv(e: InfraEndpoints): Record<string, string> {
  return {
    DURABLE_RL_TEMPORAL_ADDRESS: e.temporal.address,
    DURABLE_RL_TEMPORAL_NAMESPACE: e.temporal.namespace,
    DURABLE_RL_TEMPORAL_UI: e.temporal.uiUrl,
    DURABLE_RL_S3_ENDPOINT: e.minio.endpoint,
    DURABLE_RL_S3_ACCESS_KEY_ID: e.minio.accessKeyId,
    DURABLE_RL_S3_SECRET_ACCESS_KEY: e.minio.secretAccessKey,
    DURABLE_RL_S3_BUCKET: e.minio.bucket,
    DURABLE_RL_S3_REGION: e.minio.region,
  };
}

const nonEmpty = (what: string) => z.string().min(1, `${what} must not be empty`);

const ExternalTemporalSchema = z.object({
  DURABLE_RL_TEMPORAL_ADDRESS: nonEmpty('the address').regex(
    /^[^\s/]+:\d+$/,
    'expected host:port, e.g. 127.0.0.1:7233 or myns.a1b2c.tmprl.cloud:7233',
  ),
  DURABLE_RL_TEMPORAL_NAMESPACE: nonEmpty('the namespace').default(DEFAULT_NAMESPACE),
  DURABLE_RL_TEMPORAL_UI: z.string().default(''),
});

const ExternalS3Schema = z
  .object({
    DURABLE_RL_S3_ENDPOINT: z.url('expected a URL such as http://127.0.0.1:9000'),
    DURABLE_RL_S3_ACCESS_KEY_ID: z.string().default(''),
    DURABLE_RL_S3_SECRET_ACCESS_KEY: z.string().default(''),
    DURABLE_RL_S3_BUCKET: nonEmpty('the bucket').default(DEFAULT_BUCKET),
    DURABLE_RL_S3_REGION: nonEmpty('the region').default(DEFAULT_REGION),
  })
  .refine((v) => (v.DURABLE_RL_S3_ACCESS_KEY_ID === '') === (v.DURABLE_RL_S3_SECRET_ACCESS_KEY === ''), {
    message: 'set both DURABLE_RL_S3_ACCESS_KEY_ID and DURABLE_RL_S3_SECRET_ACCESS_KEY, or neither (standard AWS credential chain)',
    path: ['DURABLE_RL_S3_SECRET_ACCESS_KEY'],
  });

/** Drops empty-string variables so that `FOO=` counts as unset (and gets its default). */
function pick(env: NodeJS.ProcessEnv, keys: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of keys) {
    const v = env[k];
    if (v !== undefined && v !== '') out[k] = v;
  }
  return out;
}

/** An externally provided Temporal server (DURABLE_RL_TEMPORAL_ADDRESS set), or null. */
export function externalTemporal(env: NodeJS.ProcessEnv = process.env): TemporalEndpoint | null {
  if (!env.DURABLE_RL_TEMPORAL_ADDRESS) return null;
  const v = parseConfig(
    ExternalTemporalSchema,
    pick(env, Object.keys(ExternalTemporalSchema.shape)),
    'Temporal settings from the environment',
  );
  return { address: v.DURABLE_RL_TEMPORAL_ADDRESS, namespace: v.DURABLE_RL_TEMPORAL_NAMESPACE, uiUrl: v.DURABLE_RL_TEMPORAL_UI };
}

/** An externally provided S3 endpoint (DURABLE_RL_S3_ENDPOINT set), or null. */
export function externalS3(env: NodeJS.ProcessEnv = process.env): S3Endpoint | null {
  if (!env.DURABLE_RL_S3_ENDPOINT) return null;
  const keys = [
    'DURABLE_RL_S3_ENDPOINT',
    'DURABLE_RL_S3_ACCESS_KEY_ID',
    'DURABLE_RL_S3_SECRET_ACCESS_KEY',
    'DURABLE_RL_S3_BUCKET',
    'DURABLE_RL_S3_REGION',
  ];
  const v = parseConfig(ExternalS3Schema, pick(env, keys), 'S3 settings from the environment');
  return {
    endpoint: v.DURABLE_RL_S3_ENDPOINT,
    accessKeyId: v.DURABLE_RL_S3_ACCESS_KEY_ID,
    secretAccessKey: v.DURABLE_RL_S3_SECRET_ACCESS_KEY,
    bucket: v.DURABLE_RL_S3_BUCKET,
    region: v.DURABLE_RL_S3_REGION,
  };
}
