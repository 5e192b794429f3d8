/**
 * learnerUpdate (activities/learner/learner-update.ts) called directly, outside Temporal, on tiny runs
 * (llama 32x1, one-digit addition) in a temp file:// store: SFT lowers the loss and writes a
 * loadable checkpoint; RL with known advantages moves the logprobs of positive-advantage samples
 * up and of negative ones down; the same input gives bitwise the same weights; a committed
 * checkpoint is returned without recomputing; micro-batching does not change a token-mean update.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ActivityFailure, ApplicationFailure, RetryState } from '@temporalio/common';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { learnerUpdate, NON_FINITE_FAILURE_TYPE } from '../../../activities/learner/learner-update.js';
import { commitStep } from '../../../activities/checkpoint/commit-step.js';
import { loadTrainState, loadWeights, writeCheckpoint } from '../../../activities/checkpoint/checkpoint.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { loadRun, writeRunRecord, type ResolvedRun } from '../../../activities/run/resolve.js';
import type { LearnerInput } from '../../../activities/run/types.js';
import { initTrainState, ModelEngine } from '../../../activities/model/engine.js';
import type { TrainState } from '../../../activities/model/engine-types.js';
import { initWeights } from '../../../activities/model/init.js';
import { ADVANTAGES_NAME, checkpointPrefix, MODEL_NAME, OPTIMIZER_NAME, rolloutsName, stepPrefix } from '../../../activities/store/keys.js';
import { commit, readManifest, writeArtifact, type ManifestEntry } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import {
  ADVANTAGES,
  ROLLOUTS,
  encodeAdvantages,
  encodeRollouts,
  type AdvantagesInput,
  type RolloutsInput,
} from '../../../activities/store/schemas.js';
import { lazyFixture } from '../../support/fixture.js';
import { emptyMetrics } from '../../../workflows/step-metrics.js';
import { classifyFailure } from '../../../workflows/run-control.js';

const tiny = (over: Partial<RunConfigInput> = {}): RunConfigInput => ({
  name: 'tiny',
  seed: 7,
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  model: { hidden: 32, layers: 1, heads: 2 },
  phases: [{ kind: 'sft', steps: 4, batchSize: 8, lr: 3e-3 }],
  learner: { microBatchSize: 8 },
  engine: { threads: 1 },
  ...over,
});

const rlPhases = (): RunConfigInput['phases'] => [
  {
    kind: 'rl',
    steps: 2,
    promptsPerStep: 2,
    groupSize: 3,
    lr: 1e-2,
    loss: { name: 'clipped_surrogate', options: { kl: { beta: 0.04 } } },
  },
];

let dir: string;
let storeUri: string;
let store: ObjectStore;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'learner-'));
  storeUri = pathToFileURL(dir).href;
  store = openStore(storeUri);
});
after(async () => {
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** run.json + committed checkpoint 0 (the seeded initial weights, changed by `edit` when given). */
async function newRun(runId: string, over: Partial<RunConfigInput> = {}, edit?: (state: TrainState) => void): Promise<ResolvedRun> {
  const config = parseRunConfig({ ...tiny(over), store: storeUri });
  await writeRunRecord(store, { run_id: runId, name: config.name, resumed_from: null, config });
  const { run } = await loadRun(store, runId);
  const state = initTrainState(run.model, initWeights(run.model, config.seed, { std: config.model.initStd }));
  edit?.(state);
  await commit(store, checkpointPrefix(runId, 0), await writeCheckpoint(store, runId, 0, state));
  return run;
}

const sftInput = (runId: string, step: number): LearnerInput => ({
  storeUri,
  runId,
  step,
  phaseIndex: 0,
  phase: 'sft',
  lr: 3e-3,
  referenceVersion: null,
  promptOffset: 0,
  batchSize: 8,
  rollouts: [],
  advantages: null,
});

const sha = (entries: ManifestEntry[], name = MODEL_NAME) => entries.find((e) => e.name === name)!.sha256;

