/**
 * annotateRewards: offline reward annotation of a table of (prompt, completion, reference) records.
 *
 *   plan ─► score shard 0 ┐
 *        ─► score shard 1 ├─► finalize (one rewards.arrow + manifest.json)
 *        ─► score shard … ┘
 *
 * Each shard is an activity on the reward queue that heartbeats its progress, resumes from its last
 * heartbeat after a crash, and commits its own rewards artifact under a manifest; a re-run finds
 * committed shards and skips them. The workflow only passes store keys, never records.
 */
import * as wf from '@temporalio/workflow';
import type { AnnotateRewardsInput, AnnotateRewardsResult, ShardResult } from '../activities/reward/annotate-types.js';
import { PHASE, RUN_NAME, STATUS, MEAN_REWARD } from './search-attributes.js';
import { activityCaller, type CallActivity } from './call-activity.js';

export type { AnnotateRewardsInput, AnnotateRewardsResult };

export interface AnnotateProgress {
  phase: 'planning' | 'scoring' | 'finalizing' | 'done';
  records: number;
  shards: number;
  shardsDone: number;
  shardsSkipped: number;
  recordsScored: number;
  errors: number;
}

/** Query: where the job stands. */
export const annotateProgressQuery = wf.defineQuery<AnnotateProgress>('progress');

/** Timeouts, heartbeats and retries of the job's activities (the queue comes from ACTIVITY_QUEUES). */
function options(input: AnnotateRewardsInput): wf.ActivityOptions {
  return {
    startToCloseTimeout: '1 hour',
    heartbeatTimeout: input.heartbeatTimeoutMs,
    retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 20 },
  };
}

export async function annotateRewards(input: AnnotateRewardsInput): Promise<AnnotateRewardsResult> {
  const call = activityCaller(options(input));
  const progress: AnnotateProgress = {
    phase: 'planning',
    records: 0,
    shards: 0,
    shardsDone: 0,
    shardsSkipped: 0,
    recordsScored: 0,
    errors: 0,
  };
  wf.setHandler(annotateProgressQuery, () => progress);
  wf.upsertSearchAttributes([
    { key: RUN_NAME, value: input.jobId },
    { key: PHASE, value: 'annotate' },
    { key: STATUS, value: 'running' },
  ]);
  const details = () =>
    wf.setCurrentDetails(
      [
        `## Reward annotation \`${input.jobId}\``,
        `- **phase:** ${progress.phase}`,
        `- **reward:** \`${input.reward.name}\``,
        `- **shards:** ${progress.shardsDone} / ${progress.shards} done (${progress.shardsSkipped} already committed)`,
        `- **records scored:** ${progress.recordsScored} / ${progress.records}, reward errors: ${progress.errors}`,
        `- **input:** \`${input.storeUri}\` · \`${input.inputKey}\``,
        `- **output:** \`${input.outputPrefix}/\``,
      ].join('\n'),
    );
  details();

  try {
    return await annotate(input, call, progress, details);
  } catch (err) {
    // Without this the job would stay "running" in search-attribute queries after it failed.
    if (wf.patched('annotate-status-on-failure')) {
      wf.upsertSearchAttributes([{ key: STATUS, value: wf.isCancellation(err) ? 'cancelled' : 'failed' }]);
    }
    throw err;
  }
}

async function annotate(
  input: AnnotateRewardsInput,
  call: CallActivity,
  progress: AnnotateProgress,
  details: () => void,
): Promise<AnnotateRewardsResult> {
  const plan = await call('planAnnotation', `plan · ${input.inputKey}`, {
    storeUri: input.storeUri,
    inputKey: input.inputKey,
    shardSize: input.shardSize,
  });
  progress.records = plan.records;
  progress.shards = plan.shards.length;
  progress.phase = 'scoring';
  details();

  const results: ShardResult[] = new Array(plan.shards.length);
  const lanes = Math.min(input.maxConcurrentShards, plan.shards.length);
  // The rate limit is the job's: each of the shards scored at once gets its share. (Runs started
  // before this patch gave every shard the whole rate.)
  const shardRate = wf.patched('annotate-rate-per-job') ? input.maxRecordsPerSecond / lanes : input.maxRecordsPerSecond;
  let next = 0;
  const lane = async () => {
    while (next < plan.shards.length) {
      const shard = plan.shards[next++]!;
      const r = await call(
        'annotateShard',
        `reward · shard ${shard.index + 1}/${plan.shards.length} · records ${shard.start}–${shard.end - 1}`,
        {
          storeUri: input.storeUri,
          inputKey: input.inputKey,
          inputSha256: plan.inputSha256,
          outputPrefix: input.outputPrefix,
          jobId: input.jobId,
          shard,
          chunkSize: input.chunkSize,
          reward: input.reward,
          errorPolicy: input.errorPolicy,
          maxRecordsPerSecond: shardRate,
        },
      );
      results[shard.index] = r;
      progress.shardsDone++;
      if (r.skipped) progress.shardsSkipped++;
      progress.recordsScored += r.records;
      progress.errors += r.errors;
      details();
    }
  };
  await Promise.all(Array.from({ length: lanes }, lane));

  progress.phase = 'finalizing';
  details();
  const result = await call('finalizeAnnotation', `commit · ${input.outputPrefix}`, {
    storeUri: input.storeUri,
    outputPrefix: input.outputPrefix,
    jobId: input.jobId,
    shards: results,
  });
  progress.phase = 'done';
  details();
  wf.upsertSearchAttributes([
    { key: STATUS, value: 'completed' },
    { key: MEAN_REWARD, value: result.meanReward },
  ]);
  return result;
}
