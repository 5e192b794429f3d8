/**
 * What every activity of a training run derives from the run config, the same way in every
 * process: the task, its character tokenizer, the model config, the generation budget and the
 * reward. Pure functions of the config (cached by run id), so a rollout worker and a learner on
 * different machines agree on every id and shape. Also the run record (`run.json`) I/O.
 */
import { ApplicationFailure } from '@temporalio/common';
import { CharTokenizer, type TextTokenizer } from '../model/tokenizer.js';
import { encodeChat, type ChatMessage, type ChatTemplate } from '../model/chat.js';
import { parseModelConfig, withLora, type ModelConfig } from '../model/config.js';
import { defaultRegistry } from '../reward/registry.js';
import type { RewardFn } from '../reward/types.js';
import { withRewardFaults } from '../reward/faults.js';
import { checkRewardFunctions, composedReward } from '../reward/functions.js';
import { parseCompositionConfig } from '../reward/compose.js';
import { getTask, type Task } from '../tasks/tasks.js';
import { runRecordKey } from '../store/keys.js';
import { getIfExists, type ObjectStore } from '../store/object-store.js';
import { parseStoreUri } from '../store/open.js';
import { ConfigError } from '../common/config.js';
import { canonicalJson } from '../store/manifest.js';
import { DatasetError, loadDataset, longest, type LoadedDataset } from '../data/dataset.js';
import { datasetTask } from '../data/dataset-task.js';
import type { Environment } from '../env/types.js';
import { environmentTask, preloadRunEnvironment, resolveEnvironment } from './environment.js';
import { completionBudget, parseRunConfig, type SamplingPhase, type RunConfig } from './config.js';
import type { RunDataRecord, RunRecord } from './types.js';
import { migrateRunRecord, RUN_CONFIG_VERSION, UNVERSIONED, versionProblem } from './config-version.js';
import { inspectModelSource, parseBaseModel, readBaseModel, type BaseModelFiles } from './base-model.js';

/** Everything a stage needs that follows from the config. */
export interface ResolvedRun {
  config: RunConfig;
  task: Task;
  /** The run's environment (config.environment; activities/run/environment.ts): rollouts are its multi-turn episodes. null: single completions. */
  environment: Environment | null;
  /** The character tokenizer of a model trained from scratch, or a pretrained model's own. */
  tokenizer: TextTokenizer;
  model: ModelConfig;
  /** The ids that end a completion (a pretrained model's generation_config eos ids; the EOS of a char model). */
  stopIds: readonly number[];
  /** A run `from` a pretrained model: its config and tokenizer files and chat template (what an export writes back); null from scratch. */
  pretrained: { files: BaseModelFiles; chatTemplate: ChatTemplate | null } | null;
  /**
   * A task prompt as the model reads it: through the chat template when the model has one (the
   * item's chat messages — a dataset's conversational prompt, a system message — or else the
   * prompt as the user turn; then the generation prompt: transformers' `apply_chat_template(...,
   * add_generation_prompt=True)`), otherwise the plain prompt encoded with the tokenizer's own
   * special tokens (the char tokenizer's BOS).
   */
  encodePrompt(prompt: string, messages?: readonly ChatMessage[]): number[];
  /** A gold completion (SFT target, preference side) as the model should produce it: its tokens, then the end-of-turn token. */
  encodeCompletion(completion: string): number[];
  /** Completion token budget of an rl phase's rollouts (sampling.max_tokens or the task's longest answer + 4). */
  maxNewTokens(phase?: SamplingPhase): number;
  /**
   * A fresh instance of the run's reward (config.reward.spec, default the task's reward), with the
   * configured fault drill unless `faults: false` (evaluations measure the policy, not the drill).
   */
  createReward(opts?: { faults?: boolean }): RewardFn;
}

const roundUp8 = (n: number) => Math.ceil(n / 8) * 8;

/**
 * The date `strftime_now` gives chat templates (Llama 3.1's template puts it in the system turn):
 * fixed, so a prompt renders to the same tokens on every worker, retry and replay. 26 Jul 2024 is
 * the date Llama 3.1's own template falls back to without a clock.
 */
export const CHAT_TEMPLATE_DATE = new Date(Date.UTC(2024, 6, 26));

