/**
 * Model configuration: the Hugging Face `config.json` of a supported architecture, validated and
 * normalised into one `ModelConfig` that the graph builders, the weight loader and the exporter share.
 *
 * Supported `model_type`s:
 * - `gpt2`  — GPT-2 (Radford et al., "Language Models are Unsupervised Multitask Learners", 2019):
 *   learned absolute positions, pre-LayerNorm blocks, GELU MLP, Conv1D weights stored [in, out].
 * - `llama` — LLaMA (Touvron et al., "LLaMA: Open and Efficient Foundation Language Models", 2023):
 *   RMSNorm, rotary position embeddings (Su et al., "RoFormer", 2021), SwiGLU MLP (Shazeer, "GLU
 *   Variants Improve Transformer", 2020), grouped-query attention (Ainslie et al., "GQA", 2023).
 * - `qwen2` — Qwen2 / Qwen2.5 (Yang et al., "Qwen2 Technical Report", 2024): the llama architecture
 *   with a bias on the q/k/v projections; normalised to `arch: 'llama'` with `qkvBias: true`.
 * - `qwen3` — Qwen3 dense (Yang et al., "Qwen3 Technical Report", 2025): llama with an RMSNorm over
 *   each query and key head before the rotation (`qkNorm`), biases as `attention_bias` says.
 * - `mistral` — Mistral (Jiang et al., "Mistral 7B", 2023): llama with sliding-window attention
 *   (`sliding_window`, every layer; HF's default 4096 when the field is absent).
 * Llama 3.x and SmolLM2 are `llama` configs (tied embeddings for the small ones, llama3 RoPE).
 *
 * RoPE comes in both config forms and four types (`rope.ts`). Sliding windows (Mistral; Qwen2/3
 * with `use_sliding_window`, on the layers `layer_types` or `max_window_layers` say) are
 * implemented: a query sees the `sliding_window` most recent positions, itself included.
 *
 * Unknown extra fields are tolerated (HF configs carry many: `torch_dtype`, `transformers_version`,
 * `architectures`, ...); fields that would change the computation in a way this project does not
 * implement (dynamic or partial RoPE, an activation other than SiLU) are rejected rather than
 * silently ignored.
 *
 * Sequence classifiers (reward models): a `config.json` whose `architectures` names a
 * `*ForSequenceClassification` class (`GPT2ForSequenceClassification`,
 * `LlamaForSequenceClassification`, `Qwen2ForSequenceClassification`) with one label normalises to
 * `classifier: true`: the same backbone with a scalar score head `score.weight` [1, hidden] in place
 * of the LM head (see `graphs/reward.ts`).
 *
 * Parameter names and shapes (`parameterShapes`) follow the HF checkpoints exactly, so a
 * `model.safetensors` from the Hub loads by name and an exported directory loads back into
 * `transformers`.
 */
import { ConfigError, parseConfig, z } from '../common/config.js';
import { parseRope, ropeToHf, type RopeConfig } from './rope.js';
import { adapterShapes, isAdapterName, LORA_MODULE_PATHS, normaliseLora, type LoraConfig, type LoraInput } from './lora.js';

/** The model types this project can build, as HF names them in `config.json`. */
export const SUPPORTED_MODEL_TYPES = ['gpt2', 'llama', 'qwen2', 'qwen3', 'mistral'] as const;
export type SupportedModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

