/**
 * "No worker polls the queue this run waits on", in the run's current details within a minute.
 *
 * The workflow cannot see whether a scheduled activity has started, nor who polls a queue, so it
 * asks: once one of its calls has waited `QUEUE_CHECK_MS` (30 s), it runs the local activity
 * `unpolledQueues` (activities/run/queue-watch.ts) on its own control worker, which reads the run's
 * pending activities and the queues' pollers from the server. A queue with none of the run's calls
 * running and no poller seen for `SEEN_WITHIN_S` is shown; the line goes away at the first check
 * that finds a worker. Each queue is checked 30 s after its oldest waiting call was scheduled, and
 * again every 30 s while calls wait on it (`checkPlan`), so a queue no worker polls when the call
 * is scheduled shows about 30 s later (a check that covers the queue after the call was scheduled
 * finds it unpolled, and the first comes at most 30 s after); a worker that died mid-poll, after
 * its last poll ages past 75 s. Runs started before the patch `queue-watch-due` check every queue
 * on one 30 s beat, which counted a call only at the beat after it had waited 30 s: up to 60 s.
 *
 * Why not a schedule-to-start timeout: a call that waits behind busy workers (shards queued for a
 * single rollout worker) is normal, and a timeout cannot tell it from a queue nobody polls; it
 * would also add two events per call per timeout. The other way round, the watch is what tells a
 * call that timed out waiting in its queue (`polledRecently`): on a queue found polled, it waited
 * behind busy workers and is scheduled again without the run showing blocked (patch
 * `queued-not-blocked`); on a queue found unpolled, or not checked, the run shows blocked. History
 * cost here: while calls wait, a timer (2 events) and a marker (1 event) per check, at most one
 * check per queue per 30 s (a check covers every queue with a call waiting 30 s, so usually one
 * per 30 s for all); nothing while no call waits.
 */
import * as wf from '@temporalio/workflow';
import type { LocalActivities } from '../activities/index.js';
import { ACTIVITY_QUEUES, activityNamesOn, type ActivityName } from './activity-queues.js';
import type { UnpolledQueueView } from './run-details.js';
import { TASK_QUEUES } from './task-queues.js';

/** The patch under which a run watches its queues (histories recorded before it replay without the watch). */
export const QUEUE_WATCH_PATCH = 'queue-watch';
/** The patch under which each queue is checked 30 s after its oldest waiting call (`checkPlan`), not on one 30 s beat for all. */
export const QUEUE_WATCH_DUE_PATCH = 'queue-watch-due';
/** How long a call waits before its queue is checked, and the least time between two checks of a queue. */
export const QUEUE_CHECK_MS = 30_000;
/** A poller seen within this many seconds is a worker (an idle worker's long poll restarts about every 60–70 s). */
export const SEEN_WITHIN_S = 75;
/** Checks due this close together are made as one (a timer can fire a little early by the workflow's clock). */
const CHECK_SLACK_MS = 1_000;

const { unpolledQueues } = wf.proxyLocalActivities<LocalActivities>({
  startToCloseTimeout: '20 seconds',
  retry: { maximumAttempts: 3 },
});

/** A call the run waits on: its task queue and when it was scheduled (workflow time, ms). */
export interface WaitingCall {
  queue: string;
  since: number;
}

/**
 * When the next queue check is due and which queues it covers (pure). Queue q is due at
 * max(its oldest waiting call's `since`, its last check) + `QUEUE_CHECK_MS`; the check made when
 * the first is due covers every queue with a call that has waited `QUEUE_CHECK_MS` by then. So a
 * call on a queue no worker polls is found within `QUEUE_CHECK_MS` of being scheduled (a check of
 * its queue after that finds the queue unpolled, and the first comes at most `QUEUE_CHECK_MS`
 * after), and a queue is checked at most once per `QUEUE_CHECK_MS` for its own sake.
 * `queues` is empty until `dueAt` (sleep until then); undefined: no call waits.
 */
export function checkPlan(
  waiting: Iterable<WaitingCall>,
  lastCheck: ReadonlyMap<string, number>,
  now: number,
): { dueAt: number; queues: string[] } | undefined {
  const oldest = new Map<string, number>();
  for (const w of waiting) oldest.set(w.queue, Math.min(oldest.get(w.queue) ?? Infinity, w.since));
  if (oldest.size === 0) return undefined;
  let dueAt = Infinity;
  for (const [queue, since] of oldest) dueAt = Math.min(dueAt, Math.max(since, lastCheck.get(queue) ?? -Infinity) + QUEUE_CHECK_MS);
  if (dueAt > now + CHECK_SLACK_MS) return { dueAt, queues: [] };
  const queues = [...oldest].filter(([, since]) => since + QUEUE_CHECK_MS <= now + CHECK_SLACK_MS).map(([queue]) => queue);
  return { dueAt, queues: queues.sort() };
}

