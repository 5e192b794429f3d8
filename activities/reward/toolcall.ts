/**
 * Tool-call reward, after ToolRL (Qian et al. 2025, "ToolRL: Reward is All Tool Learning Needs").
 *
 * R = R_format + R_correct, with R_format in {0, formatReward} and R_correct in [correctMin,
 * correctMax] (ToolRL: {0, 1} and [-3, 3]). R_correct decomposes the comparison of the predicted
 * calls P with the ground-truth calls G into three levels:
 *
 *   r_name  = |N_G ∩ N_P| / |N_G ∪ N_P|                 tool names, as multisets      ∈ [0, 1]
 *   r_param = Σ_{g∈G} |keys(g) ∩ keys(p(g))| / |keys(g) ∪ keys(p(g))|   parameter names ∈ [0, |G|]
 *   r_value = Σ_{g∈G} Σ_{k∈keys(g)} 1[g[k] = p(g)[k]]   parameter values              ∈ [0, Σ|keys(g)|]
 *
 * where p(g) is the predicted call matched to g; the matching pairs calls of the same tool name
 * and maximises r_param + r_value (the Hungarian algorithm, ToolRL's "optimal matching"). With
 * S_max = 1 + |G| + Σ|keys(g)|: R_correct = correctMin + (correctMax - correctMin) · (r_name + r_param + r_value) / S_max.
 * Identical call lists, including two empty ones, get correctMax.
 *
 * Predicted calls come from `sample.toolCalls` when the rollout recorded them, else from
 * `<tool_call>` blocks in the completion (a JSON object, a JSON array, or one JSON object per line,
 * each `{ "name": ..., "arguments": {...} }`; `parameters` is accepted for `arguments`, and
 * `arguments` may be a JSON string as in OpenAI's API). Ground truth comes from
 * `metadata[expectedKey]` or, failing that, the reference (a JSON array or `<tool_call>` blocks).
 */
import { z } from '../common/config.js';
import { jsonEqual } from './format.js';
import { defineReward, referencesOf, type RewardResult, type RewardSample, type ToolCall } from './types.js';

export const ToolCallOptions = z
  .strictObject({
    /** Where the predicted calls come from: `sample` (rollout-recorded), `completion` (`<tool_call>` blocks), `auto` (sample if present). */
    callsFrom: z.enum(['auto', 'sample', 'completion']).default('auto'),
    /** Tag name of tool-call blocks in the completion. */
    toolCallTag: z.string().min(1).default('tool_call'),
    /** Metadata key holding the ground-truth calls (an array of { name, arguments }). */
    expectedKey: z.string().min(1).default('toolCalls'),
    /** Value comparison: `exact` JSON equality, or `loose` (strings trimmed and case-folded, "3" equals 3). */
    valueMatch: z.enum(['exact', 'loose']).default('exact'),
    /** R_format when the format is right (ToolRL: 1; 0 turns the format term off). */
    formatReward: z.number().nonnegative().default(1),
    /** The format needs a non-empty `<think>...</think>` before any tool call (ToolRL's format). */
    requireThink: z.boolean().default(true),
    /** Lowest R_correct (ToolRL: -3). */
    correctMin: z.number().default(-3),
    /** Highest R_correct (ToolRL: 3). */
    correctMax: z.number().default(3),
  })
  .refine((o) => o.correctMax > o.correctMin, { message: 'correctMax must be greater than correctMin', path: ['correctMax'] });
export type ToolCallOptions = z.output<typeof ToolCallOptions>;

/** Normalises one raw call object; undefined when it is not `{ name, arguments }`. */
export function asToolCall(raw: unknown): ToolCall | undefined {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return undefined;
  const r = raw as Record<string, unknown>;
  // OpenAI shape: { type: 'function', function: { name, arguments } }.
  if (r.function && typeof r.function === 'object') return asToolCall(r.function);
  if (typeof r.name !== 'string' || r.name === '') return undefined;
  let args = r.arguments ?? r.parameters ?? {};
  if (typeof args === 'string') {
    try {
      args = JSON.parse(args);
    } catch {
      return undefined;
    }
  }
  if (args === null || typeof args !== 'object' || Array.isArray(args)) return undefined;
  return { name: r.name, arguments: args as Record<string, unknown> };
}

/** Parses the calls of one block's text; `ok` is false when any part of it is not a valid call. */
export function parseCallBlock(text: string): { calls: ToolCall[]; ok: boolean } {
  const t = text.trim();
  if (t === '') return { calls: [], ok: false };
  const fromValue = (v: unknown): { calls: ToolCall[]; ok: boolean } => {
    const items = Array.isArray(v) ? v : [v];
    const calls = items.map(asToolCall);
    return { calls: calls.filter((c): c is ToolCall => c !== undefined), ok: items.length > 0 && calls.every((c) => c !== undefined) };
  };
  try {
    return fromValue(JSON.parse(t));
  } catch {
    // One JSON object per line.
    const calls: ToolCall[] = [];
    let ok = true;
    for (const line of t
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '')) {
      try {
        const r = fromValue(JSON.parse(line));
        calls.push(...r.calls);
        ok &&= r.ok;
      } catch {
        ok = false;
      }
    }
    return { calls, ok };
  }
}

