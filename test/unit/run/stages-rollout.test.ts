/**
 * rolloutShard and evaluate (activities/rollout/rollout-shard.ts, evaluate.ts) called directly, outside Temporal,
 * on a tiny run (llama 32x1, one-digit addition) in a temp file:// store.
 */
import { runFixture, type RunFixture } from './fixture.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { evaluate } from '../../../activities/rollout/evaluate.js';
import { finishCompletion, releaseEngines } from '../../../activities/rollout/policy.js';
import { rolloutShard } from '../../../activities/rollout/rollout-shard.js';
import { parseSamplingParams } from '../../../activities/rollout/sampling.js';
import { type RunConfigInput } from '../../../activities/run/config.js';
import { writeCheckpoint } from '../../../activities/checkpoint/checkpoint.js';
import { ModelEngine } from '../../../activities/model/engine.js';
import { sftLoss } from '../../../activities/model/losses.js';
import { checkpointPrefix, EVAL_NAME, evalPrefix, MANIFEST_NAME, rolloutsName, stepPrefix } from '../../../activities/store/keys.js';
import { commit, readArtifact, readEntry, readManifest } from '../../../activities/store/manifest.js';
import { decodeRollouts } from '../../../activities/store/schemas.js';
import { fileURLToPath } from 'node:url';

const RUN = 'tiny-run';

const tinyConfig = (over: Partial<RunConfigInput> = {}): RunConfigInput => ({
  name: 'tiny',
  seed: 7,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  model: { hidden: 32, layers: 1, heads: 2 },
  phases: [
    { kind: 'sft', steps: 1 },
    { kind: 'rl', steps: 2, promptsPerStep: 4, groupSize: 4 },
  ],
  eval: { prompts: 8, passK: 2, temperature: 1 },
  engine: { threads: 1 },
  ...over,
});

type Fixture = RunFixture;
const setup = (over: Partial<RunConfigInput> = {}): Promise<Fixture> => runFixture(RUN, tinyConfig(over), { checkpoint0: true });
const teardown = (f: Fixture): Promise<void> => f.teardown();

const shardInput = (f: Fixture, over: Partial<Parameters<typeof rolloutShard>[0]> = {}) => ({
  storeUri: f.storeUri,
  runId: RUN,
  step: 1,
  policyVersion: 0,
  phaseIndex: 1,
  shard: 0,
  shards: 1,
  promptOffset: 4,
  promptCount: 3,
  ...over,
});

after(() => releaseEngines());

