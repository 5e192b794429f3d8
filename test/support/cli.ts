/**
 * Runs the `durable-rl` CLI (workers/cli.ts) as a child process, the way a person runs it, and
 * collects its exit code and output. Shared by the CLI integration tests.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = fileURLToPath(new URL('../..', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `durable-rl ...args` with `env` added to this process's environment, in `cwd` (default the repository root). */
export function runCli(args: string[], env: Record<string, string>, cwd = root): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    // tsx by URL: the child may run in another directory (where `report` writes by default).
    const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'workers/cli.ts'), ...args], {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
