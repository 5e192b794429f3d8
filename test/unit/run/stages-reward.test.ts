/**
 * rewardShard (activities/reward/reward-shard.ts) and computeStepAdvantages
 * (activities/advantage/step-advantages.ts) called directly on rollouts whose completions the test
 * writes itself (right or wrong answers of one-digit addition), so every reward and every
 * advantage sign is known in advance. No model is needed.
 */
import { runFixture, type RunFixture } from './fixture.js';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { ApplicationFailure } from '@temporalio/common';
import { rewardShard, taskItemsById } from '../../../activities/reward/reward-shard.js';
import { computeStepAdvantages } from '../../../activities/advantage/step-advantages.js';
import { type RunConfigInput } from '../../../activities/run/config.js';
import { getTask } from '../../../activities/tasks/tasks.js';
import { ADVANTAGES_NAME, rewardsName, rolloutsName, stepPrefix } from '../../../activities/store/keys.js';
import { commit, readEntry, writeArtifact, type ManifestEntry } from '../../../activities/store/manifest.js';
import {
  REWARDS,
  ROLLOUTS,
  decodeAdvantages,
  decodeRewards,
  encodeRewards,
  encodeRollouts,
  type RewardsInput,
  type RolloutsInput,
} from '../../../activities/store/schemas.js';

const RUN = 'reward-run';
const STEP = 3;
const G = 4;

const baseConfig = (over: Partial<RunConfigInput> = {}): RunConfigInput => ({
  name: 'tiny',
  seed: 11,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  model: { hidden: 32, layers: 1, heads: 2 },
  phases: [
    { kind: 'sft', steps: 3 },
    { kind: 'rl', steps: 2, promptsPerStep: 3, groupSize: G },
  ],
  engine: { threads: 1 },
  ...over,
});

type Fixture = RunFixture;
const setup = (over: Partial<RunConfigInput> = {}): Promise<Fixture> => runFixture(RUN, baseConfig(over));
const teardown = (f: Fixture): Promise<void> => f.teardown();

/**
 * Rollouts of items [offset, offset + pattern.length) of the train split: for prompt p, sample s
 * writes the gold answer when pattern[p][s] is 1 and a malformed one ("+") otherwise.
 */
async function writeRollouts(
  f: Fixture,
  shard: number,
  offset: number,
  pattern: number[][],
): Promise<{ entry: ManifestEntry; rows: RolloutsInput[] }> {
  const { task, config } = f.run;
  const items = task.prompts(config.seed, 'train', pattern.length, offset);
  const rows: RolloutsInput[] = [];
  items.forEach((item, p) => {
    pattern[p]!.forEach((right, s) => {
      const text = right ? task.sftTarget(item) : '+'.repeat(1 + s);
      const ids = f.run.encodeCompletion(text);
      rows.push({
        run_id: RUN,
        step: STEP,
        prompt_id: item.promptId,
        sample_id: s,
        group_id: item.promptId,
        policy_version: STEP,
        prompt_text: item.prompt,
        prompt_token_ids: f.run.encodePrompt(item.prompt),
        completion_text: text,
        completion_token_ids: ids,
        behaviour_logprobs: ids.map(() => -1),
        finish_reason: 'stop',
      });
    });
  });
  const entry = await writeArtifact(f.store, stepPrefix(RUN, STEP), {
    name: rolloutsName(shard),
    bytes: encodeRollouts(rows),
    schema: ROLLOUTS,
  });
  return { entry, rows };
}

const nonRetryable = (re: RegExp) => (err: unknown) =>
  err instanceof ApplicationFailure && err.nonRetryable === true && re.test(err.message);

