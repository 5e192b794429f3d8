/**
 * DAPO dynamic sampling through the advantage activity (activities/advantage/step-advantages.ts):
 * computeStepAdvantages called directly on rollouts and rewards the test writes, under an rl phase
 * whose `dynamicSampling` is `refill` or `filter`. Each group's rewards are chosen, so which groups
 * are informative, which are trained on and how many prompts a refill round asks for are known.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { computeStepAdvantages } from '../../../activities/advantage/step-advantages.js';
import { computeAdvantages, parseAdvantageConfig } from '../../../activities/advantage/index.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { ConfigError } from '../../../activities/common/config.js';
import { rewardsName, rolloutsName, stepPrefix } from '../../../activities/store/keys.js';
import { commit, readEntry, writeArtifact, type ManifestEntry } from '../../../activities/store/manifest.js';
import {
  REWARDS,
  ROLLOUTS,
  decodeAdvantages,
  encodeRewards,
  encodeRollouts,
  type RolloutsInput,
} from '../../../activities/store/schemas.js';
import { runFixture, type RunFixture } from './fixture.js';

const RUN = 'dapo-run';
const STEP = 0;
const G = 4;

const config = (dynamicSampling: Record<string, unknown>, advantage: Record<string, unknown> = { estimator: 'grpo' }): RunConfigInput => ({
  name: 'tiny',
  seed: 5,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  model: { hidden: 32, layers: 1, heads: 2 },
  phases: [{ kind: 'rl', steps: 2, promptsPerStep: 3, groupSize: G, advantage, dynamicSampling } as never],
  engine: { threads: 1 },
});

/** Shard `shard`: items [offset, offset + rewards.length) of the train split, sample s of prompt p scored rewards[p][s]. */
async function writeShard(
  f: RunFixture,
  shard: number,
  offset: number,
  rewards: number[][],
): Promise<{ rollouts: ManifestEntry; rewards: ManifestEntry; rows: RolloutsInput[] }> {
  const { task, config: cfg } = f.run;
  const rows: RolloutsInput[] = [];
  task.prompts(cfg.seed, 'train', rewards.length, offset).forEach((item) => {
    for (let s = 0; s < G; s++) {
      const ids = f.run.encodeCompletion('1'.repeat(1 + s));
      rows.push({
        run_id: RUN,
        step: STEP,
        prompt_id: item.promptId,
        sample_id: s,
        group_id: item.promptId,
        policy_version: STEP,
        prompt_text: item.prompt,
        prompt_token_ids: f.run.encodePrompt(item.prompt),
        completion_text: '1'.repeat(1 + s),
        completion_token_ids: ids,
        behaviour_logprobs: ids.map(() => -1),
        finish_reason: 'stop',
      });
    }
  });
  const prefix = stepPrefix(RUN, STEP);
  const r = await writeArtifact(f.store, prefix, { name: rolloutsName(shard), bytes: encodeRollouts(rows), schema: ROLLOUTS });
  const w = await writeArtifact(f.store, prefix, {
    name: rewardsName(shard),
    bytes: encodeRewards(
      rows.map((x, i) => ({
        run_id: RUN,
        step: STEP,
        prompt_id: x.prompt_id,
        sample_id: x.sample_id,
        reward: rewards[Math.floor(i / G)]![i % G]!,
        components: {},
        error: null,
      })),
    ),
    schema: REWARDS,
  });
  return { rollouts: r, rewards: w, rows };
}

const inLoss = (mask: boolean[] | null) => mask === null || mask.some(Boolean);

