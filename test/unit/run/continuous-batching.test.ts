/**
 * `rollout.maxBatchSequences` (activities/run/config.ts; continuous batching in
 * activities/model/generate.ts) through rolloutShard on a tiny run (llama 32x1, one-digit addition,
 * T = 1) in temp file:// stores: a shard of 16 samples decoded 3 at a time, later samples joining as
 * earlier ones finish, commits the same completions as the shard decoded in one batch — every row's
 * tokens equal, its behaviour logprobs within 1e-4 — so the option changes how fast a shard runs,
 * not what it samples.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelEngine } from '../../../activities/model/engine.js';
import { releaseEngines } from '../../../activities/rollout/policy.js';
import { rolloutShard } from '../../../activities/rollout/rollout-shard.js';
import type { RunConfigInput } from '../../../activities/run/config.js';
import { stepPrefix } from '../../../activities/store/keys.js';
import { readEntry } from '../../../activities/store/manifest.js';
import { decodeRollouts, type RolloutsRow } from '../../../activities/store/schemas.js';
import { firstShardInput, runFixture, type RunFixture } from './fixture.js';

const RUN = 'continuous';
const config = (maxBatchSequences: number | undefined): RunConfigInput => ({
  name: 'continuous',
  seed: 11,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  model: { hidden: 32, layers: 1, heads: 2 },
  phases: [{ kind: 'rl', steps: 1, promptsPerStep: 4, groupSize: 4, sampling: { temperature: 1 } }],
  rollout: maxBatchSequences === undefined ? {} : { maxBatchSequences },
  engine: { threads: 1 },
});

const fixtures: RunFixture[] = [];
after(async () => {
  await releaseEngines();
  for (const f of fixtures) await f.teardown();
});

/** The shard's committed rows, and the batch widths of the KV caches its decoding allocated. */
async function shardRows(maxBatchSequences: number | undefined): Promise<{ rows: RolloutsRow[]; widths: number[] }> {
  const f = await runFixture(RUN, config(maxBatchSequences), { checkpoint0: true });
  fixtures.push(f);
  const widths: number[] = [];
  const decodeCache = ModelEngine.prototype.decodeCache;
  ModelEngine.prototype.decodeCache = function (this: ModelEngine, batch: number, capacity: number, rows?: number) {
    widths.push(rows ?? batch);
    return decodeCache.call(this, batch, capacity, rows);
  };
  try {
    const r = await rolloutShard(firstShardInput(f.storeUri, RUN, 4));
    return { rows: decodeRollouts(await readEntry(f.store, stepPrefix(RUN, 0), r.rollouts)), widths };
  } finally {
    ModelEngine.prototype.decodeCache = decodeCache;
  }
}

test('a shard decoded 3 sequences at a time (rollout.maxBatchSequences 3) commits the completions of one 16-sequence batch', async () => {
  const { rows: whole, widths: wholeWidths } = await shardRows(undefined);
  const { rows: queued, widths } = await shardRows(3);
  assert.deepEqual(wholeWidths, [16], 'by default the shard decodes in one batch');
  assert.equal(widths[0], 3, 'the running batch holds 3 sequences');
  assert.ok(widths.length > 1 && Math.max(...widths) <= 3, `later prompts joined in waves of at most 3 (cache widths ${widths})`);
  assert.equal(whole.length, 16);
  assert.equal(queued.length, 16);
  const lengths = new Set(whole.map((r) => r.completion_token_ids.length));
  assert.ok(lengths.size > 1, `completions of mixed lengths (${[...lengths]}), so slots free at different steps`);
  whole.forEach((w, i) => {
    const q = queued[i]!;
    assert.deepEqual([q.prompt_id, q.sample_id], [w.prompt_id, w.sample_id]);
    assert.deepEqual(q.completion_token_ids, w.completion_token_ids, `row ${i}: tokens`);
    assert.equal(q.finish_reason, w.finish_reason);
    q.behaviour_logprobs.forEach((lp, j) =>
      assert.ok(Math.abs(lp - w.behaviour_logprobs[j]!) <= 1e-4, `row ${i} token ${j}: ${lp} vs ${w.behaviour_logprobs[j]}`),
    );
  });
});
