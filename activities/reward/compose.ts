/**
 * Reward composition: how the named component scores of one sample (from the reward functions
 * of this folder) become its total reward, and how per-token process rewards are refined.
 *
 * Each composition is a pure function with a zod options schema, registered by config name:
 *
 *   const cfg = parseCompositionConfig({ name: 'gated', outcome: 'tests_pass', dense: { lint: 0.1 } });
 *   const out = composeRewards(cfg, [{ sampleId, components, processRewards }], { step });
 *
 * | config name                | method                                                         |
 * | `weighted_sum`             | sum of weight * component                                       |
 * | `gated`                    | G-RA: dense rewards count only when the outcome passes          |
 * | `lexicographic`            | OPTIAGENT: mixed-radix scalar that preserves level priority     |
 * | `sweet_spot`               | SSL: tiered rewards, amplified toward the sweet spot            |
 * | `clip_delta`               | Clip / Delta refinement of process rewards (Gao et al. 2024)    |
 * | `process_outcome_schedule` | Atom-Searcher: weight moves from process to outcome over steps  |
 * | `hybrid`                   | rule/model hybrid accuracy + multi-aspect + length penalty      |
 *
 * See COMPOSE.md for the formulas. Per-token process rewards are dense (one per completion
 * token, as RewardResult.processRewards); a composition that outputs them keeps the convention of
 * activities/advantage: `total` includes their sum, so they redistribute part of the total in time.
 */
import { parseConfig, z } from '../common/config.js';

/** The scored parts of one sample, as the reward functions produced them. */
export interface ComponentScores {
  sampleId: string;
  /** Named component scores (e.g. `format`, `correct`, `feasible`). */
  components: Readonly<Record<string, number>>;
  /** Dense per-token process rewards, one per completion token (0 where no step ends). */
  processRewards?: ArrayLike<number>;
  /**
   * Completion positions that close a reasoning step, when known. Without them, `clip_delta`
   * takes steps from `stepTokens` (the non-zero entries, or every token).
   */
  stepEnds?: ArrayLike<number>;
  /** Number of completion tokens (length penalties). */
  completionLength?: number;
}

export interface ComposeContext {
  /** The training step being scored (schedules). */
  step: number;
}

export interface ComposedReward {
  sampleId: string;
  /** The total reward. */
  total: number;
  /** Named contributions for logging (the rewards table's components). */
  parts: Record<string, number>;
  /** Refined dense process rewards, when the composition produces them; their sum is part of `total`. */
  processRewards?: Float64Array;
}

