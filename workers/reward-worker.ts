/**
 * The reward worker: polls durable-rl.reward until SIGTERM/SIGINT, then lets in-flight tasks finish.
 *
 *   npx tsx workers/reward-worker.ts [--concurrency N] [--shutdown-grace SECONDS]
 *
 * Options, environment and defaults: `--help`, and `workerProcessOptions` in worker.ts.
 */
import { workerMain } from './worker.js';

workerMain({ name: 'reward-worker', queues: ['reward'] });
