/**
 * Multi-turn episodes through the activities (the run's `environment` option), called directly on
 * a tiny run of the `calculator` environment (tagged format, llama 32x1) in a temp file:// store.
 * Checkpoint 0 is the seeded model after supervised updates on gold trajectories, so its episodes
 * call the tool and answer. rolloutShard runs the episodes turn by turn, recording each turn;
 * rewardShard scores the trajectories; computeStepAdvantages and learnerUpdate keep the loss on the
 * policy's tokens.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { firstShardInput, runFixture, warmCheckpoint0, type RunFixture } from './fixture.js';
import { computeStepAdvantages } from '../../../activities/advantage/step-advantages.js';
import { learnerUpdate } from '../../../activities/learner/learner-update.js';
import { rewardShard } from '../../../activities/reward/reward-shard.js';
import { releaseEngines } from '../../../activities/rollout/policy.js';
import { rolloutShard } from '../../../activities/rollout/rollout-shard.js';
import { evaluate } from '../../../activities/rollout/evaluate.js';
import type { RunConfigInput } from '../../../activities/run/config.js';
import { episodePartKey, episodePartsPrefix, stepPrefix } from '../../../activities/store/keys.js';
import { artifactKey, readEntry, readManifest } from '../../../activities/store/manifest.js';
import { commitStep } from '../../../activities/checkpoint/commit-step.js';
import { emptyMetrics } from '../../../workflows/step-metrics.js';
import { decodeAdvantages, decodeRewards, decodeRollouts, type RolloutsRow } from '../../../activities/store/schemas.js';

const RUN = 'episode-run';
const G = 4;
const P = 6;

const config: RunConfigInput = {
  name: 'episodes',
  seed: 3,
  environment: { name: 'calculator', options: { minDigits: 2, maxDigitsA: 2, maxDigitsB: 2, easyFraction: 0.3, maxTurns: 3 } },
  model: { hidden: 32, layers: 1, heads: 2 },
  phases: [{ kind: 'rl', steps: 2, promptsPerStep: P, groupSize: G, lr: 1e-3, sampling: { temperature: 1 } }],
  engine: { threads: 1 },
};

const shardInput = (f: RunFixture) => firstShardInput(f.storeUri, RUN, P);

/** A run whose checkpoint 0 is the seeded model after `updates` SFT updates on gold trajectories of the train split. */
async function warmRun(updates = 60): Promise<RunFixture> {
  const f = await runFixture(RUN, config);
  await warmCheckpoint0(f, RUN, { items: 32, updates });
  return f;
}

after(() => releaseEngines());

