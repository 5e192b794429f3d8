/**
 * The schedule of a training run as a pure function of its config: which phase a step belongs to,
 * its learning rate, which train-split items it uses, how its prompts split into shards, where
 * evaluations happen. Deterministic and I/O-free (workflow code); the activities receive these
 * numbers explicitly, so the data a step trains on never depends on which process asks.
 */
import type { Phase, RunConfig } from '../activities/run/config.js';

export interface ShardPlan {
  shard: number;
  promptOffset: number;
  promptCount: number;
}

export interface StepPlan {
  step: number;
  phaseIndex: number;
  phase: Phase;
  /** 0-based index of the step within its phase. */
  stepInPhase: number;
  /** First step of the phase (its reference policy is checkpoint `phaseStart`). */
  phaseStart: number;
  /** Learning rate of the step's (last) optimizer update. */
  lr: number;
  /** Learning rate of each optimizer update of the step (sft phases may do several; rl: one). */
  lrs: number[];
  /**
   * sft: examples; rl, online_dpo: prompts. Items [promptOffset, promptOffset + count) of the train
   * split. dpo: preference pairs, rows [promptOffset, promptOffset + count) of the phase's dataset
   * (stepInPhase × batchSize; the learner wraps around at the dataset's end). reward_model: the same,
   * rows of its dataset's training part (the held-out rows left out).
   */
  promptOffset: number;
  count: number;
  /** rl, online_dpo: the prompts of each rollout shard. */
  shards: ShardPlan[];
}

export function totalSteps(config: RunConfig): number {
  return config.phases.reduce((n, p) => n + p.steps, 0);
}

function updatesPerStep(p: Phase): number {
  return p.kind === 'sft' ? p.updatesPerStep : 1;
}

/** Items of the task's train stream a step draws (the offline dpo and reward_model phases read their own dataset: none). */
function itemsPerStep(p: Phase): number {
  if (p.kind === 'sft') return p.batchSize * p.updatesPerStep;
  if (p.kind === 'dpo' || p.kind === 'reward_model') return 0;
  return p.promptsPerStep;
}

/**
 * Learning rate of optimizer update k of a phase (counted from 0 over the whole phase): linear
 * warm-up to lr, then constant or cosine decay to minLrRatio·lr at the phase's last update.
 */
export function learningRate(p: Phase, k: number): number {
  if (k < p.warmupSteps) return (p.lr * (k + 1)) / p.warmupSteps;
  if (p.schedule === 'constant') return p.lr;
  const span = Math.max(1, p.steps * updatesPerStep(p) - p.warmupSteps - 1);
  const progress = Math.min(1, (k - p.warmupSteps) / span);
  const floor = p.lr * p.minLrRatio;
  return floor + 0.5 * (p.lr - floor) * (1 + Math.cos(Math.PI * progress));
}

export function planStep(config: RunConfig, step: number): StepPlan {
  if (!Number.isInteger(step) || step < 0 || step >= totalSteps(config)) {
    throw new RangeError(`step ${step} is outside the run's ${totalSteps(config)} steps`);
  }
  let phaseStart = 0;
  let offset = 0;
  for (const [phaseIndex, phase] of config.phases.entries()) {
    if (step < phaseStart + phase.steps) {
      const k = step - phaseStart;
      const ownData = phase.kind === 'dpo' || phase.kind === 'reward_model';
      const count = ownData ? phase.batchSize : itemsPerStep(phase);
      const promptOffset = ownData ? k * count : offset + k * count;
      const shards: ShardPlan[] = [];
      if (phase.kind === 'rl' || phase.kind === 'online_dpo') {
        const per = config.rollout.promptsPerShard;
        for (let s = 0; s * per < count; s++) {
          shards.push({ shard: s, promptOffset: promptOffset + s * per, promptCount: Math.min(per, count - s * per) });
        }
      }
      const u = updatesPerStep(phase);
      const lrs = Array.from({ length: u }, (_, i) => learningRate(phase, k * u + i));
      return { step, phaseIndex, phase, stepInPhase: k, phaseStart, lr: lrs[u - 1]!, lrs, promptOffset, count, shards };
    }
    phaseStart += phase.steps;
    offset += phase.steps * itemsPerStep(phase);
  }
  throw new RangeError(`step ${step} is past the last phase`);
}

/** `rollout.offPolicySteps` (k) of a config; a config recorded before the option existed has none (0: on-policy). */
export function offPolicySteps(config: RunConfig): number {
  return config.rollout.offPolicySteps ?? 0;
}

