/**
 * What a training run shows about itself: its progress (the `progress` query's answer) and the
 * markdown "current details" of the Web UI, rendered from a plain snapshot. Pure (workflow code):
 * the text can be checked without a server.
 */
import type { StepMetrics } from '../activities/run/types.js';
import { blockedLines, type BlockedCall } from './run-control.js';

/**
 * DurableRlStatus. `blocked`: a stage cannot go on (an outage outlasting its retry window, or an
 * error retrying cannot fix); the current details name the stage and the error (run-control.ts).
 * `failed` is left to runs of earlier code and to workflow bugs: a run no longer fails by itself.
 */
export type RunStatus = 'starting' | 'running' | 'paused' | 'blocked' | 'stopped' | 'completed' | 'failed' | 'cancelled' | 'continued';
export type Stage = 'init' | 'rollout' | 'reward' | 'advantages' | 'learner' | 'commit' | 'eval' | 'paused' | 'done';

/**
 * How the Web UI names a run's environment (the config's `environment`; activities/run/environment.ts):
 * a built-in by its name (`calculator`), a module of the user's own by its file and, unless it is
 * the default, its export (`my-env.ts#searchEnv`): the config has no name for it, and the file is
 * what the user wrote. The one home of that label (activity summaries, the run's static details).
 */
export function environmentLabel(env: { name?: string; module?: string; export?: string }): string {
  if (env.name !== undefined) return env.name;
  const file = (env.module ?? '').split(/[\\/]/).pop() || 'environment module';
  return env.export !== undefined && env.export !== 'default' ? `${file}#${env.export}` : file;
}

/**
 * The Web UI summary of a rolloutShard call: stage, step, shard, size; with an environment, the
 * episodes it runs (named by `environmentLabel`); the checkpoint that generates when it is not the
 * step's own (off-policy steps).
 */
export function rolloutSummary(r: {
  step: number;
  /** 0-based. */
  shard: number;
  /** The step's shards so far. */
  of: number;
  promptCount: number;
  groupSize: number;
  environment: { name?: string; module?: string; export?: string } | null;
  policyVersion: number;
}): string {
  const episodes = r.environment ? ` ${environmentLabel(r.environment)} episodes (heartbeats: turn, live episodes)` : '';
  const checkpoint = r.policyVersion !== r.step ? ` · checkpoint ${r.policyVersion}` : '';
  return `rollout · step ${r.step} · shard ${r.shard + 1}/${r.of} · ${r.promptCount} prompts × ${r.groupSize}${episodes}${checkpoint}`;
}

/** A short evaluation record kept in the workflow (the full one is in the store). */
export interface EvalSummary {
  policyVersion: number;
  phase: string;
  /** null when the run's reward does not judge correctness (reward.functions, none verifiable): mean reward only. */
  greedyAccuracy: number | null;
  passAtK: { k: number; value: number } | null;
  /** Mean reward of the greedy completions (absent in evaluations recorded before it was kept). */
  meanReward?: number;
  uri: string;
}

export interface RunProgress {
  runId: string;
  name: string;
  status: RunStatus;
  phase: string;
  phaseIndex: number;
  step: number;
  totalSteps: number;
  stage: Stage;
  shardsDone: number;
  shardsTotal: number;
  lastMetrics: Partial<StepMetrics> | null;
  rewardTrend: number[];
  evals: EvalSummary[];
  storeUri: string;
  lastStepUri: string | null;
  lastCheckpointUri: string | null;
  executions: number;
  model: string;
  /** The calls the run is blocked on (absent or empty: not blocked). */
  blocked?: BlockedCall[];
  /** Queues the run waits on that no worker polls (queue-watch.ts; absent or empty: none). */
  unpolled?: UnpolledQueueView[];
}

/** A task queue the run has calls waiting on while no worker polls it. */
export interface UnpolledQueueView {
  taskQueue: string;
  /** When the server last saw a poller on it (ms since the epoch); null: none it remembers. */
  lastSeenMs: number | null;
  /** The run's calls waiting on it, and since when the oldest waits (ms since the epoch). */
  calls: number;
  sinceMs: number;
}

const clock = (ms: number) => `${new Date(ms).toISOString().slice(11, 19)} UTC`;

/** The details' lines about unpolled queues: which, since when, and what to start. */
export function unpolledLines(queues: readonly UnpolledQueueView[]): string[] {
  if (queues.length === 0) return [];
  return [
    '',
    '### No worker',
    ...queues.map(
      (q) =>
        `- **no worker polls \`${q.taskQueue}\`** (${q.lastSeenMs === null ? 'none seen' : `last seen ${clock(q.lastSeenMs)}`}): ${q.calls} call${q.calls === 1 ? '' : 's'} waiting since ${clock(q.sinceMs)}; start one, e.g. \`durable-rl worker --queues ${q.taskQueue.replace(/^durable-rl\./, '')}\` (or its workers are all busy)`,
    ),
    '',
  ];
}

/** The progress plus what the details show beyond it. */
export interface RunDetails extends RunProgress {
  /** A stop was requested: the running step is finished first. */
  stopRequested: boolean;
  /** A pause was requested: it takes effect after the running step. */
  pauseRequested: boolean;
  /** The step a requested pause waits for (absent: after the running step). */
  pauseAt?: number;
  /** Number of phases in the config. */
  phases: number;
  task: string;
  seed: number;
  /** Workflow time of the snapshot (ms), for how long a blocked call has waited. */
  now?: number;
}

