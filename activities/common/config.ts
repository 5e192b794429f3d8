/**
 * Configuration validation. Every configuration object of durable-rl is a zod schema whose
 * `.default()`s are the one place its defaults live; `parseConfig` turns zod's issues into one
 * message that names each bad field by its dotted path and says what was expected.
 */
import { z } from 'zod';

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly what: string,
    readonly issues: { path: string; message: string }[],
  ) {
    super(`invalid ${what}: ${issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')}`);
  }
}

/** Validates `input` against `schema`, filling defaults; throws ConfigError naming every bad field. */
export function parseConfig<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const r = schema.safeParse(input);
  if (r.success) return r.data;
  throw new ConfigError(
    what,
    r.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message })),
  );
}

export { z };
