/**
 * The timeouts and retry policy of each stage's activity calls (pure; workflow code). Attempts are
 * unlimited with a capped exponential backoff: an outage is waited out, never turned into a failed
 * run. A call's schedule-to-close is its start-to-close plus its `blockedAfterMinutes` — the time
 * in retry after which the run shows blocked (workflows/README.md, "Blocked, not failed"; the
 * activity side of the same rule is `retryWindowMs` in activities/run/stage.ts).
 *
 * The input config of a run started before config version 2 (activities/run/config-version.ts)
 * lacks `blockedAfterMinutes`, `retryIntervalCapSeconds` and `stages`: workflow code cannot run
 * the activities' migration, so the defaults of config.ts are repeated here (BLOCKED_AFTER_DEFAULT,
 * RETRY_CAP_DEFAULT; test/unit/workflows/stage-options.test.ts checks they agree).
 */
import type { ActivityOptions } from '@temporalio/workflow';
import type { RunConfig, StageName } from '../activities/run/config.js';
import type { ActivityName } from './activity-queues.js';

/** config.ts's default `workflow.blockedAfterMinutes`, for configs stored before it existed. */
export const BLOCKED_AFTER_DEFAULT = 5;
/** config.ts's default `workflow.retryIntervalCapSeconds`, for configs stored before it existed. */
export const RETRY_CAP_DEFAULT = 60;

/** The stage whose timeouts an activity of a training run gets (annotation activities have their own workflow). */
export const STAGE_OF = {
  initRun: 'init',
  rolloutShard: 'rollout',
  rewardShard: 'reward',
  scoreReferenceLogprobs: 'reference',
  computeStepAdvantages: 'advantages',
  learnerUpdate: 'learner',
  commitStep: 'commit',
  evaluate: 'eval',
} as const satisfies Partial<Record<ActivityName, StageName>>;

export type RunActivityName = keyof typeof STAGE_OF;

/** A stage's timeouts in milliseconds, from the run's `workflow` section (a version-1 config gets the defaults). */
export function stageTimeouts(workflow: RunConfig['workflow'], stage: StageName) {
  const w = workflow as Partial<RunConfig['workflow']> & Pick<RunConfig['workflow'], 'activityTimeoutMinutes' | 'heartbeatTimeoutSeconds'>;
  const own = w.stages?.[stage] ?? {};
  const startToCloseMs = (own.startToCloseMinutes ?? w.activityTimeoutMinutes) * 60_000;
  const blockedAfterMs = (own.blockedAfterMinutes ?? w.blockedAfterMinutes ?? BLOCKED_AFTER_DEFAULT) * 60_000;
  return {
    startToCloseMs: Math.round(startToCloseMs),
    heartbeatMs: (own.heartbeatSeconds ?? w.heartbeatTimeoutSeconds) * 1000,
    blockedAfterMs: Math.round(blockedAfterMs),
    scheduleToCloseMs: Math.round(startToCloseMs + blockedAfterMs),
    retryCapMs: (w.retryIntervalCapSeconds ?? RETRY_CAP_DEFAULT) * 1000,
  };
}

/** The activity options of a call to `name`: per-stage timeouts, unlimited attempts with a capped backoff. */
export function stageActivityOptions(workflow: RunConfig['workflow'], name: RunActivityName): ActivityOptions {
  const t = stageTimeouts(workflow, STAGE_OF[name]);
  return {
    startToCloseTimeout: t.startToCloseMs,
    heartbeatTimeout: t.heartbeatMs,
    scheduleToCloseTimeout: t.scheduleToCloseMs,
    // no maximumAttempts: unlimited
    retry: { initialInterval: 1000, backoffCoefficient: 2, maximumInterval: t.retryCapMs },
  };
}
