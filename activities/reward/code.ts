/**
 * Code-execution reward: run the completion's program against the prompt's test cases in an
 * isolated child process, reward the fraction of tests passed (or all-or-nothing).
 *
 * Tests come from `metadata.tests` (`[{ input?: stdin, output?: expected stdout }]`, compared
 * line by line with trailing whitespace ignored by default) and/or `metadata.testCode` (code
 * appended to the program, e.g. Python `assert` lines or JS `if (...) throw`; exit status 0 passes).
 *
 * Isolation: the program runs through activities/sandbox/ (a bubblewrap sandbox where the host
 * has one: no network, nothing of the host but read-only system directories, a private /tmp, an
 * unprivileged uid, process and memory limits; else `unshare --net` and rlimits), in a fresh
 * private directory, killed with its process group at the wall-clock timeout, its output capped.
 * On top, in every layer, in-process guards: Python runs behind a `sys.addaudithook` hook that
 * refuses sockets, subprocesses, ctypes and any file write outside the private directory, with
 * `resource` limits on address space, CPU time and file size; JavaScript runs under Node's
 * permission model (`--experimental-permission`: file reads and writes only inside the private
 * directory, no child processes, no workers, no native addons), a preload that disables `net`,
 * `dgram`, `dns`, `http(s)`, `tls` and `fetch`, and `--max-old-space-size`.
 *
 * Without bubblewrap the guards are what stands between the program and the host's files: they
 * stop ordinary code and reward hacking, not a determined attacker (`sandbox: 'bubblewrap'`
 * refuses to run without the real sandbox).
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { z } from '../common/config.js';
import {
  runInSandbox,
  sandboxHost,
  SANDBOX_LAYERS,
  type SandboxLayer,
  type SandboxResult,
  type SandboxStatus,
} from '../sandbox/sandbox.js';
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
  /**
   * Which isolation runs the program (activities/sandbox/README.md): `auto` the strongest the host
   * allows (bubblewrap, else unshare, else process limits alone, with a warning), `bubblewrap`
   * only a real sandbox (refuses to run without one), `fallback` only the weaker layers.
   */
  sandbox: z.enum(['auto', 'bubblewrap', 'fallback']).default('auto'),
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
sys.stderr.write('\x1e'); sys.stderr.flush()
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
process.stderr.write('\x1e');
`;

/**
 * Written to stderr by each prelude as its last act before the program runs (guards in place),
 * and taken off again by `runSandboxed`: a result without it never ran the program — the sandbox
 * or the interpreter did not start. The program cannot fake it, since nothing of it runs before.
 */
const STARTED = '\u001e';

export type RunStatus = SandboxStatus;
export interface RunResult extends SandboxResult {
  /** Whether the program itself ran: false when the sandbox or the interpreter failed before it (bubblewrap's own setup, an interpreter that cannot start under the limits). */
  started: boolean;
}

export interface SandboxOptions {
  language: CodeLanguage;
  timeoutMs: number;
  memoryMb: number;
  maxOutputBytes: number;
  network: 'prefer' | 'require';
  /** Which layers of activities/sandbox/ may run the program (see the `sandbox` option). */
  sandbox?: 'auto' | 'bubblewrap' | 'fallback';
  pythonCommand: string;
  signal?: AbortSignal;
}

interface Python {
  /** The interpreter binary. */
  executable: string;
  /** Its prefixes (`sys.prefix`, `sys.base_prefix`), readable inside the sandbox (pyenv and venv installs live outside /usr). */
  prefixes: string[];
}
const pythons = new Map<string, Python>();

/**
 * The interpreter binary behind a Python command, resolved once: version-manager shims (pyenv,
 * asdf) are shell scripts that cost a second of start-up per run and read the environment.
 */
export function resolvePython(command: string): Python {
  let p = pythons.get(command);
  if (p === undefined) {
    const r = spawnSync(command, ['-c', 'import sys; print(sys.executable); print(sys.prefix); print(sys.base_prefix)'], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    const lines = r.stdout?.trim().split('\n') ?? [];
    if (r.error || r.status !== 0 || lines.length !== 3) {
      throw new Error(
        `code sandbox: cannot run ${command} (${r.error?.message ?? r.stderr.trim() ?? `exit ${r.status}`}): install Python 3 or set the pythonCommand option`,
      );
    }
    p = { executable: lines[0]!, prefixes: [...new Set(lines.slice(1))] };
    pythons.set(command, p);
  }
  return p;
}

/** The sandbox layers a program may run in, under the `network` and `sandbox` options. */
function acceptedLayers(o: SandboxOptions): SandboxLayer[] {
  const layers: SandboxLayer[] =
    o.sandbox === 'bubblewrap' ? ['bubblewrap'] : o.sandbox === 'fallback' ? ['unshare', 'process'] : [...SANDBOX_LAYERS];
  return o.network === 'require' ? layers.filter((l) => l !== 'process') : layers;
}

/**
 * Runs `code` once with `stdin` in a fresh sandbox (activities/sandbox/); never throws for the
 * program's own failures. Throws when no sandbox can run it at all (no accepted layer, the
 * interpreter missing, a process that cannot be spawned); `started` says whether the program ran.
 */
export async function runSandboxed(code: string, stdin: string, o: SandboxOptions): Promise<RunResult> {
  const r = await runProgram(code, stdin, o);
  // the prelude writes the marker before the program runs, after whatever the interpreter printed
  // starting up (a warning): its first occurrence is the prelude's, whatever the program prints later
  const at = r.stderr.indexOf(STARTED);
  return { ...r, started: at >= 0, stderr: at >= 0 ? r.stderr.slice(0, at) + r.stderr.slice(at + STARTED.length) : r.stderr };
}

async function runProgram(code: string, stdin: string, o: SandboxOptions): Promise<SandboxResult> {
  const layers = acceptedLayers(o);
  if (o.network === 'require' && !layers.some((l) => sandboxHost().layers.includes(l))) {
    throw new Error(
      'code sandbox: network isolation is required but neither bubblewrap nor `unshare --map-root-user --net` is permitted on this host (install bubblewrap, enable unprivileged user namespaces, or set network: "prefer")',
    );
  }
  const cpuSeconds = Math.ceil(o.timeoutMs / 1000) + 1;
  const limits = { timeoutMs: o.timeoutMs, maxOutputBytes: o.maxOutputBytes, signal: o.signal, layers };
  if (o.language === 'python') {
    const py = resolvePython(o.pythonCommand);
    return runInSandbox({
      ...limits,
      memoryMb: o.memoryMb,
      files: { 'main.py': code, 'sandbox_prelude.py': PY_PRELUDE },
      readOnly: py.prefixes,
      command: (dir) => [py.executable, '-I', '-B', join(dir, 'sandbox_prelude.py')],
      env: (dir) => ({
        PYTHONIOENCODING: 'utf-8',
        SANDBOX_ROOT: dir,
        SANDBOX_MEM_BYTES: String(o.memoryMb * 1024 * 1024),
        SANDBOX_CPU_SECONDS: String(cpuSeconds),
        SANDBOX_FSIZE_BYTES: String(o.maxOutputBytes * 4),
      }),
      stdin,
    });
  }
  return runInSandbox({
    ...limits,
    // V8's heap is capped at memoryMb; the process around it (code, young generation, buffers) gets 256 MiB more.
    memoryMb: o.memoryMb + 256,
    files: { 'main.mjs': code, 'sandbox_prelude.mjs': JS_PRELUDE },
    readOnly: [dirname(dirname(process.execPath))],
    command: (dir) => [
      process.execPath,
      '--no-warnings',
      '--experimental-permission',
      `--allow-fs-read=${dir}/`,
      `--allow-fs-write=${dir}/`,
      `--max-old-space-size=${o.memoryMb}`,
      '--import',
      join(dir, 'sandbox_prelude.mjs'),
      join(dir, 'main.mjs'),
    ],
    stdin,
  });
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
      // the sandbox, not the program, failed: an error for the run's error policy, never a score of 0
      const run = async (code: string, stdin: string) => {
        const r = await runSandboxed(code, stdin, sandbox);
        if (!r.started)
          throw new Error(
            `code_execution: the sandbox could not start the ${language} program of ${where} (${r.stderr.trim().split('\n')[0] || r.status}); check the interpreter and memoryMb`,
          );
        return r;
      };
      for (const t of tests) {
        const r = await run(prog.code, t.input);
        runs++;
        if (r.status === 'timeout') timeouts++;
        if (r.status === 'ok' && (t.output === undefined || outputsMatch(r.stdout, t.output, o.outputMatch))) passed++;
        if (ctx.signal.aborted) break;
      }
      if (testCode !== undefined && !ctx.signal.aborted) {
        const r = await run(`${prog.code}\n\n${testCode}\n`, '');
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
