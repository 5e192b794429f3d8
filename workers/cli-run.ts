/**
 * The training-run commands of `durable-rl`: train, resume-from, status (of a run), pause, resume,
 * stop, report, export, runs. Each validates what it can before it connects, prints the run id and
 * the Web UI link of what it starts, and throws UsageError / ConfigError / RunError (exit 2) or
 * Error (exit 1) with one line that says what is wrong.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import {
  ApplicationFailure,
  WorkflowFailedError,
  WorkflowNotFoundError,
  type Client,
  type WorkflowExecutionDescription,
  type WorkflowHandle,
} from '@temporalio/client';
import { loadRunConfig, mainJobConfig, parseRunConfig, type RunConfig } from '../activities/run/config.js';
import { runPrefix } from '../activities/store/keys.js';
import { openStore, withStore } from '../activities/store/open.js';
import { MEAN_REWARD, PHASE, RUN_NAME, STATUS, STEP } from '../workflows/search-attributes.js';
import { QUEUE_NAMES } from '../workflows/task-queues.js';
import type { RunProgress } from '../workflows/run-details.js';
import type { ControlAction } from '../workflows/run-control.js';
import { progressQuery, type TrainingRunResult, type trainingRun } from '../workflows/training-run.js';
import { causeMessage, index, resolveTemporal, say, sleep, UsageError } from './cli-common.js';
import { beforeAfterRl, evalText, Follower, progressBlock } from './cli-follow.js';
import { connectClient, workflowUrl, type TemporalConfig } from './temporal.js';
import {
  absoluteStoreUri,
  pauseRun,
  resumeFromRun,
  resumeRun,
  retryRun,
  runHandle,
  runSource,
  startTrainingRun,
  stopRun,
  RunError,
  type StartedRun,
} from './train-client.js';
import { workerSettings } from './cli-worker.js';
import type { WorkerGroup } from './worker.js';

/** How long a progress query may wait for a worker before the display says none answered. */
const QUERY_TIMEOUT_MS = 5000;
/** Poll interval of the live display. */
const FOLLOW_INTERVAL_MS = 1000;

export interface TrainOptions {
  store?: string;
  name?: string;
  seed?: string;
  follow?: boolean;
  withWorkers?: boolean;
  /** Where the report of a finished, followed run goes (default ./durable-rl-reports/<run>.html). */
  reportOut?: string;
}

/**
 * The config `train` starts: the file (YAML or JSON) or the main job (`MAIN_JOB`), with --store,
 * --name and --seed applied on top and validated again, so an error names the field either way.
 */
export function trainConfig(file: string | undefined, opts: Pick<TrainOptions, 'store' | 'name' | 'seed'>): RunConfig {
  const what = file ?? 'run config';
  const base = file ? loadRunConfig(file) : mainJobConfig();
  const overrides: Record<string, unknown> = {};
  if (opts.store !== undefined) overrides.store = opts.store;
  if (opts.name !== undefined) overrides.name = opts.name;
  // A number when it looks like one; otherwise the string, which the schema rejects by name (seed: expected number).
  if (opts.seed !== undefined) overrides.seed = /^\s*-?\d+(\.\d+)?\s*$/.test(opts.seed) ? Number(opts.seed) : opts.seed;
  if (Object.keys(overrides).length === 0) return base;
  return parseRunConfig({ ...base, ...overrides }, what);
}

/**
 * The all-in-one workers in this process (every queue), with the entrypoints' per-queue concurrency
 * and its DURABLE_RL_<QUEUE>_CONCURRENCY overrides (as `durable-rl worker`). The grace is short: these
 * workers end with the command.
 */
async function inProcessWorkers(temporal: TemporalConfig): Promise<{ group: WorkerGroup; running: Promise<void> }> {
  const { createWorkers } = await import('./worker.js'); // seconds to load: only here
  const { control, ...activities } = (await workerSettings(QUEUE_NAMES, {})).concurrency;
  const group = await createWorkers({
    temporal,
    queues: QUEUE_NAMES,
    maxConcurrentActivities: activities,
    maxConcurrentWorkflowTasks: control,
    shutdownGraceTimeMs: 5000,
    identity: `durable-rl-cli-${process.pid}`,
  });
  return { group, running: group.run() };
}

