import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelConfig, parameterShapes, parameterCount, toHfConfig, type ModelConfig } from '../../../activities/model/config.js';
import { ConfigError } from '../../../activities/common/config.js';

// Shapes of real published configs (trimmed of fields we do not read, plus a few we must tolerate).
const gpt2Hf = {
  activation_function: 'gelu_new',
  architectures: ['GPT2LMHeadModel'],
  attn_pdrop: 0.1,
  bos_token_id: 50256,
  embd_pdrop: 0.1,
  eos_token_id: 50256,
  initializer_range: 0.02,
  layer_norm_epsilon: 1e-5,
  model_type: 'gpt2',
  n_ctx: 1024,
  n_embd: 768,
  n_head: 12,
  n_layer: 12,
  n_positions: 1024,
  resid_pdrop: 0.1,
  vocab_size: 50257,
  task_specific_params: { 'text-generation': { do_sample: true, max_length: 50 } },
};
const qwen25Hf = {
  architectures: ['Qwen2ForCausalLM'],
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  hidden_act: 'silu',
  hidden_size: 896,
  initializer_range: 0.02,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  max_window_layers: 21,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000.0,
  sliding_window: 32768,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.43.1',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};
const llamaTiny = {
  model_type: 'llama',
  vocab_size: 64,
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 48,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 128,
  bos_token_id: 1,
  eos_token_id: [2, 3],
};

function configError(fn: () => unknown, pathRe: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof ConfigError && pathRe.test(e.message), 'expected ConfigError matching ' + pathRe);
}

test('gpt2 config.json normalises with derived head size, MLP width and tied head', () => {
  const c = parseModelConfig(gpt2Hf);
  assert.equal(c.arch, 'gpt2');
  assert.equal(c.headDim, 64);
  assert.equal(c.kvHeads, 12);
  assert.equal(c.intermediate, 3072);
  assert.equal(c.tieWordEmbeddings, true);
  assert.deepEqual(c.eosTokenIds, [50256]);
  assert.equal(c.arch === 'gpt2' && c.activation, 'gelu_tanh');
  // The published GPT-2 small has 124,439,808 parameters (wte + wpe + 12 blocks + ln_f).
  assert.equal(parameterCount(c), 124439808);
});

test('qwen2 maps to llama with q/k/v bias only, GQA kv heads and rope theta', () => {
  const c = parseModelConfig(qwen25Hf);
  assert.equal(c.arch, 'llama');
  if (c.arch !== 'llama') return;
  assert.equal(c.modelType, 'qwen2');
  assert.equal(c.qkvBias, true);
  assert.equal(c.oBias, false);
  assert.equal(c.kvHeads, 2);
  assert.equal(c.headDim, 64);
  assert.deepEqual(c.rope, { type: 'default', theta: 1e6 });
  // Qwen2.5-0.5B has 494,032,768 parameters (tied head).
  assert.equal(parameterCount(c), 494032768);
  const names = parameterShapes(c).map((p) => p.name);
  assert.ok(names.includes('model.layers.0.self_attn.q_proj.bias'));
  assert.ok(!names.includes('model.layers.0.self_attn.o_proj.bias'));
  assert.ok(!names.includes('lm_head.weight'));
});

test('llama parameter shapes follow HF names, nn.Linear [out, in] and an untied head', () => {
  const c = parseModelConfig(llamaTiny);
  const shapes = new Map(parameterShapes(c).map((p) => [p.name, p.shape]));
  assert.deepEqual(shapes.get('model.embed_tokens.weight'), [64, 32]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.q_proj.weight'), [32, 32]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.k_proj.weight'), [16, 32]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.v_proj.weight'), [16, 32]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.o_proj.weight'), [32, 32]);
  assert.deepEqual(shapes.get('model.layers.0.mlp.gate_proj.weight'), [48, 32]);
  assert.deepEqual(shapes.get('model.layers.0.mlp.down_proj.weight'), [32, 48]);
  assert.deepEqual(shapes.get('model.layers.0.post_attention_layernorm.weight'), [32]);
  assert.deepEqual(shapes.get('model.norm.weight'), [32]);
  assert.deepEqual(shapes.get('lm_head.weight'), [64, 32]);
  assert.equal(shapes.has('model.layers.0.self_attn.q_proj.bias'), false);
  assert.equal(shapes.size, 1 + 2 * 9 + 1 + 1);
  assert.deepEqual(c.eosTokenIds, [2, 3]);
});

