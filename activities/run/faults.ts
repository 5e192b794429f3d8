/**
 * Fault injection for the failure tests (and for drills on a real deployment): a worker that
 * reaches a named point kills itself with SIGKILL, as a preempted machine would, mid-stage.
 *
 *   DURABLE_RL_CRASH_AT    comma-separated points, each `<point>` or `<point>@<step>`
 *                          (points: rollout, episode (mid-episode: after a rollout shard recorded a
 *                          turn and some episode has turns to go), reward, advantages, learner,
 *                          commit, commit-mid, eval)
 *   DURABLE_RL_CRASH_ONCE  a directory: each point crashes only once across all processes (a
 *                          marker file `<point>@<step>` is created, exclusively, just before the
 *                          kill), so the restarted worker gets past it
 *   DURABLE_RL_SLOW_AT     comma-separated `<point>:<ms>` or `<point>@<step>:<ms>`: a worker that
 *                          reaches the point waits that long first, as an overloaded machine would
 *                          (`slowPoint`; e.g. to catch a worker mid-activity when it is drained)
 *
 * Unset in normal use: then `crashPoint` and `slowPoint` are no-ops.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function crashPoint(point: string, step?: number): void {
  const want = process.env.DURABLE_RL_CRASH_AT;
  if (!want) return;
  const hit = want
    .split(',')
    .map((s) => s.trim())
    .find((spec) => {
      const [name, at] = spec.split('@');
      return name === point && (at === undefined || step === Number(at));
    });
  if (!hit) return;
  const onceDir = process.env.DURABLE_RL_CRASH_ONCE;
  if (onceDir) {
    try {
      mkdirSync(onceDir, { recursive: true });
      // 'wx' fails if the marker exists: exactly one process crashes at each point.
      writeFileSync(join(onceDir, `${point}@${step ?? ''}`), `${process.pid}\n`, { flag: 'wx' });
    } catch {
      return;
    }
  }
  process.kill(process.pid, 'SIGKILL');
}

/**
 * Waits the milliseconds `DURABLE_RL_SLOW_AT` gives for `point` (at `step`), or returns at once.
 * The wait ends early when `signal` aborts (the activity is cancelled, e.g. its worker shut down
 * past its grace period), rejecting with the signal's reason as any cancelled engine call does.
 */
export async function slowPoint(point: string, step: number | undefined, signal: AbortSignal): Promise<void> {
  const want = process.env.DURABLE_RL_SLOW_AT;
  if (!want) return;
  const hit = want
    .split(',')
    .map((s) => s.trim().split(':'))
    .find(([spec]) => {
      const [name, at] = spec!.split('@');
      return name === point && (at === undefined || step === Number(at));
    });
  const ms = hit ? Number(hit[1]) : 0;
  if (!(ms > 0)) return;
  signal.throwIfAborted();
  await new Promise<void>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', abort);
    };
    const abort = () => {
      done();
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      done();
      resolve();
    }, ms);
    signal.addEventListener('abort', abort, { once: true });
  });
}
