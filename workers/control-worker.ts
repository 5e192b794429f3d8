/**
 * The control worker: polls durable-rl.control until SIGTERM/SIGINT, then lets in-flight tasks finish.
 *
 *   npx tsx workers/control-worker.ts [--concurrency N] [--shutdown-grace SECONDS]
 *
 * Options, environment and defaults: `--help`, and `workerProcessOptions` in worker.ts.
 */
import { workerMain } from './worker.js';

workerMain({ name: 'control-worker', queues: ['control'] });
