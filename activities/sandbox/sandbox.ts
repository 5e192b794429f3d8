/**
 * Run an untrusted command: stdin in, stdout/stderr out, under time, memory, process and output
 * limits, with no network and one private writable directory.
 *
 * Three layers, the strongest the host allows (probed once per process) and the caller accepts:
 * - `bubblewrap`: a real sandbox (bwrap-args.ts): read-only system directories, nothing else of the
 *   host, a private size-limited /tmp, new network/pid/ipc/uts namespaces, an unprivileged uid
 *   when the worker runs as root, rlimits on processes, memory, CPU time, file size and open files.
 * - `unshare`: no bubblewrap, but the host allows `unshare --map-root-user --net`: an empty network
 *   namespace, a private host directory under the system temp dir as working directory, prlimit
 *   rlimits. Files and processes of the host stay reachable: callers add their own in-process guards
 *   (activities/reward/code.ts does for Python and JavaScript).
 * - `process`: neither: the rlimits and the private directory only.
 * In every layer the command runs in its own process group, killed (SIGKILL) at the wall-clock
 * timeout, on abort, or when its output passes the cap; the environment holds only PATH, HOME,
 * TMPDIR, LANG and what the caller adds.
 */
import { spawn, spawnSync, type StdioOptions } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { lstatSync, readlinkSync } from 'node:fs';
import { mkdtemp, rm, writeFile, realpath } from 'node:fs/promises';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { logger } from '../common/log.js';
import { bwrapArgs, type BwrapPlan, type HostPath } from './bwrap-args.js';

/** The isolation layers, strongest first. */
export const SANDBOX_LAYERS = ['bubblewrap', 'unshare', 'process'] as const;
export type SandboxLayer = (typeof SANDBOX_LAYERS)[number];

export interface SandboxLimits {
  /** Wall-clock limit in ms; the whole sandbox is killed at it (status `timeout`). */
  timeoutMs: number;
  /** Private memory per process in MiB (RLIMIT_DATA: heap and private mappings). */
  memoryMb: number;
  /**
   * Extra address space per process in MiB above `memoryMb` (RLIMIT_AS = memoryMb + this): room for
   * the reservations JITs make without using them (V8 reserves about 1 GiB at start). Shared
   * anonymous memory, which RLIMIT_DATA does not count, stays under RLIMIT_AS. Default 2048.
   */
  addressSlackMb?: number;
  /** Processes and threads (RLIMIT_NPROC; enforced by the `bubblewrap` layer, and elsewhere only for non-root users). Default 64. */
  maxProcesses?: number;
  /** Bytes of stdout + stderr kept; more kills the run (status `output_limit`). Default 1 MiB. */
  maxOutputBytes?: number;
  /** Size of the private writable directory in MiB (a tmpfs in the `bubblewrap` layer; elsewhere only each file is capped, at this size). Default 64. */
  tmpMb?: number;
  /** Open files per process (RLIMIT_NOFILE). Default 256. */
  maxOpenFiles?: number;
}

export interface SandboxRequest extends SandboxLimits {
  /** The command, given the private directory's path as the command sees it (`/tmp` in bubblewrap, a host temp dir elsewhere). Resolved on PATH inside. */
  command: (workdir: string) => readonly string[];
  /** Bytes for stdin (closed after). */
  stdin?: string | Buffer;
  /** Files placed in the private directory before the run: plain names (no `/`) to contents. */
  files?: Record<string, string | Buffer>;
  /** Host paths the command may read (an interpreter's prefix, a data directory), at the same path. System directories are always readable. */
  readOnly?: readonly string[];
  /** Environment variables added to PATH, HOME, TMPDIR and LANG (given the workdir as for `command`). */
  env?: (workdir: string) => Record<string, string>;
  /** Layers the caller accepts, strongest first (default all): the first the host allows runs; none allowed throws. */
  layers?: readonly SandboxLayer[];
  /** Aborting kills the run (status `timeout`). */
  signal?: AbortSignal;
}

export type SandboxStatus = 'ok' | 'exit' | 'timeout' | 'output_limit' | 'signal';

export interface SandboxResult {
  /** `ok` (exit 0), `exit` (non-zero), `timeout` (wall clock or abort), `output_limit`, `signal` (killed by a signal, e.g. SIGXCPU or SIGKILL; under bubblewrap an exit status 128 + N reads as signal N). */
  status: SandboxStatus;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** The layer that ran the command. */
  layer: SandboxLayer;
}

