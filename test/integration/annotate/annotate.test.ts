/**
 * annotateRewards end to end against the real Temporal dev server and real stores (file:// and
 * MinIO): results, commit protocol, re-run skipping, bad input, and replay of the recorded history.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ActivityFailure, ApplicationFailure, WorkflowFailedError } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { RecordBatch, Schema, Table, tableFromIPC, tableToIPC } from 'apache-arrow';
import { temporalWithWorkers } from '../../support/temporal.js';
import { startAnnotateRewards } from '../../../workers/client.js';
import { writeSampleInputs } from '../../../activities/reward/annotate-activities.js';
import { openStore } from '../../../activities/store/open.js';
import { readCommitted, readArtifact } from '../../../activities/store/manifest.js';
import { ANNOTATION_REWARDS_NAME, annotationPrefix, annotationShardPrefix } from '../../../activities/store/keys.js';
import { readTable, writeTable } from '../../../activities/store/arrow.js';
import { REWARDS, ANNOTATION_INPUTS } from '../../../activities/store/schemas.js';
import { createReward } from '../../../activities/reward/registry.js';
import { workflowsPath } from '../../../workers/worker.js';
import { logger } from '../../../activities/common/log.js';
import { RUN_NAME, STATUS } from '../../../workflows/search-attributes.js';

const tag = Date.now().toString(36);

const temporal = temporalWithWorkers(['control', 'reward']);

const stores = () =>
  [
    ['file://', pathToFileURL(mkdtempSync(join(tmpdir(), 'drl-annotate-'))).href],
    ['MinIO', `s3://${process.env.DURABLE_RL_S3_BUCKET}/it-annotate-${tag}`],
  ] as const;

describe('annotateRewards', () => {
  for (const [kind, makeUri] of [
    ['file://', 0],
    ['MinIO', 1],
  ] as const) {
    test(`scores every record and commits the rewards on ${kind}`, async () => {
      const storeUri = stores()[makeUri][1];
      const jobId = `it-happy-${kind === 'MinIO' ? 's3' : 'file'}-${tag}`;
      await writeSampleInputs(storeUri, 'inputs/sample.arrow', 530, 11);
      const started = await startAnnotateRewards(temporal().client, {
        jobId,
        storeUri,
        inputKey: 'inputs/sample.arrow',
        shardSize: 200,
        chunkSize: 64,
      });
      const result = await started.result();

      // The same reward run directly over the input gives the same accuracy.
      const store = openStore(storeUri);
      try {
        const inputs = readTable(ANNOTATION_INPUTS, await store.get('inputs/sample.arrow'), 'input');
        const reward = createReward({ name: 'math_equivalence' });
        let correct = 0;
        for (const r of inputs) {
          const res = await reward.score!(
            {
              promptId: r.prompt_id,
              sampleId: r.sample_id ?? 0,
              prompt: r.prompt,
              completion: r.completion,
              reference: r.reference ?? undefined,
            },
            { step: 0, signal: new AbortController().signal, log: logger('test') },
          );
          if (res.reward >= 1) correct++;
        }
        assert.equal(result.records, 530);
        assert.equal(result.accuracy, correct / 530);
        assert.ok(result.accuracy > 0.5 && result.accuracy < 0.9, `the noisy solver is ~70% right, got ${result.accuracy}`);
        assert.equal(result.errors, 0);

        const prefix = annotationPrefix(jobId);
        const manifest = await readCommitted(store, prefix);
        assert.ok(manifest, 'the job prefix is committed');
        const rows = readTable(REWARDS, await readArtifact(store, prefix, ANNOTATION_REWARDS_NAME), 'rewards');
        assert.equal(rows.length, 530);
        assert.deepEqual(
          rows.map((r) => r.prompt_id),
          inputs.map((r) => r.prompt_id),
          'rewards are in input order',
        );
        assert.ok(rows.every((r) => r.run_id === jobId && (r.reward === 0 || r.reward === 1)));
        for (let s = 0; s < 3; s++) assert.ok(await readCommitted(store, annotationShardPrefix(prefix, s)), `shard ${s} committed`);

        // The search attributes and current details are visible to the UI.
        const desc = await started.handle.describe();
        assert.equal(desc.typedSearchAttributes.get(STATUS), 'completed');
        assert.equal(desc.typedSearchAttributes.get(RUN_NAME), jobId);

        // A re-run of the finished job skips every committed shard and returns the same result.
        const again = await startAnnotateRewards(temporal().client, {
          jobId,
          storeUri,
          inputKey: 'inputs/sample.arrow',
          shardSize: 200,
          chunkSize: 64,
        });
        assert.deepEqual(await again.result(), result);
        const q = await again.handle.query<{ shardsSkipped: number; shards: number }>('progress');
        assert.equal(q.shardsSkipped, 3);
        assert.equal(q.shards, 3);

        // The real history replays against the current workflow code (determinism check).
        const history = await started.handle.fetchHistory();
        await Worker.runReplayHistory({ workflowsPath }, history, jobId);
        if (process.env.DURABLE_RL_RECORD_FIXTURES && kind === 'file://') {
          const dir = new URL('../../fixtures/histories/', import.meta.url);
          mkdirSync(dir, { recursive: true });
          writeFileSync(new URL('annotate-rewards.json', dir), JSON.stringify(history, null, 1));
        }
      } finally {
        await store.close();
      }
    });
  }

  for (const [what, metadata, expected] of [
    [
      'without the reference column',
      new Map([
        ['durable_rl.schema', 'annotation_inputs'],
        ['durable_rl.schema_version', '1'],
      ]),
      /reference/,
    ],
    [
      'of another schema',
      new Map([
        ['durable_rl.schema', 'rewards'],
        ['durable_rl.schema_version', '1'],
      ]),
      /expected schema "annotation_inputs", found "rewards"/,
    ],
  ] as const) {
    test(`an input ${what} fails at once and non-retryably, saying what is wrong`, async () => {
      const storeUri = stores()[0][1];
      const store = openStore(storeUri);
      const valid = tableFromIPC(
        writeTable(ANNOTATION_INPUTS, [{ prompt_id: 'a', sample_id: 0, prompt: '1+1?', completion: '2', reference: '2' }]),
      );
      const t0 = valid.select(['prompt_id', 'sample_id', 'prompt', 'completion']);
      const schema = new Schema(t0.schema.fields, metadata);
      const table = new Table(
        schema,
        t0.batches.map((b) => new RecordBatch(schema, b.data)),
      );
      await store.put('inputs/bad.arrow', tableToIPC(table, 'file'));
      await store.close();
      const started = await startAnnotateRewards(temporal().client, {
        jobId: `it-bad-${what.length}-${tag}`,
        storeUri,
        inputKey: 'inputs/bad.arrow',
      });
      await assert.rejects(started.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError);
        assert.ok(err.cause instanceof ActivityFailure);
        assert.ok(err.cause.cause instanceof ApplicationFailure);
        assert.equal(err.cause.cause.nonRetryable, true);
        assert.match(err.cause.cause.message, expected);
        return true;
      });
      const history = await started.handle.fetchHistory();
      const attempts = history
        .events!.filter((e) => e.activityTaskStartedEventAttributes)
        .map((e) => e.activityTaskStartedEventAttributes!.attempt);
      assert.deepEqual(attempts, [1], 'no retry of a non-retryable failure');
      const desc = await started.handle.describe();
      assert.equal(desc.typedSearchAttributes.get(STATUS), 'failed', 'search attributes show the job failed');
      // The failed run's history (with its patch marker) replays too.
      await Worker.runReplayHistory({ workflowsPath }, history, started.workflowId);
    });
  }

  test('a shard whose chunks take longer than the heartbeat timeout still runs in one attempt', async () => {
    // 2 records/s with 4-record chunks: each chunk's pacing pause (~2 s) is twice the heartbeat
    // timeout. A live worker must keep heartbeating through it instead of being declared dead.
    const storeUri = stores()[0][1];
    await writeSampleInputs(storeUri, 'inputs/slow.arrow', 8, 3);
    const started = await startAnnotateRewards(temporal().client, {
      jobId: `it-slow-${tag}`,
      storeUri,
      inputKey: 'inputs/slow.arrow',
      shardSize: 8,
      chunkSize: 4,
      maxRecordsPerSecond: 2,
      heartbeatTimeoutMs: 1000,
    });
    const result = await started.result();
    assert.equal(result.records, 8);
    const history = await started.handle.fetchHistory();
    const started_ = history.events!.filter((e) => e.activityTaskStartedEventAttributes);
    assert.equal(started_.length, 3, 'plan, one shard, finalize');
    assert.deepEqual(
      started_.map((e) => e.activityTaskStartedEventAttributes!.attempt),
      [1, 1, 1],
      'no activity timed out and was retried',
    );
  });

  test('maxRecordsPerSecond limits the whole job, not each of the shards scored at once', async () => {
    const storeUri = stores()[0][1];
    await writeSampleInputs(storeUri, 'inputs/paced.arrow', 8, 6);
    const started = await startAnnotateRewards(temporal().client, {
      jobId: `it-paced-${tag}`,
      storeUri,
      inputKey: 'inputs/paced.arrow',
      shardSize: 4,
      chunkSize: 4,
      maxConcurrentShards: 2,
      maxRecordsPerSecond: 4,
    });
    assert.equal((await started.result()).records, 8);
    // Two shards of 4 records at once under a job limit of 4 records/s: scoring takes at least 2 s
    // (1 s if each shard got the whole rate). A lower bound: a slow machine only makes it longer.
    const history = await started.handle.fetchHistory();
    const ms = (e: NonNullable<typeof history.events>[number]) =>
      Number(e.eventTime!.seconds) * 1000 + Math.floor((e.eventTime!.nanos ?? 0) / 1e6);
    const shardEvents = (history.events ?? []).filter(
      (e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'annotateShard',
    );
    assert.equal(shardEvents.length, 2);
    const completed = (history.events ?? []).filter((e) => e.activityTaskCompletedEventAttributes);
    const lastShardDone = Math.max(...completed.slice(1, 3).map(ms));
    const elapsed = lastShardDone - Math.min(...shardEvents.map(ms));
    assert.ok(elapsed >= 1900, `8 records at 4/s took ${elapsed} ms`);
  });

  test('a re-run aimed at committed outputs of a different job fails non-retryably instead of reusing them', async () => {
    const storeUri = stores()[0][1];
    const jobId = `it-other-${tag}`;
    await writeSampleInputs(storeUri, 'inputs/other.arrow', 20, 4);
    const first = await startAnnotateRewards(temporal().client, { jobId, storeUri, inputKey: 'inputs/other.arrow', shardSize: 10 });
    assert.equal((await first.result()).records, 20);

    const rejects = async (config: Record<string, unknown>, expected: RegExp) => {
      const started = await startAnnotateRewards(temporal().client, {
        jobId,
        storeUri,
        inputKey: 'inputs/other.arrow',
        shardSize: 10,
        ...config,
      });
      await assert.rejects(started.result(), (err: unknown) => {
        assert.ok(err instanceof WorkflowFailedError);
        assert.ok(err.cause instanceof ActivityFailure);
        assert.ok(err.cause.cause instanceof ApplicationFailure);
        assert.equal(err.cause.cause.nonRetryable, true);
        assert.match(err.cause.cause.message, /committed by a different job/);
        assert.match(err.cause.cause.message, expected);
        return true;
      });
    };
    // Another reward into the same output prefix.
    await rejects({ reward: { name: 'format_tags' } }, /reward: committed \{"name":"math_equivalence".*now \{"name":"format_tags"/);
    // Another shard size: the shards now cover other records.
    await rejects({ shardSize: 5 }, /shard: committed \{"end":\d+,"index":\d,"start":\d+\}, now \{"end":\d+,"index":\d,"start":\d+\}/);
    // The input file was replaced by other records.
    await writeSampleInputs(storeUri, 'inputs/other.arrow', 20, 5);
    await rejects({}, /inputSha256/);
  });

  test('a bad config is rejected before anything starts, naming the field', async () => {
    await assert.rejects(
      startAnnotateRewards(temporal().client, { jobId: `it-cfg-${tag}`, storeUri: 'ftp://x', inputKey: 'k', shardSize: 0 }),
      /storeUri: must be file:.*shardSize/s,
    );
    // Keys that break the store's key rules, and a relative file:// store (each worker would resolve
    // it in its own working directory), are caught here too rather than by the first activity.
    await assert.rejects(
      startAnnotateRewards(temporal().client, {
        jobId: `it-cfg2-${tag}`,
        storeUri: 'file://out/store',
        inputKey: '../secret.arrow',
        outputPrefix: 'a//b',
      }),
      /storeUri: a relative file:\/\/ store.*absolute file:\/\/\/dir.*inputKey: invalid object key "\.\.\/secret\.arrow".*outputPrefix: invalid object key "a\/\/b": empty path segment/s,
    );
    await assert.rejects(
      startAnnotateRewards(temporal().client, { jobId: `it-cfg3-${tag}`, storeUri: 's3://Bad_Bucket/x', inputKey: 'k' }),
      /storeUri: invalid store URI "s3:\/\/Bad_Bucket\/x": "Bad_Bucket" is not a valid bucket name/,
    );
    // The reward's name and options are checked against the registry up front as well.
    await assert.rejects(
      startAnnotateRewards(temporal().client, {
        jobId: `it-cfg4-${tag}`,
        storeUri: stores()[0][1],
        inputKey: 'k',
        reward: { name: 'no_such_reward' },
      }),
      /reward\.name: unknown reward "no_such_reward"; known rewards: .*math_equivalence/,
    );
    await assert.rejects(
      startAnnotateRewards(temporal().client, {
        jobId: `it-cfg4-${tag}`,
        storeUri: stores()[0][1],
        inputKey: 'k',
        reward: { name: 'format_tags', options: { tags: 5 } },
      }),
      /reward\.options\.tags: .*expected array/,
    );
    for (const id of [`it-cfg2-${tag}`, `it-cfg4-${tag}`]) {
      const described = await temporal()
        .client.workflow.getHandle(id)
        .describe()
        .then(
          () => 'exists',
          () => 'absent',
        );
      assert.equal(described, 'absent', 'no workflow was started for a bad config');
    }
  });
});
