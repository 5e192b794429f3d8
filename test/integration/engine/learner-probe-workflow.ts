/**
 * A workflow for the engine-thread test only: one learnerUpdate activity with the given heartbeat
 * timeout, a single attempt (a heartbeat timeout fails the workflow instead of retrying), and
 * cancellation that waits for the activity to acknowledge it (so the test sees where it stopped).
 */
import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type { LearnerInput, LearnerResult } from '../../../activities/run/types.js';

export async function learnerProbe(input: LearnerInput, heartbeatTimeoutMs: number): Promise<LearnerResult> {
  const { learnerUpdate } = proxyActivities<{ learnerUpdate(i: LearnerInput): Promise<LearnerResult> }>({
    startToCloseTimeout: '10 minutes',
    heartbeatTimeout: heartbeatTimeoutMs,
    retry: { maximumAttempts: 1 },
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });
  return learnerUpdate(input);
}
