/** Every workflow durable-rl registers; the worker bundles this file. */
export { annotateRewards, annotateProgressQuery } from './annotate-rewards.js';
