/**
 * The commit protocol, generic over a prefix (a training step, a checkpoint, an evaluation, an
 * annotation shard: keys.ts spells the layout).
 *
 * 1. Artifacts first. Each is stored under a content-addressed key next to the manifest: artifact
 *    `metrics.arrow` with sha256 `3fa9…` becomes `{prefix}/metrics.3fa9c1d2e4b5a697.arrow`. A key
 *    therefore always holds the same bytes: racing or re-executed writers can never overwrite an
 *    object some manifest already points at, and a re-execution that produces the same bytes finds
 *    them already there and skips the upload.
 * 2. Then `{prefix}/manifest.json`, created if absent: it lists every artifact (name, key, bytes,
 *    sha256, schema name + version) and the run id and step. It holds no timestamps and is
 *    serialised canonically (sorted keys, artifacts sorted by name), so the same artifacts give
 *    byte-identical manifests on every re-execution.
 *
 * A prefix is committed iff its manifest exists and every artifact it lists matches its size and
 * sha256. Of racing committers exactly one creates the manifest (the store's create-if-absent
 * decides); the others get `created: false` and the winner's manifest, so all agree. Committing an
 * already-committed prefix writes nothing and returns the existing manifest. A crash between
 * artifacts and manifest leaves the prefix uncommitted (unreferenced artifacts are garbage, never
 * read), and a later commit completes it.
 */
import { createHash } from 'node:crypto';
import { logger } from '../common/log.js';
import { z } from '../common/config.js';
import { readSchemaRef, type SchemaRef } from './arrow.js';
import { CorruptDataError, IntegrityError, NotCommittedError, NotFoundError, SchemaMismatchError, StoreError } from './errors.js';
import { contentKey, MANIFEST_NAME, parseRunKey, parseStep, runFolder, validateKey, type RunFolder } from './keys.js';
import { getIfExists, type ObjectStore } from './object-store.js';
import { HASH_CHUNK_BYTES, sha256HexOffThread } from './hash-thread.js';

const log = logger('store');

export const MANIFEST_FORMAT = 'durable-rl.manifest';
export const MANIFEST_FORMAT_VERSION = 1;

/** An artifact to commit: its name within the prefix (e.g. `metrics.arrow`), bytes and, for tables, schema. */
export interface ArtifactInput {
  name: string;
  bytes: Uint8Array;
  /** Schema of an Arrow table artifact (a TableSchema from schemas.ts will do); checked against the bytes. */
  schema?: SchemaRef | null;
}

/** One artifact as the manifest records it; also what writeArtifact returns (a claim-check to pass on). */
export interface ManifestEntry {
  /** Logical name, unique within the prefix. */
  name: string;
  /** Key of the stored object, relative to the prefix (content-addressed: `metrics.3fa9c1d2e4b5a697.arrow`, see `contentKey`). */
  key: string;
  /** Size in bytes. */
  bytes: number;
  /** Lowercase hex sha256 of the bytes. */
  sha256: string;
  /** Schema name and version for Arrow tables, else null. */
  schema: SchemaRef | null;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  format_version: typeof MANIFEST_FORMAT_VERSION;
  /** The prefix the manifest commits (informational; readers use the location they read from). */
  prefix: string;
  /** Run id, for step and checkpoint prefixes (inferred from the prefix unless given). */
  run_id: string | null;
  /** Step number, for step and checkpoint prefixes (inferred from the prefix unless given). */
  step: number | null;
  /** Artifacts, sorted by name. */
  artifacts: ManifestEntry[];
}

export interface CommitInfo {
  run_id?: string | null;
  step?: number | null;
}

export interface CommitResult {
  manifest: Manifest;
  /** True if this call created the manifest; false if the prefix was already committed (by an earlier or a racing commit). */
  created: boolean;
}

