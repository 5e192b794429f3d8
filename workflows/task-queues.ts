/**
 * Task queues of durable-rl. Workflows run on the control queue; each stage's activities run on
 * the queue of the machines that suit it (GPU for rollout and learner, CPU for reward).
 */
export const TASK_QUEUES = {
  control: 'durable-rl.control',
  rollout: 'durable-rl.rollout',
  reward: 'durable-rl.reward',
  learner: 'durable-rl.learner',
} as const;

export type QueueName = keyof typeof TASK_QUEUES;

/** Every queue name, in the order the all-in-one worker polls them. */
export const QUEUE_NAMES: readonly QueueName[] = Object.keys(TASK_QUEUES) as QueueName[];
