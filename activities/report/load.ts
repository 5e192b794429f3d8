/**
 * Loads what the HTML report of a training run shows, from the run's committed data in the object
 * store (the layout is in activities/store/keys.ts), into a plain, JSON-serialisable `RunReportData`:
 *
 * - the METRICS row of every committed step (its `metrics.arrow`), ascending by step; when the
 *   run's `run.json` says it was resumed from another, the source run's steps before the resume
 *   point come first (followed recursively), so the charts cover the whole training history;
 * - every committed evaluation (its `eval.json`), ascending;
 * - a table of samples from the last committed RL step (rollouts joined with rewards and
 *   advantages), and the samples of the latest evaluation.
 *
 * Every artifact is read through the manifest (`readArtifact`: size and sha256 verified). A step or
 * evaluation that cannot be read (corrupt, missing artifact, malformed eval.json) is left out and
 * named in `warnings`, which the report prints: one damaged object does not hide a whole run, and
 * is never skipped silently. A run with no committed step at all is an error.
 */
import {
  ADVANTAGES_NAME,
  EVAL_NAME,
  MANIFEST_NAME,
  METRICS_NAME,
  evalPrefix,
  parseShardName,
  runFolder,
  runRecordKey,
  stepPrefix,
  validateSegment,
  type ShardArtifact,
} from '../store/keys.js';
import { committedSteps, manifestKey, readArtifact, readManifest, type Manifest } from '../store/manifest.js';
import { getIfExists, type ObjectStore } from '../store/object-store.js';
import {
  decodeAdvantages,
  decodeMetrics,
  decodeRewards,
  decodeRollouts,
  type AdvantagesRow,
  type MetricsRow,
  type RewardsRow,
  type RolloutsRow,
} from '../store/schemas.js';
import { loadTrajectories, type TrajectoryStep } from './trajectories.js';

/** How a run was resumed, as `run.json` records it. */
export interface ResumedFrom {
  /** The run whose checkpoint this run started from. */
  run_id: string;
  /** The step this run resumed at: the source run's steps before it belong to this run's history. */
  step: number;
}

/** One run of the history the report covers (the run itself, then what it was resumed from). */
export interface RunLineageEntry {
  run_id: string;
  /** Name from run.json, or null when run.json is absent or has none. */
  name: string | null;
  resumed_from: ResumedFrom | null;
  /** Steps of this run included in the report (a source run contributes only its steps before the resume point). */
  steps: number;
}

/** One evaluation of the policy, as `eval.json` records it. */
export interface EvalRow {
  run_id: string;
  /** Policy version evaluated (the number of its evaluation folder, `evalPrefix`). */
  policy_version: number;
  /** Training steps done before the evaluated weights (0 = initial weights). */
  step: number;
  /** What produced the evaluated weights: "init" (no training yet) or the phase kind ("sft", "rl", "online_dpo", "dpo", "reward_model"). */
  phase: 'sft' | 'rl' | 'online_dpo' | 'dpo' | 'reward_model' | 'init';
  /** Fraction of prompts answered correctly by greedy decoding, 0..1; null when the run's reward judges no correctness (mean reward only). */
  greedy_accuracy: number | null;
  /** pass@k (Chen et al. 2021, unbiased estimator) when sampled evaluation ran, else null. */
  pass_at_k: { k: number; value: number } | null;
  mean_reward: number;
  num_prompts: number;
  samples: EvalSample[];
}

/** One evaluated prompt with the policy's completion. */
export interface EvalSample {
  prompt_id: string;
  prompt: string;
  completion: string;
  reward: number | null;
  reference: string | null;
}

