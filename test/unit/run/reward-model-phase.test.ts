/**
 * The reward_model phase through its activities, on a tiny run (llama classifier 32x1, one-digit
 * addition) in a temp file:// store: the learner activity's Bradley-Terry updates on a JSONL
 * preference set (chosen = the correct sum, rejected = a wrong one: each digit + 3 mod 10) lower the
 * loss and raise the pairwise accuracy; the update is bitwise deterministic; the evaluation activity
 * measures held-out preference accuracy on the seeded held-out rows, which training never sees;
 * `exportRun` writes an HF classifier directory that the `reward_model` reward loads and scores
 * exactly as the engine does; config errors name the field.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportRun } from '../../../activities/checkpoint/export.js';
import { learnerUpdate } from '../../../activities/learner/learner-update.js';
import { ModelEngine } from '../../../activities/model/engine.js';
import { loadWeights } from '../../../activities/checkpoint/checkpoint.js';
import { evaluate } from '../../../activities/rollout/evaluate.js';
import { rewardModel } from '../../../activities/reward/reward-model.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { encodeSide, rewardModelRows, scorePreferencePairs } from '../../../activities/run/reward-model-data.js';
import type { LearnerInput } from '../../../activities/run/types.js';
import { splitHeldOut } from '../../../activities/data/reward-model-split.js';
import type { PreferenceRow } from '../../../activities/data/preference-dataset.js';
import { getTask } from '../../../activities/tasks/tasks.js';
import { checkpointPrefix } from '../../../activities/store/keys.js';
import { commit } from '../../../activities/store/manifest.js';
import { runFixture, type RunFixture } from './fixture.js';

const TASK = { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } };

/** n pairs from the task's train items: the gold answer over a wrong one (each digit + 3 mod 10). */
function sums(n: number, seed = 99): PreferenceRow[] {
  const task = getTask(TASK.name, TASK.options);
  return task.prompts(seed, 'train', n).map((item) => {
    const gold = task.sftTarget(item);
    const wrong = [...gold].map((c) => (/\d/.test(c) ? String((Number(c) + 3) % 10) : c)).join('');
    return { prompt: item.prompt, chosen: gold, rejected: wrong };
  });
}

const jsonl = (rows: readonly PreferenceRow[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';

const base = (phases: RunConfigInput['phases'], model: Record<string, unknown> = {}): RunConfigInput => ({
  name: 'rm',
  seed: 7,
  task: TASK,
  model: { hidden: 32, layers: 1, heads: 2, classifier: true, ...model },
  phases,
  learner: { microBatchSize: 8 },
  engine: { threads: 1 },
});

let dataDir: string;
let dataFile: string;
const ROWS = sums(16);

before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'rm-data-'));
  dataFile = join(dataDir, 'sums.jsonl');
  await writeFile(dataFile, jsonl(ROWS));
});
after(async () => rm(dataDir, { recursive: true, force: true }));

function learnerInput(f: RunFixture, runId: string, step: number, batchSize: number, lr: number): LearnerInput {
  return {
    storeUri: f.storeUri,
    runId,
    step,
    phaseIndex: 0,
    phase: 'reward_model',
    lr,
    referenceVersion: null,
    promptOffset: step * batchSize,
    batchSize,
    rollouts: [],
    advantages: null,
  };
}