export async function trainCommand(file: string | undefined, opts: TrainOptions): Promise<number> {
  const config = trainConfig(file, opts); // before connecting: a bad config starts nothing
  const temporal = await resolveTemporal();
  const client = await connectClient(temporal);
  return withOptionalWorkers(temporal, opts.withWorkers === true, async (workers) => {
    const started = await startTrainingRun(client, config);
    say(`started training run ${started.runId}`);
    say(
      `  ${config.phases.map((p) => `${p.kind} ×${p.steps}`).join(' → ')} on ${config.task.name}, seed ${config.seed}, store ${absoluteStoreUri(config.store)}`,
    );
    printLinks(temporal, started.runId, workers !== undefined);
    return afterStart(client, started, { ...opts, workers });
  });
}

export async function resumeFromCommand(
  source: string,
  opts: { step?: string; follow?: boolean; withWorkers?: boolean; reportOut?: string },
): Promise<number> {
  const step = index(opts.step, 'step');
  const temporal = await resolveTemporal();
  const client = await connectClient(temporal);
  return withOptionalWorkers(temporal, opts.withWorkers === true, async (workers) => {
    const started = await resumeFromRun(client, source, { step });
    say(`started training run ${started.runId}`);
    say(
      `  resumes ${source} from checkpoint ${started.checkpoint} (the weights after step ${started.checkpoint - 1}); it trains step ${started.checkpoint} next`,
    );
    printLinks(temporal, started.runId, workers !== undefined);
    return afterStart(client, started, { ...opts, workers });
  });
}

function printLinks(temporal: TemporalConfig, runId: string, withWorkers: boolean): void {
  const url = workflowUrl(temporal, runId);
  if (url) say(`Web UI: ${url}`);
  if (!withWorkers) say(`workers must poll every durable-rl queue: run \`durable-rl worker\` if none is running`);
}

async function withOptionalWorkers(
  temporal: TemporalConfig,
  enabled: boolean,
  body: (workers: { running: Promise<void> } | undefined) => Promise<number>,
): Promise<number> {
  if (!enabled) return body(undefined);
  const w = await inProcessWorkers(temporal);
  try {
    return await body(w);
  } finally {
    w.group.shutdown();
    await w.running.catch(() => undefined);
  }
}

type Outcome = { kind: 'result'; result: TrainingRunResult } | { kind: 'failed'; error: unknown } | { kind: 'workers'; error: unknown };

