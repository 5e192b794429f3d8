/**
 * The retention policy as a pure function: given a run's committed checkpoints, its phases and the
 * policy (config.ts `retention`), which checkpoints stay, which go, and which of those that stay
 * keep their AdamW moments. `gcRun` (gc.ts) carries the answer out.
 *
 * A checkpoint is kept when the policy asks for it (the last `keepLast`, every `keepEvery`-th) or
 * when a kept checkpoint cannot be used without it:
 *
 * - the latest checkpoint, always: the run continues from it, and resume-from's default is it;
 * - checkpoint 0 of a run whose later checkpoints hold only the trained parameters (a LoRA run:
 *   metadata `frozen_from: "0"`, checkpoint.ts) — every read of a later one completes it from 0;
 * - the first checkpoint of a phase with a reference policy (rl, online_dpo, dpo), while a kept
 *   checkpoint lies inside that phase past its first step: the phase's KL / DPO reference, which
 *   the running phase reads every step and resume-from copies with any checkpoint inside it
 *   (init-run.ts). Once the phase is over and no kept checkpoint is inside it, nothing reads it;
 * - with `rollout.offPolicySteps` k > 0, the checkpoints the steps from the latest on roll out from
 *   (workflows/run-plan.ts `policyVersion`: max(step − k, phase start), down to latest − k): a step's
 *   rollouts may be in flight, or re-run after a crash, while a later checkpoint is the latest.
 *
 * The moments stay on every kept checkpoint (`optimizerState: 'all'`) or on the latest only
 * (`'last'`): a reference or a base is read for its weights alone.
 */

/** What to keep (config.ts `retention`, where each field is documented). */
export interface RetentionPolicy {
  keepLast: number | null;
  keepEvery: number | null;
  optimizerState: 'last' | 'all';
}

export interface RetentionInput {
  /** The run's committed checkpoints (any order). */
  checkpoints: readonly number[];
  /** The run's phases in order (steps are numbered across them from 0). */
  phases: readonly { kind: string; steps: number }[];
  /** True when checkpoints after 0 read their frozen parameters from checkpoint 0 (a LoRA run). */
  frozenBase: boolean;
  policy: RetentionPolicy;
  /** The run's `rollout.offPolicySteps` (absent: 0). */
  offPolicySteps?: number;
}

export interface RetentionPlan {
  /** Checkpoints that stay, ascending. */
  keep: number[];
  /** Checkpoints to remove, ascending. */
  drop: number[];
  /** Kept checkpoints that keep their AdamW moments, ascending. */
  optimizer: number[];
  /** Kept checkpoints whose AdamW moments go, ascending. */
  dropOptimizer: number[];
  /** Why each kept checkpoint is kept (e.g. `latest`, `last 2`, `every 5`, `LoRA base`, `reference of phases.1`). */
  why: Map<number, string[]>;
}

/** Phase kinds whose first checkpoint is the reference policy of their steps. */
const REFERENCE_KINDS = new Set(['rl', 'online_dpo', 'dpo']);

/** Which checkpoints (and which checkpoints' optimizer state) the policy keeps. */
export function retentionPlan(input: RetentionInput): RetentionPlan {
  const all = [...new Set(input.checkpoints)].sort((a, b) => a - b);
  const why = new Map<number, string[]>();
  const keep = (v: number, reason: string) => {
    if (!all.includes(v)) return false;
    const r = why.get(v) ?? [];
    if (r.includes(reason)) return false;
    why.set(v, [...r, reason]);
    return true;
  };
  const { keepLast, keepEvery } = input.policy;
  if (all.length === 0) return { keep: [], drop: [], optimizer: [], dropOptimizer: [], why };
  const latest = all[all.length - 1]!;
  keep(latest, 'latest');
  for (const [i, v] of all.entries()) {
    if (keepLast === null) keep(v, 'keepLast unset');
    else if (i >= all.length - keepLast) keep(v, `last ${keepLast}`);
    if (keepEvery !== null && v % keepEvery === 0) keep(v, `every ${keepEvery}`);
  }
  // what the kept ones need (neither dependency has further dependencies of its own)
  let start = 0;
  const phases = input.phases.map((p, index) => {
    const r = { index, kind: p.kind, start, end: start + p.steps };
    start += p.steps;
    return r;
  });
  const k = input.offPolicySteps ?? 0;
  for (let m = latest; k > 0 && m <= latest + k; m++) {
    const p = phases.find((q) => m >= q.start && m < q.end);
    if (p && (p.kind === 'rl' || p.kind === 'online_dpo')) keep(Math.max(m - k, p.start), `rollouts of step ${m}`);
  }
  for (const v of [...why.keys()]) {
    if (input.frozenBase && v !== 0) keep(0, 'LoRA base');
    const p = phases.find((q) => v > q.start && v < q.end);
    if (p && REFERENCE_KINDS.has(p.kind)) keep(p.start, `reference of phases.${p.index}`);
  }
  const kept = all.filter((v) => why.has(v));
  const optimizer = input.policy.optimizerState === 'all' ? kept : [latest];
  return {
    keep: kept,
    drop: all.filter((v) => !why.has(v)),
    optimizer,
    dropOptimizer: kept.filter((v) => !optimizer.includes(v)),
    why,
  };
}
