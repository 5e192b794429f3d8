/**
 * The one logger factory of durable-rl.
 *
 * JSON lines (pino) everywhere, pretty-printed only when stderr is a TTY so that CI logs and log
 * shippers get machine-readable records. Level from `DURABLE_RL_LOG_LEVEL` (default `info`).
 */
import { pino, type Logger } from 'pino';

export type { Logger };

let root: Logger | undefined;

function makeRoot(): Logger {
  const level = process.env.DURABLE_RL_LOG_LEVEL ?? 'info';
  const pretty = process.stderr.isTTY && process.env.DURABLE_RL_LOG_FORMAT !== 'json';
  if (pretty) {
    return pino({
      level,
      transport: {
        target: 'pino-pretty',
        options: { destination: 2, colorize: true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname' },
      },
    });
  }
  return pino({ level, base: { pid: process.pid } }, pino.destination(2));
}

/** A child logger tagged with the component that owns it (`infra`, `store`, `worker:rollout`, ...). */
export function logger(component: string, bindings: Record<string, unknown> = {}): Logger {
  root ??= makeRoot();
  return root.child({ component, ...bindings });
}