/** After a start: return at once, or (--follow / --with-workers) wait for the end, showing progress when following. */
async function afterStart(
  client: Client,
  started: StartedRun,
  opts: { follow?: boolean; reportOut?: string; workers?: { running: Promise<void> } },
): Promise<number> {
  if (!opts.follow && !opts.workers) {
    say(`follow it with \`durable-rl status ${started.runId}\``);
    return 0;
  }
  const ended: Promise<Outcome> = Promise.race([
    started.result().then(
      (result): Outcome => ({ kind: 'result', result }),
      (error: unknown): Outcome => ({ kind: 'failed', error }),
    ),
    ...(opts.workers
      ? [
          opts.workers.running.then(
            (): Outcome => ({ kind: 'workers', error: new Error('the workers of this process stopped') }),
            (error: unknown): Outcome => ({ kind: 'workers', error }),
          ),
        ]
      : []),
  ]);
  let outcome: Outcome | undefined;
  void ended.then((o) => (outcome = o));
  const follower = opts.follow ? new Follower(process.stdout) : undefined;
  const onSignal = () => {
    follower?.note(
      `stopped following; the run continues on Temporal: durable-rl status ${started.runId} (stop it with durable-rl stop ${started.runId})`,
    );
    if (opts.workers) say('this process ran its workers: start `durable-rl worker` for the run to go on');
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  try {
    while (!outcome) {
      if (follower) {
        const p = await queryProgress(started.handle, QUERY_TIMEOUT_MS);
        if (p && !outcome) follower.update(p);
      }
      await Promise.race([ended, sleep(FOLLOW_INTERVAL_MS)]);
    }
  } finally {
    process.off('SIGINT', onSignal);
  }
  follower?.done(outcome.kind === 'result' ? outcome.result.evals : []);
  if (outcome.kind === 'workers') throw new Error(`run ${started.runId} is not finished but ${causeMessage(outcome.error)}`);
  if (outcome.kind === 'failed') throw new Error(`run ${started.runId} failed: ${failureText(outcome.error)}`);
  const r = outcome.result;
  printResult(r);
  if (r.status !== 'completed') return 0;
  const { storeUri } = await runSource(client, r.runId);
  const file = await writeReport(storeUri, r.runId, opts.reportOut);
  say(`report: ${file}`);
  return 0;
}

function failureText(err: unknown): string {
  if (err instanceof WorkflowFailedError) return causeMessage(err.cause ?? err);
  return causeMessage(err);
}

/** The progress query, or undefined when no worker answered within `ms` (or the run has not started). */
async function queryProgress(handle: WorkflowHandle<typeof trainingRun>, ms: number): Promise<RunProgress | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      handle.query(progressQuery).catch(() => undefined),
      new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function printResult(r: TrainingRunResult): void {
  say(
    `run ${r.runId} ${r.status}: ${r.steps} step${r.steps === 1 ? '' : 's'} committed${r.lastCheckpointUri ? `, last checkpoint ${r.lastCheckpointUri}` : ''}`,
  );
  const { before, after } = beforeAfterRl(r.evals);
  if (before && after && before.greedyAccuracy !== null && after.greedyAccuracy !== null) {
    say(`eval accuracy before RL: ${evalText(before)}`);
    say(`eval accuracy after RL:  ${evalText(after)}`);
    say(
      `greedy accuracy ${(100 * before.greedyAccuracy).toFixed(1)}% → ${(100 * after.greedyAccuracy).toFixed(1)}% (${after.greedyAccuracy >= before.greedyAccuracy ? '+' : ''}${(100 * (after.greedyAccuracy - before.greedyAccuracy)).toFixed(1)} points)`,
    );
  } else if (before && after) {
    // a reward that judges no correctness: the mean reward is the measure
    say(`eval before RL: ${evalText(before)}`);
    say(`eval after RL:  ${evalText(after)}`);
  } else {
    for (const e of r.evals) say(`eval ${evalText(e)}`);
  }
}

function defaultReportPath(runId: string): string {
  return resolve('durable-rl-reports', `${runId}.html`);
}

/** Loads the run's committed data and writes its HTML report; returns the absolute path. */
async function writeReport(storeUri: string, runId: string, out?: string): Promise<string> {
  const { loadRunReport, renderReport, ReportError } = await import('../activities/report/index.js');
  const file = resolve(out ?? defaultReportPath(runId));
  const store = openStore(storeUri);
  let html: string;
  try {
    // the trajectory viewer shows token texts through the run's own tokenizer, when run.json resolves
    const tokenText = await import('../activities/run/resolve.js')
      .then(({ loadRun }) => loadRun(store, runId))
      .then(
        ({ run }) =>
          (id: number) =>
            run.tokenizer.decode([id]),
      )
      .catch(() => null);
    // ReportError: nothing committed for this run in this store (a user error, like an unknown run).
    const data = await loadRunReport(store, runId, { tokenText }).catch((err: unknown) => {
      throw err instanceof ReportError ? new RunError(err.message) : asRunError(err);
    });
    html = renderReport(data);
  } finally {
    await store.close();
  }
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, html);
  return file;
}

// ── status ─────────────────────────────────────────────────────────────────────────────────────

/** `status` of a training run: its state and progress on one screen. */
export async function runStatus(client: Client, runId: string, desc: WorkflowExecutionDescription): Promise<number> {
  const sa = desc.typedSearchAttributes;
  const name = sa.get(RUN_NAME);
  say(
    `${runId}: ${desc.status.name} · training run${name ? ` "${name}"` : ''} · execution started ${desc.startTime.toISOString()}${desc.closeTime ? ` · closed ${desc.closeTime.toISOString()}` : ''}`,
  );
  const handle = client.workflow.getHandle<typeof trainingRun>(runId);
  if (desc.status.name === 'RUNNING') {
    const p = await queryProgress(handle, QUERY_TIMEOUT_MS);
    if (p) {
      for (const line of progressBlock(p)) say(`  ${line}`);
      say(`  store: ${p.storeUri} (${runPrefix(runId)}/)`);
      return 0;
    }
    say(`  no worker answered the progress query within ${QUERY_TIMEOUT_MS / 1000} s: are workers running? (durable-rl worker)`);
    say(`  from the search attributes: ${attributesText(sa)}`);
    return 0;
  }
  if (desc.status.name === 'COMPLETED') {
    // A closed run's result needs no worker (a query would).
    const r = await handle.result();
    printResultIndented(r);
    return 0;
  }
  say(`  ${attributesText(sa)}`);
  if (desc.status.name === 'FAILED') {
    try {
      await handle.result();
    } catch (err) {
      say(`  failure: ${failureText(err)}`);
    }
  }
  return 0;
}

