/**
 * A pretrained model's tokenizer files, read the way `transformers` reads them, into the tokenizer,
 * its chat template and the ids that end generation:
 *
 * - `tokenizer.json` — the tokenizer itself (`loadTokenizer`); required.
 * - `tokenizer_config.json` — special tokens (`bos_token`, `eos_token`, ... as strings or
 *   AddedToken objects), `added_tokens_decoder` (added tokens by id: one missing from
 *   tokenizer.json is added, one whose id disagrees is an error), and `chat_template` (a string,
 *   or the list form `[{name, template}]`, where the one named "default" is used).
 * - `chat_template.jinja` — where transformers 5 writes the template; it wins over the config's
 *   `chat_template`, as in transformers.
 * - `generation_config.json` — `eos_token_id` (one id or a list): the stop ids. Without it, the
 *   model config's eos ids (`TokenizerDirOptions.configEosIds`), else the tokenizer's eos.
 *
 * `tokenizerFromFiles` is a pure function of the files' texts (a run reads them from an object
 * store); `loadTokenizerDir` reads them from a local directory.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ChatTemplate, TEMPLATE_SPECIAL_TOKENS } from './chat.js';
import { loadTokenizer, specialName, TokenizerError, type TextTokenizer } from './tokenizer.js';

/** The files of a tokenizer directory, by name. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'chat_template.jinja', 'generation_config.json'] as const;
export type TokenizerFileName = (typeof TOKENIZER_FILES)[number];

/** The texts of a directory's tokenizer files; an absent (or null) entry is a file the directory does not have. */
export type TokenizerFiles = { 'tokenizer.json': string } & Partial<Record<Exclude<TokenizerFileName, 'tokenizer.json'>, string | null>>;

/** Options of `tokenizerFromFiles` and `loadTokenizerDir`. */
export interface TokenizerDirOptions {
  /** Where the files come from (a directory or URI), prefixed to their names in errors. Default: the bare file names. */
  source?: string;
  /**
   * Which template of a `chat_template` list to use (transformers' `chat_template="name"`).
   * Default: "default" (which `chat_template.jinja` is, when present).
   */
  chatTemplateName?: string;
  /**
   * The model config's eos ids (`ModelConfig.eosTokenIds`): the stop ids when there is no
   * `generation_config.json` (transformers then derives the generation config from config.json);
   * always among the tokenizer's `eosIds`. Default none.
   */
  configEosIds?: readonly number[];
}

/** A tokenizer directory, loaded. */
export interface TokenizerDir {
  tokenizer: TextTokenizer;
  /** The chat template, or null when the directory has none (a base model). */
  chatTemplate: ChatTemplate | null;
  /**
   * The ids that end generation: `generation_config.json`'s `eos_token_id`, else the model
   * config's eos ids, else the tokenizer's eos. Also all in `tokenizer.eosIds`.
   */
  stopIds: number[];
}

function fileName(source: string | undefined, name: string): string {
  return source === undefined ? name : `${source.replace(/\/+$/, '')}/${name}`;
}

