/**
 * Code-execution reward: run the completion's program against the prompt's test cases in an
 * isolated child process, reward the fraction of tests passed (or all-or-nothing).
 *
 * Tests come from `metadata.tests` (`[{ input?: stdin, output?: expected stdout }]`, compared
 * line by line with trailing whitespace ignored by default) and/or `metadata.testCode` (code
 * appended to the program, e.g. Python `assert` lines or JS `if (...) throw`; exit status 0 passes).
 *
 * Isolation, in layers, using what Linux offers without root:
 * 1. a fresh temp directory per sample as working directory and HOME, an environment holding only
 *    PATH, the process in its own process group, killed (SIGKILL to the group) at the wall-clock
 *    timeout, output capped;
 * 2. no network: `unshare --map-root-user --net` puts the process in an empty network namespace
 *    (not even loopback). Where user namespaces are unavailable the reward logs a warning once
 *    and relies on layer 3 alone (`network: 'require'` refuses to run instead);
 * 3. in-process guards: Python runs behind a `sys.addaudithook` hook that refuses sockets,
 *    subprocesses, ctypes and any file write outside the temp directory, with `resource` limits on
 *    address space, CPU time and file size; JavaScript runs under Node's permission model
 *    (`--experimental-permission`: file reads and writes only inside the temp directory, no child
 *    processes, no workers, no native addons), a preload that disables `net`, `dgram`, `dns`,
 *    `http(s)`, `tls` and `fetch`, `--max-old-space-size`, and `prlimit` CPU/file-size limits.
 *
 * Layer 3 is a guard against accidents and reward hacking by ordinary code, not a security boundary
 * against a determined attacker; run untrusted-at-scale workloads in a container or VM as well.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile, realpath } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from '../common/config.js';
import { logger } from '../common/log.js';
import { defineReward, type RewardResult, type RewardSample } from './types.js';

export type CodeLanguage = 'python' | 'javascript';

export const CodeOptions = z.strictObject({
  /** Language of the program; `auto` reads `metadata.language`, then the code fence's tag. */
  language: z.enum(['auto', 'python', 'javascript']).default('auto'),
  /** Wall-clock limit per test run, in ms (the process group is killed at it). */
  timeoutMs: z.number().int().positive().max(600_000).default(5_000),
  /** Memory limit in MiB (Python: address space; JavaScript: V8 old-space). */
  memoryMb: z.number().int().min(32).max(65_536).default(512),
  /** Largest stdout/stderr kept per run, in bytes; more is a failure. */
  maxOutputBytes: z
    .number()
    .int()
    .positive()
    .default(1 << 20),
  /** Network isolation: `require` an empty network namespace, or `prefer` it and fall back to in-process guards with a warning. */
  network: z.enum(['prefer', 'require']).default('prefer'),
  /** Stdout comparison: `trim` ignores trailing whitespace per line and trailing blank lines, `tokens` compares whitespace-separated tokens, `exact` bytes. */
  outputMatch: z.enum(['trim', 'tokens', 'exact']).default('trim'),
  /** `fraction` of tests passed, or `all` (1 only when every test passes). */
  scoring: z.enum(['fraction', 'all']).default('fraction'),
  /** Python interpreter command. */
  pythonCommand: z.string().min(1).default('python3'),
  /** Metadata key of the stdin/stdout tests. */
  testsKey: z.string().min(1).default('tests'),
  /** Metadata key of the appended test code. */
  testCodeKey: z.string().min(1).default('testCode'),
});
export type CodeOptions = z.output<typeof CodeOptions>;

const TestCase = z.strictObject({ input: z.string().default(''), output: z.string().optional() });
const TestCases = z.array(TestCase);

const FENCE = /```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n([\s\S]*?)```/g;
const LANG_TAGS: Record<string, CodeLanguage> = {
  python: 'python',
  py: 'python',
  python3: 'python',
  javascript: 'javascript',
  js: 'javascript',
  mjs: 'javascript',
  node: 'javascript',
};

/** The program in a completion: the last fenced block (of the language, if known), else the text after `</think>`. */
export function extractProgram(completion: string, language?: CodeLanguage): { code: string; language?: CodeLanguage } {
  const blocks = [...completion.matchAll(FENCE)].map((m) => ({ tag: LANG_TAGS[m[1]!.toLowerCase()], code: m[2]! }));
  const ofLang = language ? blocks.filter((b) => b.tag === language || b.tag === undefined) : blocks;
  const pick = ofLang[ofLang.length - 1];
  if (pick) return { code: pick.code, language: language ?? pick.tag };
  const after = completion.includes('</think>') ? completion.slice(completion.lastIndexOf('</think>') + 8) : completion;
  return { code: after.trim(), language };
}