const SPARK = '▁▂▃▄▅▆▇█';

/** One block character per value, scaled from the lowest (▁) to the highest (█); all equal: ▄. */
export function sparkline(xs: readonly number[]): string {
  if (xs.length === 0) return '';
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return xs.map((x) => SPARK[hi > lo ? Math.min(7, Math.floor(((x - lo) / (hi - lo)) * 8)) : 3]).join('');
}

/** A number with `digits` decimals; absent or not finite: an en dash. */
export const fmt = (x: number | null | undefined, digits = 3) => (x == null || !Number.isFinite(x) ? '–' : x.toFixed(digits));

/** The Web UI's current details of a run: status, position, last step's metrics, reward trend, evaluations, where its data is. */
export function renderRunDetails(d: RunDetails): string {
  const m = d.lastMetrics;
  const lines = [
    `## Training run \`${d.runId}\``,
    `- **status:** ${d.status}${d.stopRequested && d.status !== 'stopped' ? ' (stop requested: finishing the step)' : ''}${d.pauseRequested && d.status !== 'paused' ? (d.pauseAt !== undefined ? ` (pause requested: before step ${d.pauseAt})` : ' (pause requested: after this step)') : ''}`,
    `- **phase:** ${d.phase} (${d.phaseIndex + 1}/${d.phases}) · **step:** ${Math.min(d.step, d.totalSteps)} / ${d.totalSteps} · **stage:** ${d.stage}${d.shardsTotal > 0 && (d.stage === 'rollout' || d.stage === 'reward') ? ` (${d.shardsDone}/${d.shardsTotal} shards)` : ''}`,
    `- **model:** ${d.model || '…'} · **task:** ${d.task} · **seed:** ${d.seed}`,
  ];
  if (m) {
    lines.push(
      `- **last step:** reward ${fmt(m.reward_mean)} ± ${fmt(m.reward_std)} · loss ${fmt(m.loss, 4)} · KL ${fmt(m.kl, 4)} · entropy ${fmt(m.entropy)} · clip ${fmt(m.clip_fraction)} · ${fmt(m.step_seconds, 1)} s`,
    );
  }
  if (d.rewardTrend.length > 0)
    lines.push(`- **reward trend** (last ${d.rewardTrend.length} rl steps): \`${sparkline(d.rewardTrend)}\` ${fmt(d.rewardTrend.at(-1))}`);
  if (d.evals.length > 0) {
    lines.push('', '| checkpoint | phase | greedy accuracy | pass@k | mean reward |', '| --- | --- | --- | --- | --- |');
    for (const e of d.evals)
      lines.push(
        `| ${e.policyVersion} | ${e.phase} | ${e.greedyAccuracy === null ? '–' : `${(100 * e.greedyAccuracy).toFixed(1)}%`} | ${e.passAtK ? `pass@${e.passAtK.k} ${(100 * e.passAtK.value).toFixed(1)}%` : '–'} | ${fmt(e.meanReward)} |`,
      );
    lines.push('');
  }
  lines.push(...blockedLines(d.blocked ?? [], d.now ?? 0));
  lines.push(...unpolledLines(d.unpolled ?? []));
  // runPrefix(runId) of activities/store/keys.ts, spelled here because workflow code may import
  // only types from activities/; test/unit/workflows/run-details.test.ts checks the two agree.
  lines.push(`- **store:** \`${d.storeUri}\` · run data under \`runs/${d.runId}/\``);
  if (d.lastCheckpointUri) lines.push(`- **last checkpoint:** \`${d.lastCheckpointUri}\``);
  if (d.lastStepUri) lines.push(`- **last step manifest:** \`${d.lastStepUri}\``);
  if (d.executions > 1) lines.push(`- continued as new ${d.executions - 1} time(s)`);
  return lines.join('\n');
}

/** What a run's static details (set once at start, kept with the history) say about it. */
export interface StaticRunFacts {
  runId: string;
  name: string;
  /** Each phase's kind and steps, in order. */
  phases: readonly { kind: string; steps: number }[];
  task: string;
  seed: number;
  /** The model section of the config as given (from scratch: sizes; pretrained: `from`). */
  model: unknown;
  storeUri: string;
  resumeFrom: { runId: string; checkpoint: number } | null;
}

/**
 * The Web UI's static details of a run: what it trains and where its data goes. Set at start
 * (`staticDetails`), stored with the workflow, so the page of a closed run (whose current details
 * no worker answers any more) still shows them, with the commands that read its results.
 */
export function renderStaticDetails(f: StaticRunFacts): string {
  const steps = f.phases.reduce((n, p) => n + p.steps, 0);
  return [
    `## Training run \`${f.runId}\` (${f.name})`,
    `- **phases:** ${f.phases.map((p) => `${p.kind} ×${p.steps}`).join(' → ')} (${steps} steps)`,
    `- **task:** ${f.task} · **seed:** ${f.seed} · **model:** \`${JSON.stringify(f.model)}\``,
    ...(f.resumeFrom ? [`- **resumed from:** run \`${f.resumeFrom.runId}\` at checkpoint ${f.resumeFrom.checkpoint}`] : []),
    `- **store:** \`${f.storeUri}\` · run data under \`runs/${f.runId}/\``,
    `- its state: \`durable-rl status ${f.runId}\` · its results: \`durable-rl report ${f.runId}\``,
  ].join('\n');
}
