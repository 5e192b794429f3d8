/**
 * The control of a training run, as pure functions (workflow code; unit-tested without a server):
 *
 * - `controlOutcome`: what pause / resume / stop / retry do in the run's present state — refused
 *   with a reason (the Update's validator throws it), or the step at which it takes effect and a
 *   sentence for the CLI (the Update's answer).
 * - `classifyFailure`: what an activity call that gave up means for the run — `retrying` (an
 *   outage outlasted the call's retry window: the run shows blocked and calls the stage again, so
 *   it goes on by itself when the cause clears) or `needs-user` (an error no retry can fix: the run
 *   shows blocked until `retry` or `stop`). Never "failed".
 */
import { ActivityFailure, ApplicationFailure, CancelledFailure, TimeoutFailure, TimeoutType } from '@temporalio/common';

/**
 * The failure type of an activity attempt that failed after the call had been retrying for its
 * retry window (activities/run/stage.ts throws it, non-retryable, with the last error's message).
 */
export const BLOCKED_FAILURE_TYPE = 'StageBlocked';

export type ControlAction = 'pause' | 'resume' | 'stop' | 'retry';

/** What the Updates answer: the step at which the action takes effect, and a sentence saying so. */
export interface ControlResult {
  action: ControlAction;
  /**
   * pause: the first step that waits for resume; stop: the first step that never runs (the run
   * ends with this many steps committed); resume: the step the run goes on with; retry: the
   * blocked step whose stage is called again.
   */
  step: number;
  message: string;
}

/** What a control decision depends on. */
export interface ControlState {
  /** The step the run trains next (the steps before it are committed). */
  nextStep: number;
  totalSteps: number;
  /** Step `nextStep` is being trained (its stages run; it is committed before a pause or stop takes effect). */
  inStep: boolean;
  /** Holding between steps until resume. */
  paused: boolean;
  /** A pause that takes effect after the running step (or before `pauseAt`). */
  pauseRequested: boolean;
  /** The step a pause requested for a later step (`pause --step N`) takes effect at; absent: after the running step. */
  pauseAt?: number;
  stopRequested: boolean;
  /** The run's blocked calls (empty: not blocked). */
  blocked: readonly Pick<BlockedCall, 'stage' | 'kind'>[];
  /** The run has ended (completed or stopped). */
  finished: boolean;
}

/** An activity call that gave up and is waiting: the cause the run's current details show. */
export interface BlockedCall {
  /** The stage (init, rollout, reward, reference, advantages, learner, commit, eval) and the call's Web UI summary (stage · step · shard). */
  stage: string;
  summary: string;
  /** retrying: called again until the cause clears; needs-user: waits for retry or stop. */
  kind: 'retrying' | 'needs-user';
  /** The failure's type (ApplicationFailure type, or the timeout) and its message. */
  type: string;
  error: string;
  /** Workflow time the call first gave up (ms since the epoch). */
  since: number;
  /** Calls of the stage so far that gave up. */
  calls: number;
}

/** Refused: the reason is the message (the Update's validator throws it; the CLI prints it). */
export class ControlRefused extends Error {
  override readonly name = 'ControlRefused';
}

/**
 * What `action` does now: the step it takes effect at and a sentence, or ControlRefused with the
 * reason it is not a valid transition. `beforeStep` (pause only): pause before that later step
 * instead of after the running one — a step no worker has started, and not past the last step.
 */
export function controlOutcome(s: ControlState, action: ControlAction, beforeStep?: number): ControlResult {
  const refuse = (why: string): never => {
    throw new ControlRefused(`cannot ${action}: ${why}`);
  };
  if (s.finished) refuse('the run has ended');
  const afterRunning = s.inStep ? s.nextStep + 1 : s.nextStep;
  if (beforeStep !== undefined && action !== 'pause') refuse('only pause takes a step');
  const blockedText = s.blocked.length > 0 ? ` (it is blocked in ${[...new Set(s.blocked.map((b) => b.stage))].join(', ')})` : '';
  switch (action) {
    case 'pause':
      if (s.stopRequested) refuse('a stop is pending');
      if (s.paused) refuse(`already paused before step ${s.nextStep} (durable-rl resume goes on)`);
      if (s.pauseRequested) refuse(`a pause is already requested: the run pauses before step ${s.pauseAt ?? afterRunning}`);
      if (beforeStep !== undefined && beforeStep !== afterRunning) {
        if (!Number.isInteger(beforeStep)) refuse(`the step must be a whole number, got ${beforeStep}`);
        if (beforeStep < afterRunning)
          refuse(
            `step ${beforeStep} ${s.inStep && beforeStep === s.nextStep ? 'is running' : 'is committed'}: the earliest step a pause can precede is ${afterRunning}`,
          );
        if (beforeStep >= s.totalSteps) refuse(`the run's last step is ${s.totalSteps - 1}: it ends before step ${beforeStep}`);
        return {
          action,
          step: beforeStep,
          message: `pauses before step ${beforeStep}: steps ${afterRunning}..${beforeStep - 1} run first`,
        };
      }
      return {
        action,
        step: afterRunning,
        message: s.inStep
          ? `pauses before step ${afterRunning}: step ${s.nextStep} finishes and is committed first${blockedText}`
          : `pauses before step ${afterRunning}`,
      };
    case 'resume':
      if (s.stopRequested) refuse('a stop is pending');
      if (!s.paused && !s.pauseRequested) refuse('the run is not paused');
      return s.paused
        ? { action, step: s.nextStep, message: `goes on with step ${s.nextStep}` }
        : {
            action,
            step: afterRunning,
            message: `pause request withdrawn: ${s.pauseAt !== undefined ? `step ${s.pauseAt} follows` : `step ${afterRunning} follows`} without a pause`,
          };
    case 'stop':
      if (s.stopRequested) refuse('a stop is already requested');
      if (s.blocked.length > 0)
        return {
          action,
          step: s.nextStep,
          message: `ends now with ${s.nextStep} steps committed: the blocked ${s.inStep ? `step ${s.nextStep}` : 'stage'} is not finished${blockedText}`,
        };
      if (s.paused) return { action, step: s.nextStep, message: `ends now with ${s.nextStep} steps committed` };
      return {
        action,
        step: afterRunning,
        message: s.inStep
          ? `ends after step ${s.nextStep} is committed (${afterRunning} steps committed)`
          : `ends before step ${afterRunning} (${afterRunning} steps committed)`,
      };
    case 'retry': {
      if (s.blocked.length === 0) refuse('the run is not blocked: nothing to retry');
      if (s.stopRequested) refuse('a stop is pending');
      const waiting = s.blocked.filter((b) => b.kind === 'needs-user');
      if (waiting.length === 0)
        refuse(
          `the blocked ${[...new Set(s.blocked.map((b) => b.stage))].join(', ')} is retrying by itself (an outage: the next attempt comes within workflow.retryIntervalCapSeconds)`,
        );
      const stages = [...new Set(waiting.map((b) => b.stage))].join(', ');
      return {
        action,
        step: s.nextStep,
        message: `calls the blocked ${stages} again now${s.inStep ? ` (step ${s.nextStep})` : ''}`,
      };
    }
  }
}

