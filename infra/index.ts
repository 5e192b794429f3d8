/**
 * Provisioning of the real servers: a Temporal dev server and a MinIO server on loopback, shared by
 * the README commands, the tests and CI.
 *
 * `up()` is idempotent and cheap when the servers are healthy (a lock-free read of the state file
 * and one health probe per server); otherwise it takes the state dir's lock, builds missing
 * binaries (binaries.ts), and starts what is not running — reusing the previous ports when they are
 * free, so a restarted server keeps its address, and the same SQLite file and MinIO drive, so it
 * keeps its data. Servers are detached: they outlive the process that started them, until `down()`.
 *
 * Externally provided servers take precedence: with DURABLE_RL_TEMPORAL_ADDRESS set no Temporal is
 * started, with DURABLE_RL_S3_ENDPOINT set no MinIO (env.ts).
 */
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { logger } from '../activities/common/log.js';
import { SEARCH_ATTRIBUTES } from '../workflows/search-attributes.js';
import { cachedBinaryPath, MINIO_BINARY, resolveBinary, TEMPORAL_BINARY } from './binaries.js';
import {
  DEFAULT_BUCKET,
  DEFAULT_NAMESPACE,
  DEFAULT_REGION,
  externalS3,
  externalTemporal,
  type InfraEndpoints,
  type S3Endpoint,
  type TemporalEndpoint,
} from './env.js';
import { withLock } from './lock.js';
import {
  ensureBucket,
  generateCredentials,
  minioArgs,
  minioConsoleUrl,
  minioEndpoint,
  minioEnv,
  minioProbe,
  MINIO_PORTS,
} from './minio.js';
import { cacheDir, stateDirOf } from './paths.js';
import { choosePorts, isAlive, spawnDetached, terminate, type ProcRef } from './proc.js';
import { ensureStateDir, lockFile, readState, writeState, type MinioState, type State, type TemporalState } from './state.js';
import { ensureSearchAttributes, startDevArgs, temporalAddress, temporalProbe, temporalUiUrl, TEMPORAL_PORTS } from './temporal.js';

export type { InfraEndpoints, S3Endpoint, TemporalEndpoint } from './env.js';
export { endpointsEnv } from './env.js';

export type Component = 'temporal' | 'minio';
export const COMPONENTS: readonly Component[] = ['temporal', 'minio'];

export interface UpOptions {
  /** Log routine progress at debug level instead of info. Build progress and lock waits are always shown. */
  quiet?: boolean;
  /** State dir of this server set (default `DURABLE_RL_STATE_DIR`, else `<cache>/state`; see paths.ts). */
  stateDir?: string;
  /** Which servers to bring up (default both). Endpoints of the others are still returned when known. */
  components?: Component[];
  /** Environment to read external servers, binary paths and the cache dir from (default `process.env`). */
  env?: NodeJS.ProcessEnv;
}

/** What `ensure` did for each server. */
export type Action = 'reused' | 'started' | 'restarted' | 'external' | 'skipped';

export interface UpResult {
  endpoints: InfraEndpoints;
  actions: Record<Component, Action>;
  stateDir: string;
}

/** How long a newly started server gets to become healthy. */
const START_TIMEOUT_MS: Record<Component, number> = { temporal: 90_000, minio: 45_000 };
/** How long a running but unhealthy server gets before it is restarted (it may still be starting). */
const SETTLE_TIMEOUT_MS = 20_000;

interface Ctx {
  env: NodeJS.ProcessEnv;
  stateDir: string;
  say: (msg: string) => void;
  /** Always shown: builds and lock waits take long enough that silence would look like a hang. */
  progress: (msg: string) => void;
  warn: (msg: string) => void;
  /** 'require': keep the previous ports or fail (startTemporal/startMinio); 'prefer': move when busy. */
  ports: 'prefer' | 'require';
}

function makeCtx(opts: UpOptions, ports: Ctx['ports'] = 'prefer'): Ctx {
  const env = opts.env ?? process.env;
  const stateDir = stateDirOf(opts.stateDir, env);
  const log = logger('infra', { stateDir });
  return {
    env,
    stateDir,
    say: (m) => (opts.quiet ? log.debug(m) : log.info(m)),
    // Builds take minutes: their progress is for the person waiting, whatever the log level.
    progress: (m) => {
      process.stderr.write(`infra: ${m}\n`);
      log.debug(m);
    },
    warn: (m) => log.warn(m),
    ports,
  };
}

const EMPTY_TEMPORAL: TemporalEndpoint = { address: '', namespace: DEFAULT_NAMESPACE, uiUrl: '' };
const EMPTY_S3: S3Endpoint = { endpoint: '', region: DEFAULT_REGION, bucket: DEFAULT_BUCKET, accessKeyId: '', secretAccessKey: '' };

