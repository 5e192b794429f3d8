/**
 * Reflect-then-retry rollouts (the rl phase's `retry` option, R^3L) through the activities, called
 * directly on a tiny run (llama 32x1, one-digit addition written reversed and padded: "3+5=" →
 * "80") in a temp file:// store. Checkpoint 0 is the seeded model after a few supervised updates,
 * so some samples answer right and some fail part-way. rolloutShard samples, scores and retries,
 * rewardShard scores every row, computeStepAdvantages runs r3l on the failed/retry pairs and
 * learnerUpdate trains on them.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { firstShardInput, runFixture, type RunFixture } from './fixture.js';
import { computeStepAdvantages } from '../../../activities/advantage/step-advantages.js';
import { grpo, grpoOptionsSchema } from '../../../activities/advantage/grpo.js';
import { r3l, r3lOptionsSchema } from '../../../activities/advantage/r3l.js';
import { writeCheckpoint } from '../../../activities/checkpoint/checkpoint.js';
import { ConfigError, parseConfig } from '../../../activities/common/config.js';
import { learnerUpdate } from '../../../activities/learner/learner-update.js';
import { ModelEngine, initTrainState } from '../../../activities/model/engine.js';
import { initWeights } from '../../../activities/model/init.js';
import { sftLoss } from '../../../activities/model/losses.js';
import { rewardShard } from '../../../activities/reward/reward-shard.js';
import { releaseEngines } from '../../../activities/rollout/policy.js';
import { rolloutShard } from '../../../activities/rollout/rollout-shard.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { checkpointPrefix, stepPrefix } from '../../../activities/store/keys.js';
import { commit, readEntry } from '../../../activities/store/manifest.js';
import { decodeAdvantages, decodeRewards, decodeRollouts, type RolloutsRow } from '../../../activities/store/schemas.js';
import { additionFirstError } from '../../../activities/tasks/addition.js';

const RUN = 'retry-run';
const G = 4;
const P = 6;

const config = (retry: Record<string, unknown> | null = {}): RunConfigInput => ({
  name: 'retry',
  seed: 7,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 2, reverse: true, pad: true } },
  model: { hidden: 32, layers: 1, heads: 2 },
  phases: [
    {
      kind: 'rl',
      steps: 2,
      promptsPerStep: P,
      groupSize: G,
      lr: 1e-2,
      sampling: { temperature: 1 },
      advantage: { estimator: 'r3l' },
      retry,
    } as never,
  ],
  engine: { threads: 1 },
});

const shardInput = (f: RunFixture) => firstShardInput(f.storeUri, RUN, P);

/** A run whose checkpoint 0 is the seeded model after `updates` SFT updates on the step's prompts (it answers some, not all). */
async function warmRun(retry: Record<string, unknown> | null = {}, updates = 32): Promise<RunFixture> {
  const f = await runFixture(RUN, config(retry));
  const { run } = f;
  const { tokenizer, task } = run;
  const items = task.prompts(run.config.seed, 'train', 16);
  const seqs = items.map((it) => [...run.encodePrompt(it.prompt), ...run.encodeCompletion(task.sftTarget(it))]);
  const promptLen = items.map((it) => run.encodePrompt(it.prompt).length);
  const T = Math.max(...seqs.map((s) => s.length));
  const batch = {
    ids: seqs.map((s) => [...s, ...Array<number>(T - s.length).fill(tokenizer.padId ?? 0)]),
    attentionMask: seqs.map((s) => [...s.map(() => 1), ...Array<number>(T - s.length).fill(0)]),
    lossMask: seqs.map((s, b) => [...s.map((_, j) => (j >= promptLen[b]! ? 1 : 0)), ...Array<number>(T - s.length).fill(0)]),
  };
  const engine = new ModelEngine(run.model, { threads: 1 });
  let state = initTrainState(run.model, initWeights(run.model, run.config.seed));
  try {
    for (let i = 0; i < updates; i++) state = (await engine.trainStep(state, batch, { loss: sftLoss(), lr: 1e-2 })).state;
  } finally {
    await engine.close();
  }
  await commit(f.store, checkpointPrefix(RUN, 0), await writeCheckpoint(f.store, RUN, 0, state));
  return f;
}

after(() => releaseEngines());

