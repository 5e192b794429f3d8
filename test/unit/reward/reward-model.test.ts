/**
 * The `reward_model` reward end to end: a tiny reward model trained from scratch with the
 * Bradley-Terry loss (test/unit/model/reward-fixture.ts: prefer more "a"s) is saved as a Hugging
 * Face directory, loaded through the registry, and scores samples through `scoreSamples` in
 * length-grouped onnxruntime batches; its ranking matches the trained preference, its raw scores
 * match the engine's unbatched ones, and normalisation is applied. Bad directories and options fail
 * with errors naming the option, the config field or the tensor.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createReward } from '../../../activities/reward/registry.js';
import { scoreSamples } from '../../../activities/reward/run.js';
import type { RewardSample } from '../../../activities/reward/types.js';
import { saveHfModel, withClassifier } from '../../../activities/model/hf.js';
import { ModelEngine } from '../../../activities/model/engine.js';
import { writeSafetensorsFile, type TensorMap } from '../../../activities/model/safetensors.js';
import { ConfigError } from '../../../activities/common/config.js';
import { CounterRng } from '../../../activities/common/rng.js';
import { rmConfig, textPair, tokenizer, trainCountingRewardModel, type TrainedRewardModel } from '../model/reward-fixture.js';

let dir = '';
let trained: TrainedRewardModel;
const tensorsOf = (w: TrainedRewardModel['weights']): TensorMap =>
  new Map([...w].map(([k, t]) => [k, { dtype: 'F32' as const, shape: t.shape, data: t.data }]));

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'durable-rl-rm-'));
  trained = await trainCountingRewardModel(120);
  await saveHfModel(path.join(dir, 'rm'), { config: rmConfig, tensors: tensorsOf(trained.weights), tokenizer });
});
after(() => rm(dir, { recursive: true, force: true }));

const sample = (i: number, prompt: string, completion: string): RewardSample => ({ promptId: `p${i}`, sampleId: 0, prompt, completion });

test('reward_model: a trained reward model loaded from its HF directory ranks samples by the trained preference', async () => {
  const saved = JSON.parse(await readFile(path.join(dir, 'rm', 'config.json'), 'utf8'));
  assert.deepEqual(saved.architectures, ['LlamaForSequenceClassification']);
  const fn = createReward({ name: 'reward_model', options: { path: path.join(dir, 'rm'), batchSize: 5 } });
  try {
    // held-out pairs, split into prompt + completion text
    const rng = new CounterRng(77, 'rm-reward-eval');
    const pairs = Array.from({ length: 60 }, (_, i) => textPair(rng, i));
    const samples = pairs.flatMap((p, i) => [
      sample(2 * i, p.chosen.slice(0, 2), p.chosen.slice(2)),
      sample(2 * i + 1, p.rejected.slice(0, 2), p.rejected.slice(2)),
    ]);
    const out = await scoreSamples(fn, samples, { batchSize: 32, concurrency: 2 });
    assert.equal(out.counts.errors, 0, JSON.stringify(out.rows.find((r) => r.error)));
    const r = out.rows.map((row) => row.reward!);
    let correct = 0;
    for (let i = 0; i < pairs.length; i++) if (r[2 * i]! > r[2 * i + 1]!) correct++;
    assert.ok(correct / pairs.length >= 0.9, `held-out pairs ranked correctly: ${correct}/${pairs.length}`);
    // a ladder of one length: more "a"s, higher reward
    const ladder = await fn.scoreBatch!(
      ['aaaaaa', 'aaaabb', 'aabbcc', 'bbccdd'].map((c, i) => sample(i, 'dc', c)),
      ctx(),
    );
    for (let i = 1; i < ladder.length; i++) assert.ok(ladder[i - 1]!.reward > ladder[i]!.reward, `ladder ${ladder.map((x) => x.reward)}`);
    // batched, length-sorted, right-padded scoring equals scoring each sequence alone
    const engine = new ModelEngine(rmConfig, { threads: 1 });
    engine.setWeights(trained.weights, 't');
    for (const k of [0, 7, 33, 118]) {
      const alone = (await engine.reward({ ids: [tokenizer.encode(samples[k]!.prompt + samples[k]!.completion)] }))[0]!;
      assert.ok(
        Math.abs(out.rows[k]!.components!.raw_score! - alone) < 1e-4,
        `sample ${k}: ${out.rows[k]!.components!.raw_score} vs ${alone}`,
      );
      assert.equal(out.rows[k]!.components!.truncated, 0);
    }
    await engine.close();
  } finally {
    await fn.close!();
  }
});

function ctx() {
  return { step: 0, signal: new AbortController().signal, log: { info() {}, warn() {}, debug() {}, error() {} } as never };
}

test('reward_model: scale, shift and sigmoid normalise the raw score; template and left truncation', async () => {
  const fn = createReward({
    name: 'reward_model',
    options: { path: path.join(dir, 'rm'), scale: 0.5, shift: -1, sigmoid: true, template: 'ab{completion}', maxTokens: 6 },
  });
  try {
    const [a, b] = await fn.scoreBatch!([sample(0, 'ignored', 'aa'), sample(1, '', 'cccccccaaa')], ctx());
    const expect = (raw: number) => 1 / (1 + Math.exp(-0.5 * (raw - 1)));
    assert.ok(Math.abs(a!.reward - expect(a!.components!.raw_score!)) < 1e-12);
    assert.equal(a!.components!.truncated, 0);
    assert.equal(b!.components!.truncated, 1, 'bos + 12 chars exceed maxTokens 6');
    // the prompt is not in the template: the text is "abaa"
    const engine = new ModelEngine(rmConfig, { threads: 1 });
    engine.setWeights(trained.weights, 't');
    const [direct, tail] = await Promise.all([
      engine.reward({ ids: [tokenizer.encode('abaa')] }),
      engine.reward({ ids: [tokenizer.encode('abcccccccaaa').slice(-6)] }),
    ]);
    assert.ok(Math.abs(a!.components!.raw_score! - direct[0]!) < 1e-4);
    assert.ok(Math.abs(b!.components!.raw_score! - tail[0]!) < 1e-4, 'left truncation keeps the last maxTokens tokens');
    await engine.close();
  } finally {
    await fn.close!();
  }
  const strict = createReward({ name: 'reward_model', options: { path: path.join(dir, 'rm'), maxTokens: 4, truncation: 'error' } });
  await assert.rejects(strict.scoreBatch!([sample(3, 'ab', 'cdab')], ctx()), /sample p3\/0 has 7 tokens, more than maxTokens 4/);
  await assert.rejects(strict.scoreBatch!([sample(4, 'ab', 'xyz')], ctx()), /sample p4\/0 cannot be tokenized: character "x"/);
  await strict.close!();
});

test('reward_model: bad directories and options fail naming the option, the config field or the tensor', async () => {
  const H = rmConfig.hidden;
  const bad = async (name: string, edit: (tensors: TensorMap, config: Record<string, unknown>) => void) => {
    const d = path.join(dir, name);
    await saveHfModel(d, { config: rmConfig, tensors: tensorsOf(trained.weights), tokenizer });
    const tensors = tensorsOf(trained.weights);
    const config = JSON.parse(await readFile(path.join(d, 'config.json'), 'utf8')) as Record<string, unknown>;
    edit(tensors, config);
    await writeSafetensorsFile(path.join(d, 'model.safetensors'), tensors);
    await writeFile(path.join(d, 'config.json'), JSON.stringify(config));
    return d;
  };
  // missing score.weight: fails at the first scoring call (weights load lazily)
  const missing = await bad('missing', (t) => t.delete('score.weight'));
  const fn1 = createReward({ name: 'reward_model', options: { path: missing } });
  await assert.rejects(
    fn1.scoreBatch!([sample(0, '', 'ab')], ctx()),
    /missing tensor "score\.weight" \(expected shape \[1,32\]\): a sequence classifier/,
  );
  // wrong shape (two labels' worth of rows)
  const twoRows = await bad('shape', (t) => t.set('score.weight', { dtype: 'F32', shape: [2, H], data: new Float32Array(2 * H) }));
  const fn2 = createReward({ name: 'reward_model', options: { path: twoRows } });
  await assert.rejects(fn2.scoreBatch!([sample(0, '', 'ab')], ctx()), /tensor "score\.weight" has shape \[2,32\], expected \[1,32\]/);
  // a causal LM config: not a classifier (unless assumeClassifier)
  const causal = await bad('causal', (_t, c) => (c.architectures = ['LlamaForCausalLM']));
  assert.throws(
    () => createReward({ name: 'reward_model', options: { path: causal } }),
    (e: unknown) => e instanceof ConfigError && /architectures: \["LlamaForCausalLM"\] does not name a sequence classifier/.test(e.message),
  );
  const assumed = createReward({ name: 'reward_model', options: { path: causal, assumeClassifier: true } });
  const [x] = await assumed.scoreBatch!([sample(0, '', 'aaaa')], ctx());
  assert.ok(Number.isFinite(x!.reward));
  await assumed.close!();
  // an unsupported architecture, two labels, a missing directory, a template without the completion
  const bert = await bad('bert', (_t, c) => Object.assign(c, { model_type: 'bert', architectures: ['BertForSequenceClassification'] }));
  assert.throws(() => createReward({ name: 'reward_model', options: { path: bert } }), /model_type: unsupported model_type "bert"/);
  const labels = await bad('labels', (_t, c) => (c.id2label = { 0: 'bad', 1: 'good' }));
  assert.throws(() => createReward({ name: 'reward_model', options: { path: labels } }), /id2label: .*exactly 1 label/);
  assert.throws(
    () => createReward({ name: 'reward_model', options: { path: path.join(dir, 'nope') } }),
    /path: .*config\.json does not exist/,
  );
  assert.throws(
    () => createReward({ name: 'reward_model', options: { path: missing, template: '{prompt}' } }),
    /template: template must contain \{completion\}/,
  );
  assert.throws(() => createReward({ name: 'reward_model', options: {} }), /path/);
  // an LM directory written by the project is rejected the same way as a causal config
  const lmDir = path.join(dir, 'lm');
  const lmCfg = withClassifier(rmConfig, false);
  const lmTensors = tensorsOf(trained.weights);
  lmTensors.delete('score.weight');
  lmTensors.set('lm_head.weight', { dtype: 'F32', shape: [rmConfig.vocabSize, H], data: new Float32Array(rmConfig.vocabSize * H) });
  await saveHfModel(lmDir, { config: lmCfg, tensors: lmTensors, tokenizer });
  assert.throws(() => createReward({ name: 'reward_model', options: { path: lmDir } }), /does not name a sequence classifier/);
});
