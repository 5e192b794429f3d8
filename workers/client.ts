/**
 * Client functions: start durable-rl workflows and follow them. Used by the CLI and by tests.
 */
import { WorkflowIdConflictPolicy, WorkflowIdReusePolicy, type Client, type WorkflowHandle } from '@temporalio/client';
import { annotateInput, type AnnotateRewardsResult } from '../activities/reward/annotate-types.js';
import { TASK_QUEUES } from '../workflows/task-queues.js';
import type { annotateRewards } from '../workflows/annotate-rewards.js';
import { annotateProgressQuery, type AnnotateProgress } from '../workflows/annotate-rewards.js';

export interface Started<R> {
  workflowId: string;
  runId: string;
  handle: WorkflowHandle;
  result(): Promise<R>;
}

/**
 * Validates an annotate config (throwing ConfigError naming the field, before anything starts) and
 * starts the `annotateRewards` workflow with the job id as workflow id. A job id that is running
 * already is an error; a finished one may be re-run (committed shards are skipped).
 */
export async function startAnnotateRewards(client: Client, config: unknown): Promise<Started<AnnotateRewardsResult>> {
  const input = annotateInput(config);
  const handle = await client.workflow.start<typeof annotateRewards>('annotateRewards', {
    taskQueue: TASK_QUEUES.control,
    workflowId: input.jobId,
    args: [input],
    workflowIdConflictPolicy: WorkflowIdConflictPolicy.FAIL,
    workflowIdReusePolicy: WorkflowIdReusePolicy.ALLOW_DUPLICATE,
    staticSummary: `reward annotation of ${input.inputKey}`,
    memo: { storeUri: input.storeUri, inputKey: input.inputKey, outputPrefix: input.outputPrefix },
  });
  return {
    workflowId: handle.workflowId,
    runId: handle.firstExecutionRunId,
    handle,
    result: () => handle.result() as Promise<AnnotateRewardsResult>,
  };
}

/** Progress of an annotate job, or undefined while the workflow has not started its first task. */
export async function annotateProgress(client: Client, jobId: string): Promise<AnnotateProgress | undefined> {
  try {
    return await client.workflow.getHandle(jobId).query(annotateProgressQuery);
  } catch {
    return undefined;
  }
}