/** One row of the sample table: a rollout of the last RL step with its reward and advantage. */
export interface SampleRow {
  run_id: string;
  step: number;
  prompt_id: string;
  sample_id: number;
  /** Tree node id for tree rollouts, else null. */
  node_id: string | null;
  group_id: string;
  policy_version: number;
  prompt: string;
  completion: string;
  /** Completion length in tokens. */
  completion_tokens: number;
  finish_reason: RolloutsRow['finish_reason'];
  /** Total reward, or null when it failed or the step has no rewards row for the sample. */
  reward: number | null;
  /** Why the reward failed (rewards.error), else null. */
  reward_error: string | null;
  /** Scalar advantage; for per-token advantages, their mean over the trained (loss-mask) tokens; null when absent. */
  advantage: number | null;
  /** 'scalar', 'token_mean' (mean of per-token advantages) or null when the sample has no advantages row. */
  advantage_kind: 'scalar' | 'token_mean' | null;
  /**
   * Whether any completion token of the sample entered the loss: false for a sample the step left
   * out (a group dynamic sampling dropped or did not need, a failed reward); absent without an advantages row.
   */
  in_loss?: boolean;
}

/** One node of a tree-structured rollout (the rl phase's `tree` option), as the report draws it. */
export interface TreeNodeView {
  node_id: string;
  /** null for a root. */
  parent_node_id: string | null;
  /** First completion token the node sampled itself (tokens before it are its parent's). */
  branch_position: number;
  sample_id: number;
  completion: string;
  completion_tokens: number;
  /**
   * Characters at the start of `completion` that the parent's completion text shares (the copied
   * prefix as text, for display; branch_position counts tokens). 0 for a root.
   */
  shared_chars: number;
  finish_reason: string;
  reward: number | null;
  /** Mean advantage over the node's trained tokens (Sibling-GRPO: per token); null without an advantages row. */
  advantage: number | null;
}

/** The tree of one prompt of the last RL step: its nodes in rollout order (parents before children). */
export interface SampleTree {
  prompt_id: string;
  prompt: string;
  nodes: TreeNodeView[];
}

/** Everything the report renders. Plain data: safe to JSON.stringify (no typed arrays, no Maps). */
export interface RunReportData {
  run_id: string;
  /** Name from run.json, or null. */
  name: string | null;
  /** URI of the store the run was read from. */
  store_uri: string;
  /** run.json's `config` (the training config), or null when absent. */
  config: Record<string, unknown> | null;
  /** The run, then the run it was resumed from, and so on. */
  lineage: RunLineageEntry[];
  /** Metrics of every step in the history, ascending by step (a resumed run's source steps first). */
  steps: MetricsRow[];
  /** Evaluations in the history, ascending by step, then policy version. */
  evals: EvalRow[];
  /** Samples of the last committed RL step (null when no RL step is committed). */
  samples: {
    run_id: string;
    step: number;
    total: number;
    rows: SampleRow[];
    /** With tree rollouts: the trees of the step's first `maxTrees` prompts (absent or empty for flat rollouts). */
    trees?: SampleTree[];
  } | null;
  /** Multi-turn episodes of the last rl steps (runs with an environment; empty otherwise): the trajectory viewer (trajectories.ts). */
  trajectories?: TrajectoryStep[];
  /** The latest evaluation's samples (null when there is no evaluation). */
  eval_samples: { run_id: string; policy_version: number; step: number; rows: EvalSample[] } | null;
  /** What could not be read and was left out, each naming the object. */
  warnings: string[];
}

export interface LoadReportOptions {
  /** Rows of the sample table taken from the last RL step, in rollout order (whole groups first), and most evaluation samples shown. Default 24. */
  maxSamples?: number;
  /** Follow run.json's `resumed_from` to include the source runs' earlier steps. Default true. */
  followResumedFrom?: boolean;
  /** How many resume links to follow at most (guards against very long or cyclic chains). Default 16. */
  maxResumeDepth?: number;
  /** Objects read at once (step metrics, evaluations). Default 8; raise for S3 stores with many steps. */
  concurrency?: number;
  /** The trajectory viewer (runs with an environment): the last this many rl steps with episodes. Default 3; 0 leaves it out. */
  trajectorySteps?: number;
  /** The trajectory viewer: groups shown per step. Default 4. */
  trajectoryGroups?: number;
  /** Token id → text for the trajectory viewer (the run's tokenizer; the CLI passes it). Default null: tokens show as ids. */
  tokenText?: ((id: number) => string) | null;
}