describe('reflect-then-retry rollouts (rl phase option `retry`, R^3L)', () => {
  let f: RunFixture;
  let rows: RolloutsRow[];
  let sha: string;
  let rewardOf: Map<string, number>;
  before(async () => {
    f = await warmRun();
    const r = await rolloutShard(shardInput(f));
    sha = r.rollouts.sha256;
    rows = decodeRollouts(await readEntry(f.store, stepPrefix(RUN, 0), r.rollouts));
    const rewards = await rewardShard({ storeUri: f.storeUri, runId: RUN, step: 0, shard: 0, shards: 1, rollouts: r.rollouts });
    rewardOf = new Map(
      decodeRewards(await readEntry(f.store, stepPrefix(RUN, 0), rewards.rewards)).map((w) => [`${w.prompt_id}#${w.sample_id}`, w.reward!]),
    );
  });
  after(() => f.teardown());

  const key = (r: RolloutsRow) => `${r.prompt_id}#${r.sample_id}`;
  const groups = () => {
    const m = new Map<string, RolloutsRow[]>();
    for (const r of rows) m.set(r.prompt_id, [...(m.get(r.prompt_id) ?? []), r]);
    return [...m.values()];
  };

  it('every failed sample (reward < 1) gets one retry row: sample ids G, G+1, ... in the order of the failures, node ids {prompt}/{sample}', (t) => {
    let failed = 0;
    let succeeded = 0;
    for (const group of groups()) {
      const originals = group.filter((r) => r.sample_id < G);
      assert.deepEqual(
        originals.map((r) => r.sample_id),
        [0, 1, 2, 3],
      );
      const failures = originals.filter((r) => rewardOf.get(key(r))! < 1);
      failed += failures.length;
      succeeded += originals.length - failures.length;
      const retries = group.filter((r) => r.sample_id >= G);
      assert.deepEqual(
        retries.map((r) => r.sample_id),
        failures.map((_, k) => G + k),
      );
      for (const r of group) assert.equal(r.node_id, `${r.prompt_id}/${r.sample_id}`);
      for (const r of originals) assert.deepEqual([r.parent_node_id, r.branch_position], [null, 0]);
      retries.forEach((r, k) =>
        assert.ok(r.parent_node_id === failures[k]!.node_id || (r.parent_node_id === null && r.branch_position === 0)),
      );
    }
    t.diagnostic(
      `${succeeded} successes, ${failed} failures of ${P * G} samples: ${rows.map((r) => `${r.prompt_text}${r.completion_text}@${r.branch_position}`).join(' ')}`,
    );
    assert.ok(succeeded >= 2 && failed >= 2, `the warm model answers some and misses some: ${succeeded} right, ${failed} wrong`);
  });

  it('the pivot is where the task says the answer first went wrong (one character per token; the stop token when it ended early), and the retry copies the failed tokens and behaviour logprobs before it bit for bit', () => {
    let children = 0;
    for (const group of groups()) {
      const failures = group.filter((r) => r.sample_id < G && rewardOf.get(key(r))! < 1);
      failures.forEach((failedRow, k) => {
        const retry = group.find((r) => r.sample_id === G + k)!;
        const ref = String(
          Number(/^(\d+)\+(\d+)=$/.exec(failedRow.prompt_text)![1]) + Number(/^(\d+)\+(\d+)=$/.exec(failedRow.prompt_text)![2]),
        );
        const at = additionFirstError(ref, failedRow.completion_text, true);
        assert.notEqual(at, null, `a failed bare answer has a first error: ${JSON.stringify(failedRow.completion_text)}`);
        const n = failedRow.completion_token_ids.length;
        let expected: number;
        if (at! < n) expected = at!;
        else {
          // truncated correct prefix: the fallback, the lowest behaviour logprob
          const lp = [...failedRow.behaviour_logprobs];
          expected = lp.indexOf(Math.min(...lp));
        }
        if (expected === 0) {
          assert.deepEqual(
            [retry.parent_node_id, retry.branch_position],
            [null, 0],
            'a retry from the start shares nothing: a fresh sample',
          );
          return;
        }
        children++;
        assert.equal(retry.parent_node_id, failedRow.node_id);
        assert.equal(retry.branch_position, expected, `${JSON.stringify(failedRow.completion_text)} vs ${ref} reversed`);
        assert.deepEqual([...retry.completion_token_ids.slice(0, expected)], [...failedRow.completion_token_ids.slice(0, expected)]);
        assert.deepEqual([...retry.behaviour_logprobs.slice(0, expected)], [...failedRow.behaviour_logprobs.slice(0, expected)]);
        assert.deepEqual([...retry.prompt_token_ids], [...failedRow.prompt_token_ids]);
        assert.ok(retry.completion_token_ids.length > expected, 'the retry samples from its pivot on');
      });
    }
    assert.ok(children >= 1, 'some retry restarts inside its failed sample');
  });

  it('a retried shard writes the same bytes (fresh engine, same sha256)', async () => {
    await releaseEngines();
    const again = await rolloutShard(shardInput(f));
    assert.equal(again.rollouts.sha256, sha);
  });

  it("r3l gets the failed/retry pairs: the shared prefix is masked on both rows (Pivotal Credit), successes' positive advantages are doubled (Positive Amplification); the learner trains the rows with logprob_diff <= 1e-4", async (t) => {
    const prefix = stepPrefix(RUN, 0);
    const rollouts = (await rolloutShard(shardInput(f))).rollouts;
    const rewards = (await rewardShard({ storeUri: f.storeUri, runId: RUN, step: 0, shard: 0, shards: 1, rollouts })).rewards;
    const adv = await computeStepAdvantages({
      storeUri: f.storeUri,
      runId: RUN,
      step: 0,
      phaseIndex: 0,
      rollouts: [rollouts],
      rewards: [rewards],
    });
    const advRows = decodeAdvantages(await readEntry(f.store, prefix, adv.advantages));
    assert.equal(advRows.length, rows.length);

    const samples = rows.map((r) => ({
      sampleId: key(r),
      groupId: r.group_id,
      reward: rewardOf.get(key(r))!,
      completionLength: r.completion_token_ids.length,
      tokenIds: r.completion_token_ids,
    }));
    const byNode = new Map(rows.map((r) => [r.node_id!, r]));
    const pairs = rows
      .filter((r) => r.parent_node_id !== null)
      .map((r) => ({ failedSampleId: key(byNode.get(r.parent_node_id!)!), retrySampleId: key(r), pivot: r.branch_position! }));
    assert.ok(pairs.length >= 1);
    const expected = r3l({ samples, pairs }, parseConfig(r3lOptionsSchema, { estimator: 'r3l' }, 'r3l'));
    const plain = grpo({ samples }, parseConfig(grpoOptionsSchema, { estimator: 'grpo' }, 'grpo'));
    let amplified = 0;
    advRows.forEach((a, i) => {
      assert.equal(a.node_id, rows[i]!.node_id);
      assert.equal(a.advantage, expected.samples[i]!.advantage);
      assert.deepEqual(
        a.loss_mask,
        Array.from(expected.samples[i]!.lossMask!, (m) => m === 1),
      );
      if (samples[i]!.reward >= 1 && plain.samples[i]!.advantage > 0) {
        assert.equal(a.advantage, 2 * plain.samples[i]!.advantage, 'positive advantage of a success × amplification 2');
        amplified++;
      } else {
        assert.equal(a.advantage, plain.samples[i]!.advantage);
      }
    });
    assert.ok(amplified >= 1, 'some success has a positive advantage');
    const index = new Map(rows.map((r, i) => [key(r), i]));
    for (const p of pairs) {
      for (const id of [p.failedSampleId, p.retrySampleId]) {
        const mask = advRows[index.get(id)!]!.loss_mask!;
        for (let t = 0; t < p.pivot; t++) assert.equal(mask[t], false, `${id}: shared token ${t} of a pair is out of the loss`);
      }
      const retryMask = advRows[index.get(p.retrySampleId)!]!.loss_mask!;
      if (plain.samples[index.get(p.retrySampleId)!]!.keep) assert.equal(retryMask[p.pivot], true, 'the retry trains from its pivot on');
    }
    const masked = pairs.filter((p) => p.pivot >= 1 && advRows[index.get(p.retrySampleId)!]!.loss_mask!.some(Boolean));
    assert.ok(masked.length >= 1, 'some trained pair has a shared prefix to mask');

    const r = await learnerUpdate({
      storeUri: f.storeUri,
      runId: RUN,
      step: 0,
      phaseIndex: 0,
      phase: 'rl',
      lr: 1e-2,
      referenceVersion: null,
      promptOffset: 0,
      batchSize: P,
      rollouts: [rollouts],
      advantages: adv.advantages,
    });
    const trained = advRows.filter((a) => a.loss_mask!.some(Boolean)).length;
    assert.equal(r.sequences, trained);
    t.diagnostic(
      `${pairs.length} pairs (${masked.length} trained with a masked prefix), ${amplified} amplified, logprob_diff ${r.metrics.logprob_diff}`,
    );
    assert.ok(
      r.metrics.logprob_diff! <= 1e-4,
      `retries decoded from prompt + copied prefix record the learner's logprobs: logprob_diff ${r.metrics.logprob_diff}`,
    );
    assert.ok(Number.isFinite(r.metrics.loss) && Number.isFinite(r.metrics.grad_norm));
  });
});

