/**
 * Where Temporal is and how to reach it: a local dev server (the embedded default, started by
 * `infra/`), any self-hosted cluster, or Temporal Cloud (TLS client certificate or API key).
 *
 * Environment (all optional):
 *   DURABLE_RL_TEMPORAL_ADDRESS      host:port of the frontend (default: the local dev server)
 *   DURABLE_RL_TEMPORAL_NAMESPACE    namespace (default `default`)
 *   DURABLE_RL_TEMPORAL_UI           base URL of the Web UI, for links
 *   DURABLE_RL_TEMPORAL_TLS_CERT     client certificate (PEM file) for mTLS
 *   DURABLE_RL_TEMPORAL_TLS_KEY      its private key (PEM file)
 *   DURABLE_RL_TEMPORAL_TLS_CA       server CA bundle (PEM file), if not a public CA
 *   DURABLE_RL_TEMPORAL_TLS_SERVER_NAME  SNI override
 *   DURABLE_RL_TEMPORAL_API_KEY      Temporal Cloud API key (implies TLS)
 */
import { readFileSync } from 'node:fs';
import { Client, Connection, type ConnectionOptions } from '@temporalio/client';
import { NativeConnection, type NativeConnectionOptions } from '@temporalio/worker';
import { z, parseConfig } from '../activities/common/config.js';
import { installRuntime } from './runtime.js';

export const TemporalConfig = z.strictObject({
  /** host:port of the Temporal frontend (gRPC). The CLI uses the local dev server's when unset. */
  address: z
    .string()
    .regex(/^[^\s:]+:\d+$/, 'must be host:port')
    .default('127.0.0.1:7233'),
  /** Temporal namespace the workflows run in. */
  namespace: z.string().min(1).default('default'),
  /** Base URL of the Web UI; only used to print links to workflows. */
  uiUrl: z.string().url().optional(),
  /** TLS to the frontend (self-hosted mTLS or Temporal Cloud); absent = plaintext, unless apiKey is set. */
  tls: z
    .strictObject({
      /** Client certificate (PEM file) for mTLS; give it with clientKeyPath. */
      clientCertPath: z.string().optional(),
      /** Private key (PEM file) of the client certificate. */
      clientKeyPath: z.string().optional(),
      /** CA bundle (PEM file) that signed the server's certificate, when it is not a public CA. */
      serverRootCACertPath: z.string().optional(),
      /** Server name to verify (SNI) instead of the address's host. */
      serverNameOverride: z.string().optional(),
    })
    .optional(),
  /** Temporal Cloud API key; implies TLS. */
  apiKey: z.string().optional(),
});
export type TemporalConfig = z.output<typeof TemporalConfig>;

/** The Temporal settings given in the environment; undefined address means "use the local dev server". */
export function temporalEnv(env: NodeJS.ProcessEnv = process.env): Partial<TemporalConfig> {
  const tls =
    env.DURABLE_RL_TEMPORAL_TLS_CERT || env.DURABLE_RL_TEMPORAL_TLS_CA || env.DURABLE_RL_TEMPORAL_TLS_SERVER_NAME
      ? {
          clientCertPath: env.DURABLE_RL_TEMPORAL_TLS_CERT,
          clientKeyPath: env.DURABLE_RL_TEMPORAL_TLS_KEY,
          serverRootCACertPath: env.DURABLE_RL_TEMPORAL_TLS_CA,
          serverNameOverride: env.DURABLE_RL_TEMPORAL_TLS_SERVER_NAME,
        }
      : undefined;
  const out: Partial<TemporalConfig> = {};
  if (env.DURABLE_RL_TEMPORAL_ADDRESS) out.address = env.DURABLE_RL_TEMPORAL_ADDRESS;
  if (env.DURABLE_RL_TEMPORAL_NAMESPACE) out.namespace = env.DURABLE_RL_TEMPORAL_NAMESPACE;
  if (env.DURABLE_RL_TEMPORAL_UI) out.uiUrl = env.DURABLE_RL_TEMPORAL_UI;
  if (tls) out.tls = tls;
  if (env.DURABLE_RL_TEMPORAL_API_KEY) out.apiKey = env.DURABLE_RL_TEMPORAL_API_KEY;
  return out;
}

export function temporalConfig(input: unknown): TemporalConfig {
  return parseConfig(TemporalConfig, input, 'temporal config');
}

/** Reads a PEM file named by a TLS option; a failure names the option and the path. */
function pem(option: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`temporal config: cannot read tls.${option} ${JSON.stringify(path)}: ${(err as Error).message}`);
  }
}

function tlsOptions(cfg: TemporalConfig): ConnectionOptions['tls'] {
  if (!cfg.tls && !cfg.apiKey) return undefined;
  const t = cfg.tls ?? {};
  if (Boolean(t.clientCertPath) !== Boolean(t.clientKeyPath)) {
    throw new Error('temporal config: tls.clientCertPath and tls.clientKeyPath must be given together');
  }
  return {
    serverNameOverride: t.serverNameOverride,
    serverRootCACertificate: t.serverRootCACertPath ? pem('serverRootCACertPath', t.serverRootCACertPath) : undefined,
    clientCertPair:
      t.clientCertPath && t.clientKeyPath
        ? { crt: pem('clientCertPath', t.clientCertPath), key: pem('clientKeyPath', t.clientKeyPath) }
        : undefined,
  };
}

function unreachable(cfg: TemporalConfig, err: unknown): Error {
  const why = err instanceof Error ? err.message : String(err);
  return new Error(
    `cannot reach Temporal at ${cfg.address} (namespace ${cfg.namespace}): ${why}. ` +
      'Start the local dev server with `npm run infra -- up`, or set DURABLE_RL_TEMPORAL_ADDRESS.',
  );
}

export async function connectClient(cfg: TemporalConfig): Promise<Client> {
  const tls = tlsOptions(cfg); // a TLS setting error is not an unreachable server
  try {
    const connection = await Connection.connect({
      address: cfg.address,
      tls,
      apiKey: cfg.apiKey,
      connectTimeout: '10s',
    });
    return new Client({ connection, namespace: cfg.namespace });
  } catch (err) {
    throw unreachable(cfg, err);
  }
}

export async function connectWorker(cfg: TemporalConfig): Promise<NativeConnection> {
  installRuntime();
  const tls = tlsOptions(cfg);
  try {
    const options: NativeConnectionOptions = { address: cfg.address, tls, apiKey: cfg.apiKey };
    return await NativeConnection.connect(options);
  } catch (err) {
    throw unreachable(cfg, err);
  }
}

/** Link to a workflow in the Web UI (when the UI address is known). */
export function workflowUrl(cfg: TemporalConfig, workflowId: string): string | undefined {
  if (!cfg.uiUrl) return undefined;
  return `${cfg.uiUrl.replace(/\/$/, '')}/namespaces/${encodeURIComponent(cfg.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}
