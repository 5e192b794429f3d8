/**
 * Activities of the offline reward-annotation job (workflow: workflows/annotate-rewards.ts).
 *
 * Under the job's output prefix, each shard commits its rewards and the job settings they are a
 * function of (input sha256, reward, ...), after writing each chunk's rows as a resume point; the
 * job then commits all rewards in input order and a summary. The keys and names are spelled in
 * store/keys.ts (`annotationShardPrefix`, `annotationPartKey`, `ANNOTATION_*_NAME`).
 *
 * Every output is a pure function of the input file and the job config, so a re-executed
 * activity writes the same bytes; a committed shard or job is found and returned at once. A shard
 * committed by a *different* job (another input, reward or error policy aimed at the same output
 * prefix) is a non-retryable failure, never silently reused.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { ConfigError } from '../common/config.js';
import { logger } from '../common/log.js';
import { additionProblems, noisyCompletions } from './annotate-sample.js';
import {
  ANNOTATION_JOB_NAME,
  ANNOTATION_REWARDS_NAME,
  ANNOTATION_SUMMARY_NAME,
  annotationPartKey,
  annotationShardPrefix,
} from '../store/keys.js';
import { withStore } from '../store/open.js';
import { StoreError, NotFoundError } from '../store/errors.js';
import type { ObjectStore } from '../store/object-store.js';
import {
  artifactUri,
  canonicalJson,
  commit,
  sha256Hex,
  manifestKey,
  readCommitted,
  readArtifact,
  type Manifest,
} from '../store/manifest.js';
import { readTable, writeTable } from '../store/arrow.js';
import {
  ANNOTATION_INPUTS,
  REWARDS,
  type AnnotationInput,
  type AnnotationInputRow,
  type RewardsInput,
  type RewardsRow,
} from '../store/schemas.js';
import { createReward } from './registry.js';
import { scoreSamples, type ErrorPolicy } from './run.js';
import type { RewardSample, RewardSpec } from './types.js';
import type { AnnotateRewardsResult, AnnotationPlan, ShardPlan, ShardResult } from './annotate-types.js';

/** Errors that re-trying cannot fix (bad input, bad config) become non-retryable failures. */
async function classify<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ApplicationFailure) throw err;
    const permanent =
      err instanceof ConfigError ||
      err instanceof NotFoundError ||
      (err instanceof StoreError &&
        ['schema_mismatch', 'corrupt', 'invalid_rows', 'invalid_key', 'invalid_uri', 'integrity'].includes(err.code));
    if (permanent) {
      throw ApplicationFailure.create({
        message: `${what}: ${(err as Error).message}`,
        type: (err as Error).name,
        nonRetryable: true,
        cause: err as Error,
      });
    }
    throw err;
  }
}

/**
 * Runs `fn` while heartbeating `details()` every third of the activity's heartbeat timeout, so a
 * live worker is never mistaken for a dead one during long stretches without a natural heartbeat
 * point (a slow reward chunk, the rate-limit pause, reading a large input, concatenating shards).
 * A dead or hung process stops heartbeating, which is what the heartbeat timeout is there to catch.
 */
async function keepingAlive<T>(details: () => unknown, fn: () => Promise<T>): Promise<T> {
  const ctx = Context.current();
  const timeoutMs = ctx.info.heartbeatTimeoutMs;
  if (!timeoutMs) return fn();
  const beat = () => {
    const d = details();
    if (d === undefined) ctx.heartbeat();
    else ctx.heartbeat(d);
  };
  // No beat at once: the SDK sends the first heartbeat immediately and throttles the next ones, so
  // an early empty beat would hold back the first real resume point (a crash right after it loses it).
  const timer = setInterval(beat, Math.max(100, Math.floor(timeoutMs / 3)));
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}

async function loadInputs(store: ObjectStore, key: string): Promise<{ rows: AnnotationInputRow[]; sha: string }> {
  const bytes = await store.get(key);
  return { rows: readTable(ANNOTATION_INPUTS, bytes, store.uri(key)), sha: sha256Hex(bytes) };
}

export interface PlanInput {
  storeUri: string;
  inputKey: string;
  shardSize: number;
}

/** Reads and validates the input table, and splits it into shards of `shardSize` records. */
export async function planAnnotation(input: PlanInput): Promise<AnnotationPlan> {
  return classify(`cannot annotate ${input.inputKey}`, () =>
    keepingAlive(
      () => undefined,
      () =>
        withStore(input.storeUri, async (store) => {
          const { rows, sha } = await loadInputs(store, input.inputKey);
          const shards: ShardPlan[] = [];
          for (let start = 0, index = 0; start < rows.length; start += input.shardSize, index++) {
            shards.push({ index, start, end: Math.min(rows.length, start + input.shardSize) });
          }
          return { records: rows.length, inputSha256: sha, shards };
        }),
    ),
  );
}

export interface ShardInput {
  storeUri: string;
  inputKey: string;
  inputSha256: string;
  outputPrefix: string;
  jobId: string;
  shard: ShardPlan;
  chunkSize: number;
  reward: RewardSpec;
  errorPolicy: ErrorPolicy;
  /** This shard's pace: its share of the job's maxRecordsPerSecond (0 = unlimited). */
  maxRecordsPerSecond: number;
}

