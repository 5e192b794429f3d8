/**
 * Parity with transformers itself. Each directory under test/fixtures/hf/ is a tiny random model of a
 * supported architecture saved by transformers 5.23, with the token logprobs, SFT loss and gradient
 * norms transformers computed (float64, eager attention) on a fixed left-padded batch
 * (bench/hf-fixtures/make_fixtures.py, run by hand). The engine must reproduce them through every
 * graph — `score`, `decode` (prefill plus KV-cache steps, teacher-forced to the fixture's tokens)
 * and `trainStep` — from both config forms (`config.json` as transformers 5 writes it,
 * `config.v4.json` the transformers 4 form of the same model):
 * logprobs within 1e-5 absolute, the loss within 1e-5 relative, every gradient norm within 1e-4
 * relative.
 *
 * The per-parameter gradients are read out of the real trainStep graph: with beta1 = 0, lr = 0,
 * no clipping and no weight decay, AdamW's new first moment is exactly the gradient.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseModelConfig, type ModelConfig } from '../../../activities/model/config.js';
import { checkParameters } from '../../../activities/model/hf.js';
import { readCheckpointDir } from '../../../activities/model/safetensors.js';
import { ModelEngine, initTrainState } from '../../../activities/model/engine.js';
import { generate } from '../../../activities/model/generate.js';
import { sftLoss } from '../../../activities/model/losses.js';
import type { WeightTensor } from '../../../activities/model/graphs/common.js';

type WeightMap = Map<string, WeightTensor>;

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/hf');
/** Every supported family and RoPE type has a fixture; a missing one fails here rather than passing unnoticed. */
const EXPECTED_FIXTURES = ['gpt2', 'llama', 'llama-linear', 'mistral', 'qwen2', 'qwen3', 'qwen3-yarn', 'smollm2'];
const LOGPROB_ABS = 1e-5;
const LOSS_REL = 1e-5;
const GRAD_REL = 1e-4;

interface Expected {
  name: string;
  batch: { input_ids: number[][]; attention_mask: number[][]; loss_mask: number[][] };
  logprobs: number[][];
  loss: number;
  grad_norm: number;
  grad_norms: Record<string, number>;
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
const norm = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0));

async function fixture(name: string, configFile: string): Promise<{ cfg: ModelConfig; weights: WeightMap; exp: Expected }> {
  const dir = path.join(FIXTURES, name);
  const cfg = parseModelConfig(JSON.parse(readFileSync(path.join(dir, configFile), 'utf8')), `${name}/${configFile}`);
  const contents = await readCheckpointDir(dir);
  // checkParameters passes only F32 tensors (BF16/F16 files are upcast on read)
  const checked = checkParameters(cfg, contents.tensors, dir, contents.sourceDtypes);
  const weights: WeightMap = new Map([...checked].map(([k, t]) => [k, { shape: t.shape, data: t.data as Float32Array }]));
  const exp = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Expected;
  return { cfg, weights, exp };
}

async function checkScore(engine: ModelEngine, exp: Expected, what: string): Promise<void> {
  const { input_ids: ids, attention_mask: attentionMask } = exp.batch;
  const { logprobs } = await engine.score({ ids, attentionMask });
  const T = ids[0]!.length;
  let worst = 0;
  exp.logprobs.forEach((row, b) => row.forEach((want, t) => (worst = Math.max(worst, Math.abs(logprobs[b * T + t]! - want)))));
  assert.ok(worst <= LOGPROB_ABS, `${what} score: max |Δlogprob| ${worst.toExponential(2)} > ${LOGPROB_ABS}`);
}

/** Prefill each row's first three real tokens, then decode the rest one at a time, forced to the fixture's tokens. */
async function checkDecode(engine: ModelEngine, exp: Expected, what: string): Promise<void> {
  const rows = exp.batch.input_ids.map((ids, b) => ids.filter((_, t) => exp.batch.attention_mask[b]![t] === 1));
  const PROMPT = 3;
  const prompts = rows.map((r) => r.slice(0, PROMPT));
  const longest = Math.max(...rows.map((r) => r.length)) - PROMPT;
  const gens = await generate(engine, prompts, {
    maxNewTokens: longest,
    // once a row's tokens run out it keeps emitting its last token; those positions are not compared
    pickToken: (_logits, seq, pos) => rows[seq]![Math.min(PROMPT + pos, rows[seq]!.length - 1)]!,
    stopTokenIds: [],
  });
  let worst = 0;
  let compared = 0;
  gens.forEach((g, b) => {
    const T = exp.batch.input_ids[b]!.length;
    const pad = T - rows[b]!.length;
    for (let pos = 0; PROMPT + pos < rows[b]!.length; pos++) {
      worst = Math.max(worst, Math.abs(g.logprobs[pos]! - exp.logprobs[b]![pad + PROMPT + pos]!));
      compared++;
    }
  });
  assert.ok(compared >= 20, `${what} decode compared only ${compared} tokens`);
  assert.ok(worst <= LOGPROB_ABS, `${what} decode: max |Δlogprob| ${worst.toExponential(2)} > ${LOGPROB_ABS}`);
}

async function checkTrainStep(engine: ModelEngine, cfg: ModelConfig, weights: WeightMap, exp: Expected, what: string): Promise<void> {
  const { input_ids: ids, attention_mask: attentionMask, loss_mask: lossMask } = exp.batch;
  const { state, metrics } = await engine.trainStep(
    initTrainState(cfg, weights),
    { ids, attentionMask, lossMask },
    { loss: sftLoss(), lr: 0, optimizer: { beta1: 0, maxGradNorm: 0, weightDecay: 0 } },
  );
  assert.ok(rel(metrics.loss!, exp.loss) <= LOSS_REL, `${what} loss ${metrics.loss} vs transformers ${exp.loss}`);
  assert.ok(rel(metrics.grad_norm!, exp.grad_norm) <= GRAD_REL, `${what} grad_norm ${metrics.grad_norm} vs transformers ${exp.grad_norm}`);
  const names = Object.keys(exp.grad_norms);
  assert.deepEqual([...state.adamM.keys()].sort(), [...names].sort(), `${what}: the trainable parameters are transformers' parameters`);
  for (const name of names) {
    const got = norm(state.adamM.get(name)!.data);
    assert.ok(rel(got, exp.grad_norms[name]!) <= GRAD_REL, `${what} ‖∇${name}‖ ${got} vs transformers ${exp.grad_norms[name]}`);
  }
}

test('every supported architecture and RoPE type has a transformers fixture', () => {
  const present = readdirSync(FIXTURES, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
  assert.deepEqual(present, [...EXPECTED_FIXTURES].sort());
});

for (const name of EXPECTED_FIXTURES) {
  for (const configFile of ['config.json', 'config.v4.json']) {
    test(`${name} (${configFile}): score, decode and trainStep match transformers — logprobs 1e-5, loss 1e-5, gradient norms 1e-4`, async () => {
      const { cfg, weights, exp } = await fixture(name, configFile);
      const engine = new ModelEngine(cfg, { threads: 1 });
      engine.setWeights(weights, 'fixture');
      const what = `${name}/${configFile}`;
      await checkScore(engine, exp, what);
      await checkDecode(engine, exp, what);
      await checkTrainStep(engine, cfg, weights, exp, what);
    });
  }
}

test('both config forms of every fixture normalise to the same model config', () => {
  for (const name of EXPECTED_FIXTURES) {
    const read = (f: string) => parseModelConfig(JSON.parse(readFileSync(path.join(FIXTURES, name, f), 'utf8')));
    assert.deepEqual(read('config.v4.json'), read('config.json'), name);
  }
});
