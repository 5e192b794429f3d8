/**
 * Sequence classifiers (reward models): the config (`*ForSequenceClassification` → a score head
 * `score.weight` [1, hidden] instead of the LM head), the `reward` graph (the score head at the
 * last real token, right or left padding, checked against the final hidden state read back through
 * the causal-LM score graph), and the Bradley-Terry loss: its value and metrics against a
 * TypeScript computation, its gradient against central finite differences in onnxruntime (at the
 * op level in float64, and through the whole float32 training graph), and its bad-input errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { Graph } from '../../../activities/model/graph.js';
import { parameterShapes, parseModelConfig, toHfConfig, type ModelConfig } from '../../../activities/model/config.js';
import { ModelEngine, initTrainState } from '../../../activities/model/engine.js';
import { ModelInputError, type TrainBatch } from '../../../activities/model/engine-types.js';
import { initWeights } from '../../../activities/model/init.js';
import { sftLoss, type LossContext } from '../../../activities/model/losses.js';
import { bradleyTerryLoss, logSigmoid, preferenceBatch } from '../../../activities/model/losses-reward.js';
import type { WeightTensor } from '../../../activities/model/graphs/common.js';
import { checkParameters, loadHfModel, saveHfModel, withClassifier, ModelDirError } from '../../../activities/model/hf.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CounterRng } from '../../../activities/common/rng.js';
import { ConfigError } from '../../../activities/common/config.js';
import { checkGrad } from './gradcheck.js';

const llamaRaw = {
  architectures: ['LlamaForSequenceClassification'],
  model_type: 'llama',
  vocab_size: 12,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  intermediate_size: 24,
  max_position_embeddings: 32,
};
const cfg = parseModelConfig(llamaRaw);
const gpt2Cfg = parseModelConfig({
  architectures: ['GPT2ForSequenceClassification'],
  model_type: 'gpt2',
  vocab_size: 12,
  n_embd: 16,
  n_layer: 1,
  n_head: 2,
  n_positions: 16,
});

/** Seeded weights with a score head large enough that rewards differ visibly between sequences. */
function weightsOf(c: ModelConfig, seed: number): Map<string, WeightTensor> {
  const w = initWeights(c, seed, { std: 0.2 });
  const rng = new CounterRng(seed, 'score-head');
  const s = w.get('score.weight')!;
  for (let i = 0; i < s.data.length; i++) s.data[i] = rng.normal(i);
  return w;
}

const close = (a: number, b: number, tol: number, what: string) =>
  assert.ok(Math.abs(a - b) <= tol * (1 + Math.abs(b)), `${what}: ${a} vs ${b}`);

test('config: *ForSequenceClassification gives a classifier with score.weight [1, hidden] and no LM head; it round-trips', () => {
  assert.equal(cfg.classifier, true);
  const names = parameterShapes(cfg).map((s) => s.name);
  assert.ok(!names.includes('lm_head.weight'));
  assert.deepEqual(parameterShapes(cfg).at(-1), { name: 'score.weight', shape: [1, 16] });
  assert.deepEqual(parameterShapes(gpt2Cfg).at(-1), { name: 'score.weight', shape: [1, 16] });
  for (const c of [cfg, gpt2Cfg, parseModelConfig({ ...llamaRaw, model_type: 'qwen2' })]) {
    const hf = toHfConfig(c);
    assert.match((hf.architectures as string[])[0]!, /ForSequenceClassification$/);
    assert.deepEqual(hf.id2label, { 0: 'LABEL_0' });
    assert.deepEqual(parseModelConfig(JSON.parse(JSON.stringify(hf))), c);
  }
  // a causal LM stays as it was (no classifier field at all)
  const lm = parseModelConfig({ ...llamaRaw, architectures: ['LlamaForCausalLM'] });
  assert.equal('classifier' in lm, false);
  assert.deepEqual(parameterShapes(lm).at(-1), { name: 'lm_head.weight', shape: [12, 16] });
  assert.deepEqual(withClassifier(lm, true), cfg);
  assert.deepEqual(withClassifier(cfg, false), lm);
});