describe('rolloutShard', () => {
  let f: Fixture;
  before(async () => {
    f = await setup();
  });
  after(() => teardown(f));

  it('writes well-formed rows: groups of groupSize, one logprob per token, ids within the vocabulary, honest finish reasons', async () => {
    const r = await rolloutShard(shardInput(f));
    const rows = decodeRollouts(await readEntry(f.store, stepPrefix(RUN, 1), r.rollouts));
    const { tokenizer, task, config } = f.run;
    const budget = f.run.maxNewTokens(config.phases[1]!.kind === 'rl' ? config.phases[1] : undefined);
    const items = task.prompts(config.seed, 'train', 3, 4);
    assert.equal(r.rollouts.name, rolloutsName(0));
    assert.equal(rows.length, 12);
    assert.equal(r.samples, 12);
    assert.deepEqual(
      rows.map((x) => x.prompt_id),
      items.flatMap((it) => Array(4).fill(it.promptId)),
    );
    assert.deepEqual(
      rows.map((x) => x.sample_id),
      [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3],
    );
    let completionTokens = 0;
    let truncated = 0;
    for (const [i, row] of rows.entries()) {
      const item = items[Math.floor(i / 4)]!;
      assert.equal(row.run_id, RUN);
      assert.equal(row.step, 1);
      assert.equal(row.group_id, item.promptId);
      assert.equal(row.policy_version, 0);
      assert.equal(row.node_id, null);
      assert.equal(row.prompt_text, item.prompt);
      assert.deepEqual([...row.prompt_token_ids], tokenizer.encode(item.prompt));
      assert.equal(row.prompt_token_ids[0], tokenizer.bosId);
      const ids = [...row.completion_token_ids];
      assert.ok(ids.length >= 1 && ids.length <= budget, `completion of ${ids.length} tokens, budget ${budget}`);
      assert.ok(ids.every((t) => Number.isInteger(t) && t >= 0 && t < tokenizer.vocabSize));
      assert.equal(row.behaviour_logprobs.length, ids.length);
      assert.ok([...row.behaviour_logprobs].every((lp) => lp <= 0 && Number.isFinite(lp)));
      const eosAt = ids.indexOf(tokenizer.eosId!);
      if (row.finish_reason === 'stop') {
        assert.equal(eosAt, ids.length - 1, 'a stopped completion ends with its only EOS');
        assert.equal(row.completion_text, tokenizer.decode(ids.slice(0, -1)));
      } else {
        assert.equal(row.finish_reason, 'length');
        assert.equal(eosAt, -1);
        assert.equal(ids.length, budget);
        assert.equal(row.completion_text, tokenizer.decode(ids));
        truncated++;
      }
      completionTokens += ids.length;
    }
    assert.equal(r.completionTokens, completionTokens);
    assert.equal(r.truncated, truncated);
    assert.equal(
      r.promptTokens,
      rows.reduce((a, x) => a + x.prompt_token_ids.length, 0),
    );
    // samples of one prompt differ (their streams differ): a fresh model is near uniform
    assert.ok(new Set(rows.slice(0, 4).map((x) => x.completion_token_ids.join(','))).size > 1);
  });

  it('is deterministic: the same shard twice gives the same bytes, and a prompt samples the same tokens in another shard', async () => {
    const a = await rolloutShard(shardInput(f));
    const b = await rolloutShard(shardInput(f));
    assert.equal(a.rollouts.sha256, b.rollouts.sha256);
    assert.deepEqual(a.rollouts, b.rollouts);
    // item 5 alone (shard 1 of another split) samples what it sampled in the batch of items 4..6
    const alone = await rolloutShard(shardInput(f, { shard: 1, shards: 2, promptOffset: 5, promptCount: 1 }));
    assert.equal(alone.rollouts.name, rolloutsName(1));
    const all = decodeRollouts(await readEntry(f.store, stepPrefix(RUN, 1), a.rollouts));
    const one = decodeRollouts(await readEntry(f.store, stepPrefix(RUN, 1), alone.rollouts));
    assert.deepEqual(
      one.map((x) => [...x.completion_token_ids]),
      all.slice(4, 8).map((x) => [...x.completion_token_ids]),
    );
  });

  it('a committed step returns the committed entry without generating (even for a checkpoint that does not exist)', async () => {
    const a = await rolloutShard(shardInput(f, { step: 2 }));
    await commit(f.store, stepPrefix(RUN, 2), [a.rollouts]);
    const again = await rolloutShard(shardInput(f, { step: 2, policyVersion: 99 }));
    assert.deepEqual(again.rollouts, a.rollouts);
    assert.equal(again.samples, a.samples);
    assert.equal(again.completionTokens, a.completionTokens);
    await assert.rejects(
      rolloutShard(shardInput(f, { step: 2, shard: 1, shards: 2 })),
      (e: unknown) => e instanceof Error && e.message.includes(`committed without "${rolloutsName(1)}"`),
    );
  });

  it('bad input fails non-retryably with a message naming it', async () => {
    const nonRetryable = (re: RegExp) => (err: unknown) => err instanceof ApplicationFailure && err.nonRetryable && re.test(err.message);
    await assert.rejects(rolloutShard(shardInput(f, { phaseIndex: 0 })), nonRetryable(/phase 0 is a "sft" phase/));
    await assert.rejects(rolloutShard(shardInput(f, { phaseIndex: 5 })), nonRetryable(/phaseIndex 5 is out of range/));
    await assert.rejects(
      rolloutShard(shardInput(f, { policyVersion: 3 })),
      nonRetryable(/checkpoint 3 of run "tiny-run" is not committed/),
    );
    await assert.rejects(rolloutShard(shardInput(f, { promptCount: 0 })), nonRetryable(/promptCount must be a positive integer/));
  });
});

