/**
 * What a workflow's history says about its activity calls, for tests that check who ran what:
 * one record per call (scheduled event), with the attempt that closed it, the worker identity that
 * ran that attempt, and how it closed. Temporal records a call's started event only for its last
 * attempt, so `attempt - 1` is the number of attempts that failed before it (retries). And the
 * history as a replay fixture (`recordFixture`, test/unit/replay.test.ts).
 */
import { writeFileSync } from 'node:fs';
import type { WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';

type HistoryEvent = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number];

export interface ActivityCall {
  activityId: string;
  type: string;
  /** The call's argument (activities take one input object), decoded. */
  input: unknown;
  /** The call's Web UI summary (stage · step · shard): the calls of one stage of one step share it. */
  summary: string;
  /** Wall time the call was scheduled and closed (ms since the epoch; closed undefined while open). */
  scheduledAt: number;
  closedAt?: number;
  /** The attempt that closed the call (1 = first try), and the worker that ran it. */
  attempt: number;
  identity: string;
  outcome: 'completed' | 'failed' | 'timed-out' | 'open';
  /** ApplicationFailure type or timeout type of a call that did not complete. */
  failureType?: string;
}

const timeOf = (e: HistoryEvent) => Number(e.eventTime?.seconds ?? 0) * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6);

/** The Web UI summary a scheduled event carries (a JSON string payload), '' when none. */
function summaryOf(e: HistoryEvent): string {
  const data = e.userMetadata?.summary?.data;
  if (!data) return '';
  try {
    return String(JSON.parse(Buffer.from(data).toString('utf8')));
  } catch {
    return '';
  }
}

/** Every activity call of the history, in schedule order. */
export function activityCalls(events: readonly HistoryEvent[]): ActivityCall[] {
  const calls = new Map<number, ActivityCall>();
  for (const e of events) {
    const id = Number(e.eventId);
    const s = e.activityTaskScheduledEventAttributes;
    if (s) {
      calls.set(id, {
        activityId: s.activityId ?? '',
        type: s.activityType?.name ?? '',
        input: s.input?.payloads?.[0] ? defaultPayloadConverter.fromPayload(s.input.payloads[0]) : undefined,
        summary: summaryOf(e),
        scheduledAt: timeOf(e),
        attempt: 0,
        identity: '',
        outcome: 'open',
      });
      continue;
    }
    const started = e.activityTaskStartedEventAttributes;
    if (started) {
      const c = calls.get(Number(started.scheduledEventId));
      if (c) Object.assign(c, { attempt: started.attempt ?? 1, identity: started.identity ?? '' });
      continue;
    }
    const done = e.activityTaskCompletedEventAttributes;
    const failed = e.activityTaskFailedEventAttributes;
    const timedOut = e.activityTaskTimedOutEventAttributes;
    const closing = done ?? failed ?? timedOut;
    if (!closing) continue;
    const c = calls.get(Number(closing.scheduledEventId));
    if (!c) continue;
    c.closedAt = timeOf(e);
    if (done) c.outcome = 'completed';
    else if (failed) {
      c.outcome = 'failed';
      c.failureType = failed.failure?.applicationFailureInfo?.type ?? failed.failure?.message ?? '';
    } else {
      c.outcome = 'timed-out';
      c.failureType = String(timedOut!.failure?.timeoutFailureInfo?.timeoutType ?? '');
    }
  }
  return [...calls.values()];
}

/** The history's signals and Updates: what a user (or a script) sent the run. */
export function userActions(events: readonly HistoryEvent[]): number {
  return events.filter((e) => e.workflowExecutionSignaledEventAttributes || e.workflowExecutionUpdateAcceptedEventAttributes).length;
}

/**
 * With DURABLE_RL_RECORD_FIXTURES=1: the execution's history written as the replay fixture
 * test/fixtures/histories/`name`.json (replayed by test/unit/replay.test.ts); otherwise nothing.
 */
export async function recordFixture(handle: WorkflowHandle, name: string): Promise<void> {
  if (process.env.DURABLE_RL_RECORD_FIXTURES !== '1') return;
  const history = await handle.fetchHistory();
  writeFileSync(new URL(`../fixtures/histories/${name}.json`, import.meta.url), JSON.stringify(history));
}

/**
 * The text of every payload the history's markers carry: patch ids (`queue-watch`, …) and local
 * activity results (`unpolledQueues`' answer names the queues), for tests that check what a
 * history holds.
 */
export function markerTexts(events: readonly HistoryEvent[]): string[] {
  return events.flatMap((e) =>
    Object.values(e.markerRecordedEventAttributes?.details ?? {}).flatMap((p) =>
      (p.payloads ?? []).map((x) => Buffer.from(x.data ?? new Uint8Array()).toString('utf8')),
    ),
  );
}
