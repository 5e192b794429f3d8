/**
 * `durable-rl` training-run commands against the real Temporal dev server, run as a child process
 * the way a person runs them: a bad config is rejected before anything starts; unknown runs are
 * one line and a non-zero exit; a tiny run trained with `train --with-workers --follow` (workers in
 * the CLI's own process) prints its id, Web UI link, accuracy before and after RL and its report;
 * then `status`, `report`, `export` and `replay` work on the finished run.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { testTemporal, type TestTemporal } from '../../support/temporal.js';
import { runCli } from '../../support/cli.js';

const tag = Date.now().toString(36);
const dir = mkdtempSync(join(tmpdir(), 'drl-train-cli-'));
const store = pathToFileURL(join(dir, 'store')).href;

let t: TestTemporal;
before(async () => {
  t = await testTemporal();
});
after(async () => {
  await t?.client.connection.close();
});

const cli = (args: string[], cwd?: string) => runCli(args, t.env, cwd);

/** Workflows of this test's runs: names are unique per test file run. */
async function runsNamed(name: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const w of t.client.workflow.list({ query: `WorkflowType="trainingRun" AND WorkflowId STARTS_WITH "${name}-"` }))
    ids.push(w.workflowId);
  return ids;
}

const TINY = (name: string) => `# a tiny run: seconds per step on 2 cores
name: ${name}
seed: 7
task:
  name: addition
  options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true }
model: { hidden: 32, layers: 1, heads: 2 }
phases:
  - { kind: sft, steps: 2, batchSize: 16, lr: 0.003 }
  - { kind: rl, steps: 2, promptsPerStep: 4, groupSize: 4, lr: 0.001 }
rollout: { promptsPerShard: 2, maxConcurrentShards: 2 }
eval: { prompts: 20, passK: 2 }
engine: { threads: 1 }
`;

test('a bad config file exits 2 naming the field, and starts nothing', async () => {
  const name = `badcfg-${tag}`;
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, TINY(name).replace('groupSize: 4', 'groupSize: 1'));
  const r = await cli(['train', file, '--store', store]);
  assert.equal(r.code, 2, r.stdout + r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^durable-rl: invalid ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: phases\\.1\\.groupSize: `));
  assert.equal(r.stdout, '');
  assert.deepEqual(await runsNamed(name), [], 'a workflow was started for an invalid config');

  const seed = await cli(['train', '--seed', 'x', '--name', name]);
  assert.equal(seed.code, 2);
  assert.match(seed.stderr, /^durable-rl: invalid run config: seed: /);
});

test('an unknown run is one line and exit 2 for status, pause, stop, report, export, replay, resume-from', async () => {
  const id = `no-such-run-${tag}`;
  for (const args of [
    ['status', id],
    ['pause', id],
    ['stop', id],
    ['report', id],
    ['export', id],
    ['replay', id],
    ['resume-from', id],
  ]) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^durable-rl: .*"${id}"`), `${args.join(' ')}: ${r.stderr}`);
  }
  // With --store the report and export read the store directly (no Temporal): still one line naming
  // the run, and exit 2 (export reads run.json first: its UnknownRun failure is a user error too).
  for (const args of [
    ['report', id, '--store', store],
    ['export', id, '--store', store],
  ]) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(id), `${args.join(' ')}: ${r.stderr}`);
  }
});

test('train --with-workers --follow runs a tiny config to the end; status, report, export and replay work on it', async () => {
  const name = `tiny-cli-${tag}`;
  const file = join(dir, 'tiny.yaml');
  writeFileSync(file, TINY(name));
  const reportsCwd = mkdtempSync(join(tmpdir(), 'drl-train-cli-cwd-'));

  const run = await cli(['train', file, '--store', store, '--with-workers', '--follow'], reportsCwd);
  assert.equal(run.code, 0, run.stdout + run.stderr);
  const runId = run.stdout.match(/^started training run (\S+)$/m)?.[1];
  assert.ok(runId?.startsWith(`${name}-`), run.stdout);
  const ui = t.config.uiUrl!.replace(/\/$/, '');
  assert.ok(run.stdout.includes(`Web UI: ${ui}/namespaces/${t.config.namespace}/workflows/${runId}\n`), run.stdout);
  // Not a terminal: one line per change, no ANSI cursor moves. (Which stages a 1 s poll catches
  // depends on speed; the shard bar itself is tested in follow-display.test.ts.)
  assert.ok(!run.stdout.includes('\u001b['), 'ANSI escape in non-TTY output');
  assert.match(run.stdout, /^(starting|running) · phase (sft|rl) · step [0-4]\/4 · /m);
  assert.match(run.stdout, /^eval checkpoint 0 \(init\): greedy \d+\.\d%/m);
  assert.match(run.stdout, new RegExp(`^run ${runId} completed: 4 steps committed`, 'm'));
  assert.match(run.stdout, /^eval accuracy before RL: checkpoint 2 \(sft\): greedy \d+\.\d%, pass@2 \d+\.\d%$/m);
  assert.match(run.stdout, /^eval accuracy after RL: {2}checkpoint 4 \(rl\): greedy \d+\.\d%, pass@2 \d+\.\d%$/m);
  const reportPath = join(reportsCwd, 'durable-rl-reports', `${runId}.html`);
  assert.ok(run.stdout.includes(`report: ${reportPath}\n`), run.stdout);
  assert.match(readFileSync(reportPath, 'utf8'), /<svg/);

  const status = await cli(['status', runId!]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, new RegExp(`^${runId}: COMPLETED · training run "${name}"`));
  assert.match(status.stdout, /completed: 4 steps committed/);
  assert.match(status.stdout, /greedy accuracy before RL \d+\.\d% → after RL \d+\.\d%/);

  const reportFile = join(dir, 'out', 'r.html');
  const report = await cli(['report', runId!, '--out', reportFile]);
  assert.equal(report.code, 0, report.stderr);
  assert.equal(report.stdout, `report of ${runId}: ${reportFile}\n`);
  assert.match(readFileSync(reportFile, 'utf8'), /<svg/);

  const exportDir = join(dir, 'export');
  const exp = await cli(['export', runId!, '--step', '2', '--out', exportDir]);
  assert.equal(exp.code, 0, exp.stderr);
  assert.match(exp.stdout, new RegExp(`^exported checkpoint 3 of ${runId} .* to ${exportDir}\\n`));
  const files = readdirSync(exportDir);
  for (const f of ['model.safetensors', 'config.json']) assert.ok(files.includes(f), `${f} missing: ${files.join(', ')}`);
  assert.ok(
    files.some((f) => f.endsWith('.onnx')),
    `no .onnx in ${files.join(', ')}`,
  );

  const saveDir = join(dir, 'histories');
  const replay = await cli(['replay', runId!, '--save', saveDir]);
  assert.equal(replay.code, 0, replay.stdout + replay.stderr);
  const executions = Number(replay.stdout.match(/^replaying (\d+) executions? of /m)?.[1]);
  assert.ok(executions >= 1, replay.stdout);
  assert.equal(replay.stdout.match(/: OK$/gm)?.length, executions, replay.stdout);
  assert.equal(readdirSync(saveDir).filter((f) => f.endsWith('.json')).length, executions);
  assert.ok(existsSync(join(saveDir, `${runId}-01.json`)));
});
