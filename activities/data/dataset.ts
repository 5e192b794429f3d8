/**
 * A prompt dataset of the user's own, as a run reads it (the run config's `data`): a train file, an
 * optional eval file (or a fraction of train held out by the seed), the columns that hold the
 * prompt, the gold completion and the reference answer, an optional template and system message.
 *
 * `loadDataset` reads the files (activities/data/source.ts), parses them (formats.ts), turns every
 * row into an example and checks it, naming the first bad row: the prompt column (a string, or a
 * list of `{role, content}` chat messages — TRL's conversational format) or every column the
 * template names, the completion column where SFT needs it, a non-empty split. Columns that are not
 * mapped travel in the example's `metadata`, which rewards receive (TRL passes dataset columns to
 * reward functions the same way).
 *
 * Prompt text, for a model trained from scratch on characters: a string prompt as it is; with a
 * chat prompt or a `system` message, the messages rendered one per line as `role: content`,
 * followed by `assistant:` (`renderChat`). The messages themselves are kept (`messages`) for a
 * model with a chat template of its own.
 */
import { z } from '../common/config.js';
import { splitHeldOut, heldOutCount } from './reward-model-split.js';
import { DataFormatError, formatOf, parseRows, rowName, type DataRow } from './formats.js';
import { DataSourceError, readDataFile, resolveDataUri, type DataFileIdentity } from './source.js';

/** The run config's `data` (activities/run/config.ts): where the dataset is and which columns hold what. */
export const dataConfigSchema = z.strictObject({
  /** The training file: a path (relative to the config file's directory), `file://` or `s3://bucket/key`; `.jsonl` or `.parquet`. */
  train: z.string().min(1),
  /** A held-out file with the same columns, for the run's evaluations; null (default): `evalFraction` of train. */
  eval: z.string().min(1).nullable().default(null),
  /**
   * Without `eval`: the fraction of the training rows held out for evaluation, round(fraction · rows)
   * of them chosen by the run seed (never trained on). 0 (default) with no `eval` file: evaluations
   * measure the first training rows (in file order) and say so.
   */
  evalFraction: z.number().min(0).lt(1).default(0),
  /** Column of the prompt: a string, or a list of chat messages `{role, content}` (TRL's conversational format). Unused with `template`. */
  promptColumn: z.string().min(1).default('prompt'),
  /** Column of the gold completion SFT phases train on: a string, a number, or a list of assistant messages (their contents joined). */
  completionColumn: z.string().min(1).default('completion'),
  /** Column of the reference answer rewards compare with; null (default): the completion column. */
  referenceColumn: z.string().min(1).nullable().default(null),
  /** The prompt filled from columns instead of `promptColumn`: `{name}` is replaced by column `name` (`{{` and `}}` are literal braces). */
  template: z.string().min(1).nullable().default(null),
  /** A system message put before each prompt (the prompt then becomes chat messages). */
  system: z.string().min(1).nullable().default(null),
});
export type DataConfig = z.output<typeof dataConfigSchema>;

/** A chat message of a conversational dataset. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** One row of the dataset, ready for a run. */
export interface DataExample {
  /** Row number in its file, from 1. */
  row: number;
  /** The prompt text the policy sees (see the file comment for chat prompts). */
  prompt: string;
  /** The prompt as chat messages (system first when `system` is set), or null for a plain string prompt. */
  messages: ChatMessage[] | null;
  /** The gold completion, or null when the row has none (allowed when no phase trains on it). */
  completion: string | null;
  /** The reference answer rewards compare with ('' when the row has none). */
  reference: string;
  /** Every column that is not mapped (prompt, completion, reference, template columns). */
  metadata: Record<string, unknown>;
}

/** A checked dataset: its splits, the identity of its files, and its character alphabet. */
export interface LoadedDataset {
  config: DataConfig;
  train: DataExample[];
  eval: DataExample[];
  /** Where the eval split comes from: its own file, held out of train by the seed, or the first train rows. */
  evalSource: 'file' | 'held_out' | 'train';
  files: { train: DataFileIdentity; eval: DataFileIdentity | null };
  /**
   * Every character of every prompt and completion of both splits (held-out rows included), each
   * once, in code-point order (deterministic): the vocabulary of a character model trained from
   * scratch on this data.
   */
  alphabet: string;
  /** The longest prompt of both splits, in code points (it sizes a from-scratch model's positions). */
  maxPromptChars: number;
  /** The longest completion of both splits, in code points (0 when no row has one). */
  maxCompletionChars: number;
}