/** What the host allows, probed once per process; `why` says what failed for each missing layer. */
export interface SandboxHost {
  layers: SandboxLayer[];
  why: Partial<Record<SandboxLayer, string>>;
  /** Whether this process runs as root (bubblewrap then drops the command to an unprivileged uid). */
  root: boolean;
}

const DEFAULTS = { addressSlackMb: 2048, maxProcesses: 64, maxOutputBytes: 1 << 20, tmpMb: 64, maxOpenFiles: 256 };
const PATH_INSIDE = '/usr/local/bin:/usr/bin:/bin';
const log = logger('sandbox');

function hostPath(p: string): HostPath {
  try {
    const st = lstatSync(p);
    if (st.isSymbolicLink()) return { kind: 'link', target: readlinkSync(p) };
    return { kind: st.isDirectory() ? 'dir' : 'file' };
  } catch {
    return undefined;
  }
}

/** A uid no account uses, fresh per run (RLIMIT_NPROC counts per uid: concurrent sandboxes must not share one). */
function sandboxUid(): number {
  return randomInt(1_000_000, 2_000_000_000);
}

const isRoot = () => process.getuid?.() === 0;

function tryRun(argv: string[]): string | undefined {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.error) return r.error.message;
  if (r.status !== 0) return (r.stderr || `exit ${r.status ?? r.signal}`).trim();
  return undefined;
}

let probed: SandboxHost | undefined;

/** The layers this host allows, strongest first (probed once per process by running `true` in each). */
export function sandboxHost(): SandboxHost {
  if (probed) return probed;
  const root = isRoot();
  const why: SandboxHost['why'] = {};
  const plan = probePlan(root);
  why.bubblewrap = tryRun(['bwrap', ...bwrapArgs(plan)]);
  if (why.bubblewrap?.includes('ENOENT'))
    why.bubblewrap = 'bwrap is not installed (Debian/Ubuntu: `apt-get install bubblewrap`; as root `npm run infra -- sandbox` does it)';
  why.unshare = tryRun(['unshare', '--map-root-user', '--net', 'true']);
  const layers = SANDBOX_LAYERS.filter((l) => l === 'process' || why[l] === undefined);
  for (const l of layers) delete why[l];
  probed = { layers, why, root };
  return probed;
}

function probePlan(root: boolean): BwrapPlan {
  return {
    command: ['true'],
    files: [],
    readOnly: [],
    tmpMb: 1,
    dataBytes: 64 << 20,
    addressSpaceBytes: 1 << 30,
    maxProcesses: 8,
    cpuSeconds: 5,
    fileBytes: 1 << 20,
    maxOpenFiles: 64,
    uid: root ? sandboxUid() : undefined,
    host: hostPath,
  };
}

/** The layer a request would run in, or an error naming what the host lacks. */
export function chooseLayer(accepted: readonly SandboxLayer[] = SANDBOX_LAYERS): SandboxLayer {
  const host = sandboxHost();
  const layer = accepted.find((l) => host.layers.includes(l));
  if (!layer) {
    const missing = accepted.map((l) => `${l}: ${host.why[l] ?? 'not allowed'}`).join('; ');
    throw new Error(`sandbox: none of the accepted layers (${accepted.join(', ')}) is available on this host (${missing})`);
  }
  const best = host.layers[0]!;
  if (layer !== 'bubblewrap' && !warned.has(layer) && accepted.includes('bubblewrap')) {
    warned.add(layer);
    log.warn(
      { layer, why: host.why.bubblewrap },
      `sandbox: bubblewrap is not usable here (${host.why.bubblewrap}); untrusted commands run in the weaker '${layer}' layer${best === 'process' ? ' (no network namespace either)' : ''}`,
    );
  }
  return layer;
}
const warned = new Set<SandboxLayer>();

function checkFileName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0'))
    throw new Error(`sandbox: file name ${JSON.stringify(name)} must be a plain name (no '/')`);
}