function printResultIndented(r: TrainingRunResult): void {
  say(
    `  ${r.status}: ${r.steps} step${r.steps === 1 ? '' : 's'} committed${r.lastCheckpointUri ? `, last checkpoint ${r.lastCheckpointUri}` : ''}`,
  );
  for (const e of r.evals) say(`  eval ${evalText(e)}`);
  const { before, after } = beforeAfterRl(r.evals);
  if (before && after && before.greedyAccuracy !== null && after.greedyAccuracy !== null)
    say(`  greedy accuracy before RL ${(100 * before.greedyAccuracy).toFixed(1)}% → after RL ${(100 * after.greedyAccuracy).toFixed(1)}%`);
}

type SearchAttrs = WorkflowExecutionDescription['typedSearchAttributes'];

function attributesText(sa: SearchAttrs): string {
  const reward = sa.get(MEAN_REWARD);
  return [
    `status ${sa.get(STATUS) ?? '–'}`,
    `phase ${sa.get(PHASE) ?? '–'}`,
    `steps done ${sa.get(STEP) ?? '–'}`,
    `mean reward ${reward == null ? '–' : reward.toFixed(3)}`,
  ].join(' · ');
}

// ── pause / resume / stop ──────────────────────────────────────────────────────────────────────

export async function controlCommand(what: ControlAction, runId: string, opts: { step?: string } = {}): Promise<number> {
  if (opts.step !== undefined && what !== 'pause') throw new UsageError(`${what} takes no --step (pause --step N pauses before step N)`);
  const beforeStep = index(opts.step, 'step');
  const client = await connectClient(await resolveTemporal());
  const r =
    what === 'pause'
      ? await pauseRun(client, runId, beforeStep)
      : what === 'resume'
        ? await resumeRun(client, runId)
        : what === 'stop'
          ? await stopRun(client, runId)
          : await retryRun(client, runId);
  // e.g. "pause: tiny-… pauses before step 4: step 3 finishes and is committed first"
  say(`${what}: ${runId} ${r.message}${r.step !== null ? ` [step ${r.step}]` : ''}`);
  if (what === 'stop') say(`continue it later with durable-rl resume-from ${runId}`);
  if (what === 'pause') say(`durable-rl resume ${runId} goes on`);
  return 0;
}

// ── report / export ────────────────────────────────────────────────────────────────────────────

/** The store of a run: --store when given (works without Temporal), else the run's memo. */
async function storeOf(runId: string, store: string | undefined): Promise<string> {
  if (store) return absoluteStoreUri(store);
  const client = await connectClient(await resolveTemporal());
  try {
    return (await runSource(client, runId)).storeUri;
  } finally {
    await client.connection.close();
  }
}

export async function reportCommand(runId: string, opts: { out?: string; store?: string }): Promise<number> {
  const storeUri = await storeOf(runId, opts.store);
  const file = await writeReport(storeUri, runId, opts.out);
  say(`report of ${runId}: ${file}`);
  return 0;
}

export async function exportCommand(runId: string, opts: { step?: string; out?: string; store?: string }): Promise<number> {
  const step = index(opts.step, 'step');
  const storeUri = await storeOf(runId, opts.store);
  const dir = resolve(opts.out ?? join('durable-rl-exports', step === undefined ? runId : `${runId}-step-${step}`));
  const { exportRun, ExportRunError } = await import('../activities/checkpoint/export.js');
  const r = await exportRun(storeUri, runId, step === undefined ? undefined : step + 1, dir).catch((err: unknown) => {
    throw err instanceof ExportRunError ? new RunError(err.message) : asRunError(err);
  });
  const files = [...r.files].sort();
  say(`exported checkpoint ${r.version} of ${runId} (the weights after ${r.version} update${r.version === 1 ? '' : 's'}) to ${r.dir}`);
  for (const f of files) say(`  ${f}`);
  return 0;
}

// ── gc ──────────────────────────────────────────────────────────────────────────────────────────