/** The model trained from scratch: sized for the task's characters, its context from the task's longest prompt and budget. */
function scratchModel(config: RunConfig, task: Task, tokenizer: CharTokenizer, longest: number): ModelConfig {
  const m = config.model;
  const hidden = m.hidden!; // modelSchema fills the from-scratch defaults when there is no model.from
  const maxPositions = m.maxPositions ?? roundUp8(1 + task.maxPromptChars + longest);
  const special = {
    bos_token_id: tokenizer.bosId,
    eos_token_id: tokenizer.eosId,
    pad_token_id: tokenizer.padId,
    // a reward-model run: the same backbone with a scalar score head (config.ts model.classifier)
    ...(m.classifier ? { architectures: [m.type === 'gpt2' ? 'GPT2ForSequenceClassification' : 'LlamaForSequenceClassification'] } : {}),
  };
  return m.type === 'gpt2'
    ? parseModelConfig(
        {
          model_type: 'gpt2',
          vocab_size: tokenizer.vocabSize,
          n_embd: hidden,
          n_layer: m.layers,
          n_head: m.heads,
          n_positions: maxPositions,
          n_inner: m.intermediate ?? 4 * hidden,
          ...special,
        },
        'run config model',
      )
    : parseModelConfig(
        {
          model_type: m.type === 'qwen3' ? 'qwen3' : 'llama',
          vocab_size: tokenizer.vocabSize,
          hidden_size: hidden,
          num_hidden_layers: m.layers,
          num_attention_heads: m.heads,
          intermediate_size: m.intermediate ?? roundUp8((8 * hidden) / 3),
          max_position_embeddings: maxPositions,
          tie_word_embeddings: true,
          ...special,
        },
        'run config model',
      );
}

/** How prompts and gold completions become ids: the chat template of a pretrained model, or the tokenizer's own specials. */
function promptFormat(tokenizer: TextTokenizer, chat: ChatTemplate | null, stopIds: readonly number[]) {
  const endOfTurn = tokenizer.eosId ?? stopIds[0];
  if (endOfTurn === undefined || endOfTurn === null) {
    throw new ConfigError('model', [
      { path: 'from', message: 'the tokenizer has no eos token and the model no eos ids: a completion could never end' },
    ]);
  }
  return {
    encodePrompt: (prompt: string, messages?: readonly ChatMessage[]) =>
      chat
        ? encodeChat(tokenizer, chat, messages ?? [{ role: 'user', content: prompt }], {
            addGenerationPrompt: true,
            now: CHAT_TEMPLATE_DATE,
          })
        : tokenizer.encode(prompt),
    encodeCompletion: (completion: string) => [...tokenizer.encode(completion, { addSpecialTokens: false }), endOfTurn],
  };
}

/**
 * Derives the task, tokenizer, model config and reward of a run config. Throws ConfigError on a bad
 * task option. A run on `data` needs its loaded dataset (`loadRunData`): its task and alphabet; a
 * run `from` a pretrained model needs its config and tokenizer files (`readBaseModel`,
 * `inspectModelSource`).
 */
export function resolveRun(config: RunConfig, data?: LoadedDataset, base?: BaseModelFiles): ResolvedRun {
  if (config.data && !data) throw new Error('resolveRun: this run reads a dataset (config.data); load it first (loadRunData)');
  if (config.model.from !== null && !base)
    throw new Error('resolveRun: this run starts from a pretrained model (model.from); read its files first');
  const environment = config.environment ? resolveEnvironment(config.environment) : null;
  const task = config.data
    ? datasetTask(data!)
    : environment && config.environment
      ? environmentTask(environment, config.environment)
      : getTask(config.task.name, config.task.options);
  const defaultBudget = task.maxCompletionChars + 4;
  const budget = (p?: SamplingPhase) => (p ? completionBudget(p, task) : defaultBudget);
  const longest = Math.max(
    defaultBudget,
    // an episode's completion may run to its token limit (prompt included)
    environment?.limits.maxTotalTokens ?? 0,
    ...config.phases.map((p) => (p.kind === 'rl' || p.kind === 'online_dpo' ? budget(p) : 0)),
  );
  let tokenizer: TextTokenizer;
  let model: ModelConfig;
  let chat: ChatTemplate | null = null;
  let stopIds: readonly number[];
  if (base) {
    const pretrained = parseBaseModel(base, config.model.from!);
    ({ model } = pretrained);
    ({ tokenizer, chatTemplate: chat, stopIds } = pretrained.tokenizer);
  } else {
    const chars = CharTokenizer.fromAlphabet(task.alphabet);
    tokenizer = chars;
    model = scratchModel(config, task, chars, longest);
    stopIds = chars.eosIds;
  }
  // LoRA adapters on the model, pretrained or not (model/lora.ts): only they train
  if (config.model.lora) model = withLora(model, config.model.lora);
  const registry = defaultRegistry();
  return {
    config,
    task,
    environment,
    tokenizer,
    model,
    stopIds,
    pretrained: base ? { files: base, chatTemplate: chat } : null,
    ...promptFormat(tokenizer, chat, stopIds),
    maxNewTokens: budget,
    createReward: (opts = {}) => {
      const r = config.reward;
      const fn = r.functions
        ? composedReward(r.functions, parseCompositionConfig(r.compose ?? { name: 'weighted_sum' }), registry)
        : r.spec
          ? registry.create(r.spec)
          : task.createReward();
      return config.reward.faults && opts.faults !== false ? withRewardFaults(fn, config.reward.faults) : fn;
    },
  };
}