describe('reflect-then-retry: options', () => {
  it('maxPerGroup caps the retries per prompt; fallback start restarts every failure from scratch (no pairs)', async () => {
    const f = await warmRun({ maxPerGroup: 1, fallback: 'start' });
    try {
      const rows = decodeRollouts(await readEntry(f.store, stepPrefix(RUN, 0), (await rolloutShard(shardInput(f))).rollouts));
      const retries = rows.filter((r) => r.sample_id >= G);
      assert.ok(retries.length >= 1 && retries.length <= P);
      assert.ok(retries.every((r) => r.sample_id === G));
    } finally {
      await f.teardown();
    }
  });

  it("a reflection is decoded in the retry's context but the row keeps the prompt; one outside the alphabet is refused naming phases.0.retry.reflection", async () => {
    const plain = await warmRun({});
    const reflected = await warmRun({ reflection: '=={completion}=' });
    const bad = await warmRun({ reflection: 'try again' });
    try {
      const read = async (x: RunFixture) =>
        decodeRollouts(await readEntry(x.store, stepPrefix(RUN, 0), (await rolloutShard(shardInput(x))).rollouts));
      const a = await read(plain);
      const b = await read(reflected);
      assert.deepEqual(
        a.filter((r) => r.sample_id < G).map((r) => [...r.completion_token_ids]),
        b.filter((r) => r.sample_id < G).map((r) => [...r.completion_token_ids]),
        'the samples are the same',
      );
      const ra = a.filter((r) => r.sample_id >= G);
      const rb = b.filter((r) => r.sample_id >= G);
      assert.equal(ra.length, rb.length);
      for (const r of rb)
        assert.deepEqual([...r.prompt_token_ids], [...b.find((x) => x.prompt_id === r.prompt_id && x.sample_id === 0)!.prompt_token_ids]);
      // same streams, same prefixes: only the context differs, so the sampled tokens' logprobs do
      const differ = ra.some((r, i) => r.behaviour_logprobs[r.branch_position!] !== rb[i]!.behaviour_logprobs[rb[i]!.branch_position!]);
      assert.ok(differ, 'the reflection changes the distribution the retries are drawn from');
      await assert.rejects(
        rolloutShard(shardInput(bad)),
        (e: unknown) => e instanceof ApplicationFailure && e.nonRetryable === true && /phases\.0\.retry\.reflection/.test(e.message),
      );
    } finally {
      await plain.teardown();
      await reflected.teardown();
      await bad.teardown();
    }
  });

  it('the retry option is off by default, needs the r3l estimator and no tree, naming the field', () => {
    const base = { kind: 'rl', steps: 1, groupSize: 4 } as const;
    const phase = parseRunConfig({ phases: [base] }).phases[0]!;
    assert.equal(phase.kind === 'rl' && phase.retry, null);
    const on = parseRunConfig({ phases: [{ ...base, advantage: { estimator: 'r3l' }, retry: {} }] }).phases[0]!;
    assert.deepEqual(on.kind === 'rl' && on.retry, { maxPerGroup: null, fallback: 'min_logprob', reflection: null });
    assert.throws(
      () => parseRunConfig({ phases: [{ ...base, retry: {} }] }),
      (e: unknown) => e instanceof ConfigError && /phases\.0\.advantage\.estimator/.test(e.message) && /r3l/.test(e.message),
    );
    assert.throws(
      () => parseRunConfig({ phases: [{ ...base, advantage: { estimator: 'r3l' }, retry: {}, tree: {} }] }),
      (e: unknown) => e instanceof ConfigError && /phases\.0\.retry/.test(e.message),
    );
    assert.throws(
      () => parseRunConfig({ phases: [{ ...base, advantage: { estimator: 'r3l' }, retry: { fallback: 'end' } }] }),
      (e: unknown) => e instanceof ConfigError && /phases\.0\.retry\.fallback/.test(e.message),
    );
    assert.throws(
      () => parseRunConfig({ phases: [{ ...base, advantage: { estimator: 'r3l' }, retry: { maxPerGroup: 0 } }] }),
      (e: unknown) => e instanceof ConfigError && /phases\.0\.retry\.maxPerGroup/.test(e.message),
    );
  });
});
