/**
 * trainingRun: a durable RL post-training run. Each step of an rl phase is
 *
 *   rollout shard 0 ─► reward shard 0 ┐
 *   rollout shard 1 ─► reward shard 1 ├─► advantages ─► learner update ─► commit (checkpoint, step manifest, metrics)
 *   rollout shard … ─► reward shard … ┘
 *
 * (with the loss's kl.inReward, REINFORCE++: reference logprobs of every shard ─► advantages, which
 * charge the KL in the rewards) and a step of an sft phase is `learner update ─► commit`. Evaluations (greedy accuracy, pass@k on
 * held-out prompts) run on the initial weights, at the end of every phase and every `eval.every`
 * steps. The workflow holds only small state (run id, step, claim checks) and continues as new
 * every `workflow.continueAsNewEvery` steps or when Temporal suggests it.
 *
 * Async steps (`rollout.offPolicySteps` k > 0, behind the patch `off-policy-steps`): the rollout
 * and reward shards of steps n+1..n+k start while step n trains, each from the checkpoint the plan
 * fixes (run-plan.ts `policyVersion`), and cross continue-as-new as claim checks (`RunCarry.ahead`).
 *
 * Control: Updates `pause` / `resume` / `stop` / `retry`, validated (an invalid transition is
 * refused with the reason) and answering the step at which they take effect (run-control.ts); the
 * signals of the same names, which runs started before the Updates were sent, still work. Pause
 * and stop take effect between steps (the running step is finished and committed first); stop of a
 * blocked run ends it at once. The `progress` query.
 *
 * Blocked, not failed: every activity retries without an attempt limit; a call still failing after
 * its stage's blockedAfterMinutes gives up to the workflow, which shows the run `blocked` (search
 * attribute and current details: stage, error) and calls the stage again, so the run goes on by
 * itself when the cause clears; an error no retry can fix blocks the run until `retry` or `stop`
 * (behind the patch `blocked-not-failed`; workflows/README.md says how time in retry is measured). In the Web UI: search attributes
 * (DurableRlRunName, DurableRlPhase, DurableRlStep, DurableRlMeanReward, DurableRlStatus), current
 * details in markdown, a summary on every activity naming stage, step and shard.
 */
import * as wf from '@temporalio/workflow';
import type { RunConfig } from '../activities/run/config.js';
import type {
  AdvantagesResult,
  EvaluateInput,
  ReferenceLogprobsResult,
  ResumeSource,
  RewardShardResult,
  RolloutShardResult,
  StageIo,
  StepMetrics,
} from '../activities/run/types.js';
import type { ManifestEntry } from '../activities/store/manifest.js';
import { activityCaller, type ActivityInput, type ActivityOutput, type CallActivity } from './call-activity.js';
import type { ActivityName } from './activity-queues.js';
import {
  classifyFailure,
  timedOutWaiting,
  controlOutcome,
  type BlockedCall,
  type ControlAction,
  type ControlResult,
  type ControlState,
} from './run-control.js';
import { stageActivityOptions, STAGE_OF, type RunActivityName } from './stage-options.js';
import { QueueWatch, QUEUE_WATCH_PATCH } from './queue-watch.js';
import { renderRunDetails, rolloutSummary, type EvalSummary, type RunProgress, type RunStatus, type Stage } from './run-details.js';
import {
  dynamicSamplingOf,
  evaluateAt,
  offPolicySteps,
  planRefill,
  planStep,
  policyVersion,
  totalSteps,
  type ShardPlan,
  type StepPlan,
} from './run-plan.js';
import { MEAN_REWARD, PHASE, RUN_NAME, STATUS, STEP } from './search-attributes.js';
import {
  addIo,
  dpoStepMetrics,
  offPolicyMetrics,
  onlineDpoStepMetrics,
  rewardModelStepMetrics,
  rlStepMetrics,
  sftStepMetrics,
  withStepIo,
} from './step-metrics.js';

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
  /** A pause requested for a later step (`pause --step N`): the step it takes effect at. Absent: none. */
  pauseAt?: number;
  /** A stop requested while the previous execution was handing over (kept, so it is not lost). */
  stopRequested?: boolean;
  executions: number;
  model: string;
  /**
   * `rollout.offPolicySteps` > 0: the steps past `nextStep` whose rollouts and rewards the previous
   * execution had started ahead, finished before it continued as new — their results (claim checks
   * and counts), which this execution trains on instead of rolling them out again. Absent otherwise.
   */
  ahead?: RolloutBatch[];
}

/** An rl step's rollouts and rewards, filled shard by shard (refill rounds append), with their timings. */
export interface RolloutBatch {
  step: number;
  /** The checkpoint that generates every shard of the step (run-plan.ts `policyVersion`). */
  policyVersion: number;
  rollouts: RolloutShardResult[];
  rewards: RewardShardResult[];
  /** When the first rollout shard was started and the last finished (workflow time). */
  rolloutStart: number;
  rolloutEnd: number;
  rewardSeconds: number;
  /** Shards rolled out and scored so far. */
  done: number;
}