/** All `<tag>` blocks of a text, parsed. */
export function parseToolCalls(text: string, tag = 'tool_call'): { calls: ToolCall[]; ok: boolean; blocks: number } {
  const re = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, 'g');
  const calls: ToolCall[] = [];
  let ok = true;
  let blocks = 0;
  for (const m of text.matchAll(re)) {
    blocks++;
    const r = parseCallBlock(m[1]!);
    calls.push(...r.calls);
    ok &&= r.ok;
  }
  // An opening tag without its closing one is a broken call.
  const opens = text.split(`<${tag}>`).length - 1;
  if (opens !== blocks) ok = false;
  return { calls, ok, blocks };
}

/**
 * Maximum-weight assignment (Hungarian algorithm, O(n²m)): rows and columns each used at most
 * once; returns the column of each row (-1 when unmatched) and the total weight. Weights ≥ 0.
 */
export function maxAssignment(w: readonly (readonly number[])[]): { match: number[]; total: number } {
  const rows = w.length;
  const cols = rows === 0 ? 0 : w[0]!.length;
  const n = Math.max(rows, cols);
  if (n === 0) return { match: [], total: 0 };
  const cost = (i: number, j: number) => -(i <= rows && j <= cols ? w[i - 1]![j - 1]! : 0);
  const u = new Float64Array(n + 1);
  const v = new Float64Array(n + 1);
  const p = new Int32Array(n + 1); // p[j]: row assigned to column j (1-based, 0 = none)
  const way = new Int32Array(n + 1);
  for (let i = 1; i <= n; i++) {
    p[0] = i;
    let j0 = 0;
    const minv = new Float64Array(n + 1).fill(Infinity);
    const used = new Uint8Array(n + 1);
    do {
      used[j0] = 1;
      const i0 = p[j0]!;
      let delta = Infinity;
      let j1 = 0;
      for (let j = 1; j <= n; j++) {
        if (used[j]) continue;
        const cur = cost(i0, j) - u[i0]! - v[j]!;
        if (cur < minv[j]!) {
          minv[j] = cur;
          way[j] = j0;
        }
        if (minv[j]! < delta) {
          delta = minv[j]!;
          j1 = j;
        }
      }
      for (let j = 0; j <= n; j++) {
        if (used[j]) {
          u[p[j]!] += delta;
          v[j] -= delta;
        } else {
          minv[j] -= delta;
        }
      }
      j0 = j1;
    } while (p[j0] !== 0);
    do {
      const j1 = way[j0]!;
      p[j0] = p[j1]!;
      j0 = j1;
    } while (j0 !== 0);
  }
  const match = new Array<number>(rows).fill(-1);
  let total = 0;
  for (let j = 1; j <= n; j++) {
    const i = p[j]!;
    if (i >= 1 && i <= rows && j <= cols && w[i - 1]![j - 1]! > 0) {
      match[i - 1] = j - 1;
      total += w[i - 1]![j - 1]!;
    }
  }
  return { match, total };
}

function looseValue(v: unknown): unknown {
  if (typeof v === 'string') {
    const t = v.trim();
    if (t !== '' && Number.isFinite(Number(t))) return Number(t);
    return t.toLowerCase();
  }
  if (Array.isArray(v)) return v.map(looseValue);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, looseValue(x)]));
  return v;
}

/** Multiset Jaccard similarity (|A ∩ B| / |A ∪ B| with counts); two empty lists are identical. */
export function multisetJaccard(a: readonly string[], b: readonly string[]): number {
  if (a.length === 0 && b.length === 0) return 1;
  const ca = new Map<string, number>();
  const cb = new Map<string, number>();
  for (const x of a) ca.set(x, (ca.get(x) ?? 0) + 1);
  for (const x of b) cb.set(x, (cb.get(x) ?? 0) + 1);
  let inter = 0;
  for (const [k, c] of ca) inter += Math.min(c, cb.get(k) ?? 0);
  return inter / (a.length + b.length - inter);
}

export interface ToolCallScore {
  name: number;
  param: number;
  value: number;
  sMax: number;
  /** (r_name + r_param + r_value) / S_max in [0, 1]. */
  fraction: number;
}

