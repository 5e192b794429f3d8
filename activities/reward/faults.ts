/**
 * Fault drills for rewards: wraps a reward so that a chosen fraction of samples fails — the call
 * throws, returns NaN, or hangs past the timeout — as a flaky reward service would. Which samples
 * fail is a pure function of (seed, prompt id, sample id), so a drill is reproducible and a
 * retried step fails on the same samples. Used to check, end to end, that the run's error policy
 * does what it says (failures recorded with their message, counted in the step metrics, never a
 * silent zero).
 */
import { z } from '../common/config.js';
import { CounterRng, hash32 } from '../common/rng.js';
import type { RewardFn, RewardResult, RewardSample, RewardContext } from './types.js';

export const rewardFaultsSchema = z.strictObject({
  /** Fraction of samples whose reward fails (0 = off). */
  rate: z.number().min(0).max(1),
  /** How it fails: 'throw' an error, return 'nan', or 'hang' until the call's timeout aborts it. */
  kind: z.enum(['throw', 'nan', 'hang']).default('throw'),
  /** Seed of the choice of failing samples. */
  seed: z.number().int().min(0).default(0),
});
export type RewardFaults = z.output<typeof rewardFaultsSchema>;

/** Whether the drill fails this sample. */
export function failsSample(faults: RewardFaults, sample: Pick<RewardSample, 'promptId' | 'sampleId'>): boolean {
  if (faults.rate <= 0) return false;
  return new CounterRng(faults.seed, 'reward-fault', hash32(`${sample.promptId}\u0000${String(sample.sampleId)}`)).uniform(0) < faults.rate;
}

async function fail(faults: RewardFaults, sample: RewardSample, ctx: RewardContext): Promise<RewardResult> {
  if (faults.kind === 'nan') return { reward: Number.NaN };
  if (faults.kind === 'hang') {
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
    return { reward: Number.NaN };
  }
  throw new Error(`injected reward fault (drill) on ${sample.promptId}/${String(sample.sampleId)}`);
}

/** `inner` with the drill's failures mixed in. */
export function withRewardFaults<O>(inner: RewardFn<O>, faults: RewardFaults): RewardFn<O> {
  if (faults.rate <= 0) return inner;
  const wrapped: RewardFn<O> = { ...inner };
  if (inner.scoreBatch) {
    const batch = inner.scoreBatch.bind(inner);
    wrapped.scoreBatch = async (samples, ctx) => {
      if (samples.some((s) => failsSample(faults, s))) {
        const first = samples.find((s) => failsSample(faults, s))!;
        return [await fail(faults, first, ctx)];
      }
      return batch(samples, ctx);
    };
  } else {
    const score = inner.score!.bind(inner);
    wrapped.score = (sample, ctx) => (failsSample(faults, sample) ? fail(faults, sample, ctx) : score(sample, ctx));
  }
  return wrapped;
}
