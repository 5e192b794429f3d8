/**
 * The input, options and results of the offline reward-annotation job (`annotateRewards`).
 * The schema here is the one place its options and their defaults are declared.
 */
import { z, parseConfig, ConfigError } from '../common/config.js';
import { defaultRegistry } from './registry.js';
import { ErrorPolicySchema } from './run.js';
import { annotationPrefix, validateKey } from '../store/keys.js';
import { parseStoreUri } from '../store/open.js';

/** A zod check that reports a store helper's error message (which names the rule broken) as the issue. */
function checkedBy(check: (v: string) => void) {
  return (v: string, ctx: z.core.$RefinementCtx<string>) => {
    try {
      check(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  };
}

function checkJobStoreUri(uri: string): void {
  parseStoreUri(uri);
  if (uri.startsWith('file://') && !uri.startsWith('file:///') && !uri.startsWith('file://localhost/')) {
    throw new Error("a relative file:// store would be resolved in each worker's working directory; give an absolute file:///dir");
  }
}

export const AnnotateRewardsConfig = z.strictObject({
  /** Job id; also the Temporal workflow id and the `run_id` column of the output. */
  jobId: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'use letters, digits, ".", "_" or "-" (at most 128)'),
  /** Object store holding input and output: `file:///abs/dir` or `s3://bucket/prefix`. */
  storeUri: z
    .string()
    .regex(/^(file|s3):\/\/.+/, 'must be file:///absolute/dir or s3://bucket[/prefix]')
    .superRefine(checkedBy(checkJobStoreUri)),
  /** Key (inside the store) of the Arrow file of records to score (schema `annotation_inputs`). */
  inputKey: z.string().min(1).superRefine(checkedBy(validateKey)),
  /** Key prefix of the outputs (a trailing `/` is dropped); default `annotationPrefix(jobId)`, `annotations/{jobId}`. */
  outputPrefix: z
    .string()
    .min(1)
    .superRefine(checkedBy((p) => validateKey(p.replace(/\/+$/, ''))))
    .optional(),
  /** Records per shard: one activity, one committed artifact each. */
  shardSize: z.number().int().positive().default(1000),
  /** Records per heartbeat / resume point inside a shard. */
  chunkSize: z.number().int().positive().default(100),
  /** Shards scored at once (bounded fan-out). */
  maxConcurrentShards: z.number().int().positive().default(4),
  /**
   * The reward, by registry name, and its options (activities/reward/README.md lists them). The
   * default, `math_equivalence`, extracts the final answer (`\\boxed{}`, `#### n`, "the answer is",
   * last number) and compares it with the reference as exact numbers, falling back to normalised text.
   */
  reward: z
    .strictObject({ name: z.string().min(1), options: z.record(z.string(), z.unknown()).default({}) })
    .default({ name: 'math_equivalence', options: {} }),
  /**
   * What a reward that throws, returns NaN/Infinity or times out turns into (see run.ts): the
   * error text is always kept in the `error` column; `onError` then fails the job, drops the record,
   * or gives it `defaultReward`. Also sets the per-record timeout and scoring concurrency.
   */
  errorPolicy: ErrorPolicySchema.prefault({ onError: 'default', defaultReward: 0 }),
  /** Heartbeat timeout of a shard: how fast a dead worker's shard is retried elsewhere. */
  heartbeatTimeoutMs: z.number().int().min(1000).default(10_000),
  /**
   * Pace of the whole job in records per second, for rate-limited rewards (LLM judges behind a
   * quota): the shards scored at once share it. 0 = unlimited.
   */
  maxRecordsPerSecond: z.number().min(0).default(0),
});

export type AnnotateRewardsConfig = z.input<typeof AnnotateRewardsConfig>;
export type AnnotateRewardsInput = Omit<z.output<typeof AnnotateRewardsConfig>, 'outputPrefix'> & { outputPrefix: string };

/** Validates a user's job config (naming any bad field) and fills defaults. */
export function annotateInput(config: unknown): AnnotateRewardsInput {
  const c = parseConfig(AnnotateRewardsConfig, config, 'annotate config');
  // The reward's name and options too, before anything starts (not in the first shard's activity).
  try {
    defaultRegistry().validate(c.reward);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    const at = (p: string) => (err.what === 'reward spec' ? `reward.${p}` : `reward.options${p ? `.${p}` : ''}`);
    throw new ConfigError(
      'annotate config',
      err.issues.map((i) => ({ path: at(i.path), message: i.message })),
    );
  }
  return { ...c, outputPrefix: (c.outputPrefix ?? annotationPrefix(c.jobId)).replace(/\/+$/, '') };
}

export interface ShardPlan {
  index: number;
  start: number;
  end: number;
}

export interface AnnotationPlan {
  records: number;
  inputSha256: string;
  shards: ShardPlan[];
}

export interface ShardResult {
  index: number;
  /** Records in the shard's committed artifact (dropped ones excluded). */
  records: number;
  rewardSum: number;
  /** Records with reward >= 1 (a verifiable reward's "correct"). */
  correct: number;
  errors: number;
  dropped: number;
  /** True when the shard was found committed and not recomputed. */
  skipped: boolean;
}

export interface AnnotateRewardsResult {
  jobId: string;
  records: number;
  meanReward: number;
  accuracy: number;
  errors: number;
  dropped: number;
  /** Full URI of the committed rewards table and of its manifest. */
  rewardsUri: string;
  manifestUri: string;
}
