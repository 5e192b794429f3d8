/**
 * Training with LoRA (issue 12 §1) on a tiny llama: a fresh adapter (PEFT's initialisation, B = 0)
 * leaves the model's logprobs exactly the base model's; updates move only the adapter tensors
 * (AdamW moments exist for them alone) and lower the loss; gradient accumulation over micro-batches
 * takes the same frozen-base path as a single batch; the frozen base is copied to the session
 * thread once for all updates.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parameterShapes, parseModelConfig, trainableNames, withLora } from '../../../activities/model/config.js';
import { ModelEngine, initTrainState } from '../../../activities/model/engine.js';
import { initWeights } from '../../../activities/model/init.js';
import { sftLoss } from '../../../activities/model/losses.js';

const base = parseModelConfig({
  model_type: 'qwen3',
  vocab_size: 40,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
  max_position_embeddings: 64,
  tie_word_embeddings: true,
});
const cfg = withLora(base, { rank: 4, targets: ['q_proj', 'v_proj', 'down_proj'] });
const baseWeights = initWeights(base, 'lora-train', { std: 0.2 });
const adapterInit = initWeights(cfg, 'lora-train-adapter');
const weights = new Map([...baseWeights, ...[...adapterInit].filter(([n]) => n.includes('lora_'))]);
const ids = [
  [1, 5, 9, 13, 17, 21, 25, 29],
  [2, 6, 10, 14, 18, 22, 26, 30],
];
const batch = { ids, attentionMask: ids.map((r) => r.map(() => 1)), lossMask: ids.map((r) => r.map((_, j) => (j >= 2 ? 1 : 0))) };

test('a fresh LoRA (A random, B = 0, as PEFT starts) computes exactly the base model: its logprobs are bit for bit the same', async () => {
  for (const [n, w] of weights)
    if (n.endsWith('lora_B.weight'))
      assert.ok(
        w.data.every((v) => v === 0),
        `${n} starts at 0`,
      );
  assert.ok(
    [...weights].some(([n, w]) => n.endsWith('lora_A.weight') && w.data.some((v) => v !== 0)),
    'A starts random',
  );
  const withAdapter = new ModelEngine(cfg, { threads: 1 });
  const plain = new ModelEngine(base, { threads: 1 });
  try {
    withAdapter.setWeights(weights, 'a');
    plain.setWeights(baseWeights, 'b');
    const a = await withAdapter.score({ ids, attentionMask: batch.attentionMask });
    const b = await plain.score({ ids, attentionMask: batch.attentionMask });
    assert.deepEqual(a.logprobs, b.logprobs);
  } finally {
    await withAdapter.close();
    await plain.close();
  }
});

test('LoRA SFT lowers the loss over 20 updates while every base weight stays bit for bit; only the 12 adapter tensors have AdamW moments', async () => {
  const engine = new ModelEngine(cfg, { threads: 1 });
  try {
    let state = initTrainState(cfg, weights);
    assert.equal(state.adamM.size, 12, '2 layers × 3 modules × (A, B)');
    assert.deepEqual([...state.adamM.keys()].sort(), [...trainableNames(cfg)].sort());
    const losses: number[] = [];
    for (let i = 0; i < 20; i++) {
      // odd updates accumulate two micro-batches (the grad + apply graphs), even ones take one batch (trainStep)
      const micro =
        i % 2 ? [0, 1].map((r) => ({ ids: [ids[r]!], attentionMask: [batch.attentionMask[r]!], lossMask: [batch.lossMask[r]!] })) : batch;
      const r = await engine.trainStep(state, micro, { loss: sftLoss(), lr: 1e-2 });
      losses.push(r.metrics.loss!);
      state = r.state;
    }
    assert.ok(losses.at(-1)! < 0.5 * losses[0]!, `loss ${losses[0]!.toFixed(3)} → ${losses.at(-1)!.toFixed(3)}`);
    assert.equal(
      engine.frozenUploads,
      parameterShapes(base).length,
      'the frozen base went to the session thread once, not once per update',
    );
    for (const s of parameterShapes(base))
      assert.deepEqual(state.params.get(s.name)!.data, baseWeights.get(s.name)!.data, `${s.name} frozen`);
    const bMoved = [...state.params].some(([n, w]) => n.endsWith('lora_B.weight') && w.data.some((v) => v !== 0));
    assert.ok(bMoved, 'the adapters trained');
  } finally {
    await engine.close();
  }
});
