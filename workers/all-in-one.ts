/**
 * The all-in-one worker for a single machine: polls every queue (control, rollout, reward,
 * learner) in one process, on one connection, until SIGTERM/SIGINT; then lets in-flight tasks finish.
 *
 *   npx tsx workers/all-in-one.ts [--rollout-concurrency N] [--reward-concurrency N]
 *                                 [--learner-concurrency N] [--control-concurrency N] [--shutdown-grace SECONDS]
 *
 * Options, environment and defaults: `--help`, and `workerProcessOptions` in worker.ts.
 */
import { QUEUE_NAMES } from '../workflows/task-queues.js';
import { workerMain } from './worker.js';

workerMain({ name: 'all-in-one', queues: QUEUE_NAMES });
