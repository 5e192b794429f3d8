/**
 * "No worker polls the queue this run waits on", in the run's current details within a minute.
 *
 * The workflow cannot see whether a scheduled activity has started, nor who polls a queue, so it
 * asks: while one of its calls has waited `QUEUE_CHECK_MS` (30 s) or more, it runs the local
 * activity `unpolledQueues` (activities/run/queue-watch.ts) on its own control worker every 30 s,
 * which reads the run's pending activities and the queues' pollers from the server. A queue with
 * none of the run's calls running and no poller seen for `SEEN_WITHIN_S` is shown; the line goes
 * away at the first check that finds a worker. A queue no worker ever polled shows 30–60 s after
 * the call was scheduled; a worker that died mid-poll, after its last poll ages past 75 s.
 *
 * Why not a schedule-to-start timeout: a call that waits behind busy workers (shards queued for a
 * single rollout worker) is normal, and a timeout cannot tell it from a queue nobody polls; it
 * would also add two events per call per timeout. The other way round, the watch is what tells a
 * call that timed out waiting in its queue (`polledRecently`): on a queue found polled, it waited
 * behind busy workers and is scheduled again without the run showing blocked (patch
 * `queued-not-blocked`); on a queue found unpolled, or not checked, the run shows blocked. History cost here: while calls wait, a timer
 * (2 events) per 30 s and a marker (1 event) per check; nothing while no call waits.
 */
import * as wf from '@temporalio/workflow';
import type { LocalActivities } from '../activities/index.js';
import { ACTIVITY_QUEUES, activityNamesOn, type ActivityName } from './activity-queues.js';
import type { UnpolledQueueView } from './run-details.js';
import { TASK_QUEUES } from './task-queues.js';

/** The patch under which a run watches its queues (histories recorded before it replay without the watch). */
export const QUEUE_WATCH_PATCH = 'queue-watch';
/** How long a call waits before its queue is checked, and the period of the checks. */
export const QUEUE_CHECK_MS = 30_000;
/** A poller seen within this many seconds is a worker (an idle worker's long poll restarts about every 60–70 s). */
export const SEEN_WITHIN_S = 75;

const { unpolledQueues } = wf.proxyLocalActivities<LocalActivities>({
  startToCloseTimeout: '20 seconds',
  retry: { maximumAttempts: 3 },
});

/** The run's waiting calls and what the last check found about their queues. */
export class QueueWatch {
  private readonly waiting = new Map<number, { name: ActivityName; since: number }>();
  private ids = 0;
  /** The queues the last check found unpolled (empty: none, or not checked). */
  unpolled: UnpolledQueueView[] = [];
  /** When each queue was last checked successfully (workflow time, ms). */
  private readonly checkedAt = new Map<string, number>();

  /** `changed` is called after each change of `unpolled` (the workflow re-renders its details). */
  constructor(private readonly changed: () => void) {}

  /** Runs `call`, counted as waiting until it settles; a queue left with no waiting call is no longer shown. */
  async track<T>(name: ActivityName, call: () => Promise<T>): Promise<T> {
    const id = this.ids++;
    this.waiting.set(id, { name, since: Date.now() });
    try {
      return await call();
    } finally {
      this.waiting.delete(id);
      const still = new Set<string>([...this.waiting.values()].map((w) => TASK_QUEUES[ACTIVITY_QUEUES[w.name]]));
      const kept = this.unpolled.filter((u) => still.has(u.taskQueue));
      if (kept.length !== this.unpolled.length) this.set(kept);
    }
  }

  /**
   * Whether `name`'s queue was found polled by a check of the last two periods: a call of it that
   * timed out waiting (run-control.ts `timedOutWaiting`) waited behind busy workers (shards queued
   * for one rollout worker), which is not a blocked run. False when no recent check covered the
   * queue, or it found none polling.
   */
  polledRecently(name: ActivityName): boolean {
    const queue = TASK_QUEUES[ACTIVITY_QUEUES[name]];
    const at = this.checkedAt.get(queue);
    return at !== undefined && Date.now() - at <= 2 * QUEUE_CHECK_MS && !this.unpolled.some((u) => u.taskQueue === queue);
  }

  private set(unpolled: UnpolledQueueView[]): void {
    this.unpolled = unpolled;
    this.changed();
  }

  /** Checks the waiting calls' queues until `done()`. Never throws. */
  async run(done: () => boolean): Promise<void> {
    for (;;) {
      await wf.condition(() => this.waiting.size > 0 || done());
      if (done()) return;
      await wf.sleep(QUEUE_CHECK_MS);
      if (done()) return;
      const now = Date.now();
      const byQueue = new Map<string, { calls: number; sinceMs: number; queue: (typeof ACTIVITY_QUEUES)[ActivityName] }>();
      for (const w of this.waiting.values()) {
        if (now - w.since < QUEUE_CHECK_MS) continue;
        const queue = ACTIVITY_QUEUES[w.name];
        const q = byQueue.get(TASK_QUEUES[queue]) ?? { calls: 0, sinceMs: w.since, queue };
        byQueue.set(TASK_QUEUES[queue], { calls: q.calls + 1, sinceMs: Math.min(q.sinceMs, w.since), queue });
      }
      let found = this.unpolled;
      if (byQueue.size === 0) found = [];
      else {
        try {
          const queues = [...byQueue].map(([taskQueue, q]) => ({ taskQueue, activityTypes: activityNamesOn(q.queue) }));
          const none = await unpolledQueues({ queues, seenWithinSeconds: SEEN_WITHIN_S });
          found = none.map((u) => ({ ...u, calls: byQueue.get(u.taskQueue)!.calls, sinceMs: byQueue.get(u.taskQueue)!.sinceMs }));
          for (const q of byQueue.keys()) this.checkedAt.set(q, now);
        } catch (err) {
          wf.log.warn('queue check failed; the details keep the last answer', { error: String(err) });
        }
      }
      if (JSON.stringify(found) !== JSON.stringify(this.unpolled)) this.set(found);
    }
  }
}
