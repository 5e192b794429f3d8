/**
 * Tool arguments against their JSON schema: the check that turns a call with wrong arguments into
 * a `malformed` turn whose error names the argument and what was wrong, instead of a tool crash.
 * The schema subset is the reward library's JSON-schema-lite (`checkSchema` of ../reward/format.ts:
 * type, required, properties, additionalProperties, items, enum, min/max); other keywords of a
 * tool's schema (`description`, `title`) are ignored.
 */
import { checkSchema, type LiteSchema } from '../reward/format.js';
import type { ToolSpec } from './types.js';

/** The parameter names of a tool in declaration order (the order of `properties`). */
export function parameterNames(spec: ToolSpec): string[] {
  const props = spec.parameters.properties;
  return props !== null && typeof props === 'object' ? Object.keys(props) : [];
}

/** The JSON type a parameter declares (its first type when it lists several), or undefined. */
export function parameterType(spec: ToolSpec, name: string): string | undefined {
  const props = spec.parameters.properties as Record<string, { type?: string | string[] }> | undefined;
  const t = props?.[name]?.type;
  return Array.isArray(t) ? t[0] : t;
}

/**
 * What is wrong with a call's arguments, in words (`calc: argument "expression" must be string,
 * got integer`), or null when they match the tool's schema.
 */
export function argumentError(spec: ToolSpec, args: Record<string, unknown>): string | null {
  const failed = checkSchema(args, spec.parameters as LiteSchema, '$').filter((c) => !c.ok);
  if (failed.length === 0) return null;
  const what = failed.map(({ path, what }) => {
    const arg = path === '$' ? 'arguments' : `argument "${path.replace(/^\$\./, '')}"`;
    if (what === 'required') return `${arg} is missing`;
    if (what === 'additionalProperties false') return `${arg} is not a parameter (${parameterNames(spec).join(', ') || 'none'})`;
    const type = /^type (\S+) \(got (\S+)\)$/.exec(what);
    if (type) return `${arg} must be ${type[1]}, got ${type[2]}`;
    return `${arg} fails ${what}`;
  });
  return `${spec.name}: ${what.join('; ')}`;
}
