/**
 * Every activity durable-rl registers, by name. Workers pass `createActivities()` to
 * `Worker.create`; workflows refer to these by name through `proxyActivities<typeof ...>`.
 */
import { planAnnotation, annotateShard, finalizeAnnotation } from './reward/annotate-activities.js';
import { rewardShard } from './reward/step-activities.js';
import { rolloutShard, evaluate } from './rollout/activities.js';
import { computeStepAdvantages } from './advantage/activities.js';
import { learnerUpdate } from './learner/activities.js';
import { initRun, commitStep } from './checkpoint/activities.js';

export function createActivities() {
  return {
    planAnnotation, annotateShard, finalizeAnnotation,
    initRun, rolloutShard, rewardShard, computeStepAdvantages, learnerUpdate, commitStep, evaluate,
  };
}