/** "1.2 MB": a byte count in a few characters. */
function bytesText(n: number): string {
  if (n < 1e3) return `${n} B`;
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} kB`;
  if (n < 1e9) return `${(n / 1e6).toFixed(1)} MB`;
  return `${(n / 1e9).toFixed(2)} GB`;
}

export interface GcCommandOptions {
  store?: string;
  dryRun?: boolean;
  /** Overrides of the run's own retention policy. */
  keepLast?: number;
  keepEvery?: number;
  optimizerState?: string;
}

/** `durable-rl gc <run>`: applies the retention policy to the run's checkpoints, printing what goes and the bytes freed. */
export async function gcCommand(runId: string, opts: GcCommandOptions): Promise<number> {
  if (opts.optimizerState !== undefined && opts.optimizerState !== 'last' && opts.optimizerState !== 'all')
    throw new UsageError(`--optimizer-state must be last or all, got "${opts.optimizerState}"`);
  const policy = {
    ...(opts.keepLast !== undefined ? { keepLast: opts.keepLast } : {}),
    ...(opts.keepEvery !== undefined ? { keepEvery: opts.keepEvery } : {}),
    ...(opts.optimizerState !== undefined ? { optimizerState: opts.optimizerState as 'last' | 'all' } : {}),
  };
  const storeUri = await storeOf(runId, opts.store);
  const { gcRun, RetentionPolicyError } = await import('../activities/checkpoint/gc.js');
  const r = await withStore(storeUri, (store) => gcRun(store, runId, { dryRun: opts.dryRun, policy })).catch((err: unknown) => {
    throw err instanceof RetentionPolicyError ? new UsageError(err.message) : asRunError(err);
  });
  const p = r.policy;
  say(`retention of ${runId}: keepLast ${p.keepLast ?? 'all'}, keepEvery ${p.keepEvery ?? '-'}, optimizerState ${p.optimizerState}`);
  say(`keeps checkpoints ${r.plan.keep.map((v) => `${v} (${r.plan.why.get(v)!.join(', ')})`).join('; ') || 'none'}`);
  const verb = r.dryRun ? 'would remove' : 'removed';
  for (const x of r.removed) {
    const what =
      x.what === 'checkpoint' ? 'checkpoint' : x.what === 'optimizer' ? 'optimizer state of checkpoint' : 'leftover objects of checkpoint';
    say(`  ${verb} ${what} ${x.checkpoint}: ${x.keys.length} object${x.keys.length === 1 ? '' : 's'}, ${bytesText(x.bytes)}`);
  }
  say(
    `${r.dryRun ? 'would free' : 'freed'} ${bytesText(r.bytesFreed)} (${r.bytesFreed} bytes)${r.removed.length === 0 ? ': nothing to remove' : ''}`,
  );
  return 0;
}

/**
 * A run the store does not hold is a user error (exit 2), not a crash: the activities' run-record
 * reader (activities/run/resolve.ts readRunRecord) says so with a non-retryable `UnknownRun`
 * ApplicationFailure, which reaches the CLI when report/export read the store directly (--store).
 * Anything else is returned unchanged.
 */
export function asRunError(err: unknown): unknown {
  if (err instanceof ApplicationFailure && err.type === 'UnknownRun') return new RunError(err.message);
  return err;
}

// ── runs ───────────────────────────────────────────────────────────────────────────────────────

export async function runsCommand(limit: number): Promise<number> {
  const client = await connectClient(await resolveTemporal());
  const rows: string[][] = [['RUN', 'TEMPORAL', 'STATUS', 'NAME', 'STEP', 'PHASE', 'MEAN REWARD', 'STARTED']];
  // One row per run: the executions a run continued-as-new from are the same run, listed by its latest.
  for await (const w of client.workflow.list({
    query: 'WorkflowType="trainingRun" AND ExecutionStatus!="ContinuedAsNew"',
    pageSize: limit,
  })) {
    const sa = w.typedSearchAttributes;
    const reward = sa.get(MEAN_REWARD);
    rows.push([
      w.workflowId,
      w.status.name,
      sa.get(STATUS) ?? '–',
      sa.get(RUN_NAME) ?? '–',
      String(sa.get(STEP) ?? '–'),
      sa.get(PHASE) ?? '–',
      reward == null ? '–' : reward.toFixed(3),
      w.startTime.toISOString().replace('T', ' ').slice(0, 19),
    ]);
    if (rows.length > limit) break;
  }
  if (rows.length === 1) {
    say(`no training runs on Temporal namespace ${client.options.namespace}`);
    return 0;
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows)
    say(
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    );
  return 0;
}

/** Describes a workflow; "not found" is a UsageError naming the id and the namespace. */
export async function describeJob(client: Client, id: string): Promise<WorkflowExecutionDescription> {
  return client.workflow
    .getHandle(id)
    .describe()
    .catch((err: unknown) => {
      // Only "not found" means there is no such job; anything else (unreachable server, denied) is reported as is.
      if (err instanceof WorkflowNotFoundError)
        throw new UsageError(
          `no job "${id}" on Temporal namespace ${client.options.namespace} (neither a training run nor an annotation job)`,
        );
      throw err;
    });
}

export { RunError, runHandle };
