/**
 * The pretrained model a `model.from` run starts from. Three moments:
 *
 * - before the run (`inspectModelSource`, the client's config check): the directory is readable,
 *   its config.json is a supported architecture, its tokenizer files load, its weight files exist —
 *   errors name the file and the field;
 * - at the run's start (`readModelSource`, by initRun): every file is read once, its size and sha256
 *   recorded in run.json (`BaseModelRecord`), the config and tokenizer files copied into the run's
 *   store (`basePrefix`, committed by a manifest) and the weights, upcast to float32, become
 *   checkpoint 0;
 * - in every stage (`readBaseModel`): the run's own copy, read verified, so every worker on every
 *   machine tokenises with the same files even if the source directory changes later.
 *
 * A source is a directory: a local path or `file://` URI, or `s3://bucket/prefix` (through the
 * project's S3 store, with the same credentials and endpoint settings as the run's store).
 */
import { createHash } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { parseModelConfig, type ModelConfig } from '../model/config.js';
import { checkTokenizerFits } from '../model/hf.js';
import { INDEX_FILE, parseSafetensors, parseShardIndex, SINGLE_FILE, type TensorMap } from '../model/safetensors.js';
import { TOKENIZER_FILES, tokenizerFromFiles, type TokenizerDir, type TokenizerFiles } from '../model/tokenizer-dir.js';
import { basePrefix } from '../store/keys.js';
import { commit, readEntry, readManifest } from '../store/manifest.js';
import { getIfExists, type ObjectStore } from '../store/object-store.js';
import { withStore } from '../store/open.js';

/** The HF config file of a model directory. */
export const CONFIG_FILE = 'config.json';
/** The files of a model directory that every stage needs (the weights are checkpoint 0). */
export const BASE_FILES = [CONFIG_FILE, ...TOKENIZER_FILES] as const;

/** A pretrained model's config and tokenizer files, as text. */
export interface BaseModelFiles {
  config: string;
  tokenizer: TokenizerFiles;
}

/** One file read from the source, as run.json records it. */
export interface SourceFileDigest {
  name: string;
  bytes: number;
  sha256: string;
}

/** run.json's record of a `model.from` run's source: where it was and exactly what was read. */
export interface BaseModelRecord {
  uri: string;
  files: SourceFileDigest[];
}

/** A pretrained model directory that cannot be used: the message names the file and what is wrong. */
export class ModelSourceError extends Error {
  override readonly name = 'ModelSourceError';
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

/** The parsed model config and loaded tokenizer of base files; errors name the source file. */
export function parseBaseModel(files: BaseModelFiles, source: string): { model: ModelConfig; tokenizer: TokenizerDir } {
  let json: unknown;
  try {
    json = JSON.parse(files.config);
  } catch (err) {
    throw new ModelSourceError(`${source}/${CONFIG_FILE}: not valid JSON (${(err as Error).message})`);
  }
  const model = parseModelConfig(json, `${source}/${CONFIG_FILE}`);
  const tokenizer = tokenizerFromFiles(files.tokenizer, { source, configEosIds: model.eosTokenIds });
  checkTokenizerFits(model, tokenizer.tokenizer, source);
  return { model, tokenizer };
}

/** Reads the config and tokenizer files of a source directory (a store rooted at it). */
async function readFiles(store: ObjectStore, source: string): Promise<{ files: BaseModelFiles; raw: Map<string, Uint8Array> }> {
  const raw = new Map<string, Uint8Array>();
  for (const name of BASE_FILES) {
    const bytes = await getIfExists(store, name);
    if (bytes !== undefined) raw.set(name, bytes);
  }
  for (const name of [CONFIG_FILE, 'tokenizer.json'] as const) {
    if (!raw.has(name)) {
      throw new ModelSourceError(
        `${source}/${name} not found: model.from must name a Hugging Face model directory (config.json, tokenizer.json, safetensors weights)`,
      );
    }
  }
  const tokenizer = Object.fromEntries(TOKENIZER_FILES.filter((n) => raw.has(n)).map((n) => [n, text(raw.get(n)!)])) as TokenizerFiles;
  return { files: { config: text(raw.get(CONFIG_FILE)!), tokenizer }, raw };
}

/** The weight files of a directory: the shards an index names, or the single file. */
async function weightFiles(store: ObjectStore, source: string): Promise<{ names: string[]; index?: Uint8Array }> {
  const index = await getIfExists(store, INDEX_FILE);
  if (index !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(text(index));
    } catch (err) {
      throw new ModelSourceError(`${source}/${INDEX_FILE}: not valid JSON (${(err as Error).message})`);
    }
    const shards = [...new Set(Object.values(parseShardIndex(json, `${source}/${INDEX_FILE}`).weight_map))].sort();
    return { names: shards, index };
  }
  if ((await store.head(SINGLE_FILE)) === undefined) {
    throw new ModelSourceError(`${source} has neither ${SINGLE_FILE} nor ${INDEX_FILE}: model.from needs the weights as safetensors`);
  }
  return { names: [SINGLE_FILE] };
}