const SchemaRefSchema = z.object({ name: z.string().min(1), version: z.number().int().min(0) });
const ManifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  format_version: z.literal(MANIFEST_FORMAT_VERSION),
  prefix: z.string(),
  run_id: z.string().nullable(),
  step: z.number().int().min(0).nullable(),
  artifacts: z.array(
    z.object({
      name: z.string().min(1),
      key: z.string().min(1),
      bytes: z.number().int().min(0),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
      schema: SchemaRefSchema.nullable(),
    }),
  ),
});

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * sha256 of an artifact's bytes, the same digest as `sha256Hex`. From HASH_CHUNK_BYTES up, on the
 * process's hashing thread (hash-thread.ts), streamed in chunks, so hashing a checkpoint of
 * gigabytes (seconds of work) never stalls heartbeats, cancellation or a workflow worker in the
 * same process; below it, here and at once (a few milliseconds at most, less than a round trip).
 */
export async function sha256HexStreamed(bytes: Uint8Array): Promise<string> {
  return bytes.byteLength < HASH_CHUNK_BYTES ? sha256Hex(bytes) : sha256HexOffThread(bytes);
}

/** Key of a prefix's manifest. */
export function manifestKey(prefix: string): string {
  return `${validateKey(prefix)}/${MANIFEST_NAME}`;
}

/** Full store key of an artifact listed in (or returned for) a prefix. */
export function artifactKey(prefix: string, entry: Pick<ManifestEntry, 'key'>): string {
  return validateKey(`${prefix}/${entry.key}`);
}

function checkName(prefix: string, name: string): void {
  validateKey(name);
  if (name === MANIFEST_NAME)
    throw new StoreError(
      'invalid_key',
      `artifact name "${MANIFEST_NAME}" in ${prefix} is reserved for the commit marker; choose another name`,
    );
}

/** Canonical JSON: object keys sorted, two-space indent, trailing newline (equal values, equal bytes). */
export function canonicalJson(value: unknown): string {
  const sort = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sort);
    if (v && typeof v === 'object') {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sort((v as Record<string, unknown>)[k])]),
      );
    }
    return v;
  };
  return `${JSON.stringify(sort(value), null, 2)}\n`;
}

/** The manifest's bytes: the same artifacts and info always give the same bytes. */
export function encodeManifest(m: Manifest): Uint8Array {
  return new TextEncoder().encode(canonicalJson(m));
}

function schemaRefOf(s: SchemaRef | null | undefined): SchemaRef | null {
  return s ? { name: s.name, version: s.version } : null;
}

/** When an artifact claims a schema, its bytes must be an Arrow file of that schema. */
function checkClaimedSchema(store: ObjectStore, prefix: string, a: ArtifactInput): void {
  if (!a.schema) return;
  const source = store.uri(`${prefix}/${a.name}`);
  const found = readSchemaRef(a.bytes, source);
  if (found.name !== a.schema.name || found.version !== a.schema.version) {
    throw new SchemaMismatchError(
      source,
      `artifact claims schema ${a.schema.name} v${a.schema.version} but its bytes are ${found.name ?? '(unnamed)'} v${found.version ?? '?'}`,
    );
  }
}

/** Stores one artifact under its content-addressed key (skipping the upload if those bytes are already there). */
async function storeArtifact(store: ObjectStore, prefix: string, a: ArtifactInput): Promise<ManifestEntry> {
  checkName(prefix, a.name);
  if (!(a.bytes instanceof Uint8Array)) throw new StoreError('invalid_rows', `artifact ${a.name} of ${prefix}: bytes must be a Uint8Array`);
  checkClaimedSchema(store, prefix, a);
  const sha256 = await sha256HexStreamed(a.bytes);
  const entry: ManifestEntry = {
    name: a.name,
    key: contentKey(a.name, sha256),
    bytes: a.bytes.byteLength,
    sha256,
    schema: schemaRefOf(a.schema),
  };
  const key = artifactKey(prefix, entry);
  const existing = await store.head(key);
  if (existing?.size === entry.bytes) {
    log.debug({ uri: store.uri(key) }, 'artifact already stored: skipping upload');
  } else {
    await store.put(key, a.bytes);
  }
  return entry;
}

/**
 * Writes one artifact of a not-yet-committed prefix and returns its manifest entry, to be passed
 * (e.g. through a workflow, as a claim-check) to `commit`. If the prefix is already committed,
 * nothing is written and the committed entry of that name is returned.
 */
