/**
 * The test command (`npm test`): type-check, lint, make sure the real servers are up, then run
 * every test file with Node's built-in test runner so CI can read the totals.
 *
 *   npm test                      everything
 *   npm test -- --only unit       one folder of test/ (unit or integration)
 *   npm test -- store manifest    only files whose path contains one of these words
 *   npm test -- --no-check        skip tsc, eslint and the prettier check (quick local loops)
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
const noCheck = args.includes('--no-check');
const filters = args.filter((a, i) => !a.startsWith('--') && args[i - 1] !== '--only');

function step(title: string, cmd: string, cmdArgs: string[], env: NodeJS.ProcessEnv = process.env): void {
  const t0 = Date.now();
  process.stdout.write(`\n== ${title}\n`);
  const r = spawnSync(cmd, cmdArgs, { cwd: root, stdio: 'inherit', env });
  if (r.status !== 0) {
    process.stdout.write(`== ${title} failed (exit ${r.status ?? r.signal})\n`);
    process.exit(r.status ?? 1);
  }
  process.stdout.write(`== ${title} ok (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
}

function findTests(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...findTests(p));
    else if (name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out.sort();
}

// Quiet logs in tests (a failing test prints its own context); see README for the knobs.
process.env.DURABLE_RL_LOG_LEVEL ??= 'warn';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const bin = (name: string) => join(root, 'node_modules', '.bin', name);

if (!noCheck) {
  step('type-check (tsc)', bin('tsc'), ['-p', 'tsconfig.json']);
  step('lint (eslint)', bin('eslint'), ['.']);
  step('format (prettier --check; fix with npm run format)', bin('prettier'), ['--check', '--log-level', 'warn', '.']);
}

let files = findTests(join(root, 'test'));
if (only) files = files.filter((f) => f.startsWith(join('test', only)));
if (filters.length) files = files.filter((f) => filters.some((w) => f.includes(w)));
if (files.length === 0) {
  process.stdout.write('no test files matched\n');
  process.exit(1);
}

const needsServers = files.some((f) => !f.startsWith(join('test', 'unit')));
if (needsServers) step('real servers (infra up)', bin('tsx'), ['infra/cli.ts', 'up']);

step(`tests (${files.length} files)`, process.execPath, [
  '--import',
  'tsx',
  '--test',
  '--test-concurrency=1',
  '--test-reporter=spec',
  ...files,
]);
