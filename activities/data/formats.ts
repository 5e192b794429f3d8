/**
 * The file formats a dataset comes in, read into plain rows (one JSON-like object per row, columns
 * by name), numbered from 1 in file order:
 *
 * - JSONL (`.jsonl`, `.ndjson`): one JSON object per non-blank line; a row's `line` is its line in
 *   the file (blank lines are skipped, so rows and lines can differ).
 * - Parquet (`.parquet`), read with hyparquet (pure JavaScript, no native code: the reward and
 *   rollout workers stay `npm ci`-installable on any host; Snappy-compressed and uncompressed pages,
 *   which is what Hugging Face datasets and pandas write by default). INT64 values become numbers
 *   when they are safe integers and decimal strings otherwise; lists and structs (a chat-messages
 *   column) come back as arrays and objects.
 */
import { parquetReadObjects } from 'hyparquet';

export type DataFormat = 'jsonl' | 'parquet';

/** One row of a dataset file: its columns, its number (from 1) and, for JSONL, its line. */
export interface DataRow {
  row: number;
  line?: number;
  columns: Record<string, unknown>;
}

/** A file that cannot be read as its format says; the message names the file and the first bad row. */
export class DataFormatError extends Error {
  override readonly name = 'DataFormatError';
}

/** The format of a file from its name, or an error listing the extensions understood. */
export function formatOf(uri: string): DataFormat {
  const name = uri.split(/[?#]/)[0]!.toLowerCase();
  if (name.endsWith('.jsonl') || name.endsWith('.ndjson')) return 'jsonl';
  if (name.endsWith('.parquet')) return 'parquet';
  throw new DataFormatError(`${uri}: unknown dataset format; name the file .jsonl (JSON lines) or .parquet`);
}

/** Rows of a JSONL file (see the file comment). */
export function parseJsonl(bytes: Uint8Array, uri: string): DataRow[] {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new DataFormatError(`${uri} is not UTF-8 text`);
  }
  const rows: DataRow[] = [];
  const lines = text.split('\n');
  for (const [l, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === '') continue;
    const where = `${uri} row ${rows.length + 1} (line ${l + 1})`;
    let doc: unknown;
    try {
      doc = JSON.parse(line);
    } catch (err) {
      throw new DataFormatError(`${where} is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new DataFormatError(`${where} is not a JSON object`);
    rows.push({ row: rows.length + 1, line: l + 1, columns: doc as Record<string, unknown> });
  }
  return rows;
}

/** A Parquet value as plain JSON-like data (bigints narrowed, dates as ISO strings). */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(plain);
  if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array)) {
    return Object.fromEntries(Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, plain(x)]));
  }
  return v;
}

/** Rows of a Parquet file (see the file comment). */
export async function parseParquet(bytes: Uint8Array, uri: string): Promise<DataRow[]> {
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let objects: Record<string, unknown>[];
  try {
    objects = await parquetReadObjects({ file: buffer });
  } catch (err) {
    throw new DataFormatError(`${uri} is not a readable Parquet file: ${(err as Error).message}`);
  }
  return objects.map((o, i) => ({ row: i + 1, columns: plain(o) as Record<string, unknown> }));
}

/** Rows of a file in the given format. */
export async function parseRows(bytes: Uint8Array, uri: string, format: DataFormat = formatOf(uri)): Promise<DataRow[]> {
  return format === 'jsonl' ? parseJsonl(bytes, uri) : parseParquet(bytes, uri);
}

/** How a row is named in messages: `row 3 (line 4)` for JSONL, `row 3` for Parquet. */
export function rowName(r: Pick<DataRow, 'row' | 'line'>): string {
  return r.line === undefined ? `row ${r.row}` : `row ${r.row} (line ${r.line})`;
}
