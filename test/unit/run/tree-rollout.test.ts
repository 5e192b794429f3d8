/**
 * Tree-structured rollouts (the rl phase's `tree` option, V-STAR) through the activities, called
 * directly on a tiny run (llama 32x1, one-digit addition, random initial weights) in a temp
 * file:// store: rolloutShard builds trees, rewardShard scores them, computeStepAdvantages runs
 * Sibling-GRPO on them and learnerUpdate trains on them.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { firstShardInput, runFixture, type RunFixture } from './fixture.js';
import { computeStepAdvantages, stepAdvantages } from '../../../activities/advantage/step-advantages.js';
import { parseAdvantageConfig } from '../../../activities/advantage/index.js';
import { siblingGrpo, siblingGrpoOptionsSchema } from '../../../activities/advantage/sibling-grpo.js';
import { ConfigError, parseConfig } from '../../../activities/common/config.js';
import { learnerUpdate } from '../../../activities/learner/learner-update.js';
import { rewardShard } from '../../../activities/reward/reward-shard.js';
import { releaseEngines } from '../../../activities/rollout/policy.js';
import { rolloutShard } from '../../../activities/rollout/rollout-shard.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { stepPrefix } from '../../../activities/store/keys.js';
import { readEntry } from '../../../activities/store/manifest.js';
import { decodeAdvantages, decodeRewards, decodeRollouts, type RolloutsRow } from '../../../activities/store/schemas.js';

const RUN = 'tree-run';
const G = 6;

const config = (tree: Record<string, unknown> | null = { roots: 2, childrenPerBranch: 2 }): RunConfigInput => ({
  name: 'tree',
  seed: 7,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  // the random initial policy never answers: a reward of the text's length varies from sample to sample
  reward: { spec: { name: 'length_penalty', options: { unit: 'chars', minLength: 1, maxLength: 1, rampLength: 8 } } },
  model: { hidden: 32, layers: 1, heads: 2 },
  phases: [
    {
      kind: 'rl',
      steps: 2,
      promptsPerStep: 3,
      groupSize: G,
      lr: 1e-2,
      sampling: { temperature: 1 },
      advantage: { estimator: 'sibling_grpo' },
      ...(tree === null ? {} : { tree }),
    } as never,
  ],
  engine: { threads: 1 },
});

const shardInput = (f: RunFixture) => firstShardInput(f.storeUri, RUN, 3);

after(() => releaseEngines());

describe('tree rollouts (rl phase option `tree`)', () => {
  let f: RunFixture;
  let rows: RolloutsRow[];
  let sha: string;
  before(async () => {
    f = await runFixture(RUN, config(), { checkpoint0: true });
    const r = await rolloutShard(shardInput(f));
    sha = r.rollouts.sha256;
    rows = decodeRollouts(await readEntry(f.store, stepPrefix(RUN, 0), r.rollouts));
  });
  after(() => f.teardown());

  it('each prompt gets one tree of groupSize nodes: sample ids 0..G-1, every parent in the tree, roots with null parent and branch_position 0', () => {
    assert.equal(rows.length, 3 * G);
    const byPrompt = new Map<string, RolloutsRow[]>();
    for (const r of rows) byPrompt.set(r.prompt_id, [...(byPrompt.get(r.prompt_id) ?? []), r]);
    assert.equal(byPrompt.size, 3);
    let children = 0;
    for (const [, group] of byPrompt) {
      assert.deepEqual(
        group.map((r) => r.sample_id),
        [0, 1, 2, 3, 4, 5],
      );
      const ids = new Map(group.map((r) => [r.node_id!, r]));
      assert.equal(ids.size, G, 'node ids are unique within a tree');
      for (const r of group) {
        assert.ok(r.node_id !== null && r.branch_position !== null);
        if (r.parent_node_id === null) {
          assert.equal(r.branch_position, 0);
        } else {
          children++;
          const parent = ids.get(r.parent_node_id);
          assert.ok(parent, `parent ${r.parent_node_id} of ${r.node_id} is a row of the same prompt`);
          assert.ok(r.branch_position! >= 1 && r.branch_position! < r.completion_token_ids.length);
          assert.ok(r.branch_position! > parent.branch_position!, 'a node is branched only inside the tokens it generated');
        }
      }
      assert.equal(group.filter((r) => r.parent_node_id === null).length >= 2, true, 'roots: 2 (more if a tree stalls)');
    }
    assert.ok(children >= 3, `the trees branch: ${children} child nodes`);
  });

  it("a child's completion starts with its parent's tokens [0, branch_position) and their behaviour logprobs, bit for bit", () => {
    const byNode = new Map(rows.map((r) => [r.node_id!, r]));
    for (const r of rows) {
      if (r.parent_node_id === null) continue;
      const p = byNode.get(r.parent_node_id)!;
      const bp = r.branch_position!;
      assert.deepEqual([...r.completion_token_ids.slice(0, bp)], [...p.completion_token_ids.slice(0, bp)]);
      assert.deepEqual([...r.behaviour_logprobs.slice(0, bp)], [...p.behaviour_logprobs.slice(0, bp)]);
      assert.deepEqual(
        [...r.prompt_token_ids],
        [...p.prompt_token_ids],
        "the prompt is the tree's prompt; the copied prefix is in the completion",
      );
    }
  });

  it('a retried shard writes the same bytes (fresh engine, same sha256)', async () => {
    await releaseEngines();
    const again = await rolloutShard(shardInput(f));
    assert.equal(again.rollouts.sha256, sha);
  });

  it("Sibling-GRPO runs on the trees: per-token advantages equal the estimator's, copied prefixes masked; the learner trains on them with behaviour logprobs matching its own", async () => {
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
    const rewardRows = decodeRewards(await readEntry(f.store, prefix, rewards));
    assert.equal(advRows.length, rows.length);

    const expected = siblingGrpo(
      {
        samples: rows.map((r, i) => ({
          sampleId: `${r.prompt_id}#${r.sample_id}`,
          groupId: r.group_id,
          reward: rewardRows[i]!.reward!,
          completionLength: r.completion_token_ids.length,
          nodeId: r.node_id!,
          parentNodeId: r.parent_node_id,
          branchPosition: r.branch_position!,
        })),
      },
      parseConfig(siblingGrpoOptionsSchema, { estimator: 'sibling_grpo' }, 'sibling_grpo'),
    );
    let nonzero = 0;
    advRows.forEach((a, i) => {
      const r = rows[i]!;
      const e = expected.samples[i]!;
      assert.equal(a.node_id, r.node_id);
      assert.ok(a.token_advantages, 'sibling_grpo writes per-token advantages');
      assert.deepEqual([...a.token_advantages], [...Float32Array.from(e.tokenAdvantages!)]);
      assert.deepEqual(
        a.loss_mask,
        Array.from(e.lossMask!, (m) => m === 1),
      );
      for (let t = 0; t < r.branch_position!; t++)
        assert.equal(a.loss_mask![t], false, `${r.node_id}: copied token ${t} is masked (trained on the parent's row)`);
      nonzero += [...a.token_advantages].filter((v) => v !== 0).length;
    });
    const spread = new Set(rewardRows.map((w) => w.reward)).size;
    assert.ok(spread >= 2, `rewards vary: ${rewardRows.map((w) => w.reward).join(' ')}`);
    assert.ok(nonzero > 0, 'some branch point has siblings with different values');

    const r = await learnerUpdate({
      storeUri: f.storeUri,
      runId: RUN,
      step: 0,
      phaseIndex: 0,
      phase: 'rl',
      lr: 1e-2,
      referenceVersion: null,
      promptOffset: 0,
      batchSize: 3,
      rollouts: [rollouts],
      advantages: adv.advantages,
    });
    const trained = advRows.filter((a) => a.loss_mask!.some(Boolean)).length;
    assert.equal(r.sequences, trained);
    assert.ok(
      r.metrics.logprob_diff! <= 1e-4,
      `children decoded from prompt + copied prefix record the learner's logprobs: logprob_diff ${r.metrics.logprob_diff}`,
    );
    assert.ok(Number.isFinite(r.metrics.loss) && Number.isFinite(r.metrics.grad_norm));
  });
});

describe('tree rollouts: a node without a reward', () => {
  let f: RunFixture;
  before(async () => {
    f = await runFixture(RUN, config(), { checkpoint0: true });
  });
  after(() => f.teardown());

  it('leaves its whole tree out of the advantages (advantage 0, all-false masks) while the other trees train', async () => {
    const prefix = stepPrefix(RUN, 0);
    const rollouts = (await rolloutShard(shardInput(f))).rollouts;
    const rewards = (await rewardShard({ storeUri: f.storeUri, runId: RUN, step: 0, shard: 0, shards: 1, rollouts })).rewards;
    const rows = decodeRollouts(await readEntry(f.store, prefix, rollouts));
    const scored = decodeRewards(await readEntry(f.store, prefix, rewards));
    // a root of the first tree lost its reward (the error policy dropped it): its children name a missing parent
    const lost = rows.findIndex((r) => r.parent_node_id === null && rows.some((c) => c.parent_node_id === r.node_id));
    assert.ok(lost >= 0, 'some root has children');
    const broken = rows[lost]!.group_id;
    const withDrop = scored.map((w, i) => (i === lost ? { ...w, reward: null, error: 'reward timed out' } : w));
    const adv = stepAdvantages(parseAdvantageConfig({ estimator: 'sibling_grpo' }), rows, withDrop);
    adv.rows.forEach((a, i) => {
      if (rows[i]!.group_id !== broken) return;
      assert.equal(a.advantage, 0, `${a.node_id} of the broken tree`);
      assert.ok(
        Array.from(a.loss_mask!).every((m) => !m),
        `${a.node_id} of the broken tree trains no token`,
      );
    });
    const others = adv.rows.filter((_, i) => rows[i]!.group_id !== broken);
    assert.ok(
      others.some((a) => Array.from(a.loss_mask!).some(Boolean)),
      'the other trees still train',
    );
    assert.ok(adv.keptSamples <= rows.length - rows.filter((r) => r.group_id === broken).length, `kept ${adv.keptSamples} samples`);
  });
});

describe('tree rollouts: config', () => {
  it('roots of a tree are the flat samples with the same index (same random streams)', async () => {
    const flat = await runFixture(
      RUN,
      { ...config(null), phases: [{ kind: 'rl', steps: 2, promptsPerStep: 3, groupSize: G, sampling: { temperature: 1 } }] },
      { checkpoint0: true },
    );
    const tree = await runFixture(RUN, config({ roots: 2, childrenPerBranch: 2 }), { checkpoint0: true });
    try {
      const read = async (x: RunFixture) =>
        decodeRollouts(await readEntry(x.store, stepPrefix(RUN, 0), (await rolloutShard(shardInput(x))).rollouts));
      const a = await read(flat);
      const b = await read(tree);
      for (const r of b.filter((x) => x.parent_node_id === null)) {
        const i = Number(r.node_id!.split('/').at(-1));
        const same = a.find((x) => x.prompt_id === r.prompt_id && x.sample_id === i)!;
        assert.deepEqual([...r.completion_token_ids], [...same.completion_token_ids]);
      }
      assert.ok(a.every((r) => r.node_id === null && r.branch_position === null));
    } finally {
      await flat.teardown();
      await tree.teardown();
    }
  });

  it('the tree option is off by default, needs sibling_grpo and at most groupSize roots, naming the field', () => {
    const base = { kind: 'rl', steps: 1, groupSize: 4 } as const;
    const phase = parseRunConfig({ phases: [base] }).phases[0]!;
    assert.equal(phase.kind === 'rl' && phase.tree, null);
    const on = parseRunConfig({ phases: [{ ...base, advantage: { estimator: 'sibling_grpo' }, tree: {} }] }).phases[0]!;
    assert.deepEqual(on.kind === 'rl' && on.tree, {
      roots: 4,
      childrenPerBranch: 2,
      maxBranchesPerRound: null,
      maxDepth: 3,
      minSpacing: 1,
      criterion: 'value',
      explorationWeight: 0.5,
      minEntropy: 0,
      temperature: 0,
      allocation: 'uniform',
    });
    assert.throws(
      () => parseRunConfig({ phases: [{ ...base, tree: {} }] }),
      (e: unknown) => e instanceof ConfigError && /phases\.0\.advantage\.estimator/.test(e.message) && /sibling_grpo/.test(e.message),
    );
    assert.throws(
      () => parseRunConfig({ phases: [{ ...base, advantage: { estimator: 'sibling_grpo' }, tree: { roots: 5 } }] }),
      (e: unknown) => e instanceof ConfigError && /phases\.0\.tree\.roots/.test(e.message),
    );
    assert.throws(
      () => parseRunConfig({ phases: [{ ...base, advantage: { estimator: 'sibling_grpo' }, tree: { criterion: 'beam' } }] }),
      (e: unknown) => e instanceof ConfigError && /phases\.0\.tree\.criterion/.test(e.message),
    );
  });
});
