/**
 * Client side of the training run: start one from a validated config, start one from another
 * run's checkpoint (resume-from), read its progress, signal it. Used by the CLI and by tests.
 */
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  WorkflowIdConflictPolicy,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
  type WorkflowExecutionDescription,
  type WorkflowHandle,
} from '@temporalio/client';
import { parseRunConfig, type RunConfig } from '../activities/run/config.js';
import { checkRunConfig, dataChange, dataRecord, loadRunData, readRunRecord } from '../activities/run/resolve.js';
import type { ResumeSource, RunRecord } from '../activities/run/types.js';
import { committedSteps } from '../activities/store/manifest.js';
import { hasOptimizerState } from '../activities/checkpoint/checkpoint.js';
import { withStore } from '../activities/store/open.js';
import { planStep, totalSteps } from '../workflows/run-plan.js';
import { TASK_QUEUES } from '../workflows/task-queues.js';
import { RUN_NAME, STATUS } from '../workflows/search-attributes.js';
import { environmentLabel, renderStaticDetails, type RunProgress } from '../workflows/run-details.js';
import type { ControlAction, ControlResult } from '../workflows/run-control.js';
import {
  pauseSignal,
  pauseUpdate,
  progressQuery,
  resumeSignal,
  resumeUpdate,
  retryUpdate,
  stopSignal,
  stopUpdate,
  type TrainingRunInput,
  type TrainingRunResult,
  type trainingRun,
} from '../workflows/training-run.js';

/** A user error about a run (unknown run, wrong state): the CLI prints it as one line. */
export class RunError extends Error {
  override readonly name = 'RunError';
}

/** A relative `file://dir` made absolute against the working directory: workers may run elsewhere. */
export function absoluteStoreUri(uri: string): string {
  if (!uri.startsWith('file://') || uri.startsWith('file:///') || uri.startsWith('file://localhost/')) return uri;
  return pathToFileURL(resolve(decodeURIComponent(uri.slice('file://'.length)))).href;
}

/** `<name>-<yyyymmdd-hhmmss>-<4 hex>`: sortable, unique, readable in the Web UI. */
export function newRunId(name: string, now = new Date()): string {
  const t = now.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return `${name}-${t}-${randomBytes(2).toString('hex')}`;
}

export interface StartedRun {
  runId: string;
  handle: WorkflowHandle<typeof trainingRun>;
  result(): Promise<TrainingRunResult>;
}

export interface StartRunOptions {
  /** Default: a new id from the config's name. */
  runId?: string;
  resumeFrom?: ResumeSource | null;
}

/** Validates `config` (ConfigError naming the field) and starts a training run; its run id is the workflow id. */
export async function startTrainingRun(client: Client, config: unknown, opts: StartRunOptions = {}): Promise<StartedRun> {
  const cfg: RunConfig = parseRunConfig(config);
  await checkRunConfig(cfg);
  const storeUri = absoluteStoreUri(cfg.store);
  const runId = opts.runId ?? newRunId(cfg.name);
  const input: TrainingRunInput = { runId, storeUri, config: { ...cfg, store: storeUri }, resumeFrom: opts.resumeFrom ?? null };
  // What the Web UI shows of the run without asking a worker, also once it has closed.
  // an environment's items are the run's prompts in place of the task's
  const task = cfg.environment ? `${environmentLabel(cfg.environment)} environment` : cfg.task.name;
  const summary = `${cfg.name}: ${cfg.phases.map((p) => `${p.kind} ×${p.steps}`).join(' → ')} on ${task}${opts.resumeFrom ? ` (from ${opts.resumeFrom.runId} @${opts.resumeFrom.checkpoint})` : ''}`;
  const details = renderStaticDetails({
    runId,
    name: cfg.name,
    phases: cfg.phases,
    task,
    seed: cfg.seed,
    model: cfg.model,
    storeUri,
    resumeFrom: opts.resumeFrom ?? null,
  });
  const handle = await client.workflow.start<typeof trainingRun>('trainingRun', {
    taskQueue: TASK_QUEUES.control,
    workflowId: runId,
    args: [input],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
    staticSummary: summary,
    staticDetails: details,
    // summary and details in the memo too: continue-as-new carries the memo, not the static ones
    memo: { summary, details, storeUri, name: cfg.name, task, seed: cfg.seed, resumedFrom: opts.resumeFrom ?? null },
    // Set at start, so a namespace without durable-rl's search attributes refuses the run here, in
    // one line, instead of failing its first workflow task over and over.
    typedSearchAttributes: [
      { key: RUN_NAME, value: cfg.name },
      { key: STATUS, value: 'starting' },
    ],
  });
  return { runId, handle, result: () => handle.result() };
}