/** Fields both normalised architectures share. Sizes are element counts. */
interface ModelConfigBase {
  /** The HF `model_type` this config came from (written back on export). */
  modelType: SupportedModelType;
  /** Vocabulary size: rows of the embedding and of the LM head. */
  vocabSize: number;
  /** Model (residual stream) width. */
  hidden: number;
  /** Number of transformer blocks. */
  layers: number;
  /** Number of query heads. */
  heads: number;
  /** Number of key/value heads (= heads without grouped-query attention). */
  kvHeads: number;
  /** Width of one attention head. */
  headDim: number;
  /** Inner width of the MLP. */
  intermediate: number;
  /** Longest sequence (prompt + completion) the model supports. */
  maxPositions: number;
  /** Epsilon of every LayerNorm / RMSNorm. */
  normEps: number;
  /** LM head shares the token-embedding matrix (then `lm_head.weight` is absent from checkpoints). */
  tieWordEmbeddings: boolean;
  /** Beginning-of-sequence token id, when the config names one. */
  bosTokenId: number | null;
  /** End-of-sequence token ids (HF allows one or a list); generation stops on any of them. */
  eosTokenIds: number[];
  /** Padding token id, when the config names one. */
  padTokenId: number | null;
  /**
   * A sequence classifier with one label (HF `*ForSequenceClassification`, `num_labels` 1): the
   * reward model of RLHF (Ouyang et al., "Training language models to follow instructions with
   * human feedback", 2022). Its head is `score.weight` [1, hidden] applied to the final hidden
   * state of each sequence's last real token; it has no LM head. Absent (not false) for causal LMs.
   */
  classifier?: boolean;
  /**
   * LoRA adapters on the listed linear modules of every block (`lora.ts`; llama family only): their
   * tensors are parameters too (listed after the base ones), the only ones that train. Absent
   * without adapters. Not part of config.json (an adapter has its own adapter_config.json).
   */
  lora?: LoraConfig;
}

export interface Gpt2ModelConfig extends ModelConfigBase {
  arch: 'gpt2';
  /**
   * MLP activation. `gelu_tanh` is HF's `gelu_new` / `gelu_pytorch_tanh` (the tanh approximation of
   * Hendrycks & Gimpel, "GELUs", 2016, used by the original GPT-2); `gelu` is the exact erf form.
   */
  activation: 'gelu_tanh' | 'gelu' | 'relu';
}

export interface LlamaModelConfig extends ModelConfigBase {
  arch: 'llama';
  activation: 'silu';
  /** Rotary embeddings: base θ (10000 for LLaMA, 1e6 for Qwen2.5) and the scaling type (`rope.ts`). */
  rope: RopeConfig;
  /** q_proj / k_proj / v_proj carry a bias (Qwen2 always; LLaMA and Qwen3 when `attention_bias`). */
  qkvBias: boolean;
  /** o_proj carries a bias (LLaMA and Qwen3 with `attention_bias`; never Qwen2). */
  oBias: boolean;
  /** gate/up/down projections carry a bias (LLaMA `mlp_bias`). */
  mlpBias: boolean;
  /** RMSNorm (`q_norm`, `k_norm`, weight [headDim]) over each query and key head before RoPE (Qwen3). */
  qkNorm: boolean;
  /**
   * Sliding-window attention: on the listed layers a query at position i sees keys at positions
   * j with i - window < j <= i (HF's `kv_idx > q_idx - sliding_window`). null: full causal attention.
   */
  slidingWindow: { window: number; layers: number[] } | null;
}

/** One normalised model configuration; `arch` discriminates. */
export type ModelConfig = Gpt2ModelConfig | LlamaModelConfig;

const posInt = z.number().int().positive();
const tokenId = z.number().int().nonnegative();
const eosField = z.union([tokenId, z.array(tokenId)]).nullish();

/** HF GPT2Config fields we read (defaults are GPT2Config's). */
const gpt2Schema = z
  .object({
    model_type: z.literal('gpt2'),
    vocab_size: posInt.default(50257),
    n_embd: posInt.default(768),
    n_layer: posInt.default(12),
    n_head: posInt.default(12),
    n_positions: posInt.default(1024),
    /** MLP width; null means 4 × n_embd. */
    n_inner: posInt.nullish(),
    layer_norm_epsilon: z.number().positive().default(1e-5),
    activation_function: z.enum(['gelu_new', 'gelu_pytorch_tanh', 'gelu', 'relu']).default('gelu_new'),
    tie_word_embeddings: z.boolean().default(true),
    bos_token_id: tokenId.nullish(),
    eos_token_id: eosField,
    pad_token_id: tokenId.nullish(),
  })
  .superRefine((c, ctx) => {
    if (c.n_embd % c.n_head !== 0) {
      ctx.addIssue({ code: 'custom', path: ['n_head'], message: `n_embd (${c.n_embd}) must be divisible by n_head (${c.n_head})` });
    }
  });

