/**
 * Routes the Temporal SDK's own logs (worker lifecycle, workflow and activity loggers) into the
 * project's pino logger, so one process writes one log format. Installed once per process, before
 * the first worker connection.
 */
import { Runtime, type LogLevel, type LogMetadata } from '@temporalio/worker';
import { logger } from '../activities/common/log.js';

let installed = false;

export function installRuntime(): void {
  if (installed) return;
  installed = true;
  const log = logger('temporal');
  const at = (level: 'trace' | 'debug' | 'info' | 'warn' | 'error') => (message: string, meta?: LogMetadata) =>
    log[level](meta ?? {}, message);
  // A worker that polls only workflows or only activities is how durable-rl splits queues, not a problem.
  const expected = /^No (activities|workflows|Nexus services) registered/;
  const warn = at('warn');
  const debug = at('debug');
  const levels: Record<LogLevel, ReturnType<typeof at>> = {
    TRACE: at('trace'),
    DEBUG: debug,
    INFO: at('info'),
    WARN: (m, meta) => (expected.test(m) ? debug : warn)(m, meta),
    ERROR: at('error'),
  };
  Runtime.install({
    logger: {
      log: (level: LogLevel, message: string, meta?: LogMetadata) => levels[level](message, meta),
      trace: levels.TRACE,
      debug: levels.DEBUG,
      info: levels.INFO,
      warn: levels.WARN,
      error: levels.ERROR,
    },
    telemetryOptions: { logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} } },
  });
}