/** The run config's model fields, by the Hugging Face names the model config uses. */
const MODEL_FIELDS: Record<string, string> = {
  hidden_size: 'hidden',
  n_embd: 'hidden',
  num_attention_heads: 'heads',
  n_head: 'heads',
  num_hidden_layers: 'layers',
  n_layer: 'layers',
  intermediate_size: 'intermediate',
  n_inner: 'intermediate',
  max_position_embeddings: 'maxPositions',
  n_positions: 'maxPositions',
};

const issuesOf = (err: unknown): string =>
  err instanceof ConfigError ? err.issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ') : (err as Error).message;

/** What run.json records of a run's dataset: each file's URI, size and sha256, the alphabet and the length limits. */
export function dataRecord(data: LoadedDataset): RunDataRecord {
  return {
    train: data.files.train,
    eval: data.files.eval,
    alphabet: data.alphabet,
    maxPromptChars: data.maxPromptChars,
    maxCompletionChars: data.maxCompletionChars,
  };
}

/**
 * `data` with the vocabulary and length limits a run recorded (run.json `data`): what its weights
 * (embedding, positions) and its completion budgets were built with, whatever today's code derives
 * from the same files — an upgrade must not change a running model's shape or its samples. A record
 * written before the limits were recorded gets them as that code derived them (held-out rows of
 * `evalFraction` left out).
 */
export function asRecorded(data: LoadedDataset, recorded: RunDataRecord): LoadedDataset {
  const trainOnly = data.evalSource === 'held_out';
  return {
    ...data,
    alphabet: recorded.alphabet,
    maxPromptChars: recorded.maxPromptChars ?? (trainOnly ? longest(data.train.map((x) => x.prompt)) : data.maxPromptChars),
    maxCompletionChars: recorded.maxCompletionChars ?? (trainOnly ? longest(data.train.map((x) => x.completion)) : data.maxCompletionChars),
  };
}

/**
 * Why a dataset read now is not the one a run recorded (a file changed under the same URI, or
 * another file), naming both hashes; undefined when it is the same.
 */
export function dataChange(recorded: RunDataRecord, now: RunDataRecord, what: string): string | undefined {
  for (const split of ['train', 'eval'] as const) {
    const a = recorded[split];
    const b = now[split];
    if (a?.uri === b?.uri && a?.size === b?.size && a?.sha256 === b?.sha256) continue;
    if (a && b && a.uri === b.uri)
      return `${what}: the ${split} dataset ${a.uri} changed: run.json records sha256 ${a.sha256} (${a.size} bytes), the file now has sha256 ${b.sha256} (${b.size} bytes); a run reads the data it started with — restore the file, or start a new run`;
    return `${what}: the ${split} dataset is ${b ? `${b.uri} (sha256 ${b.sha256})` : 'none'} here but ${a ? `${a.uri} (sha256 ${a.sha256})` : 'none'} in run.json`;
  }
  return undefined;
}

/**
 * Reads and checks a run's dataset (activities/data/dataset.ts) — for the run's seed, needing
 * completions where an sft phase trains on them. With `recorded` (run.json's `data`), a dataset
 * whose files differ from the recorded ones is refused (non-retryable, naming both hashes), and the
 * recorded alphabet and limits are the run's (`asRecorded`).
 */
export async function loadRunData(config: RunConfig, recorded?: RunDataRecord, what = 'run'): Promise<LoadedDataset> {
  if (!config.data) throw new Error('loadRunData: the run config has no data');
  const data = await loadDataset(config.data, { seed: config.seed, needCompletion: config.phases.some((p) => p.kind === 'sft') });
  const change = recorded ? dataChange(recorded, dataRecord(data), what) : undefined;
  if (change) throw ApplicationFailure.nonRetryable(change, 'DatasetChanged');
  return recorded ? asRecorded(data, recorded) : data;
}