test('config: a classifier with more than one label is rejected naming num_labels / id2label', () => {
  assert.throws(
    () => parseModelConfig({ ...llamaRaw, num_labels: 2 }),
    (e: unknown) => e instanceof ConfigError && /num_labels: .*exactly 1 label.* has 2/.test(e.message),
  );
  assert.throws(
    () => parseModelConfig({ ...llamaRaw, id2label: { 0: 'bad', 1: 'good' } }),
    (e: unknown) => e instanceof ConfigError && /id2label: .*exactly 1 label/.test(e.message),
  );
  assert.equal(parseModelConfig({ ...llamaRaw, id2label: { 0: 'LABEL_0' } }).classifier, true);
});

test('HF directories: a classifier saves and loads with score.weight; the check names score.weight when it is missing, misshapen or unexpected', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'durable-rl-cls-'));
  try {
    for (const c of [cfg, gpt2Cfg]) {
      const tensors = new Map([...weightsOf(c, 2)].map(([k, t]) => [k, { dtype: 'F32' as const, shape: t.shape, data: t.data }]));
      const d = path.join(dir, c.modelType);
      await saveHfModel(d, { config: c, tensors });
      const back = await loadHfModel(d);
      assert.deepEqual(back.config, c);
      assert.deepEqual(back.tensors.get('score.weight'), tensors.get('score.weight'));
      // as a causal LM the same directory has an unexpected score.weight (and lacks the LM head)
      const lm = withClassifier(c, false);
      assert.throws(
        () => checkParameters(lm, tensors, d),
        (e: unknown) => e instanceof ModelDirError && /unexpected tensor "score\.weight": a sequence-classifier head/.test(e.message),
      );
      const noHead = new Map(tensors);
      noHead.delete('score.weight');
      assert.throws(() => checkParameters(c, noHead, d), /missing tensor "score\.weight" \(expected shape \[1,16\]\)/);
      noHead.set('score.weight', { dtype: 'F32', shape: [2, 16], data: new Float32Array(32) });
      assert.throws(() => checkParameters(c, noHead, d), /tensor "score\.weight" has shape \[2,16\], expected \[1,16\]/);
    }
    // loading an LM directory as a classifier (explicit option) asks for score.weight
    const lmCfg = withClassifier(cfg, false);
    await saveHfModel(path.join(dir, 'lm'), {
      config: lmCfg,
      tensors: new Map([...initWeights(lmCfg, 1)].map(([k, t]) => [k, { dtype: 'F32' as const, ...t }])),
    });
    await assert.rejects(loadHfModel(path.join(dir, 'lm'), { classifier: true }), /missing tensor "score\.weight"/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('reward graph: the score head reads the last real token, with right, left or no padding (llama and gpt2)', async () => {
  for (const c of [cfg, gpt2Cfg]) {
    const engine = new ModelEngine(c, { threads: 1 });
    const w = weightsOf(c, 3);
    engine.setWeights(w, 'v1');
    const seqs = [[1, 5, 7, 3], [1, 5, 7, 3, 11, 2], [6]]; // a shared prefix: only the last token tells them apart
    const alone = await Promise.all(seqs.map(async (s) => (await engine.reward({ ids: [s] }))[0]!));
    assert.ok(new Set(alone.map((x) => x.toFixed(4))).size === 3, `distinct sequences get distinct rewards: ${alone}`);
    const len = 6;
    const right = await engine.reward({
      ids: seqs.map((s) => [...s, ...Array<number>(len - s.length).fill(8)]), // padding holds arbitrary ids
      attentionMask: seqs.map((s) => [...s.map(() => 1), ...Array<number>(len - s.length).fill(0)]),
    });
    const left = await engine.reward({
      ids: seqs.map((s) => [...Array<number>(len - s.length).fill(3), ...s]),
      attentionMask: seqs.map((s) => [...Array<number>(len - s.length).fill(0), ...s.map(() => 1)]),
    });
    for (let i = 0; i < seqs.length; i++) {
      close(right[i]!, alone[i]!, 1e-4, `${c.modelType} right-padded row ${i}`);
      close(left[i]!, alone[i]!, 1e-4, `${c.modelType} left-padded row ${i}`);
    }
    // the reward is linear in score.weight
    const doubled = new Map(w);
    const s = doubled.get('score.weight')!;
    doubled.set('score.weight', { shape: s.shape, data: s.data.map((x) => 2 * x) });
    engine.setWeights(doubled, 'v2');
    const twice = await engine.reward({ ids: [seqs[0]!] });
    close(twice[0]!, 2 * alone[0]!, 1e-5, `${c.modelType} doubled head`);
    await engine.close();
  }
});

test('reward graph: the reward is score.weight · the final hidden state of the last token (read back through the LM score graph)', async () => {
  // An LM with the classifier's backbone and an LM head whose row 0 is the score head and whose
  // other rows are 0 has logits [s, 0, ..., 0] with s = score.weight · h, so the logprob of token 0
  // after the sequence gives s back: s = log((V - 1) · p / (1 - p)).
  const w = weightsOf(cfg, 5);
  const lmCfg = withClassifier(cfg, false);
  const V = cfg.vocabSize;
  const head = new Float32Array(V * cfg.hidden);
  head.set(w.get('score.weight')!.data, 0);
  const lmWeights = new Map(w);
  lmWeights.delete('score.weight');
  lmWeights.set('lm_head.weight', { shape: [V, cfg.hidden], data: head });
  const rm = new ModelEngine(cfg, { threads: 1 });
  rm.setWeights(w, 'w');
  const lm = new ModelEngine(lmCfg, { threads: 1 });
  lm.setWeights(lmWeights, 'w');
  const seqs = [
    [1, 5, 7, 3, 2],
    [9, 4, 11],
  ];
  for (const s of seqs) {
    const reward = (await rm.reward({ ids: [s] }))[0]!;
    const lp = (await lm.score({ ids: [[...s, 0]] }, { entropy: false })).logprobs[s.length]!;
    const p = Math.exp(lp);
    const recovered = Math.log(((V - 1) * p) / (1 - p));
    close(reward, recovered, 1e-3, `sequence ${s}`);
  }
  await rm.close();
  await lm.close();
});

test('logSigmoid: stable at ±100 and exact gradient at 0 (float64 finite differences)', async () => {
  const g = new Graph({ name: 'ls' });
  const x = g.input('x', 'float32', [5]);
  g.output(logSigmoid(x), 'y');
  const s = await ort.InferenceSession.create(g.toBytes());
  const xs = [-100, -3, 0, 3, 100];
  const y = (await s.run({ x: new ort.Tensor('float32', Float32Array.from(xs), [5]) })).y!.data as Float32Array;
  xs.forEach((v, i) => close(y[i]!, v < 0 ? v - Math.log1p(Math.exp(v)) : -Math.log1p(Math.exp(-v)), 1e-6, `logSigmoid(${v})`));
  assert.equal(y[0], -100);
  await s.release();
  await checkGrad({
    name: 'logsigmoid',
    inputs: [{ name: 'x', shape: [7], values: [-40, -2.5, -0.3, 0, 0.3, 2.5, 40] }],
    build: (t) => logSigmoid(t),
  });
});

/** A minimal loss context over a rewards tensor, for op-level checks of the loss. */
function rewardCtx(g: Graph, rewards: ReturnType<Graph['input']>): LossContext {
  return {
    g,
    rewards,
    lossMask: rewards,
    attentionMask: rewards,
    get logprobs(): never {
      throw new Error('no logprobs');
    },
    entropy() {
      throw new Error('no entropy');
    },
    input(name, dtype, dims) {
      return g.input(
        name,
        dtype,
        dims.map((d) => (typeof d === 'number' ? d : 8)),
      );
    },
  };
}

test('Bradley-Terry loss: gradient with respect to the rewards matches finite differences (float64; ties, margins, centring)', async () => {
  const values = [0.3, -1.2, 0, 0, 2.5, 2.6, -30, 25]; // a tie and a large disagreement
  for (const opts of [{}, { margin: 0.5 }, { margin: -0.25, centerRewardsCoefficient: 0.1 }]) {
    await checkGrad({
      name: `bt-${JSON.stringify(opts)}`,
      inputs: [{ name: 'r', shape: [8], values }],
      build: (r) => bradleyTerryLoss(opts).build(rewardCtx(r.g, r)).loss,
    });
  }
});

/** Preference pairs of random lengths and random tokens (ids 1..V-1, 0 is padding). */
function pairs(seed: number, n: number, vocab: number) {
  const rng = new CounterRng(seed, 'pairs');
  const seq = (k: number) => Array.from({ length: 2 + rng.int(k * 16, 5) }, (_, j) => 1 + rng.int(k * 16 + 1 + j, vocab - 1));
  return Array.from({ length: n }, (_, i) => ({ chosen: seq(2 * i), rejected: seq(2 * i + 1), margin: rng.uniform(9999 - i) }));
}

function btReference(r: Float32Array, margins: number[], o: { margin?: number; center?: number }) {
  let loss = 0;
  let acc = 0;
  let marg = 0;
  let centre = 0;
  const n = r.length / 2;
  for (let i = 0; i < n; i++) {
    const d = r[2 * i]! - r[2 * i + 1]!;
    const x = d - (o.margin ?? 0) - (margins[i] ?? 0);
    loss += Math.log1p(Math.exp(-x)); // −log σ(x)
    acc += d > 0 ? 1 : 0;
    marg += d;
    centre += (r[2 * i]! + r[2 * i + 1]!) ** 2;
  }
  return { loss: loss / n + (o.center ?? 0) * (centre / n), accuracy: acc / n, margin: marg / n };
}

test('Bradley-Terry loss: value and metrics of trainStep match a TypeScript computation from the reward graph', async () => {
  const engine = new ModelEngine(cfg, { threads: 1 });
  const w = weightsOf(cfg, 7);
  engine.setWeights(w, 'w');
  const ps = pairs(1, 6, cfg.vocabSize);
  const batch = preferenceBatch(ps, { perPairMargin: true });
  assert.deepEqual(batch.ids.length, 12);
  const r = await engine.reward(batch);
  const state = initTrainState(cfg, w);
  const cases = [
    { loss: bradleyTerryLoss(), ref: btReference(r, [], {}), batch: preferenceBatch(ps) },
    {
      loss: bradleyTerryLoss({ margin: 0.7, centerRewardsCoefficient: 0.05 }),
      ref: btReference(r, [], { margin: 0.7, center: 0.05 }),
      batch: preferenceBatch(ps),
    },
    {
      loss: bradleyTerryLoss({ perPairMargin: true, margin: 0.1 }),
      ref: btReference(
        r,
        ps.map((p) => p.margin),
        { margin: 0.1 },
      ),
      batch,
    },
  ];
  for (const c of cases) {
    const out = await engine.trainStep(state, c.batch, { loss: c.loss, lr: 1e-3 });
    close(out.metrics.loss!, c.ref.loss, 1e-5, `${c.loss.key} loss`);
    close(out.metrics.accuracy!, c.ref.accuracy, 1e-6, `${c.loss.key} accuracy`);
    close(out.metrics.margin!, c.ref.margin, 1e-5, `${c.loss.key} margin`);
    assert.equal(out.metrics.pairs, 6);
    assert.ok(c.ref.accuracy > 0 && c.ref.accuracy < 1, 'the random pairs are neither all right nor all wrong');
    assert.notDeepEqual(out.state.params.get('score.weight')!.data, w.get('score.weight')!.data, 'the score head is trained');
  }
  await engine.close();
});

test('Bradley-Terry loss: gradients of the float32 training graph (score head and backbone) match finite differences', async () => {
  const engine = new ModelEngine(cfg, { threads: 1 });
  const w = weightsOf(cfg, 11);
  const loss = bradleyTerryLoss({ margin: 0.2 });
  const { session } = await engine.trainSession('grad', loss);
  const batch: TrainBatch = preferenceBatch(pairs(2, 4, cfg.vocabSize));
  const B = batch.ids.length;
  const T = batch.ids[0]!.length;
  const flat = (rows: readonly (readonly number[])[]) => rows.flat();
  const fixed: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(flat(batch.ids).map(BigInt)), [B, T]),
    attention_mask: new ort.Tensor('int64', BigInt64Array.from(flat(batch.attentionMask!).map(BigInt)), [B, T]),
    loss_mask: new ort.Tensor('float32', Float32Array.from(flat(batch.lossMask)), [B, T]),
  };
  const specs = parameterShapes(cfg);
  for (const s of specs) fixed[`acc.${s.name}`] = new ort.Tensor('float32', new Float32Array(s.shape.reduce((a, b) => a * b, 1)), s.shape);
  const run = async (params: Map<string, WeightTensor>) => {
    const feeds = { ...fixed };
    for (const s of specs) feeds[s.name] = new ort.Tensor('float32', params.get(s.name)!.data, s.shape);
    return session.run(feeds);
  };
  const base = await run(w);
  // padding id 0 only ever sits at padding positions: its embedding row gets no gradient
  const embGrad = base['new.acc.model.embed_tokens.weight']!.data as Float32Array;
  assert.ok(
    embGrad.subarray(0, cfg.hidden).every((x) => x === 0),
    'no gradient into the padding token embedding',
  );
  const probes: [string, number[]][] = [
    ['score.weight', Array.from({ length: cfg.hidden }, (_, i) => i)],
    ['model.norm.weight', [0, 5, 11]],
    ['model.layers.1.mlp.down_proj.weight', [0, 17, 200]],
    ['model.layers.0.self_attn.q_proj.weight', [3, 100]],
    ['model.embed_tokens.weight', [16 * 3 + 2, 16 * 7 + 9]],
  ];
  const h = 1e-2;
  for (const [name, idx] of probes) {
    const analytic = base[`new.acc.${name}`]!.data as Float32Array;
    for (const k of idx) {
      const at = async (delta: number) => {
        const p = new Map(w);
        const d = w.get(name)!.data.slice();
        d[k]! += delta;
        p.set(name, { shape: w.get(name)!.shape, data: d });
        return Number((await run(p)).loss!.data[0]);
      };
      const numeric = ((await at(h)) - (await at(-h))) / (2 * h);
      const err = Math.abs(analytic[k]! - numeric);
      assert.ok(
        err <= 2e-4 + 3e-2 * Math.abs(numeric),
        `d loss / d ${name}[${k}]: analytic ${analytic[k]} vs finite difference ${numeric}`,
      );
    }
  }
  await engine.close();
});

