/**
 * The state dir of one set of servers, and its `state.json`.
 *
 *   <stateDir>/state.json          pids, ports, credentials (mode 0600, written atomically)
 *   <stateDir>/.lock               held while servers are started or stopped (lock.ts)
 *   <stateDir>/temporal/temporal.db  SQLite persistence of the Temporal dev server
 *   <stateDir>/temporal/server.log
 *   <stateDir>/minio/data/          MinIO's drive
 *   <stateDir>/minio/server.log
 *
 * Ports and credentials stay in the file after `down`, so the next `up` brings the servers back at
 * the same addresses (when those ports are free) with the same data.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig, z } from '../activities/common/config.js';

const port = z.number().int().min(1).max(65535);

const ProcFields = {
  /** pid of the running server; null once stopped. */
  pid: z.number().int().positive().nullable(),
  /** Its start time (proc.ts), to tell it from a later process that reuses the pid. */
  procStart: z.string().nullable(),
  /** Binary it was started from. */
  binary: z.string(),
  /** Its log file. */
  log: z.string(),
};

export const TemporalStateSchema = z.object({
  ...ProcFields,
  ports: z.object({ grpc: port, ui: port, http: port, metrics: port }),
  dbFile: z.string(),
  namespace: z.string(),
  /** Names of the custom search attributes known to be registered on the namespace. */
  searchAttributes: z.array(z.string()),
});
export type TemporalState = z.infer<typeof TemporalStateSchema>;

export const MinioStateSchema = z.object({
  ...ProcFields,
  ports: z.object({ api: port, console: port }),
  dataDir: z.string(),
  accessKeyId: z.string(),
  secretAccessKey: z.string(),
  region: z.string(),
  bucket: z.string(),
});
export type MinioState = z.infer<typeof MinioStateSchema>;

export const StateSchema = z.object({
  version: z.literal(1),
  temporal: TemporalStateSchema.optional(),
  minio: MinioStateSchema.optional(),
});
export type State = z.infer<typeof StateSchema>;

export function stateFile(stateDir: string): string {
  return join(stateDir, 'state.json');
}

export function lockFile(stateDir: string): string {
  return join(stateDir, '.lock');
}

/** Creates the state dir (mode 0700: it holds credentials). */
export function ensureStateDir(stateDir: string): void {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
}

/** Reads state.json; an absent file is an empty state, a corrupt one an error naming the fix. */
export function readState(stateDir: string): State {
  const file = stateFile(stateDir);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1 };
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(
      `${file} is not valid JSON (${(e as Error).message}); stop any servers it started and delete it, or run \`npm run infra -- down --purge\``,
    );
  }
  try {
    return parseConfig(StateSchema, json, `infra state file ${file}`);
  } catch (e) {
    throw new Error(`${(e as Error).message}. Delete the file (after stopping its servers) or run \`npm run infra -- down --purge\``);
  }
}

/** Writes state.json atomically (temp file + rename), mode 0600. */
export function writeState(stateDir: string, state: State): void {
  const file = stateFile(stateDir);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}