/**
 * What a shard's output is a function of. It is committed with the shard (`job.json`), so a later
 * run that finds the shard committed can tell whether it is the same job (skip it) or another one
 * pointed at the same output prefix (fail: committed outputs are never rewritten, and silently
 * returning another job's rewards would be wrong).
 */
function shardJob(input: ShardInput): Record<string, unknown> {
  return {
    jobId: input.jobId,
    inputKey: input.inputKey,
    inputSha256: input.inputSha256,
    shard: { index: input.shard.index, start: input.shard.start, end: input.shard.end },
    reward: { name: input.reward.name, options: input.reward.options ?? {} },
    errorPolicy: input.errorPolicy,
  };
}

/** Fails non-retryably when a committed shard was produced by a different job than `input`'s. */
async function checkSameJob(store: ObjectStore, prefix: string, manifest: Manifest, input: ShardInput): Promise<void> {
  if (!manifest.artifacts.some((e) => e.name === ANNOTATION_JOB_NAME)) return; // committed before job.json existed
  const committed = JSON.parse(new TextDecoder().decode(await readArtifact(store, prefix, ANNOTATION_JOB_NAME))) as Record<string, unknown>;
  const wanted = JSON.parse(canonicalJson(shardJob(input))) as Record<string, unknown>;
  const differ = Object.keys(wanted).filter((k) => canonicalJson(committed[k]) !== canonicalJson(wanted[k]));
  if (differ.length === 0) return;
  throw ApplicationFailure.nonRetryable(
    `${store.uri(manifestKey(prefix))} was committed by a different job (${differ.map((k) => `${k}: committed ${JSON.stringify(committed[k])}, now ${JSON.stringify(wanted[k])}`).join('; ')}). ` +
      'Committed outputs are never rewritten: give this job a new jobId or outputPrefix.',
    'JobMismatch',
  );
}

/** Resume point kept in the activity's heartbeat details. */
interface ShardHeartbeat {
  nextChunk: number;
  recordsDone: number;
  records: number;
}

function summarize(index: number, rows: readonly { reward?: number | null; error?: string | null }[], skipped: boolean): ShardResult {
  let rewardSum = 0,
    correct = 0,
    errors = 0,
    dropped = 0;
  for (const r of rows) {
    if (r.error != null) errors++;
    if (r.reward == null) dropped++;
    else {
      rewardSum += r.reward;
      if (r.reward >= 1) correct++;
    }
  }
  return { index, records: rows.length, rewardSum, correct, errors, dropped, skipped };
}

/**
 * Scores one shard chunk by chunk, heartbeating after each chunk with a resume point, then
 * commits the shard's rewards. A retry after a crash continues from the last heartbeat; a shard
 * found committed is summarised and returned without recomputing.
 */
export async function annotateShard(input: ShardInput): Promise<ShardResult> {
  const ctx = Context.current();
  const log = logger('annotate', { job: input.jobId, shard: input.shard.index });
  const prefix = annotationShardPrefix(input.outputPrefix, input.shard.index);
  const resume = ctx.info.heartbeatDetails as ShardHeartbeat | undefined;
  // The latest resume point, re-sent by keepingAlive between chunks.
  let progress: ShardHeartbeat | undefined = resume;
  return classify(`shard ${input.shard.index} of ${input.inputKey}`, () =>
    keepingAlive(
      () => progress,
      () =>
        withStore(input.storeUri, async (store) => {
          const done = await readCommitted(store, prefix);
          if (done) {
            await checkSameJob(store, prefix, done, input);
            log.info('shard already committed: skipping');
            return summarize(
              input.shard.index,
              readTable(
                REWARDS,
                await readArtifact(store, prefix, ANNOTATION_REWARDS_NAME),
                store.uri(`${prefix}/${ANNOTATION_REWARDS_NAME}`),
              ),
              true,
            );
          }
          const { rows: all, sha } = await loadInputs(store, input.inputKey);
          if (sha !== input.inputSha256) {
            throw ApplicationFailure.nonRetryable(
              `input ${store.uri(input.inputKey)} changed since the job was planned (sha256 ${sha} != ${input.inputSha256}): start a new job`,
            );
          }
          const rows = all.slice(input.shard.start, input.shard.end);
          const reward = createReward(input.reward);
          const chunks = Math.ceil(rows.length / input.chunkSize);
          const from = resume?.nextChunk ?? 0;
          if (from > 0) log.info({ from, chunks }, 'resuming from heartbeat');
          // Each chunk's rows: scored in this attempt, or read back from the part an earlier attempt wrote.
          const parts: (RewardsInput | RewardsRow)[][] = [];
          try {
            for (let c = 0; c < chunks; c++) {
              const partKey = annotationPartKey(input.outputPrefix, input.shard.index, c);
              if (c < from && (await store.head(partKey))) {
                parts.push(readTable(REWARDS, await store.get(partKey), store.uri(partKey)));
                continue;
              }
              const t0 = Date.now();
              const slice = rows.slice(c * input.chunkSize, (c + 1) * input.chunkSize);
              const samples: RewardSample[] = slice.map((r) => ({
                promptId: r.prompt_id,
                sampleId: r.sample_id ?? 0,
                prompt: r.prompt,
                completion: r.completion,
                reference: r.reference ?? undefined,
              }));
              const outcome = await scoreSamples(reward, samples, input.errorPolicy, { signal: ctx.cancellationSignal });
              const out: RewardsInput[] = outcome.rows.map((r) => ({
                run_id: input.jobId,
                step: 0,
                prompt_id: r.promptId,
                sample_id: Number(r.sampleId),
                node_id: null,
                reward: r.reward,
                components: r.components ?? {},
                token_rewards: r.processRewards,
                error: r.error,
              }));
              await store.put(partKey, writeTable(REWARDS, out));
              parts.push(out);
              const recordsDone = Math.min(rows.length, (c + 1) * input.chunkSize);
              progress = { nextChunk: c + 1, recordsDone, records: rows.length };
              ctx.heartbeat(progress);
              if (input.maxRecordsPerSecond > 0) {
                const wait = (slice.length / input.maxRecordsPerSecond) * 1000 - (Date.now() - t0);
                if (wait > 0) await sleep(wait, undefined, { signal: ctx.cancellationSignal });
              }
            }
          } finally {
            await reward.close?.();
          }
          const merged = parts.flat();
          const { manifest } = await commit(store, prefix, [
            { name: ANNOTATION_REWARDS_NAME, bytes: writeTable(REWARDS, merged), schema: REWARDS },
            { name: ANNOTATION_JOB_NAME, bytes: new TextEncoder().encode(canonicalJson(shardJob(input))) },
          ]);
          // A racing attempt of another job may have committed first.
          await checkSameJob(store, prefix, manifest, input);
          log.info({ records: merged.length }, 'shard committed');
          return summarize(input.shard.index, merged, false);
        }),
    ),
  );
}

