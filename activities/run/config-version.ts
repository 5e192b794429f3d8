/**
 * Versions of the run config and of `run.json`, and the migrations between them. A config is
 * stored twice where an upgrade can meet it: in run.json (read by every activity of the run) and
 * in the workflow input of a run in flight (read by a re-executed initRun). Both stay as they were
 * written; readers migrate what they read to the current version, step by step, before the strict
 * schema validates it. So renaming or removing a config field never fails a run that was started
 * before: its stored config is migrated on every read.
 *
 * Adding a version: bump RUN_CONFIG_VERSION, add the step from the previous version to MIGRATIONS
 * (on the plain JSON, before validation), list a removed field in REMOVED_FIELDS (a user's config
 * file that still sets it is refused naming what replaces it), and commit a run.json written by the
 * previous code under test/fixtures/run-records/run-v<N>.json (test/unit/run/config-version.test.ts
 * reads every one of them). Pure: no I/O.
 *
 * | version | what changed |
 * | --- | --- |
 * | 1 | (unversioned) the config and run.json as written before versions existed |
 * | 2 | `workflow.maxAttempts` removed (activities retry without an attempt limit; a run that cannot go on shows blocked, never failed); `workflow.blockedAfterMinutes`, `workflow.retryIntervalCapSeconds` and per-stage `workflow.stages` timeouts added (defaults); the config carries `version`, run.json `schema_version` |
 */

/** The version of the run config this code writes (`config.version`) and of run.json (`schema_version`). */
export const RUN_CONFIG_VERSION = 2;

/** A config (or run.json) without a version field was written before versions existed: version 1. */
export const UNVERSIONED = 1;

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v);

/** The step from version `v` to `v + 1`, on a plain JSON config (returns a new object; never mutates). */
const MIGRATIONS: Record<number, (config: Json) => Json> = {
  1: (config) => {
    const workflow = isObject(config.workflow) ? { ...config.workflow } : undefined;
    // unlimited attempts now: the field has no meaning left (the defaults of the new fields apply)
    if (workflow) delete workflow.maxAttempts;
    return { ...config, ...(workflow ? { workflow } : {}), version: 2 };
  },
};

/** Fields a version removed: a user's config that still sets one is refused, naming what to do instead. */
export const REMOVED_FIELDS: readonly { path: readonly string[]; version: number; instead: string }[] = [
  {
    path: ['workflow', 'maxAttempts'],
    version: 2,
    instead:
      'activities now retry without an attempt limit, and a run that cannot go on shows blocked (never failed) after workflow.blockedAfterMinutes; remove the field (or state version: 1 at the top of the config to have it migrated)',
  },
];

/** The version a config states (`version`), or `fallback` when it states none. */
export function configVersionOf(config: unknown, fallback: number): number {
  return isObject(config) && typeof config.version === 'number' ? config.version : fallback;
}

/** Why a config of version `version` cannot be read by this code, or undefined when it can. */
export function versionProblem(version: number): string | undefined {
  if (!Number.isInteger(version) || version < UNVERSIONED)
    return `${JSON.stringify(version)} is not a config version (1 to ${RUN_CONFIG_VERSION})`;
  if (version > RUN_CONFIG_VERSION)
    return `config version ${version} was written by a newer durable-rl; this one reads versions 1 to ${RUN_CONFIG_VERSION} (upgrade the workers and the CLI)`;
  return undefined;
}

/**
 * `config` (plain JSON, version `from`) migrated to RUN_CONFIG_VERSION, step by step; the result
 * states `version`. A config already at the current version is returned as it is. Not validated:
 * the strict schema (config.ts) does that next.
 */
export function migrateRunConfig(config: unknown, from: number): unknown {
  if (!isObject(config) || from >= RUN_CONFIG_VERSION) return config;
  let c: Json = config;
  for (let v = from; v < RUN_CONFIG_VERSION; v++) c = MIGRATIONS[v]!(c);
  return c;
}

/** The removed fields that `config` (a user's document at the current version) still sets, as `{ path, message }`. */
export function removedFieldProblems(config: unknown): { path: string; message: string }[] {
  const out: { path: string; message: string }[] = [];
  for (const f of REMOVED_FIELDS) {
    let v: unknown = config;
    for (const k of f.path) v = isObject(v) ? v[k] : undefined;
    if (v !== undefined) out.push({ path: f.path.join('.'), message: `removed in config version ${f.version}: ${f.instead}` });
  }
  return out;
}

/**
 * run.json (plain JSON, as read) migrated to the current `schema_version`: a record without one
 * is version 1. Its config is migrated from the record's version (a record of version N holds a
 * config of version N). Not validated.
 */
export function migrateRunRecord(record: Json): Json {
  const from = typeof record.schema_version === 'number' ? record.schema_version : UNVERSIONED;
  if (from >= RUN_CONFIG_VERSION) return record;
  return { ...record, schema_version: RUN_CONFIG_VERSION, config: migrateRunConfig(record.config, configVersionOf(record.config, from)) };
}
