/**
 * The Temporal dev server (`temporal server start-dev`): command line, health check, and the
 * project's custom search attributes.
 *
 * The server listens on loopback only, persists to a SQLite file, serves the Web UI, and gets the
 * search attributes of workflows/search-attributes.ts at first start (`--search-attribute`). The
 * dev server only applies that flag when it creates the namespace, so attributes added to the list
 * later are registered through the operator API by `ensureSearchAttributes`.
 */
import type { Connection } from '@temporalio/client';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes.js';
import { SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';
import { LOOPBACK } from './proc.js';
import type { TemporalState } from './state.js';

export const TEMPORAL_PORTS = ['grpc', 'ui', 'http', 'metrics'] as const;
export type TemporalPorts = TemporalState['ports'];

export function temporalAddress(s: Pick<TemporalState, 'ports'>): string {
  return `${LOOPBACK}:${s.ports.grpc}`;
}

export function temporalUiUrl(s: Pick<TemporalState, 'ports'>): string {
  return `http://${LOOPBACK}:${s.ports.ui}`;
}

/** `temporal server start-dev` arguments for this state. */
export function startDevArgs(s: Pick<TemporalState, 'ports' | 'dbFile' | 'namespace'>): string[] {
  const args = [
    'server',
    'start-dev',
    '--ip',
    LOOPBACK,
    '--port',
    String(s.ports.grpc),
    '--ui-ip',
    LOOPBACK,
    '--ui-port',
    String(s.ports.ui),
    '--http-port',
    String(s.ports.http),
    '--metrics-port',
    String(s.ports.metrics),
    '--db-filename',
    s.dbFile,
  ];
  if (s.namespace !== 'default') args.push('--namespace', s.namespace);
  for (const sa of SEARCH_ATTRIBUTES) args.push('--search-attribute', `${sa.name}=${sa.type}`);
  return args;
}

/** Opens a client connection (the caller closes it). */
export async function connect(address: string, timeoutMs = 3_000): Promise<Connection> {
  const { Connection } = await import('@temporalio/client');
  return Connection.connect({ address, connectTimeout: timeoutMs });
}

/**
 * One health probe: the frontend answers DescribeNamespace for our namespace (so persistence is up
 * and the namespace exists) and the Web UI answers HTTP. Returns the reason when unhealthy.
 */
export async function temporalProbe(s: Pick<TemporalState, 'ports' | 'namespace'>, timeoutMs = 3_000): Promise<string | null> {
  let conn: Connection | undefined;
  try {
    conn = await connect(temporalAddress(s), timeoutMs);
    const c = conn;
    await c.withDeadline(Date.now() + timeoutMs, () => c.workflowService.describeNamespace({ namespace: s.namespace }));
  } catch (e) {
    return `gRPC ${temporalAddress(s)}: ${(e as Error).message}`;
  } finally {
    await conn?.close().catch(() => {});
  }
  try {
    const res = await fetch(temporalUiUrl(s), { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    if (!res.ok) return `Web UI ${temporalUiUrl(s)}: HTTP ${res.status}`;
  } catch (e) {
    return `Web UI ${temporalUiUrl(s)}: ${(e as Error).message}`;
  }
  return null;
}

/** The custom search attributes registered on `namespace`: name → CLI type name (Keyword, Int, ...). */
export async function listSearchAttributes(address: string, namespace: string): Promise<Record<string, string>> {
  const conn = await connect(address);
  try {
    const r = await conn.operatorService.listSearchAttributes({ namespace });
    const out: Record<string, string> = {};
    for (const [name, type] of Object.entries(r.customAttributes ?? {})) out[name] = typeName(type);
    return out;
  } finally {
    await conn.close();
  }
}

/** Proto enum name → the CLI's type name, as used in SEARCH_ATTRIBUTES and `--search-attribute`. */
const TYPE_NAMES = {
  TEXT: 'Text',
  KEYWORD: 'Keyword',
  INT: 'Int',
  DOUBLE: 'Double',
  BOOL: 'Bool',
  DATETIME: 'Datetime',
  KEYWORD_LIST: 'KeywordList',
} as const;

function typeName(code: number): string {
  for (const [enumName, cliName] of Object.entries(TYPE_NAMES)) {
    if (encodeSearchAttributeIndexedValueType(enumName as keyof typeof TYPE_NAMES) === code) return cliName;
  }
  return `IndexedValueType(${code})`;
}

function typeCode(cliName: string): number {
  for (const [enumName, n] of Object.entries(TYPE_NAMES)) {
    if (n === cliName) return encodeSearchAttributeIndexedValueType(enumName as keyof typeof TYPE_NAMES) as number;
  }
  throw new Error(`unknown search attribute type ${cliName}; expected one of ${Object.values(TYPE_NAMES).join(', ')}`);
}

/**
 * Registers every attribute of SEARCH_ATTRIBUTES missing on the namespace. An attribute that exists
 * with another type is an error naming it (types cannot be changed in place).
 * Returns the names now registered.
 */
export async function ensureSearchAttributes(address: string, namespace: string): Promise<string[]> {
  const have = await listSearchAttributes(address, namespace);
  const missing: Record<string, number> = {};
  for (const sa of SEARCH_ATTRIBUTES) {
    const existing = have[sa.name];
    if (existing === undefined) {
      missing[sa.name] = typeCode(sa.type);
    } else if (existing !== sa.type) {
      throw new Error(
        `search attribute ${sa.name} is registered on namespace ${namespace} as ${existing}, but durable-rl needs ${sa.type}; ` +
          `use a fresh state dir (\`npm run infra -- down --purge\` then \`up\`) or rename the attribute in workflows/search-attributes.ts`,
      );
    }
  }
  if (Object.keys(missing).length > 0) {
    const conn = await connect(address);
    try {
      await conn.operatorService.addSearchAttributes({ namespace, searchAttributes: missing });
    } finally {
      await conn.close();
    }
  }
  return SEARCH_ATTRIBUTES.map((sa) => sa.name);
}