/** The run has nothing to report, or an option is invalid. */
export class ReportError extends Error {
  override name = 'ReportError';
}

const DEFAULTS = {
  maxSamples: 24,
  followResumedFrom: true,
  maxResumeDepth: 16,
  concurrency: 8,
  trajectorySteps: 3,
  trajectoryGroups: 4,
  tokenText: null,
};

function checkOptions(opts: LoadReportOptions): Required<LoadReportOptions> {
  const o = { ...DEFAULTS, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) };
  const int = (name: keyof typeof DEFAULTS, min: number) => {
    const v = o[name];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) {
      throw new ReportError(`report option ${name} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    }
  };
  int('maxSamples', 0);
  int('maxResumeDepth', 0);
  int('concurrency', 1);
  int('trajectorySteps', 0);
  int('trajectoryGroups', 1);
  if (o.tokenText !== null && typeof o.tokenText !== 'function')
    throw new ReportError('report option tokenText must be a function (id) => text, or null');
  if (typeof o.followResumedFrom !== 'boolean') {
    throw new ReportError(`report option followResumedFrom must be true or false, got ${JSON.stringify(o.followResumedFrom)}`);
  }
  return o as Required<LoadReportOptions>;
}

/** Runs `fn` over `items` with at most `limit` calls in flight; results in input order. */
async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// ---- run.json ----

interface RunInfo {
  name: string | null;
  resumed_from: ResumedFrom | null;
  config: Record<string, unknown> | null;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads the run's `run.json` (`runRecordKey`); absent → undefined. A malformed file is a warning, read as absent. */
async function readRunInfo(store: ObjectStore, runId: string, warnings: string[]): Promise<RunInfo | undefined> {
  const key = runRecordKey(runId);
  const bytes = await getIfExists(store, key);
  if (bytes === undefined) return undefined;
  const bad = (why: string) => {
    warnings.push(`${store.uri(key)}: ${why}; run name, config and resumed_from ignored`);
    return undefined;
  };
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    return bad(`not valid JSON (${message(err)})`);
  }
  if (!isObject(json)) return bad('expected a JSON object');
  const name = typeof json.name === 'string' ? json.name : null;
  const config = isObject(json.config) ? json.config : null;
  let resumed: ResumedFrom | null = null;
  const r = json.resumed_from;
  if (r !== null && r !== undefined) {
    if (!isObject(r) || typeof r.run_id !== 'string' || r.run_id === '' || !Number.isSafeInteger(r.step) || (r.step as number) < 0) {
      return bad('resumed_from must be null or { "run_id": string, "step": non-negative integer }');
    }
    resumed = { run_id: r.run_id, step: r.step as number };
  }
  return { name, resumed_from: resumed, config };
}

// ---- steps ----

async function readStepMetrics(store: ObjectStore, runId: string, step: number, warnings: string[]): Promise<MetricsRow | undefined> {
  const prefix = stepPrefix(runId, step);
  try {
    const bytes = await readArtifact(store, prefix, METRICS_NAME);
    const rows = decodeMetrics(bytes, store.uri(`${prefix}/${METRICS_NAME}`));
    if (rows.length !== 1) {
      warnings.push(
        `${store.uri(prefix)}: ${METRICS_NAME} has ${rows.length} rows, expected 1; ${rows.length ? 'the first is used' : 'step left out'}`,
      );
    }
    return rows[0];
  } catch (err) {
    warnings.push(`step ${step} of run ${runId} left out: ${message(err)}`);
    return undefined;
  }
}

async function loadSteps(
  store: ObjectStore,
  runId: string,
  below: number,
  o: Required<LoadReportOptions>,
  warnings: string[],
): Promise<MetricsRow[]> {
  const steps = (await committedSteps(store, runId)).filter((s) => s < below);
  const rows = await mapLimit(steps, o.concurrency, (s) => readStepMetrics(store, runId, s, warnings));
  return rows.filter((r): r is MetricsRow => r !== undefined);
}

// ---- evaluations ----

const finiteNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const nonNegInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

/** Validates an eval.json; returns the row or a description of the first problem. */
export function parseEvalJson(json: unknown, runId: string, policyVersion: number): EvalRow | string {
  if (!isObject(json)) return 'expected a JSON object';
  const { step, phase, greedy_accuracy: acc, pass_at_k: pak, mean_reward: meanReward, num_prompts: numPrompts, samples } = json;
  if (!nonNegInt(step)) return `step must be a non-negative integer, got ${JSON.stringify(step)}`;
  if (phase !== 'sft' && phase !== 'rl' && phase !== 'online_dpo' && phase !== 'dpo' && phase !== 'reward_model' && phase !== 'init')
    return `phase must be "sft", "rl", "online_dpo", "dpo", "reward_model" or "init", got ${JSON.stringify(phase)}`;
  if (acc !== null && (!finiteNumber(acc) || acc < 0 || acc > 1))
    return `greedy_accuracy must be null or a number in 0..1, got ${JSON.stringify(acc)}`;
  let passAtK: EvalRow['pass_at_k'] = null;
  if (pak !== null && pak !== undefined) {
    if (!isObject(pak) || !nonNegInt(pak.k) || pak.k < 1 || !finiteNumber(pak.value) || pak.value < 0 || pak.value > 1) {
      return `pass_at_k must be null or { "k": integer >= 1, "value": number in 0..1 }, got ${JSON.stringify(pak)}`;
    }
    passAtK = { k: pak.k, value: pak.value };
  }
  if (!finiteNumber(meanReward)) return `mean_reward must be a finite number, got ${JSON.stringify(meanReward)}`;
  if (!nonNegInt(numPrompts)) return `num_prompts must be a non-negative integer, got ${JSON.stringify(numPrompts)}`;
  if (samples !== undefined && !Array.isArray(samples)) return 'samples must be an array';
  const rows: EvalSample[] = [];
  for (const [i, s] of (samples ?? []).entries()) {
    if (!isObject(s)) return `samples[${i}] must be an object`;
    const reward = s.reward === null || s.reward === undefined ? null : s.reward;
    if (reward !== null && !finiteNumber(reward))
      return `samples[${i}].reward must be a finite number or null, got ${JSON.stringify(s.reward)}`;
    rows.push({
      prompt_id: String(s.prompt_id ?? ''),
      prompt: String(s.prompt ?? ''),
      completion: String(s.completion ?? ''),
      reward,
      reference: s.reference === null || s.reference === undefined ? null : String(s.reference),
    });
  }
  return {
    run_id: runId,
    policy_version: policyVersion,
    step,
    phase,
    greedy_accuracy: acc,
    pass_at_k: passAtK,
    mean_reward: meanReward,
    num_prompts: numPrompts,
    samples: rows,
  };
}

async function readEval(store: ObjectStore, runId: string, version: number, warnings: string[]): Promise<EvalRow | undefined> {
  const prefix = evalPrefix(runId, version);
  const where = store.uri(`${prefix}/${EVAL_NAME}`);
  try {
    const bytes = await readArtifact(store, prefix, EVAL_NAME);
    const parsed = parseEvalJson(JSON.parse(new TextDecoder().decode(bytes)), runId, version);
    if (typeof parsed === 'string') {
      warnings.push(`evaluation left out: ${where}: ${parsed}`);
      return undefined;
    }
    return parsed;
  } catch (err) {
    warnings.push(`evaluation ${version} of run ${runId} left out: ${message(err)}`);
    return undefined;
  }
}

async function loadEvals(
  store: ObjectStore,
  runId: string,
  atOrBelow: number,
  o: Required<LoadReportOptions>,
  warnings: string[],
): Promise<EvalRow[]> {
  const versions = await committedSteps(store, runId, 'evals');
  const rows = await mapLimit(versions, o.concurrency, (v) => readEval(store, runId, v, warnings));
  return rows.filter((r): r is EvalRow => r !== undefined && r.step <= atOrBelow);
}

// ---- samples of the last RL step ----

/** The key of a row of the step tables: prompt, sample and tree node. */
export const rowKey = (r: { prompt_id: string; sample_id: number; node_id: string | null }) =>
  `${r.prompt_id}\u0000${r.sample_id}\u0000${r.node_id ?? ''}`;

/**
 * Names of the step's shard artifacts of one kind (`rolloutsName(k)` / `rewardsName(k)`), in shard
 * order: the planned shards, then those of dynamic-sampling refill rounds (numbered on).
 */
function shardNames(manifest: Manifest, kind: ShardArtifact): string[] {
  return manifest.artifacts
    .map((a) => ({ name: a.name, parsed: parseShardName(a.name) }))
    .filter((x) => x.parsed?.kind === kind)
    .sort((a, b) => a.parsed!.shard - b.parsed!.shard)
    .map((x) => x.name);
}

/** A sample's advantage for display: the scalar, or the mean of its per-token advantages over the trained tokens; whether it trained at all. */
export function advantageOf(a: AdvantagesRow | undefined): Pick<SampleRow, 'advantage' | 'advantage_kind' | 'in_loss'> {
  if (!a) return { advantage: null, advantage_kind: null };
  const in_loss = a.loss_mask === null || a.loss_mask.some(Boolean);
  if (a.advantage !== null) return { advantage: a.advantage, advantage_kind: 'scalar', in_loss };
  const t = a.token_advantages;
  if (!t) return { advantage: null, advantage_kind: null, in_loss };
  let sum = 0;
  let n = 0;
  for (let i = 0; i < t.length; i++) {
    if (a.loss_mask && !a.loss_mask[i]) continue;
    sum += t[i]!;
    n++;
  }
  return { advantage: n ? sum / n : null, advantage_kind: 'token_mean', in_loss };
}

/** The rows of a committed rl step: its rollouts (every shard, in shard order), and its rewards and advantages by row key (`rowKey`). */
export interface StepRows {
  rollouts: RolloutsRow[];
  rewards: Map<string, RewardsRow>;
  advantages: Map<string, AdvantagesRow>;
}

/** Reads a committed step's rollouts, rewards and advantages through its manifest (sizes and sha256s verified). */
export async function readStepRows(store: ObjectStore, runId: string, step: number): Promise<StepRows> {
  const prefix = stepPrefix(runId, step);
  const manifest = await readManifest(store, prefix);
  if (!manifest) throw new Error(`${store.uri(manifestKey(prefix))} vanished while the report was read`);
  const read = async <R>(name: string, decode: (b: Uint8Array, src: string) => R[]) =>
    decode(await readArtifact(store, prefix, name), store.uri(`${prefix}/${name}`));
  const rolloutNames = shardNames(manifest, 'rollouts');
  const rewardNames = shardNames(manifest, 'rewards');
  const rollouts = (await Promise.all(rolloutNames.map((n) => read(n, decodeRollouts)))).flat();
  const rewards = new Map<string, RewardsRow>();
  for (const rows of await Promise.all(rewardNames.map((n) => read(n, decodeRewards)))) {
    for (const r of rows) rewards.set(rowKey(r), r);
  }
  const advantages = new Map<string, AdvantagesRow>();
  if (manifest.artifacts.some((a) => a.name === ADVANTAGES_NAME)) {
    for (const a of await read(ADVANTAGES_NAME, decodeAdvantages)) advantages.set(rowKey(a), a);
  }
  return { rollouts, rewards, advantages };
}

async function loadSamples(store: ObjectStore, runId: string, step: number, max: number): Promise<NonNullable<RunReportData['samples']>> {
  const { rollouts, rewards, advantages } = await readStepRows(store, runId, step);
  const rows = rollouts.slice(0, max).map((r): SampleRow => {
    const rw = rewards.get(rowKey(r));
    return {
      run_id: r.run_id,
      step: r.step,
      prompt_id: r.prompt_id,
      sample_id: r.sample_id,
      node_id: r.node_id,
      group_id: r.group_id,
      policy_version: r.policy_version,
      prompt: r.prompt_text,
      completion: r.completion_text,
      completion_tokens: r.completion_token_ids.length,
      finish_reason: r.finish_reason,
      reward: rw?.reward ?? null,
      reward_error: rw ? rw.error : 'no rewards row for this sample',
      ...advantageOf(advantages.get(rowKey(r))),
    };
  });
  return { run_id: runId, step, total: rollouts.length, rows, trees: sampleTrees(rollouts, rewards, advantages, MAX_TREES) };
}

/** Trees drawn per report (each is one prompt's groupSize nodes). */
const MAX_TREES = 2;

/** The trees of the first `max` prompts whose rows carry node ids. */
function sampleTrees(
  rollouts: readonly RolloutsRow[],
  rewards: ReadonlyMap<string, RewardsRow>,
  advantages: ReadonlyMap<string, AdvantagesRow>,
  max: number,
): SampleTree[] {
  const trees = new Map<string, SampleTree>();
  const text = new Map<string, string>();
  for (const r of rollouts) {
    if (r.node_id === null) continue;
    let t = trees.get(r.prompt_id);
    if (!t) {
      if (trees.size >= max) continue;
      trees.set(r.prompt_id, (t = { prompt_id: r.prompt_id, prompt: r.prompt_text, nodes: [] }));
    }
    text.set(`${r.prompt_id}\u0000${r.node_id}`, r.completion_text);
    const parentText = r.parent_node_id === null ? '' : (text.get(`${r.prompt_id}\u0000${r.parent_node_id}`) ?? '');
    let shared = 0;
    while (shared < parentText.length && shared < r.completion_text.length && parentText[shared] === r.completion_text[shared]) shared++;
    t.nodes.push({
      node_id: r.node_id,
      parent_node_id: r.parent_node_id,
      branch_position: r.branch_position ?? 0,
      sample_id: r.sample_id,
      completion: r.completion_text,
      completion_tokens: r.completion_token_ids.length,
      shared_chars: shared,
      finish_reason: r.finish_reason,
      reward: rewards.get(rowKey(r))?.reward ?? null,
      advantage: advantageOf(advantages.get(rowKey(r))).advantage,
    });
  }
  return [...trees.values()];
}

// ---- the whole report ----

/**
 * Loads the report data of run `runId` from `store`. Throws ReportError when neither the run nor
 * (for a resumed run) its sources have any committed step; store errors other than a damaged step
 * or evaluation (e.g. an unreachable S3 endpoint) propagate.
 */
export async function loadRunReport(store: ObjectStore, runId: string, opts: LoadReportOptions = {}): Promise<RunReportData> {
  validateSegment('run id', runId);
  const o = checkOptions(opts);
  const warnings: string[] = [];
  const lineage: RunLineageEntry[] = [];
  const stepsByRun: MetricsRow[][] = [];
  const evalsByRun: EvalRow[][] = [];
  const stepOwner = new Map<MetricsRow, string>();

  let current: string | null = runId;
  let below = Number.POSITIVE_INFINITY; // the history this run contributes: steps < below
  let evalsAtOrBelow = Number.POSITIVE_INFINITY;
  let own: RunInfo | undefined;
  const seen = new Set<string>();
  while (current !== null) {
    seen.add(current);
    const info = await readRunInfo(store, current, warnings);
    if (current === runId) own = info;
    const [steps, evals] = await Promise.all([
      loadSteps(store, current, below, o, warnings),
      loadEvals(store, current, evalsAtOrBelow, o, warnings),
    ]);
    stepsByRun.push(steps);
    for (const r of steps) stepOwner.set(r, current);
    evalsByRun.push(evals);
    const resumed = info?.resumed_from ?? null;
    lineage.push({ run_id: current, name: info?.name ?? null, resumed_from: resumed, steps: steps.length });
    current = null;
    if (resumed && o.followResumedFrom) {
      if (seen.has(resumed.run_id)) {
        warnings.push(
          `run ${lineage.at(-1)!.run_id} says it was resumed from ${resumed.run_id}, which is already in the history (a cycle); stopped there`,
        );
      } else if (lineage.length > o.maxResumeDepth) {
        warnings.push(
          `resume chain longer than maxResumeDepth=${o.maxResumeDepth}; history before run ${resumed.run_id} step ${resumed.step} left out`,
        );
      } else {
        current = resumed.run_id;
        // Source steps before the resume point; evaluations up to it (the one at `step` evaluates the weights this run started from).
        below = Math.min(below, resumed.step);
        evalsAtOrBelow = Math.min(evalsAtOrBelow, resumed.step);
      }
    }
  }

  // Oldest run first; a later run's rows win where step numbers coincide.
  const steps = mergeByKey(stepsByRun.reverse(), (r) => r.step).sort((a, b) => a.step - b.step);
  const evals = mergeByKey(evalsByRun.reverse(), (r) => r.step).sort((a, b) => a.step - b.step || a.policy_version - b.policy_version);

  if (steps.length === 0) {
    const hasRunJson = own !== undefined;
    throw new ReportError(
      `run "${runId}" has no committed step in ${store.root}: no ${store.uri(runFolder(runId, 'steps'))}/{step}/${MANIFEST_NAME} exists` +
        (hasRunJson
          ? ' (its run.json exists: the run started but has not committed a step yet)'
          : '; check the run id and the store (--store / DURABLE_RL_STORE)') +
        (warnings.length ? `; also: ${warnings.join('; ')}` : ''),
    );
  }

  let samples: RunReportData['samples'] = null;
  const lastRl = steps.findLast((s) => s.phase === 'rl');
  if (lastRl) {
    // The run whose folder holds the step (not the row's run_id field, which the writer filled in).
    const from = stepOwner.get(lastRl)!;
    try {
      samples = await loadSamples(store, from, lastRl.step, o.maxSamples);
    } catch (err) {
      warnings.push(`samples of step ${lastRl.step} of run ${from} left out: ${message(err)}`);
    }
  }
  let trajectories: TrajectoryStep[] = [];
  if (o.trajectorySteps > 0) {
    const rlSteps = steps.filter((s) => s.phase === 'rl').slice(-o.trajectorySteps);
    try {
      trajectories = await loadTrajectories(
        store,
        rlSteps.map((s) => ({ runId: stepOwner.get(s)!, step: s.step })),
        { tokenText: o.tokenText, maxGroups: o.trajectoryGroups },
      );
    } catch (err) {
      warnings.push(`trajectories of steps ${rlSteps.map((s) => s.step).join(', ')} left out: ${message(err)}`);
    }
  }
  const latestEval = evals.at(-1);
  return {
    run_id: runId,
    name: own?.name ?? null,
    store_uri: store.root,
    config: own?.config ?? null,
    lineage,
    steps,
    evals,
    samples,
    trajectories,
    eval_samples: latestEval
      ? {
          run_id: latestEval.run_id,
          policy_version: latestEval.policy_version,
          step: latestEval.step,
          rows: latestEval.samples.slice(0, o.maxSamples),
        }
      : null,
    warnings,
  };
}

/** Concatenates groups (oldest first); a later group's row replaces an earlier one with the same key. */
function mergeByKey<T>(groups: T[][], key: (r: T) => number): T[] {
  const byKey = new Map<number, T>();
  const extra: T[] = [];
  for (const g of groups) {
    const seenHere = new Set<number>();
    for (const r of g) {
      const k = key(r);
      if (seenHere.has(k))
        extra.push(r); // same key twice within one run (e.g. two evals at one step): keep both
      else byKey.set(k, r);
      seenHere.add(k);
    }
  }
  return [...byKey.values(), ...extra];
}