function temporalEndpoint(s: TemporalState): TemporalEndpoint {
  return { address: temporalAddress(s), namespace: s.namespace, uiUrl: temporalUiUrl(s) };
}

function minioEndpointOf(s: MinioState): S3Endpoint {
  return { endpoint: minioEndpoint(s), region: s.region, bucket: s.bucket, accessKeyId: s.accessKeyId, secretAccessKey: s.secretAccessKey };
}

function endpointsOf(state: State, env: NodeJS.ProcessEnv): InfraEndpoints {
  return {
    temporal: externalTemporal(env) ?? (state.temporal ? temporalEndpoint(state.temporal) : EMPTY_TEMPORAL),
    minio: externalS3(env) ?? (state.minio ? minioEndpointOf(state.minio) : EMPTY_S3),
  };
}

function refOf(s: { pid: number | null; procStart: string | null }): ProcRef | null {
  return s.pid === null ? null : { pid: s.pid, procStart: s.procStart };
}

function sameNames(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');
}

/** Why the recorded server is not usable as is (null: running and healthy). */
async function whyUnhealthy(c: Component, state: State): Promise<string | null> {
  const s = state[c];
  if (!s) return 'never started';
  const ref = refOf(s);
  if (!ref) return 'stopped';
  if (!isAlive(ref)) return `pid ${ref.pid} is not running`;
  const probe = c === 'temporal' ? await temporalProbe(s as TemporalState) : await minioProbe(s as MinioState);
  if (probe) return probe;
  if (
    c === 'temporal' &&
    !sameNames(
      (s as TemporalState).searchAttributes,
      SEARCH_ATTRIBUTES.map((a) => a.name),
    )
  )
    return 'search attributes changed';
  return null;
}

async function waitHealthy(probe: () => Promise<string | null>, ref: ProcRef, timeoutMs: number): Promise<string | null> {
  const t0 = Date.now();
  while (true) {
    if (!isAlive(ref)) return `process ${ref.pid} exited`;
    const why = await probe();
    if (why === null) return null;
    if (Date.now() - t0 > timeoutMs) return why;
    await sleep(250);
  }
}

