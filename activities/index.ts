/**
 * Every activity durable-rl registers, by name. Which queue runs each one is decided in
 * workflows/activity-queues.ts; a worker registers the ones of its queues (`activitiesFor` in
 * workers/worker.ts), and workflows call them by name through `proxyActivities<Activities>`.
 */
import { planAnnotation, annotateShard, finalizeAnnotation } from './reward/annotate-activities.js';
import { rewardShard } from './reward/reward-shard.js';
import { rolloutShard } from './rollout/rollout-shard.js';
import { evaluate } from './rollout/evaluate.js';
import { computeStepAdvantages } from './advantage/step-advantages.js';
import { learnerUpdate } from './learner/learner-update.js';
import { scoreReferenceLogprobs } from './learner/reference-logprobs.js';
import { initRun } from './checkpoint/init-run.js';
import { commitStep } from './checkpoint/commit-step.js';
import { unpolledQueues } from './run/queue-watch.js';

export const ACTIVITIES = {
  planAnnotation,
  annotateShard,
  finalizeAnnotation,
  initRun,
  rolloutShard,
  rewardShard,
  scoreReferenceLogprobs,
  computeStepAdvantages,
  learnerUpdate,
  commitStep,
  evaluate,
};

export type Activities = typeof ACTIVITIES;

/**
 * The local activities of the workflows: run by the control worker that runs the workflow itself
 * (no queue of their own), so the control worker registers them.
 */
export const LOCAL_ACTIVITIES = { unpolledQueues };

export type LocalActivities = typeof LOCAL_ACTIVITIES;