/** A dataset that cannot be used; `field` is the `data` field concerned (`train`, `eval`, `promptColumn`, …). */
export class DatasetError extends Error {
  override readonly name = 'DatasetError';
  constructor(
    message: string,
    readonly field: keyof DataConfig,
  ) {
    super(message);
  }
}

/** Renders chat messages as the plain text a character model reads: `role: content` lines, then `assistant:`. */
export function renderChat(messages: readonly ChatMessage[]): string {
  return messages.map((m) => `${m.role}: ${m.content}\n`).join('') + 'assistant:';
}

/** The placeholders of a template, in order of first use. */
export function templateColumns(template: string): string[] {
  const out: string[] = [];
  for (const m of template.replace(/\{\{|\}\}/g, '').matchAll(/\{([^{}]+)\}/g)) if (!out.includes(m[1]!)) out.push(m[1]!);
  return out;
}

function fillTemplate(template: string, columns: Record<string, unknown>, where: string): string {
  return template.replace(/\{\{|\}\}|\{([^{}]+)\}/g, (all, name: string | undefined) => {
    if (name === undefined) return all[0]!;
    const v = columns[name];
    if (typeof v === 'string') return v;
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    throw new DatasetError(
      `${where} has no "${name}" column for the template (got ${v === undefined ? 'nothing' : JSON.stringify(v)})`,
      'template',
    );
  });
}

function isMessages(v: unknown): v is ChatMessage[] {
  return (
    Array.isArray(v) &&
    v.length > 0 &&
    v.every((m) => m !== null && typeof m === 'object' && typeof m.role === 'string' && typeof m.content === 'string')
  );
}

/** A completion or reference cell as text: a string, a number, or assistant messages (contents joined); undefined if it is none of these. */
function answerText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (isMessages(v)) return v.map((m) => m.content).join('');
  return undefined;
}

/** One row as an example, or a DatasetError naming the row and the column. */
function example(r: DataRow, c: DataConfig, uri: string, needCompletion: boolean): DataExample {
  const where = `${uri} ${rowName(r)}`;
  const cols = r.columns;
  const mapped = new Set<string>();
  let messages: ChatMessage[] | null = null;
  let text: string;
  if (c.template !== null) {
    text = fillTemplate(c.template, cols, where);
    for (const n of templateColumns(c.template)) mapped.add(n);
  } else {
    const v = cols[c.promptColumn];
    mapped.add(c.promptColumn);
    if (typeof v === 'string') text = v;
    else if (isMessages(v)) {
      messages = v.map((m) => ({ role: m.role, content: m.content }));
      text = '';
    } else {
      throw new DatasetError(
        `${where} has no "${c.promptColumn}" column holding a string or a list of {role, content} messages (promptColumn; got ${v === undefined ? 'nothing' : JSON.stringify(v).slice(0, 80)})`,
        'promptColumn',
      );
    }
  }
  if (c.system !== null) messages = [{ role: 'system', content: c.system }, ...(messages ?? [{ role: 'user', content: text }])];
  const prompt = messages ? renderChat(messages) : text;
  if (prompt.length === 0) throw new DatasetError(`${where}: the prompt is empty`, c.template !== null ? 'template' : 'promptColumn');

  const rawCompletion = cols[c.completionColumn];
  mapped.add(c.completionColumn);
  const completion = answerText(rawCompletion) ?? null;
  if (rawCompletion !== undefined && rawCompletion !== null && completion === null) {
    throw new DatasetError(
      `${where}: the "${c.completionColumn}" column is not a string, a number or assistant messages (completionColumn)`,
      'completionColumn',
    );
  }
  if (needCompletion && (completion === null || completion.length === 0)) {
    throw new DatasetError(
      `${where} has no "${c.completionColumn}" completion, which the run's sft phases train on (completionColumn; got ${rawCompletion === undefined ? 'nothing' : JSON.stringify(rawCompletion)})`,
      'completionColumn',
    );
  }
  let reference = completion ?? '';
  if (c.referenceColumn !== null) {
    mapped.add(c.referenceColumn);
    const ref = answerText(cols[c.referenceColumn]);
    if (ref === undefined) {
      throw new DatasetError(
        `${where} has no "${c.referenceColumn}" column holding a string or a number (referenceColumn; got ${cols[c.referenceColumn] === undefined ? 'nothing' : JSON.stringify(cols[c.referenceColumn])})`,
        'referenceColumn',
      );
    }
    reference = ref;
  }
  const metadata: Record<string, unknown> = {};
  for (const k of Object.keys(cols)) if (!mapped.has(k)) metadata[k] = cols[k];
  return { row: r.row, prompt, messages, completion, reference, metadata };
}

