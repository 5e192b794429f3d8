/**
 * Running a reward over samples — "errors are data": a failure is recorded, never hidden.
 *
 * `scoreSamples` calls a reward on every sample with a per-call timeout and bounded concurrency.
 * A reward that throws, returns NaN or ±Infinity (in its reward, a component or a process reward),
 * returns something that is not a `RewardResult`, or runs past its timeout is recorded per sample
 * with its error text and kind, and the run's error policy is applied:
 *
 * - `fail`: the step fails with a non-retryable Temporal `ApplicationFailure` (type `RewardError`)
 *   naming the sample and the error — nothing is scored silently;
 * - `drop`: the sample keeps its error text, gets `reward: null` and `dropped: true`; the advantage
 *   stage leaves it out;
 * - `default`: the sample gets the configured `defaultReward`, and keeps its error text, so the
 *   substitution is visible in the rewards table and the step metrics.
 *
 * A failed sample is never turned into a silent zero. The returned rows are ready for the rewards
 * table; the counts go into the step metrics.
 *
 * A note on timeouts: a timeout aborts `ctx.signal` and stops waiting; an async reward should pass
 * the signal to its I/O. A synchronous reward that never returns cannot be interrupted inside the
 * process — rewards that run untrusted code do it in a child process (see `code.ts`).
 */
import { ApplicationFailure } from '@temporalio/common';
import { parseConfig, z } from '../common/config.js';
import { logger } from '../common/log.js';
import { mapLimit } from '../common/pool.js';
import type { JsonValue, RewardContext, RewardFn, RewardResult, RewardSample } from './types.js';

export const ErrorPolicySchema = z
  .strictObject({
    /** What to do with a sample whose reward failed: fail the step, drop the sample, or use `defaultReward`. */
    onError: z.enum(['fail', 'drop', 'default']).default('fail'),
    /** The reward given to a failed sample when `onError` is `default` (required then; finite). */
    defaultReward: z.number().optional(),
    /** Wall-clock limit of one `score` call (one sample) or one `scoreBatch` call (one chunk), in ms. */
    timeoutMs: z.number().int().positive().default(30_000),
    /** How many `score` / `scoreBatch` calls run at once. */
    concurrency: z.number().int().positive().default(8),
    /** Chunk size for rewards that score batches (`scoreBatch`). */
    batchSize: z.number().int().positive().default(64),
  })
  .superRefine((p, ctx) => {
    if (p.onError === 'default' && (p.defaultReward === undefined || !Number.isFinite(p.defaultReward))) {
      ctx.addIssue({
        code: 'custom',
        path: ['defaultReward'],
        message: 'onError "default" needs a finite defaultReward (the value given to samples whose reward failed)',
      });
    }
    if (p.onError !== 'default' && p.defaultReward !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['defaultReward'],
        message: `defaultReward is only used with onError "default" (onError is "${p.onError}"): remove it or set onError: "default"`,
      });
    }
  });

export type ErrorPolicy = z.output<typeof ErrorPolicySchema>;
export type ErrorPolicyInput = z.input<typeof ErrorPolicySchema>;

/** Why a sample has no reward of its own. */
export type RewardErrorKind = 'threw' | 'timeout' | 'non_finite' | 'invalid';

/** One row of the rewards table (columns: `REWARDS` in store/schemas.ts), before run id and step are attached. */
export interface RewardRow {
  promptId: string;
  sampleId: string | number;
  /** The reward; `defaultReward` for a defaulted sample; null for a dropped one. */
  reward: number | null;
  components: Record<string, number> | null;
  processRewards: number[] | null;
  /** Error text when the reward failed on this sample, else null. */
  error: string | null;
  errorKind: RewardErrorKind | null;
  /** True when the policy dropped the sample (its reward is null). */
  dropped: boolean;
}

/** Counts for the step metrics. `errors` counts every failed sample; the others break it down. */
export interface RewardCounts {
  total: number;
  scored: number;
  errors: number;
  thrown: number;
  timeouts: number;
  nonFinite: number;
  invalid: number;
  dropped: number;
  defaulted: number;
}

export interface ScoreOptions {
  /** The training step (passed to the reward's context). */
  step?: number;
  /** Reward state from run state, for stateful rewards (defaults to the reward's initial state). */
  state?: JsonValue;
  /** Cancellation of the whole call (e.g. the activity's cancellation signal). */
  signal?: AbortSignal;
  /** Called after each sample or chunk, for activity heartbeats. */
  onProgress?(done: number, total: number): void;
}

export interface ScoreOutcome {
  rows: RewardRow[];
  counts: RewardCounts;
  /** Results per sample in input order (null for failed samples), e.g. for `updateState`. */
  results: (RewardResult | null)[];
}

class SampleFailure extends Error {
  constructor(
    readonly kind: RewardErrorKind,
    message: string,
  ) {
    super(message);
  }
}

