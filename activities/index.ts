/**
 * Every activity durable-rl registers, by name. Which queue runs each one is decided in
 * workflows/activity-queues.ts; a worker registers the ones of its queues (`activitiesFor` in
 * workers/worker.ts), and workflows call them by name through `proxyActivities<Activities>`.
 */
import { planAnnotation, annotateShard, finalizeAnnotation } from './reward/annotate-activities.js';
import { rewardShard } from './reward/step-activities.js';
import { rolloutShard, evaluate } from './rollout/activities.js';
import { computeStepAdvantages } from './advantage/activities.js';
import { learnerUpdate } from './learner/activities.js';
import { initRun, commitStep } from './checkpoint/activities.js';

export const ACTIVITIES = {
  planAnnotation, annotateShard, finalizeAnnotation,
  initRun, rolloutShard, rewardShard, computeStepAdvantages, learnerUpdate, commitStep, evaluate,
};

export type Activities = typeof ACTIVITIES;