describe('reward_model phase through the learner and evaluation activities', () => {
  const RUN = 'rm-learn';
  const STEPS = 12;
  let f: RunFixture;
  const metrics: Record<string, number>[] = [];

  before(async () => {
    // 4 of the 16 rows held out by seed; every step trains on all 12 training rows (batchSize 12)
    f = await runFixture(
      RUN,
      base([{ kind: 'reward_model', steps: STEPS, batchSize: 12, lr: 3e-3, dataset: { path: dataFile }, eval: { fraction: 0.25 } }]),
      { checkpoint0: true },
    );
    for (let s = 0; s < STEPS; s++) {
      const r = await learnerUpdate({ ...learnerInput(f, RUN, s, 12, 3e-3), promptOffset: 0 });
      await commit(f.store, checkpointPrefix(RUN, s + 1), r.checkpoint);
      metrics.push(r.metrics);
    }
  });
  after(async () => f.teardown());

  it('the run model is a classifier (score.weight, no LM head) and the held-out split is the seeded quarter of the rows, disjoint from training', () => {
    assert.equal(f.run.model.classifier, true);
    assert.ok(f.state!.params.has('score.weight') && !f.state!.params.has('lm_head.weight'));
    const phase = f.run.config.phases[0]!;
    assert.ok(phase.kind === 'reward_model');
    const { train, heldOut } = rewardModelRows(f.run, phase);
    assert.equal(heldOut.length, 4);
    assert.equal(train.length, 12);
    assert.deepEqual(splitHeldOut(ROWS, 0.25, 7), { train, heldOut });
    assert.ok(heldOut.every((h) => !train.includes(h)));
  });

  it(`${STEPS} Bradley-Terry updates on the 12 training pairs: the loss falls below 60% of log 2 and the pair accuracy rises to >= 0.9; each step reports pairs 12 and 24 sequences`, () => {
    const first = metrics[0]!;
    const last = metrics.at(-1)!;
    assert.ok(Math.abs(first.loss! - Math.LN2) < 0.05, `initial loss ${first.loss} ≈ log 2 (untrained scores near 0)`);
    assert.ok(last.loss! < 0.6 * Math.LN2, `loss ${first.loss} -> ${last.loss}`);
    assert.ok(last.accuracy! >= 0.9 && last.accuracy! > first.accuracy!, `accuracy ${first.accuracy} -> ${last.accuracy}`);
    assert.ok(last.margin! > first.margin!, `margin ${first.margin} -> ${last.margin}`);
    for (const m of metrics) assert.equal(m.pairs, 12);
  });

  it('the first update trained on exactly the 12 training rows (held-out ones left out): its before-update loss and accuracy equal checkpoint 0 scoring them', async () => {
    const phase = f.run.config.phases[0]!;
    assert.ok(phase.kind === 'reward_model');
    const engine = new ModelEngine(f.run.model, { threads: 1 });
    try {
      engine.setWeights(await loadWeights(f.store, RUN, 0), 'v0');
      const s = await scorePreferencePairs(engine, f.run, rewardModelRows(f.run, phase).train);
      assert.ok(Math.abs(s.loss - metrics[0]!.loss!) < 1e-5, `scored ${s.loss} vs learner ${metrics[0]!.loss}`);
      assert.ok(Math.abs(s.accuracy - metrics[0]!.accuracy!) < 1e-9);
    } finally {
      await engine.close();
    }
  });

  it('evaluate: a reward-model run records the held-out preference accuracy (4 pairs, split held_out) as greedy_accuracy, equal to the engine scoring those pairs', async () => {
    const e0 = await evaluate({ storeUri: f.storeUri, runId: RUN, policyVersion: 0, phase: 'init' });
    const e = await evaluate({ storeUri: f.storeUri, runId: RUN, policyVersion: STEPS, phase: 'reward_model' });
    assert.equal(e.preference?.split, 'held_out');
    assert.equal(e.preference?.pairs, 4);
    assert.equal(e.num_prompts, 4);
    assert.equal(e.greedy_accuracy, e.preference!.accuracy);
    assert.equal(e.pass_at_k, null);
    const phase = f.run.config.phases[0]!;
    assert.ok(phase.kind === 'reward_model');
    const engine = new ModelEngine(f.run.model, { threads: 1 });
    try {
      engine.setWeights(await loadWeights(f.store, RUN, STEPS), 'v');
      const s = await scorePreferencePairs(engine, f.run, rewardModelRows(f.run, phase).heldOut);
      assert.equal(s.accuracy, e.preference!.accuracy);
      assert.ok(Math.abs(s.loss - e.preference!.loss) < 1e-6);
    } finally {
      await engine.close();
    }
    console.log(
      `held-out preference accuracy ${e0.preference!.accuracy} -> ${e.preference!.accuracy}, loss ${e0.preference!.loss.toFixed(4)} -> ${e.preference!.loss.toFixed(4)}; train loss ${metrics[0]!.loss!.toFixed(4)} -> ${metrics.at(-1)!.loss!.toFixed(4)}, accuracy ${metrics[0]!.accuracy} -> ${metrics.at(-1)!.accuracy}`,
    );
  });

  it('exportRun writes an HF classifier directory (no decode graph); the reward_model reward loads it and its raw scores (appendEos) equal the engine scores of BOS + prompt + completion + EOS', async () => {
    const dir = join(f.dir, 'export');
    const out = await exportRun(f.storeUri, RUN, undefined, dir);
    assert.equal(out.version, STEPS);
    assert.ok(out.files.includes('config.json') && out.files.includes('tokenizer.json') && !out.files.includes('decode.onnx'));
    const reward = rewardModel.create(rewardModel.optionsSchema.parse({ path: dir, appendEos: true }));
    const samples = ROWS.flatMap((r, i) =>
      [r.chosen, r.rejected].map((completion, k) => ({
        promptId: `p${i}`,
        sampleId: k,
        prompt: r.prompt,
        completion,
        reference: r.chosen,
        metadata: {},
        promptTokens: 0,
        completionTokens: completion.length,
      })),
    );
    const scored = await reward.scoreBatch!(samples, { signal: new AbortController().signal, step: 0 } as never);
    await reward.close?.();
    const engine = new ModelEngine(f.run.model, { threads: 1 });
    try {
      engine.setWeights(await loadWeights(f.store, RUN, STEPS), 'v');
      for (const [i, s] of samples.entries()) {
        const [r] = await engine.reward({ ids: [encodeSide(f.run, s.prompt, s.completion)] });
        assert.ok(Math.abs(scored[i]!.reward - r!) < 1e-4, `sample ${i}: reward ${scored[i]!.reward} vs engine ${r}`);
      }
    } finally {
      await engine.close();
    }
    let wins = 0;
    for (let i = 0; i < ROWS.length; i++) if (scored[2 * i]!.reward > scored[2 * i + 1]!.reward) wins++;
    assert.ok(wins > ROWS.length / 2, `chosen above rejected in ${wins}/${ROWS.length} pairs`);
  });
});

