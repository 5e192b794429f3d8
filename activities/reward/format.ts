/**
 * Format rewards: does the completion have the shape the task asks for?
 *
 * - `format_tags`: required tags (`<think>...</think><answer>...</answer>` by default, the
 *   DeepSeek-R1 format reward), with configurable order, uniqueness, non-empty content and
 *   strictness (nothing outside the tags).
 * - `json_valid`: the completion (or its `<answer>` / fenced code block) is valid JSON, optionally
 *   conforming to a JSON-schema-lite: `type`, `required`, `properties`, `items`, `enum`,
 *   `additionalProperties: false`, `minItems`/`maxItems`, `minLength`/`maxLength`, `minimum`/`maximum`.
 *
 * Both return a pass/fail reward or, with `partialCredit`, the fraction of checks passed; each
 * check is also a component (0/1) so the step metrics show which one fails.
 */
import { z } from '../common/config.js';
import { extractTag } from './extract.js';
import { defineReward, type JsonValue, type RewardResult } from './types.js';

const passFail = {
  /** Reward when every check passes. */
  passReward: z.number().default(1),
  /** Reward when a check fails (without partial credit). */
  failReward: z.number().default(0),
  /** Give failReward + (passReward - failReward) * fraction of checks passed, instead of all-or-nothing. */
  partialCredit: z.boolean().default(false),
};

function verdict(o: { passReward: number; failReward: number; partialCredit: boolean }, checks: Record<string, boolean>): RewardResult {
  const entries = Object.entries(checks);
  const passed = entries.filter(([, ok]) => ok).length;
  const frac = entries.length === 0 ? 1 : passed / entries.length;
  const reward = o.partialCredit ? o.failReward + (o.passReward - o.failReward) * frac : frac === 1 ? o.passReward : o.failReward;
  return { reward, components: Object.fromEntries(entries.map(([k, ok]) => [k, ok ? 1 : 0])) };
}

// ---------------------------------------------------------------------------------------------
// format_tags

const TAG_NAME = /^[A-Za-z_][\w.-]*$/;

export const FormatTagsOptions = z.strictObject({
  /** Tags that must each enclose a part of the completion, in this order when `order` is set. */
  tags: z.array(z.string().regex(TAG_NAME, 'a tag name such as "think"')).min(1).default(['think', 'answer']),
  /** The tags must appear in the listed order (each closed before the next opens). */
  order: z.boolean().default(true),
  /** Each tag must open and close exactly once. */
  unique: z.boolean().default(true),
  /** Each tag must hold some non-whitespace text. */
  nonEmpty: z.boolean().default(true),
  /** Nothing but whitespace outside the tags (R1's `^<think>.*</think>\s*<answer>.*</answer>$`). */
  strict: z.boolean().default(false),
  /**
   * When the prompt ends with the first tag's opening (`...<think>` pre-filled by the chat
   * template), the completion is read as if it started with it.
   */
  openTagInPrompt: z.boolean().default(true),
  ...passFail,
});
export type FormatTagsOptions = z.output<typeof FormatTagsOptions>;

interface Span {
  open: number;
  close: number;
  end: number;
  inner: string;
}

/** Every `<tag>...</tag>` pair, left to right (an opening pairs with the next closing). */
function spans(text: string, tag: string): { pairs: Span[]; opens: number; closes: number } {
  const open = `<${tag}>`;
  const close = `</${tag}>`;
  const pairs: Span[] = [];
  let i = 0;
  while (true) {
    const a = text.indexOf(open, i);
    if (a < 0) break;
    const b = text.indexOf(close, a + open.length);
    if (b < 0) break;
    pairs.push({ open: a, close: b, end: b + close.length, inner: text.slice(a + open.length, b) });
    i = b + close.length;
  }
  return { pairs, opens: text.split(open).length - 1, closes: text.split(close).length - 1 };
}