export interface FinalizeInput {
  storeUri: string;
  outputPrefix: string;
  jobId: string;
  shards: ShardResult[];
}

/** Concatenates the committed shards in order and commits the job's rewards table and summary. */
export async function finalizeAnnotation(input: FinalizeInput): Promise<AnnotateRewardsResult> {
  return classify(`finalize ${input.outputPrefix}`, () =>
    keepingAlive(
      () => undefined,
      () =>
        withStore(input.storeUri, async (store) => {
          const result = (
            summary: Omit<AnnotateRewardsResult, 'rewardsUri' | 'manifestUri'>,
            manifest: Manifest,
          ): AnnotateRewardsResult => ({
            ...summary,
            rewardsUri: artifactUri(store, input.outputPrefix, manifest, ANNOTATION_REWARDS_NAME),
            manifestUri: store.uri(manifestKey(input.outputPrefix)),
          });
          const committed = await readCommitted(store, input.outputPrefix);
          if (committed) {
            return result(
              JSON.parse(new TextDecoder().decode(await readArtifact(store, input.outputPrefix, ANNOTATION_SUMMARY_NAME))),
              committed,
            );
          }
          const rows: RewardsRow[] = [];
          for (const s of [...input.shards].sort((a, b) => a.index - b.index)) {
            const prefix = annotationShardPrefix(input.outputPrefix, s.index);
            rows.push(
              ...readTable(
                REWARDS,
                await readArtifact(store, prefix, ANNOTATION_REWARDS_NAME),
                store.uri(`${prefix}/${ANNOTATION_REWARDS_NAME}`),
              ),
            );
          }
          const t = summarize(0, rows, false);
          const scored = t.records - t.dropped;
          const summary = {
            jobId: input.jobId,
            records: t.records,
            meanReward: scored > 0 ? t.rewardSum / scored : 0,
            accuracy: scored > 0 ? t.correct / scored : 0,
            errors: t.errors,
            dropped: t.dropped,
          };
          const { manifest } = await commit(store, input.outputPrefix, [
            { name: ANNOTATION_REWARDS_NAME, bytes: writeTable(REWARDS, rows), schema: REWARDS },
            { name: ANNOTATION_SUMMARY_NAME, bytes: new TextEncoder().encode(`${JSON.stringify(summary, null, 2)}\n`) },
          ]);
          return result(summary, manifest);
        }),
    ),
  );
}

/**
 * Writes a generated annotation input (addition problems answered by a seeded noisy solver, ~70%
 * right) to the store. Returns the number of records. Used by the demo and the tests.
 */
export async function writeSampleInputs(storeUri: string, key: string, records: number, seed: number): Promise<number> {
  const problems = additionProblems(seed, records);
  const completions = noisyCompletions(problems, seed + 1);
  const rows: AnnotationInput[] = problems.map((p, i) => ({
    prompt_id: p.promptId,
    sample_id: 0,
    prompt: p.prompt,
    completion: completions[i]!,
    reference: p.answer,
  }));
  await withStore(storeUri, (s) => s.put(key, writeTable(ANNOTATION_INPUTS, rows)));
  return rows.length;
}
