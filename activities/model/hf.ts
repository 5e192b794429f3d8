/**
 * Hugging Face model directories: load `config.json` + weights (`model.safetensors` or shards with
 * `model.safetensors.index.json`) + `tokenizer.json` (+ `tokenizer_config.json`,
 * `generation_config.json`) into `{config, tensors, tokenizer}`, and write them back in the layout
 * `transformers.AutoModelForCausalLM.from_pretrained` reads.
 *
 * Weights are checked against `parameterShapes(config)`: every problem (missing, unexpected, wrongly
 * shaped or wrongly typed tensor) is reported by name in one error. Known non-parameter buffers of
 * older checkpoints are dropped (GPT-2's `attn.bias` / `attn.masked_bias` causal masks, llama's
 * `rotary_emb.inv_freq`), GPT-2 checkpoints saved from the bare `GPT2Model` (names without the
 * `transformer.` prefix) are renamed, and with tied embeddings an `lm_head.weight` present in the file
 * is dropped (the head is the embedding matrix). A sequence classifier (`config.classifier`, from
 * `architectures: [*ForSequenceClassification]` or `LoadHfModelOptions.classifier`) expects
 * `score.weight` [1, hidden] and no LM head.
 */
import { access, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { logger } from '../common/log.js';
import { parameterShapes, parseModelConfig, toHfConfig, type ModelConfig } from './config.js';
import {
  readCheckpointDir,
  writeCheckpointDir,
  type SafetensorsDtype,
  type TensorMap,
  type WriteCheckpointOptions,
} from './safetensors.js';
import type { TextTokenizer } from './tokenizer.js';
import { loadTokenizerDir } from './tokenizer-dir.js';

const log = logger('model:hf');

/** A model directory's contents, in memory. */
export interface HfModel {
  config: ModelConfig;
  /** `config.json` as read: its other fields are written back on export. Empty for new models. */
  rawConfig: Record<string, unknown>;
  /** Exactly the parameters `parameterShapes(config)` lists, in that order, all F32. */
  tensors: TensorMap;
  /** The tokenizer, when the directory has a `tokenizer.json`. */
  tokenizer: TextTokenizer | null;
}

/** A model directory whose files do not fit together. */
export class ModelDirError extends Error {
  override readonly name = 'ModelDirError';
}

/** How many problems one error message lists before summarising the rest. */
const MAX_LISTED = 12;

/** Renames and drops what HF checkpoints carry besides the parameters (see the file comment). */
function normaliseNames(config: ModelConfig, tensors: TensorMap): TensorMap {
  const out: TensorMap = new Map();
  const bareGpt2 = config.arch === 'gpt2' && ![...tensors.keys()].some((n) => n.startsWith('transformer.'));
  for (const [name, t] of tensors) {
    if (config.arch === 'gpt2' && /(^|\.)attn\.(bias|masked_bias)$/.test(name)) continue;
    if (config.arch === 'llama' && /\.rotary_emb\.inv_freq$/.test(name)) continue;
    const renamed = bareGpt2 && name !== 'lm_head.weight' ? `transformer.${name}` : name;
    out.set(renamed, t);
  }
  return out;
}

/**
 * Checks tensors against the parameters of `config` and returns them in `parameterShapes` order.
 * `sourceDtypes` (file dtypes before upcasting) only improves the messages. Throws ModelDirError
 * listing every missing, unexpected, wrongly shaped or wrongly typed tensor by name.
 */
export function checkParameters(
  config: ModelConfig,
  tensors: TensorMap,
  what: string,
  sourceDtypes: Map<string, SafetensorsDtype> = new Map(),
): TensorMap {
  const named = normaliseNames(config, tensors);
  const specs = parameterShapes(config);
  const expected = new Set(specs.map((s) => s.name));
  if (config.tieWordEmbeddings && !config.classifier && named.has('lm_head.weight')) {
    log.debug({ what }, 'tied embeddings: ignoring lm_head.weight stored in the checkpoint');
    named.delete('lm_head.weight');
  }
  const problems: string[] = [];
  const out: TensorMap = new Map();
  for (const spec of specs) {
    const t = named.get(spec.name);
    if (!t) {
      const hint = spec.name === 'score.weight' ? ': a sequence classifier (reward model) needs its score head' : '';
      problems.push(`missing tensor "${spec.name}" (expected shape [${spec.shape}])${hint}`);
      continue;
    }
    if (t.dtype !== 'F32') {
      problems.push(
        `tensor "${spec.name}" has dtype ${sourceDtypes.get(spec.name) ?? t.dtype}, expected a float tensor (F32, BF16 or F16)`,
      );
      continue;
    }
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      const hint = spec.name === 'score.weight' ? ' (one label: a scalar reward per sequence)' : '';
      problems.push(`tensor "${spec.name}" has shape [${t.shape}], expected [${spec.shape}]${hint}`);
      continue;
    }
    out.set(spec.name, t);
  }
  for (const name of named.keys()) {
    if (expected.has(name)) continue;
    if (name === 'score.weight' && !config.classifier) {
      problems.push(
        'unexpected tensor "score.weight": a sequence-classifier head, but config.json does not name a *ForSequenceClassification architecture (or load it as a classifier)',
      );
    } else {
      problems.push(
        `unexpected tensor "${name}" (not a parameter of this ${config.modelType} ${config.classifier ? 'classifier ' : ''}config)`,
      );
    }
  }
  if (problems.length > 0) {
    const listed = problems.slice(0, MAX_LISTED).join('; ');
    const more = problems.length > MAX_LISTED ? `; and ${problems.length - MAX_LISTED} more` : '';
    throw new ModelDirError(
      `${what}: weights do not match config.json (${config.modelType}, ${config.layers} layers, hidden ${config.hidden}): ${listed}${more}`,
    );
  }
  return out;
}

