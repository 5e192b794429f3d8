/**
 * Efficiency reward with a reference that tightens as training improves.
 *
 * HyperEyes' TRACE (Tool-use Reference-Adaptive Cost Efficiency) rewards a trajectory for using
 * few tool calls relative to a reference that is monotonically tightened during training, so
 * superfluous calls are suppressed without forbidding genuine multi-hop search. Router-R1's cost
 * reward trades answer quality against the cost of the models it calls. Both are one reward here,
 * with the cost chosen by an option:
 *
 *   cost = number of tool calls | completion tokens | prompt + completion tokens | Σ call.cost
 *
 *   R = 1                          cost ≤ reference
 *     = reference / cost           (shape `ratio`)            otherwise
 *     = max(0, 2 − cost / reference) (shape `linear`: 0 at twice the reference)
 *
 * The reference is explicit run state (`{ reference, updates }`, JSON), not a module global: the
 * step that scores samples reads it from `ctx.state`, and after the step `updateState` (or the
 * pure `tightenReference`) computes the next one from the step's successful samples:
 *
 *   target = q-quantile of the costs of successful samples (needs ≥ minSamples of them)
 *   next   = max(minReference, min(reference, reference + momentum · (target − reference)))
 *
 * — it only ever decreases (monotone tightening). A sample is successful when its result's
 * `successComponent` (default `correct`, as the verifiable rewards emit) is ≥ 0.5; results without
 * that component all count. The efficiency term is meant to be added to, or gated by, an outcome
 * reward in compose.ts: HyperEyes and Router-R1 both pay it alongside correctness.
 */
import { z } from '../common/config.js';
import { defineReward, type JsonValue, type RewardResult, type RewardSample } from './types.js';

export const EfficiencyOptions = z
  .strictObject({
    /** What a trajectory costs: tool calls (TRACE), completion or total tokens, or the sum of `toolCalls[i].cost` (Router-R1 model costs). */
    cost: z.enum(['tool_calls', 'completion_tokens', 'total_tokens', 'call_cost']).default('tool_calls'),
    /** Reward above the reference: `ratio` (reference / cost) or `linear` (2 − cost / reference, floored at 0). */
    shape: z.enum(['ratio', 'linear']).default('ratio'),
    /** The reference at the start of the run (e.g. the tool-call budget of the task). */
    initialReference: z.number().positive(),
    /** The reference never tightens below this (default: a tenth of initialReference). */
    minReference: z.number().positive().optional(),
    /** Quantile of successful samples' costs the reference moves towards (0.5: the median). */
    quantile: z.number().min(0).max(1).default(0.5),
    /** Fraction of the way towards the target per update (1: jump; small: slow and smooth). */
    momentum: z.number().gt(0).max(1).default(0.1),
    /** Fewest successful samples in a step for the reference to move. */
    minSamples: z.number().int().positive().default(8),
    /** Component of a result that marks success (≥ 0.5); results without it all count. */
    successComponent: z.string().min(1).default('correct'),
  })
  .refine((o) => o.minReference === undefined || o.minReference <= o.initialReference, {
    message: 'minReference must not exceed initialReference',
    path: ['minReference'],
  });
export type EfficiencyOptions = z.output<typeof EfficiencyOptions>;

/** The serialisable state of the efficiency reward, kept in run state. */
export interface EfficiencyState {
  reference: number;
  /** How many times the reference moved (for the step metrics). */
  updates: number;
}

const StateZ = z.strictObject({ reference: z.number().positive(), updates: z.number().int().nonnegative() });

/** Reads the state from `ctx.state`, or an error saying what is wrong with it. */
export function efficiencyState(state: JsonValue | undefined, o: EfficiencyOptions): EfficiencyState {
  if (state === undefined || state === null) return { reference: o.initialReference, updates: 0 };
  const r = StateZ.safeParse(state);
  if (!r.success) {
    throw new Error(
      `efficiency reward state ${JSON.stringify(state)} is not { reference > 0, updates }: pass the state the previous step returned, or none to start`,
    );
  }
  return r.data;
}

/** The cost of a sample under the option. */
export function trajectoryCost(sample: RewardSample, cost: EfficiencyOptions['cost']): number {
  const where = `sample ${sample.promptId}/${sample.sampleId}`;
  switch (cost) {
    case 'tool_calls':
      return sample.toolCalls?.length ?? 0;
    case 'completion_tokens':
    case 'total_tokens': {
      const c = sample.completionTokens;
      const p = cost === 'total_tokens' ? sample.promptTokens : 0;
      if (c === undefined || p === undefined) {
        throw new Error(
          `${where} lacks ${c === undefined ? 'completionTokens' : 'promptTokens'}: the rollout must record token counts for cost "${cost}"`,
        );
      }
      return c + p;
    }
    case 'call_cost':
      return (sample.toolCalls ?? []).reduce((s, call, i) => {
        if (typeof call.cost !== 'number' || !Number.isFinite(call.cost) || call.cost < 0) {
          throw new Error(`${where} toolCalls[${i}] (${call.name}) has no cost: cost "call_cost" needs each call's measured cost`);
        }
        return s + call.cost;
      }, 0);
  }
}

/** The reward of a cost against a reference (in [0, 1]). */
export function efficiencyReward(cost: number, reference: number, shape: 'ratio' | 'linear'): number {
  if (cost <= reference) return 1;
  return shape === 'ratio' ? reference / cost : Math.max(0, 2 - cost / reference);
}

/** The q-quantile (linear interpolation between order statistics) of a non-empty list. */
export function quantile(values: readonly number[], q: number): number {
  const s = [...values].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

/** The next state from the costs of a step's successful samples: monotone tightening. Pure. */
export function tightenReference(state: EfficiencyState, successCosts: readonly number[], o: EfficiencyOptions): EfficiencyState {
  if (successCosts.length < o.minSamples) return state;
  const target = quantile(successCosts, o.quantile);
  const floor = o.minReference ?? o.initialReference / 10;
  const next = Math.max(floor, Math.min(state.reference, state.reference + o.momentum * (target - state.reference)));
  return next < state.reference ? { reference: next, updates: state.updates + 1 } : state;
}

export const efficiency = defineReward({
  name: 'efficiency',
  description: 'tool-call / token / model-cost efficiency against a reference that tightens from step to step (explicit run state)',
  source: 'HyperEyes TRACE (tool-use reference-adaptive cost efficiency); Router-R1 cost reward (Zhang et al. 2025)',
  optionsSchema: EfficiencyOptions,
  create: (o) => ({
    initialState: () => ({ reference: o.initialReference, updates: 0 }),
    score(sample, ctx): RewardResult {
      const { reference } = efficiencyState(ctx.state, o);
      const cost = trajectoryCost(sample, o.cost);
      return { reward: efficiencyReward(cost, reference, o.shape), components: { cost, cost_reference: reference } };
    },
    updateState(state, scored) {
      const prev = efficiencyState(state, o);
      const costs = scored
        .filter(({ result }) => {
          if (result === null) return false;
          const c = result.components?.[o.successComponent];
          return c === undefined || c >= 0.5;
        })
        .map(({ sample }) => trajectoryCost(sample, o.cost));
      return { ...tightenReference(prev, costs, o) };
    },
  }),
});