/** The format checks of a completion under the options (exported for other rewards). */
export function tagChecks(completion: string, prompt: string, o: FormatTagsOptions): Record<string, boolean> {
  let text = completion;
  const first = `<${o.tags[0]}>`;
  if (o.openTagInPrompt && prompt.trimEnd().endsWith(first) && !completion.trimStart().startsWith(first)) text = first + completion;
  const found = o.tags.map((t) => spans(text, t));
  const checks: Record<string, boolean> = {
    tags_present: found.every((f) => f.pairs.length > 0),
  };
  if (o.unique) checks.tags_unique = found.every((f) => f.opens === 1 && f.closes === 1);
  if (o.order) {
    let ok = checks.tags_present!;
    for (let k = 1; ok && k < found.length; k++) ok = found[k - 1]!.pairs[0]!.end <= found[k]!.pairs[0]!.open;
    checks.tags_ordered = ok;
  }
  if (o.nonEmpty) checks.tags_nonempty = checks.tags_present! && found.every((f) => f.pairs[0]!.inner.trim() !== '');
  if (o.strict) {
    let ok = checks.tags_present!;
    if (ok) {
      const sorted = found.map((f) => f.pairs[0]!).sort((a, b) => a.open - b.open);
      let outside = text.slice(0, sorted[0]!.open);
      for (let k = 0; k < sorted.length; k++) {
        const next = sorted[k + 1];
        if (next && next.open < sorted[k]!.end) ok = false; // overlapping / nested
        outside += text.slice(sorted[k]!.end, next ? next.open : text.length);
      }
      ok &&= outside.trim() === '';
    }
    checks.tags_strict = ok;
  }
  return checks;
}

export const formatTags = defineReward({
  name: 'format_tags',
  description: 'required tags (default <think> then <answer>) present, unique, ordered, non-empty, optionally nothing outside',
  source: 'DeepSeek-R1 format reward (DeepSeek-AI 2025)',
  optionsSchema: FormatTagsOptions,
  create: (o) => ({
    score: (s) => verdict(o, tagChecks(s.completion, s.prompt, o)),
  }),
});

// ---------------------------------------------------------------------------------------------
// json_valid

/** A JSON-schema-lite: the subset of JSON Schema that reward checks need. */
export interface LiteSchema {
  type?: LiteType | LiteType[];
  required?: string[];
  properties?: Record<string, LiteSchema>;
  additionalProperties?: boolean;
  items?: LiteSchema;
  enum?: JsonValue[];
  minItems?: number;
  maxItems?: number;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
}
type LiteType = 'object' | 'array' | 'string' | 'number' | 'integer' | 'boolean' | 'null';

const liteType = z.enum(['object', 'array', 'string', 'number', 'integer', 'boolean', 'null']);
const jsonValue: z.ZodType<JsonValue> = z.lazy(() =>
  z.union([z.null(), z.boolean(), z.number(), z.string(), z.array(jsonValue), z.record(z.string(), jsonValue)]),
);
export const LiteSchemaZ: z.ZodType<LiteSchema> = z.lazy(() =>
  z.strictObject({
    type: z.union([liteType, z.array(liteType).min(1)]).optional(),
    required: z.array(z.string()).optional(),
    properties: z.record(z.string(), LiteSchemaZ).optional(),
    additionalProperties: z.boolean().optional(),
    items: LiteSchemaZ.optional(),
    enum: z.array(jsonValue).min(1).optional(),
    minItems: z.number().int().nonnegative().optional(),
    maxItems: z.number().int().nonnegative().optional(),
    minLength: z.number().int().nonnegative().optional(),
    maxLength: z.number().int().nonnegative().optional(),
    minimum: z.number().optional(),
    maximum: z.number().optional(),
  }),
);

function typeOf(v: unknown): LiteType {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v as LiteType;
}

/** Deep equality of JSON values (object key order ignored). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => jsonEqual(x, bb[i]));
  }
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  return (
    ka.length === kb.length &&
    ka.every((k) => Object.hasOwn(b as object, k) && jsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
  );
}

/** Validates `value` against a lite schema; returns every check with its JSON path and outcome. */
export function checkSchema(value: unknown, schema: LiteSchema, path = '$'): { path: string; ok: boolean; what: string }[] {
  const out: { path: string; ok: boolean; what: string }[] = [];
  const t = typeOf(value);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    const ok = types.includes(t) || (t === 'integer' && types.includes('number'));
    out.push({ path, ok, what: `type ${types.join('|')} (got ${t})` });
    if (!ok) return out; // nested checks of a wrong type are meaningless
  }
  if (schema.enum) out.push({ path, ok: schema.enum.some((e) => jsonEqual(e, value)), what: 'enum' });
  if (typeof value === 'string') {
    const n = [...value].length;
    if (schema.minLength !== undefined) out.push({ path, ok: n >= schema.minLength, what: `minLength ${schema.minLength}` });
    if (schema.maxLength !== undefined) out.push({ path, ok: n <= schema.maxLength, what: `maxLength ${schema.maxLength}` });
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined) out.push({ path, ok: value >= schema.minimum, what: `minimum ${schema.minimum}` });
    if (schema.maximum !== undefined) out.push({ path, ok: value <= schema.maximum, what: `maximum ${schema.maximum}` });
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined) out.push({ path, ok: value.length >= schema.minItems, what: `minItems ${schema.minItems}` });
    if (schema.maxItems !== undefined) out.push({ path, ok: value.length <= schema.maxItems, what: `maxItems ${schema.maxItems}` });
    if (schema.items) value.forEach((v, i) => out.push(...checkSchema(v, schema.items!, `${path}[${i}]`)));
  }
  if (t === 'object') {
    const obj = value as Record<string, unknown>;
    for (const k of schema.required ?? []) out.push({ path: `${path}.${k}`, ok: Object.hasOwn(obj, k), what: 'required' });
    for (const [k, sub] of Object.entries(schema.properties ?? {})) {
      if (Object.hasOwn(obj, k)) out.push(...checkSchema(obj[k], sub, `${path}.${k}`));
    }
    if (schema.additionalProperties === false) {
      const allowed = new Set(Object.keys(schema.properties ?? {}));
      for (const k of Object.keys(obj))
        if (!allowed.has(k)) out.push({ path: `${path}.${k}`, ok: false, what: 'additionalProperties false' });
    }
  }
  return out;
}

