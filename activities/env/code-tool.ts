/**
 * A code-execution tool for environments: the policy writes a program (Python or JavaScript), the
 * tool runs it in a sandbox and the observation is what it printed.
 *
 *   tagged:  <py>print(sum(range(10)))</py>  →  <o>45\n</o>
 *   hermes:  <tool_call>{"name": "python", "arguments": {"code": "print(45)"}}</tool_call>
 *
 * The program runs the way the `code_execution` reward runs one (`runSandboxed` of
 * ../reward/code.ts, through activities/sandbox/): in a bubblewrap sandbox where the host has one
 * (no network, nothing of the host but read-only system directories, a private /tmp, an
 * unprivileged uid, process, memory and time limits), else in the weaker layers with the reward's
 * in-process guards. Each call is a fresh sandbox: nothing carries over between calls.
 *
 * Failures, split the way the episode loop needs them:
 * - the program's own: a non-zero exit, an exception, the time limit, the memory limit, a signal,
 *   too much output — an observation the policy sees (`error: exit status 1` and the output), as
 *   a failed test would be; the episode goes on.
 * - the sandbox's: no sandbox can run it (no layer the tool accepts, the interpreter missing, a
 *   process that cannot be spawned, a private directory that cannot be made), or the sandbox or
 *   the interpreter failed before the program ran (runSandboxed's `started`, which the program
 *   cannot fake) — a `ToolInfraError`: the episode retries the call alone (`toolRetry`) and one
 *   that fails for good ends "tool_failure", left out of the advantages, never scored 0.
 *
 * Deterministic as the program is: the observation holds its output and exit status, never the
 * time it took (a timeout, though, depends on the machine).
 */
import { parseConfig, z } from '../common/config.js';
import { runSandboxed, type RunResult } from '../reward/code.js';
import { ToolInfraError, type Tool } from './types.js';

export const CodeToolOptions = z.strictObject({
  /** The name the policy calls it by (the hermes JSON's `name`). */
  name: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_.-]*$/, 'a tool name: letters, digits, _ . -')
    .default('python'),
  /** Language of the programs. */
  language: z.enum(['python', 'javascript']).default('python'),
  /** Its tag in the `tagged` format (`<py>…</py>`); default the name. */
  tag: z.string().optional(),
  /** The one line the model reads about it (default: says the language and that it sees what the program prints). */
  description: z.string().optional(),
  /** Wall-clock limit of one run, in ms (the program is killed at it: `error: timed out …`). */
  timeoutMs: z.number().int().positive().max(600_000).default(5_000),
  /** Memory limit per process in MiB (Python: address space; JavaScript: V8 old-space). */
  memoryMb: z.number().int().min(32).max(65_536).default(256),
  /** Most bytes of stdout + stderr a run may print; more stops it (`error: output over …`). */
  maxOutputBytes: z
    .number()
    .int()
    .positive()
    .default(64 * 1024),
  /** Most characters of output the observation keeps (the rest is cut, saying how much): observations are tokens of the episode. */
  maxObservationChars: z.number().int().positive().default(2_000),
  /**
   * Which isolation runs the programs (activities/sandbox/README.md): `auto` the strongest the
   * host allows (bubblewrap, else the weaker layers with in-process guards and a warning),
   * `bubblewrap` only a real sandbox (a host without one fails every call as infrastructure),
   * `fallback` only the weaker layers.
   */
  sandbox: z.enum(['auto', 'bubblewrap', 'fallback']).default('auto'),
  /** Network isolation: `require` an empty network namespace (bubblewrap or unshare), or `prefer` it. */
  network: z.enum(['prefer', 'require']).default('prefer'),
  /** The Python interpreter command (resolved once per process to its binary). */
  pythonCommand: z.string().min(1).default('python3'),
});
export type CodeToolOptions = z.output<typeof CodeToolOptions>;

/** Time a call may take beyond its program's limit before the episode counts the tool as hung (sandbox start-up, the interpreter's first resolution). */
const START_SLACK_MS = 10_000;

/**
 * The observation of a run of a program that started: its output (stdout, then stderr), after
 * `error: …` saying how it failed when it did, cut at `maxObservationChars`. Throws
 * `ToolInfraError` for a run in which the program never started.
 */
export function codeObservation(
  r: RunResult,
  o: Pick<CodeToolOptions, 'name' | 'timeoutMs' | 'maxOutputBytes' | 'maxObservationChars'>,
): string {
  if (!r.started) {
    const why = r.stderr.trim().split('\n')[0] || (r.exitCode !== null ? `exit status ${r.exitCode}` : (r.signal ?? r.status));
    throw new ToolInfraError(`${o.name}: the sandbox did not start the program (${r.layer}: ${why})`);
  }
  const output = r.stdout + (r.stderr !== '' && r.stdout !== '' && !r.stdout.endsWith('\n') ? '\n' : '') + r.stderr;
  const failure =
    r.status === 'ok'
      ? null
      : r.status === 'exit'
        ? `exit status ${r.exitCode}`
        : r.status === 'timeout'
          ? `timed out after ${o.timeoutMs} ms`
          : r.status === 'output_limit'
            ? `output over ${o.maxOutputBytes} bytes: stopped`
            : `killed by ${r.signal}${r.signal === 'SIGXCPU' ? ' (CPU time limit)' : ''}`;
  const text = failure === null ? output : `error: ${failure}${output === '' ? '' : `\n${output}`}`;
  if (text.length <= o.maxObservationChars) return text;
  return `${text.slice(0, o.maxObservationChars)}… (${text.length - o.maxObservationChars} more characters)`;
}

/**
 * A tool that runs the policy's program in a sandbox (see the file comment). Options are
 * validated (a ConfigError naming the field); its one argument is `code`, the program.
 */
export function codeExecutionTool(options: z.input<typeof CodeToolOptions> = {}): Tool {
  const o = parseConfig(CodeToolOptions, options, 'code execution tool options');
  const language = o.language === 'python' ? 'Python' : 'JavaScript';
  return {
    spec: {
      name: o.name,
      description:
        o.description ??
        `Runs a ${language} program in a sandbox (no network, no files of the host) and returns what it prints (stdout, then stderr).`,
      parameters: {
        type: 'object',
        properties: { code: { type: 'string', description: `the ${language} program; print what you want to see` } },
        required: ['code'],
        additionalProperties: false,
      },
    },
    ...(o.tag !== undefined ? { tag: o.tag } : {}),
    timeoutMs: o.timeoutMs + START_SLACK_MS,
    async run(args, ctx) {
      let r: RunResult;
      try {
        r = await runSandboxed(String(args.code), '', { ...o, signal: ctx.signal });
      } catch (err) {
        if (ctx.signal.aborted) throw err; // cancelled or timed out: the episode's own decision
        throw new ToolInfraError(`${o.name}: no sandbox could run the program: ${(err as Error)?.message ?? String(err)}`);
      }
      return codeObservation(r, o);
    },
  };
}