async function readJson(file: string, required: boolean): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && !required) return null;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new ModelDirError(`${file} does not exist; expected a Hugging Face model directory`);
    throw e;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ModelDirError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new ModelDirError(`${file}: expected a JSON object`);
  return json as Record<string, unknown>;
}

/** Throws ModelDirError when the embedding (config `vocab_size`) cannot cover every id of the tokenizer. */
export function checkTokenizerFits(config: ModelConfig, tokenizer: TextTokenizer, what: string): void {
  if (tokenizer.vocabSize > config.vocabSize) {
    throw new ModelDirError(
      `${what}: tokenizer has ${tokenizer.vocabSize} ids but config.json vocab_size is ${config.vocabSize}; the embedding cannot cover the tokenizer`,
    );
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** Options of `loadHfModel`. */
export interface LoadHfModelOptions {
  /** Fail when the directory has no `tokenizer.json` (default false: `tokenizer` is then null). */
  requireTokenizer?: boolean;
  /**
   * Load the directory as a sequence classifier (score head `score.weight` [1, hidden], no LM
   * head) whatever `config.json`'s `architectures` says; default: as `architectures` says.
   */
  classifier?: boolean;
}

/**
 * Loads a Hugging Face model directory. The tokenizer's `eosIds` include the eos ids of
 * `config.json` and `generation_config.json` (chat models end turns with several).
 */
export async function loadHfModel(dir: string, options: LoadHfModelOptions = {}): Promise<HfModel> {
  const rawConfig = (await readJson(path.join(dir, 'config.json'), true))!;
  const parsed = parseModelConfig(rawConfig, path.join(dir, 'config.json'));
  const config: ModelConfig = options.classifier === undefined ? parsed : withClassifier(parsed, options.classifier);
  const weights = await readCheckpointDir(dir);
  const tensors = checkParameters(config, weights.tensors, dir, weights.sourceDtypes);
  // the tokenizer files as tokenizer-dir.ts reads every model directory (generation_config's eos ids included)
  let tokenizer: TextTokenizer | null = null;
  if (options.requireTokenizer || (await exists(path.join(dir, 'tokenizer.json')))) {
    tokenizer = (await loadTokenizerDir(dir, { configEosIds: config.eosTokenIds })).tokenizer;
    checkTokenizerFits(config, tokenizer, dir);
  }
  log.info(
    {
      dir,
      modelType: config.modelType,
      layers: config.layers,
      hidden: config.hidden,
      tensors: tensors.size,
      tokenizer: tokenizer?.kind ?? null,
    },
    'loaded model directory',
  );
  return { config, rawConfig, tensors, tokenizer };
}

/** `config` as a sequence classifier (true) or a causal LM (false). */
export function withClassifier(config: ModelConfig, classifier: boolean): ModelConfig {
  const { classifier: _drop, ...rest } = config;
  void _drop;
  return (classifier ? { ...rest, classifier: true } : rest) as ModelConfig;
}

async function writeJson(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify(value, null, 2) + '\n');
  await rename(tmp, file);
}

/** What `saveHfModel` writes. */
export interface SaveHfModelInput {
  config: ModelConfig;
  tensors: TensorMap;
  tokenizer?: TextTokenizer | null;
  /** Fields of an original `config.json` to keep (those the normalised config sets are overwritten). */
  rawConfig?: Record<string, unknown>;
  /**
   * A chat template (Jinja text) to write with the tokenizer: as `chat_template.jinja`, where
   * transformers 5 reads it, and as tokenizer_config.json's `chat_template`, where 4 does.
   */
  chatTemplate?: string | null;
}

/**
 * Writes a Hugging Face model directory: `config.json`, `generation_config.json` (bos/eos ids),
 * the weights (`model.safetensors`, or shards + index beyond `maxShardBytes`), and with a tokenizer
 * `tokenizer.json` + `tokenizer_config.json`. Tensors are checked against the config first, so an
 * export never writes a directory that would not load. Deterministic: same input, same bytes.
 * Returns the file names written.
 */
export async function saveHfModel(dir: string, model: SaveHfModelInput, options: WriteCheckpointOptions = {}): Promise<string[]> {
  const tensors = checkParameters(model.config, model.tensors, `export to ${dir}`);
  await mkdir(dir, { recursive: true });
  // The weights are written as float32 whatever the original checkpoint held.
  const hfConfig = { ...toHfConfig(model.config, model.rawConfig ?? {}), torch_dtype: 'float32', dtype: 'float32' }; // transformers 4 reads torch_dtype, 5 dtype
  const files = ['config.json', 'generation_config.json'];
  await writeJson(path.join(dir, 'config.json'), hfConfig);
  const eos = model.tokenizer ? [...new Set([...model.config.eosTokenIds, ...model.tokenizer.eosIds])] : model.config.eosTokenIds;
  await writeJson(path.join(dir, 'generation_config.json'), {
    bos_token_id: model.config.bosTokenId ?? model.tokenizer?.bosId ?? null,
    eos_token_id: eos.length === 1 ? eos[0] : eos,
    ...(model.config.padTokenId === null ? {} : { pad_token_id: model.config.padTokenId }),
  });
  files.push(...(await writeCheckpointDir(dir, tensors, options)));
  if (model.tokenizer) {
    const chat = model.chatTemplate ?? null;
    await writeJson(path.join(dir, 'tokenizer.json'), model.tokenizer.toTokenizerJson());
    await writeJson(path.join(dir, 'tokenizer_config.json'), {
      ...model.tokenizer.toTokenizerConfig(),
      ...(chat === null ? {} : { chat_template: chat }),
    });
    files.push('tokenizer.json', 'tokenizer_config.json');
    if (chat !== null) {
      await writeFile(path.join(dir, 'chat_template.jinja'), chat);
      files.push('chat_template.jinja');
    }
  }
  log.info({ dir, files }, 'wrote model directory');
  return files;
}