/** Runs `req.command` once in a fresh sandbox; the command's own failures are results, never throws. */
export async function runInSandbox(req: SandboxRequest): Promise<SandboxResult> {
  const layer = chooseLayer(req.layers);
  const o = { ...DEFAULTS, ...stripUndefined(req), timeoutMs: req.timeoutMs, memoryMb: req.memoryMb };
  const files = Object.entries(req.files ?? {});
  files.forEach(([n]) => checkFileName(n));
  const cpuSeconds = Math.ceil(o.timeoutMs / 1000) + 1;
  const dataBytes = o.memoryMb * 1024 * 1024;
  const addressSpaceBytes = (o.memoryMb + o.addressSlackMb) * 1024 * 1024;
  const fileBytes = o.tmpMb * 1024 * 1024;
  let workdir = '/tmp';
  let hostDir: string | undefined;
  let argv: string[];
  if (layer === 'bubblewrap') {
    argv = [
      'bwrap',
      ...bwrapArgs({
        command: req.command(workdir),
        files: files.map(([n]) => n),
        readOnly: req.readOnly ?? [],
        tmpMb: o.tmpMb,
        dataBytes,
        addressSpaceBytes,
        maxProcesses: o.maxProcesses,
        cpuSeconds,
        fileBytes,
        maxOpenFiles: o.maxOpenFiles,
        uid: sandboxHost().root ? sandboxUid() : undefined,
        host: hostPath,
      }),
    ];
  } else {
    hostDir = await realpath(await mkdtemp(join(tmpdir(), 'durable-rl-sandbox-')));
    workdir = hostDir;
    for (const [name, content] of files) await writeFile(join(hostDir, name), content);
    const limits = [
      `--nproc=${o.maxProcesses}`,
      `--data=${dataBytes}`,
      `--as=${addressSpaceBytes}`,
      `--cpu=${cpuSeconds}`,
      `--fsize=${fileBytes}`,
      `--nofile=${o.maxOpenFiles}`,
      '--core=0',
    ];
    argv = ['prlimit', ...limits, '--', ...req.command(workdir)];
    if (layer === 'unshare') argv = ['unshare', '--map-root-user', '--net', '--', ...argv];
  }
  const env = { PATH: PATH_INSIDE, HOME: workdir, TMPDIR: workdir, LANG: 'C.UTF-8', ...req.env?.(workdir) };
  try {
    return await spawnSandbox(argv, hostDir ?? process.cwd(), env, layer, layer === 'bubblewrap' ? files : [], req, o);
  } finally {
    if (hostDir) await rm(hostDir, { recursive: true, force: true });
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function signalName(n: number): NodeJS.Signals | undefined {
  return (Object.entries(constants.signals) as [NodeJS.Signals, number][]).find(([, v]) => v === n)?.[0];
}

function spawnSandbox(
  argv: string[],
  cwd: string,
  env: Record<string, string>,
  layer: SandboxLayer,
  fdFiles: [string, string | Buffer][],
  req: SandboxRequest,
  o: { timeoutMs: number; maxOutputBytes: number },
): Promise<SandboxResult> {
  return new Promise<SandboxResult>((resolve, reject) => {
    const t0 = performance.now();
    const stdio: StdioOptions = ['pipe', 'pipe', 'pipe', ...fdFiles.map(() => 'pipe' as const)];
    const child = spawn(argv[0]!, argv.slice(1), { cwd, env, detached: true, stdio });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let bytes = 0;
    let status: SandboxStatus | undefined;
    const kill = (why: SandboxStatus) => {
      status ??= why;
      try {
        process.kill(-child.pid!, 'SIGKILL'); // bubblewrap's pid namespace dies with it (--die-with-parent)
      } catch {
        // already gone
      }
    };
    const timer = setTimeout(() => kill('timeout'), o.timeoutMs);
    const onAbort = () => kill('timeout');
    if (req.signal?.aborted) onAbort();
    req.signal?.addEventListener('abort', onAbort, { once: true });
    const collect = (into: Buffer[]) => (b: Buffer) => {
      bytes += b.length;
      if (bytes > o.maxOutputBytes) kill('output_limit');
      else into.push(b);
    };
    child.stdout!.on('data', collect(out));
    child.stderr!.on('data', collect(err));
    fdFiles.forEach(([, content], i) => {
      const w = child.stdio[3 + i] as Writable;
      w.on('error', () => undefined);
      w.end(content);
    });
    child.stdin!.on('error', () => undefined); // the command may exit without reading its input
    child.stdin!.end(req.stdin ?? '');
    const done = () => {
      clearTimeout(timer);
      req.signal?.removeEventListener('abort', onAbort);
    };
    child.on('error', (e) => {
      done();
      reject(new Error(`sandbox: cannot start ${argv[0]}: ${e.message}`));
    });
    child.on('close', (exit, kill) => {
      done();
      let code = exit;
      let sig = kill;
      // bubblewrap exits 128 + N when the command died of signal N
      const bySignal = layer === 'bubblewrap' && code !== null && code > 128 ? signalName(code - 128) : undefined;
      if (bySignal) [code, sig] = [null, bySignal];
      resolve({
        status: status ?? (sig ? 'signal' : code === 0 ? 'ok' : 'exit'),
        exitCode: code,
        signal: sig,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ms: performance.now() - t0,
        layer,
      });
    });
  });
}