/** HF LlamaConfig / Qwen2Config / Qwen3Config / MistralConfig fields we read (defaults are LlamaConfig's unless noted). */
const llamaLikeSchema = z
  .object({
    model_type: z.enum(['llama', 'qwen2', 'qwen3', 'mistral']),
    vocab_size: posInt,
    hidden_size: posInt,
    num_hidden_layers: posInt,
    num_attention_heads: posInt,
    /** Absent means no grouped-query attention (= num_attention_heads). */
    num_key_value_heads: posInt.nullish(),
    intermediate_size: posInt,
    rms_norm_eps: z.number().positive().default(1e-6),
    max_position_embeddings: posInt.default(2048),
    tie_word_embeddings: z.boolean().default(false),
    /** LLaMA, Qwen3: bias on q/k/v/o. Qwen2 ignores it (its q/k/v always have a bias, o never). */
    attention_bias: z.boolean().default(false),
    mlp_bias: z.boolean().default(false),
    /** Absent means hidden_size / num_attention_heads. */
    head_dim: posInt.nullish(),
    hidden_act: z.literal('silu', { error: 'only silu (SwiGLU) is supported for llama, qwen2, qwen3 and mistral' }).default('silu'),
    /** Mistral: every layer (null: none; absent: HF's default 4096). Qwen2/3: only with use_sliding_window. */
    sliding_window: posInt.nullish(),
    use_sliding_window: z.boolean().default(false),
    /** Qwen2/3: layers from this index on slide, unless layer_types lists them. */
    max_window_layers: z.number().int().nonnegative().default(28),
    layer_types: z.array(z.enum(['full_attention', 'sliding_attention'])).nullish(),
    bos_token_id: tokenId.nullish(),
    eos_token_id: eosField,
    pad_token_id: tokenId.nullish(),
  })
  .superRefine((c, ctx) => {
    if (c.head_dim == null && c.hidden_size % c.num_attention_heads !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['num_attention_heads'],
        message: `hidden_size (${c.hidden_size}) must be divisible by num_attention_heads (${c.num_attention_heads}) unless head_dim is given`,
      });
    }
    const kv = c.num_key_value_heads ?? c.num_attention_heads;
    if (c.num_attention_heads % kv !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['num_key_value_heads'],
        message: `num_attention_heads (${c.num_attention_heads}) must be divisible by num_key_value_heads (${kv})`,
      });
    }
    if (c.layer_types && c.layer_types.length !== c.num_hidden_layers) {
      ctx.addIssue({
        code: 'custom',
        path: ['layer_types'],
        message: `layer_types lists ${c.layer_types.length} layers but num_hidden_layers is ${c.num_hidden_layers}`,
      });
    }
    const headDim = c.head_dim ?? Math.floor(c.hidden_size / c.num_attention_heads);
    if (headDim % 2 !== 0) {
      ctx.addIssue({
        code: 'custom',
        path: [c.head_dim == null ? 'hidden_size' : 'head_dim'],
        message: `head dimension (${headDim}) must be even for rotary embeddings`,
      });
    }
  });

const CLASSIFIER_ARCH = /ForSequenceClassification$/;

/**
 * Whether an HF config describes a sequence classifier (`architectures` names a
 * `*ForSequenceClassification` class), and its label count when the config states one
 * (`num_labels`, or the size of `id2label`; HF's default without either is 2).
 */