/** The first `max` characters of a message, on one line. */
function oneLine(text: string, max = 400): string {
  const t = text.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

const TIMEOUT_NAMES: Record<string, string> = {
  [TimeoutType.START_TO_CLOSE]: 'start-to-close',
  [TimeoutType.SCHEDULE_TO_START]: 'schedule-to-start',
  [TimeoutType.SCHEDULE_TO_CLOSE]: 'schedule-to-close',
  [TimeoutType.HEARTBEAT]: 'heartbeat',
};

/**
 * What an activity call's final failure means for the run (see the file comment); undefined for a
 * cancellation or anything that is not an activity failure (the caller rethrows those).
 */
export function classifyFailure(err: unknown): Pick<BlockedCall, 'kind' | 'type' | 'error'> | undefined {
  if (!(err instanceof ActivityFailure)) return undefined;
  const cause = err.cause;
  if (cause instanceof CancelledFailure) return undefined;
  if (cause instanceof ApplicationFailure) {
    if (cause.type === BLOCKED_FAILURE_TYPE) return { kind: 'retrying', type: cause.type, error: oneLine(cause.message) };
    // a retryable error whose attempts ran out (the limited attempts of runs started before version 2)
    if (!cause.nonRetryable) return { kind: 'retrying', type: cause.type ?? 'Error', error: oneLine(cause.message) };
    return { kind: 'needs-user', type: cause.type ?? 'Error', error: oneLine(cause.message) };
  }
  if (cause instanceof TimeoutFailure) {
    const name = TIMEOUT_NAMES[String(cause.timeoutType)] ?? 'activity';
    const last = cause.cause?.message ? `; last attempt: ${cause.cause.message}` : '';
    // the server reports a call that no worker started within its schedule-to-close as a schedule-to-start timeout
    const text =
      cause.timeoutType === TimeoutType.SCHEDULE_TO_START
        ? "no worker took the call within its schedule-to-close timeout: is a worker polling the stage's queue?"
        : cause.timeoutType === TimeoutType.SCHEDULE_TO_CLOSE
          ? `no attempt completed within the call's schedule-to-close timeout: no worker took it, or every attempt timed out${last}`
          : `${name} timeout${last}`;
    return { kind: 'retrying', type: `${name} timeout`, error: oneLine(text) };
  }
  return { kind: 'retrying', type: cause?.name ?? 'Error', error: oneLine(cause?.message ?? err.message) };
}

/**
 * True when a call ran out of its schedule-to-close window with no attempt having failed: no
 * worker took it in time, or its one attempt started so late that the window closed while it ran
 * (the server reports the first as a schedule-to-start or a schedule-to-close timeout, the second
 * as a schedule-to-close timeout; neither has a last failure). Either way the call waited in its
 * queue; whether that means no worker at all or workers busy with the run's other calls is for the
 * queue watch to say (queue-watch.ts `polledRecently`). A call whose attempts failed or timed out
 * (a crashing worker) carries its last failure and is not counted.
 */
export function timedOutWaiting(err: unknown): boolean {
  if (!(err instanceof ActivityFailure) || !(err.cause instanceof TimeoutFailure)) return false;
  const t = err.cause.timeoutType;
  return (t === TimeoutType.SCHEDULE_TO_START || t === TimeoutType.SCHEDULE_TO_CLOSE) && err.cause.cause === undefined;
}

/** Markdown lines of the current details for the blocked calls (none: no lines). */
export function blockedLines(blocked: readonly BlockedCall[], now: number): string[] {
  if (blocked.length === 0) return [];
  const minutes = (ms: number) => (ms < 60_000 ? `${Math.round(ms / 1000)} s` : `${(ms / 60_000).toFixed(1)} min`);
  return [
    '',
    '### Blocked',
    ...blocked.map(
      (b) =>
        `- **${b.stage}** (${b.summary}) for ${minutes(now - b.since)}, ${b.calls} call${b.calls === 1 ? '' : 's'} gave up: \`${b.type}\` ${b.error} — ${
          b.kind === 'retrying'
            ? 'retrying; the run goes on by itself when the cause clears'
            : 'retrying cannot fix this: fix the cause, then `durable-rl retry`, or `durable-rl stop`'
        }`,
    ),
    '',
  ];
}