describe('episodes through the activities (environment: calculator)', () => {
  let f: RunFixture;
  let rows: RolloutsRow[];
  let sha: string;
  let firstResumed: number | undefined;
  before(async () => {
    f = await warmRun();
    const r = await rolloutShard(shardInput(f));
    sha = r.rollouts.sha256;
    firstResumed = r.resumedTurns;
    rows = decodeRollouts(await readEntry(f.store, stepPrefix(RUN, 0), r.rollouts));
  });
  after(() => f.teardown());

  it('a shard of 6 prompts × 4 is 24 episode rows, each with segments covering its completion and the loss mask on its policy segments only', () => {
    assert.equal(rows.length, P * G);
    assert.equal(firstResumed, 0, 'a first run resumes nothing');
    for (const r of rows) {
      assert.ok(r.segment_ends && r.segment_roles && r.loss_mask, `${r.prompt_id}/${r.sample_id} is an episode row`);
      assert.equal(r.segment_ends[r.segment_ends.length - 1], r.completion_token_ids.length);
      assert.ok(r.turns! >= 1 && r.turns! <= 3);
      assert.ok(['stop', 'length', 'max_turns'].includes(r.finish_reason), r.finish_reason);
    }
    const multi = rows.filter((r) => r.turns! >= 2);
    assert.ok(multi.length > 0, 'the warm model calls the tool in some episodes');
    for (const r of multi) {
      const k = r.segment_roles!.indexOf('observation');
      assert.ok(k > 0);
      const start = r.segment_ends![k - 1]!;
      assert.equal(r.loss_mask![start], false);
      assert.equal(r.behaviour_logprobs[start], 0);
      assert.match(r.completion_text, /<o>/);
    }
  });

  it("every completed turn is recorded under the shard's episode parts, the last with every episode over", async () => {
    const keys: string[] = [];
    for await (const o of f.store.list(`${episodePartsPrefix(RUN, 0, 0)}/`)) keys.push(o.key);
    const turns = Math.max(...rows.map((r) => r.turns!));
    assert.deepEqual(
      keys,
      Array.from({ length: turns }, (_, t) => episodePartKey(RUN, 0, 0, t + 1)),
    );
    const last = JSON.parse(new TextDecoder().decode(await f.store.get(keys[keys.length - 1]!)));
    assert.ok(last.checkpoint.episodes.every((e: { finishReason: string | null }) => e.finishReason !== null));
  });

  it('a retried shard resumes after the last recorded turn: with the parts after turn 1 gone it writes the same bytes; a changed turn-1 record shows up in its rows', async () => {
    const keys: string[] = [];
    for await (const o of f.store.list(`${episodePartsPrefix(RUN, 0, 0)}/`)) keys.push(o.key);
    assert.ok(keys.length >= 2, 'the shard took at least 2 turns');
    const turn1 = keys[0]!;
    const record = await f.store.get(turn1);
    for (const k of keys.slice(1)) await f.store.delete(k);
    const again = await rolloutShard(shardInput(f));
    assert.equal(again.resumedTurns, 1, 'resumed after the recorded turn 1');
    assert.equal(again.rollouts.sha256, sha, 'bitwise equal to the uninterrupted shard');

    // the record is what the retry builds on: a token logprob changed in it comes out in the row
    const part = JSON.parse(new TextDecoder().decode(record));
    part.checkpoint.episodes[0].logprobs[0] = -0.5;
    for await (const o of f.store.list(`${episodePartsPrefix(RUN, 0, 0)}/`)) await f.store.delete(o.key);
    await f.store.put(turn1, new TextEncoder().encode(JSON.stringify(part)));
    const tampered = await rolloutShard(shardInput(f));
    const row0 = decodeRollouts(await readEntry(f.store, stepPrefix(RUN, 0), tampered.rollouts))[0]!;
    assert.equal(row0.behaviour_logprobs[0], -0.5);
    assert.notEqual(tampered.rollouts.sha256, sha);
  });

  it('rewards see the trajectory (the outcome of the last turn, the calls); advantages and the learner train on policy tokens only', async () => {
    const prefix = stepPrefix(RUN, 0);
    // the untampered shard again (its parts and artifact were replaced above)
    for await (const o of f.store.list(`${episodePartsPrefix(RUN, 0, 0)}/`)) await f.store.delete(o.key);
    const r = await rolloutShard(shardInput(f));
    assert.equal(r.rollouts.sha256, sha);
    const w = await rewardShard({ storeUri: f.storeUri, runId: RUN, step: 0, shard: 0, shards: 1, rollouts: r.rollouts });
    const rewards = decodeRewards(await readEntry(f.store, prefix, w.rewards));
    assert.equal(rewards.length, P * G);
    assert.ok(rewards.every((x) => x.reward !== null && Number.isFinite(x.reward)));
    // the outcome is the last policy turn's answer: recomputed here from its segment's tokens
    const reference = new Map(f.run.task.prompts(f.run.config.seed, 'train', P).map((it) => [it.promptId, it.reference]));
    const rowOf = new Map(rows.map((x) => [`${x.prompt_id}#${x.sample_id}`, x]));
    for (const x of rewards) {
      const ro = rowOf.get(`${x.prompt_id}#${x.sample_id}`)!;
      const k = ro.segment_roles!.lastIndexOf('policy');
      const ids = Array.from(ro.completion_token_ids.subarray(k > 0 ? ro.segment_ends![k - 1]! : 0, ro.segment_ends![k]!));
      const answer = /<a>(.*?)<\/a>/.exec(f.run.tokenizer.decode(ids.filter((t) => !f.run.stopIds.includes(t))))?.[1];
      assert.equal(x.components.correct, answer === reference.get(x.prompt_id) ? 1 : 0, `${x.prompt_id}/${x.sample_id}`);
    }
    const adv = await computeStepAdvantages({
      storeUri: f.storeUri,
      runId: RUN,
      step: 0,
      phaseIndex: 0,
      rollouts: [r.rollouts],
      rewards: [w.rewards],
    });
    const advRows = decodeAdvantages(await readEntry(f.store, prefix, adv.advantages));
    const byKey = new Map(rows.map((x) => [`${x.prompt_id}#${x.sample_id}`, x]));
    for (const a of advRows) {
      const ro = byKey.get(`${a.prompt_id}#${a.sample_id}`)!;
      a.loss_mask!.forEach((m, t) =>
        assert.ok(!m || ro.loss_mask![t], `${a.prompt_id}/${a.sample_id} token ${t} is trained on but not the policy's`),
      );
    }
    const learned = await learnerUpdate({
      storeUri: f.storeUri,
      runId: RUN,
      step: 0,
      phaseIndex: 0,
      phase: 'rl',
      lr: 1e-3,
      referenceVersion: null,
      promptOffset: 0,
      batchSize: P,
      rollouts: [r.rollouts],
      advantages: adv.advantages,
    });
    assert.equal(learned.sequences, advRows.filter((a) => a.loss_mask!.some(Boolean)).length);
  });

  it('the resume points stay until the step commits (a retry before then resumes from them), then are deleted, and nothing the manifest lists with them', async () => {
    const prefix = stepPrefix(RUN, 0);
    const parts = async () => {
      const keys: string[] = [];
      for await (const o of f.store.list(`${episodePartsPrefix(RUN, 0, 0)}/`)) keys.push(o.key);
      return keys;
    };
    for (const k of await parts()) await f.store.delete(k);
    const r = await rolloutShard(shardInput(f));
    assert.equal(r.rollouts.sha256, sha);
    const turns = Math.max(...rows.map((x) => x.turns!));
    assert.equal((await parts()).length, turns, 'written, not committed: every turn is still recorded');
    assert.equal((await rolloutShard(shardInput(f))).resumedTurns, turns, 'a retry before the commit resumes after the last turn');
    const w = await rewardShard({ storeUri: f.storeUri, runId: RUN, step: 0, shard: 0, shards: 1, rollouts: r.rollouts });
    const ref = { storeUri: f.storeUri, runId: RUN, step: 0, phaseIndex: 0 };
    const adv = await computeStepAdvantages({ ...ref, rollouts: [r.rollouts], rewards: [w.rewards] });
    const learned = await learnerUpdate({
      ...ref,
      phase: 'rl',
      lr: 1e-3,
      referenceVersion: null,
      promptOffset: 0,
      batchSize: P,
      rollouts: [r.rollouts],
      advantages: adv.advantages,
    });
    const input = {
      storeUri: f.storeUri,
      runId: RUN,
      step: 0,
      phase: 'rl' as const,
      checkpoint: learned.checkpoint,
      artifacts: [r.rollouts, w.rewards, adv.advantages],
      metrics: emptyMetrics(),
    };
    // a part left by a crash between the commit and the deletion is deleted by the retried commit
    const straggler = episodePartKey(RUN, 0, 0, 1);
    const straggling = await f.store.get(straggler);
    assert.equal((await commitStep(input)).created, true);
    assert.deepEqual(await parts(), [], 'no resume point of the committed step is left');
    await f.store.put(straggler, straggling);
    assert.equal((await commitStep(input)).created, false);
    assert.deepEqual(await parts(), []);
    // every artifact the manifest lists is still there, and the shard now returns the committed one
    const manifest = (await readManifest(f.store, prefix))!;
    for (const e of manifest.artifacts) assert.ok(await f.store.head(artifactKey(prefix, e)), `${e.name} is kept`);
    const again = await rolloutShard(shardInput(f));
    assert.equal(again.rollouts.sha256, sha);
    assert.equal(decodeRollouts(await readEntry(f.store, prefix, again.rollouts)).length, P * G);
  });

  it('the evaluation runs greedy episodes: accuracy from their final answers, and per episode the turns, tool calls and finish reasons', async () => {
    const r = await evaluate({ storeUri: f.storeUri, runId: RUN, policyVersion: 0, phase: 'init' });
    const n = r.num_prompts;
    assert.equal(n, f.run.config.eval.prompts);
    assert.ok(r.episodes, 'an environment run records its episodes');
    assert.ok(r.episodes.turns_mean >= 1 && r.episodes.turns_mean <= 3);
    assert.ok(r.episodes.tool_calls_mean >= 0);
    const shares = Object.values(r.episodes.finish_reasons).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(shares - 1) < 1e-9, `finish reason shares sum to ${shares}`);
    const shown = r.samples.filter((x) => /<a>(.*?)<\/a>/.exec(x.completion.split('</o>').pop()!)?.[1] === x.reference).length;
    assert.ok(r.greedy_accuracy! >= shown / n - 1e-9);
    assert.ok(r.pass_at_k && r.pass_at_k.k === f.run.config.eval.passK);
  });
});