export function classifierOf(input: Record<string, unknown>): { classifier: boolean; labels: number | null } {
  const archs = Array.isArray(input.architectures) ? input.architectures : [];
  const classifier = archs.some((a) => typeof a === 'string' && CLASSIFIER_ARCH.test(a));
  let labels: number | null = null;
  if (typeof input.num_labels === 'number') labels = input.num_labels;
  else if (input.id2label && typeof input.id2label === 'object') labels = Object.keys(input.id2label).length;
  return { classifier, labels };
}

/** The HF class name of a normalised config (what `architectures` lists on export). */
const FAMILY: Record<SupportedModelType, string> = { gpt2: 'GPT2', llama: 'Llama', qwen2: 'Qwen2', qwen3: 'Qwen3', mistral: 'Mistral' };

export function hfArchitecture(config: ModelConfig): string {
  const family = FAMILY[config.modelType];
  if (config.classifier) return `${family}ForSequenceClassification`;
  return config.modelType === 'gpt2' ? 'GPT2LMHeadModel' : `${family}ForCausalLM`;
}

function eosList(eos: number | number[] | null | undefined): number[] {
  if (eos == null) return [];
  return Array.isArray(eos) ? [...eos] : [eos];
}

/**
 * Validates a Hugging Face `config.json` (already parsed from JSON) and normalises it.
 * `what` names the source in error messages (e.g. the file path).
 * Throws ConfigError naming the field: an unknown `model_type` (listing the supported ones), a
 * missing or mistyped field, or inconsistent sizes.
 */
export function parseModelConfig(input: unknown, what = 'model config.json'): ModelConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ConfigError(what, [{ path: '', message: 'expected a JSON object' }]);
  }
  const modelType = (input as Record<string, unknown>).model_type;
  if (!(SUPPORTED_MODEL_TYPES as readonly unknown[]).includes(modelType)) {
    throw new ConfigError(what, [
      {
        path: 'model_type',
        message: `unsupported model_type ${JSON.stringify(modelType)}; supported: ${SUPPORTED_MODEL_TYPES.join(', ')}`,
      },
    ]);
  }
  const cls = classifierOf(input as Record<string, unknown>);
  if (cls.classifier && cls.labels !== null && cls.labels !== 1) {
    throw new ConfigError(what, [
      {
        path: typeof (input as Record<string, unknown>).num_labels === 'number' ? 'num_labels' : 'id2label',
        message: `a sequence classifier used as a reward model must have exactly 1 label (a scalar score), this config has ${cls.labels}`,
      },
    ]);
  }
  const head = cls.classifier ? { classifier: true } : {};
  if (modelType === 'gpt2') {
    const c = parseConfig(gpt2Schema, input, what);
    const activation = c.activation_function === 'gelu' ? 'gelu' : c.activation_function === 'relu' ? 'relu' : 'gelu_tanh';
    return {
      arch: 'gpt2',
      modelType: 'gpt2',
      vocabSize: c.vocab_size,
      hidden: c.n_embd,
      layers: c.n_layer,
      heads: c.n_head,
      kvHeads: c.n_head,
      headDim: c.n_embd / c.n_head,
      intermediate: c.n_inner ?? 4 * c.n_embd,
      maxPositions: c.n_positions,
      normEps: c.layer_norm_epsilon,
      tieWordEmbeddings: c.tie_word_embeddings,
      bosTokenId: c.bos_token_id ?? null,
      eosTokenIds: eosList(c.eos_token_id),
      padTokenId: c.pad_token_id ?? null,
      activation,
      ...head,
    };
  }
  const c = parseConfig(llamaLikeSchema, input, what);
  const raw = input as Record<string, unknown>;
  const qwen2 = c.model_type === 'qwen2';
  const biasAll = c.model_type !== 'mistral' && !qwen2 && c.attention_bias; // llama, qwen3: q/k/v/o together
  return {
    arch: 'llama',
    modelType: c.model_type,
    vocabSize: c.vocab_size,
    hidden: c.hidden_size,
    layers: c.num_hidden_layers,
    heads: c.num_attention_heads,
    kvHeads: c.num_key_value_heads ?? c.num_attention_heads,
    headDim: c.head_dim ?? c.hidden_size / c.num_attention_heads,
    intermediate: c.intermediate_size,
    maxPositions: c.max_position_embeddings,
    normEps: c.rms_norm_eps,
    tieWordEmbeddings: c.tie_word_embeddings,
    bosTokenId: c.bos_token_id ?? null,
    eosTokenIds: eosList(c.eos_token_id),
    padTokenId: c.pad_token_id ?? null,
    activation: 'silu',
    rope: parseRope(raw, c.max_position_embeddings, what),
    qkvBias: qwen2 || biasAll,
    oBias: biasAll,
    mlpBias: c.model_type === 'llama' && c.mlp_bias,
    qkNorm: c.model_type === 'qwen3',
    slidingWindow: slidingWindowOf(c, 'sliding_window' in raw),
    ...head,
  };
}

