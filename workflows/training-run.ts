/**
 * trainingRun: a durable RL post-training run. Each step of an rl phase is
 *
 *   rollout shard 0 ─► reward shard 0 ┐
 *   rollout shard 1 ─► reward shard 1 ├─► advantages ─► learner update ─► commit (checkpoint, step manifest, metrics)
 *   rollout shard … ─► reward shard … ┘
 *
 * and a step of an sft phase is `learner update ─► commit`. Evaluations (greedy accuracy, pass@k on
 * held-out prompts) run on the initial weights, at the end of every phase and every `eval.every`
 * steps. The workflow holds only small state (run id, step, claim checks) and continues as new
 * every `workflow.continueAsNewEvery` steps or when Temporal suggests it.
 *
 * Control: signals `pause` / `resume` / `stop` (both take effect between steps: the running step
 * is finished and committed first), the `progress` query. In the Web UI: search attributes
 * (DurableRlRunName, DurableRlPhase, DurableRlStep, DurableRlMeanReward, DurableRlStatus), current
 * details in markdown, a summary on every activity naming stage, step and shard.
 */
import * as wf from '@temporalio/workflow';
import type { RunConfig } from '../activities/run/config.js';
import type * as checkpointActivities from '../activities/checkpoint/activities.js';
import type * as rolloutActivities from '../activities/rollout/activities.js';
import type * as rewardActivities from '../activities/reward/step-activities.js';
import type * as advantageActivities from '../activities/advantage/activities.js';
import type * as learnerActivities from '../activities/learner/activities.js';

/** The activities of a training step, by name (each call is scheduled on its stage's queue). */
type StageActivities = typeof checkpointActivities & typeof rolloutActivities & typeof rewardActivities
  & typeof advantageActivities & typeof learnerActivities;
import type {
  EvaluateResult, ResumeSource, RewardShardResult, RolloutShardResult, StepMetrics,
} from '../activities/run/types.js';
import type { ManifestEntry } from '../activities/store/manifest.js';
import { evaluateAt, planStep, totalSteps, type StepPlan } from './run-plan.js';
import { MEAN_REWARD, PHASE, RUN_NAME, STATUS, STEP } from './search-attributes.js';
import { TASK_QUEUES, type QueueName } from './task-queues.js';

export type { RunConfig, ResumeSource };

export type RunStatus = 'starting' | 'running' | 'paused' | 'stopped' | 'completed' | 'failed' | 'cancelled' | 'continued';
export type Stage = 'init' | 'rollout' | 'reward' | 'advantages' | 'learner' | 'commit' | 'eval' | 'paused' | 'done';

/** A short evaluation record kept in the workflow (the full one is in the store). */
export interface EvalSummary {
  policyVersion: number;
  phase: string;
  greedyAccuracy: number;
  passAtK: { k: number; value: number } | null;
  uri: string;
}

/** What survives continue-as-new: a few numbers and URIs, never data. */
export interface RunCarry {
  nextStep: number;
  referenceVersion: number | null;
  /** Reward means of the last steps (for the trend line in the UI). */
  rewardTrend: number[];
  /** The first and the latest evaluations. */
  evals: EvalSummary[];
  lastMetrics: Partial<StepMetrics> | null;
  lastStepUri: string | null;
  lastCheckpointUri: string | null;
  paused: boolean;
  /** A stop requested while the previous execution was handing over (kept, so it is not lost). */
  stopRequested?: boolean;
  executions: number;
  model: string;
}

export interface TrainingRunInput {
  /** The run id (also the workflow id): the data lives under runs/{runId}/ in the store. */
  runId: string;
  /** Absolute store URI. */
  storeUri: string;
  config: RunConfig;
  /** resume-from: the checkpoint of another run this run starts from. */
  resumeFrom: ResumeSource | null;
  /** Set by continue-as-new only. */
  carry?: RunCarry;
}