/** A loopback port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res) => srv.listen(0, '127.0.0.1', res));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((res) => srv.close(() => res()));
  return port;
}

describe('taskItemsById', () => {
  const task = getTask('addition', { minDigits: 1, maxDigits: 2 });
  it('regenerates the items a set of prompt ids names, across ranges and splits', () => {
    const train = task.prompts(5, 'train', 12, 0);
    const evalItems = task.prompts(5, 'eval', 3, 40);
    const want = [train[3]!, train[4]!, train[5]!, train[10]!, evalItems[2]!, evalItems[0]!];
    const got = taskItemsById(task, 5, [...want.map((i) => i.promptId), train[4]!.promptId]);
    assert.equal(got.size, 6);
    for (const item of want) assert.deepEqual(got.get(item.promptId), item);
  });
  it('names an id of another task or form', () => {
    assert.throws(
      () => taskItemsById(task, 5, ['countdown-train-000001']),
      /prompt id "countdown-train-000001" is not an item of task "addition"/,
    );
    assert.throws(() => taskItemsById(task, 5, ['addition-test-000001']), /not an item of task "addition"/);
  });
});

describe('rewardShard', () => {
  let f: Fixture;
  before(async () => {
    f = await setup();
  });
  after(() => teardown(f));

  it("scores each completion against its item's reference: rows, sums and components", async () => {
    const { entry } = await writeRollouts(f, 0, 9, [
      [1, 0, 0, 1],
      [0, 0, 0, 0],
    ]);
    const r = await rewardShard({ storeUri: f.storeUri, runId: RUN, step: STEP, shard: 0, shards: 2, rollouts: entry });
    assert.equal(r.rewards.name, rewardsName(0));
    const rows = decodeRewards(await readEntry(f.store, stepPrefix(RUN, STEP), r.rewards));
    assert.deepEqual(
      rows.map((x) => x.reward),
      [1, 0, 0, 1, 0, 0, 0, 0],
    );
    assert.deepEqual(
      rows.map((x) => x.sample_id),
      [0, 1, 2, 3, 0, 1, 2, 3],
    );
    assert.ok(rows.every((x) => x.error === null && x.run_id === RUN && x.step === STEP));
    assert.deepEqual(rows[0]!.components, { correct: 1, well_formed: 1 });
    assert.deepEqual(rows[1]!.components, { correct: 0, well_formed: 0 });
    assert.deepEqual(
      {
        samples: r.samples,
        scored: r.scored,
        sum: r.sum,
        sumSquares: r.sumSquares,
        min: r.min,
        max: r.max,
        errors: r.errors,
        dropped: r.dropped,
        components: r.components,
      },
      { samples: 8, scored: 8, sum: 2, sumSquares: 2, min: 0, max: 1, errors: 0, dropped: 0, components: { correct: 2, well_formed: 2 } },
    );
  });

  it('is deterministic, and a committed step returns its rewards without scoring', async () => {
    const { entry } = await writeRollouts(f, 1, 20, [[1, 1, 0, 1]]);
    const input = { storeUri: f.storeUri, runId: RUN, step: STEP + 1, shard: 1, shards: 2, rollouts: entry };
    // rollouts live under step STEP; copy the entry's bytes under STEP + 1 for this test
    const bytes = await readEntry(f.store, stepPrefix(RUN, STEP), entry);
    const moved = await writeArtifact(f.store, stepPrefix(RUN, STEP + 1), { name: entry.name, bytes, schema: ROLLOUTS });
    const a = await rewardShard({ ...input, rollouts: moved });
    const b = await rewardShard({ ...input, rollouts: moved });
    assert.deepEqual(a.rewards, b.rewards);
    await commit(f.store, stepPrefix(RUN, STEP + 1), [moved, a.rewards]);
    const bogus = { ...moved, sha256: '0'.repeat(64) }; // reading it would fail the integrity check
    const c = await rewardShard({ ...input, rollouts: bogus });
    assert.deepEqual(c.rewards, a.rewards);
    assert.equal(c.sum, 3);
    assert.equal(c.scored, 4);
  });
});

describe('rewardShard error policy (a judge on a closed loopback port)', () => {
  let port: number;
  before(async () => {
    port = await closedPort();
  });
  const judge = () => ({
    name: 'llm_judge',
    options: { baseUrl: `http://127.0.0.1:${port}/v1`, model: 'none', principle: 'answer correctly', retries: 0, timeoutMs: 2000 },
  });

  it('onError "drop": every failure is counted and recorded with its error text; nothing throws', async () => {
    const f = await setup({ reward: { spec: judge(), errorPolicy: { onError: 'drop', timeoutMs: 5000 } } });
    try {
      const { entry } = await writeRollouts(f, 0, 0, [[1, 0, 1, 0]]);
      const r = await rewardShard({ storeUri: f.storeUri, runId: RUN, step: STEP, shard: 0, shards: 1, rollouts: entry });
      assert.equal(r.samples, 4);
      assert.equal(r.errors, 4);
      assert.equal(r.dropped, 4);
      assert.equal(r.scored, 0);
      assert.equal(r.min, null);
      const rows = decodeRewards(await readEntry(f.store, stepPrefix(RUN, STEP), r.rewards));
      for (const row of rows) {
        assert.equal(row.reward, null);
        assert.match(row.error ?? '', /judge request failed/);
      }
    } finally {
      await teardown(f);
    }
  });

  it('onError "fail": the shard fails non-retryably naming the reward and the sample', async () => {
    const f = await setup({ reward: { spec: judge(), errorPolicy: { onError: 'fail', timeoutMs: 5000 } } });
    try {
      const { entry } = await writeRollouts(f, 0, 0, [[1, 0]]);
      await assert.rejects(
        rewardShard({ storeUri: f.storeUri, runId: RUN, step: STEP, shard: 0, shards: 1, rollouts: entry }),
        nonRetryable(/reward llm_judge failed on sample addition-train-000000\/\d/),
      );
    } finally {
      await teardown(f);
    }
  });
});

describe('computeStepAdvantages', () => {
  let f: Fixture;
  before(async () => {
    f = await setup();
  });
  after(() => teardown(f));

  async function writeRewards(shard: number, rollouts: RolloutsInput[], rewards: (number | null)[]): Promise<ManifestEntry> {
    const rows: RewardsInput[] = rollouts.map((r, i) => ({
      run_id: RUN,
      step: STEP,
      prompt_id: r.prompt_id,
      sample_id: r.sample_id,
      reward: rewards[i]!,
      components: {},
      error: rewards[i] === null ? 'judge timed out' : null,
    }));
    return writeArtifact(f.store, stepPrefix(RUN, STEP), { name: rewardsName(shard), bytes: encodeRewards(rows), schema: REWARDS });
  }

  it('GRPO over two shards: group [1,0,0,1] gets signs (+,-,-,+); a dropped sample has advantage 0 and an all-false mask', async () => {
    const r0 = await writeRollouts(f, 0, 0, [[1, 0, 0, 1]]);
    const r1 = await writeRollouts(f, 1, 1, [
      [1, 0, 0, 0],
      [0, 0, 0, 0],
    ]);
    const w0 = await writeRewards(0, r0.rows, [1, 0, 0, 1]);
    const w1 = await writeRewards(1, r1.rows, [1, null, 0, 0, 0, 0, 0, 0]);
    const input = { storeUri: f.storeUri, runId: RUN, step: STEP, phaseIndex: 1, rollouts: [r0.entry, r1.entry], rewards: [w0, w1] };
    const a = await computeStepAdvantages(input);
    const rows = decodeAdvantages(await readEntry(f.store, stepPrefix(RUN, STEP), a.advantages));
    const all = [...r0.rows, ...r1.rows];
    assert.equal(rows.length, 12);
    assert.deepEqual(
      rows.map((x) => [x.prompt_id, x.sample_id]),
      all.map((x) => [x.prompt_id, x.sample_id]),
    );
    const adv = rows.map((x) => x.advantage!);
    assert.ok(adv[0]! > 0 && adv[1]! < 0 && adv[2]! < 0 && adv[3]! > 0, `group 1 advantages ${adv.slice(0, 4)}`);
    assert.ok(Math.abs(adv[0]! + adv[1]!) < 1e-9, 'GRPO centres the group');
    // group 2 [1, dropped, 0, 0]: the dropped sample is left out of the group statistics
    assert.equal(adv[5], 0);
    assert.deepEqual([...rows[5]!.loss_mask!], new Array(all[5]!.completion_token_ids.length).fill(false));
    assert.ok(adv[4]! > 0 && adv[6]! < 0 && adv[7]! < 0);
    assert.ok(Math.abs(adv[4]! + 2 * adv[6]!) < 1e-9, 'mean of the three kept rewards is the baseline');
    // group 3: all 0 — zero variance, advantage 0, still trained on (dropZeroVarianceGroups is off)
    assert.deepEqual(adv.slice(8), [0, 0, 0, 0]);
    for (const [i, row] of rows.entries()) {
      if (i === 5) continue;
      assert.deepEqual([...row.loss_mask!], new Array(all[i]!.completion_token_ids.length).fill(true));
      assert.equal(row.token_advantages, null);
    }
    assert.equal(a.keptSamples, 11);
    assert.equal(a.droppedSamples, 1);
    assert.equal(a.zeroVarianceGroups, 1);

    // deterministic, and a committed step is returned as committed without reading the inputs
    const b = await computeStepAdvantages(input);
    assert.deepEqual(b.advantages, a.advantages);
    await commit(f.store, stepPrefix(RUN, STEP), [r0.entry, r1.entry, w0, w1, a.advantages]);
    const c = await computeStepAdvantages({ ...input, rollouts: [], rewards: [] });
    assert.equal(c.advantages.name, ADVANTAGES_NAME);
    assert.deepEqual(c.advantages, a.advantages);
    const { seconds: _s1, ...sa } = a;
    const { seconds: _s2, ...sc } = c;
    assert.equal(sc.keptSamples, sa.keptSamples);
    assert.equal(sc.droppedSamples, sa.droppedSamples);
    assert.equal(sc.zeroVarianceGroups, sa.zeroVarianceGroups);
    assert.ok(Math.abs(sc.advantageMean - sa.advantageMean) < 1e-6 && Math.abs(sc.advantageStd - sa.advantageStd) < 1e-6);
  });

  it('dropZeroVarianceGroups masks a flat group; bad input is named and non-retryable', async () => {
    const g = await setup({
      phases: [{ kind: 'rl', steps: 1, promptsPerStep: 2, groupSize: G, advantage: { estimator: 'grpo', dropZeroVarianceGroups: true } }],
    });
    try {
      const r = await writeRollouts(g, 0, 0, [
        [1, 0, 1, 0],
        [0, 0, 0, 0],
      ]);
      const rows: RewardsInput[] = r.rows.map((x, i) => ({
        run_id: RUN,
        step: STEP,
        prompt_id: x.prompt_id,
        sample_id: x.sample_id,
        reward: [1, 0, 1, 0, 0, 0, 0, 0][i]!,
        components: {},
        error: null,
      }));
      const w = await writeArtifact(g.store, stepPrefix(RUN, STEP), { name: rewardsName(0), bytes: encodeRewards(rows), schema: REWARDS });
      const a = await computeStepAdvantages({
        storeUri: g.storeUri,
        runId: RUN,
        step: STEP,
        phaseIndex: 0,
        rollouts: [r.entry],
        rewards: [w],
      });
      const adv = decodeAdvantages(await readEntry(g.store, stepPrefix(RUN, STEP), a.advantages));
      assert.ok(adv.slice(4).every((x) => x.advantage === 0 && x.loss_mask!.every((m) => !m)));
      assert.ok(adv.slice(0, 4).every((x) => x.loss_mask!.every(Boolean)));
      assert.equal(a.keptSamples, 4);
      assert.equal(a.droppedSamples, 4);

      const short = await writeArtifact(g.store, stepPrefix(RUN, STEP), {
        name: rewardsName(9),
        bytes: encodeRewards(rows.slice(0, 7)),
        schema: REWARDS,
      });
      await assert.rejects(
        computeStepAdvantages({ storeUri: g.storeUri, runId: RUN, step: STEP, phaseIndex: 0, rollouts: [r.entry], rewards: [short] }),
        nonRetryable(/sample addition-train-000001\/3 has no rewards row/),
      );
      await assert.rejects(
        computeStepAdvantages({ storeUri: g.storeUri, runId: RUN, step: STEP, phaseIndex: 0, rollouts: [r.entry], rewards: [] }),
        nonRetryable(/1 rollouts shards but 0 rewards shards/),
      );
    } finally {
      await teardown(g);
    }
  });
});
