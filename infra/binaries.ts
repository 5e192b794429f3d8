/**
 * The server binaries: found where the user put them, else built once from a pinned release with
 * `go install` into the per-user cache (paths.ts).
 *
 * Lookup order for each binary: its environment variable (must name an executable), then the
 * command on PATH, then `<cache>/bin/<name>-<version>`, then a build. Builds of one binary never
 * race: they run under `<cache>/bin/.<name>.lock`, into a private GOBIN, and the result is renamed
 * into place, so a reader never sees a half-written file.
 */
import { spawn, spawnSync } from 'node:child_process';
import {
  accessSync,
  closeSync,
  constants,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  renameSync,
  rmSync,
  symlinkSync,
  unlinkSync,
} from 'node:fs';
import { delimiter, join } from 'node:path';
import { withLock } from './lock.js';
import { binDir } from './paths.js';
import { tail } from './proc.js';

export interface BinarySpec {
  /** Command name (and the name `go install` gives the binary). */
  name: string;
  /** Go package path to build. */
  module: string;
  /** Pinned version (a release tag or a Go pseudo-version). */
  version: string;
  /** Environment variable that may point at an existing binary. */
  envVar: string;
  /** What to tell a user without Go, besides installing Go. */
  alternative: string;
}

/** The Temporal CLI (its `server start-dev` is the dev server): release v1.5.1. */
export const TEMPORAL_BINARY: BinarySpec = {
  name: 'temporal',
  module: 'github.com/temporalio/cli/cmd/temporal',
  version: 'v1.5.1',
  envVar: 'TEMPORAL_CLI_PATH',
  alternative:
    'or install the Temporal CLI (https://docs.temporal.io/cli#install) and set TEMPORAL_CLI_PATH to it, ' +
    'or point DURABLE_RL_TEMPORAL_ADDRESS at a running Temporal server',
};

/** MinIO: the latest pseudo-version on the Go module proxy (MinIO no longer tags Go releases). */
export const MINIO_BINARY: BinarySpec = {
  name: 'minio',
  module: 'github.com/minio/minio',
  version: 'v0.0.0-20260212201848-7aac2a2c5b7c',
  envVar: 'DURABLE_RL_MINIO_PATH',
  alternative:
    'or download a MinIO server binary (https://min.io/download) and set DURABLE_RL_MINIO_PATH to it, ' +
    'or point DURABLE_RL_S3_ENDPOINT (+ DURABLE_RL_S3_ACCESS_KEY_ID, DURABLE_RL_S3_SECRET_ACCESS_KEY, DURABLE_RL_S3_BUCKET) at an S3-compatible server',
};

export type BinarySource = 'env' | 'path' | 'cache' | 'built';

export interface ResolveOptions {
  env?: NodeJS.ProcessEnv;
  /** Progress lines (build start, elapsed time every ~15 s, lock waits). */
  progress?: (msg: string) => void;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The executable `name` in a directory of `env.PATH`, or null. */
export function onPath(name: string, env: NodeJS.ProcessEnv): string | null {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    if (isExecutable(p)) return p;
  }
  return null;
}

/** The cached binary of `spec` (it may not exist yet). */
export function cachedBinaryPath(spec: BinarySpec, env: NodeJS.ProcessEnv = process.env): string {
  return join(binDir(env), `${spec.name}-${spec.version}`);
}

/** Raised when a build is needed and no Go toolchain is installed; the message says what to do. */
export class GoMissingError extends Error {
  override readonly name = 'GoMissingError';
}

function goVersion(env: NodeJS.ProcessEnv): string | null {
  const r = spawnSync('go', ['version'], { env, encoding: 'utf8' });
  if (r.error || r.status !== 0) return null;
  return r.stdout.trim();
}

/** Finds the binary, building it if needed. */
export async function resolveBinary(spec: BinarySpec, opts: ResolveOptions = {}): Promise<{ path: string; source: BinarySource }> {
  const env = opts.env ?? process.env;
  const progress = opts.progress ?? (() => {});
  const fromEnv = env[spec.envVar];
  if (fromEnv) {
    if (!isExecutable(fromEnv))
      throw new Error(`${spec.envVar}=${fromEnv} is not an executable file; fix the path or unset ${spec.envVar}`);
    return { path: fromEnv, source: 'env' };
  }
  const found = onPath(spec.name, env);
  if (found) return { path: found, source: 'path' };
  const cached = cachedBinaryPath(spec, env);
  if (isExecutable(cached)) return { path: cached, source: 'cache' };

  const dir = binDir(env);
  mkdirSync(dir, { recursive: true });
  return withLock(
    join(dir, `.${spec.name}.lock`),
    {
      what: `the ${spec.name} binary in ${dir}`,
      purpose: `building ${spec.name} ${spec.version}`,
      onWait: (h, ms) => progress(`waiting for pid ${h?.pid ?? '?'} to finish building ${spec.name} (${Math.round(ms / 1000)} s)`),
    },
    async () => {
      if (isExecutable(cached)) return { path: cached, source: 'cache' as const }; // built while we waited
      await build(spec, env, dir, cached, progress);
      return { path: cached, source: 'built' as const };
    },
  );
}

async function build(
  spec: BinarySpec,
  env: NodeJS.ProcessEnv,
  dir: string,
  target: string,
  progress: (msg: string) => void,
): Promise<void> {
  const go = goVersion(env);
  if (!go) {
    throw new GoMissingError(
      `${spec.name} is not installed and no Go toolchain was found to build it (needs \`go\` on PATH, Go 1.25 or newer). ` +
        `Install Go from https://go.dev/doc/install (or your package manager: \`apt install golang-go\`, \`brew install go\`) and rerun; ` +
        `${spec.alternative}.`,
    );
  }
  const pkg = `${spec.module}@${spec.version}`;
  const logFile = `${target}.build.log`;
  const gobin = mkdtempSync(join(dir, `.build-${spec.name}-`));
  progress(
    `building ${spec.name} ${spec.version} with \`go install ${pkg}\` (${go}); first time only, takes several minutes; log: ${logFile}`,
  );
  const t0 = Date.now();
  const fd = openSync(logFile, 'w', 0o644);
  try {
    const code = await new Promise<number | null>((resolveCode, reject) => {
      const child = spawn('go', ['install', pkg], { env: { ...env, GOBIN: gobin }, stdio: ['ignore', fd, fd] });
      const timer = setInterval(() => progress(`still building ${spec.name}: ${Math.round((Date.now() - t0) / 1000)} s elapsed`), 15_000);
      child.once('error', (e) => {
        clearInterval(timer);
        reject(e);
      });
      child.once('exit', (c) => {
        clearInterval(timer);
        resolveCode(c);
      });
    });
    if (code !== 0) {
      throw new Error(`\`go install ${pkg}\` failed (exit ${code}); last lines of ${logFile}:\n${tail(logFile, 15)}`);
    }
    renameSync(join(gobin, spec.name), target);
  } finally {
    closeSync(fd);
    rmSync(gobin, { recursive: true, force: true });
  }
  // Convenience: `<cache>/bin/<name>` always names the pinned version, so <cache>/bin can go on PATH.
  const link = join(dir, spec.name);
  try {
    if (exists(link)) unlinkSync(link);
    symlinkSync(`${spec.name}-${spec.version}`, link);
  } catch {
    /* the link is only a convenience */
  }
  progress(`built ${spec.name} ${spec.version} in ${Math.round((Date.now() - t0) / 1000)} s: ${target}`);
}

/** True when `p` exists as a file or as a (possibly dangling) symlink. */
function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}