describe('finishCompletion', () => {
  const decode = (ids: number[]) => ids.map((i) => 'abcdefgh'[i]).join('');
  it('cuts at a stop string (text before it, tokens through the one that completed it) and finishes "stop"', () => {
    const params = parseSamplingParams({ max_tokens: 6, stop: ['cd'] });
    const c = finishCompletion(
      { tokens: [0, 1, 2, 3, 4, 5], logprobs: [-1, -2, -3, -4, -5, -6], finishReason: 'length' },
      params,
      new Set([7]),
      decode,
    );
    assert.deepEqual(c, { tokens: [0, 1, 2, 3], logprobs: [-1, -2, -3, -4], text: 'ab', finishReason: 'stop' });
  });
  it('a stop token ends a completion and is left out of its text; the budget gives "length"', () => {
    const params = parseSamplingParams({ max_tokens: 4 });
    assert.deepEqual(finishCompletion({ tokens: [0, 1, 7], logprobs: [-1, -1, -1], finishReason: 'stop' }, params, new Set([7]), decode), {
      tokens: [0, 1, 7],
      logprobs: [-1, -1, -1],
      text: 'ab',
      finishReason: 'stop',
    });
    assert.deepEqual(
      finishCompletion({ tokens: [0, 1, 2, 3], logprobs: [-1, -1, -1, -1], finishReason: 'length' }, params, new Set([7]), decode)
        .finishReason,
      'length',
    );
  });
});