/** Which layers slide over how many positions, as transformers decides it for each family. */
function slidingWindowOf(c: z.output<typeof llamaLikeSchema>, windowGiven: boolean): LlamaModelConfig['slidingWindow'] {
  const all = Array.from({ length: c.num_hidden_layers }, (_, i) => i);
  if (c.model_type === 'mistral') {
    const window = windowGiven ? c.sliding_window : 4096;
    return window ? { window, layers: all } : null;
  }
  if (c.model_type === 'llama' || !c.use_sliding_window || !c.sliding_window) return null;
  const layers = c.layer_types ? all.filter((i) => c.layer_types![i] === 'sliding_attention') : all.filter((i) => i >= c.max_window_layers);
  return layers.length > 0 ? { window: c.sliding_window, layers } : null;
}

/**
 * The HF `config.json` object for a normalised config (what `transformers` needs to load the
 * exported directory). `extra` fields (e.g. the original file's other keys) are kept unless they
 * conflict with the normalised values, which win.
 */
export function toHfConfig(config: ModelConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const eos = config.eosTokenIds.length === 0 ? null : config.eosTokenIds.length === 1 ? config.eosTokenIds[0] : config.eosTokenIds;
  const ids = {
    bos_token_id: config.bosTokenId,
    eos_token_id: eos,
    ...(config.padTokenId === null ? {} : { pad_token_id: config.padTokenId }),
    // HF stores the label count as id2label / label2id (num_labels is derived from them)
    ...(config.classifier ? { id2label: { 0: 'LABEL_0' }, label2id: { LABEL_0: 0 } } : {}),
  };
  if (config.arch === 'gpt2') {
    return {
      ...extra,
      architectures: [hfArchitecture(config)],
      model_type: 'gpt2',
      vocab_size: config.vocabSize,
      n_embd: config.hidden,
      n_layer: config.layers,
      n_head: config.heads,
      n_positions: config.maxPositions,
      n_ctx: config.maxPositions,
      n_inner: config.intermediate,
      layer_norm_epsilon: config.normEps,
      activation_function: config.activation === 'gelu_tanh' ? 'gelu_new' : config.activation,
      tie_word_embeddings: config.tieWordEmbeddings,
      ...ids,
    };
  }
  const type = config.modelType;
  const qwen2 = type === 'qwen2';
  const layout = (ok: boolean, path: string, message: string) => {
    if (!ok) throw new ConfigError('model config', [{ path, message }]);
  };
  layout(
    !qwen2 || (config.qkvBias && !config.oBias && !config.mlpBias),
    'modelType',
    'qwen2 has q/k/v bias and no o/mlp bias; use modelType llama for other bias layouts',
  );
  layout(
    qwen2 || config.qkvBias === config.oBias,
    'qkvBias',
    `${type} attention_bias puts a bias on q/k/v/o together; use modelType qwen2 for q/k/v-only bias`,
  );
  layout(type === 'llama' || !config.mlpBias, 'mlpBias', `${type} has no MLP bias; use modelType llama`);
  layout(config.qkNorm === (type === 'qwen3'), 'qkNorm', 'q/k RMSNorm is the qwen3 architecture (and only it)');
  const sw = config.slidingWindow;
  const allLayers = sw !== null && sw.layers.length === config.layers;
  layout(sw === null || type !== 'llama', 'slidingWindow', 'llama has no sliding-window attention; use modelType mistral or qwen2/qwen3');
  layout(sw === null || type !== 'mistral' || allLayers, 'slidingWindow', 'mistral slides on every layer');
  const window =
    type === 'mistral'
      ? { sliding_window: sw?.window ?? null }
      : type === 'llama'
        ? {}
        : {
            use_sliding_window: sw !== null,
            sliding_window: sw?.window ?? null,
            max_window_layers: config.layers,
            layer_types: Array.from({ length: config.layers }, (_, i) => (sw?.layers.includes(i) ? 'sliding_attention' : 'full_attention')),
          };
  return {
    ...extra,
    architectures: [hfArchitecture(config)],
    model_type: config.modelType,
    vocab_size: config.vocabSize,
    hidden_size: config.hidden,
    num_hidden_layers: config.layers,
    num_attention_heads: config.heads,
    num_key_value_heads: config.kvHeads,
    head_dim: config.headDim,
    intermediate_size: config.intermediate,
    max_position_embeddings: config.maxPositions,
    rms_norm_eps: config.normEps,
    ...ropeToHf(config.rope),
    hidden_act: 'silu',
    tie_word_embeddings: config.tieWordEmbeddings,
    ...(type === 'llama' || type === 'qwen3' ? { attention_bias: config.oBias } : {}),
    ...(type === 'llama' ? { mlp_bias: config.mlpBias } : {}),
    ...window,
    ...ids,
  };
}

