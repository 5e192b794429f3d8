/**
 * Logprob parity of the three graphs: on the same weights and tokens, the logprobs of generated
 * tokens from `decode` (prefill + KV-cache steps, left-padded batch), from `score`, and from the
 * `trainStep` forward agree within 1e-4 (float32), for GPT-2 and for Llama/Qwen2 (grouped-query
 * attention, q/k/v bias, RoPE). The rollout records `decode`'s logprobs as the behaviour policy and
 * the learner's ratios divide by them, so an on-policy ratio is 1 only if the graphs agree.
 *
 * The trainStep side is read through the loss-builder interface itself: a loss that declares the
 * score logprobs as an extra input and exports the largest masked difference as a metric.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelConfig, type ModelConfig } from '../../../activities/model/config.js';
import { ModelEngine, initTrainState } from '../../../activities/model/engine.js';
import { initWeights } from '../../../activities/model/init.js';
import { generate } from '../../../activities/model/generate.js';
import type { LossBuilder } from '../../../activities/model/losses.js';
import * as F from '../../../activities/model/ops.js';

const TOL = 1e-4;

const argmax = (l: Float32Array): number => {
  let b = 0;
  for (let i = 1; i < l.length; i++) if (l[i]! > l[b]!) b = i;
  return b;
};

/** Exports max |trainStep logprobs - ref| over the loss mask, and the masked logprob sum. */
const parityLoss: LossBuilder = {
  key: 'parity-probe',
  build(ctx) {
    const ref = ctx.input('ref_logprobs', 'float32', ['batch', 'seq']);
    const diff = F.mul(F.sub(ctx.logprobs, ref), ctx.lossMask);
    const maxAbs = ctx.g.noTape(() => F.reduceMax(F.maximum(diff, F.neg(diff))));
    return { loss: F.neg(F.reduceSum(F.mul(ctx.logprobs, ctx.lossMask))), metrics: { max_abs_diff: maxAbs } };
  },
};

async function checkParity(cfg: ModelConfig, bakeWeights = true): Promise<void> {
  const engine = new ModelEngine(cfg, { threads: 1, bakeWeights });
  // larger init than usual so the next-token distributions are far from uniform
  const weights = initWeights(cfg, 'parity', { std: 0.2 });
  engine.setWeights(weights, 'v1');
  const prompts = [
    [1, 2, 3, 4, 5, 6],
    [7, 8],
    [9, 10, 11, 12],
  ];
  const newTokens = 7;
  const gens = await generate(engine, prompts, { maxNewTokens: newTokens, pickToken: argmax, stopTokenIds: [] });

  // the same sequences, left-padded, scored in one batch
  const full = prompts.map((p, i) => [...p, ...gens[i]!.tokens]);
  const len = Math.max(...full.map((s) => s.length));
  const ids = full.map((s) => [...Array<number>(len - s.length).fill(0), ...s]);
  const attentionMask = full.map((s) => [...Array<number>(len - s.length).fill(0), ...Array<number>(s.length).fill(1)]);
  const scored = await engine.score({ ids, attentionMask });
  let worst = 0;
  gens.forEach((g, i) => {
    g.tokens.forEach((_, j) => {
      const fromScore = scored.logprobs[i * len + (len - newTokens + j)]!;
      const d = Math.abs(fromScore - g.logprobs[j]!);
      worst = Math.max(worst, d);
      assert.ok(d <= TOL, `${cfg.modelType}: sequence ${i} token ${j}: decode logprob ${g.logprobs[j]} vs score ${fromScore}`);
    });
  });
  assert.ok(
    gens.some((g) => g.logprobs.some((l) => l < -0.05)),
    'the test should not only see near-certain tokens',
  );

  const lossMask = ids.map((row) => row.map((_, t) => (t >= len - newTokens ? 1 : 0)));
  const ref = ids.map((_, i) => Array.from(scored.logprobs.subarray(i * len, (i + 1) * len)));
  const r = await engine.trainStep(
    initTrainState(cfg, weights),
    { ids, attentionMask, lossMask, extra: { ref_logprobs: ref } },
    { loss: parityLoss, lr: 0 },
  );
  assert.ok(r.metrics.max_abs_diff! <= TOL, `${cfg.modelType}: trainStep forward logprobs differ from score by ${r.metrics.max_abs_diff}`);
  const decodeSum = gens.reduce((s, g) => s + g.logprobs.reduce((a, b) => a + b, 0), 0);
  assert.ok(
    Math.abs(-r.metrics.loss! - decodeSum) <= TOL * gens.length * newTokens,
    `${cfg.modelType}: trainStep loss ${r.metrics.loss} vs decode logprob sum ${decodeSum}`,
  );
  await engine.close();
}

test('GPT-2: decode, score and trainStep logprobs agree within 1e-4', () =>
  checkParity(parseModelConfig({ model_type: 'gpt2', vocab_size: 24, n_embd: 32, n_layer: 2, n_head: 4, n_positions: 32 })));

test('Qwen2 (GQA, q/k/v bias, RoPE, tied head): decode, score and trainStep logprobs agree within 1e-4', () =>
  checkParity(
    parseModelConfig({
      model_type: 'qwen2',
      vocab_size: 24,
      hidden_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      intermediate_size: 48,
      tie_word_embeddings: true,
      rope_theta: 10000,
    }),
  ));

test('Llama (no bias, untied head): decode, score and trainStep logprobs agree within 1e-4', () =>
  checkParity(
    parseModelConfig({
      model_type: 'llama',
      vocab_size: 24,
      hidden_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      intermediate_size: 48,
    }),
  ));

test('Qwen2 with weights fed as graph inputs instead of baked in: same parity', () =>
  checkParity(
    parseModelConfig({
      model_type: 'qwen2',
      vocab_size: 24,
      hidden_size: 32,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      intermediate_size: 48,
      tie_word_embeddings: true,
    }),
    false,
  ));
