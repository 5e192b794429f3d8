/**
 * Where infra keeps things. Binaries live in a per-user cache outside the repository, shared by
 * every state dir; a state dir holds one set of servers (pids, ports, credentials, data, logs).
 *
 *   <cache>/bin/temporal-v1.5.1            pinned binaries, named by version (built once)
 *   <cache>/bin/temporal -> temporal-v1.5.1 convenience link (put <cache>/bin on PATH)
 *   <cache>/bin/<name>-<version>.build.log  output of the `go install` that built it
 *   <cache>/state/                          the default state dir (see state.ts for its layout)
 */
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * The per-user cache: `DURABLE_RL_CACHE_DIR`, else `$XDG_CACHE_HOME/durable-rl`, else
 * `~/.cache/durable-rl`.
 */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DURABLE_RL_CACHE_DIR) return resolve(env.DURABLE_RL_CACHE_DIR);
  const base = env.XDG_CACHE_HOME ? resolve(env.XDG_CACHE_HOME) : join(homedir(), '.cache');
  return join(base, 'durable-rl');
}

/** Directory of the pinned binaries (GOBIN for the builds). */
export function binDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(cacheDir(env), 'bin');
}

/** The state dir to use: the explicit one, else `DURABLE_RL_STATE_DIR`, else `<cache>/state`. */
export function stateDirOf(explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit) return resolve(explicit);
  if (env.DURABLE_RL_STATE_DIR) return resolve(env.DURABLE_RL_STATE_DIR);
  return join(cacheDir(env), 'state');
}
