/**
 * The one way workflows schedule an activity: by name, on the queue `ACTIVITY_QUEUES` gives it,
 * with the workflow's timeouts and retries and a summary for the Web UI.
 */
import * as wf from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import { ACTIVITY_QUEUES, type ActivityName } from './activity-queues.js';
import { TASK_QUEUES } from './task-queues.js';

export type ActivityInput<N extends ActivityName> = Parameters<Activities[N]>[0];
export type ActivityOutput<N extends ActivityName> = Awaited<ReturnType<Activities[N]>>;

/** Schedules activity `name` with `input`; `summary` names it in the Web UI (stage, step, shard). */
export type CallActivity = <N extends ActivityName>(name: N, summary: string, input: ActivityInput<N>) => Promise<ActivityOutput<N>>;

/**
 * A `CallActivity` whose calls get their activity's queue and `options` (timeouts, heartbeats,
 * retries): the same for every call, or per activity when `options` is a function of its name.
 */
export function activityCaller(
  options: Omit<wf.ActivityOptions, 'taskQueue' | 'summary'> | ((name: ActivityName) => Omit<wf.ActivityOptions, 'taskQueue' | 'summary'>),
): CallActivity {
  const optionsOf = typeof options === 'function' ? options : () => options;
  // (proxyActivities wants a timeout to build the proxies; with per-activity options every call passes its own)
  const proxies = wf.proxyActivities<Activities>(typeof options === 'function' ? { startToCloseTimeout: '1 minute' } : options);
  return <N extends ActivityName>(name: N, summary: string, input: ActivityInput<N>) => {
    const activity = proxies[name] as unknown as wf.ActivityFunctionWithOptions<(input: ActivityInput<N>) => Promise<ActivityOutput<N>>>;
    return activity.executeWithOptions({ ...optionsOf(name), taskQueue: TASK_QUEUES[ACTIVITY_QUEUES[name]], summary }, [input]);
  };
}