export interface TrainingRunResult {
  runId: string;
  status: 'completed' | 'stopped';
  /** Steps committed (the run's last checkpoint is this number). */
  steps: number;
  lastCheckpointUri: string | null;
  evals: EvalSummary[];
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
}

export const pauseSignal = wf.defineSignal('pause');
export const resumeSignal = wf.defineSignal('resume');
export const stopSignal = wf.defineSignal<[reason?: string]>('stop');
export const progressQuery = wf.defineQuery<RunProgress>('progress');

const TREND = 40;
const SPARK = '▁▂▃▄▅▆▇█';

function sparkline(xs: number[]): string {
  if (xs.length === 0) return '';
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return xs.map((x) => SPARK[hi > lo ? Math.min(7, Math.floor(((x - lo) / (hi - lo)) * 8)) : 3]).join('');
}

const fmt = (x: number | null | undefined, digits = 3) => (x == null || !Number.isFinite(x) ? '–' : x.toFixed(digits));

function activityOptions(config: RunConfig, queue: QueueName): wf.ActivityOptions {
  const w = config.workflow;
  return {
    taskQueue: TASK_QUEUES[queue],
    startToCloseTimeout: `${w.activityTimeoutMinutes} minutes`,
    heartbeatTimeout: `${w.heartbeatTimeoutSeconds} seconds`,
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '20s', maximumAttempts: w.maxAttempts },
  };
}

