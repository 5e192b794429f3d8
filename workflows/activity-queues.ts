/**
 * Which task queue each activity runs on: the one place this is decided. The workflows schedule
 * every activity on the queue named here, and each worker registers exactly the activities of the
 * queues it polls (`activitiesFor` in workers/worker.ts). Pure data: workflow code imports it.
 */
import type { QueueName } from './task-queues.js';

/** The queues that run activities (control runs workflows only). */
export type ActivityQueue = Exclude<QueueName, 'control'>;

export const ACTIVITY_QUEUES = {
  // Offline reward annotation (annotateRewards): the whole job runs where rewards are computed.
  /** Reads the input table and splits it into shards: light CPU work that belongs to the annotation job. */
  planAnnotation: 'reward',
  /** Scores a shard of records with the reward function: CPU verifiers, judges, sandboxes. */
  annotateShard: 'reward',
  /** Concatenates the committed shards into one rewards table: CPU and store I/O of the same job. */
  finalizeAnnotation: 'reward',

  // A training run (trainingRun).
  /** Puts the run's first checkpoint in place (initial weights or a resume-from copy): checkpoints are the learner's. */
  initRun: 'learner',
  /** Generates completions with the policy's weights: inference on the rollout machines (GPU). */
  rolloutShard: 'rollout',
  /** Scores a shard's completions: CPU verifiers, judges, sandboxes. */
  rewardShard: 'reward',
  /** Scores the step's rollouts under the reference checkpoint (kl.inReward): the learner machines hold the run's engine and reference weights. */
  scoreReferenceLogprobs: 'learner',
  /** Group-normalises the step's rewards: CPU arithmetic that needs no weights, so it stays off the GPU queues. */
  computeStepAdvantages: 'reward',
  /** Runs the optimizer update of a step: training on the learner machines (GPU). */
  learnerUpdate: 'learner',
  /** Commits the checkpoint the learner just wrote, then the step's artifacts and metrics: the learner's checkpoint. */
  commitStep: 'learner',
  /** Greedy accuracy and pass@k of a checkpoint: generation, the same engine as rollout. */
  evaluate: 'rollout',
} as const satisfies Record<string, ActivityQueue>;

/** The name of an activity durable-rl registers. */
export type ActivityName = keyof typeof ACTIVITY_QUEUES;

/** The activities that run on `queue`, in the table's order (none for control). */
export function activityNamesOn(queue: QueueName): ActivityName[] {
  return (Object.keys(ACTIVITY_QUEUES) as ActivityName[]).filter((name) => ACTIVITY_QUEUES[name] === queue);
}
