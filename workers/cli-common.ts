/** What the `durable-rl` commands share: the usage error, output, and where Temporal is. */
import { up } from '../infra/index.js';
import { temporalConfig, temporalEnv, type TemporalConfig } from './temporal.js';

/** A bad command line (or an unknown job): one line on stderr, exit code 2. */
export class UsageError extends Error {}

export const say = (line: string) => process.stdout.write(`${line}\n`);

/** Temporal from the environment (DURABLE_RL_TEMPORAL_*), else the local dev server (started if needed). */
export async function resolveTemporal(): Promise<TemporalConfig> {
  const env = temporalEnv();
  if (env.address) return temporalConfig(env);
  const e = await up({ components: ['temporal'] });
  return temporalConfig({ address: e.temporal.address, namespace: e.temporal.namespace, uiUrl: e.temporal.uiUrl || undefined });
}

/** A positive integer option (`--records 40`), or `dflt` when absent. */
export function int(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${name} must be a positive integer, got "${v}"`);
  return n;
}

/** A non-negative integer option (`--step 0`), or undefined when absent. */
export function index(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 0) throw new UsageError(`--${name} must be a non-negative integer, got "${v}"`);
  return n;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The innermost message of an error and its causes (a WorkflowFailedError's cause says what failed). */
export function causeMessage(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let i = 0; e && i < 6; i++) {
    const m = e instanceof Error ? e.message : String(e);
    if (m && !parts.includes(m)) parts.push(m);
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(': ');
}