/** The run's workflow handle and its description (one describe call); RunError when there is no such run. */
async function describeRun(
  client: Client,
  runId: string,
): Promise<{ handle: WorkflowHandle<typeof trainingRun>; description: WorkflowExecutionDescription }> {
  const handle = client.workflow.getHandle<typeof trainingRun>(runId);
  let description: WorkflowExecutionDescription;
  try {
    description = await handle.describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError)
      throw new RunError(`no training run "${runId}" on Temporal namespace ${client.options.namespace}`);
    throw err;
  }
  if (description.type !== 'trainingRun') throw new RunError(`"${runId}" is a ${description.type} workflow, not a training run`);
  return { handle, description };
}

/** The run's workflow handle; RunError when there is no such run. */
export async function runHandle(client: Client, runId: string): Promise<WorkflowHandle<typeof trainingRun>> {
  return (await describeRun(client, runId)).handle;
}

/** The run's progress (query); undefined while it has not run its first workflow task. */
export async function runProgress(client: Client, runId: string): Promise<RunProgress | undefined> {
  const handle = await runHandle(client, runId);
  try {
    return await handle.query(progressQuery);
  } catch {
    return undefined;
  }
}

/** What a control answered: the step at which it takes effect (null when a run's workers predate the Updates and a signal went instead). */
export interface ControlAnswer extends Omit<ControlResult, 'step'> {
  step: number | null;
}

/**
 * pause: the run finishes and commits its running step, then waits — or, with `beforeStep`, runs
 * until that later step and waits before it. Refused (RunError, with the reason) when already
 * paused or stopping, or when `beforeStep` has started or is past the last step.
 */
export function pauseRun(client: Client, runId: string, beforeStep?: number): Promise<ControlAnswer> {
  return controlRun(client, runId, 'pause', undefined, beforeStep);
}

/** resume: a paused run goes on (or a requested pause is withdrawn); refused when not paused. */
export function resumeRun(client: Client, runId: string): Promise<ControlAnswer> {
  return controlRun(client, runId, 'resume');
}

/** stop: the run ends after committing its running step (a paused or blocked run at once). */
export function stopRun(client: Client, runId: string, reason = 'stopped from the CLI'): Promise<ControlAnswer> {
  return controlRun(client, runId, 'stop', reason);
}

/** retry: a run blocked on an error retrying could not fix calls the blocked stage again (after the user fixed the cause). */
export function retryRun(client: Client, runId: string): Promise<ControlAnswer> {
  return controlRun(client, runId, 'retry');
}

const UPDATES = { pause: pauseUpdate, resume: resumeUpdate, stop: stopUpdate, retry: retryUpdate } as const;

/**
 * Sends control `action` as the run's Update and answers what it said. A refusal (the validator's
 * reason) is a RunError. A run whose workers predate the Updates has no handler for them: pause,
 * resume and stop then go as the signals of old (with no step to answer); retry has no signal.
 */
async function controlRun(
  client: Client,
  runId: string,
  action: ControlAction,
  reason?: string,
  beforeStep?: number,
): Promise<ControlAnswer> {
  const handle = await runningHandle(client, runId, action);
  try {
    if (action === 'stop') return await handle.executeUpdate(stopUpdate, { args: [reason ?? ''] });
    if (beforeStep !== undefined) return await handle.executeUpdate(pauseUpdate, { args: [beforeStep] });
    // a plain pause sends no argument, as clients before `pause --step` did
    return await handle.executeUpdate(UPDATES[action] as typeof resumeUpdate);
  } catch (err) {
    if (!(err instanceof WorkflowUpdateFailedError)) throw err;
    const why = err.cause?.message ?? err.message;
    if (/No registered handler for update/.test(why) && action !== 'retry' && beforeStep === undefined) {
      if (action === 'stop') await handle.signal(stopSignal, reason);
      else await handle.signal(action === 'pause' ? pauseSignal : resumeSignal);
      return { action, step: null, message: "requested (the run's workers predate controls as Updates: sent as a signal)" };
    }
    throw new RunError(`${runId}: ${why}`);
  }
}