function logSince(file: string, offset: number, lines = 25): string {
  try {
    const text = readFileSync(file, 'utf8').slice(offset).trimEnd();
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

const PORT_CLASH = /already in use|can't set .*port|bind: /i;

/**
 * Makes one server healthy under the state lock: reuse it, wait for it to settle, or (re)start it.
 * Mutates `state` and writes it after every change.
 */
async function ensureComponent(ctx: Ctx, c: Component, state: State): Promise<Action> {
  const prev = state[c];
  const prevRef = prev ? refOf(prev) : null;
  if (prev && prevRef && isAlive(prevRef)) {
    const probe = () => (c === 'temporal' ? temporalProbe(prev as TemporalState) : minioProbe(prev as MinioState));
    const why = await waitHealthy(probe, prevRef, SETTLE_TIMEOUT_MS);
    if (why === null) {
      await afterHealthy(ctx, c, state);
      return 'reused';
    }
    ctx.warn(`${c} (pid ${prevRef.pid}) is running but unhealthy (${why}); restarting it`);
    await terminate(prevRef);
  } else if (prev && prevRef) {
    ctx.say(`${c}: recorded pid ${prevRef.pid} is gone (stale); starting a new server`);
  }
  if (prev) {
    prev.pid = null;
    prev.procStart = null;
    writeState(ctx.stateDir, state);
  }

  const { path: binary } = await resolveBinary(c === 'temporal' ? TEMPORAL_BINARY : MINIO_BINARY, { env: ctx.env, progress: ctx.progress });
  const dir = join(ctx.stateDir, c);
  mkdirSync(dir, { recursive: true, mode: 0o700 });

  for (let attempt = 1; ; attempt++) {
    // After a port clash (another process took a port between our check and the server's bind), pick fresh ports.
    const previousPorts = attempt === 1 ? prev?.ports : undefined;
    const names = c === 'temporal' ? TEMPORAL_PORTS : MINIO_PORTS;
    const { ports, moved } = await choosePorts<string>(names, previousPorts as Record<string, number> | undefined, {
      require: ctx.ports === 'require',
      what: `the ${c} server of ${ctx.stateDir}`,
    });
    if (moved.length > 0)
      ctx.warn(
        `${c}: previous ${moved.map((m) => `${m} port ${(previousPorts as Record<string, number>)[m]}`).join(', ')} in use by another process; moving to ${moved.map((m) => ports[m]).join(', ')}`,
      );

    let s: TemporalState | MinioState;
    let args: string[];
    let env = ctx.env;
    const log = join(dir, 'server.log');
    if (c === 'temporal') {
      const p = prev as TemporalState | undefined;
      const t: TemporalState = {
        pid: null,
        procStart: null,
        binary,
        log,
        ports: ports as TemporalState['ports'],
        dbFile: p?.dbFile ?? join(dir, 'temporal.db'),
        namespace: p?.namespace ?? DEFAULT_NAMESPACE,
        searchAttributes: p?.searchAttributes ?? [],
      };
      s = t;
      args = startDevArgs(t);
    } else {
      const p = prev as MinioState | undefined;
      const creds = p ? { accessKeyId: p.accessKeyId, secretAccessKey: p.secretAccessKey } : generateCredentials();
      const m: MinioState = {
        pid: null,
        procStart: null,
        binary,
        log,
        ports: ports as MinioState['ports'],
        dataDir: p?.dataDir ?? join(dir, 'data'),
        ...creds,
        region: p?.region ?? DEFAULT_REGION,
        bucket: p?.bucket ?? DEFAULT_BUCKET,
      };
      mkdirSync(m.dataDir, { recursive: true, mode: 0o700 });
      s = m;
      args = minioArgs(m);
      env = minioEnv(m, ctx.env);
    }

    const offset = fileSize(log);
    const ref = await spawnDetached(binary, args, { env, logFile: log, cwd: dir });
    s.pid = ref.pid;
    s.procStart = ref.procStart;
    if (c === 'temporal') state.temporal = s as TemporalState;
    else state.minio = s as MinioState;
    writeState(ctx.stateDir, state); // recorded at once, so a crash of ours never orphans the server
    ctx.say(`${c}: started pid ${ref.pid} (${binary}), waiting for it to become healthy`);

    const probe = () => (c === 'temporal' ? temporalProbe(s as TemporalState) : minioProbe(s as MinioState));
    const why = await waitHealthy(probe, ref, START_TIMEOUT_MS[c]);
    if (why === null) {
      await afterHealthy(ctx, c, state);
      return prev ? 'restarted' : 'started';
    }
    await terminate(ref);
    s.pid = null;
    s.procStart = null;
    writeState(ctx.stateDir, state);
    const out = logSince(log, offset);
    if (PORT_CLASH.test(out) && ctx.ports === 'prefer' && attempt < 3) {
      ctx.warn(`${c}: a port was taken while starting (attempt ${attempt}); retrying on fresh ports`);
      continue;
    }
    throw new Error(`${c} server did not become healthy (${why}); \`${binary} ${args.join(' ')}\` wrote to ${log}:\n${out}`);
  }
}

/** Post-start work on a healthy server: register search attributes / create the bucket. */
async function afterHealthy(ctx: Ctx, c: Component, state: State): Promise<void> {
  if (c === 'temporal') {
    const t = state.temporal as TemporalState;
    const names = await ensureSearchAttributes(temporalAddress(t), t.namespace);
    if (!sameNames(names, t.searchAttributes)) {
      t.searchAttributes = names;
      writeState(ctx.stateDir, state);
    }
    ctx.say(`Temporal dev server: gRPC ${temporalAddress(t)}, Web UI ${temporalUiUrl(t)} (pid ${t.pid}, log ${t.log})`);
  } else {
    const m = state.minio as MinioState;
    if (await ensureBucket(m)) ctx.say(`minio: created bucket ${m.bucket}`);
    ctx.say(`MinIO: S3 ${minioEndpoint(m)}, bucket ${m.bucket}, console ${minioConsoleUrl(m)} (pid ${m.pid}, log ${m.log})`);
  }
}

async function ensureWith(opts: UpOptions, portMode: Ctx['ports']): Promise<UpResult> {
  const ctx = makeCtx(opts, portMode);
  const wanted = opts.components ?? [...COMPONENTS];
  for (const c of wanted) {
    if (!COMPONENTS.includes(c)) throw new Error(`unknown component ${JSON.stringify(c)}; expected one of ${COMPONENTS.join(', ')}`);
  }
  const external: Record<Component, boolean> = { temporal: externalTemporal(ctx.env) !== null, minio: externalS3(ctx.env) !== null };
  const actions: Record<Component, Action> = { temporal: 'skipped', minio: 'skipped' };
  const need: Component[] = [];
  for (const c of wanted) {
    if (external[c]) actions[c] = 'external';
    else need.push(c);
  }

  // Fast path, no lock: everything needed is already healthy.
  let state = readState(ctx.stateDir);
  const why = await Promise.all(need.map((c) => whyUnhealthy(c, state)));
  if (why.every((w) => w === null)) {
    for (const c of need) actions[c] = 'reused';
    return { endpoints: endpointsOf(state, ctx.env), actions, stateDir: ctx.stateDir };
  }

  ensureStateDir(ctx.stateDir);
  await withLock(
    lockFile(ctx.stateDir),
    {
      what: `the servers of ${ctx.stateDir}`,
      purpose: `starting ${need.join(' and ')}`,
      onWait: (h, ms) =>
        ctx.progress(
          `waiting for pid ${h?.pid ?? '?'} (${h?.purpose ?? 'unknown'}) to release ${lockFile(ctx.stateDir)} (${Math.round(ms / 1000)} s)`,
        ),
    },
    async () => {
      state = readState(ctx.stateDir); // another process may have done the work while we waited
      const results = await Promise.allSettled(need.map((c) => ensureComponent(ctx, c, state)));
      const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed.length > 0)
        throw failed.length === 1
          ? failed[0].reason
          : new AggregateError(
              failed.map((f) => f.reason as Error),
              failed.map((f) => (f.reason as Error).message).join('\n'),
            );
      need.forEach((c, i) => (actions[c] = (results[i] as PromiseFulfilledResult<Action>).value));
    },
  );
  return { endpoints: endpointsOf(state, ctx.env), actions, stateDir: ctx.stateDir };
}

/** Brings the servers up (idempotent) and says what it did for each. */
export function ensure(opts: UpOptions = {}): Promise<UpResult> {
  return ensureWith(opts, 'prefer');
}

/** Brings the servers up (idempotent; cheap when they are healthy) and returns where they are. */
export async function up(opts: UpOptions = {}): Promise<InfraEndpoints> {
  return (await ensure(opts)).endpoints;
}

export interface DownOptions {
  stateDir?: string;
  /** Which servers to stop (default both). */
  components?: Component[];
  /** Also delete the state dir: SQLite file, MinIO data, credentials, logs. */
  purge?: boolean;
  env?: NodeJS.ProcessEnv;
  quiet?: boolean;
}

/** Stops the servers of a state dir. Ports, credentials and data are kept for the next `up` unless `purge`. */
export async function down(opts: DownOptions = {}): Promise<void> {
  const ctx = makeCtx(opts);
  const which = opts.components ?? [...COMPONENTS];
  if (!opts.purge && readStateIfDir(ctx.stateDir) === null) return;
  ensureStateDir(ctx.stateDir);
  await withLock(
    lockFile(ctx.stateDir),
    { what: `the servers of ${ctx.stateDir}`, purpose: `stopping ${which.join(' and ')}` },
    async () => {
      const state = readState(ctx.stateDir);
      for (const c of which) {
        const s = state[c];
        const ref = s ? refOf(s) : null;
        if (!s || !ref) continue;
        await terminate(ref);
        s.pid = null;
        s.procStart = null;
        writeState(ctx.stateDir, state);
        ctx.say(`${c}: stopped pid ${ref.pid}`);
      }
      if (opts.purge) {
        const others = COMPONENTS.filter(
          (c) => !which.includes(c) && state[c]?.pid != null && isAlive(refOf(state[c] as TemporalState) as ProcRef),
        );
        if (others.length > 0)
          throw new Error(`--purge would delete the data of the running ${others.join(', ')}; stop it too (omit --only)`);
        for (const name of COMPONENTS) rmSync(join(ctx.stateDir, name), { recursive: true, force: true });
        rmSync(join(ctx.stateDir, 'state.json'), { force: true });
        ctx.say(`purged ${ctx.stateDir}`);
      }
    },
  );
  if (opts.purge) rmSync(ctx.stateDir, { recursive: true, force: true });
}

function readStateIfDir(stateDir: string): State | null {
  try {
    statSync(stateDir);
  } catch {
    return null;
  }
  return readState(stateDir);
}

/** Stops the Temporal dev server, keeping its ports and SQLite file for `startTemporal`. */
export function stopTemporal(opts: Omit<DownOptions, 'components' | 'purge'> = {}): Promise<void> {
  return down({ ...opts, components: ['temporal'] });
}

/**
 * (Re)starts the Temporal dev server on the same ports and SQLite file as before, so clients and
 * workers reconnect to the same address and find their workflows. Fails if a previous port is now
 * taken by another process (`up()` would move it instead).
 */
export async function startTemporal(opts: Omit<UpOptions, 'components'> = {}): Promise<TemporalEndpoint> {
  return (await ensureWith({ ...opts, components: ['temporal'] }, 'require')).endpoints.temporal;
}

/** Stops MinIO, keeping its ports, credentials and data for `startMinio`. */
export function stopMinio(opts: Omit<DownOptions, 'components' | 'purge'> = {}): Promise<void> {
  return down({ ...opts, components: ['minio'] });
}

/** (Re)starts MinIO on the same ports, credentials and data as before (see startTemporal). */
export async function startMinio(opts: Omit<UpOptions, 'components'> = {}): Promise<S3Endpoint> {
  return (await ensureWith({ ...opts, components: ['minio'] }, 'require')).endpoints.minio;
}

/**
 * Kills a server with SIGKILL, as a crash or a lost machine would (chaos drills: the soak test,
 * bench/store-outage.ts): no shutdown, and its ports, credentials and data stay recorded, so
 * `startTemporal` / `startMinio` (or `up`) bring it back on the same address with the same data.
 * Resolves once the process is gone; false when it was not running.
 */
export async function crashServer(component: Component, opts: { stateDir?: string; env?: NodeJS.ProcessEnv } = {}): Promise<boolean> {
  const stateDir = stateDirOf(opts.stateDir, opts.env ?? process.env);
  const s = readStateIfDir(stateDir)?.[component];
  const ref = s ? refOf(s) : null;
  if (!ref || !isAlive(ref)) return false;
  process.kill(ref.pid, 'SIGKILL');
  const deadline = Date.now() + 10_000;
  while (isAlive(ref)) {
    if (Date.now() > deadline) throw new Error(`${component} (pid ${ref.pid}) survived SIGKILL; stop it by hand (kill -9 ${ref.pid})`);
    await sleep(50);
  }
  return true;
}

export interface ComponentStatus {
  /** running: healthy; unhealthy: process alive but probe fails; stopped: recorded but not running. */
  state: 'running' | 'unhealthy' | 'stopped' | 'never-started' | 'external';
  pid: number | null;
  /** gRPC address (temporal) or S3 endpoint URL (minio); '' when unknown. */
  endpoint: string;
  /** Web UI (temporal) or console (minio) URL; '' when unknown. */
  uiUrl: string;
  ports: Record<string, number>;
  log: string | null;
  /** Why it is unhealthy or stopped. */
  detail: string | null;
}

export interface InfraStatus {
  stateDir: string;
  cacheDir: string;
  /** Cached pinned binaries, null when not built yet. */
  binaries: Record<Component, string | null>;
  temporal: ComponentStatus;
  minio: ComponentStatus;
}

/** Where the servers of a state dir stand (no lock, starts nothing). */
export async function status(opts: { stateDir?: string; env?: NodeJS.ProcessEnv } = {}): Promise<InfraStatus> {
  const env = opts.env ?? process.env;
  const stateDir = stateDirOf(opts.stateDir, env);
  const state = readStateIfDir(stateDir) ?? { version: 1 };
  const one = async (c: Component): Promise<ComponentStatus> => {
    const ext = c === 'temporal' ? externalTemporal(env) : externalS3(env);
    if (ext) {
      const endpoint = 'address' in ext ? ext.address : ext.endpoint;
      return { state: 'external', pid: null, endpoint, uiUrl: 'uiUrl' in ext ? ext.uiUrl : '', ports: {}, log: null, detail: null };
    }
    const s = state[c];
    if (!s) return { state: 'never-started', pid: null, endpoint: '', uiUrl: '', ports: {}, log: null, detail: null };
    const endpoint = c === 'temporal' ? temporalAddress(s as TemporalState) : minioEndpoint(s as MinioState);
    const uiUrl = c === 'temporal' ? temporalUiUrl(s as TemporalState) : minioConsoleUrl(s as MinioState);
    const base = { endpoint, uiUrl, ports: { ...s.ports } as Record<string, number>, log: s.log };
    const ref = refOf(s);
    if (!ref || !isAlive(ref))
      return { ...base, state: 'stopped', pid: null, detail: ref ? `pid ${ref.pid} is not running (stale)` : null };
    const why = await whyUnhealthy(c, state);
    return { ...base, state: why === null ? 'running' : 'unhealthy', pid: ref.pid, detail: why };
  };
  const [temporal, minio] = await Promise.all([one('temporal'), one('minio')]);
  const built = (spec: typeof TEMPORAL_BINARY) => {
    const p = cachedBinaryPath(spec, env);
    return fileSize(p) > 0 ? p : null;
  };
  return { stateDir, cacheDir: cacheDir(env), binaries: { temporal: built(TEMPORAL_BINARY), minio: built(MINIO_BINARY) }, temporal, minio };
}