export async function writeArtifact(store: ObjectStore, prefix: string, artifact: ArtifactInput): Promise<ManifestEntry> {
  const committed = await readManifest(store, prefix);
  if (committed) {
    const entry = committed.artifacts.find((e) => e.name === artifact.name);
    if (!entry) {
      throw new StoreError(
        'integrity',
        `${store.uri(manifestKey(prefix))} is already committed without an artifact "${artifact.name}"; committed objects are never changed — write to a new prefix`,
      );
    }
    log.info({ uri: store.uri(artifactKey(prefix, entry)) }, 'prefix already committed: artifact write skipped');
    return entry;
  }
  return storeArtifact(store, prefix, artifact);
}

function isEntry(a: ArtifactInput | ManifestEntry): a is ManifestEntry {
  return typeof a.bytes === 'number';
}

/**
 * Commits a prefix: stores the artifacts (bytes), or checks that already-written ones (entries
 * from writeArtifact) are present, then creates the manifest if absent. Run id and step default to
 * those of a step or checkpoint prefix.
 */
export async function commit(
  store: ObjectStore,
  prefix: string,
  artifacts: readonly (ArtifactInput | ManifestEntry)[],
  info: CommitInfo = {},
): Promise<CommitResult> {
  validateKey(prefix);
  const names = new Set<string>();
  for (const a of artifacts) {
    checkName(prefix, a.name);
    if (names.has(a.name)) throw new StoreError('invalid_key', `artifact "${a.name}" is listed twice in the commit of ${prefix}`);
    names.add(a.name);
  }
  const mKey = manifestKey(prefix);
  const existing = await readManifest(store, prefix);
  if (existing) {
    log.info({ uri: store.uri(mKey) }, 'already committed: nothing written');
    return { manifest: existing, created: false };
  }

  const entries = await Promise.all(
    artifacts.map(async (a): Promise<ManifestEntry> => {
      if (!isEntry(a)) return storeArtifact(store, prefix, a);
      const key = artifactKey(prefix, a);
      const head = await store.head(key);
      if (!head)
        throw new IntegrityError(
          store.uri(key),
          `artifact "${a.name}" was never written (or was deleted); write it again before committing`,
        );
      if (head.size !== a.bytes) throw new IntegrityError(store.uri(key), `size ${head.size} bytes, but the entry says ${a.bytes}`);
      return { name: a.name, key: a.key, bytes: a.bytes, sha256: a.sha256, schema: schemaRefOf(a.schema) };
    }),
  );
  entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const runIdFromPrefix = parseRunKey(prefix)?.runId;
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    format_version: MANIFEST_FORMAT_VERSION,
    prefix,
    run_id: info.run_id !== undefined ? info.run_id : (runIdFromPrefix ?? null),
    step: info.step !== undefined ? info.step : (parseStep(prefix) ?? null),
    artifacts: entries,
  };
  const created = await store.putIfAbsent(mKey, encodeManifest(manifest));
  if (created) {
    log.info({ uri: store.uri(mKey), artifacts: entries.length }, 'committed');
    return { manifest, created: true };
  }
  const winner = await readManifest(store, prefix);
  if (!winner) throw new StoreError('io', `${store.uri(mKey)} was reported to exist but cannot be read`);
  log.info({ uri: store.uri(mKey) }, 'another writer committed first: using its manifest');
  return { manifest: winner, created: false };
}

