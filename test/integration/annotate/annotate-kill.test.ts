/**
 * Durability of annotateRewards: the worker scoring a shard is SIGKILLed mid-shard; a fresh worker
 * picks the shard up after the heartbeat timeout, resumes from the last heartbeat, and the job's
 * output is byte-identical to an uninterrupted run.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { testTemporal, startWorkers, spawnWorker, killHard, type TestTemporal } from '../../support/temporal.js';
import { startAnnotateRewards } from '../../../workers/client.js';
import { writeSampleInputs } from '../../../activities/reward/annotate-activities.js';
import { openStore } from '../../../activities/store/open.js';
import { readArtifact, manifestKey } from '../../../activities/store/manifest.js';
import { ANNOTATION_REWARDS_NAME, annotationPartKey, annotationShardPrefix } from '../../../activities/store/keys.js';

let t: TestTemporal;
let stopControl: () => Promise<void>;
const children: ChildProcess[] = [];
const tag = Date.now().toString(36);

before(async () => {
  t = await testTemporal();
  // Workflows run here; the reward activities only in child processes that the test can kill.
  ({ stop: stopControl } = await startWorkers(t, ['control']));
});
after(async () => {
  for (const c of children) await killHard(c);
  await stopControl?.();
  await t?.client.connection.close();
});

test('a worker SIGKILLed mid-shard: a fresh worker resumes and the output bytes are identical', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'drl-kill-'));
  const storeUri = pathToFileURL(dir).href;
  await writeSampleInputs(storeUri, 'inputs/sample.arrow', 1200, 5);
  const jobId = `it-kill-${tag}`;
  const common = {
    jobId,
    storeUri,
    inputKey: 'inputs/sample.arrow',
    shardSize: 600,
    chunkSize: 50,
    maxConcurrentShards: 1,
    heartbeatTimeoutMs: 2000,
  };

  // Uninterrupted reference run.
  const first = await spawnWorker(t, ['reward']);
  children.push(first);
  const clean = await (await startAnnotateRewards(t.client, { ...common, outputPrefix: 'clean' })).result();
  assert.equal(clean.records, 1200);

  // The same job again into another prefix, paced so the kill lands mid-shard.
  const started = await startAnnotateRewards(t.client, { ...common, outputPrefix: 'killed', maxRecordsPerSecond: 250 });
  const part = (c: number) => join(dir, annotationPartKey('killed', 0, c));
  for (let i = 0; !existsSync(part(2)); i++) {
    assert.ok(i < 600, 'the first shard never reached its third chunk');
    await sleep(50);
  }
  await killHard(first);
  assert.ok(!existsSync(join(dir, manifestKey(annotationShardPrefix('killed', 0)))), 'killed before the shard committed');
  const chunk0 = statSync(part(0)).mtimeMs;

  const second = await spawnWorker(t, ['reward']);
  children.push(second);
  const resumed = await started.result();

  assert.deepEqual({ ...resumed, rewardsUri: '', manifestUri: '' }, { ...clean, rewardsUri: '', manifestUri: '' });
  const store = openStore(storeUri);
  const bytes = async (prefix: string) =>
    createHash('sha256')
      .update(await readArtifact(store, prefix, ANNOTATION_REWARDS_NAME))
      .digest('hex');
  assert.equal(await bytes('killed'), await bytes('clean'), 'identical output bytes');
  await store.close();
  assert.equal(statSync(part(0)).mtimeMs, chunk0, 'chunk 0 was not recomputed: the retry resumed from the heartbeat');
  const desc = await started.handle.describe();
  assert.equal(desc.status.name, 'COMPLETED');
});