/**
 * What a config needs beyond its schema, checked before a run starts (so a bad run is never
 * started): the store URI parses, the task accepts its options, the model can be built for the
 * task's vocabulary, the reward spec names a reward with valid options. ConfigError names the field.
 */
export async function checkRunConfig(config: RunConfig, what = 'run config'): Promise<ResolvedRun> {
  const problems: { path: string; message: string }[] = [];
  try {
    parseStoreUri(config.store);
  } catch (err) {
    problems.push({ path: 'store', message: (err as Error).message });
  }
  let run: ResolvedRun | undefined;
  let data: LoadedDataset | undefined;
  if (config.data) {
    try {
      data = await loadRunData(config);
    } catch (err) {
      if (!(err instanceof DatasetError)) throw err;
      problems.push({ path: `data.${err.field}`, message: err.message });
      throw new ConfigError(what, problems);
    }
  }
  let base: BaseModelFiles | undefined;
  if (config.model.from !== null) {
    try {
      base = (await inspectModelSource(config.model.from)).files;
    } catch (err) {
      // the directory, its config.json or tokenizer files: the message names the file and field
      problems.push({ path: 'model.from', message: (err as Error).message });
      throw new ConfigError(what, problems);
    }
  }
  if (config.environment) {
    for (const p of environmentProblems(config)) problems.push(p);
    const own = config.environment.module !== undefined;
    try {
      await preloadRunEnvironment(config);
    } catch (err) {
      // the module does not import (environment.module) or lacks the export (environment.export)
      const msg = (err as Error).message;
      problems.push({ path: / has no export /.test(msg) ? 'environment.export' : 'environment.module', message: msg });
      throw new ConfigError(what, problems);
    }
    try {
      resolveEnvironment(config.environment);
    } catch (err) {
      // a module's export that is no environment names its field; options its definition refuses
      const msg = issuesOf(err);
      problems.push({
        path: own && !/^options of /.test((err as Error).message) ? 'environment.export' : 'environment.options',
        message: msg,
      });
      throw new ConfigError(what, problems);
    }
  }
  try {
    if (!data && !config.environment) getTask(config.task.name, config.task.options);
    try {
      run = resolveRun(config, data, base);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      for (const i of base ? [] : err.issues)
        problems.push({
          path: `model.${MODEL_FIELDS[i.path] ?? i.path}`,
          message: i.message.replace(/\b[a-z_]+\b/g, (w) => MODEL_FIELDS[w] ?? w),
        });
      if (base) problems.push({ path: 'model.from', message: err.message });
    }
  } catch (err) {
    problems.push({ path: 'task.options', message: issuesOf(err) });
  }
  if (run && config.reward.functions) {
    for (const p of await checkRewardFunctions(config.reward.functions, defaultRegistry()))
      problems.push({ path: `reward.${p.path}`, message: p.message });
  } else if (run) {
    try {
      const reward = run.createReward();
      await reward.close?.();
    } catch (err) {
      problems.push({ path: config.reward.spec ? 'reward.spec' : 'task', message: issuesOf(err) });
    }
  }
  if (problems.length > 0 || !run) throw new ConfigError(what, problems);
  return run;
}

/** What an environment run cannot combine with: a dataset (one prompt source), tree or retry rollouts, online DPO. */
function environmentProblems(config: RunConfig): { path: string; message: string }[] {
  const out: { path: string; message: string }[] = [];
  if (config.data && config.environment?.module === undefined)
    out.push({
      path: 'environment',
      message: 'a built-in environment brings its own task items: give either data or environment, not both',
    });
  config.phases.forEach((p, i) => {
    if (p.kind === 'rl' && p.tree)
      out.push({ path: `phases.${i}.tree`, message: 'tree rollouts are single completions: not with environment episodes' });
    if (p.kind === 'rl' && p.retry)
      out.push({ path: `phases.${i}.retry`, message: 'reflect-then-retry rollouts are single completions: not with environment episodes' });
    if (p.kind === 'online_dpo')
      out.push({ path: `phases.${i}.kind`, message: 'online_dpo samples single completions: with environment episodes use an rl phase' });
  });
  return out;
}

/**
 * Writes run.json once, at the current schema_version. A run id reused with a different config is
 * refused (non-retryable); a run.json written by an earlier version of durable-rl (a re-executed
 * initRun of a run started before an upgrade) is compared after migrating it, and left as it was.
 */