test('Bradley-Terry with micro-batches: two halves accumulate to the update of the whole batch; weights fed as inputs give the same rewards', async () => {
  const engine = new ModelEngine(cfg, { threads: 1 });
  const w = weightsOf(cfg, 13);
  const state = initTrainState(cfg, w);
  const ps = pairs(4, 6, cfg.vocabSize);
  const loss = bradleyTerryLoss();
  // the same padded length in both runs, so the two computations see identical rows
  const whole = preferenceBatch(ps);
  const half = (a: number, b: number): TrainBatch => ({
    ids: whole.ids.slice(a, b),
    attentionMask: whole.attentionMask!.slice(a, b),
    lossMask: whole.lossMask.slice(a, b),
  });
  const one = await engine.trainStep(state, whole, { loss, lr: 1e-2 });
  const two = await engine.trainStep(state, [half(0, 6), half(6, 12)], { loss, lr: 1e-2 });
  close(two.metrics.loss!, one.metrics.loss!, 1e-5, 'mean loss over micro-batches');
  close(two.metrics.grad_norm!, one.metrics.grad_norm!, 1e-4, 'norm of the mean gradient'); // (Adam's first step is scale-free)
  for (const name of ['score.weight', 'model.layers.1.mlp.up_proj.weight']) {
    const a = one.state.params.get(name)!.data;
    const b = two.state.params.get(name)!.data;
    for (let i = 0; i < a.length; i++) close(b[i]!, a[i]!, 1e-5, `${name}[${i}]`);
  }
  const fed = new ModelEngine(cfg, { threads: 1, bakeWeights: false });
  engine.setWeights(w, 'w');
  fed.setWeights(w, 'w');
  const [baked, asInputs] = await Promise.all([engine.reward(whole), fed.reward(whole)]);
  for (let i = 0; i < baked.length; i++) close(asInputs[i]!, baked[i]!, 1e-5, `row ${i} with weights as inputs`);
  await engine.close();
  await fed.close();
});

