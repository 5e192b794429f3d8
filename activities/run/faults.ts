import { writeFileSync } from 'node:fs';

/**
 * Fault injection for the failure tests: when DURABLE_RL_CRASH_AT names this point
 * (`<point>` or `<point>@<step>`), the process kills itself with SIGKILL — as a preempted machine
 * would — the first time it gets here. DURABLE_RL_CRASH_ONCE names a marker file: the crash happens
 * only if the file does not exist yet (it is created just before), so the restarted worker goes on.
 * Unset in normal use: then this is a no-op.
 */
export function crashPoint(point: string, step?: number): void {
  const want = process.env.DURABLE_RL_CRASH_AT;
  if (!want) return;
  const [name, at] = want.split('@');
  if (name !== point || (at !== undefined && step !== Number(at))) return;
  const marker = process.env.DURABLE_RL_CRASH_ONCE;
  if (marker) {
    try {
      // 'wx' fails if the file exists, so exactly one process crashes.
      writeFileSync(marker, `${process.pid} ${point}\n`, { flag: 'wx' });
    } catch {
      return;
    }
  }
  process.kill(process.pid, 'SIGKILL');
}