function errorText(e: unknown): string {
  if (e instanceof Error) return e.message || e.name;
  if (typeof e === 'string') return e;
  try {
    return `non-Error thrown: ${JSON.stringify(e)}`;
  } catch {
    return `non-Error thrown: ${String(e)}`;
  }
}

/**
 * A failure of a part of a reward (one function of a composed reward) as the whole reward's, its
 * message prefixed with `what` ("reward function x"); a failure `validateResult` found keeps its
 * kind (non_finite, invalid), anything else thrown is `threw`.
 */
export function failureOf(what: string, err: unknown): Error {
  return new SampleFailure(err instanceof SampleFailure ? err.kind : 'threw', `${what}: ${errorText(err)}`);
}

/** Checks a reward's return value; throws SampleFailure naming what is wrong. */
export function validateResult(value: unknown, rewardName: string): RewardResult {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new SampleFailure('invalid', `reward ${rewardName} returned ${JSON.stringify(value)}, expected { reward: number, ... }`);
  }
  const r = value as Record<string, unknown>;
  if (typeof r.reward !== 'number') {
    throw new SampleFailure(
      'invalid',
      `reward ${rewardName} returned reward ${JSON.stringify(r.reward)} (${typeof r.reward}), expected a number`,
    );
  }
  if (!Number.isFinite(r.reward)) {
    throw new SampleFailure('non_finite', `reward ${rewardName} returned a non-finite reward (${r.reward})`);
  }
  const out: RewardResult = { reward: r.reward };
  if (r.components !== undefined) {
    if (r.components === null || typeof r.components !== 'object' || Array.isArray(r.components)) {
      throw new SampleFailure('invalid', `reward ${rewardName} returned components that are not a { name: number } object`);
    }
    const comps: Record<string, number> = {};
    for (const [k, v] of Object.entries(r.components as Record<string, unknown>)) {
      if (typeof v !== 'number')
        throw new SampleFailure('invalid', `reward ${rewardName} returned component ${k} = ${JSON.stringify(v)}, expected a number`);
      if (!Number.isFinite(v)) throw new SampleFailure('non_finite', `reward ${rewardName} returned a non-finite component ${k} (${v})`);
      comps[k] = v;
    }
    out.components = comps;
  }
  if (r.processRewards !== undefined) {
    if (!Array.isArray(r.processRewards)) {
      throw new SampleFailure('invalid', `reward ${rewardName} returned processRewards that is not an array of numbers`);
    }
    r.processRewards.forEach((v: unknown, i: number) => {
      if (typeof v !== 'number')
        throw new SampleFailure('invalid', `reward ${rewardName} returned processRewards[${i}] = ${JSON.stringify(v)}, expected a number`);
      if (!Number.isFinite(v))
        throw new SampleFailure('non_finite', `reward ${rewardName} returned a non-finite processRewards[${i}] (${v})`);
    });
    out.processRewards = r.processRewards as number[];
  }
  return out;
}

/** Runs `call` with a timeout; the context's signal aborts on timeout or on the parent's abort. */
async function withTimeout<T>(
  timeoutMs: number,
  parent: AbortSignal | undefined,
  call: (signal: AbortSignal) => T | Promise<T>,
): Promise<T> {
  const ctl = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const onParentAbort = () => ctl.abort(parent?.reason);
  parent?.addEventListener('abort', onParentAbort, { once: true });
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new SampleFailure('timeout', `timed out after ${timeoutMs} ms`);
        ctl.abort(err);
        reject(err);
      }, timeoutMs);
    });
    const work = Promise.resolve().then(() => call(ctl.signal));
    work.catch(() => undefined); // a late rejection after the timeout must not go unhandled
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
    parent?.removeEventListener('abort', onParentAbort);
  }
}

/**
 * Scores `samples` with `rewardFn` under `policy` (validated with `ErrorPolicySchema`; defaults
 * filled). Returns rows in input order, counts, and the raw results.
 */