/** A step's rollouts and rewards being generated: the batch they fill, and when they are done. */
interface Rolling {
  batch: RolloutBatch;
  finished: Promise<unknown>;
}

/** The patch under which an rl step's rollouts start ahead of the learner (`rollout.offPolicySteps` > 0; recorded histories have k = 0 and never reach it). */
export const OFF_POLICY_PATCH = 'off-policy-steps';

export interface TrainingRunInput {
  /** The run id (also the workflow id): the data lives under `runPrefix(runId)` (activities/store/keys.ts). */
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

export const pauseSignal = wf.defineSignal('pause');
export const resumeSignal = wf.defineSignal('resume');
export const stopSignal = wf.defineSignal<[reason?: string]>('stop');
export const progressQuery = wf.defineQuery<RunProgress>('progress');
// The controls as Updates (validated; they answer when they take effect). Same names as the
// signals above, which stay for clients and runs from before the Updates.
// pause's argument: the step to pause before (undefined: after the running step; clients before it send none)
export const pauseUpdate = wf.defineUpdate<ControlResult, [beforeStep: number | undefined]>('pause');
export const resumeUpdate = wf.defineUpdate<ControlResult>('resume');
export const stopUpdate = wf.defineUpdate<ControlResult, [reason: string]>('stop');
export const retryUpdate = wf.defineUpdate<ControlResult>('retry');

/** The patch under which a failed activity call blocks the run instead of failing it (histories recorded before it fail as they did). */
export const BLOCKED_PATCH = 'blocked-not-failed';
/** The patch under which a call that timed out waiting on a queue the watch found polled is scheduled again instead of blocking (queue-watch.ts). */
export const QUEUED_PATCH = 'queued-not-blocked';

const TREND = 40;

export async function trainingRun(input: TrainingRunInput): Promise<TrainingRunResult> {
  const { config, runId, storeUri } = input;
  const total = totalSteps(config);

  const carry: RunCarry = input.carry ?? {
    nextStep: 0,
    referenceVersion: null,
    rewardTrend: [],
    evals: [],
    lastMetrics: null,
    lastStepUri: null,
    lastCheckpointUri: null,
    paused: false,
    executions: 0,
    model: '',
  };
  carry.executions++;
  let status: RunStatus = carry.nextStep === 0 && !input.carry ? 'starting' : 'running';
  let stage: Stage = 'init';
  let stopRequested = carry.stopRequested ?? false;
  let stopReason = '';
  let shardsDone = 0;
  let shardsTotal = 0;
  let currentStep = carry.nextStep;
  /** Step carry.nextStep is being trained (pause and stop wait for its commit). */
  let inStep = false;
  /** The calls the run is blocked on; `retry` bumps retryRound, which the calls waiting for the user watch. */
  const blocked: BlockedCall[] = [];
  let retryRound = 0;
  /** A stop of a blocked run cancels `main` (the init and the steps): the blocked step is not finished. */
  const main = new wf.CancellationScope();
  let stoppedWhileBlocked = false;
  /** The calls waiting and the queues among theirs no worker polls (queue-watch.ts). */
  const watch = new QueueWatch(() => details());
  /** Store bytes the calls of each step have read and written so far (the commit puts them in the step's metrics). */
  const stepIo = new Map<number, StageIo>();

  const phaseOf = (step: number) => (step < total ? planStep(config, step) : undefined);
  const progress = (): RunProgress => {
    const plan = phaseOf(currentStep);
    return {
      runId,
      name: config.name,
      status,
      stage,
      step: currentStep,
      totalSteps: total,
      phase: plan?.phase.kind ?? 'done',
      phaseIndex: plan?.phaseIndex ?? config.phases.length,
      shardsDone,
      shardsTotal,
      lastMetrics: carry.lastMetrics,
      rewardTrend: carry.rewardTrend,
      evals: carry.evals,
      storeUri,
      lastStepUri: carry.lastStepUri,
      lastCheckpointUri: carry.lastCheckpointUri,
      executions: carry.executions,
      model: carry.model,
      blocked: blocked.map((b) => ({ ...b })),
      unpolled: watch.unpolled.map((u) => ({ ...u })),
    };
  };

  wf.setHandler(progressQuery, progress);
  wf.setHandler(pauseSignal, () => {
    carry.paused = true;
  });
  wf.setHandler(resumeSignal, () => {
    carry.paused = false;
  });
  const requestStop = (reason?: string) => {
    stopRequested = true;
    stopReason = reason ?? '';
    if (blocked.length > 0) {
      stoppedWhileBlocked = true;
      main.cancel();
    }
  };
  wf.setHandler(stopSignal, requestStop);

  const controlState = (): ControlState => ({
    nextStep: carry.nextStep,
    totalSteps: total,
    inStep,
    paused: status === 'paused',
    pauseRequested: (carry.paused && status !== 'paused') || carry.pauseAt !== undefined,
    pauseAt: carry.pauseAt,
    stopRequested,
    blocked,
    finished: stage === 'done',
  });
  // Each Update's validator refuses what controlOutcome refuses (the client gets the reason); the handler applies it and answers the outcome.
  const validate = (action: ControlAction) => (beforeStep?: number) => void controlOutcome(controlState(), action, beforeStep);
  const answer = (action: ControlAction, apply: (outcome: ControlResult) => void, beforeStep?: number): ControlResult => {
    const outcome = controlOutcome(controlState(), action, beforeStep);
    apply(outcome);
    details();
    return outcome;
  };
  // pause with a step waits for it (carry.pauseAt, turned into a pause when the loop reaches it); without one, after the running step
  wf.setHandler(
    pauseUpdate,
    (beforeStep?: number) =>
      answer(
        'pause',
        (o) => {
          if (beforeStep === undefined) carry.paused = true;
          else carry.pauseAt = o.step;
        },
        beforeStep,
      ),
    { validator: validate('pause') },
  );
  wf.setHandler(
    resumeUpdate,
    () =>
      answer('resume', () => {
        carry.paused = false;
        carry.pauseAt = undefined;
      }),
    { validator: validate('resume') },
  );
  wf.setHandler(stopUpdate, (reason: string) => answer('stop', () => requestStop(reason)), {
    validator: (_reason: string) => validate('stop')(),
  });
  wf.setHandler(retryUpdate, () => answer('retry', () => retryRound++), { validator: validate('retry') });

  const details = () =>
    wf.setCurrentDetails(
      renderRunDetails({
        ...progress(),
        stopRequested,
        pauseRequested: carry.paused || carry.pauseAt !== undefined,
        pauseAt: carry.pauseAt,
        phases: config.phases.length,
        task: config.task.name,
        seed: config.seed,
        now: Date.now(),
      }),
    );
  const enter = (s: Stage) => {
    stage = s;
    details();
  };
  const setStatus = (s: RunStatus) => {
    status = s;
    wf.upsertSearchAttributes([{ key: STATUS, value: s }]);
    details();
  };

  /**
   * Every activity call of the run: its stage's timeouts, unlimited attempts. A call that gives up
   * (classifyFailure) blocks the run — `retrying`: called again at once (its attempts back off
   * anew, so the run goes on by itself when the cause clears); `needs-user`: called again after a
   * `retry` — and unblocks it when it succeeds. A stop while blocked cancels `main`.
   */
  const rawCall = activityCaller((name) => stageActivityOptions(config.workflow, name as RunActivityName));
  const call: CallActivity = async <N extends ActivityName>(
    name: N,
    summary: string,
    input: ActivityInput<N>,
  ): Promise<ActivityOutput<N>> => {
    let entry: BlockedCall | undefined;
    for (;;) {
      try {
        const result = await watch.track(name, () => rawCall(name, summary, input));
        const ioStep = (input as { step?: unknown }).step;
        const io = typeof ioStep === 'number' ? addIo(stepIo.get(ioStep), (result as { io?: StageIo } | undefined)?.io) : undefined;
        if (io) stepIo.set(ioStep as number, io);
        if (entry) {
          blocked.splice(blocked.indexOf(entry), 1);
          wf.log.info('stage unblocked', { stage: entry.stage, summary, calls: entry.calls });
          if (blocked.length === 0) setStatus('running');
          else details();
        }
        return result;
      } catch (err) {
        // waited in its queue past the schedule-to-close while workers were busy with the run's other calls: not blocked, scheduled again
        if (timedOutWaiting(err) && watch.polledRecently(name) && wf.patched(QUEUED_PATCH)) {
          wf.log.info('call timed out waiting behind busy workers: scheduled again', { summary });
          continue;
        }
        const failure = classifyFailure(err);
        if (!failure || !wf.patched(BLOCKED_PATCH)) throw err;
        if (entry) Object.assign(entry, failure, { calls: entry.calls + 1 });
        else blocked.push((entry = { stage: STAGE_OF[name as RunActivityName], summary, ...failure, since: Date.now(), calls: 1 }));
        const calls = entry.calls;
        wf.log.warn('stage blocked', { stage: entry.stage, summary, kind: failure.kind, type: failure.type, error: failure.error, calls });
        if (status !== 'blocked') setStatus('blocked');
        else details();
        const round = retryRound;
        if (failure.kind === 'needs-user') await wf.condition(() => retryRound !== round);
      }
    }
  };
  const stages = stageCalls(input, call);
  if (wf.patched(QUEUE_WATCH_PATCH)) void watch.run(() => stage === 'done');

  /**
   * offPolicySteps: the rl steps past the current one whose rollouts and rewards have started (or,
   * carried over continue-as-new, finished), by step. Their calls run in `aheadScope` (a child of
   * `main`), which a stop cancels: the run ends with its committed steps, as with k = 0.
   */
  const rolledAhead = new Map<number, Rolling>((carry.ahead ?? []).map((batch) => [batch.step, { batch, finished: Promise.resolve() }]));
  delete carry.ahead;
  /** The first step this run trains: its plan's policy versions never go below it (no earlier checkpoint is in the run). */
  const runStart = input.resumeFrom?.checkpoint ?? 0;
  /** Created inside `main` by trainSteps (so a stop while blocked cancels it too). */
  let aheadScope: wf.CancellationScope | undefined;

  wf.upsertSearchAttributes([
    { key: RUN_NAME, value: config.name },
    { key: STATUS, value: status },
    { key: STEP, value: carry.nextStep },
    { key: PHASE, value: phaseOf(carry.nextStep)?.phase.kind ?? 'done' },
  ]);
  details();

  try {
    await main.run(() => trainSteps());
  } catch (err) {
    if (!(stoppedWhileBlocked && wf.isCancellation(err))) {
      if (!wf.isCancellation(err) && !(err instanceof wf.ContinueAsNew)) {
        status = 'failed';
        wf.upsertSearchAttributes([{ key: STATUS, value: 'failed' }]);
        details();
      } else if (wf.isCancellation(err)) {
        wf.upsertSearchAttributes([{ key: STATUS, value: 'cancelled' }]);
      }
      throw err;
    }
    // stopped while blocked: the blocked step is not committed
    blocked.length = 0;
  }

  stage = 'done';
  setStatus(carry.nextStep >= total ? 'completed' : 'stopped');
  if (stopReason) wf.log.info('run stopped on request', { reason: stopReason });
  return {
    runId,
    status: carry.nextStep >= total ? 'completed' : 'stopped',
    steps: carry.nextStep,
    lastCheckpointUri: carry.lastCheckpointUri,
    evals: carry.evals,
  };

  /** Init (a fresh run), then the steps until the last, a stop, or continue-as-new (which throws). */
  async function trainSteps(): Promise<void> {
    if (!input.carry) {
      const init = await stages.init();
      carry.nextStep = init.startStep;
      carry.referenceVersion = init.referenceVersion;
      carry.model = init.model;
      currentStep = carry.nextStep;
    }
    setStatus('running');
    aheadScope = new wf.CancellationScope();

    const evaluate = async (v: number) => {
      enter('eval');
      const phase = v === 0 ? 'init' : planStep(config, v - 1).phase.kind;
      const result = await stages.evaluate(v, phase);
      const e: EvalSummary = {
        policyVersion: v,
        phase,
        greedyAccuracy: result.greedy_accuracy,
        passAtK: result.pass_at_k,
        meanReward: result.mean_reward,
        uri: result.uri,
      };
      carry.evals = [...carry.evals.filter((x) => x.policyVersion !== v), e].slice(-12);
    };

    if (carry.nextStep === 0 && !input.carry && evaluateAt(config, 0)) await evaluate(0);

    let stepsThisExecution = 0;
    while (carry.nextStep < total) {
      if (stopRequested) break;
      if (carry.pauseAt !== undefined && carry.nextStep >= carry.pauseAt) {
        carry.paused = true;
        carry.pauseAt = undefined;
      }
      if (carry.paused) {
        stage = 'paused';
        setStatus('paused');
        await wf.condition(() => !carry.paused || stopRequested);
        if (stopRequested) break;
        setStatus('running');
      }
      if (
        stepsThisExecution >= config.workflow.continueAsNewEvery ||
        (stepsThisExecution > 0 && wf.workflowInfo().continueAsNewSuggested)
      ) {
        await wf.condition(wf.allHandlersFinished);
        // rollouts in flight for later steps are finished and handed over as claim checks (none are lost or redone)
        if (rolledAhead.size > 0) {
          await Promise.all([...rolledAhead.values()].map((r) => r.finished));
          carry.ahead = [...rolledAhead.values()].map((r) => r.batch);
        }
        carry.stopRequested = stopRequested;
        // The closed execution would otherwise keep DurableRlStatus "running" in list queries.
        // (The next execution sets its own status first thing.)
        if (wf.patched('status-before-continue-as-new')) wf.upsertSearchAttributes([{ key: STATUS, value: 'continued' }]);
        await wf.continueAsNew<typeof trainingRun>({ ...input, carry });
      }

      const plan = planStep(config, carry.nextStep);
      currentStep = plan.step;
      inStep = true;
      // the reference policy of an rl phase's KL and of DPO: the checkpoint where the phase starts
      if (plan.stepInPhase === 0 && plan.phase.kind !== 'sft' && plan.phase.kind !== 'reward_model') carry.referenceVersion = plan.step;
      wf.upsertSearchAttributes([
        { key: STEP, value: plan.step },
        { key: PHASE, value: plan.phase.kind },
      ]);
      // (recorded histories have sft and rl phases only: the new kinds, reward_model included, add no command to them)
      const metrics =
        plan.phase.kind === 'sft'
          ? await sftStep(plan)
          : plan.phase.kind === 'dpo'
            ? await dpoStep(plan)
            : plan.phase.kind === 'reward_model'
              ? await rewardModelStep(plan)
              : await rlStep(plan);

      carry.lastMetrics = metrics;
      if ((plan.phase.kind === 'rl' || plan.phase.kind === 'online_dpo') && metrics.reward_mean != null) {
        carry.rewardTrend = [...carry.rewardTrend, metrics.reward_mean].slice(-TREND);
        wf.upsertSearchAttributes([{ key: MEAN_REWARD, value: metrics.reward_mean }]);
      }
      carry.nextStep = plan.step + 1;
      currentStep = carry.nextStep;
      stepsThisExecution++;
      wf.upsertSearchAttributes([{ key: STEP, value: carry.nextStep }]);
      inStep = false;
      details();
      if (evaluateAt(config, carry.nextStep)) await evaluate(carry.nextStep);
    }
    if (rolledAhead.size > 0) {
      // stopped with rollouts of later steps in flight: cancel them (their uncommitted artifacts are left, as after a crash)
      aheadScope?.cancel();
      await Promise.allSettled([...rolledAhead.values()].map((r) => r.finished));
    }
  }

  /** An sft step: learner update on gold completions ─► commit. */
  async function sftStep(plan: StepPlan): Promise<StepMetrics> {
    const t0 = Date.now();
    shardsTotal = 0;
    enter('learner');
    const update = await stages.learnSft(plan);
    return commit(plan, update.checkpoint, [], sftStepMetrics(plan, update), t0);
  }

  /** A reward_model step: Bradley-Terry update of the classifier on the step's dataset pairs ─► commit. */
  async function rewardModelStep(plan: StepPlan): Promise<StepMetrics> {
    const t0 = Date.now();
    shardsTotal = 0;
    enter('learner');
    const update = await stages.learnRewardModel(plan);
    return commit(plan, update.checkpoint, [], rewardModelStepMetrics(plan, update), t0);
  }

  /** An offline dpo step: DPO update on the step's rows of the preference dataset ─► commit. */
  async function dpoStep(plan: StepPlan): Promise<StepMetrics> {
    const t0 = Date.now();
    shardsTotal = 0;
    enter('learner');
    const update = await stages.learnDpo(plan, carry.referenceVersion);
    return commit(plan, update.checkpoint, [], dpoStepMetrics(plan, update), t0);
  }

  /**
   * An rl step: rollout and reward per shard ─► advantages ─► learner update ─► commit. An
   * online_dpo step runs the same stages, the advantage stage forming its preference pairs and the
   * learner making one DPO update on them. With the
   * phase's dynamicSampling `refill` (DAPO), while the advantages report fewer than promptsPerStep
   * informative groups and rounds are left, another round of rollout + reward shards runs on fresh
   * prompts (`planRefill`; shards numbered on past the step's planned ones) and the advantages are
   * computed again over every shard so far. With the loss's kl.inReward (REINFORCE++) every
   * advantages call is preceded by the reference logprobs of every shard so far (the learner
   * queue's scoreReferenceLogprobs); the advantages charge them in the rewards, the learner reads
   * them for its kl metric, and the step commits them.
   */
  async function rlStep(plan: StepPlan): Promise<StepMetrics> {
    const t0 = Date.now();
    // offPolicySteps k > 0 (behind its patch): this step's rollouts may have started steps ago, and
    // those of the next steps whose policy version is committed (checkpoint ≤ this step) start now,
    // to run beside this step's advantages, learner update and commit
    const pipelined = offPolicySteps(config) > 0 && wf.patched(OFF_POLICY_PATCH);
    const rolling = rolledAhead.get(plan.step) ?? rollOut(plan);
    rolledAhead.delete(plan.step);
    const { batch } = rolling;
    shardsDone = batch.done;
    shardsTotal = plan.shards.length;
    enter(batch.rollouts.filter(Boolean).length === plan.shards.length ? 'reward' : 'rollout');
    if (pipelined) rollAhead(plan.step);
    await rolling.finished;

    const scored = await advantagesOf(plan, batch);
    const { rollouts, rewards } = batch;
    const { advantages, reference } = scored;

    enter('learner');
    const online = plan.phase.kind === 'online_dpo';
    const update = online
      ? await stages.learnOnlineDpo(plan, carry.referenceVersion, rollouts, advantages)
      : await stages.learnRl(plan, carry.referenceVersion, rollouts, advantages, reference?.referenceLogprobs);

    const seconds = {
      rollout: (batch.rolloutEnd - batch.rolloutStart) / 1000,
      reward: batch.rewardSeconds,
      advantage: scored.advantageSeconds,
    };
    const stepMetrics = online
      ? onlineDpoStepMetrics(plan, { rollouts, rewards, advantages, update }, seconds)
      : rlStepMetrics(
          plan,
          {
            rollouts,
            rewards,
            advantages,
            update,
            ...(scored.dynamic ? { promptsRolled: scored.promptsRolled } : {}),
            ...(reference ? { reference } : {}),
          },
          { ...seconds, ...(reference ? { reference: scored.referenceSeconds } : {}) },
        );
    const metrics = pipelined ? offPolicyMetrics(stepMetrics, plan.step, batch.policyVersion) : stepMetrics;
    const artifacts = [
      ...rollouts.map((r) => r.rollouts),
      ...rewards.map((r) => r.rewards),
      advantages.advantages,
      ...(reference ? [reference.referenceLogprobs] : []),
    ];
    return commit(plan, update.checkpoint, artifacts, metrics, t0);
  }

  /** Starts the rollouts and rewards of a step's planned shards, from the checkpoint its plan fixes. */
  function rollOut(plan: StepPlan): Rolling {
    const batch: RolloutBatch = {
      step: plan.step,
      policyVersion: policyVersion(config, plan.step, runStart),
      rollouts: new Array(plan.shards.length),
      rewards: new Array(plan.shards.length),
      rolloutStart: Date.now(),
      rolloutEnd: 0,
      rewardSeconds: 0,
      done: 0,
    };
    return { batch, finished: rollAndScore(plan, batch, plan.shards, plan.shards.length) };
  }

  /**
   * Starts (in `aheadScope`) the rollouts of the steps after `step`, up to step + k, whose policy
   * version is at most `step` — committed, since step `step` is running — and that have not started.
   * A version never lies before its step's phase, so no step of another phase starts here.
   */
  function rollAhead(step: number): void {
    const last = Math.min(total - 1, step + offPolicySteps(config));
    for (let m = step + 1; m <= last; m++) {
      if (rolledAhead.has(m) || policyVersion(config, m, runStart) > step) continue;
      const plan = planStep(config, m);
      let rolling: Rolling | undefined;
      const finished = aheadScope!.run(async () => {
        rolling = rollOut(plan); // (run calls this at once: `rolling` is set before run returns)
        await rolling.finished;
      });
      // handled here: a stop cancels these calls while nothing awaits them
      finished.catch(() => undefined);
      rolledAhead.set(m, { batch: rolling!.batch, finished });
    }
  }

  /**
   * Rolls out `shards` into the batch, each lane generating a shard and scoring it at once: reward
   * annotation of shard k overlaps generation of shard k+1. `of` is the step's shard count so far.
   */
  async function rollAndScore(plan: StepPlan, batch: RolloutBatch, shards: readonly ShardPlan[], of: number): Promise<void> {
    let next = 0;
    const lane = async () => {
      while (next < shards.length) {
        const shard = shards[next++]!;
        const rolled = (batch.rollouts[shard.shard] = await stages.rollout(plan, shard, of, batch.policyVersion));
        batch.rolloutEnd = Math.max(batch.rolloutEnd, Date.now());
        const current = batch.step === currentStep;
        if (current && stage === 'rollout' && batch.rollouts.filter(Boolean).length === of) stage = 'reward';
        details();
        const scored = (batch.rewards[shard.shard] = await stages.reward(plan, shard, rolled, of));
        batch.rewardSeconds += scored.seconds;
        batch.done++;
        if (batch.step === currentStep) shardsDone = batch.done;
        details();
      }
    };
    await Promise.all(Array.from({ length: Math.min(config.rollout.maxConcurrentShards, shards.length) }, lane));
  }

  /**
   * The step's advantages: with `kl.inReward`, the reference logprobs of every shard so far first;
   * with `dynamicSampling: refill`, further rounds of rollout + reward on fresh prompts, and the
   * advantages again, while fewer than promptsPerStep groups are informative and rounds are left.
   */
  async function advantagesOf(plan: StepPlan, batch: RolloutBatch) {
    // Old histories have no dynamic sampling and never reach the patch; new runs with it on record the marker.
    const dynamic = dynamicSamplingOf(plan.phase) !== null && wf.patched('dapo-refill') ? dynamicSamplingOf(plan.phase) : null;
    // The same for the KL in the reward (parseRunConfig refused it before this patch existed).
    const klInReward =
      plan.phase.kind === 'rl' &&
      plan.phase.loss.name === 'clipped_surrogate' &&
      plan.phase.loss.options.kl?.inReward === true &&
      wf.patched('kl-in-reward');
    const referenceVersion = carry.referenceVersion ?? plan.step - plan.stepInPhase;
    let reference: ReferenceLogprobsResult | undefined;
    let referenceSeconds = 0;
    let advantageSeconds = 0;
    const round = async (r?: number) => {
      const start = Date.now();
      if (klInReward) {
        reference = await stages.reference(plan, referenceVersion, batch.rollouts);
        referenceSeconds += (Date.now() - start) / 1000;
      }
      const result = await stages.advantages(plan, batch.rollouts, batch.rewards, r, reference?.referenceLogprobs);
      advantageSeconds += (Date.now() - start) / 1000;
      return result;
    };
    enter('advantages');
    let advantages = await round(dynamic ? 0 : undefined);
    let promptsRolled = plan.count;
    if (dynamic?.mode === 'refill') {
      for (let r = 1; r <= dynamic.maxRounds && (advantages.dynamic?.morePrompts ?? 0) > 0; r++) {
        const refill = planRefill(config, plan, r, advantages.dynamic!.morePrompts, batch.rollouts.length);
        if (refill.shards.length === 0) break;
        promptsRolled += refill.count;
        shardsTotal = batch.rollouts.length + refill.shards.length;
        enter('rollout');
        await rollAndScore(plan, batch, refill.shards, shardsTotal);
        enter('advantages');
        advantages = await round(r);
      }
    }
    return { advantages, reference, referenceSeconds, advantageSeconds, promptsRolled, dynamic };
  }

  async function commit(
    plan: StepPlan,
    checkpoint: ManifestEntry[],
    artifacts: ManifestEntry[],
    metrics: StepMetrics,
    t0: number,
  ): Promise<StepMetrics> {
    enter('commit');
    const done: StepMetrics = { ...withStepIo(metrics, stepIo.get(plan.step)), step_seconds: (Date.now() - t0) / 1000 };
    const committed = await stages.commit(plan, checkpoint, artifacts, done);
    stepIo.delete(plan.step);
    carry.lastStepUri = committed.stepUri;
    carry.lastCheckpointUri = committed.checkpointUri;
    return done;
  }
}

/**
 * One typed call per stage of a run: its activity, its input built from the step's plan, and the
 * summary the Web UI shows for it (stage · step · shard · size), made through `call` (the run's
 * blocking caller, with each stage's timeouts).
 */
function stageCalls({ config, runId, storeUri, resumeFrom }: TrainingRunInput, call: CallActivity) {
  const ref = { storeUri, runId };
  const sftBatch = (plan: StepPlan) => (plan.phase.kind === 'sft' ? plan.phase.batchSize : plan.count);
  return {
    init: () =>
      call(
        'initRun',
        resumeFrom ? `init · resume from ${resumeFrom.runId} checkpoint ${resumeFrom.checkpoint}` : 'init · initial weights',
        { ...ref, config, resumeFrom },
      ),
    evaluate: (policyVersion: number, phase: EvaluateInput['phase']) =>
      call('evaluate', `eval · checkpoint ${policyVersion} · ${config.eval.prompts} prompts`, { ...ref, policyVersion, phase }),
    // `of`: the step's shards so far (the planned ones, plus those of dynamic-sampling refill rounds).
    // `policyVersion`: the checkpoint that generates (run-plan.ts `policyVersion`; the step itself on-policy)
    rollout: (plan: StepPlan, s: ShardPlan, of: number, policyVersion: number) =>
      call(
        'rolloutShard',
        rolloutSummary({
          step: plan.step,
          shard: s.shard,
          of,
          promptCount: s.promptCount,
          groupSize: plan.phase.kind === 'rl' || plan.phase.kind === 'online_dpo' ? plan.phase.groupSize : 1,
          environment: config.environment,
          policyVersion,
        }),
        {
          ...ref,
          step: plan.step,
          policyVersion,
          phaseIndex: plan.phaseIndex,
          shard: s.shard,
          shards: of,
          promptOffset: s.promptOffset,
          promptCount: s.promptCount,
        },
      ),
    reward: (plan: StepPlan, s: ShardPlan, rolled: RolloutShardResult, of = plan.shards.length) =>
      call('rewardShard', `reward · step ${plan.step} · shard ${s.shard + 1}/${of} · ${rolled.samples} samples`, {
        ...ref,
        step: plan.step,
        shard: s.shard,
        shards: of,
        rollouts: rolled.rollouts,
      }),
    // kl.inReward: the reference checkpoint's logprobs of every rollouts shard so far
    reference: (plan: StepPlan, referenceVersion: number, rollouts: RolloutShardResult[]) =>
      call(
        'scoreReferenceLogprobs',
        `reference logprobs · step ${plan.step} · checkpoint ${referenceVersion} · ${rollouts.reduce((a, r) => a + r.samples, 0)} samples`,
        {
          ...ref,
          step: plan.step,
          phaseIndex: plan.phaseIndex,
          referenceVersion,
          rollouts: rollouts.map((r) => r.rollouts),
        },
      ),
    // `round`: dynamic sampling's refill rounds so far (absent when it is off, as in recorded histories);
    // `referenceLogprobs`: the step's reference logprobs (kl.inReward only).
    advantages: (
      plan: StepPlan,
      rollouts: RolloutShardResult[],
      rewards: RewardShardResult[],
      round?: number,
      referenceLogprobs?: ManifestEntry,
    ) =>
      call(
        'computeStepAdvantages',
        `advantages · step ${plan.step} · ${plan.phase.kind === 'rl' ? plan.phase.advantage.estimator : plan.phase.kind === 'online_dpo' ? 'preference pairs' : ''}${round ? ` · refill round ${round}` : ''}`,
        {
          ...ref,
          step: plan.step,
          phaseIndex: plan.phaseIndex,
          rollouts: rollouts.map((r) => r.rollouts),
          rewards: rewards.map((r) => r.rewards),
          ...(round !== undefined ? { round } : {}),
          ...(referenceLogprobs ? { referenceLogprobs } : {}),
        },
      ),
    learnSft: (plan: StepPlan) =>
      call(
        'learnerUpdate',
        `learner · step ${plan.step} · sft · ${plan.lrs.length > 1 ? `${plan.lrs.length} updates × ` : ''}${sftBatch(plan)} examples`,
        {
          ...ref,
          step: plan.step,
          phaseIndex: plan.phaseIndex,
          phase: 'sft',
          lr: plan.lr,
          referenceVersion: null,
          promptOffset: plan.promptOffset,
          batchSize: sftBatch(plan),
          rollouts: [],
          advantages: null,
          ...(plan.lrs.length > 1 ? { lrs: plan.lrs } : {}),
        },
      ),
    learnRl: (
      plan: StepPlan,
      referenceVersion: number | null,
      rollouts: RolloutShardResult[],
      advantages: AdvantagesResult,
      referenceLogprobs?: ManifestEntry,
    ) =>
      call('learnerUpdate', `learner · step ${plan.step} · rl · ${advantages.keptSamples} samples`, {
        ...ref,
        step: plan.step,
        phaseIndex: plan.phaseIndex,
        phase: 'rl',
        lr: plan.lr,
        referenceVersion,
        promptOffset: plan.promptOffset,
        batchSize: plan.count,
        rollouts: rollouts.map((r) => r.rollouts),
        advantages: advantages.advantages,
        ...(referenceLogprobs ? { referenceLogprobs } : {}),
      }),
    // online_dpo: the advantage stage's preference pairs go in `advantages` (activities/run/types.ts LearnerInput)
    learnOnlineDpo: (plan: StepPlan, referenceVersion: number | null, rollouts: RolloutShardResult[], pairs: AdvantagesResult) =>
      call('learnerUpdate', `learner · step ${plan.step} · online_dpo · ${pairs.preference?.pairs ?? 0} pairs`, {
        ...ref,
        step: plan.step,
        phaseIndex: plan.phaseIndex,
        phase: 'online_dpo',
        lr: plan.lr,
        referenceVersion,
        promptOffset: plan.promptOffset,
        batchSize: plan.count,
        rollouts: rollouts.map((r) => r.rollouts),
        advantages: pairs.advantages,
      }),
    learnRewardModel: (plan: StepPlan) =>
      call('learnerUpdate', `learner · step ${plan.step} · reward_model · ${plan.count} pairs`, {
        ...ref,
        step: plan.step,
        phaseIndex: plan.phaseIndex,
        phase: 'reward_model',
        lr: plan.lr,
        referenceVersion: null,
        promptOffset: plan.promptOffset,
        batchSize: plan.count,
        rollouts: [],
        advantages: null,
      }),
    learnDpo: (plan: StepPlan, referenceVersion: number | null) =>
      call('learnerUpdate', `learner · step ${plan.step} · dpo · ${plan.count} pairs`, {
        ...ref,
        step: plan.step,
        phaseIndex: plan.phaseIndex,
        phase: 'dpo',
        lr: plan.lr,
        referenceVersion,
        promptOffset: plan.promptOffset,
        batchSize: plan.count,
        rollouts: [],
        advantages: null,
      }),
    commit: (plan: StepPlan, checkpoint: ManifestEntry[], artifacts: ManifestEntry[], metrics: StepMetrics) =>
      call('commitStep', `commit · step ${plan.step} · checkpoint ${plan.step + 1}`, {
        ...ref,
        step: plan.step,
        phase: plan.phase.kind,
        checkpoint,
        artifacts,
        metrics,
      }),
  };
}