async function runningHandle(client: Client, runId: string, what: string): Promise<WorkflowHandle<typeof trainingRun>> {
  const { handle, description: d } = await describeRun(client, runId);
  if (d.status.name !== 'RUNNING') throw new RunError(`cannot ${what} "${runId}": it is ${d.status.name.toLowerCase()}, not running`);
  return handle;
}

/** The store URI and config of a run, from its memo and run.json. */
export async function runSource(
  client: Client,
  runId: string,
): Promise<{ storeUri: string; config: RunConfig; status: string; record: RunRecord }> {
  const { description: d } = await describeRun(client, runId);
  const storeUri = (d.memo as { storeUri?: string } | undefined)?.storeUri;
  if (!storeUri) throw new RunError(`run "${runId}" has no storeUri in its memo: it was not started by durable-rl`);
  const record = await withStore(storeUri, (store) => readRunRecord(store, runId)).catch((err: unknown) => {
    throw new RunError(`run "${runId}" has no run record in ${storeUri}: ${(err as Error).message}`);
  });
  return { storeUri, config: record.config, status: d.status.name, record };
}

/**
 * Starts a new run that continues `sourceRunId` from its last committed checkpoint, or from the
 * checkpoint after step `step`. The source must not be running (stop it first). The new run has
 * the same config (and seed), so it produces what the source would have.
 */
export async function resumeFromRun(
  client: Client,
  sourceRunId: string,
  opts: { step?: number; runId?: string } = {},
): Promise<StartedRun & { checkpoint: number }> {
  const src = await runSource(client, sourceRunId);
  if (src.status === 'RUNNING')
    throw new RunError(`"${sourceRunId}" is still running; stop it first (durable-rl stop ${sourceRunId}) or let it finish`);
  const checkpoints = await withStore(src.storeUri, (store) => committedSteps(store, sourceRunId, 'checkpoints'));
  const total = totalSteps(src.config);
  let checkpoint: number;
  if (opts.step !== undefined) {
    checkpoint = opts.step + 1;
    if (!checkpoints.includes(checkpoint)) {
      throw new RunError(
        `step ${opts.step} of "${sourceRunId}" is not committed (committed checkpoints: ${summarise(checkpoints)}); give one of the committed steps (checkpoint - 1)`,
      );
    }
  } else {
    if (checkpoints.length === 0) throw new RunError(`"${sourceRunId}" has no committed checkpoint in ${src.storeUri}`);
    checkpoint = checkpoints[checkpoints.length - 1]!;
  }
  if (checkpoint >= total)
    throw new RunError(`"${sourceRunId}" finished all ${total} steps at checkpoint ${checkpoint}: nothing left to train`);
  planStep(src.config, checkpoint); // in range
  if (!(await withStore(src.storeUri, (store) => hasOptimizerState(store, sourceRunId, checkpoint))))
    throw new RunError(
      `checkpoint ${checkpoint} of "${sourceRunId}" holds the weights only (its retention policy, optimizerState 'last', removed the AdamW moments a resumed run trains on); resume from the latest checkpoint, ${checkpoints.at(-1)}`,
    );
  if (src.config.data && src.record.data) {
    // a run on data continues on the very files it read (their order is the data cursor)
    const change = dataChange(src.record.data, dataRecord(await loadRunData(src.config)), `cannot resume "${sourceRunId}"`);
    if (change) throw new RunError(change);
  }
  const started = await startTrainingRun(client, src.config, {
    runId: opts.runId ?? newRunId(src.config.name),
    resumeFrom: { runId: sourceRunId, checkpoint },
  });
  return { ...started, checkpoint };
}

function summarise(xs: number[]): string {
  if (xs.length === 0) return 'none';
  if (xs.length <= 6) return xs.join(', ');
  return `${xs.slice(0, 3).join(', ')}, …, ${xs.slice(-2).join(', ')}`;
}
