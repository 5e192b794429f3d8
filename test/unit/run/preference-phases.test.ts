/**
 * The preference phases through their activities, on a tiny run (llama 32x1, one-digit addition) in
 * a temp file:// store: online_dpo's pair selection in the advantage activity (chosen = highest
 * reward, rejected = lowest, ties and groups without two scored samples dropped and counted) and its
 * one DPO update in the learner activity (reference = checkpoint 0, logprobs at the sampling
 * temperature); the offline dpo phase on a JSONL preference dataset; config validation naming the
 * field. Rows are written by hand: per prompt the gold answer and a wrong one.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { computeStepAdvantages } from '../../../activities/advantage/step-advantages.js';
import { preferencePairs } from '../../../activities/advantage/preference-pairs.js';
import { learnerUpdate } from '../../../activities/learner/learner-update.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import type { LearnerInput } from '../../../activities/run/types.js';
import type { ResolvedRun } from '../../../activities/run/resolve.js';
import { preferenceBatch } from '../../../activities/data/preference-dataset.js';
import { checkpointPrefix, PREFERENCE_PAIRS_NAME, rewardsName, stepPrefix } from '../../../activities/store/keys.js';
import { commit, readEntry, writeArtifact, type ManifestEntry } from '../../../activities/store/manifest.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { REWARDS, decodePreferencePairs, encodeRewards } from '../../../activities/store/schemas.js';
import { runFixture, type RunFixture } from './fixture.js';
import { completionLogprobs, goldAndWrong, writeRlStep, type Sample } from './rl-step.js';

const T = 0.7;
const BETA = 0.1;

const base = (phases: RunConfigInput['phases']): RunConfigInput => ({
  name: 'prefs',
  seed: 5,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  // initStd 0.5: peaked distributions, so that logprobs at T = 0.7 and T = 1 differ clearly
  model: { hidden: 32, layers: 1, heads: 2, initStd: 0.5 },
  phases,
  learner: { microBatchSize: 2 },
  engine: { threads: 1 },
});

/** Σ logprob over each sample's completion under checkpoint `version`, at `temperature`. */
async function sums(f: RunFixture, runId: string, xs: Sample[], temperature: number, version: number): Promise<number[]> {
  return (await completionLogprobs(f.store, runId, f.run, xs, temperature, version)).map((lp) => lp.reduce((a, b) => a + b, 0));
}

async function commitCheckpoint(store: ObjectStore, runId: string, v: number, entries: ManifestEntry[]): Promise<void> {
  await commit(store, checkpointPrefix(runId, v), entries);
}

describe('preferencePairs (pure)', () => {
  it('per group: chosen = highest reward, rejected = lowest, the first in sample order on a tie for a place; all-equal groups are tied, groups with < 2 usable samples too_few', () => {
    const s = (g: string, id: number, reward: number | null, len = 3) => ({
      groupId: g,
      promptId: g,
      sampleId: id,
      reward,
      completionLength: len,
    });
    const r = preferencePairs([
      s('a', 0, 0.5),
      s('a', 1, 1),
      s('a', 2, 0),
      s('a', 3, 1),
      s('a', 4, 0),
      s('b', 0, 1),
      s('b', 1, 1),
      s('c', 0, 1),
      s('c', 1, null),
      s('c', 2, 0, 0),
      s('d', 0, -1),
      s('d', 1, null),
      s('d', 2, 2),
    ]);
    assert.deepEqual(
      r.pairs.map((p) => [p.groupId, p.chosen.sampleId, p.rejected.sampleId, p.chosen.reward, p.rejected.reward]),
      [
        ['a', 1, 2, 1, 0],
        ['d', 2, 0, 2, -1],
      ],
    );
    assert.equal(r.tied, 1);
    assert.equal(r.tooFew, 1, 'group c: one scored non-empty sample');
  });
});

