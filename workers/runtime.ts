/**
 * Routes the Temporal SDK's own logs (worker lifecycle, workflow and activity loggers) into the
 * project's pino logger, so one process writes one log format, and, when asked, serves the SDK's
 * metrics (pollers, task slots, schedule-to-start and execution latencies, failures, sticky cache;
 * https://docs.temporal.io/references/sdk-metrics) for Prometheus at `http://ADDRESS/metrics`.
 * Installed once per process, before the first worker connection.
 */
import { Runtime, type LogLevel, type LogMetadata } from '@temporalio/worker';
import { logger } from '../activities/common/log.js';

let installed = false;

/** Where the Prometheus exporter of this process listens, from the environment (empty: none). */
export const METRICS_ENV = 'DURABLE_RL_METRICS_ADDRESS';

/**
 * `PORT` (every interface: 0.0.0.0:PORT, what a Prometheus on another host scrapes) or
 * `HOST:PORT` as the exporter's bind address; an Error naming `what` otherwise.
 */
export function metricsBindAddress(value: string, what: string): string {
  const m = /^(?:(.+):)?(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port < 1 || port > 65_535)
    throw new Error(`${what} must be PORT or HOST:PORT (e.g. 9464 or 127.0.0.1:9464), got ${JSON.stringify(value)}`);
  return `${m[1] ?? '0.0.0.0'}:${port}`;
}

export interface RuntimeOptions {
  /** Prometheus exporter bind address (metricsBindAddress's forms); default $DURABLE_RL_METRICS_ADDRESS, else no exporter. */
  metrics?: string;
}

/** Installs the SDK runtime of this process (once: later calls, and their options, are ignored). */
export function installRuntime(opts: RuntimeOptions = {}): void {
  if (installed) return;
  installed = true;
  const metricsValue = opts.metrics ?? process.env[METRICS_ENV];
  const bindAddress = metricsValue ? metricsBindAddress(metricsValue, opts.metrics ? '--metrics' : METRICS_ENV) : undefined;
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
    telemetryOptions: {
      logging: { filter: { core: 'WARN', other: 'ERROR' }, forward: {} },
      ...(bindAddress ? { metrics: { prometheus: { bindAddress } } } : {}),
    },
  });
  if (bindAddress) log.info({ bindAddress }, `Prometheus metrics at http://${bindAddress}/metrics`);
}