describe('dynamic sampling in the advantage activity', () => {
  let f: RunFixture;
  before(async () => {
    f = await runFixture(RUN, config({ mode: 'refill', maxRounds: 2 }, { estimator: 'grpo', scale: 'batch' }));
  });
  after(() => f.teardown());

  it('refill: round 0 with 1 of 3 groups informative asks for ceil(1.2·2/(1/3)) = 8 prompts; round 1 fills the batch with the first 2 informative new groups', async () => {
    const s0 = await writeShard(f, 0, 0, [
      [1, 0, 0, 0],
      [1, 1, 1, 1],
      [0, 0, 0, 0],
    ]);
    const base = { storeUri: f.storeUri, runId: RUN, step: STEP, phaseIndex: 0 };
    const a0 = await computeStepAdvantages({ ...base, rollouts: [s0.rollouts], rewards: [s0.rewards], round: 0 });
    assert.deepEqual(a0.dynamic, { round: 0, groups: 3, informativeGroups: 1, selectedGroups: 1, droppedGroups: 2, morePrompts: 8 });
    const rows0 = decodeAdvantages(await readEntry(f.store, stepPrefix(RUN, STEP), a0.advantages));
    assert.deepEqual(
      rows0.map((r) => inLoss(r.loss_mask)),
      [true, true, true, true, false, false, false, false, false, false, false, false],
    );
    assert.equal(a0.keptSamples, 4);
    assert.equal(a0.zeroVarianceGroups, 2);

    // Round 1 (shard 1, as planRefill numbers it): groups informative, flat, informative, informative.
    const s1 = await writeShard(f, 1, 100, [
      [0, 1, 0, 1],
      [0, 0, 0, 0],
      [1, 1, 0, 1],
      [0, 0, 1, 0],
    ]);
    const a1 = await computeStepAdvantages({ ...base, rollouts: [s0.rollouts, s1.rollouts], rewards: [s0.rewards, s1.rewards], round: 1 });
    assert.deepEqual(a1.dynamic, { round: 1, groups: 7, informativeGroups: 4, selectedGroups: 3, droppedGroups: 3, morePrompts: 0 });
    const rows = decodeAdvantages(await readEntry(f.store, stepPrefix(RUN, STEP), a1.advantages));
    assert.equal(rows.length, 28, 'one advantages row per rollout row of both rounds');
    const groups = [0, 1, 2, 3, 4, 5, 6].map((g) => rows.slice(g * G, (g + 1) * G));
    assert.deepEqual(
      groups.map((g) => g.every((r) => inLoss(r.loss_mask))),
      [true, false, false, true, false, true, false],
      'trained on: the round-0 informative group, then the first two informative groups of round 1 (the third is surplus)',
    );
    for (const g of [1, 2, 4, 6])
      assert.ok(
        groups[g]!.every((r) => r.advantage === 0 && !inLoss(r.loss_mask)),
        `group ${g} left out`,
      );
    assert.equal(a1.keptSamples, 12);
    assert.equal(a1.droppedSamples, 16);

    // The estimator saw the selected groups only: batch-scaled GRPO over those 12 rewards alone.
    const picked = [
      [1, 0, 0, 0],
      [0, 1, 0, 1],
      [1, 1, 0, 1],
    ];
    const direct = computeAdvantages(parseAdvantageConfig({ estimator: 'grpo', scale: 'batch' }), {
      samples: picked.flatMap((rs, g) =>
        rs.map((reward, s) => ({ sampleId: `${g}/${s}`, groupId: String(g), reward, completionLength: 1 + s + 1 })),
      ),
    });
    const got = [...groups[0]!, ...groups[3]!, ...groups[5]!].map((r) => r.advantage!);
    direct.samples.forEach((d, i) => assert.ok(Math.abs(d.advantage - got[i]!) < 1e-6, `sample ${i}: ${got[i]} vs ${d.advantage}`));

    // Committed: the activity returns the committed selection, final (nothing more to roll out).
    await commit(f.store, stepPrefix(RUN, STEP), [s0.rollouts, s1.rollouts, s0.rewards, s1.rewards, a1.advantages]);
    const c = await computeStepAdvantages({ ...base, rollouts: [], rewards: [], round: 1 });
    assert.deepEqual(c.dynamic, { round: 1, groups: 7, informativeGroups: 4, selectedGroups: 3, droppedGroups: 3, morePrompts: 0 });
    assert.equal(c.keptSamples, 12);
  });
});

describe('dynamic sampling filter', () => {
  let f: RunFixture;
  before(async () => {
    f = await runFixture(RUN, config({ mode: 'filter' }));
  });
  after(() => f.teardown());

  it('filter drops the flat groups and never asks for more prompts', async () => {
    const s0 = await writeShard(f, 0, 0, [
      [1, 0, 0, 0],
      [1, 1, 1, 1],
      [0, 1, 1, 1],
    ]);
    const a = await computeStepAdvantages({
      storeUri: f.storeUri,
      runId: RUN,
      step: STEP,
      phaseIndex: 0,
      rollouts: [s0.rollouts],
      rewards: [s0.rewards],
      round: 0,
    });
    assert.deepEqual(a.dynamic, { round: 0, groups: 3, informativeGroups: 2, selectedGroups: 2, droppedGroups: 1, morePrompts: 0 });
    const rows = decodeAdvantages(await readEntry(f.store, stepPrefix(RUN, STEP), a.advantages));
    assert.deepEqual(
      rows.map((r) => inLoss(r.loss_mask)),
      [true, true, true, true, false, false, false, false, true, true, true, true],
    );
  });
});

describe('dynamicSampling config', () => {
  it('defaults to off; a bad mode or a refill reservation past the 2^32-item train stream is refused, naming the field', () => {
    const cfg = parseRunConfig({ phases: [{ kind: 'rl', steps: 1 }] });
    const p = cfg.phases[0]!;
    assert.ok(p.kind === 'rl');
    assert.deepEqual(p.dynamicSampling, { mode: 'off', maxRounds: 3, oversample: 1.2, minKeepRate: 0.1 });
    assert.throws(
      () => parseRunConfig({ phases: [{ kind: 'rl', steps: 1, dynamicSampling: { mode: 'always' } }] }),
      (e: unknown) => e instanceof ConfigError && /phases\.0\.dynamicSampling\.mode/.test(e.message),
    );
    assert.throws(
      () => parseRunConfig({ phases: [{ kind: 'rl', steps: 1, dynamicSampling: { mode: 'refill', maxRounds: 0 } }] }),
      (e: unknown) => e instanceof ConfigError && /phases\.0\.dynamicSampling\.maxRounds/.test(e.message),
    );
    assert.throws(
      () =>
        parseRunConfig({
          phases: [{ kind: 'rl', steps: 1_000_000, promptsPerStep: 512, dynamicSampling: { mode: 'refill', minKeepRate: 0.01 } }],
        }),
      (e: unknown) => e instanceof ConfigError && /reserve \d+ for dynamicSampling refill rounds/.test(e.message),
    );
  });
});