function parseObject(text: string, what: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new TokenizerError(`${what}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new TokenizerError(`${what}: expected a JSON object`);
  return json as Record<string, unknown>;
}

/**
 * The eos ids a `generation_config.json` names: `eos_token_id` as one id or a list of ids; null
 * when it names none. `what` names the file in errors.
 */
export function generationEosIds(gen: Record<string, unknown>, what = 'generation_config.json'): number[] | null {
  const eos = gen.eos_token_id;
  if (eos === undefined || eos === null) return null;
  const ids = Array.isArray(eos) ? eos : [eos];
  ids.forEach((id, i) => {
    if (!Number.isInteger(id) || (id as number) < 0)
      throw new TokenizerError(
        `${what}: eos_token_id${Array.isArray(eos) ? `[${i}]` : ''} must be a token id (a non-negative integer), got ${JSON.stringify(id)}`,
      );
  });
  return ids as number[];
}

interface AddedTokenJson {
  id: number;
  content: string;
  [field: string]: unknown;
}

/**
 * `tokenizer.json` with the config's `added_tokens_decoder` entries it lacks added (as transformers
 * adds them); an entry whose token has another id in tokenizer.json is an error.
 */
function withConfigAddedTokens(json: Record<string, unknown>, config: Record<string, unknown>, what: string, jsonWhat: string) {
  const decoder = config.added_tokens_decoder;
  if (decoder === undefined || decoder === null) return json;
  if (typeof decoder !== 'object' || Array.isArray(decoder))
    throw new TokenizerError(`${what}: added_tokens_decoder must be an object of id → token`);
  const added = Array.isArray(json.added_tokens) ? (json.added_tokens as AddedTokenJson[]) : [];
  const vocab = (json.model as { vocab?: unknown } | undefined)?.vocab;
  const vocabId = (content: string): number | undefined => {
    if (Array.isArray(vocab)) {
      const i = vocab.findIndex((piece) => Array.isArray(piece) && piece[0] === content); // Unigram: [piece, score] by id
      return i < 0 ? undefined : i;
    }
    return typeof vocab === 'object' && vocab !== null && Object.hasOwn(vocab, content)
      ? (vocab as Record<string, number>)[content]
      : undefined;
  };
  const missing: AddedTokenJson[] = [];
  for (const [key, entry] of Object.entries(decoder as Record<string, unknown>)) {
    const id = Number(key);
    const content = (entry as { content?: unknown } | null)?.content;
    if (!Number.isInteger(id) || id < 0 || typeof content !== 'string')
      throw new TokenizerError(`${what}: added_tokens_decoder["${key}"] must map a token id to {content, ...}`);
    const known = added.find((a) => a.content === content)?.id ?? vocabId(content);
    if (known === undefined)
      missing.push({
        special: false,
        single_word: false,
        lstrip: false,
        rstrip: false,
        normalized: false,
        ...(entry as object),
        id,
        content,
      });
    else if (known !== id)
      throw new TokenizerError(
        `${what}: added_tokens_decoder gives ${JSON.stringify(content)} id ${id}, but ${jsonWhat} gives it id ${known}`,
      );
  }
  return missing.length === 0 ? json : { ...json, added_tokens: [...added, ...missing] };
}

/** The template text and the name of where it came from, or null. */
function pickTemplate(files: TokenizerFiles, config: Record<string, unknown>, options: TokenizerDirOptions, configWhat: string) {
  const name = options.chatTemplateName ?? 'default';
  const jinja = files['chat_template.jinja'];
  if (typeof jinja === 'string' && name === 'default') return { text: jinja, origin: fileName(options.source, 'chat_template.jinja') };
  const field = config.chat_template;
  if (field === undefined || field === null) {
    if (name !== 'default')
      throw new TokenizerError(`${configWhat}: no chat template named ${JSON.stringify(name)} (the config has no chat_template list)`);
    return null;
  }
  if (typeof field === 'string') {
    if (name !== 'default')
      throw new TokenizerError(`${configWhat}: no chat template named ${JSON.stringify(name)} (chat_template is a single template)`);
    return { text: field, origin: `${configWhat} chat_template` };
  }
  if (!Array.isArray(field)) throw new TokenizerError(`${configWhat}: chat_template must be a string or a list of {name, template}`);
  field.forEach((t: unknown, i) => {
    const e = t as { name?: unknown; template?: unknown } | null;
    if (typeof e?.name !== 'string' || typeof e.template !== 'string')
      throw new TokenizerError(`${configWhat}: chat_template[${i}] must be {name: string, template: string}`);
  });
  const named = (field as { name: string; template: string }[]).find((t) => t.name === name);
  if (!named) {
    const names = (field as { name: string }[]).map((t) => JSON.stringify(t.name)).join(', ');
    throw new TokenizerError(
      `${configWhat}: chat_template has no template named ${JSON.stringify(name)} (it has ${names}); choose one with chatTemplateName`,
    );
  }
  return { text: named.template, origin: `${configWhat} chat_template[name=${JSON.stringify(name)}]` };
}

/** Loads a tokenizer directory from its files' texts (see the file comment for what each contributes). */
export function tokenizerFromFiles(files: TokenizerFiles, options: TokenizerDirOptions = {}): TokenizerDir {
  const jsonWhat = fileName(options.source, 'tokenizer.json');
  const configWhat = fileName(options.source, 'tokenizer_config.json');
  const genWhat = fileName(options.source, 'generation_config.json');
  if (typeof files['tokenizer.json'] !== 'string')
    throw new TokenizerError(`${jsonWhat}: missing; a tokenizer directory needs its tokenizer.json`);
  const configText = files['tokenizer_config.json'];
  const config = typeof configText === 'string' ? parseObject(configText, configWhat) : {};
  const genText = files['generation_config.json'];
  const genEos = typeof genText === 'string' ? generationEosIds(parseObject(genText, genWhat), genWhat) : null;
  const json = withConfigAddedTokens(parseObject(files['tokenizer.json'], jsonWhat), config, configWhat, jsonWhat);
  const extraEosIds = [...(options.configEosIds ?? []), ...(genEos ?? [])];
  const tokenizer = loadTokenizer(json, config, { extraEosIds }, jsonWhat);
  for (const id of extraEosIds) {
    if (tokenizer.idToToken(id) === undefined)
      throw new TokenizerError(
        `eos id ${id} (${genEos?.includes(id) ? genWhat : 'the model config'}) is not in the tokenizer's vocabulary (${tokenizer.vocabSize} ids)`,
      );
  }
  const stopIds = genEos ?? (options.configEosIds?.length ? [...options.configEosIds] : tokenizer.eosId === null ? [] : [tokenizer.eosId]);
  const picked = pickTemplate(files, config, options, configWhat);
  const specialTokens: Record<string, string> = {};
  for (const field of TEMPLATE_SPECIAL_TOKENS) {
    const name = specialName(config[field]);
    if (name !== null) specialTokens[field] = name;
  }
  const chatTemplate = picked && new ChatTemplate(picked.text, specialTokens, picked.origin);
  return { tokenizer, chatTemplate, stopIds: [...new Set(stopIds)] };
}

/** Reads the tokenizer files of a local directory (absent ones skipped) and loads them with `tokenizerFromFiles`. */
export async function loadTokenizerDir(dir: string, options: Omit<TokenizerDirOptions, 'source'> = {}): Promise<TokenizerDir> {
  const files: Partial<Record<TokenizerFileName, string>> = {};
  for (const name of TOKENIZER_FILES) {
    try {
      files[name] = await readFile(path.join(dir, name), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  if (files['tokenizer.json'] === undefined)
    throw new TokenizerError(`${path.join(dir, 'tokenizer.json')} does not exist; expected a Hugging Face tokenizer directory`);
  return tokenizerFromFiles(files as TokenizerFiles, { ...options, source: dir });
}