// ---------------------------------------------------------------------------------------------
// The sandbox

const PY_PRELUDE = String.raw`
import os, sys, resource, runpy
_root = os.path.realpath(os.environ.pop('SANDBOX_ROOT'))
_mem = int(os.environ.pop('SANDBOX_MEM_BYTES'))
_cpu = int(os.environ.pop('SANDBOX_CPU_SECONDS'))
_fsize = int(os.environ.pop('SANDBOX_FSIZE_BYTES'))
resource.setrlimit(resource.RLIMIT_AS, (_mem, _mem))
resource.setrlimit(resource.RLIMIT_CPU, (_cpu, _cpu))
resource.setrlimit(resource.RLIMIT_FSIZE, (_fsize, _fsize))
_inside = lambda p: (lambda r: r == _root or r.startswith(_root + os.sep))(os.path.realpath(os.fsdecode(p)))
_W = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_DENY = ('socket.', 'subprocess.', 'os.system', 'os.exec', 'os.posix_spawn', 'os.spawn', 'os.fork', 'os.forkpty',
         'ctypes.', 'pty.', 'webbrowser.', 'urllib.Request', 'http.client.', 'ftplib.', 'smtplib.', 'telnetlib.', 'nntplib.', 'imaplib.', 'poplib.')
_PATHS = {'os.remove': 1, 'os.rmdir': 1, 'os.mkdir': 1, 'os.chmod': 1, 'os.chown': 1, 'os.truncate': 1, 'os.utime': 1,
          'os.rename': 2, 'os.link': 2, 'os.symlink': 2, 'shutil.copyfile': 2, 'shutil.rmtree': 1, 'os.removexattr': 1, 'os.setxattr': 1}
def _hook(event, args):
    if event.startswith(_DENY):
        raise PermissionError('sandbox: ' + event + ' is not allowed')
    if event == 'open':
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in 'wax+')) or (isinstance(flags, int) and flags & _W)
        if writing and not isinstance(path, int) and not _inside(path):
            raise PermissionError('sandbox: writing outside the sandbox directory is not allowed: ' + os.fsdecode(path))
    elif event in _PATHS:
        for p in args[:_PATHS[event]]:
            if isinstance(p, (str, bytes, os.PathLike)) and not _inside(p):
                raise PermissionError('sandbox: ' + event + ' outside the sandbox directory is not allowed')
sys.addaudithook(_hook)
sys.argv = ['main.py']
runpy.run_path(os.path.join(_root, 'main.py'), run_name='__main__')
`;

const JS_PRELUDE = `
import { syncBuiltinESMExports } from 'node:module';
import net from 'node:net';
import dgram from 'node:dgram';
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
const deny = (what) => () => { throw Object.assign(new Error('sandbox: ' + what + ' is not allowed'), { code: 'ERR_SANDBOX_NETWORK' }); };
net.connect = net.createConnection = deny('net.connect');
net.Socket.prototype.connect = deny('net.Socket.connect');
net.createServer = deny('net.createServer');
net.Server.prototype.listen = deny('net.Server.listen');
dgram.createSocket = deny('dgram.createSocket');
for (const k of ['lookup', 'resolve', 'resolve4', 'resolve6', 'resolveAny']) { dns[k] = deny('dns.' + k); dns.promises[k] = deny('dns.promises.' + k); }
http.request = http.get = deny('http.request');
https.request = https.get = deny('https.request');
tls.connect = deny('tls.connect');
globalThis.fetch = deny('fetch');
globalThis.WebSocket = undefined;
syncBuiltinESMExports();
`;

interface Capabilities {
  unshare: boolean;
  prlimit: boolean;
}
let caps: Capabilities | undefined;
let warned = false;

/** Probes (once per process) which isolation tools this host allows. */
export function sandboxCapabilities(): Capabilities {
  if (!caps) {
    const ok = (cmd: string, args: string[]) => {
      const r = spawnSync(cmd, args, { stdio: 'ignore', timeout: 5_000 });
      return r.status === 0;
    };
    caps = { unshare: ok('unshare', ['--map-root-user', '--net', 'true']), prlimit: ok('prlimit', ['--cpu=10', 'true']) };
  }
  return caps;
}