/** The manifest of a prefix as stored (not verified), or undefined if there is none. */
export async function readManifest(store: ObjectStore, prefix: string): Promise<Manifest | undefined> {
  const key = manifestKey(prefix);
  const bytes = await getIfExists(store, key);
  if (bytes === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    throw new CorruptDataError(store.uri(key), `manifest is not valid JSON (${(err as Error).message})`, { cause: err });
  }
  const r = ManifestSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new CorruptDataError(store.uri(key), `not a durable-rl manifest: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
  }
  return r.data as Manifest;
}

/** Reads an artifact by its entry and checks size and sha256; IntegrityError names the object's URI. */
export async function readEntry(store: ObjectStore, prefix: string, entry: ManifestEntry): Promise<Uint8Array> {
  const key = artifactKey(prefix, entry);
  let bytes: Uint8Array;
  try {
    bytes = await store.get(key);
  } catch (err) {
    if (err instanceof NotFoundError) throw new IntegrityError(store.uri(key), `missing (artifact "${entry.name}", ${entry.bytes} bytes)`);
    throw err;
  }
  await verifyBytes(store.uri(key), entry, bytes);
  return bytes;
}

async function verifyBytes(uri: string, entry: ManifestEntry, bytes: Uint8Array): Promise<void> {
  if (bytes.byteLength !== entry.bytes) {
    throw new IntegrityError(
      uri,
      `size is ${bytes.byteLength} bytes but the manifest records ${entry.bytes}${bytes.byteLength < entry.bytes ? ' (truncated)' : ''}`,
    );
  }
  const sha = await sha256HexStreamed(bytes);
  if (sha !== entry.sha256) throw new IntegrityError(uri, `sha256 is ${sha} but the manifest records ${entry.sha256} (corrupted)`);
}

export interface VerifyOptions {
  /** 'full' (default): read every artifact and check size and sha256. 'size': only check each exists with its size (fast, for large checkpoints). */
  verify?: 'full' | 'size';
}

/**
 * The manifest of a committed prefix, after verifying every artifact; undefined if there is no
 * manifest (not committed). A missing, truncated or corrupted artifact is an IntegrityError naming
 * its URI.
 */
export async function readCommitted(store: ObjectStore, prefix: string, options: VerifyOptions = {}): Promise<Manifest | undefined> {
  const manifest = await readManifest(store, prefix);
  if (!manifest) return undefined;
  for (const entry of manifest.artifacts) {
    if (options.verify === 'size') {
      const key = artifactKey(prefix, entry);
      const head = await store.head(key);
      if (!head) throw new IntegrityError(store.uri(key), `missing (artifact "${entry.name}", ${entry.bytes} bytes)`);
      if (head.size !== entry.bytes)
        throw new IntegrityError(store.uri(key), `size is ${head.size} bytes but the manifest records ${entry.bytes}`);
    } else {
      await readEntry(store, prefix, entry);
    }
  }
  return manifest;
}

/** The verified bytes of a committed artifact, by name. */
export async function readArtifact(store: ObjectStore, prefix: string, name: string): Promise<Uint8Array> {
  const manifest = await readManifest(store, prefix);
  if (!manifest) throw new NotCommittedError(store.uri(manifestKey(prefix)));
  const entry = manifest.artifacts.find((e) => e.name === name);
  if (!entry) {
    throw new StoreError(
      'not_found',
      `no artifact "${name}" in ${store.uri(manifestKey(prefix))} (it lists: ${manifest.artifacts.map((e) => e.name).join(', ') || 'nothing'})`,
    );
  }
  return readEntry(store, prefix, entry);
}

/** Full URI of a committed artifact (for messages, UIs and claim-checks). */
export function artifactUri(store: ObjectStore, prefix: string, manifest: Manifest, name: string): string {
  const entry = manifest.artifacts.find((e) => e.name === name);
  if (!entry) throw new StoreError('not_found', `no artifact "${name}" in the manifest of ${prefix}`);
  return store.uri(artifactKey(prefix, entry));
}

/**
 * Steps (or checkpoints, or evaluations) of a run that have a manifest, ascending (not verified:
 * use readCommitted on the one you resume from). The last step is where a resumed run continues.
 */
export async function committedSteps(store: ObjectStore, runId: string, kind: RunFolder = 'steps'): Promise<number[]> {
  const steps: number[] = [];
  for await (const o of store.list(`${runFolder(runId, kind)}/`)) {
    const k = parseRunKey(o.key);
    if (k?.runId === runId && k.folder === kind && k.rest === MANIFEST_NAME) steps.push(k.number!);
  }
  return steps.sort((a, b) => a - b);
}
