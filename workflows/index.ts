/** Every workflow durable-rl registers; the worker bundles this file. */
export { annotateRewards, annotateProgressQuery } from './annotate-rewards.js';
export { trainingRun, pauseSignal, resumeSignal, stopSignal, progressQuery } from './training-run.js';