export async function trainingRun(input: TrainingRunInput): Promise<TrainingRunResult> {
  const { config, runId, storeUri } = input;
  const total = totalSteps(config);
  const ref = { storeUri, runId };

  // Every call names its queue (and summary) through withSummary; the proxy's defaults are unused.
  const acts = wf.proxyActivities<StageActivities>(activityOptions(config, 'learner'));
  const withSummary = (queue: QueueName, summary: string): wf.ActivityOptions => ({ ...activityOptions(config, queue), summary });

  const carry: RunCarry = input.carry ?? {
    nextStep: 0, referenceVersion: null, rewardTrend: [], evals: [], lastMetrics: null,
    lastStepUri: null, lastCheckpointUri: null, paused: false, executions: 0, model: '',
  };
  carry.executions++;
  let status: RunStatus = carry.nextStep === 0 && !input.carry ? 'starting' : 'running';
  let stage: Stage = 'init';
  let stopRequested = carry.stopRequested ?? false;
  let stopReason = '';
  let shardsDone = 0;
  let shardsTotal = 0;
  let currentStep = carry.nextStep;

  const phaseOf = (step: number) => (step < total ? planStep(config, step) : undefined);
  const progress = (): RunProgress => {
    const plan = phaseOf(currentStep);
    return {
      runId, name: config.name, status, stage, step: currentStep, totalSteps: total,
      phase: plan?.phase.kind ?? 'done', phaseIndex: plan?.phaseIndex ?? config.phases.length,
      shardsDone, shardsTotal, lastMetrics: carry.lastMetrics, rewardTrend: carry.rewardTrend, evals: carry.evals,
      storeUri, lastStepUri: carry.lastStepUri, lastCheckpointUri: carry.lastCheckpointUri,
      executions: carry.executions, model: carry.model,
    };
  };

  wf.setHandler(progressQuery, progress);
  wf.setHandler(pauseSignal, () => {
    carry.paused = true;
  });
  wf.setHandler(resumeSignal, () => {
    carry.paused = false;
  });
  wf.setHandler(stopSignal, (reason?: string) => {
    stopRequested = true;
    stopReason = reason ?? '';
  });

  const details = () => {
    const p = progress();
    const m = carry.lastMetrics;
    const lines = [
      `## Training run \`${runId}\``,
      `- **status:** ${p.status}${stopRequested && p.status !== 'stopped' ? ' (stop requested: finishing the step)' : ''}${carry.paused && p.status !== 'paused' ? ' (pause requested: after this step)' : ''}`,
      `- **phase:** ${p.phase} (${p.phaseIndex + 1}/${config.phases.length}) · **step:** ${Math.min(p.step, total)} / ${total} · **stage:** ${p.stage}${shardsTotal > 0 && (stage === 'rollout' || stage === 'reward') ? ` (${shardsDone}/${shardsTotal} shards)` : ''}`,
      `- **model:** ${carry.model || '…'} · **task:** ${config.task.name} · **seed:** ${config.seed}`,
    ];
    if (m) {
      lines.push(
        `- **last step:** reward ${fmt(m.reward_mean)} ± ${fmt(m.reward_std)} · loss ${fmt(m.loss, 4)} · KL ${fmt(m.kl, 4)} · entropy ${fmt(m.entropy)} · clip ${fmt(m.clip_fraction)} · ${fmt(m.step_seconds, 1)} s`,
      );
    }
    if (carry.rewardTrend.length > 0) lines.push(`- **reward trend** (last ${carry.rewardTrend.length} rl steps): \`${sparkline(carry.rewardTrend)}\` ${fmt(carry.rewardTrend.at(-1))}`);
    if (carry.evals.length > 0) {
      lines.push('', '| checkpoint | phase | greedy accuracy | pass@k |', '| --- | --- | --- | --- |');
      for (const e of carry.evals) lines.push(`| ${e.policyVersion} | ${e.phase} | ${(100 * e.greedyAccuracy).toFixed(1)}% | ${e.passAtK ? `pass@${e.passAtK.k} ${(100 * e.passAtK.value).toFixed(1)}%` : '–'} |`);
      lines.push('');
    }
    lines.push(`- **store:** \`${storeUri}\` · run data under \`runs/${runId}/\``);
    if (carry.lastCheckpointUri) lines.push(`- **last checkpoint:** \`${carry.lastCheckpointUri}\``);
    if (carry.lastStepUri) lines.push(`- **last step manifest:** \`${carry.lastStepUri}\``);
    if (carry.executions > 1) lines.push(`- continued as new ${carry.executions - 1} time(s)`);
    wf.setCurrentDetails(lines.join('\n'));
  };

  const setStatus = (s: RunStatus) => {
    status = s;
    wf.upsertSearchAttributes([{ key: STATUS, value: s }]);
    details();
  };

  wf.upsertSearchAttributes([
    { key: RUN_NAME, value: config.name },
    { key: STATUS, value: status },
    { key: STEP, value: carry.nextStep },
    { key: PHASE, value: phaseOf(carry.nextStep)?.phase.kind ?? 'done' },
  ]);
  details();

  try {
    if (!input.carry) {
      const init = await acts.initRun.executeWithOptions(
        withSummary('learner', input.resumeFrom ? `init · resume from ${input.resumeFrom.runId} checkpoint ${input.resumeFrom.checkpoint}` : 'init · initial weights'),
        [{ ...ref, config, resumeFrom: input.resumeFrom }],
      );
      carry.nextStep = init.startStep;
      carry.referenceVersion = init.referenceVersion;
      carry.model = init.model;
      currentStep = carry.nextStep;
    }
    setStatus('running');

    const evaluate = async (v: number) => {
      stage = 'eval';
      details();
      const phase = v === 0 ? 'init' : planStep(config, v - 1).phase.kind;
      const r: EvaluateResult = await acts.evaluate.executeWithOptions(
        withSummary('rollout', `eval · checkpoint ${v} · ${config.eval.prompts} prompts`),
        [{ ...ref, policyVersion: v, phase }],
      );
      const e: EvalSummary = { policyVersion: v, phase, greedyAccuracy: r.greedy_accuracy, passAtK: r.pass_at_k, uri: r.uri };
      carry.evals = [...carry.evals.filter((x) => x.policyVersion !== v), e].slice(-12);
    };

    if (carry.nextStep === 0 && !input.carry && evaluateAt(config, 0)) await evaluate(0);

    let stepsThisExecution = 0;
    while (carry.nextStep < total) {
      if (stopRequested) break;
      if (carry.paused) {
        stage = 'paused';
        setStatus('paused');
        await wf.condition(() => !carry.paused || stopRequested);
        if (stopRequested) break;
        setStatus('running');
      }
      if (stepsThisExecution >= config.workflow.continueAsNewEvery || (stepsThisExecution > 0 && wf.workflowInfo().continueAsNewSuggested)) {
        await wf.condition(wf.allHandlersFinished);
        carry.stopRequested = stopRequested;
        // The closed execution would otherwise keep DurableRlStatus "running" in list queries.
        // (The next execution sets its own status first thing.)
        if (wf.patched('status-before-continue-as-new')) wf.upsertSearchAttributes([{ key: STATUS, value: 'continued' }]);
        return await wf.continueAsNew<typeof trainingRun>({ ...input, carry });
      }

      const plan = planStep(config, carry.nextStep);
      currentStep = plan.step;
      if (plan.stepInPhase === 0 && plan.phase.kind === 'rl') carry.referenceVersion = plan.step;
      wf.upsertSearchAttributes([{ key: STEP, value: plan.step }, { key: PHASE, value: plan.phase.kind }]);
      const metrics = plan.phase.kind === 'sft' ? await sftStep(plan) : await rlStep(plan);

      carry.lastMetrics = metrics;
      if (plan.phase.kind === 'rl' && metrics.reward_mean != null) {
        carry.rewardTrend = [...carry.rewardTrend, metrics.reward_mean].slice(-TREND);
        wf.upsertSearchAttributes([{ key: MEAN_REWARD, value: metrics.reward_mean }]);
      }
      carry.nextStep = plan.step + 1;
      currentStep = carry.nextStep;
      stepsThisExecution++;
      wf.upsertSearchAttributes([{ key: STEP, value: carry.nextStep }]);
      details();
      if (evaluateAt(config, carry.nextStep)) await evaluate(carry.nextStep);
    }

    stage = 'done';
    setStatus(carry.nextStep >= total ? 'completed' : 'stopped');
    if (stopReason) wf.log.info('run stopped on request', { reason: stopReason });
    return {
      runId, status: carry.nextStep >= total ? 'completed' : 'stopped', steps: carry.nextStep,
      lastCheckpointUri: carry.lastCheckpointUri, evals: carry.evals,
    };
  } catch (err) {
    if (!wf.isCancellation(err) && !(err instanceof wf.ContinueAsNew)) {
      status = 'failed';
      wf.upsertSearchAttributes([{ key: STATUS, value: 'failed' }]);
      details();
    } else if (wf.isCancellation(err)) {
      wf.upsertSearchAttributes([{ key: STATUS, value: 'cancelled' }]);
    }
    throw err;
  }

  async function sftStep(plan: StepPlan): Promise<StepMetrics> {
    const t0 = Date.now();
    const batchSize = plan.phase.kind === 'sft' ? plan.phase.batchSize : plan.count;
    stage = 'learner';
    shardsTotal = 0;
    details();
    const l = await acts.learnerUpdate.executeWithOptions(
      withSummary('learner', `learner · step ${plan.step} · sft · ${plan.lrs.length > 1 ? `${plan.lrs.length} updates × ` : ''}${batchSize} examples`),
      [{
        ...ref, step: plan.step, phaseIndex: plan.phaseIndex, phase: 'sft', lr: plan.lr, referenceVersion: null,
        promptOffset: plan.promptOffset, batchSize, rollouts: [], advantages: null,
        ...(plan.lrs.length > 1 ? { lrs: plan.lrs } : {}),
      }],
    );
    const metrics: StepMetrics = {
      ...emptyMetrics(),
      num_prompts: plan.count, num_samples: l.sequences, loss: l.metrics.loss ?? null, entropy: l.metrics.entropy ?? null,
      grad_norm: l.metrics.grad_norm ?? null, learning_rate: plan.lr, learner_seconds: l.seconds,
      extra: { tokens: l.tokens, micro_batches: l.microBatches },
    };
    return commit(plan, l.checkpoint, [], metrics, t0);
  }

  async function rlStep(plan: StepPlan): Promise<StepMetrics> {
    const t0 = Date.now();
    stage = 'rollout';
    shardsDone = 0;
    shardsTotal = plan.shards.length;
    details();
    const n = plan.shards.length;
    const rollouts: RolloutShardResult[] = new Array(n);
    const rewards: RewardShardResult[] = new Array(n);
    let rolloutEnd = 0;
    let rewardSeconds = 0;
    // Each lane generates a shard and scores it at once: reward annotation of shard k overlaps
    // generation of shard k+1.
    let next = 0;
    const lane = async () => {
      while (next < n) {
        const s = plan.shards[next++]!;
        const r = await acts.rolloutShard.executeWithOptions(
          withSummary('rollout', `rollout · step ${plan.step} · shard ${s.shard + 1}/${n} · ${s.promptCount} prompts × ${plan.phase.kind === 'rl' ? plan.phase.groupSize : 1}`),
          [{ ...ref, step: plan.step, policyVersion: plan.step, phaseIndex: plan.phaseIndex, shard: s.shard, shards: n, promptOffset: s.promptOffset, promptCount: s.promptCount }],
        );
        rollouts[s.shard] = r;
        rolloutEnd = Math.max(rolloutEnd, Date.now());
        if (stage === 'rollout' && rollouts.filter(Boolean).length === n) stage = 'reward';
        details();
        const w = await acts.rewardShard.executeWithOptions(
          withSummary('reward', `reward · step ${plan.step} · shard ${s.shard + 1}/${n} · ${r.samples} samples`),
          [{ ...ref, step: plan.step, shard: s.shard, shards: n, rollouts: r.rollouts }],
        );
        rewards[s.shard] = w;
        rewardSeconds += w.seconds;
        shardsDone++;
        details();
      }
    };
    await Promise.all(Array.from({ length: Math.min(config.rollout.maxConcurrentShards, n) }, lane));

    stage = 'advantages';
    details();
    const ta = Date.now();
    const adv = await acts.computeStepAdvantages.executeWithOptions(
      withSummary('reward', `advantages · step ${plan.step} · ${plan.phase.kind === 'rl' ? plan.phase.advantage.estimator : ''}`),
      [{ ...ref, step: plan.step, phaseIndex: plan.phaseIndex, rollouts: rollouts.map((r) => r.rollouts), rewards: rewards.map((r) => r.rewards) }],
    );
    const advantageSeconds = (Date.now() - ta) / 1000;

    stage = 'learner';
    details();
    const l = await acts.learnerUpdate.executeWithOptions(
      withSummary('learner', `learner · step ${plan.step} · rl · ${adv.keptSamples} samples`),
      [{
        ...ref, step: plan.step, phaseIndex: plan.phaseIndex, phase: 'rl', lr: plan.lr, referenceVersion: carry.referenceVersion,
        promptOffset: plan.promptOffset, batchSize: plan.count, rollouts: rollouts.map((r) => r.rollouts), advantages: adv.advantages,
      }],
    );

    const samples = rollouts.reduce((a, r) => a + r.samples, 0);
    const scored = rewards.reduce((a, r) => a + r.scored, 0);
    const sum = rewards.reduce((a, r) => a + r.sum, 0);
    const sumSq = rewards.reduce((a, r) => a + r.sumSquares, 0);
    const mean = scored > 0 ? sum / scored : null;
    const mins = rewards.map((r) => r.min).filter((x): x is number => x != null);
    const maxs = rewards.map((r) => r.max).filter((x): x is number => x != null);
    const completionTokens = rollouts.reduce((a, r) => a + r.completionTokens, 0);
    const promptTokens = rollouts.reduce((a, r) => a + r.promptTokens, 0);
    const rolloutSeconds = Math.max(1e-3, (rolloutEnd - t0) / 1000);
    const components: Record<string, number> = {};
    for (const r of rewards) for (const [k, v] of Object.entries(r.components)) components[`reward/${k}`] = (components[`reward/${k}`] ?? 0) + v;
    for (const k of Object.keys(components)) components[k] = scored > 0 ? components[k]! / scored : 0;
    const metrics: StepMetrics = {
      ...emptyMetrics(),
      num_prompts: plan.count,
      num_samples: adv.keptSamples,
      reward_mean: mean,
      reward_std: mean == null ? null : Math.sqrt(Math.max(0, sumSq / scored - mean * mean)),
      reward_min: mins.length ? Math.min(...mins) : null,
      reward_max: maxs.length ? Math.max(...maxs) : null,
      loss: l.metrics.loss ?? null,
      kl: l.metrics.kl ?? null,
      entropy: l.metrics.entropy ?? null,
      clip_fraction: l.metrics.clip_frac ?? null,
      grad_norm: l.metrics.grad_norm ?? null,
      learning_rate: plan.lr,
      prompt_length_mean: samples > 0 ? promptTokens / samples : null,
      completion_length_mean: samples > 0 ? completionTokens / samples : null,
      completion_length_max: Math.max(...rollouts.map((r) => r.maxCompletionTokens ?? 0)),
      tokens_per_second: completionTokens / rolloutSeconds,
      rollout_seconds: rolloutSeconds,
      reward_seconds: rewardSeconds,
      advantage_seconds: advantageSeconds,
      learner_seconds: l.seconds,
      reward_errors: rewards.reduce((a, r) => a + r.errors, 0),
      dropped_samples: adv.droppedSamples,
      truncated_samples: rollouts.reduce((a, r) => a + r.truncated, 0),
      extra: {
        ...components,
        zero_variance_groups: adv.zeroVarianceGroups,
        advantage_mean: adv.advantageMean,
        advantage_std: adv.advantageStd,
        approx_kl: l.metrics.approx_kl ?? 0,
        pg_loss: l.metrics.pg_loss ?? 0,
        tokens: l.tokens,
        micro_batches: l.microBatches,
      },
    };
    const artifacts = [...rollouts.map((r) => r.rollouts), ...rewards.map((r) => r.rewards), adv.advantages];
    return commit(plan, l.checkpoint, artifacts, metrics, t0);
  }

  async function commit(plan: StepPlan, checkpoint: ManifestEntry[], artifacts: ManifestEntry[], metrics: StepMetrics, t0: number): Promise<StepMetrics> {
    stage = 'commit';
    details();
    const done: StepMetrics = { ...metrics, step_seconds: (Date.now() - t0) / 1000 };
    const c = await acts.commitStep.executeWithOptions(
      withSummary('learner', `commit · step ${plan.step} · checkpoint ${plan.step + 1}`),
      [{ ...ref, step: plan.step, phase: plan.phase.kind, checkpoint, artifacts, metrics: done }],
    );
    carry.lastStepUri = c.stepUri;
    carry.lastCheckpointUri = c.checkpointUri;
    return done;
  }
}


function emptyMetrics(): StepMetrics {
  return {
    num_prompts: 0, num_samples: 0, reward_mean: null, reward_std: null, reward_min: null, reward_max: null,
    loss: null, kl: null, entropy: null, clip_fraction: null, grad_norm: null, learning_rate: null,
    prompt_length_mean: null, completion_length_mean: null, completion_length_max: null, tokens_per_second: null,
    rollout_seconds: null, reward_seconds: null, advantage_seconds: null, learner_seconds: null, step_seconds: null,
    reward_errors: 0, dropped_samples: 0, truncated_samples: 0, extra: {},
  };
}
