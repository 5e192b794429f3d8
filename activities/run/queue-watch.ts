/**
 * Which task queues a run waits on while no worker polls them: the local activity behind the
 * "no worker" lines of a run's current details (workflows/training-run.ts runs it on the control
 * worker, for each queue once one of its calls has waited 30 s, then every 30 s while calls wait on it).
 *
 * A queue counts as unpolled when none of the run's calls on it is running (the run's pending
 * activities, DescribeWorkflowExecution) and the server has seen no poller on it within
 * `seenWithinSeconds` (DescribeTaskQueue; a poller's last access is when its current long poll
 * began, so an idle, healthy worker is at most about 70 s old there). Workers all busy with other
 * runs' calls do not poll either: the details say "none polling", which is what the run sees.
 */
import { Context } from '@temporalio/activity';

export interface QueueWatchInput {
  /** The queues the run has calls waiting on, each with the activity types it runs there. */
  queues: { taskQueue: string; activityTypes: string[] }[];
  /** A poller seen within this many seconds counts as a worker polling the queue. */
  seenWithinSeconds: number;
}

export interface UnpolledQueue {
  taskQueue: string;
  /** When a poller was last seen on the queue (ms since the epoch); null: none the server remembers (about 5 minutes). */
  lastSeenMs: number | null;
}

const PENDING_ACTIVITY_STATE_STARTED = 2; // temporal.api.enums.v1.PendingActivityState
const TASK_QUEUE_TYPE_ACTIVITY = 2; // temporal.api.enums.v1.TaskQueueType

const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) =>
  t ? Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1e6) : null;

/** The queues among `input.queues` that no worker polls (see the file's comment). */
export async function unpolledQueues(input: QueueWatchInput): Promise<UnpolledQueue[]> {
  const { client, info } = Context.current();
  const namespace = info.namespace;
  const run = await client.workflowService.describeWorkflowExecution({ namespace, execution: info.workflowExecution });
  const running = new Set(
    (run.pendingActivities ?? []).filter((a) => a.state === PENDING_ACTIVITY_STATE_STARTED).map((a) => a.activityType?.name),
  );
  const now = Date.now();
  const out: UnpolledQueue[] = [];
  for (const q of input.queues) {
    if (q.activityTypes.some((t) => running.has(t))) continue;
    const tq = await client.workflowService.describeTaskQueue({
      namespace,
      taskQueue: { name: q.taskQueue },
      taskQueueType: TASK_QUEUE_TYPE_ACTIVITY,
    });
    const seen = (tq.pollers ?? []).map((p) => ms(p.lastAccessTime)).filter((t): t is number => t !== null);
    const lastSeenMs = seen.length > 0 ? Math.max(...seen) : null;
    if (lastSeenMs === null || now - lastSeenMs > input.seenWithinSeconds * 1000) out.push({ taskQueue: q.taskQueue, lastSeenMs });
  }
  return out;
}