describe('reward_model update determinism', () => {
  it('the same checkpoint and step give bitwise the same checkpoint (sha256 of model.safetensors and the optimizer state) in two stores', async () => {
    const shas: string[] = [];
    for (const id of ['rm-det-a', 'rm-det-b']) {
      const f = await runFixture(id, base([{ kind: 'reward_model', steps: 2, batchSize: 5, dataset: { path: dataFile } }]), {
        checkpoint0: true,
      });
      try {
        const r0 = await learnerUpdate(learnerInput(f, id, 0, 5, 1e-3));
        await commit(f.store, checkpointPrefix(id, 1), r0.checkpoint);
        const r1 = await learnerUpdate(learnerInput(f, id, 1, 5, 1e-3));
        shas.push(
          r1.checkpoint
            .map((e) => `${e.name}:${e.sha256}`)
            .sort()
            .join(' '),
        );
      } finally {
        await f.teardown();
      }
    }
    assert.equal(shas[0], shas[1]);
  });
});

describe('reward_model config validation', () => {
  const phase = (extra: Record<string, unknown> = {}) => ({
    kind: 'reward_model' as const,
    steps: 1,
    dataset: { path: dataFile },
    ...extra,
  });
  const refused = (input: RunConfigInput, field: RegExp) => assert.throws(() => parseRunConfig(input), field);

  it('a classifier run with an sft phase is refused at phases.N.kind naming model.classifier; a reward_model phase without model.classifier too', () => {
    refused(base([phase(), { kind: 'sft', steps: 1 }]), /phases\.1\.kind: model\.classifier is true/);
    refused(
      base([phase()], { classifier: false }),
      /phases\.0\.kind: a reward_model phase trains a sequence classifier: set model\.classifier: true/,
    );
  });

  it('dataset and eval errors name the field: a missing column, a missing eval file, a held-out fraction that leaves no row, perPairMargin', async () => {
    const bad = join(dataDir, 'bad.jsonl');
    await writeFile(bad, JSON.stringify({ prompt: ROWS[0]!.prompt, good: '1', rejected: '2' }) + '\n');
    refused(base([phase({ dataset: { path: bad } })]), /phases\.0\.dataset\.chosenColumn/);
    refused(base([phase({ eval: { dataset: { path: join(dataDir, 'none.jsonl') } } })]), /phases\.0\.eval\.dataset\.path/);
    refused(base([phase({ eval: { fraction: 0.01 } })]), /phases\.0\.eval\.fraction: 0\.01 of the dataset's 16 rows holds out 0/);
    refused(base([phase({ loss: { perPairMargin: true } })]), /phases\.0\.loss/);
  });

  it('a pair longer than the model positions is refused at model.maxPositions; defaults: batchSize 16, lr 1e-3, margin 0, no held-out rows', () => {
    refused(base([phase()], { maxPositions: 4 }), /model\.maxPositions: the longest preference pair side is \d+ tokens/);
    const c = parseRunConfig(base([phase()]));
    const p = c.phases[0]!;
    assert.ok(p.kind === 'reward_model' && p.batchSize === 16 && p.lr === 1e-3 && p.loss.margin === 0 && p.eval.fraction === 0);
    assert.equal(c.model.classifier, true);
  });
});
