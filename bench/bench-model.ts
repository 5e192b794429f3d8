/**
 * The benchmark model of `engine.ts` (and of the benchmarks measured against it), as a Hugging
 * Face config — what the PyTorch companion builds too: a 30.9M-parameter llama (vocab 8192, hidden
 * 512, 8 layers, 8 heads with 2 KV heads, SwiGLU 1408, untied head); `quick`, a 2-layer one of the
 * same family for smoke runs.
 */
export const BENCH_MODEL_HF: Readonly<Record<string, unknown>> = {
  model_type: 'llama',
  vocab_size: 8192,
  hidden_size: 512,
  num_hidden_layers: 8,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  intermediate_size: 1408,
  max_position_embeddings: 1024,
  tie_word_embeddings: false,
};

export const QUICK_MODEL_HF: Readonly<Record<string, unknown>> = {
  model_type: 'llama',
  vocab_size: 512,
  hidden_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  intermediate_size: 176,
};
