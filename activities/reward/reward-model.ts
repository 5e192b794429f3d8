/**
 * `reward_model`: a learned reward — a sequence classifier with a scalar head (Ouyang et al.,
 * "Training language models to follow instructions with human feedback", 2022; Stiennon et al.,
 * "Learning to summarize from human feedback", 2020) run through onnxruntime by the model engine.
 *
 * The model is a Hugging Face directory: `config.json` whose `architectures` names a
 * `*ForSequenceClassification` class (GPT-2, LLaMA or Qwen2 backbone, one label), the weights with
 * `score.weight` [1, hidden] (safetensors), and `tokenizer.json`. Directories the project writes
 * itself (`saveHfModel` of a classifier config, e.g. after Bradley-Terry training with
 * `model/losses-reward.ts`) have exactly that layout. Each sample's text (`template`, by default the
 * prompt followed by the completion) is tokenized with the model's tokenizer, samples are scored in
 * batches of similar length (right padding; the head reads each row's last real token), and the
 * raw score is optionally normalised:
 *
 *     reward = scale · (raw + shift)        then σ(reward) when `sigmoid`
 *
 * (e.g. shift = −mean, scale = 1/std of the raw scores on reference data standardises them).
 *
 * The model is loaded on first use and kept for the life of the reward (`close()` releases it).
 * `config.json` is checked when the reward is created, so a wrong path or a model that is not a
 * classifier fails before any scoring; missing or misshapen tensors fail the first scoring call
 * with the loader's message naming the tensor.
 *
 * Imports `../model/` (the engine and HF directories lazily, so loading the registry does not
 * load onnxruntime; the config parser statically).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, z } from '../common/config.js';
import type { ModelEngine } from '../model/engine.js';
import type { TextTokenizer } from '../model/tokenizer.js';
import { parseModelConfig, type ModelConfig } from '../model/config.js';
import { defineReward, type RewardResult, type RewardSample } from './types.js';

export const RewardModelOptions = z.strictObject({
  /** The Hugging Face model directory (config.json, model.safetensors or shards, tokenizer.json). */
  path: z.string().min(1),
  /**
   * Load the directory as a sequence classifier even when `config.json`'s `architectures` does not
   * name a `*ForSequenceClassification` class (the weights must still hold `score.weight`).
   */
  assumeClassifier: z.boolean().default(false),
  /** The text scored: `{prompt}` and `{completion}` are replaced by the sample's (must hold `{completion}`). */
  template: z
    .string()
    .refine((t) => t.includes('{completion}'), { message: 'template must contain {completion}' })
    .default('{prompt}{completion}'),
  /** Add the tokenizer's special tokens (e.g. BOS) when encoding, as `transformers` does by default. */
  addSpecialTokens: z.boolean().default(true),
  /** Append the tokenizer's EOS id after the text (for reward models trained on EOS-terminated sequences). */
  appendEos: z.boolean().default(false),
  /** Longest token sequence scored; default (and at most) the model's maximum positions. */
  maxTokens: z.number().int().positive().optional(),
  /**
   * Longer sequences: `left` keeps their last `maxTokens` tokens (the completion's end, which the
   * head reads) and reports component `truncated` 1; `error` fails the batch naming the sample.
   */
  truncation: z.enum(['left', 'error']).default('left'),
  /** Sequences per onnxruntime run (samples are grouped by length to limit padding). */
  batchSize: z.number().int().positive().default(16),
  /** Multiplies the shifted raw score. */
  scale: z.number().finite().default(1),
  /** Added to the raw score before scaling. */
  shift: z.number().finite().default(0),
  /** Squash the normalised score into (0, 1) with the logistic function. */
  sigmoid: z.boolean().default(false),
  /** onnxruntime intra-op threads (0: one per core; 1 suits machines shared with other work). */
  threads: z.number().int().min(0).default(1),
  /** onnxruntime execution providers, as `ModelEngine` takes them (e.g. ['cuda', 'cpu']). */
  executionProviders: z.array(z.string()).default(['cpu']),
});
export type RewardModelOptions = z.output<typeof RewardModelOptions>;

const CLASSIFIER = /ForSequenceClassification$/;

/**
 * Checks `config.json` of the directory when the reward is created: it exists, is JSON, is a
 * supported model config, and names a sequence classifier (or `assumeClassifier` is set). Throws ConfigError naming the option or
 * the config field.
 */
function checkConfigJson(o: RewardModelOptions): void {
  const file = path.join(o.path, 'config.json');
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : `cannot be read as JSON (${(e as Error).message})`;
    throw new ConfigError('options of reward reward_model', [
      { path: 'path', message: `${file} ${why}; path must be a Hugging Face model directory` },
    ]);
  }
  parseModelConfig(raw, file); // names an unsupported model_type or a bad field
  const archs = (raw as { architectures?: unknown }).architectures;
  const names = Array.isArray(archs) ? archs.filter((a): a is string => typeof a === 'string') : [];
  if (!o.assumeClassifier && !names.some((a) => CLASSIFIER.test(a))) {
    throw new ConfigError(file, [
      {
        path: 'architectures',
        message:
          `${JSON.stringify(archs ?? null)} does not name a sequence classifier (*ForSequenceClassification, e.g. LlamaForSequenceClassification); ` +
          'a reward model needs a score head (score.weight); set the reward option assumeClassifier: true if the weights have one',
      },
    ]);
  }
}

