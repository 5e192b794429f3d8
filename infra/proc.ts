/**
 * Processes and ports: is a recorded pid still *our* process, stop it, spawn a detached server,
 * find free loopback ports.
 *
 * A pid alone is a weak identity (pids are reused), so on Linux a record also keeps the process
 * start time from /proc/<pid>/stat; a live pid whose start time differs is someone else's process
 * and counts as dead. Zombies count as dead too. Elsewhere only `kill(pid, 0)` is available.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export const LOOPBACK = '127.0.0.1';

/** A process this package started (or holds a lock): pid plus its start time where known. */
export interface ProcRef {
  pid: number;
  /** /proc/<pid>/stat start time (clock ticks since boot); null where /proc is not available. */
  procStart: string | null;
}

function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ..." — comm may contain spaces and parentheses: split after the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

const hasProc = process.platform === 'linux';

/** The start time of `pid` (field 22 of /proc/<pid>/stat), or null where unknown. */
export function procStartTime(pid: number): string | null {
  if (!hasProc) return null;
  const f = statFields(pid);
  return f ? (f[19] ?? null) : null;
}

/** A reference to a running process, with its start time recorded. */
export function procRef(pid: number): ProcRef {
  return { pid, procStart: procStartTime(pid) };
}

/** True when `ref` names a live, non-zombie process that is the same one that was recorded. */
export function isAlive(ref: ProcRef): boolean {
  try {
    process.kill(ref.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (!hasProc) return true;
  const f = statFields(ref.pid);
  if (!f) return false;
  if (ref.procStart !== null && f[19] !== ref.procStart) return false;
  if (f[0] === 'Z' || f[0] === 'X') return threadsStillExiting(ref.pid);
  return true;
}

/**
 * A multi-threaded process (every Go server) whose main thread is already a zombie may still have
 * threads tearing down, and with them its open files and listening sockets: it is not gone until
 * every thread is.
 */
function threadsStillExiting(pid: number): boolean {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  return tids.some((tid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      return state !== 'Z' && state !== 'X';
    } catch {
      return false;
    }
  });
}

/**
 * Stops the process: SIGTERM, then SIGKILL if it is still alive after `graceMs`. Resolves once it
 * is gone. A process that is already dead (or was replaced by another one with the same pid) is
 * left alone.
 */
export async function terminate(ref: ProcRef, graceMs = 10_000): Promise<void> {
  if (!isAlive(ref)) return;
  const signal = (sig: NodeJS.Signals) => {
    try {
      process.kill(ref.pid, sig);
    } catch {
      /* already gone */
    }
  };
  signal('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isAlive(ref) && Date.now() < deadline) await sleep(50);
  if (!isAlive(ref)) return;
  signal('SIGKILL');
  const killDeadline = Date.now() + 5_000;
  while (isAlive(ref) && Date.now() < killDeadline) await sleep(50);
  if (isAlive(ref)) throw new Error(`process ${ref.pid} survived SIGKILL; stop it by hand (kill -9 ${ref.pid})`);
}

/**
 * Starts `bin args` in its own session, stdout and stderr appended to `logFile`, not tied to this
 * process: it keeps running after we exit.
 */
export async function spawnDetached(
  bin: string,
  args: string[],
  opts: { env: NodeJS.ProcessEnv; logFile: string; cwd: string },
): Promise<ProcRef> {
  const fd = openSync(opts.logFile, 'a', 0o600);
  try {
    const child = spawn(bin, args, { cwd: opts.cwd, env: opts.env, detached: true, stdio: ['ignore', fd, fd] });
    const pid = await new Promise<number>((resolvePid, reject) => {
      child.once('error', (e) => reject(new Error(`cannot start ${bin}: ${e.message}`)));
      child.once('spawn', () => resolvePid(child.pid as number));
    });
    child.unref();
    // The start time appears in /proc as soon as the process exists.
    return procRef(pid);
  } finally {
    closeSync(fd);
  }
}

/**
 * True when nothing listens on `port` on loopback (we can bind it ourselves). With `waitMs`, keeps
 * trying that long (a just-stopped server's sockets can take a moment to close).
 */
export async function isPortFree(port: number, host = LOOPBACK, waitMs = 0): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  while (true) {
    if (await canBind(port, host)) return true;
    if (Date.now() >= deadline) return false;
    await sleep(100);
  }
}

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolveFree) => {
    const srv = createServer();
    srv.once('error', () => resolveFree(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolveFree(true)));
  });
}

/** A port the kernel says is free right now, not in `exclude`. */
export async function freePort(exclude: ReadonlySet<number> = new Set(), host = LOOPBACK): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolvePort, reject) => {
      const srv = createServer();
      srv.once('error', reject);
      srv.listen({ port: 0, host, exclusive: true }, () => {
        const addr = srv.address();
        const p = typeof addr === 'object' && addr ? addr.port : 0;
        srv.close(() => resolvePort(p));
      });
    });
    if (port > 0 && !exclude.has(port)) return port;
  }
  throw new Error(`no free TCP port found on ${host}`);
}

/**
 * Ports for a server: each previously used port is kept when it is free (so a restarted server
 * keeps its address), otherwise replaced by a fresh free one — unless `require` is set, in which
 * case a busy previous port is an error naming it.
 */
export async function choosePorts<K extends string>(
  names: readonly K[],
  previous: Partial<Record<K, number>> | undefined,
  opts: { require?: boolean; what: string },
): Promise<{ ports: Record<K, number>; moved: K[] }> {
  const taken = new Set<number>();
  const ports = {} as Record<K, number>;
  const moved: K[] = [];
  for (const name of names) {
    const prev = previous?.[name];
    if (prev !== undefined && !taken.has(prev) && (await isPortFree(prev, LOOPBACK, opts.require ? 5_000 : 0))) {
      ports[name] = prev;
    } else {
      if (prev !== undefined) {
        if (opts.require) {
          throw new Error(
            `${opts.what}: its ${name} port ${prev} is in use by another process; free it (e.g. \`ss -ltnp | grep :${prev}\`) ` +
              `or run \`npm run infra -- up\` to move the server to new ports`,
          );
        }
        moved.push(name);
      }
      ports[name] = await freePort(taken);
    }
    taken.add(ports[name]);
  }
  return { ports, moved };
}

/** The last `n` lines of a log file ('' when it cannot be read), for error messages. */
export function tail(file: string, n = 20): string {
  try {
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    return lines.slice(-n).join('\n');
  } catch {
    return '';
  }
}