/**
 * The policy version (checkpoint) whose weights generate step `step`'s rollouts (rl and online_dpo
 * phases; a step of another phase samples nothing: its own step), fixed by the plan:
 *
 *   policyVersion(step) = max(step − k, phaseStart(step), start)
 *
 * k = `rollout.offPolicySteps`; phaseStart(step) the first step of the step's phase (each phase
 * starts on-policy: no rollout of a phase samples from the previous phase's weights); `start` the
 * first step this run trains (0, or the checkpoint a resume-from continues: the run holds no earlier
 * checkpoint). k = 0 gives `step` (on-policy). Checkpoint v exists once step v − 1 has committed, so
 * the rollouts of step m can start as soon as step policyVersion(m) begins: while the learner updates
 * step n, the rollouts of steps up to n + k (of the same phase) run. A function of the config and
 * the run's start alone: a crash, a replay or a continue-as-new rolls out from the same weights.
 */
export function policyVersion(config: RunConfig, step: number, start = 0): number {
  const { phase, phaseStart } = planStep(config, step);
  if (phase.kind !== 'rl' && phase.kind !== 'online_dpo') return step; // no rollouts: the learner's own checkpoint
  return Math.max(step - offPolicySteps(config), phaseStart, start);
}

/** The dynamic-sampling settings of a phase; a config recorded before the option existed has none (off). */
export function dynamicSamplingOf(
  p: Phase,
): { mode: 'off' | 'filter' | 'refill'; maxRounds: number; oversample: number; minKeepRate: number } | null {
  if (p.kind !== 'rl' || !p.dynamicSampling || p.dynamicSampling.mode === 'off') return null;
  return p.dynamicSampling;
}

/** Train items reserved per (step, refill round): the most a round asks for (config.ts `refillRoundPrompts`, repeated here). */
export function refillRoundPrompts(p: Phase): number {
  const d = dynamicSamplingOf(p);
  if (!d || d.mode !== 'refill' || p.kind !== 'rl') return 0;
  return Math.ceil((d.oversample * p.promptsPerStep) / d.minKeepRate - 1e-9);
}

/** The prompts and shards of one dynamic-sampling refill round of an rl step. */
export interface RefillPlan {
  /** 1-based refill round (round 0 is the step's planned rollout). */
  round: number;
  /** Items [promptOffset, promptOffset + count) of the train split. */
  promptOffset: number;
  count: number;
  /** Shards of the round, numbered on from `firstShard` (the step's shards so far). */
  shards: ShardPlan[];
}

/**
 * The prompts of refill round `round` (1..maxRounds) of an rl step, `want` of them (clamped to the
 * round's reservation), split into shards numbered from `firstShard`. Refill prompts come from a
 * region of the train stream past every phase's planned items: each (phase, step, round) owns
 * `refillRoundPrompts` items of it, the round takes a prefix. A step's refill prompts are thus a
 * function of the config, the step, the round and the count alone (the count is the advantage
 * activity's recorded answer), never of a cursor: they are the same after a replay, a retry or a
 * resume, and never overlap another step's prompts, planned or refilled.
 */
export function planRefill(
  config: RunConfig,
  plan: Pick<StepPlan, 'phaseIndex' | 'stepInPhase'>,
  round: number,
  want: number,
  firstShard: number,
): RefillPlan {
  const phase = config.phases[plan.phaseIndex];
  const d = phase ? dynamicSamplingOf(phase) : null;
  if (!phase || !d || d.mode !== 'refill') throw new RangeError(`phase ${plan.phaseIndex} has no dynamicSampling refill`);
  if (!Number.isInteger(round) || round < 1 || round > d.maxRounds)
    throw new RangeError(`refill round ${round} is outside 1..${d.maxRounds}`);
  const cap = refillRoundPrompts(phase);
  let base = config.phases.reduce((n, p) => n + p.steps * itemsPerStep(p), 0);
  for (let i = 0; i < plan.phaseIndex; i++)
    base += config.phases[i]!.steps * (dynamicSamplingOf(config.phases[i]!)?.maxRounds ?? 0) * refillRoundPrompts(config.phases[i]!);
  const promptOffset = base + (plan.stepInPhase * d.maxRounds + (round - 1)) * cap;
  const count = Math.max(0, Math.min(cap, Math.floor(want)));
  const per = config.rollout.promptsPerShard;
  const shards: ShardPlan[] = [];
  for (let s = 0; s * per < count; s++) {
    shards.push({ shard: firstShard + s, promptOffset: promptOffset + s * per, promptCount: Math.min(per, count - s * per) });
  }
  return { round, promptOffset, count, shards };
}

/**
 * Whether to evaluate the policy of checkpoint `v` (the weights after v steps): the initial
 * weights, the end of every phase, every `eval.every` steps, and the last checkpoint.
 */
export function evaluateAt(config: RunConfig, v: number): boolean {
  const total = totalSteps(config);
  if (v === 0 || v === total) return true;
  let end = 0;
  for (const p of config.phases) {
    end += p.steps;
    if (v === end) return true;
  }
  return config.eval.every > 0 && v % config.eval.every === 0;
}