/** Checks a source before a run starts (no weights are read, only their presence). */
export async function inspectModelSource(uri: string): Promise<{ files: BaseModelFiles; model: ModelConfig; tokenizer: TokenizerDir }> {
  return withStore(uri, async (store) => {
    const { files } = await readFiles(store, uri);
    const parsed = parseBaseModel(files, uri);
    const { names } = await weightFiles(store, uri);
    for (const name of names) {
      if ((await store.head(name)) === undefined) throw new ModelSourceError(`${uri}/${name} not found (named by ${INDEX_FILE})`);
    }
    return { files, ...parsed };
  });
}

/** Reads a source completely: its files, their digests, and the weights (float32, by HF name). */
export async function readModelSource(uri: string): Promise<{ files: BaseModelFiles; record: BaseModelRecord; weights: TensorMap }> {
  return withStore(uri, async (store) => {
    const { files, raw } = await readFiles(store, uri);
    parseBaseModel(files, uri);
    const digests = [...raw].map(([name, bytes]) => ({ name, bytes: bytes.length, sha256: sha256(bytes) }));
    const { names, index } = await weightFiles(store, uri);
    if (index) digests.push({ name: INDEX_FILE, bytes: index.length, sha256: sha256(index) });
    const weights: TensorMap = new Map();
    for (const name of names) {
      const bytes = await store.get(name);
      digests.push({ name, bytes: bytes.length, sha256: sha256(bytes) });
      for (const [k, t] of parseSafetensors(bytes, `${uri}/${name}`).tensors) weights.set(k, t);
    }
    digests.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { files, record: { uri, files: digests }, weights };
  });
}

/** Copies the config and tokenizer files into the run (idempotent: a committed copy is kept). */
export async function writeBaseModel(store: ObjectStore, runId: string, files: BaseModelFiles): Promise<void> {
  const prefix = basePrefix(runId);
  if (await readManifest(store, prefix)) return;
  const enc = (s: string) => new TextEncoder().encode(s);
  const artifacts = [{ name: CONFIG_FILE, bytes: enc(files.config) }];
  for (const name of TOKENIZER_FILES) {
    const t = files.tokenizer[name];
    if (typeof t === 'string') artifacts.push({ name, bytes: enc(t) });
  }
  await commit(store, prefix, artifacts);
}

/** The run's copy of its base files (verified reads). */
export async function readBaseModel(store: ObjectStore, runId: string): Promise<BaseModelFiles> {
  const prefix = basePrefix(runId);
  const manifest = await readManifest(store, prefix);
  if (!manifest) {
    throw ApplicationFailure.nonRetryable(
      `run "${runId}" starts from a pretrained model but ${store.uri(prefix)} holds no committed copy of its files; the run was not initialised (initRun)`,
      'BaseModelMissing',
    );
  }
  const got = new Map<string, string>();
  for (const e of manifest.artifacts) got.set(e.name, text(await readEntry(store, prefix, e)));
  const tokenizer = Object.fromEntries(TOKENIZER_FILES.filter((n) => got.has(n)).map((n) => [n, got.get(n)!])) as TokenizerFiles;
  return { config: got.get(CONFIG_FILE)!, tokenizer };
}

/**
 * Why the source read now is not the one a run recorded (a file changed, appeared or went away
 * under the same URI, or another URI), naming the file and both hashes; undefined when the same.
 */
export function baseChange(recorded: BaseModelRecord, now: BaseModelRecord, what: string): string | undefined {
  if (recorded.uri !== now.uri) return `${what}: model.from is ${now.uri} here but ${recorded.uri} in run.json`;
  const before = new Map(recorded.files.map((f) => [f.name, f]));
  const after = new Map(now.files.map((f) => [f.name, f]));
  for (const name of [...new Set([...before.keys(), ...after.keys()])].sort()) {
    const a = before.get(name);
    const b = after.get(name);
    if (a && b && a.sha256 === b.sha256) continue;
    const show = (f: SourceFileDigest | undefined) => (f ? `sha256 ${f.sha256} (${f.bytes} bytes)` : 'no such file');
    return `${what}: ${now.uri}/${name} changed: run.json records ${show(a)}, the directory now has ${show(b)}; a run starts from the model it recorded — restore the directory, or start a new run`;
  }
  return undefined;
}
