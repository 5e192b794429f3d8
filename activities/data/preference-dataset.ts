/**
 * The minimal loader of a preference dataset for the offline `dpo` phase (activities/run/config.ts):
 * a JSONL file, one JSON object per non-blank line, with a prompt, a chosen (preferred) and a
 * rejected completion, each a string, under configurable column names. It reads the whole file into
 * memory and checks every row; a full dataset feature (formats, splits, streaming, hub datasets) is
 * another issue's job.
 *
 * Rows are numbered from 1 in file order, blank lines skipped (the number is the row's, and the
 * error also names its line): the JSONL reader of `formats.ts`, the one the run's `data` uses. `loadPreferenceDataset` throws `PreferenceDatasetError` naming the
 * first bad row; `alphabet` (the task's character vocabulary) makes a character outside it an error
 * too, so a run config is refused before the run starts rather than at the step that meets it.
 */
import { readFileSync } from 'node:fs';
import { DataFormatError, parseJsonl, rowName, type DataRow } from './formats.js';

/** Where a preference dataset is and which columns hold what (the `dpo` phase's `dataset`). */
export interface PreferenceDatasetSpec {
  path: string;
  promptColumn: string;
  chosenColumn: string;
  rejectedColumn: string;
}

export interface PreferenceRow {
  prompt: string;
  chosen: string;
  rejected: string;
}

/** A dataset that cannot be used; `field` is the spec field the problem is about (`path` for the file and its rows). */
export class PreferenceDatasetError extends Error {
  constructor(
    message: string,
    readonly field: keyof PreferenceDatasetSpec = 'path',
  ) {
    super(message);
    this.name = 'PreferenceDatasetError';
  }
}

/** Reads and checks every row of the dataset (see the file comment). */
export function loadPreferenceDataset(spec: PreferenceDatasetSpec, opts: { alphabet?: string } = {}): PreferenceRow[] {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(spec.path);
  } catch (err) {
    throw new PreferenceDatasetError(`cannot read the preference dataset ${spec.path}: ${(err as Error).message}`);
  }
  const allowed = opts.alphabet === undefined ? null : new Set(opts.alphabet);
  const columns = [
    ['prompt', spec.promptColumn],
    ['chosen', spec.chosenColumn],
    ['rejected', spec.rejectedColumn],
  ] as const;
  let docs: DataRow[];
  try {
    docs = parseJsonl(bytes, spec.path);
  } catch (err) {
    if (err instanceof DataFormatError) throw new PreferenceDatasetError(err.message);
    throw err;
  }
  const rows: PreferenceRow[] = [];
  for (const doc of docs) {
    const where = `${spec.path} ${rowName(doc)}`;
    const row: Partial<PreferenceRow> = {};
    for (const [key, column] of columns) {
      const v = doc.columns[column];
      const field = `${key}Column` as const;
      if (typeof v !== 'string') {
        throw new PreferenceDatasetError(
          `${where} has no string "${column}" column (${field}; got ${v === undefined ? 'nothing' : JSON.stringify(v)})`,
          field,
        );
      }
      if (key !== 'prompt' && v.length === 0)
        throw new PreferenceDatasetError(`${where}: the "${column}" completion is empty (${field})`, field);
      if (allowed) {
        const bad = [...v].find((c) => !allowed.has(c));
        if (bad !== undefined)
          throw new PreferenceDatasetError(
            `${where}: the "${column}" column has the character ${JSON.stringify(bad)}, which is not in the task's alphabet`,
            field,
          );
      }
      row[key] = v;
    }
    rows.push(row as PreferenceRow);
  }
  if (rows.length === 0) throw new PreferenceDatasetError(`the preference dataset ${spec.path} has no rows`);
  return rows;
}

/** The `count` rows of a step that starts at row `offset`, wrapping around at the end (file order, epoch after epoch). */
export function preferenceBatch(rows: readonly PreferenceRow[], offset: number, count: number): PreferenceRow[] {
  return Array.from({ length: count }, (_, k) => rows[(offset + k) % rows.length]!);
}