/** One expected parameter: its HF name and shape (all parameters are float32 in memory). */
export interface ParameterSpec {
  name: string;
  shape: number[];
}

/**
 * The parameters of a model, in HF names and shapes, in a fixed order (embeddings, blocks in order,
 * final norm, head). GPT-2 linear weights are Conv1D [in, out]; llama linear weights are nn.Linear
 * [out, in]. `lm_head.weight` is listed only when the embeddings are not tied; a classifier lists
 * `score.weight` [1, hidden] (nn.Linear, no bias) instead of any LM head.
 */
export function parameterShapes(config: ModelConfig): ParameterSpec[] {
  const out: ParameterSpec[] = [];
  const add = (name: string, ...shape: number[]) => out.push({ name, shape });
  const { vocabSize: V, hidden: H, intermediate: I } = config;
  if (config.arch === 'gpt2') {
    add('transformer.wte.weight', V, H);
    add('transformer.wpe.weight', config.maxPositions, H);
    for (let i = 0; i < config.layers; i++) {
      const p = `transformer.h.${i}`;
      add(`${p}.ln_1.weight`, H);
      add(`${p}.ln_1.bias`, H);
      add(`${p}.attn.c_attn.weight`, H, 3 * H);
      add(`${p}.attn.c_attn.bias`, 3 * H);
      add(`${p}.attn.c_proj.weight`, H, H);
      add(`${p}.attn.c_proj.bias`, H);
      add(`${p}.ln_2.weight`, H);
      add(`${p}.ln_2.bias`, H);
      add(`${p}.mlp.c_fc.weight`, H, I);
      add(`${p}.mlp.c_fc.bias`, I);
      add(`${p}.mlp.c_proj.weight`, I, H);
      add(`${p}.mlp.c_proj.bias`, H);
    }
    add('transformer.ln_f.weight', H);
    add('transformer.ln_f.bias', H);
  } else {
    const q = config.heads * config.headDim;
    const kv = config.kvHeads * config.headDim;
    add('model.embed_tokens.weight', V, H);
    for (let i = 0; i < config.layers; i++) {
      const p = `model.layers.${i}`;
      add(`${p}.input_layernorm.weight`, H);
      add(`${p}.self_attn.q_proj.weight`, q, H);
      if (config.qkvBias) add(`${p}.self_attn.q_proj.bias`, q);
      add(`${p}.self_attn.k_proj.weight`, kv, H);
      if (config.qkvBias) add(`${p}.self_attn.k_proj.bias`, kv);
      add(`${p}.self_attn.v_proj.weight`, kv, H);
      if (config.qkvBias) add(`${p}.self_attn.v_proj.bias`, kv);
      add(`${p}.self_attn.o_proj.weight`, H, q);
      if (config.oBias) add(`${p}.self_attn.o_proj.bias`, H);
      if (config.qkNorm) {
        add(`${p}.self_attn.q_norm.weight`, config.headDim);
        add(`${p}.self_attn.k_norm.weight`, config.headDim);
      }
      add(`${p}.post_attention_layernorm.weight`, H);
      add(`${p}.mlp.gate_proj.weight`, I, H);
      if (config.mlpBias) add(`${p}.mlp.gate_proj.bias`, I);
      add(`${p}.mlp.up_proj.weight`, I, H);
      if (config.mlpBias) add(`${p}.mlp.up_proj.bias`, I);
      add(`${p}.mlp.down_proj.weight`, H, I);
      if (config.mlpBias) add(`${p}.mlp.down_proj.bias`, H);
    }
    add('model.norm.weight', H);
  }
  if (config.classifier) add('score.weight', 1, H);
  else if (!config.tieWordEmbeddings) add('lm_head.weight', V, H);
  if (config.lora) {
    // the adapters after every base parameter, block by block in LORA_TARGETS order (normaliseLora sorts): [out, in] of each target
    const byName = new Map(out.map((s) => [s.name, s.shape]));
    for (let i = 0; i < config.layers; i++) {
      for (const target of config.lora.targets) {
        const module = `model.layers.${i}.${LORA_MODULE_PATHS[target]}`;
        const [o, inp] = byName.get(`${module}.weight`)!;
        out.push(...adapterShapes(module, o!, inp!, config.lora.rank));
      }
    }
  }
  return out;
}