async function readExamples(
  ref: string,
  c: DataConfig,
  field: 'train' | 'eval',
  needCompletion: boolean,
): Promise<{ examples: DataExample[]; identity: DataFileIdentity }> {
  const uri = resolveDataUri(ref);
  let format;
  let rows: DataRow[];
  let identity: DataFileIdentity;
  try {
    format = formatOf(uri);
    const file = await readDataFile(uri);
    identity = file.identity;
    rows = await parseRows(file.bytes, uri, format);
  } catch (err) {
    if (err instanceof DataFormatError || err instanceof DataSourceError) throw new DatasetError(err.message, field);
    throw err;
  }
  if (rows.length === 0) throw new DatasetError(`${uri} has no rows: the ${field} split is empty`, field);
  return { examples: rows.map((r) => example(r, c, uri, needCompletion)), identity };
}

/** Longest text of a list, in code points. */
/** The longest of some texts in code points (0 for none, or null). */
export const longest = (xs: readonly (string | null)[]): number => xs.reduce((m, s) => Math.max(m, s === null ? 0 : [...s].length), 0);

/**
 * Reads and checks the dataset (see the file comment). `seed` draws the held-out rows of
 * `evalFraction`; `needCompletion` (the run has an sft phase) makes a missing completion an error.
 * Errors are `DatasetError`s naming the file, the first bad row and the `data` field.
 */
export async function loadDataset(c: DataConfig, opts: { seed: number; needCompletion: boolean }): Promise<LoadedDataset> {
  if (c.eval !== null && c.evalFraction > 0) {
    throw new DatasetError('give either an eval file or evalFraction, not both', 'evalFraction');
  }
  const train = await readExamples(c.train, c, 'train', opts.needCompletion);
  let trainRows = train.examples;
  let evalRows: DataExample[];
  let evalSource: LoadedDataset['evalSource'];
  let evalFile: DataFileIdentity | null = null;
  if (c.eval !== null) {
    const e = await readExamples(c.eval, c, 'eval', false);
    evalRows = e.examples;
    evalFile = e.identity;
    evalSource = 'file';
  } else if (c.evalFraction > 0) {
    const k = heldOutCount(trainRows.length, c.evalFraction);
    if (k < 1 || k >= trainRows.length) {
      throw new DatasetError(
        `evalFraction ${c.evalFraction} of the ${trainRows.length} training rows holds out ${k}: leave at least one row on each side (or give an eval file)`,
        'evalFraction',
      );
    }
    const s = splitHeldOut(trainRows, c.evalFraction, opts.seed);
    trainRows = s.train;
    evalRows = s.heldOut;
    evalSource = 'held_out';
  } else {
    evalRows = trainRows;
    evalSource = 'train';
  }
  // every row the run tokenizes: a held-out prompt outside the alphabet or the limits would stop the run at its first evaluation
  const all = [...trainRows, ...(evalSource === 'train' ? [] : evalRows)];
  const chars = new Set<string>();
  for (const x of all) {
    for (const ch of x.prompt) chars.add(ch);
    for (const ch of x.completion ?? '') chars.add(ch);
  }
  const alphabet = [...chars].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!).join('');
  return {
    config: c,
    train: trainRows,
    eval: evalRows,
    evalSource,
    files: { train: train.identity, eval: evalFile },
    alphabet,
    maxPromptChars: longest(all.map((x) => x.prompt)),
    maxCompletionChars: longest(all.map((x) => x.completion)),
  };
}