export type RunStatus = 'ok' | 'exit' | 'timeout' | 'output_limit' | 'signal';

export interface RunResult {
  status: RunStatus;
  exitCode: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface SandboxOptions {
  language: CodeLanguage;
  timeoutMs: number;
  memoryMb: number;
  maxOutputBytes: number;
  network: 'prefer' | 'require';
  pythonCommand: string;
  signal?: AbortSignal;
}

const pythonPaths = new Map<string, string>();

/**
 * The interpreter binary behind a Python command, resolved once: version-manager shims (pyenv,
 * asdf) are shell scripts that cost a second of start-up per run and read the environment.
 */
export function resolvePython(command: string): string {
  let p = pythonPaths.get(command);
  if (p === undefined) {
    const r = spawnSync(command, ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8', timeout: 30_000 });
    if (r.error || r.status !== 0 || r.stdout.trim() === '') {
      throw new Error(
        `code sandbox: cannot run ${command} (${r.error?.message ?? r.stderr.trim() ?? `exit ${r.status}`}): install Python 3 or set the pythonCommand option`,
      );
    }
    p = r.stdout.trim();
    pythonPaths.set(command, p);
  }
  return p;
}

/** Runs `code` once with `stdin` in a fresh sandbox directory; never throws for the program's own failures. */
export async function runSandboxed(code: string, stdin: string, o: SandboxOptions): Promise<RunResult> {
  const c = sandboxCapabilities();
  if (!c.unshare) {
    if (o.network === 'require') {
      throw new Error(
        'code sandbox: network isolation is required but `unshare --map-root-user --net` is not permitted on this host (enable unprivileged user namespaces, or set network: "prefer")',
      );
    }
    if (!warned) {
      warned = true;
      logger('reward:code').warn(
        'unshare --net is not permitted on this host: code runs without a network namespace, guarded in-process only',
      );
    }
  }
  const dir = await realpath(await mkdtemp(join(tmpdir(), 'durable-rl-code-')));
  try {
    const cpuSeconds = Math.ceil(o.timeoutMs / 1000) + 1;
    let argv: string[];
    if (o.language === 'python') {
      await writeFile(join(dir, 'main.py'), code);
      await writeFile(join(dir, 'sandbox_prelude.py'), PY_PRELUDE);
      argv = [resolvePython(o.pythonCommand), '-I', '-B', join(dir, 'sandbox_prelude.py')];
    } else {
      await writeFile(join(dir, 'main.mjs'), code);
      await writeFile(join(dir, 'sandbox_prelude.mjs'), JS_PRELUDE);
      argv = [
        process.execPath,
        '--no-warnings',
        '--experimental-permission',
        `--allow-fs-read=${dir}/`,
        `--allow-fs-write=${dir}/`,
        `--max-old-space-size=${o.memoryMb}`,
        '--import',
        join(dir, 'sandbox_prelude.mjs'),
        join(dir, 'main.mjs'),
      ];
      if (c.prlimit) argv = ['prlimit', `--cpu=${cpuSeconds}`, `--fsize=${o.maxOutputBytes * 4}`, '--', ...argv];
    }
    if (c.unshare) argv = ['unshare', '--map-root-user', '--net', '--', ...argv];
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: dir,
      TMPDIR: dir,
      LANG: 'C.UTF-8',
      PYTHONIOENCODING: 'utf-8',
      SANDBOX_ROOT: dir,
      SANDBOX_MEM_BYTES: String(o.memoryMb * 1024 * 1024),
      SANDBOX_CPU_SECONDS: String(cpuSeconds),
      SANDBOX_FSIZE_BYTES: String(o.maxOutputBytes * 4),
    };
    return await new Promise<RunResult>((resolve, reject) => {
      const t0 = performance.now();
      const child = spawn(argv[0]!, argv.slice(1), { cwd: dir, env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let bytes = 0;
      let status: RunStatus | undefined;
      const kill = (why: RunStatus) => {
        status ??= why;
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      };
      const timer = setTimeout(() => kill('timeout'), o.timeoutMs);
      const onAbort = () => kill('timeout');
      o.signal?.addEventListener('abort', onAbort, { once: true });
      const collect = (into: Buffer[]) => (b: Buffer) => {
        bytes += b.length;
        if (bytes > o.maxOutputBytes) kill('output_limit');
        else into.push(b);
      };
      child.stdout.on('data', collect(out));
      child.stderr.on('data', collect(err));
      child.stdin.on('error', () => undefined); // the program may exit without reading its input
      child.stdin.end(stdin);
      child.on('error', (e) => {
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
        reject(new Error(`code sandbox: cannot start ${argv[0]}: ${e.message}`));
      });
      child.on('close', (code, sig) => {
        clearTimeout(timer);
        o.signal?.removeEventListener('abort', onAbort);
        resolve({
          status: status ?? (sig ? 'signal' : code === 0 ? 'ok' : 'exit'),
          exitCode: code,
          signal: sig,
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
          ms: performance.now() - t0,
        });
      });
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function outputsMatch(got: string, want: string, mode: 'trim' | 'tokens' | 'exact'): boolean {
  if (mode === 'exact') return got === want;
  if (mode === 'tokens') return got.split(/\s+/u).filter(Boolean).join(' ') === want.split(/\s+/u).filter(Boolean).join(' ');
  const norm = (s: string) =>
    s
      .replace(/\r\n/g, '\n')
      .split('\n')
      .map((l) => l.trimEnd())
      .join('\n')
      .replace(/\n+$/, '');
  return norm(got) === norm(want);
}

function languageOf(sample: RewardSample, o: CodeOptions): CodeLanguage | undefined {
  if (o.language !== 'auto') return o.language;
  const m = sample.metadata?.language;
  if (typeof m === 'string') {
    const l = LANG_TAGS[m.toLowerCase()];
    if (!l)
      throw new Error(`metadata.language ${JSON.stringify(m)} of prompt ${sample.promptId} is not supported: use python or javascript`);
    return l;
  }
  return undefined;
}

export const codeExecution = defineReward({
  name: 'code_execution',
  description: "runs the completion's Python or JavaScript program against the prompt's tests in a sandbox; fraction passed",
  source: 'execution-based code rewards (e.g. CodeRL, Le et al. 2022; DeepSeek-R1 code tasks)',
  optionsSchema: CodeOptions,
  create: (o) => ({
    async score(sample, ctx): Promise<RewardResult> {
      const where = `prompt ${sample.promptId}`;
      const rawTests = sample.metadata?.[o.testsKey];
      let tests: z.output<typeof TestCases> = [];
      if (rawTests !== undefined) {
        const parsed = TestCases.safeParse(rawTests);
        if (!parsed.success) {
          const i = parsed.error.issues[0]!;
          throw new Error(
            `metadata.${o.testsKey} of ${where} must be [{ input?: string, output?: string }]: ${i.path.join('.')}: ${i.message}`,
          );
        }
        tests = parsed.data;
      }
      const testCode = sample.metadata?.[o.testCodeKey];
      if (testCode !== undefined && typeof testCode !== 'string')
        throw new Error(`metadata.${o.testCodeKey} of ${where} must be a string of code`);
      if (tests.length === 0 && testCode === undefined) {
        throw new Error(
          `code_execution needs tests for ${where}: set metadata.${o.testsKey} ([{ input, output }]) or metadata.${o.testCodeKey}`,
        );
      }
      const prog = extractProgram(sample.completion, languageOf(sample, o));
      const language = prog.language;
      if (!language) throw new Error(`code_execution cannot tell the language of ${where}: set the language option or metadata.language`);
      if (prog.code === '') return { reward: 0, components: { pass_rate: 0, timeouts: 0, runs: 0 } };
      const sandbox: SandboxOptions = { ...o, language, signal: ctx.signal };
      let passed = 0;
      let timeouts = 0;
      let runs = 0;
      for (const t of tests) {
        const r = await runSandboxed(prog.code, t.input, sandbox);
        runs++;
        if (r.status === 'timeout') timeouts++;
        if (r.status === 'ok' && (t.output === undefined || outputsMatch(r.stdout, t.output, o.outputMatch))) passed++;
        if (ctx.signal.aborted) break;
      }
      if (testCode !== undefined && !ctx.signal.aborted) {
        const r = await runSandboxed(`${prog.code}\n\n${testCode}\n`, '', sandbox);
        runs++;
        if (r.status === 'timeout') timeouts++;
        if (r.status === 'ok') passed++;
      }
      const total = tests.length + (testCode !== undefined ? 1 : 0);
      const rate = passed / total;
      return { reward: o.scoring === 'all' ? (passed === total ? 1 : 0) : rate, components: { pass_rate: rate, timeouts, runs } };
    },
  }),
});