/**
 * Run "sft-reference": one SFT update from the seeded initial weights, committed as checkpoint 1.
 * What other runs' first update must equal bitwise, and a step whose checkpoint is committed.
 */
const sftReferenceStep = lazyFixture(async () => {
  const runId = 'sft-reference';
  await newRun(runId);
  const r = await learnerUpdate(sftInput(runId, 0));
  await commitStep({ storeUri, runId, step: 0, phase: 'sft', checkpoint: r.checkpoint, artifacts: [], metrics: emptyMetrics() });
  return { runId, checkpoint: (await readManifest(store, checkpointPrefix(runId, 1)))!.artifacts };
});

describe('learnerUpdate: sft', () => {
  it('lowers the loss over a few updates and writes checkpoints that load and score', async () => {
    const runId = 'sft-a';
    const run = await newRun(runId);
    const losses: number[] = [];
    for (let step = 0; step < 4; step++) {
      const r = await learnerUpdate(sftInput(runId, step));
      assert.equal(r.sequences, 8);
      assert.equal(r.microBatches, 1);
      assert.ok(r.tokens >= 8 * 2, `each example has an answer and EOS: ${r.tokens} loss tokens`);
      assert.ok(Number.isFinite(r.metrics.loss) && Number.isFinite(r.metrics.entropy) && Number.isFinite(r.metrics.grad_norm));
      // written, not committed: commitStep does that
      assert.equal(await readManifest(store, checkpointPrefix(runId, step + 1)), undefined);
      const c = await commitStep({ storeUri, runId, step, phase: 'sft', checkpoint: r.checkpoint, artifacts: [], metrics: emptyMetrics() });
      assert.equal(c.created, true);
      losses.push(r.metrics.loss!);
    }
    assert.ok(
      losses[3]! < losses[0]! - 0.2,
      `loss should fall over 4 updates on one batch: ${losses.map((l) => l.toFixed(3)).join(' → ')}`,
    );

    const state = await loadTrainState(store, runId, 4);
    assert.equal(state.step, 4, 'the optimizer state counts 4 updates');
    const before0 = await loadWeights(store, runId, 0);
    const name = 'model.embed_tokens.weight';
    assert.notDeepEqual(state.params.get(name)!.data, before0.get(name)!.data);
    const engine = new ModelEngine(run.model, { threads: 1 });
    engine.setWeights(state.params, '4');
    const s = await engine.score({ ids: [[1, 5, 6, 7, 2]] });
    assert.ok([...s.logprobs].every(Number.isFinite));
    await engine.close();
  });

  it('is deterministic: two fresh engines, the same input, bitwise the same model.safetensors', async () => {
    await newRun('sft-b');
    await newRun('sft-c');
    const reference = await sftReferenceStep();
    const [b, c] = [await learnerUpdate(sftInput('sft-b', 0)), await learnerUpdate(sftInput('sft-c', 0))];
    assert.equal(sha(b.checkpoint), sha(c.checkpoint));
    assert.equal(sha(b.checkpoint, OPTIMIZER_NAME), sha(c.checkpoint, OPTIMIZER_NAME));
    // and equal to what the reference run (another engine, earlier) wrote for step 0
    assert.equal(sha(reference.checkpoint), sha(b.checkpoint));
  });

  it('a step of several updates equals that many one-update steps over the same batches, bitwise', async () => {
    await newRun('sft-multi');
    await newRun('sft-single');
    const multi = await learnerUpdate({ ...sftInput('sft-multi', 0), lrs: [1e-3, 2e-3] });
    assert.equal(multi.sequences, 16);
    const first = await learnerUpdate({ ...sftInput('sft-single', 0), lr: 1e-3 });
    await commitStep({
      storeUri,
      runId: 'sft-single',
      step: 0,
      phase: 'sft',
      checkpoint: first.checkpoint,
      artifacts: [],
      metrics: emptyMetrics(),
    });
    const second = await learnerUpdate({ ...sftInput('sft-single', 1), lr: 2e-3, promptOffset: 8 });
    assert.equal(sha(multi.checkpoint), sha(second.checkpoint));
    assert.equal(sha(multi.checkpoint, OPTIMIZER_NAME), sha(second.checkpoint, OPTIMIZER_NAME));
  });

  it('returns the committed checkpoint at once when step + 1 is already committed', async () => {
    const { runId, checkpoint: committed } = await sftReferenceStep();
    const r = await learnerUpdate(sftInput(runId, 0));
    assert.deepEqual(r.checkpoint, committed);
    assert.equal(r.microBatches, 0, 'nothing was trained');
    assert.equal(r.sequences, 0);
  });

  it('a retry that finds its step committed returns the committed metrics: loss 1.5, and logprob_diff 0.25 and mismatch_kl 0.01 from extra', async () => {
    const runId = 'sft-committed-metrics';
    await newRun(runId);
    const first = await learnerUpdate(sftInput(runId, 0));
    const metrics = { ...emptyMetrics(), loss: 1.5, extra: { logprob_diff: 0.25, mismatch_kl: 0.01 } };
    await commitStep({ storeUri, runId, step: 0, phase: 'sft', checkpoint: first.checkpoint, artifacts: [], metrics });
    const again = await learnerUpdate(sftInput(runId, 0));
    assert.equal(again.microBatches, 0, 'nothing was trained');
    assert.equal(again.metrics.loss, 1.5);
    assert.equal(again.metrics.logprob_diff, 0.25);
    assert.ok(Math.abs(again.metrics.mismatch_kl! - 0.01) < 1e-12, `mismatch_kl ${again.metrics.mismatch_kl}`);
  });

  it('a SIGKILL after the train step writes nothing; the retry writes the same bytes', async () => {
    await newRun('sft-crash');
    const url = pathToFileURL(join(process.cwd(), 'activities/learner/learner-update.ts')).href;
    const child = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `const { learnerUpdate } = await import(${JSON.stringify(url)}); await learnerUpdate(JSON.parse(process.env.LEARNER_INPUT)); console.log('survived');`,
      ],
      {
        env: {
          ...process.env,
          DURABLE_RL_CRASH_AT: 'learner@0',
          LEARNER_INPUT: JSON.stringify(sftInput('sft-crash', 0)),
          LOG_LEVEL: 'silent',
        },
        encoding: 'utf8',
      },
    );
    assert.equal(
      child.signal,
      'SIGKILL',
      `the child should die at the learner crash point: status ${child.status}, stderr ${child.stderr}`,
    );
    const written: string[] = [];
    for await (const o of store.list(`${checkpointPrefix('sft-crash', 1)}/`)) written.push(o.key);
    assert.deepEqual(written, [], 'nothing of checkpoint 1 was written before the crash');
    const r = await learnerUpdate(sftInput('sft-crash', 0));
    assert.equal(sha(r.checkpoint), sha((await sftReferenceStep()).checkpoint));
  });

  it('refuses a phase that does not match the config, naming both', async () => {
    await newRun('sft-refused');
    await assert.rejects(
      learnerUpdate({ ...sftInput('sft-refused', 1), phase: 'rl' }),
      /phaseIndex 0 is a sft phase, but the input says rl/,
    );
    await assert.rejects(
      learnerUpdate({ ...sftInput('sft-refused', 3) }),
      /no committed checkpoint 3 to train step 3 from \(committed checkpoints: 0\)/,
    );
  });
});

