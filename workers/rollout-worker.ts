/**
 * The rollout worker: polls durable-rl.rollout until SIGTERM/SIGINT, then lets in-flight tasks finish.
 *
 *   npx tsx workers/rollout-worker.ts [--concurrency N] [--shutdown-grace SECONDS]
 *
 * Options, environment and defaults: `--help`, and `workerProcessOptions` in worker.ts.
 */
import { workerMain } from './worker.js';

workerMain({ name: 'rollout-worker', queues: ['rollout'] });