test('bad input: odd rows, LM models with the Bradley-Terry loss, classifiers with LM calls, empty rows', async () => {
  const engine = new ModelEngine(cfg, { threads: 1 });
  const w = weightsOf(cfg, 1);
  engine.setWeights(w, 'w');
  const state = initTrainState(cfg, w);
  const odd = preferenceBatch(pairs(3, 2, cfg.vocabSize));
  odd.ids = odd.ids.slice(0, 3);
  odd.attentionMask = odd.attentionMask!.slice(0, 3);
  odd.lossMask = odd.lossMask.slice(0, 3);
  await assert.rejects(
    engine.trainStep(state, odd, { loss: bradleyTerryLoss(), lr: 1e-3 }),
    (e: unknown) => e instanceof ModelInputError && /batch 0: .*odd number of rows \(3\)/.test(e.message),
  );
  await assert.rejects(
    engine.trainStep(state, preferenceBatch(pairs(3, 2, cfg.vocabSize)), { loss: sftLoss(), lr: 1e-3 }),
    /ctx\.logprobs needs an LM head, but this model is a sequence classifier/,
  );
  await assert.rejects(
    engine.score({ ids: [[1, 2, 3]] }),
    (e: unknown) => e instanceof ModelInputError && /score needs an LM head/.test(e.message),
  );
  await assert.rejects(engine.decodeSession(), /decode needs an LM head/);
  await assert.rejects(
    engine.reward({
      ids: [
        [1, 2],
        [3, 4],
      ],
      attentionMask: [
        [1, 1],
        [0, 0],
      ],
    }),
    /attentionMask row 1 has no real token/,
  );
  const lmCfg = withClassifier(cfg, false);
  const lm = new ModelEngine(lmCfg, { threads: 1 });
  const lmState = initTrainState(lmCfg, initWeights(lmCfg, 1));
  await assert.rejects(
    lm.trainStep(lmState, preferenceBatch(pairs(3, 2, cfg.vocabSize)), { loss: bradleyTerryLoss(), lr: 1e-3 }),
    /Bradley-Terry loss needs a sequence-classifier model/,
  );
  lm.setWeights(lmState.params, 'x');
  await assert.rejects(lm.reward({ ids: [[1, 2]] }), /reward\(\) needs a sequence classifier/);
  assert.throws(() => bradleyTerryLoss({ margin: 'big' } as never), /bradley-terry loss options: margin/);
  assert.throws(
    () => engine.checkWeights(new Map([...w].filter(([k]) => k !== 'score.weight')), 'weights'),
    /missing score\.weight \[1, 16\]/,
  );
  await engine.close();
  await lm.close();
});
