/**
 * The learner worker: polls durable-rl.learner until SIGTERM/SIGINT, then lets in-flight tasks finish.
 *
 *   npx tsx workers/learner-worker.ts [--concurrency N] [--shutdown-grace SECONDS]
 *
 * Options, environment and defaults: `--help`, and `workerProcessOptions` in worker.ts.
 */
import { workerMain } from './worker.js';

workerMain({ name: 'learner-worker', queues: ['learner'] });