interface Loaded {
  engine: ModelEngine;
  tokenizer: TextTokenizer;
  config: ModelConfig;
}

async function loadModel(o: RewardModelOptions): Promise<Loaded> {
  const [{ loadHfModel }, { ModelEngine }] = await Promise.all([import('../model/hf.js'), import('../model/engine.js')]);
  const model = await loadHfModel(o.path, { requireTokenizer: true, ...(o.assumeClassifier ? { classifier: true } : {}) });
  if (!model.config.classifier) throw new Error(`${o.path}: not a sequence classifier (config.json architectures)`);
  const engine = new ModelEngine(model.config, { threads: o.threads, executionProviders: o.executionProviders });
  const weights = new Map([...model.tensors].map(([name, t]) => [name, { shape: t.shape, data: t.data as Float32Array }]));
  engine.setWeights(weights, 'reward-model');
  return { engine, tokenizer: model.tokenizer!, config: model.config };
}

/** Token ids of one sample (truncated from the left when allowed); throws naming the sample. */
function encode(s: RewardSample, o: RewardModelOptions, m: Loaded, maxTokens: number): { ids: number[]; truncated: boolean } {
  const text = o.template.replaceAll('{prompt}', s.prompt).replaceAll('{completion}', s.completion);
  let ids: number[];
  try {
    ids = m.tokenizer.encode(text, { addSpecialTokens: o.addSpecialTokens });
  } catch (e) {
    throw new Error(`reward_model: sample ${s.promptId}/${s.sampleId} cannot be tokenized: ${(e as Error).message}`);
  }
  if (o.appendEos) {
    if (m.tokenizer.eosId === null) throw new Error('reward_model: appendEos is set but the tokenizer has no EOS token');
    ids.push(m.tokenizer.eosId);
  }
  if (ids.length === 0) throw new Error(`reward_model: sample ${s.promptId}/${s.sampleId} has no tokens to score`);
  if (ids.length <= maxTokens) return { ids, truncated: false };
  if (o.truncation === 'error') {
    throw new Error(
      `reward_model: sample ${s.promptId}/${s.sampleId} has ${ids.length} tokens, more than maxTokens ${maxTokens} (set truncation: "left" to keep the last ${maxTokens})`,
    );
  }
  return { ids: ids.slice(ids.length - maxTokens), truncated: true };
}

function normalise(raw: number, o: RewardModelOptions): number {
  const x = o.scale * (raw + o.shift);
  return o.sigmoid ? 1 / (1 + Math.exp(-x)) : x;
}

export const rewardModel = defineReward({
  name: 'reward_model',
  description:
    'a learned reward: a sequence-classifier reward model (HF *ForSequenceClassification directory) scored in batches through onnxruntime',
  source: 'RLHF reward models (Stiennon et al. 2020; Ouyang et al. 2022), Bradley-Terry preferences',
  optionsSchema: RewardModelOptions,
  create: (o) => {
    checkConfigJson(o);
    let loading: Promise<Loaded> | null = null;
    const load = () => {
      loading ??= loadModel(o);
      loading.catch(() => (loading = null)); // a failed load is retried by the next call
      return loading;
    };
    return {
      async scoreBatch(samples, ctx): Promise<RewardResult[]> {
        const m = await load();
        const maxTokens = Math.min(o.maxTokens ?? m.config.maxPositions, m.config.maxPositions);
        const encoded = samples.map((s) => encode(s, o, m, maxTokens));
        // group by length so each onnxruntime batch pads little
        const order = encoded.map((_, i) => i).sort((a, b) => encoded[a]!.ids.length - encoded[b]!.ids.length);
        const raw = new Array<number>(samples.length);
        const pad = m.tokenizer.padId ?? 0;
        for (let start = 0; start < order.length; start += o.batchSize) {
          if (ctx.signal.aborted) throw new Error(`reward_model: aborted (${String(ctx.signal.reason ?? 'cancelled')})`);
          const idx = order.slice(start, start + o.batchSize);
          const len = Math.max(...idx.map((i) => encoded[i]!.ids.length));
          const ids = idx.map((i) => [...encoded[i]!.ids, ...Array<number>(len - encoded[i]!.ids.length).fill(pad)]);
          const attentionMask = idx.map((i) => [...encoded[i]!.ids.map(() => 1), ...Array<number>(len - encoded[i]!.ids.length).fill(0)]);
          const r = await m.engine.reward({ ids, attentionMask });
          idx.forEach((i, k) => (raw[i] = r[k]!));
        }
        return samples.map((_, i) => ({
          reward: normalise(raw[i]!, o),
          components: { raw_score: raw[i]!, truncated: encoded[i]!.truncated ? 1 : 0 },
        }));
      },
      async close() {
        const l = loading;
        loading = null;
        if (l) await (await l.catch(() => null))?.engine.close();
      },
    };
  },
});