/** ToolRL's three-level comparison of predicted calls with the ground truth. */
export function compareToolCalls(
  expected: readonly ToolCall[],
  predicted: readonly ToolCall[],
  valueMatch: 'exact' | 'loose' = 'exact',
): ToolCallScore {
  const eq = valueMatch === 'exact' ? jsonEqual : (a: unknown, b: unknown) => jsonEqual(looseValue(a), looseValue(b));
  const sMax = 1 + expected.length + expected.reduce((s, g) => s + Object.keys(g.arguments).length, 0);
  const identical =
    expected.length === predicted.length &&
    expected.every((g, i) => g.name === predicted[i]!.name && eq(g.arguments, predicted[i]!.arguments));
  if (identical) {
    return { name: 1, param: expected.length, value: sMax - 1 - expected.length, sMax, fraction: 1 };
  }
  const name = multisetJaccard(
    expected.map((g) => g.name),
    predicted.map((p) => p.name),
  );
  // Pair scores: parameter-name Jaccard + matching values, only between calls of the same tool.
  const pair = (g: ToolCall, p: ToolCall) => {
    const kg = Object.keys(g.arguments);
    const kp = Object.keys(p.arguments);
    const inter = kg.filter((k) => Object.hasOwn(p.arguments, k));
    const union = new Set([...kg, ...kp]).size;
    const param = union === 0 ? 1 : inter.length / union;
    const value = inter.filter((k) => eq(g.arguments[k], p.arguments[k])).length;
    return { param, value };
  };
  const scores = expected.map((g) => predicted.map((p) => (g.name === p.name ? pair(g, p) : { param: 0, value: 0 })));
  const weights = scores.map((row) => row.map((x) => x.param + x.value));
  const { match } = maxAssignment(weights);
  let param = 0;
  let value = 0;
  match.forEach((j, i) => {
    if (j >= 0) {
      param += scores[i]![j]!.param;
      value += scores[i]![j]!.value;
    }
  });
  return { name, param, value, sMax, fraction: (name + param + value) / sMax };
}

function expectedCalls(sample: RewardSample, o: ToolCallOptions): ToolCall[] {
  const where = `sample ${sample.promptId}/${sample.sampleId}`;
  const fromMeta = sample.metadata?.[o.expectedKey];
  const raw: unknown[] | undefined = Array.isArray(fromMeta) ? fromMeta : undefined;
  if (fromMeta !== undefined && raw === undefined) {
    throw new Error(`metadata.${o.expectedKey} of ${where} must be an array of { name, arguments } tool calls`);
  }
  if (raw) {
    return raw.map((c, i) => {
      const call = asToolCall(c);
      if (!call)
        throw new Error(`metadata.${o.expectedKey}[${i}] of ${where} is not a { name, arguments } tool call: ${JSON.stringify(c)}`);
      return call;
    });
  }
  const ref = referencesOf(sample)[0];
  if (ref === undefined) {
    throw new Error(
      `tool_call needs ground-truth calls for ${where}: set metadata.${o.expectedKey} or a reference (JSON array or <${o.toolCallTag}> blocks)`,
    );
  }
  if (ref.includes(`<${o.toolCallTag}>`)) {
    const r = parseToolCalls(ref, o.toolCallTag);
    if (!r.ok) throw new Error(`the reference tool calls of ${where} do not parse`);
    return r.calls;
  }
  const r = ref.trim() === '[]' ? { calls: [], ok: true } : parseCallBlock(ref);
  if (!r.ok) throw new Error(`the reference of ${where} is not a JSON list of tool calls: ${ref.slice(0, 200)}`);
  return r.calls;
}

export const toolCall = defineReward({
  name: 'tool_call',
  description: 'ToolRL reward: format + fine-grained tool-name, parameter-name and parameter-value matching',
  source: 'ToolRL (Qian et al. 2025)',
  optionsSchema: ToolCallOptions,
  create: (o) => ({
    score(sample): RewardResult {
      const expected = expectedCalls(sample, o);
      const useSample = o.callsFrom === 'sample' || (o.callsFrom === 'auto' && sample.toolCalls !== undefined);
      let predicted: ToolCall[];
      let callsOk = true;
      if (useSample) {
        if (!sample.toolCalls) throw new Error(`callsFrom "sample" but sample ${sample.promptId}/${sample.sampleId} has no toolCalls`);
        predicted = sample.toolCalls;
      } else {
        const r = parseToolCalls(sample.completion, o.toolCallTag);
        predicted = r.calls;
        callsOk = r.ok;
      }
      let formatOk = callsOk;
      if (o.requireThink) {
        const c = sample.completion;
        const a = c.indexOf('<think>');
        const b = c.indexOf('</think>');
        const firstCall = c.indexOf(`<${o.toolCallTag}>`);
        formatOk &&= a >= 0 && b > a && c.slice(a + 7, b).trim() !== '' && (firstCall < 0 || firstCall > b);
      }
      const cmp = compareToolCalls(expected, predicted, o.valueMatch);
      const correct = o.correctMin + (o.correctMax - o.correctMin) * cmp.fraction;
      const format = formatOk ? o.formatReward : 0;
      return {
        reward: format + correct,
        components: {
          format,
          tool_correct: correct,
          tool_name: cmp.name,
          tool_param: expected.length === 0 ? 1 : cmp.param / expected.length,
          tool_value: cmp.sMax - 1 - expected.length === 0 ? 1 : cmp.value / (cmp.sMax - 1 - expected.length),
        },
      };
    },
  }),
});