export async function scoreSamples(
  rewardFn: RewardFn,
  samples: readonly RewardSample[],
  policyInput: ErrorPolicyInput | ErrorPolicy = {},
  opts: ScoreOptions = {},
): Promise<ScoreOutcome> {
  const policy = parseConfig(ErrorPolicySchema, policyInput, 'reward error policy');
  if (!rewardFn.score && !rewardFn.scoreBatch) {
    throw new Error(`reward ${rewardFn.name} has neither score nor scoreBatch: a RewardFn must implement one`);
  }
  const log = logger('reward', { reward: rewardFn.name });
  const state = opts.state ?? rewardFn.initialState?.();
  const outcome: (RewardResult | SampleFailure | undefined)[] = new Array(samples.length);
  const ctxFor = (signal: AbortSignal): RewardContext => ({ step: opts.step ?? 0, signal, log, state });

  // Fail fast under the `fail` policy: stop scoring once a sample failed.
  const stop = new AbortController();
  const parentSignals = [stop.signal, ...(opts.signal ? [opts.signal] : [])];
  const parent = AbortSignal.any(parentSignals);
  let firstFailure: number | undefined;
  let done = 0;

  const record = (i: number, r: RewardResult | SampleFailure) => {
    outcome[i] = r;
    if (r instanceof SampleFailure) {
      log.warn(
        { promptId: samples[i]!.promptId, sampleId: samples[i]!.sampleId, kind: r.kind, error: r.message },
        'reward failed on a sample',
      );
      if (policy.onError === 'fail' && firstFailure === undefined) {
        firstFailure = i;
        stop.abort(new Error('another sample failed under policy "fail"'));
      }
    }
  };
  const asFailure = (e: unknown): SampleFailure => (e instanceof SampleFailure ? e : new SampleFailure('threw', errorText(e)));

  const cancelled = () => opts.signal?.aborted === true;

  if (rewardFn.scoreBatch) {
    const chunks: [number, number][] = [];
    for (let s = 0; s < samples.length; s += policy.batchSize) chunks.push([s, Math.min(samples.length, s + policy.batchSize)]);
    await mapLimit(chunks, policy.concurrency, async ([a, b]) => {
      if (parent.aborted) return;
      const batch = samples.slice(a, b);
      try {
        const results = await withTimeout(policy.timeoutMs, parent, (signal) => rewardFn.scoreBatch!(batch, ctxFor(signal)));
        if (cancelled()) return;
        if (!Array.isArray(results) || results.length !== batch.length) {
          const got = Array.isArray(results) ? `${results.length} results` : JSON.stringify(results);
          const f = new SampleFailure('invalid', `reward ${rewardFn.name} scoreBatch returned ${got} for ${batch.length} samples`);
          for (let i = a; i < b; i++) record(i, f);
        } else {
          for (let i = a; i < b; i++) {
            try {
              record(i, validateResult(results[i - a], rewardFn.name));
            } catch (e) {
              record(i, asFailure(e));
            }
          }
        }
      } catch (e) {
        if (cancelled()) return;
        const f = asFailure(e);
        for (let i = a; i < b; i++) record(i, f);
      }
      done += b - a;
      opts.onProgress?.(done, samples.length);
    });
  } else {
    await mapLimit(samples, policy.concurrency, async (_, i) => {
      if (parent.aborted) return;
      try {
        const r = await withTimeout(policy.timeoutMs, parent, (signal) => rewardFn.score!(samples[i]!, ctxFor(signal)));
        if (cancelled()) return;
        record(i, validateResult(r, rewardFn.name));
      } catch (e) {
        if (cancelled()) return;
        record(i, asFailure(e));
      }
      done += 1;
      opts.onProgress?.(done, samples.length);
    });
  }

  if (opts.signal?.aborted) {
    throw opts.signal.reason instanceof Error ? opts.signal.reason : new Error(`scoring cancelled: ${errorText(opts.signal.reason)}`);
  }
  if (firstFailure !== undefined) {
    const s = samples[firstFailure]!;
    const f = outcome[firstFailure] as SampleFailure;
    throw ApplicationFailure.create({
      message:
        `reward ${rewardFn.name} failed on sample ${s.promptId}/${s.sampleId} (${f.kind}): ${f.message}. ` +
        'Fix the reward or the data, or set the reward error policy to "drop" or "default".',
      type: 'RewardError',
      nonRetryable: true,
      details: [{ reward: rewardFn.name, promptId: s.promptId, sampleId: s.sampleId, kind: f.kind, error: f.message }],
    });
  }

  const counts: RewardCounts = {
    total: samples.length,
    scored: 0,
    errors: 0,
    thrown: 0,
    timeouts: 0,
    nonFinite: 0,
    invalid: 0,
    dropped: 0,
    defaulted: 0,
  };
  const rows: RewardRow[] = [];
  const results: (RewardResult | null)[] = [];
  samples.forEach((s, i) => {
    const r = outcome[i];
    if (r === undefined) throw new Error(`internal: sample ${s.promptId}/${s.sampleId} was not scored`);
    if (r instanceof SampleFailure) {
      counts.errors++;
      if (r.kind === 'threw') counts.thrown++;
      else if (r.kind === 'timeout') counts.timeouts++;
      else if (r.kind === 'non_finite') counts.nonFinite++;
      else counts.invalid++;
      const dropped = policy.onError === 'drop';
      if (dropped) counts.dropped++;
      else counts.defaulted++;
      rows.push({
        promptId: s.promptId,
        sampleId: s.sampleId,
        reward: dropped ? null : policy.defaultReward!,
        components: null,
        processRewards: null,
        error: r.message,
        errorKind: r.kind,
        dropped,
      });
      results.push(null);
    } else {
      counts.scored++;
      rows.push({
        promptId: s.promptId,
        sampleId: s.sampleId,
        reward: r.reward,
        components: r.components ?? null,
        processRewards: r.processRewards ?? null,
        error: null,
        errorKind: null,
        dropped: false,
      });
      results.push(r);
    }
  });
  return { rows, counts, results };
}
