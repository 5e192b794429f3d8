/**
 * `commitStep` (learner queue): commits checkpoint step + 1 (written by the learner), then the step
 * itself (its artifacts + the metrics table). Checkpoint first: a committed step always has its
 * weights. A retried commit of a committed step returns `created: false` and writes nothing.
 * Then the run's retention policy (config `retention`, with `keepLast` set and `apply:
 * 'every_step'`) is applied (gc.ts): the store holds the kept checkpoints only, whatever the number
 * of steps. On a retry too, so a crash between the commit and the gc loses no removal.
 *
 * Once the step is committed, the resume points of its multi-turn episodes (`episodePartKey`, one
 * JSON snapshot per rollout shard and turn) are deleted: a rollout shard of a committed step
 * returns the committed artifact and never reads them again. Not earlier: until the commit, a
 * retried shard (even one whose artifact was written, its result lost) resumes from them instead
 * of generating its turns again. Also on a retry, for the same reason as the gc.
 */
import { ApplicationFailure } from '@temporalio/common';
import { logger } from '../common/log.js';
import { readRunRecord } from '../run/resolve.js';
import { stage } from '../run/stage.js';
import { gcRun } from './gc.js';
import { crashPoint } from '../run/faults.js';
import type { CommitStepInput, CommitStepResult } from '../run/types.js';
import { checkpointPrefix, METRICS_NAME, stepEpisodePartsPrefix, stepPrefix } from '../store/keys.js';
import { artifactKey, commit, manifestKey, readManifest, writeArtifact, type Manifest } from '../store/manifest.js';
import { METRICS, encodeMetrics } from '../store/schemas.js';

const log = logger('commit');

/**
 * Commits step `step`: checkpoint step + 1 (the learner's artifacts), then the step prefix with its
 * artifacts and a one-row metrics.arrow. A crash between the two commits leaves the checkpoint
 * committed and the step not; the retry finds the checkpoint committed and completes the step.
 */
export async function commitStep(input: CommitStepInput): Promise<CommitStepResult> {
  return stage('commitStep', input.storeUri, async ({ store, progress }) => {
    const { runId, step } = input;
    crashPoint('commit', step);
    const stepAt = stepPrefix(runId, step);
    const ckptAt = checkpointPrefix(runId, step + 1);
    const result = (created: boolean): CommitStepResult => ({
      created,
      stepUri: store.uri(manifestKey(stepAt)),
      checkpointUri: store.uri(manifestKey(ckptAt)),
    });
    // After the commit (also on a retry, so a crash after the commit loses neither): the resume
    // points of the step's episodes go, then the retention policy applies; run.json read once.
    const afterCommit = async (manifest: Manifest) => {
      const { config } = await readRunRecord(store, runId);
      if (config.environment) {
        // the parts are not artifacts of the step; a key the manifest lists is never deleted all the same
        const listed = new Set(manifest.artifacts.map((a) => artifactKey(stepAt, a)));
        const parts: string[] = [];
        for await (const o of store.list(stepEpisodePartsPrefix(runId, step))) if (!listed.has(o.key)) parts.push(o.key);
        if (parts.length > 0) {
          progress({ phase: 'episode resume points', step, objects: parts.length });
          for (const key of parts) await store.delete(key);
        }
      }
      if (config.retention.keepLast === null || config.retention.apply !== 'every_step') return;
      progress({ phase: 'retention', step });
      const gc = await gcRun(store, runId, { config });
      if (gc.removed.length > 0)
        log.info(
          { runId, step, bytesFreed: gc.bytesFreed, removed: gc.removed.map((r) => `${r.checkpoint}:${r.what}`) },
          'retention applied',
        );
    };
    const committed = await readManifest(store, stepAt);
    if (committed) {
      await afterCommit(committed);
      return result(false);
    }
    if (input.checkpoint.length === 0) {
      throw ApplicationFailure.nonRetryable(
        `commitStep of step ${step}: no checkpoint artifacts given (learnerUpdate returns them)`,
        'BadCommit',
      );
    }
    progress({ phase: 'checkpoint', checkpoint: step + 1 });
    await commit(store, ckptAt, input.checkpoint);
    crashPoint('commit-mid', step);

    progress({ phase: 'step', step });
    const metrics = await writeArtifact(store, stepAt, {
      name: METRICS_NAME,
      bytes: encodeMetrics([{ ...input.metrics, run_id: runId, step, phase: input.phase, policy_version: step }]),
      schema: METRICS,
    });
    const r = await commit(store, stepAt, [...input.artifacts.filter((a) => a.name !== METRICS_NAME), metrics]);
    await afterCommit(r.manifest);
    return result(r.created);
  });
}