describe('learnerUpdate: non-finite weights', () => {
  /** What learnerUpdate threw, checked to be the non-retryable NonFiniteWeights failure. */
  async function nonFinite(p: Promise<unknown>): Promise<ApplicationFailure> {
    const err = await p.then(
      () => assert.fail('learnerUpdate should have refused'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ApplicationFailure, `an ApplicationFailure, got ${String(err)}`);
    assert.equal(err.type, NON_FINITE_FAILURE_TYPE);
    assert.equal(err.nonRetryable, true, 'retrying cannot make the weights finite');
    return err;
  }

  it('refuses to train from a checkpoint holding a NaN, naming the tensor, the step and the checkpoint; the run shows blocked (needs-user)', async () => {
    const tensor = 'model.layers.0.mlp.up_proj.weight';
    await newRun('nan-param', {}, (s) => (s.params.get(tensor)!.data[5] = NaN));
    const err = await nonFinite(learnerUpdate(sftInput('nan-param', 0)));
    assert.match(
      err.message,
      /^learnerUpdate step 0: checkpoint 0 holds model\.layers\.0\.mlp\.up_proj\.weight \(1 non-finite value, NaN at index 5\)/,
    );
    assert.match(err.message, /resume-from an earlier checkpoint/, 'says what to do');
    assert.equal(await readManifest(store, checkpointPrefix('nan-param', 1)), undefined, 'nothing committed');
    // what the workflow makes of the call's failure (workflows/run-control.ts): blocked until retry or stop, never failed
    const call = new ActivityFailure('activity failed', 'learnerUpdate', '7', RetryState.NON_RETRYABLE_FAILURE, 'worker-1', err);
    assert.deepEqual(classifyFailure(call), { kind: 'needs-user', type: NON_FINITE_FAILURE_TYPE, error: err.message });
  });

  it('refuses an AdamW moment holding Infinity, named as in optimizer.safetensors', async () => {
    await newRun('inf-moment', {}, (s) => s.adamV.get('model.norm.weight')!.data.fill(Infinity, 0, 3));
    const err = await nonFinite(learnerUpdate(sftInput('inf-moment', 0)));
    assert.match(err.message, /checkpoint 0 holds adam_v\.model\.norm\.weight \(3 non-finite values, Infinity at index 0\)/);
  });

  it('refuses to write the checkpoint of an update that overflows (lr 1e38): checkpoint step + 1 is never written', async () => {
    await newRun('overflow');
    const err = await nonFinite(learnerUpdate({ ...sftInput('overflow', 0), lr: 1e38 }));
    assert.match(
      err.message,
      /^learnerUpdate step 0: the update made \S+ \(\d+ non-finite values?, -?(Infinity|NaN) at index \d+\); checkpoint 1 is not written/,
    );
    assert.match(err.message, /lower lr/);
    const written: string[] = [];
    for await (const o of store.list(`${checkpointPrefix('overflow', 1)}/`)) written.push(o.key);
    assert.deepEqual(written, [], 'no object of checkpoint 1 in the store');
    // a sane lr on the same (finite) checkpoint 0 trains
    const ok = await learnerUpdate(sftInput('overflow', 0));
    assert.ok(Number.isFinite(ok.metrics.loss));
  });
});

// ── rl ─────────────────────────────────────────────────────────────────────────────────────────

interface Sample {
  promptId: string;
  sampleId: number;
  prompt: number[];
  completion: number[];
  advantage: number;
  /** The advantages row's loss_mask (all false: dropped). */
  mask: boolean[];
}

const kept = (x: Sample) => x.mask.some(Boolean);

/**
 * Two prompts × (gold answer A = +1, wrong answer A = −0.5, a third sample the advantage stage
 * dropped). The first prompt's wrong answer trains on its first token only, so the two
 * micro-batches of two rows hold different numbers of loss tokens (4 and 6).
 */
function samples(run: ResolvedRun): Sample[] {
  const tok = run.tokenizer;
  const out: Sample[] = [];
  for (const item of run.task.prompts(run.config.seed, 'train', 2, 0)) {
    const prompt = run.encodePrompt(item.prompt);
    const gold = run.encodeCompletion(run.task.sftTarget(item));
    const wrong = gold.map((id, i) =>
      i < gold.length - 1 ? tok.encode(String((Number(tok.decode([id])) + 3) % 10), { addSpecialTokens: false })[0]! : id,
    );
    out.push({ promptId: item.promptId, sampleId: 0, prompt, completion: gold, advantage: 1, mask: gold.map(() => true) });
    out.push({
      promptId: item.promptId,
      sampleId: 1,
      prompt,
      completion: wrong,
      advantage: -0.5,
      mask: wrong.map((_, j) => out.length > 1 || j === 0),
    });
    out.push({ promptId: item.promptId, sampleId: 2, prompt, completion: gold.slice(0, 2), advantage: 0, mask: [false, false] });
  }
  return out;
}

/** Sum of the trained (masked) completion-token logprobs of each sample under `weights`, and every completion token's logprob. */
async function completionLogprobs(
  run: ResolvedRun,
  weights: Map<string, { shape: number[]; data: Float32Array }>,
  xs: Sample[],
): Promise<{ sums: number[]; perToken: number[][] }> {
  const engine = new ModelEngine(run.model, { threads: 1 });
  engine.setWeights(weights, 'w');
  const sums: number[] = [];
  const perToken: number[][] = [];
  for (const x of xs) {
    const s = await engine.score({ ids: [[...x.prompt, ...x.completion]] }, { entropy: false });
    const lp = [...s.logprobs].slice(x.prompt.length);
    perToken.push(lp);
    sums.push(lp.reduce((a, b, j) => a + (x.mask[j] ? b : 0), 0));
  }
  await engine.close();
  return { sums, perToken };
}

/** Writes step `step`'s rollouts (two shards) and advantages for `runId` (on-policy logprobs of checkpoint 0). */
async function writeRlStep(
  runId: string,
  run: ResolvedRun,
  xs: Sample[],
  behaviour: number[][],
): Promise<{ rollouts: ManifestEntry[]; advantages: ManifestEntry }> {
  const prefix = stepPrefix(runId, 0);
  const tok = run.tokenizer;
  const rows: RolloutsInput[] = xs.map((x, i) => ({
    run_id: runId,
    step: 0,
    prompt_id: x.promptId,
    sample_id: x.sampleId,
    group_id: x.promptId,
    policy_version: 0,
    prompt_text: tok.decode(x.prompt, { skipSpecialTokens: true }),
    prompt_token_ids: x.prompt,
    completion_text: tok.decode(x.completion, { skipSpecialTokens: true }),
    completion_token_ids: x.completion,
    behaviour_logprobs: behaviour[i]!,
    finish_reason: x.completion.at(-1) === tok.eosId ? 'stop' : 'length',
  }));
  const adv: AdvantagesInput[] = xs.map((x) => ({
    run_id: runId,
    step: 0,
    prompt_id: x.promptId,
    sample_id: x.sampleId,
    advantage: x.advantage,
    loss_mask: x.mask,
  }));
  const half = Math.ceil(rows.length / 2);
  return {
    rollouts: [
      await writeArtifact(store, prefix, { name: rolloutsName(0), bytes: encodeRollouts(rows.slice(0, half)), schema: ROLLOUTS }),
      await writeArtifact(store, prefix, { name: rolloutsName(1), bytes: encodeRollouts(rows.slice(half)), schema: ROLLOUTS }),
    ],
    advantages: await writeArtifact(store, prefix, { name: ADVANTAGES_NAME, bytes: encodeAdvantages(adv), schema: ADVANTAGES }),
  };
}

describe('learnerUpdate: rl', () => {
  /**
   * The rl config's resolved run, its samples, and their logprobs under checkpoint 0 (the seeded
   * initial weights, the same for every run of this config: the behaviour logprobs of an
   * on-policy step 0).
   */
  const rlBatch = lazyFixture(async () => {
    const run = await newRun('rl-batch', { phases: rlPhases() });
    const xs = samples(run);
    return { run, xs, before0: await completionLogprobs(run, await loadWeights(store, 'rl-batch', 0), xs) };
  });

  const rlInput = (runId: string, e: { rollouts: ManifestEntry[]; advantages: ManifestEntry }): LearnerInput => ({
    storeUri,
    runId,
    step: 0,
    phaseIndex: 0,
    phase: 'rl',
    lr: 1e-2,
    referenceVersion: 0,
    promptOffset: 0,
    batchSize: 2,
    rollouts: e.rollouts,
    advantages: e.advantages,
  });

  it('moves the logprobs of positive-advantage samples up and of negative ones down; dropped rows stay out', async () => {
    const { run, xs, before0 } = await rlBatch();
    await newRun('rl-a', { phases: rlPhases(), learner: { microBatchSize: 2 } });
    const e = await writeRlStep('rl-a', run, xs, before0.perToken);
    const r = await learnerUpdate(rlInput('rl-a', e));
    assert.equal(r.sequences, 4, 'the two dropped samples (all-false loss mask) are left out');
    assert.equal(r.microBatches, 2);
    assert.equal(r.tokens, 10, 'loss tokens: 3 + 1 + 3 + 3');
    // on-policy and equal to the reference: ratios are 1, nothing clipped, KL 0
    assert.ok(Math.abs(r.metrics.ratio_mean! - 1) < 1e-4, `ratio_mean ${r.metrics.ratio_mean}`);
    assert.equal(r.metrics.clip_frac, 0);
    assert.ok(Math.abs(r.metrics.kl!) < 1e-5, `kl ${r.metrics.kl}`);

    await commitStep({
      storeUri,
      runId: 'rl-a',
      step: 0,
      phase: 'rl',
      checkpoint: r.checkpoint,
      artifacts: [...e.rollouts, e.advantages],
      metrics: emptyMetrics(),
    });
    const after1 = await completionLogprobs(run, await loadWeights(store, 'rl-a', 1), xs);
    xs.forEach((x, i) => {
      if (!kept(x)) return;
      const d = after1.sums[i]! - before0.sums[i]!;
      if (x.advantage > 0) assert.ok(d > 1e-3, `sample ${x.promptId}/${x.sampleId} (A=+1): logprob ${before0.sums[i]} → ${after1.sums[i]}`);
      else assert.ok(d < -1e-3, `sample ${x.promptId}/${x.sampleId} (A=-0.5): logprob ${before0.sums[i]} → ${after1.sums[i]}`);
    });
  });

  it('is deterministic, and a token-mean update does not depend on the micro-batch size', async () => {
    const { run, xs, before0 } = await rlBatch();
    await newRun('rl-b', { phases: rlPhases(), learner: { microBatchSize: 2 } });
    await newRun('rl-b-again', { phases: rlPhases(), learner: { microBatchSize: 2 } });
    await newRun('rl-c', { phases: rlPhases(), learner: { microBatchSize: 4 } });
    const b = await learnerUpdate(rlInput('rl-b', await writeRlStep('rl-b', run, xs, before0.perToken)));
    const again = await learnerUpdate(rlInput('rl-b-again', await writeRlStep('rl-b-again', run, xs, before0.perToken)));
    assert.equal(sha(again.checkpoint), sha(b.checkpoint), 'same input, fresh engine: bitwise the same weights');

    const c = await learnerUpdate(rlInput('rl-c', await writeRlStep('rl-c', run, xs, before0.perToken)));
    assert.equal(c.microBatches, 1);
    assert.ok(Math.abs(c.metrics.loss! - b.metrics.loss!) < 1e-5, `loss ${b.metrics.loss} (2 micro-batches) vs ${c.metrics.loss} (1)`);
    await commit(store, checkpointPrefix('rl-b', 1), b.checkpoint);
    await commit(store, checkpointPrefix('rl-c', 1), c.checkpoint);
    const wb = await loadWeights(store, 'rl-b', 1);
    const wc = await loadWeights(store, 'rl-c', 1);
    let worst = 0;
    for (const [name, t] of wb) t.data.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - wc.get(name)!.data[i]!))));
    assert.ok(worst < 1e-5, `weights after 2 micro-batches vs 1 differ by up to ${worst}`);
  });

  it('trains per-token advantages when the rows carry them (they take precedence): equal to their scalar', async () => {
    const { run, xs, before0 } = await rlBatch();
    await newRun('rl-d', { phases: rlPhases(), learner: { microBatchSize: 4 } });
    await newRun('rl-d-scalar', { phases: rlPhases(), learner: { microBatchSize: 4 } });
    const scalar = await learnerUpdate(rlInput('rl-d-scalar', await writeRlStep('rl-d-scalar', run, xs, before0.perToken)));
    await commit(store, checkpointPrefix('rl-d-scalar', 1), scalar.checkpoint);
    const prefix = stepPrefix('rl-d', 0);
    const e = await writeRlStep('rl-d', run, xs, before0.perToken);
    // the scalar advantage repeated on every token: the same update as rl-d-scalar's
    const adv: AdvantagesInput[] = xs.map((x) => ({
      run_id: 'rl-d',
      step: 0,
      prompt_id: x.promptId,
      sample_id: x.sampleId,
      advantage: x.advantage,
      token_advantages: x.completion.map(() => x.advantage),
      loss_mask: x.mask,
    }));
    const advantages = await writeArtifact(store, prefix, { name: ADVANTAGES_NAME, bytes: encodeAdvantages(adv), schema: ADVANTAGES });
    const d = await learnerUpdate(rlInput('rl-d', { rollouts: e.rollouts, advantages }));
    assert.equal(d.sequences, 4);
    await commit(store, checkpointPrefix('rl-d', 1), d.checkpoint);
    const ws = await loadWeights(store, 'rl-d-scalar', 1);
    const wd = await loadWeights(store, 'rl-d', 1);
    let worst = 0;
    for (const [name, t] of ws) t.data.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - wd.get(name)!.data[i]!))));
    assert.ok(worst < 1e-6, `per-token vs scalar advantages: weights differ by up to ${worst}`);
  });

  it('refuses bad input, naming what is wrong', async () => {
    const { run, xs, before0 } = await rlBatch();
    await newRun('rl-e', { phases: rlPhases() });
    const e = await writeRlStep('rl-e', run, xs, before0.perToken);
    await assert.rejects(learnerUpdate({ ...rlInput('rl-e', e), referenceVersion: null }), /has a KL term but referenceVersion is null/);
    const partial = await writeArtifact(store, stepPrefix('rl-e', 0), {
      name: ADVANTAGES_NAME,
      schema: ADVANTAGES,
      bytes: encodeAdvantages(
        xs.slice(1).map((x) => ({ run_id: 'rl-e', step: 0, prompt_id: x.promptId, sample_id: x.sampleId, advantage: x.advantage })),
      ),
    });
    await assert.rejects(
      learnerUpdate(rlInput('rl-e', { rollouts: e.rollouts, advantages: partial })),
      /sample_id 0\) has no row in .*advantages/,
    );
    await assert.rejects(learnerUpdate({ ...rlInput('rl-e', e), advantages: null }), /needs the step's advantages\.arrow/);
  });

  it('carries the checkpoint over unchanged when every sample was dropped', async () => {
    const { run, xs, before0 } = await rlBatch();
    await newRun('rl-f', { phases: rlPhases() });
    const none = xs.map((x) => ({ ...x, mask: x.mask.map(() => false) }));
    const r = await learnerUpdate(rlInput('rl-f', await writeRlStep('rl-f', run, none, before0.perToken)));
    assert.deepEqual([r.sequences, r.microBatches, r.tokens, r.metrics.skipped], [0, 0, 0, 1]);
    const from = (await readManifest(store, checkpointPrefix('rl-f', 0)))!;
    assert.deepEqual(
      r.checkpoint.map((e) => e.sha256),
      from.artifacts.map((e) => e.sha256),
    );
  });
});