/** The JSON text of a completion: `<answer>` content, a fenced code block, or all of it. */
export function jsonCandidate(
  completion: string,
  sources: readonly ('answer_tag' | 'code_block' | 'whole')[],
  answerTag: string,
): string | undefined {
  for (const src of sources) {
    if (src === 'answer_tag') {
      const t = extractTag(completion, answerTag);
      if (t !== undefined) return t;
    } else if (src === 'code_block') {
      const blocks = [...completion.matchAll(/```(?:json|JSON)?[ \t]*\n([\s\S]*?)```/g)];
      if (blocks.length > 0) return blocks[blocks.length - 1]![1]!;
    } else if (completion.trim() !== '') {
      return completion;
    }
  }
  return undefined;
}

export const JsonValidOptions = z.strictObject({
  /** Where the JSON is: `<answer>` content, the last fenced code block, the whole completion; tried in order. */
  extract: z
    .array(z.enum(['answer_tag', 'code_block', 'whole']))
    .min(1)
    .default(['answer_tag', 'code_block', 'whole']),
  /** Tag name for `answer_tag`. */
  answerTag: z.string().min(1).default('answer'),
  /** A JSON-schema-lite every completion must satisfy. */
  schema: LiteSchemaZ.optional(),
  /** Metadata key of a per-prompt schema, used when `schema` is not set (absent key: syntax check only). */
  schemaKey: z.string().min(1).default('jsonSchema'),
  ...passFail,
});
export type JsonValidOptions = z.output<typeof JsonValidOptions>;

export const jsonValid = defineReward({
  name: 'json_valid',
  description: 'the completion holds valid JSON, optionally matching a JSON-schema-lite (required keys, types)',
  source: 'structured-output format rewards (e.g. ToolRL format reward, Qian et al. 2025)',
  optionsSchema: JsonValidOptions,
  create: (o) => ({
    score(s) {
      let schema = o.schema;
      const fromMeta = s.metadata?.[o.schemaKey];
      if (!schema && fromMeta !== undefined) {
        const r = LiteSchemaZ.safeParse(fromMeta);
        if (!r.success) {
          const i = r.error.issues[0]!;
          throw new Error(
            `metadata.${o.schemaKey} of prompt ${s.promptId} is not a JSON-schema-lite: ${i.path.join('.') || '(root)'}: ${i.message}`,
          );
        }
        schema = r.data;
      }
      const text = jsonCandidate(s.completion, o.extract, o.answerTag);
      let parsed: unknown;
      let ok = text !== undefined;
      if (ok) {
        try {
          parsed = JSON.parse(text!);
        } catch {
          ok = false;
        }
      }
      if (!schema) return verdict(o, { json_parsed: ok });
      if (!ok)
        return { ...verdict({ ...o, partialCredit: false }, { json_parsed: false }), components: { json_parsed: 0, json_schema: 0 } };
      const checks = checkSchema(parsed, schema);
      const passed = checks.filter((c) => c.ok).length;
      const frac = checks.length === 0 ? 1 : passed / checks.length;
      const reward = o.partialCredit ? o.failReward + (o.passReward - o.failReward) * frac : frac === 1 ? o.passReward : o.failReward;
      return { reward, components: { json_parsed: 1, json_schema: frac } };
    },
  }),
});