/** Bad composition input: the message names the sample and the component. */
export class CompositionInputError extends Error {
  override readonly name = 'CompositionInputError';
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

function who(s: ComponentScores): string {
  return `sample "${s.sampleId}"`;
}

/** A component's value, or an error naming the sample, the component and what it has. */
function component(s: ComponentScores, name: string, composition: string): number {
  const v = s.components[name];
  if (v === undefined) {
    const have = Object.keys(s.components);
    throw new CompositionInputError(
      `${who(s)} has no component "${name}" (composition ${composition} needs it; it has ${have.length ? have.map((h) => `"${h}"`).join(', ') : 'none'}): ` +
        'add the reward that produces it to the run config, or fix the component name',
    );
  }
  if (!Number.isFinite(v)) {
    throw new CompositionInputError(
      `component "${name}" of ${who(s)} is ${String(v)}: component scores must be finite; record a failing reward through the reward failure policy`,
    );
  }
  return v;
}

function optionalComponent(s: ComponentScores, name: string, composition: string): number | undefined {
  return s.components[name] === undefined ? undefined : component(s, name, composition);
}

function processOf(s: ComponentScores): Float64Array | undefined {
  const p = s.processRewards;
  if (p === undefined) return undefined;
  const out = new Float64Array(p.length);
  for (let t = 0; t < p.length; t++) {
    const v = p[t]!;
    if (!Number.isFinite(v))
      throw new CompositionInputError(`process reward of ${who(s)} at token ${t} is ${String(v)}: process rewards must be finite`);
    out[t] = v;
  }
  if (s.completionLength !== undefined && s.completionLength !== out.length) {
    throw new CompositionInputError(
      `${who(s)} has ${out.length} process rewards for ${s.completionLength} completion tokens: give one per token`,
    );
  }
  return out;
}

function sum(xs: ArrayLike<number>): number {
  let a = 0;
  for (let i = 0; i < xs.length; i++) a += xs[i]!;
  return a;
}

const weightsSchema = z.record(z.string().min(1), z.number().refine(Number.isFinite, 'weights must be finite'));

// ---------------------------------------------------------------------------------------------
// weighted_sum

export const weightedSumSchema = z.strictObject({
  name: z.literal('weighted_sum'),
  /** Weight per component name; total = sum of weight * score. */
  weights: weightsSchema.refine((w) => Object.keys(w).length > 0, 'give at least one component weight'),
  /** A component missing on a sample: `error` (default; a typo should not silently score 0) or count it as `zero`. */
  missing: z.enum(['error', 'zero']).default('error'),
});
export type WeightedSumOptions = z.output<typeof weightedSumSchema>;

export function weightedSum(inputs: readonly ComponentScores[], o: WeightedSumOptions): ComposedReward[] {
  return inputs.map((s) => {
    const parts: Record<string, number> = {};
    let total = 0;
    for (const [name, w] of Object.entries(o.weights)) {
      const v = o.missing === 'zero' ? (optionalComponent(s, name, 'weighted_sum') ?? 0) : component(s, name, 'weighted_sum');
      parts[name] = w * v;
      total += w * v;
    }
    return { sampleId: s.sampleId, total, parts };
  });
}

// ---------------------------------------------------------------------------------------------
// gated — G-RA (2025, "Stabilizing Long-term Multi-turn Reinforcement Learning with
// Gated Rewards"): immediate (dense, step-level) rewards are accumulated only when the high-level
// outcome reward meets a threshold, so the policy cannot farm dense rewards on failed episodes.

export const gatedSchema = z.strictObject({
  name: z.literal('gated'),
  /** The high-level (long-term) reward component that opens the gate. */
  outcome: z.string().min(1),
  /** The gate opens when outcome >= threshold (G-RA's predefined threshold; 1 for pass/fail outcomes). */
  threshold: z.number().default(1),
  /** Weight of the outcome in the total (it always counts). */
  outcomeWeight: z.number().default(1),
  /** Weights of the immediate-reward components accumulated under the gate. */
  dense: weightsSchema.default({}),
  /** Weight of the sample's per-token process rewards, also accumulated only under the gate (0: ignore them). */
  processWeight: z.number().default(0),
});
export type GatedOptions = z.output<typeof gatedSchema>;

export function gated(inputs: readonly ComponentScores[], o: GatedOptions): ComposedReward[] {
  return inputs.map((s) => {
    const outcome = component(s, o.outcome, 'gated');
    const open = outcome >= o.threshold;
    const parts: Record<string, number> = { [o.outcome]: o.outcomeWeight * outcome };
    let total = o.outcomeWeight * outcome;
    for (const [name, w] of Object.entries(o.dense)) {
      const v = component(s, name, 'gated');
      parts[name] = open ? w * v : 0;
      total += parts[name]!;
    }
    const p = processOf(s);
    let processRewards: Float64Array | undefined;
    if (p && o.processWeight !== 0) {
      processRewards = p.map((v) => (open ? o.processWeight * v : 0));
      parts.process = sum(processRewards);
      total += parts.process;
    }
    return { sampleId: s.sampleId, total, parts, ...(processRewards ? { processRewards } : {}) };
  });
}

// ---------------------------------------------------------------------------------------------
// lexicographic — OPTIAGENT (2026, "OPTIAGENT: A Physics-Driven Agentic Framework for Automated
// Optical Design", Optical Lexicographic Reward): structural format before physical feasibility
// before light-manipulation accuracy before LLM heuristics.
//
// Encoding: each level's score is normalised to [0,1] over [min, max] and quantised to
// q_k in {0..steps_k}; the scalar is the mixed-radix number
//   code = sum_k q_k * prod_{j>k} (steps_j + 1),   total = code / (prod_k (steps_k + 1) - 1),
// so total(a) > total(b) exactly when (q_1..q_L)(a) > (q_1..q_L)(b) lexicographically: no amount
// of a lower level makes up for one quantum of a higher one. `gate: true` on a level zeroes every
// lower level unless that level is at its maximum (e.g. no accuracy credit for an infeasible design).

export const lexicographicSchema = z
  .strictObject({
    name: z.literal('lexicographic'),
    /** Levels, highest priority first. */
    levels: z
      .array(
        z
          .strictObject({
            component: z.string().min(1),
            /** Score mapped to the bottom of the level. */
            min: z.number().default(0),
            /** Score mapped to the top of the level. */
            max: z.number().default(1),
            /** Quanta of the level (1: pass/fail at max). More quanta: finer but still strictly prioritised. */
            steps: z.number().int().min(1).default(10),
            /** Lower levels count only when this level is at its maximum. */
            gate: z.boolean().default(false),
          })
          .refine((l) => l.max > l.min, { message: 'max must be greater than min', path: ['max'] }),
      )
      .min(1),
  })
  .refine((o) => o.levels.reduce((a, l) => a * (l.steps + 1), 1) <= Number.MAX_SAFE_INTEGER, {
    message: 'the product of (steps + 1) over levels exceeds 2^53: use fewer quanta per level',
    path: ['levels'],
  });
export type LexicographicOptions = z.output<typeof lexicographicSchema>;

export function lexicographic(inputs: readonly ComponentScores[], o: LexicographicOptions): ComposedReward[] {
  const radix = o.levels.map((l) => l.steps + 1);
  const full = radix.reduce((a, b) => a * b, 1) - 1;
  return inputs.map((s) => {
    const parts: Record<string, number> = {};
    let code = 0;
    let closed = false;
    o.levels.forEach((l, k) => {
      const v = component(s, l.component, 'lexicographic');
      const u = Math.min(1, Math.max(0, (v - l.min) / (l.max - l.min)));
      const q = closed ? 0 : Math.min(l.steps, Math.floor(u * l.steps + 1e-9));
      if (l.gate && q < l.steps) closed = true;
      parts[l.component] = q / l.steps;
      code = code * radix[k]! + q;
    });
    return { sampleId: s.sampleId, total: code / full, parts };
  });
}

// ---------------------------------------------------------------------------------------------
// sweet_spot — SSL (2026, "SSL: Sweet Spot Learning for Differentiated Guidance in Agentic
// Optimization"): instead of a binary reward, tiers of a graded quality (distance to the target
// for perception, progress for reasoning) get progressively amplified rewards toward the sweet
// spot. Tier rewards must strictly increase toward the sweet spot, which keeps the optimal
// solution ordering the paper proves is preserved.

const tierSchema = z.strictObject({
  /** Tier edge: value <= bound (lower-is-better) or value >= bound (higher-is-better) falls in the tier. */
  bound: z.number(),
  reward: z.number(),
});

export const sweetSpotSchema = z
  .strictObject({
    name: z.literal('sweet_spot'),
    /** The graded quality component (e.g. normalised distance to target, or task progress). */
    component: z.string().min(1),
    /** `lower-is-better` for distances, `higher-is-better` for progress. */
    direction: z.enum(['lower-is-better', 'higher-is-better']).default('lower-is-better'),
    /** Tiers from the sweet spot outward: the first tier whose bound the value meets gives its reward. */
    tiers: z.array(tierSchema).min(1),
    /** Reward beyond the last tier. */
    outside: z.number().default(0),
    /** Tier only successful trajectories: outcome component and its pass threshold; null: tier every sample. */
    outcome: z
      .strictObject({ component: z.string().min(1), threshold: z.number().default(1) })
      .nullable()
      .default(null),
    /** Reward of a trajectory that fails the outcome (with `outcome` set); must not exceed `outside`. */
    failReward: z.number().default(0),
  })
  .superRefine((o, ctx) => {
    const lower = o.direction === 'lower-is-better';
    for (let i = 1; i < o.tiers.length; i++) {
      const [a, b] = [o.tiers[i - 1]!, o.tiers[i]!];
      if (lower ? !(b.bound > a.bound) : !(b.bound < a.bound)) {
        ctx.addIssue({
          code: 'custom',
          path: ['tiers', i, 'bound'],
          message: `tier bounds must move away from the sweet spot (${lower ? 'increase' : 'decrease'})`,
        });
      }
      if (!(b.reward < a.reward)) {
        ctx.addIssue({
          code: 'custom',
          path: ['tiers', i, 'reward'],
          message: 'tier rewards must strictly decrease away from the sweet spot (progressive amplification)',
        });
      }
    }
    if (!(o.outside < o.tiers[o.tiers.length - 1]!.reward)) {
      ctx.addIssue({ code: 'custom', path: ['outside'], message: 'outside must be below the last tier reward' });
    }
    if (o.outcome && o.failReward > o.outside) {
      ctx.addIssue({
        code: 'custom',
        path: ['failReward'],
        message: 'failReward must not exceed outside: a failure never outranks a success',
      });
    }
  });
export type SweetSpotOptions = z.output<typeof sweetSpotSchema>;

export function sweetSpot(inputs: readonly ComponentScores[], o: SweetSpotOptions): ComposedReward[] {
  const lower = o.direction === 'lower-is-better';
  return inputs.map((s) => {
    if (o.outcome) {
      const passed = component(s, o.outcome.component, 'sweet_spot') >= o.outcome.threshold;
      if (!passed) return { sampleId: s.sampleId, total: o.failReward, parts: { tier: 0 } };
    }
    const v = component(s, o.component, 'sweet_spot');
    const k = o.tiers.findIndex((t) => (lower ? v <= t.bound : v >= t.bound));
    const total = k < 0 ? o.outside : o.tiers[k]!.reward;
    // tier: 1 for the sweet spot, counting down outward; 0 outside every tier.
    return { sampleId: s.sampleId, total, parts: { tier: k < 0 ? 0 : o.tiers.length - k } };
  });
}

// ---------------------------------------------------------------------------------------------
// clip_delta — Gao et al. 2024, "On Designing Effective RL Reward at Training Time for LLM
// Reasoning": a learned process reward added to the success reward gets hacked by repeating
// correct but unnecessary steps. Both refinements bound the return of any trajectory:
//   Clip:  r~_k = min(r_k - eta, 0)       (every step reward <= 0, so more steps never pay)
//   Delta: r~_k = r_k - r_{k+1} (k < K), r~_K = 0  (returns telescope: sum_{j>=k} r~_j = r_k - r_K)
// `clip-delta` clips first, then takes deltas. total = outcomeWeight * success + processWeight * sum r~.

export const clipDeltaSchema = z.strictObject({
  name: z.literal('clip_delta'),
  /** The success (verifiable outcome) reward component. */
  outcome: z.string().min(1),
  /** Weight of the success reward in the total. */
  outcomeWeight: z.number().default(1),
  /** Which refinement of the step rewards. */
  mechanism: z.enum(['clip', 'delta', 'clip-delta']).default('clip'),
  /** Clip threshold eta (Clip mechanism); 0.5 suits a PRM that outputs step-correctness probabilities. */
  eta: z.number().default(0.5),
  /** Weight of the refined process rewards in the total. */
  processWeight: z.number().default(1),
  /**
   * Which tokens of the dense process rewards are steps when the sample gives no `stepEnds`:
   * `nonzero` (a PRM writes its score on the token closing each step, 0 elsewhere) or `all`
   * (a token-level PRM: every token is a step).
   */
  stepTokens: z.enum(['nonzero', 'all']).default('nonzero'),
});
export type ClipDeltaOptions = z.output<typeof clipDeltaSchema>;

/** The refined step rewards of one sample (step values in order), per the mechanism. */
export function refineSteps(values: readonly number[], mechanism: ClipDeltaOptions['mechanism'], eta: number): number[] {
  const clipped = mechanism === 'delta' ? [...values] : values.map((r) => Math.min(r - eta, 0));
  if (mechanism === 'clip') return clipped;
  return clipped.map((r, k) => (k + 1 < clipped.length ? r - clipped[k + 1]! : 0));
}

export function clipDelta(inputs: readonly ComponentScores[], o: ClipDeltaOptions): ComposedReward[] {
  return inputs.map((s) => {
    const success = component(s, o.outcome, 'clip_delta');
    const p = processOf(s);
    const parts: Record<string, number> = { [o.outcome]: o.outcomeWeight * success };
    if (!p) return { sampleId: s.sampleId, total: parts[o.outcome]!, parts };
    let positions: number[];
    if (s.stepEnds !== undefined) {
      positions = Array.from(s.stepEnds);
      positions.forEach((q, i) => {
        if (!Number.isSafeInteger(q) || q < 0 || q >= p.length || (i > 0 && q <= positions[i - 1]!)) {
          throw new CompositionInputError(
            `${who(s)} has step end ${String(q)} at index ${i}: step ends must be increasing token positions below ${p.length}`,
          );
        }
      });
    } else {
      positions = [];
      for (let t = 0; t < p.length; t++) if (o.stepTokens === 'all' || p[t] !== 0) positions.push(t);
    }
    const refined = refineSteps(
      positions.map((q) => p[q]!),
      o.mechanism,
      o.eta,
    );
    const processRewards = new Float64Array(p.length);
    positions.forEach((q, k) => (processRewards[q] = o.processWeight * refined[k]!));
    parts.process = sum(processRewards);
    return { sampleId: s.sampleId, total: parts[o.outcome]! + parts.process, parts, processRewards };
  });
}

// ---------------------------------------------------------------------------------------------
// process_outcome_schedule — Atom-Searcher (2025, "Atom-Searcher: Enhancing Agentic Deep Research
// via Fine-Grained Atomic Thought Reward"): a curriculum that weights process-level rewards
// (Atomic Thought Rewards) early and moves the weight to the outcome reward as training goes on:
//   w(step) = end + (start - end) * f(min(step / totalSteps, 1)),  f = 1 - x (linear) or (1 + cos(pi x)) / 2,
//   total = (1 - w) * outcome + w * process.

export const processOutcomeScheduleSchema = z.strictObject({
  name: z.literal('process_outcome_schedule'),
  /** The outcome reward component. */
  outcome: z.string().min(1),
  /** Component holding the process score; null: the sum of the sample's per-token process rewards. */
  process: z.string().min(1).nullable().default(null),
  /** Process weight at step 0. */
  start: z.number().min(0).max(1).default(0.5),
  /** Process weight from `totalSteps` on. */
  end: z.number().min(0).max(1).default(0),
  /** Steps over which the weight moves from start to end. */
  totalSteps: z.number().int().min(1),
  /** How the weight moves: `linear` in the step, or `cosine` (slow at both ends). */
  shape: z.enum(['linear', 'cosine']).default('linear'),
});
export type ProcessOutcomeScheduleOptions = z.output<typeof processOutcomeScheduleSchema>;

/** The process weight of the schedule at a step. */
export function processWeightAt(o: ProcessOutcomeScheduleOptions, step: number): number {
  const x = Math.min(Math.max(step, 0) / o.totalSteps, 1);
  const f = o.shape === 'linear' ? 1 - x : (1 + Math.cos(Math.PI * x)) / 2;
  return o.end + (o.start - o.end) * f;
}

export function processOutcomeSchedule(
  inputs: readonly ComponentScores[],
  o: ProcessOutcomeScheduleOptions,
  ctx: ComposeContext,
): ComposedReward[] {
  const w = processWeightAt(o, ctx.step);
  return inputs.map((s) => {
    const outcome = component(s, o.outcome, 'process_outcome_schedule');
    let process: number;
    let processRewards: Float64Array | undefined;
    if (o.process !== null) {
      process = component(s, o.process, 'process_outcome_schedule');
    } else {
      const p = processOf(s);
      if (!p) {
        throw new CompositionInputError(
          `${who(s)} has no processRewards: process_outcome_schedule with process: null sums them; give them or name a process component`,
        );
      }
      processRewards = p.map((v) => w * v);
      process = sum(p);
    }
    const parts = { [o.outcome]: (1 - w) * outcome, process: w * process };
    return { sampleId: s.sampleId, total: parts[o.outcome]! + parts.process, parts, ...(processRewards ? { processRewards } : {}) };
  });
}

// ---------------------------------------------------------------------------------------------
// hybrid — "Beyond Monolithic Rewards: A Hybrid and Multi-Aspect Reward Optimization for MLLM
// Alignment" (2025): rule-based rewards where a verifier can judge with confidence, model-based
// rewards elsewhere; plus multi-aspect rewards (instruction adherence, ...) and a generalised
// length penalty.
//   accuracy = gate:  rule if (rule present and confidence >= threshold) else model
//              blend: c * rule + (1 - c) * model    (c = 0 when the rule has no verdict)
//   penalty  = -weight * clamp((L - target) / (limit - target), 0, 1) ^ power
//   total    = accuracyWeight * accuracy + sum_a w_a * aspect_a + penalty

export const hybridSchema = z.strictObject({
  name: z.literal('hybrid'),
  /** Rule-based verifier score; a sample without it is one the rules cannot judge. */
  rule: z.string().min(1),
  /** Component with the verifier's confidence in [0,1]; null: confidence 1 whenever the rule score is present. */
  ruleConfidence: z.string().min(1).nullable().default(null),
  /** Model-based (reward model) score, the fallback. */
  model: z.string().min(1),
  /** `gate`: trust the rule above the threshold, else the model. `blend`: confidence-weighted mix. */
  mixing: z.enum(['gate', 'blend']).default('gate'),
  /** With `mixing: gate`, the rule verdict is used when its confidence is at least this. */
  confidenceThreshold: z.number().min(0).max(1).default(0.5),
  /** Weight of the (rule or model) accuracy in the total. */
  accuracyWeight: z.number().default(1),
  /** Weights of further aspect components (instruction adherence, style, ...). */
  aspects: weightsSchema.default({}),
  /** Generalised length penalty; null: none. */
  lengthPenalty: z
    .strictObject({
      /** The largest penalty, reached at `limit` tokens. */
      weight: z.number().nonnegative(),
      /** Completions up to this many tokens are not penalised. */
      target: z.number().int().nonnegative(),
      /** At and beyond this length the full weight applies. */
      limit: z.number().int().positive(),
      /** Shape of the ramp between target and limit (1 linear, 2 quadratic, ...). */
      power: z.number().positive().default(1),
    })
    .refine((l) => l.limit > l.target, { message: 'limit must exceed target', path: ['limit'] })
    .nullable()
    .default(null),
});
export type HybridOptions = z.output<typeof hybridSchema>;

export function hybrid(inputs: readonly ComponentScores[], o: HybridOptions): ComposedReward[] {
  return inputs.map((s) => {
    const model = component(s, o.model, 'hybrid');
    const rule = optionalComponent(s, o.rule, 'hybrid');
    let c = 0;
    if (rule !== undefined) {
      c = o.ruleConfidence === null ? 1 : component(s, o.ruleConfidence, 'hybrid');
      if (c < 0 || c > 1)
        throw new CompositionInputError(`component "${o.ruleConfidence}" of ${who(s)} is ${c}: a confidence must lie in [0, 1]`);
    }
    const accuracy =
      rule === undefined ? model : o.mixing === 'gate' ? (c >= o.confidenceThreshold ? rule : model) : c * rule + (1 - c) * model;
    const parts: Record<string, number> = { accuracy: o.accuracyWeight * accuracy };
    let total = parts.accuracy!;
    for (const [name, w] of Object.entries(o.aspects)) {
      parts[name] = w * component(s, name, 'hybrid');
      total += parts[name]!;
    }
    if (o.lengthPenalty) {
      const L = s.completionLength;
      if (L === undefined || !Number.isSafeInteger(L) || L < 0) {
        throw new CompositionInputError(
          `${who(s)} has no completionLength: hybrid with a length penalty needs the number of completion tokens`,
        );
      }
      const lp = o.lengthPenalty;
      const x = Math.min(1, Math.max(0, (L - lp.target) / (lp.limit - lp.target)));
      parts.length_penalty = x === 0 ? 0 : -lp.weight * x ** lp.power;
      total += parts.length_penalty;
    }
    return { sampleId: s.sampleId, total, parts };
  });
}

// ---------------------------------------------------------------------------------------------
// Registry

export const compositions = {
  weighted_sum: { schema: weightedSumSchema, paper: null },
  gated: { schema: gatedSchema, paper: 'G-RA: Stabilizing Long-term Multi-turn RL with Gated Rewards (2025)' },
  lexicographic: { schema: lexicographicSchema, paper: 'OPTIAGENT: Optical Lexicographic Reward (2026)' },
  sweet_spot: { schema: sweetSpotSchema, paper: 'SSL: Sweet Spot Learning (2026)' },
  clip_delta: { schema: clipDeltaSchema, paper: 'Gao et al. 2024, On Designing Effective RL Reward at Training Time for LLM Reasoning' },
  process_outcome_schedule: { schema: processOutcomeScheduleSchema, paper: 'Atom-Searcher (2025)' },
  hybrid: { schema: hybridSchema, paper: 'Beyond Monolithic Rewards: Hybrid and Multi-Aspect Reward Optimization (2025)' },
} as const;
export type CompositionName = keyof typeof compositions;
export const compositionNames = Object.keys(compositions) as CompositionName[];

export const compositionConfigSchema = z.discriminatedUnion('name', [
  weightedSumSchema,
  gatedSchema,
  lexicographicSchema,
  sweetSpotSchema,
  clipDeltaSchema,
  processOutcomeScheduleSchema,
  hybridSchema,
]);
export type CompositionConfig = z.output<typeof compositionConfigSchema>;

/**
 * Every component name a composition config refers to, with the option that names it (`outcome`,
 * `dense.format`, `levels.1.component`, …): what a run checks against its reward functions' ids
 * before it starts, since a name no sample has fails every sample at scoring time.
 */
export function componentReferences(c: CompositionConfig): { path: (string | number)[]; name: string }[] {
  const keys = (field: string, w: Record<string, number>) => Object.keys(w).map((name) => ({ path: [field, name], name }));
  const named = (refs: [string, string | null][]) => refs.filter(([, n]) => n !== null).map(([f, n]) => ({ path: [f], name: n! }));
  switch (c.name) {
    case 'weighted_sum':
      return keys('weights', c.weights);
    case 'gated':
      return [...named([['outcome', c.outcome]]), ...keys('dense', c.dense)];
    case 'lexicographic':
      return c.levels.map((l, i) => ({ path: ['levels', i, 'component'], name: l.component }));
    case 'sweet_spot':
      return [
        { path: ['component'], name: c.component },
        ...(c.outcome ? [{ path: ['outcome', 'component'], name: c.outcome.component }] : []),
      ];
    case 'clip_delta':
      return named([['outcome', c.outcome]]);
    case 'process_outcome_schedule':
      return named([
        ['outcome', c.outcome],
        ['process', c.process],
      ]);
    case 'hybrid':
      return [
        ...named([
          ['rule', c.rule],
          ['ruleConfidence', c.ruleConfidence],
          ['model', c.model],
        ]),
        ...keys('aspects', c.aspects),
      ];
  }
}

/** Validates a composition config (filling defaults); the error names the bad field. */
export function parseCompositionConfig(input: unknown): CompositionConfig {
  return parseConfig(compositionConfigSchema, input, 'reward composition');
}

/** Composes every sample's total reward with the configured composition, in input order. */
export function composeRewards(config: CompositionConfig, inputs: readonly ComponentScores[], ctx: ComposeContext): ComposedReward[] {
  inputs.forEach((s, i) => {
    if (typeof s.sampleId !== 'string' || s.sampleId.length === 0) throw new CompositionInputError(`input at index ${i} has no sampleId`);
    if (s.components === null || typeof s.components !== 'object') throw new CompositionInputError(`${who(s)} has no components object`);
  });
  switch (config.name) {
    case 'weighted_sum':
      return weightedSum(inputs, config);
    case 'gated':
      return gated(inputs, config);
    case 'lexicographic':
      return lexicographic(inputs, config);
    case 'sweet_spot':
      return sweetSpot(inputs, config);
    case 'clip_delta':
      return clipDelta(inputs, config);
    case 'process_outcome_schedule':
      return processOutcomeSchedule(inputs, config, ctx);
    case 'hybrid':
      return hybrid(inputs, config);
  }
}