describe('online_dpo step through the advantage and learner activities', () => {
  const RUN = 'online-dpo';
  let f: RunFixture;
  let xs: Sample[];
  let rollouts: ManifestEntry[];
  let rewards: ManifestEntry;
  /** Step `step`'s rollouts (the same samples each step; behaviour logprobs of checkpoint 0) and rewards. */
  const writeStep = async (step: number) => {
    const behaviour = await completionLogprobs(f.store, RUN, f.run, xs, T);
    rollouts = (await writeRlStep(f.store, RUN, f.run, xs, behaviour, step)).rollouts;
    // prompts 0, 1, 2: gold 1, wrong 0 (pairs); prompt 3: both 0.5 (tied); prompt 4: the wrong one's reward failed (too few)
    const rows = xs.map((x, i) => {
      const k = Math.floor(i / 2);
      const reward = k === 3 ? 0.5 : k === 4 && x.sampleId === 1 ? null : x.sampleId === 0 ? 1 : 0;
      return {
        run_id: RUN,
        step,
        prompt_id: x.promptId,
        sample_id: x.sampleId,
        reward,
        components: {},
        ...(reward === null ? { error: 'timeout' } : {}),
      };
    });
    rewards = await writeArtifact(f.store, stepPrefix(RUN, step), { name: rewardsName(0), bytes: encodeRewards(rows), schema: REWARDS });
  };
  before(async () => {
    f = await runFixture(
      RUN,
      base([
        { kind: 'online_dpo', steps: 2, promptsPerStep: 5, groupSize: 2, lr: 2e-2, sampling: { temperature: T }, dpo: { beta: BETA } },
      ]),
      { checkpoint0: true },
    );
    xs = goldAndWrong(f.run, 5, 1);
    await writeStep(0);
  });
  after(() => f.teardown());

  let pairsEntry: ManifestEntry;
  it('the advantage activity writes preference_pairs: gold chosen over wrong for prompts 0-2; prompt 3 tied, prompt 4 too few, counted', async () => {
    const r = await computeStepAdvantages({ storeUri: f.storeUri, runId: RUN, step: 0, phaseIndex: 0, rollouts, rewards: [rewards] });
    assert.equal(r.advantages.name, PREFERENCE_PAIRS_NAME);
    assert.deepEqual(r.preference, { pairs: 3, tied: 1, tooFew: 1 });
    assert.equal(r.keptSamples, 6);
    assert.equal(r.droppedSamples, 4);
    const pairs = decodePreferencePairs(await readEntry(f.store, stepPrefix(RUN, 0), r.advantages));
    assert.deepEqual(
      pairs.map((p) => [p.prompt_id, p.chosen_sample_id, p.rejected_sample_id, p.chosen_reward, p.rejected_reward]),
      [0, 1, 2].map((k) => [xs[2 * k]!.promptId, 0, 1, 1, 0]),
    );
    pairsEntry = r.advantages;
  });

  const input = (step: number, over: Partial<LearnerInput> = {}): LearnerInput => ({
    storeUri: f.storeUri,
    runId: RUN,
    step,
    phaseIndex: 0,
    phase: 'online_dpo',
    lr: 2e-2,
    referenceVersion: 0,
    promptOffset: 0,
    batchSize: 5,
    rollouts,
    advantages: pairsEntry,
    ...over,
  });

  it('the learner refuses an online_dpo update without a reference version, naming it', async () => {
    await assert.rejects(learnerUpdate(input(0, { referenceVersion: null })), /referenceVersion is null/);
    await assert.rejects(learnerUpdate(input(0, { advantages: rollouts[0]! })), /give the step's preference_pairs\.arrow entry/);
  });

  it(`step 0 (policy = reference): DPO loss log 2 at T = ${T}; the update raises every chosen answer's logprob relative to its rejected one`, async () => {
    const r = await learnerUpdate(input(0));
    assert.ok(Math.abs(r.metrics.loss! - Math.LN2) < 1e-5, `loss ${r.metrics.loss} vs log 2`);
    assert.ok(Math.abs(r.metrics.reward_margin!) < 1e-5, `margin before the update ${r.metrics.reward_margin}`);
    assert.equal(r.metrics.pairs, 3);
    assert.equal(r.sequences, 6);
    assert.equal(r.microBatches, 3, 'microBatchSize 2: one pair per micro-batch');
    await commitCheckpoint(f.store, RUN, 1, r.checkpoint);
    const paired = xs.slice(0, 6);
    const before = await sums(f, RUN, paired, T, 0);
    const afterUpdate = await sums(f, RUN, paired, T, 1);
    for (let k = 0; k < 3; k++) {
      const margin = afterUpdate[2 * k]! - before[2 * k]! - (afterUpdate[2 * k + 1]! - before[2 * k + 1]!);
      assert.ok(margin > 0, `pair ${k}: chosen − rejected logprob change ${margin}`);
    }
  });

  it(`step 1: the implicit rewards β(S_θ − S_ref) are of logprobs at the sampling temperature T = ${T} (at T = 1 they differ)`, async () => {
    await writeStep(1);
    pairsEntry = (await computeStepAdvantages({ storeUri: f.storeUri, runId: RUN, step: 1, phaseIndex: 0, rollouts, rewards: [rewards] }))
      .advantages;
    const r = await learnerUpdate(input(1));
    const paired = xs.slice(0, 6);
    const at = async (t: number) => {
      const [ref, pol] = [await sums(f, RUN, paired, t, 0), await sums(f, RUN, paired, t, 1)];
      const reward = pol.map((s, i) => BETA * (s - ref[i]!));
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      return { chosen: mean(reward.filter((_, i) => i % 2 === 0)), rejected: mean(reward.filter((_, i) => i % 2 === 1)) };
    };
    const want = await at(T);
    const atOne = await at(1);
    assert.ok(Math.abs(r.metrics.chosen_reward! - want.chosen) < 1e-4, `chosen reward ${r.metrics.chosen_reward} vs ${want.chosen} at T`);
    assert.ok(
      Math.abs(r.metrics.rejected_reward! - want.rejected) < 1e-4,
      `rejected reward ${r.metrics.rejected_reward} vs ${want.rejected} at T`,
    );
    assert.ok(Math.abs(atOne.chosen - want.chosen) + Math.abs(atOne.rejected - want.rejected) > 1e-3, 'T = 1 would give other rewards');
    assert.equal(r.metrics.reward_accuracy, 1, 'after one update every chosen answer leads');
  });
});

describe('offline dpo phase on a JSONL preference dataset', () => {
  const RUN = 'offline-dpo';
  let dir: string;
  let f: RunFixture;
  let file: string;
  let xs: Sample[];
  const jsonl = (run: ResolvedRun, samples: Sample[], cols = { p: 'prompt', c: 'chosen', r: 'rejected' }) => {
    const tok = run.tokenizer;
    const lines: string[] = [];
    for (let i = 0; i < samples.length; i += 2) {
      const text = (ids: number[]) => tok.decode(ids, { skipSpecialTokens: true });
      lines.push(
        JSON.stringify({
          [cols.p]: text(samples[i]!.prompt),
          [cols.c]: text(samples[i]!.completion),
          [cols.r]: text(samples[i + 1]!.completion),
        }),
      );
    }
    return lines.join('\n') + '\n';
  };
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dpo-data-'));
    file = join(dir, 'prefs.jsonl');
    // the dataset is written from the task's prompts; a first fixture only to reach the tokenizer
    const probe = await runFixture('probe', base([{ kind: 'sft', steps: 1 }]));
    xs = goldAndWrong(probe.run, 4, 1);
    await writeFile(file, jsonl(probe.run, xs));
    await probe.teardown();
    f = await runFixture(RUN, base([{ kind: 'dpo', steps: 2, batchSize: 3, lr: 2e-2, dataset: { path: file } }]), { checkpoint0: true });
  });
  after(async () => {
    await f.teardown();
    await rm(dir, { recursive: true, force: true });
  });

  it('step 0 trains on rows 1-3 (temperature 1): loss log 2, then each chosen answer gains on its rejected one; step 1 wraps around (rows 4, 1, 2)', async () => {
    const r = await learnerUpdate({
      storeUri: f.storeUri,
      runId: RUN,
      step: 0,
      phaseIndex: 0,
      phase: 'dpo',
      lr: 2e-2,
      referenceVersion: 0,
      promptOffset: 0,
      batchSize: 3,
      rollouts: [],
      advantages: null,
    });
    assert.ok(Math.abs(r.metrics.loss! - Math.LN2) < 1e-5, `loss ${r.metrics.loss}`);
    assert.equal(r.metrics.pairs, 3);
    await commitCheckpoint(f.store, RUN, 1, r.checkpoint);
    const six = xs.slice(0, 6);
    const b = await sums(f, RUN, six, 1, 0);
    const a = await sums(f, RUN, six, 1, 1);
    for (let k = 0; k < 3; k++) assert.ok(a[2 * k]! - b[2 * k]! - (a[2 * k + 1]! - b[2 * k + 1]!) > 0, `pair ${k}`);
    const rows = [1, 2, 3, 4].map((n) => ({ prompt: `p${n}`, chosen: 'c', rejected: 'r' }));
    assert.deepEqual(
      preferenceBatch(rows, 3, 3).map((r) => r.prompt),
      ['p4', 'p1', 'p2'],
    );
  });

  it('the dataset is checked with the config: a missing file, a row without a column (named by number), custom column names', async () => {
    const cfg = (dataset: Record<string, unknown>) => base([{ kind: 'dpo', steps: 1, dataset } as never]);
    assert.throws(
      () => parseRunConfig(cfg({ path: join(dir, 'nope.jsonl') })),
      /phases\.0\.dataset\.path: cannot read the preference dataset/,
    );
    const badFile = join(dir, 'bad.jsonl');
    await writeFile(
      badFile,
      '{"prompt":"1+2=","chosen":"3","rejected":"4"}\n\n{"prompt":"1+1=","chosen":"2","rejected":"3"}\n{"prompt":"2+2=","rejected":"5"}\n',
    );
    assert.throws(
      () => parseRunConfig(cfg({ path: badFile })),
      /phases\.0\.dataset\.chosenColumn: .*row 3 \(line 4\) has no string "chosen" column/,
    );
    const alphabetFile = join(dir, 'alphabet.jsonl');
    await writeFile(alphabetFile, '{"prompt":"1+2=","chosen":"three","rejected":"4"}\n');
    assert.throws(
      () => parseRunConfig(cfg({ path: alphabetFile })),
      /row 1 \(line 1\): the "chosen" column has the character "t", which is not in the task's alphabet/,
    );
    const renamed = join(dir, 'renamed.jsonl');
    await writeFile(renamed, jsonl(f.run, xs, { p: 'q', c: 'good', r: 'bad' }));
    const ok = parseRunConfig(cfg({ path: renamed, promptColumn: 'q', chosenColumn: 'good', rejectedColumn: 'bad' }));
    assert.equal(ok.phases[0]!.kind, 'dpo');
    assert.throws(
      () => parseRunConfig(cfg({ path: renamed })),
      /phases\.0\.dataset\.promptColumn: .*row 1 \(line 1\) has no string "prompt" column/,
    );
  });
});