test('gpt2 parameter shapes use Conv1D [in, out] layout', () => {
  const c = parseModelConfig({
    model_type: 'gpt2',
    vocab_size: 10,
    n_embd: 8,
    n_layer: 1,
    n_head: 2,
    n_positions: 16,
    n_inner: 20,
    tie_word_embeddings: false,
  });
  const shapes = new Map(parameterShapes(c).map((p) => [p.name, p.shape]));
  assert.deepEqual(shapes.get('transformer.h.0.attn.c_attn.weight'), [8, 24]);
  assert.deepEqual(shapes.get('transformer.h.0.mlp.c_fc.weight'), [8, 20]);
  assert.deepEqual(shapes.get('transformer.h.0.mlp.c_proj.weight'), [20, 8]);
  assert.deepEqual(shapes.get('transformer.wpe.weight'), [16, 8]);
  assert.deepEqual(shapes.get('lm_head.weight'), [10, 8]);
});

test('unknown model_type is rejected naming it and the supported list', () => {
  assert.throws(() => parseModelConfig({ model_type: 'falcon' }), /model_type.*"falcon".*gpt2, llama, qwen2, qwen3, mistral/);
  assert.throws(() => parseModelConfig({}), /model_type.*supported/);
  assert.throws(() => parseModelConfig([1]), /JSON object/);
});

test('inconsistent sizes are rejected naming the field', () => {
  configError(() => parseModelConfig({ ...llamaTiny, hidden_size: 30 }), /num_attention_heads: hidden_size \(30\) must be divisible/);
  configError(() => parseModelConfig({ ...llamaTiny, num_key_value_heads: 3 }), /num_key_value_heads: num_attention_heads \(4\)/);
  configError(() => parseModelConfig({ ...gpt2Hf, n_embd: 100 }), /n_head: n_embd \(100\)/);
  configError(() => parseModelConfig({ ...llamaTiny, vocab_size: -1 }), /vocab_size/);
  configError(() => parseModelConfig({ ...llamaTiny, hidden_size: undefined }), /hidden_size/);
  configError(() => parseModelConfig({ ...llamaTiny, hidden_act: 'gelu' }), /hidden_act: only silu/);
  configError(
    () => parseModelConfig({ ...llamaTiny, rope_scaling: { type: 'llama3', factor: 8 } }),
    /rope_scaling\.low_freq_factor: expected a positive number/,
  );
  configError(
    () => parseModelConfig({ ...qwen25Hf, layer_types: ['full_attention'] }),
    /layer_types: layer_types lists 1 layers but num_hidden_layers is 24/,
  );
});

test('explicit head_dim decouples head width from hidden size', () => {
  const c = parseModelConfig({ ...llamaTiny, hidden_size: 30, head_dim: 8, num_attention_heads: 4 });
  assert.equal(c.headDim, 8);
  const shapes = new Map(parameterShapes(c).map((p) => [p.name, p.shape]));
  assert.deepEqual(shapes.get('model.layers.0.self_attn.q_proj.weight'), [32, 30]);
  assert.deepEqual(shapes.get('model.layers.0.self_attn.o_proj.weight'), [30, 32]);
});

test('toHfConfig round-trips through parseModelConfig', () => {
  for (const src of [gpt2Hf, qwen25Hf, llamaTiny, { ...llamaTiny, attention_bias: true, mlp_bias: true }]) {
    const c: ModelConfig = parseModelConfig(src);
    assert.deepEqual(parseModelConfig(JSON.parse(JSON.stringify(toHfConfig(c)))), c);
  }
});
