/**
 * RoPE settings in both config forms (transformers 4's `rope_theta` / `rope_scaling`, 5's
 * `rope_parameters`), the frequencies of each type, the families added for pretrained checkpoints
 * (Qwen3's q/k norm, Mistral's and Qwen's sliding windows), and what is refused by name. The
 * numbers against transformers itself are held by hf-parity.test.ts on its fixtures; here the
 * frequencies are checked against values worked out by hand from the formulas.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../../activities/common/config.js';
import { parameterShapes, parseModelConfig, toHfConfig, type LlamaModelConfig } from '../../../activities/model/config.js';
import { parseRope, ropeFrequencies } from '../../../activities/model/rope.js';

const tiny = {
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 128,
};
const llama = (extra: Record<string, unknown> = {}) => parseModelConfig({ model_type: 'llama', ...tiny, ...extra }) as LlamaModelConfig;
const rejects = (fn: () => unknown, re: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof ConfigError && re.test(e.message), `expected ConfigError ${re}`);
const close = (a: number[], b: number[], tol = 1e-12) =>
  a.forEach((x, i) => assert.ok(Math.abs(x - b[i]!) <= tol * Math.max(1, Math.abs(b[i]!)), `${i}: ${x} vs ${b[i]}`));

const llama3 = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };

test('the transformers 4 and 5 forms of the same RoPE settings normalise to one config', () => {
  assert.deepEqual(llama({ rope_theta: 1e6 }).rope, { type: 'default', theta: 1e6 });
  assert.deepEqual(llama({ rope_parameters: { rope_type: 'default', rope_theta: 1e6 } }).rope, { type: 'default', theta: 1e6 });
  const v4 = llama({ rope_theta: 500000, rope_scaling: { ...llama3, rope_type: undefined, type: 'llama3' } }).rope;
  const v5 = llama({ rope_parameters: { ...llama3, rope_theta: 500000 } }).rope;
  assert.deepEqual(v4, v5);
  assert.deepEqual(v5, { type: 'llama3', theta: 500000, factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 });
});

test('precedence follows transformers 5: a non-null rope_scaling over rope_parameters, an inner rope_theta over the top-level one, 10000 when none', () => {
  assert.deepEqual(
    llama({ rope_scaling: { type: 'linear', factor: 2 }, rope_parameters: { rope_type: 'default', rope_theta: 7 }, rope_theta: 5 }).rope,
    {
      type: 'linear',
      theta: 5,
      factor: 2,
    },
  );
  assert.deepEqual(llama({ rope_scaling: null, rope_parameters: { rope_type: 'default', rope_theta: 7 }, rope_theta: 5 }).rope, {
    type: 'default',
    theta: 7,
  });
  assert.deepEqual(llama().rope, { type: 'default', theta: 10000 });
});

test('default frequencies are theta^(-2i/d); linear divides every one by the factor', () => {
  close(ropeFrequencies({ type: 'default', theta: 10000 }, 8).invFreq, [1, 0.1, 0.01, 0.001]);
  close(ropeFrequencies({ type: 'linear', theta: 10000, factor: 2 }, 8).invFreq, [0.5, 0.05, 0.005, 0.0005]);
});

test('llama3 keeps wavelengths under 16, divides those over 64 by 8 and blends the band between (original context 64)', () => {
  // wavelengths 2π/f: 6.28 (kept), 62.8 (in the band: smooth = (64/62.83 - 1)/3), 628 and 6283 (divided)
  const smooth = (64 / (2 * Math.PI * 10) - 1) / 3;
  const { invFreq, attentionFactor } = ropeFrequencies(parseRope({ rope_parameters: { ...llama3, rope_theta: 10000 } }, 128, 't'), 8);
  close(invFreq, [1, (1 - smooth) * (0.1 / 8) + smooth * 0.1, 0.01 / 8, 0.001 / 8]);
  assert.equal(attentionFactor, 1);
});

test('yarn ramps from extrapolation to interpolation between the beta bounds and scales cos/sin by 0.1·ln(factor) + 1', () => {
  const rope = parseRope(
    { rope_parameters: { rope_type: 'yarn', rope_theta: 10000, factor: 4, original_max_position_embeddings: 8 } },
    32,
    't',
  );
  const { invFreq, attentionFactor } = ropeFrequencies(rope, 16);
  assert.ok(Math.abs(attentionFactor - (0.1 * Math.log(4) + 1)) < 1e-12);
  // d = 16, base 1e4, L = 8: dim(r) = 16·ln(8 / (2πr)) / (2·ln 1e4); low = floor(dim(32)) clamped to 0, high = ceil(dim(1)) = 1
  const base = Array.from({ length: 8 }, (_, i) => 10000 ** (-(2 * i) / 16));
  const expected = base.map((f, i) => {
    const ramp = Math.min(1, Math.max(0, (i - 0) / (1 - 0)));
    return (f / 4) * ramp + f * (1 - ramp);
  });
  close(invFreq, expected);
  assert.equal(invFreq[0], 1); // dimension 0 extrapolates (unchanged), every later one interpolates
  // factor absent: max_position_embeddings / original
  assert.equal(
    (parseRope({ rope_scaling: { type: 'yarn', original_max_position_embeddings: 8 } }, 32, 't') as { factor: number }).factor,
    4,
  );
});

test('dynamic NTK, longrope and partial rotary embeddings are refused naming the field and the supported types', () => {
  rejects(
    () => llama({ rope_scaling: { type: 'dynamic', factor: 2 } }),
    /rope_scaling\.type: rope type "dynamic" \(dynamic NTK scaling\) is not supported.*supported: default, linear, llama3, yarn/,
  );
  rejects(
    () => llama({ rope_parameters: { rope_type: 'longrope', rope_theta: 1e4 } }),
    /rope_parameters\.rope_type: unsupported rope type "longrope"; supported: default, linear, llama3, yarn/,
  );
  rejects(() => llama({ partial_rotary_factor: 0.5 }), /partial_rotary_factor: partial rotary embeddings are not supported/);
  rejects(() => llama({ rope_parameters: { full_attention: { rope_type: 'default' } } }), /rope_parameters: per-layer-type RoPE settings/);
  rejects(
    () => parseModelConfig({ model_type: 'gemma3', ...tiny }),
    /model_type: unsupported model_type "gemma3"; supported: gpt2, llama, qwen2, qwen3, mistral/,
  );
});

test('qwen3 adds per-head q_norm/k_norm weights [headDim] and takes its biases from attention_bias', () => {
  const c = parseModelConfig({ model_type: 'qwen3', ...tiny, head_dim: 16 }) as LlamaModelConfig;
  assert.equal(c.qkNorm, true);
  assert.equal(c.qkvBias, false);
  const shapes = new Map(parameterShapes(c).map((p) => [p.name, p.shape]));
  assert.deepEqual(shapes.get('model.layers.1.self_attn.q_norm.weight'), [16]);
  assert.deepEqual(shapes.get('model.layers.1.self_attn.k_norm.weight'), [16]);
  assert.deepEqual(shapes.get('model.layers.0.self_attn.q_proj.weight'), [64, 32]);
  const biased = parseModelConfig({ model_type: 'qwen3', ...tiny, attention_bias: true }) as LlamaModelConfig;
  assert.deepEqual([biased.qkvBias, biased.oBias, biased.mlpBias], [true, true, false]);
});

test('sliding windows: mistral on every layer (4096 when the field is absent, none when null), qwen only with use_sliding_window on the layers at or after max_window_layers or as layer_types says', () => {
  const mistral = (extra: Record<string, unknown>) =>
    (parseModelConfig({ model_type: 'mistral', ...tiny, ...extra }) as LlamaModelConfig).slidingWindow;
  assert.deepEqual(mistral({}), { window: 4096, layers: [0, 1] });
  assert.deepEqual(mistral({ sliding_window: 6 }), { window: 6, layers: [0, 1] });
  assert.equal(mistral({ sliding_window: null }), null);
  const qwen = (extra: Record<string, unknown>) =>
    (parseModelConfig({ model_type: 'qwen2', ...tiny, ...extra }) as LlamaModelConfig).slidingWindow;
  assert.equal(qwen({ sliding_window: 32768, max_window_layers: 0 }), null); // use_sliding_window false: ignored, as in transformers
  assert.deepEqual(qwen({ use_sliding_window: true, sliding_window: 8, max_window_layers: 1 }), { window: 8, layers: [1] });
  assert.deepEqual(qwen({ use_sliding_window: true, sliding_window: 8, layer_types: ['sliding_attention', 'full_attention'] }), {
    window: 8,
    layers: [0],
  });
});

test('toHfConfig writes both RoPE forms and the window fields so every new family round-trips', () => {
  const sources = [
    { model_type: 'llama', ...tiny, tie_word_embeddings: true, rope_parameters: { ...llama3, rope_theta: 500000 } },
    {
      model_type: 'qwen3',
      ...tiny,
      head_dim: 16,
      rope_parameters: { rope_type: 'yarn', rope_theta: 1e6, factor: 4, original_max_position_embeddings: 32 },
    },
    { model_type: 'qwen2', ...tiny, use_sliding_window: true, sliding_window: 8, max_window_layers: 1 },
    { model_type: 'mistral', ...tiny, sliding_window: 6, head_dim: 16, rope_scaling: { type: 'linear', factor: 2 } },
  ];
  for (const src of sources) {
    const c = parseModelConfig(src);
    const hf = JSON.parse(JSON.stringify(toHfConfig(c))) as Record<string, unknown>;
    assert.deepEqual(parseModelConfig(hf), c, src.model_type);
    // each form alone gives the same settings
    const { rope_parameters: _v5, ...v4 } = hf;
    const { rope_scaling: _v4, rope_theta: _t, ...v5 } = hf;
    assert.deepEqual(parseModelConfig(v4), c, `${src.model_type} v4 form`);
    assert.deepEqual(parseModelConfig(v5), c, `${src.model_type} v5 form`);
  }
});