export async function writeRunRecord(store: ObjectStore, record: Omit<RunRecord, 'schema_version'>): Promise<void> {
  const key = runRecordKey(record.run_id);
  const full: RunRecord = { schema_version: RUN_CONFIG_VERSION, ...record };
  const bytes = new TextEncoder().encode(canonicalJson(full));
  if (await store.putIfAbsent(key, bytes)) return;
  const existing = await store.get(key);
  if (Buffer.compare(Buffer.from(existing), Buffer.from(bytes)) === 0) return;
  const recorded = canonicalJson(recordFromBytes(existing, store.uri(key)));
  const differs = firstDifference(JSON.parse(recorded), JSON.parse(canonicalJson(full)), '');
  if (differs) {
    throw ApplicationFailure.nonRetryable(
      `${store.uri(key)} already holds a different config for run "${record.run_id}" (${differs.path || '(the record)'} differs); a run id names one run — start a new run (a new id) instead`,
      'RunConfigConflict',
    );
  }
}

/** The first place where two JSON-like values differ, as a dotted path (`hidden`, `options.maxDigits`) with both values, or undefined. */
export function firstDifference(a: unknown, b: unknown, path: string): { path: string; a: unknown; b: unknown } | undefined {
  const isObj = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isObj(a) && isObj(b)) {
    for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      const d = firstDifference(a[k], b[k], path ? `${path}.${k}` : k);
      if (d) return d;
    }
    return undefined;
  }
  return JSON.stringify(a) === JSON.stringify(b) ? undefined : { path, a, b };
}

/**
 * run.json's bytes as a current RunRecord: parsed, migrated from its schema_version (none: 1) and
 * its config validated by today's schema. Non-retryable errors name the file.
 */
export function recordFromBytes(bytes: Uint8Array, uri: string): RunRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw ApplicationFailure.nonRetryable(
      `${uri} is not valid JSON (${(err as Error).message}); the run record is damaged`,
      'CorruptRunRecord',
    );
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw ApplicationFailure.nonRetryable(`${uri} is not a JSON object; the run record is damaged`, 'CorruptRunRecord');
  const version = (raw as { schema_version?: unknown }).schema_version ?? UNVERSIONED;
  const bad = typeof version === 'number' ? versionProblem(version) : `schema_version ${JSON.stringify(version)} is not a number`;
  if (bad) throw ApplicationFailure.nonRetryable(`${uri}: ${bad}`, 'RunRecordVersion');
  const migrated = migrateRunRecord(raw as Record<string, unknown>) as unknown as RunRecord;
  return { ...migrated, config: parseRunConfig(migrated.config, uri) };
}

const records = new Map<string, Promise<RunRecord>>();

/** Reads run.json, migrated to the current version and validated (cached per store and run: it never changes once written). */
export function readRunRecord(store: ObjectStore, runId: string): Promise<RunRecord> {
  const cacheKey = `${store.root}|${runId}`;
  let p = records.get(cacheKey);
  if (!p) {
    p = (async () => {
      const key = runRecordKey(runId);
      const bytes = await getIfExists(store, key);
      if (bytes === undefined) {
        throw ApplicationFailure.nonRetryable(
          `run "${runId}" has no ${store.uri(key)}: no such run in this store (check the run id and the store URI)`,
          'UnknownRun',
        );
      }
      return recordFromBytes(bytes, store.uri(key));
    })();
    p.catch(() => records.delete(cacheKey));
    records.set(cacheKey, p);
  }
  return p;
}

const resolved = new Map<string, Promise<ResolvedRun>>();

/** The run's record and resolved config (cached); a run on data reads its dataset once per process, checked against run.json. */
export async function loadRun(store: ObjectStore, runId: string): Promise<{ record: RunRecord; run: ResolvedRun }> {
  const record = await readRunRecord(store, runId);
  const cacheKey = `${store.root}|${runId}`;
  let run = resolved.get(cacheKey);
  if (!run) {
    run = (async () => {
      await preloadRunEnvironment(record.config);
      return resolveRun(
        record.config,
        record.config.data ? await loadRunData(record.config, record.data, `run "${runId}"`) : undefined,
        record.config.model.from !== null ? await readBaseModel(store, runId) : undefined,
      );
    })();
    run.catch(() => resolved.delete(cacheKey));
    resolved.set(cacheKey, run);
  }
  return { record, run: await run };
}