/** The run's waiting calls and what the last check found about their queues. */
export class QueueWatch {
  private readonly waiting = new Map<number, { name: ActivityName; since: number }>();
  private ids = 0;
  /** The queues the last check found unpolled (empty: none, or not checked). */
  unpolled: UnpolledQueueView[] = [];
  /** When each queue was last checked successfully (workflow time, ms). */
  private readonly checkedAt = new Map<string, number>();
  /** When each queue was last checked, successfully or not (workflow time, ms): `checkPlan`'s period. */
  private readonly triedAt = new Map<string, number>();

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

  /**
   * The unpolled queues among those the calls that waited `QUEUE_CHECK_MS` by `now` wait on
   * (restricted to `only` when given), each with its count of such calls and the oldest's time;
   * undefined when the local activity failed. No call: [] without asking.
   */
  private async check(now: number, only?: readonly string[]): Promise<{ checked: string[]; found: UnpolledQueueView[] } | undefined> {
    const byQueue = new Map<string, { calls: number; sinceMs: number; queue: (typeof ACTIVITY_QUEUES)[ActivityName] }>();
    for (const w of this.waiting.values()) {
      if (now - w.since < QUEUE_CHECK_MS - (only ? CHECK_SLACK_MS : 0)) continue;
      const queue = ACTIVITY_QUEUES[w.name];
      if (only && !only.includes(TASK_QUEUES[queue])) continue;
      const q = byQueue.get(TASK_QUEUES[queue]) ?? { calls: 0, sinceMs: w.since, queue };
      byQueue.set(TASK_QUEUES[queue], { calls: q.calls + 1, sinceMs: Math.min(q.sinceMs, w.since), queue });
    }
    if (byQueue.size === 0) return { checked: [], found: [] };
    for (const q of byQueue.keys()) this.triedAt.set(q, now);
    try {
      const queues = [...byQueue].map(([taskQueue, q]) => ({ taskQueue, activityTypes: activityNamesOn(q.queue) }));
      const none = await unpolledQueues({ queues, seenWithinSeconds: SEEN_WITHIN_S });
      for (const q of byQueue.keys()) this.checkedAt.set(q, now);
      const found = none.map((u) => ({ ...u, calls: byQueue.get(u.taskQueue)!.calls, sinceMs: byQueue.get(u.taskQueue)!.sinceMs }));
      return { checked: [...byQueue.keys()], found };
    } catch (err) {
      wf.log.warn('queue check failed; the details keep the last answer', { error: String(err) });
      return undefined;
    }
  }

  /** Checks the waiting calls' queues until `done()`. Never throws. */
  async run(done: () => boolean): Promise<void> {
    if (!wf.patched(QUEUE_WATCH_DUE_PATCH)) return this.runOnOneBeat(done);
    for (;;) {
      await wf.condition(() => this.waiting.size > 0 || done());
      if (done()) return;
      const now = Date.now();
      const calls = [...this.waiting.values()].map((w) => ({ queue: TASK_QUEUES[ACTIVITY_QUEUES[w.name]], since: w.since }));
      const plan = checkPlan(calls, this.triedAt, now)!; // defined: a call waits
      if (plan.queues.length === 0) {
        await wf.sleep(plan.dueAt - now); // more than CHECK_SLACK_MS
        if (done()) return;
        continue;
      }
      // the same `now` as the plan's: the check covers exactly plan.queues and moves their triedAt on 30 s
      const r = await this.check(now, plan.queues);
      if (!r) continue;
      // the queues this check covered take its answer; the others keep theirs
      const found = [...this.unpolled.filter((u) => !r.checked.includes(u.taskQueue)), ...r.found].sort((a, b) =>
        a.taskQueue.localeCompare(b.taskQueue),
      );
      if (JSON.stringify(found) !== JSON.stringify(this.unpolled)) this.set(found);
    }
  }

  /** Runs started before the patch `queue-watch-due`: every waiting queue checked on one 30 s beat (their histories replay this). */
  private async runOnOneBeat(done: () => boolean): Promise<void> {
    for (;;) {
      await wf.condition(() => this.waiting.size > 0 || done());
      if (done()) return;
      await wf.sleep(QUEUE_CHECK_MS);
      if (done()) return;
      const r = await this.check(Date.now());
      const found = r ? r.found : this.unpolled;
      if (JSON.stringify(found) !== JSON.stringify(this.unpolled)) this.set(found);
    }
  }
}