describe('preference phase configs', () => {
  it('online_dpo with groupSize 1 is refused naming phases.N.groupSize; β defaults to 0.1; a relative dataset path becomes absolute', async () => {
    assert.throws(
      () =>
        parseRunConfig(
          base([
            { kind: 'sft', steps: 1 },
            { kind: 'online_dpo', steps: 1, groupSize: 1 },
          ]),
        ),
      /phases\.1\.groupSize: .*at least 2 completions/,
    );
    const c = parseRunConfig(base([{ kind: 'online_dpo', steps: 1 }]));
    const p = c.phases[0]!;
    assert.ok(p.kind === 'online_dpo' && p.dpo.beta === 0.1 && p.dpo.labelSmoothing === 0 && p.groupSize === 4);
    assert.throws(() => parseRunConfig(base([{ kind: 'online_dpo', steps: 1, dpo: { beta: 0 } }])), /phases\.0\.dpo\.beta/);
    const dir = await mkdtemp(join(tmpdir(), 'dpo-rel-'));
    try {
      await writeFile(join(dir, 'p.jsonl'), '{"prompt":"1+2=","chosen":"3","rejected":"4"}\n');
      const cwd = process.cwd();
      process.chdir(dir);
      try {
        const d = parseRunConfig(base([{ kind: 'dpo', steps: 1, dataset: { path: 'p.jsonl' } }])).phases[0]!;
        assert.ok(d.kind === 'dpo' && d.dataset.path === join(dir, 'p.jsonl'), JSON.stringify(d));
      } finally {
        process.chdir(cwd);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