/**
 * The config with LoRA adapters (or without, for null): `withLora(parseModelConfig(hf), { rank: 16 })`.
 * Throws ConfigError naming `lora` for an architecture it does not support.
 */
export function withLora(config: ModelConfig, lora: LoraInput | LoraConfig | null): ModelConfig {
  const { lora: _old, ...rest } = config;
  if (lora === null) return rest;
  if (config.arch !== 'llama') {
    throw new ConfigError('model config', [
      { path: 'lora', message: `LoRA is supported for the llama family (llama, qwen2, qwen3, mistral), not ${config.modelType}` },
    ]);
  }
  if (config.classifier)
    throw new ConfigError('model config', [{ path: 'lora', message: 'LoRA on a sequence classifier is not supported' }]);
  return { ...rest, lora: normaliseLora(lora) };
}

/** The parameters that train: the adapters of a LoRA model, else all of them. */
export function trainableNames(config: ModelConfig): Set<string> {
  const names = parameterShapes(config).map((s) => s.name);
  return new Set(config.lora ? names.filter(isAdapterName) : names);
}

/** Name of the token-embedding matrix (the LM head when embeddings are tied). */
export function embeddingName(config: ModelConfig): string {
  return config.arch === 'gpt2' ? 'transformer.wte.weight' : 'model.embed_tokens.weight';
}

/** Total number of parameters (elements) of a model. */
export function parameterCount(config: ModelConfig): number {
  return parameterShapes(config).reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
}