describe('evaluate', () => {
  let f: Fixture;
  before(async () => {
    f = await setup();
  });
  after(() => teardown(f));

  it('a fresh model scores near 0; the record is committed under evals/{v:06d} and returned as stored on a second call', async (t) => {
    const r = await evaluate({ storeUri: f.storeUri, runId: RUN, policyVersion: 0, phase: 'init' });
    t.diagnostic(`initial weights: greedy ${r.greedy_accuracy}, pass@2 ${r.pass_at_k?.value}, mean reward ${r.mean_reward}`);
    assert.equal(r.num_prompts, 8);
    assert.equal(r.policy_version, 0);
    assert.equal(r.step, 0);
    assert.equal(r.phase, 'init');
    assert.ok(r.greedy_accuracy !== null && r.greedy_accuracy <= 0.25, `greedy accuracy of random weights ${r.greedy_accuracy}`);
    assert.equal(r.pass_at_k?.k, 2);
    assert.ok(r.pass_at_k!.value >= 0 && r.pass_at_k!.value <= 1);
    assert.equal(r.samples.length, 8);
    const items = f.run.task.prompts(f.run.config.seed, 'eval', 8);
    assert.deepEqual(
      r.samples.map((s) => s.prompt_id),
      items.map((i) => i.promptId),
    );
    assert.deepEqual(
      r.samples.map((s) => s.reference),
      items.map((i) => i.reference),
    );
    assert.ok(r.uri.endsWith(`${evalPrefix(RUN, 0)}/${MANIFEST_NAME}`), r.uri);

    const stored = JSON.parse(new TextDecoder().decode(await readArtifact(f.store, evalPrefix(RUN, 0), EVAL_NAME)));
    const { uri: _u, seconds: _s, io: _io, ...record } = r;
    assert.deepEqual(stored, record);
    const manifestBefore = await readManifest(f.store, evalPrefix(RUN, 0));
    const again = await evaluate({ storeUri: f.storeUri, runId: RUN, policyVersion: 0, phase: 'init' });
    const { uri: _u2, seconds: _s2, io: _io2, ...record2 } = again;
    assert.deepEqual(record2, record);
    assert.deepEqual(await readManifest(f.store, evalPrefix(RUN, 0)), manifestBefore);

    // the same run in another store (another engine) evaluates to the same bytes
    const g = await setup();
    try {
      await evaluate({ storeUri: g.storeUri, runId: RUN, policyVersion: 0, phase: 'init' });
      assert.deepEqual(await readManifest(g.store, evalPrefix(RUN, 0)), manifestBefore);
    } finally {
      await teardown(g);
    }
  });

  it('after SFT updates on the eval prompts, greedy accuracy and pass@k rise', async (t) => {
    const { run, state: s0 } = f;
    const { tokenizer, task, config } = run;
    const items = task.prompts(config.seed, 'eval', 8);
    const seqs = items.map((it) => [...run.encodePrompt(it.prompt), ...run.encodeCompletion(task.sftTarget(it))]);
    const promptLen = items.map((it) => run.encodePrompt(it.prompt).length);
    const T = Math.max(...seqs.map((s) => s.length));
    const batch = {
      ids: seqs.map((s) => [...s, ...Array<number>(T - s.length).fill(tokenizer.padId!)]),
      attentionMask: seqs.map((s) => [...s.map(() => 1), ...Array<number>(T - s.length).fill(0)]),
      lossMask: seqs.map((s, b) => [...s.map((_, j) => (j >= promptLen[b]! ? 1 : 0)), ...Array<number>(T - s.length).fill(0)]),
    };
    const engine = new ModelEngine(run.model, { threads: 1 });
    let state = s0!; // setup commits checkpoint 0
    for (let i = 0; i < 150; i++) state = (await engine.trainStep(state, batch, { loss: sftLoss(), lr: 1e-2 })).state;
    await engine.close();
    await commit(f.store, checkpointPrefix(RUN, 1), await writeCheckpoint(f.store, RUN, 1, state));

    const before0 = await evaluate({ storeUri: f.storeUri, runId: RUN, policyVersion: 0, phase: 'init' });
    const r = await evaluate({ storeUri: f.storeUri, runId: RUN, policyVersion: 1, phase: 'sft' });
    t.diagnostic(`after 150 SFT updates: greedy ${r.greedy_accuracy}, pass@2 ${r.pass_at_k?.value}, mean reward ${r.mean_reward}`);
    assert.ok(
      r.greedy_accuracy !== null && r.greedy_accuracy >= 0.75,
      `greedy accuracy after memorising the eval prompts: ${r.greedy_accuracy}`,
    );
    assert.ok(r.greedy_accuracy > before0.greedy_accuracy!);
    assert.ok(r.mean_reward >= 0.75);
    assert.ok(r.pass_at_k!.value >= 0.5, `pass@2 ${r.pass_at_k!.value}`);
    assert.equal(r.samples.filter((s) => s.reward === 1).length, Math.round(r.greedy_accuracy * 8));
  });

  it('reward.functions with none verifiable: accuracy and pass@k null, the mean reward of the greedy completions; with a verifiable one: accuracy counts it, pass@2 measured', async () => {
    const module = fileURLToPath(new URL('../../fixtures/rewards/good.ts', import.meta.url));
    // brevity: −length/10, no verdict; exact: 1 when the completion equals the reference
    const plain = await setup({ reward: { functions: [{ module, export: 'brevity' }] } });
    try {
      const r = await evaluate({ storeUri: plain.storeUri, runId: RUN, policyVersion: 0, phase: 'init' });
      assert.equal(r.greedy_accuracy, null);
      assert.equal(r.pass_at_k, null);
      assert.equal(r.samples.length, 8);
      const lengths = r.samples.map((s) => -s.completion.length / 10);
      assert.deepEqual(
        r.samples.map((s) => s.reward),
        lengths,
      );
      assert.ok(Math.abs(r.mean_reward - lengths.reduce((a, b) => a + b, 0) / 8) < 1e-12, `mean reward ${r.mean_reward}`);
    } finally {
      await teardown(plain);
    }
    const judged = await setup({
      reward: {
        functions: [
          { module, export: 'brevity' },
          { module, export: 'exact', verifiable: true },
        ],
      },
    });
    try {
      const r = await evaluate({ storeUri: judged.storeUri, runId: RUN, policyVersion: 0, phase: 'init' });
      assert.equal(r.greedy_accuracy, r.samples.filter((s) => s.completion === s.reference).length / 8);
      assert.equal(r.pass_at_k?.k, 2);
    } finally {
      await teardown(judged);
    }
  });
});
