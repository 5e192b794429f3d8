/**
 * Fault injection for the failure tests (and for drills on a real deployment): a worker that
 * reaches a named point kills itself with SIGKILL, as a preempted machine would, mid-stage.
 *
 *   DURABLE_RL_CRASH_AT    comma-separated points, each `<point>` or `<point>@<step>`
 *                          (points: rollout, reward, advantages, learner, commit, commit-mid, eval)
 *   DURABLE_RL_CRASH_ONCE  a directory: each point crashes only once across all processes (a
 *                          marker file `<point>@<step>` is created, exclusively, just before the
 *                          kill), so the restarted worker gets past it
 *
 * Unset in normal use: then `crashPoint` is a no-op.
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
