/**
 * Typed rows ↔ Arrow IPC bytes, for the table schemas declared in schemas.ts.
 *
 * Format: the Arrow IPC **file** format (`.arrow`, "Feather v2"): magic `ARROW1` at both ends and a
 * footer, so a truncated file is detected before any row is read, and any Arrow reader (pyarrow,
 * polars, DuckDB) opens it. One record batch per file. The schema metadata carries
 * `durable_rl.schema` (the table's name) and `durable_rl.schema_version` (an integer).
 *
 * A table schema is a plain object: a name, a version, and one ColumnSpec per column (kind,
 * nullability, documentation). Row types are derived from it, so the TypeScript types, the Arrow
 * schema, the checks and docs/data-contracts.md all come from one declaration.
 *
 * Encoding checks every row (required fields, types, enum values, finite numbers, cross-column
 * rules) and names the row and column of the first problem. Decoding checks the magic, the schema
 * name and version, every column's presence and type, and nulls in required columns, naming what
 * was expected and what was found; extra columns are ignored.
 */
import {
  Bool,
  Field,
  Float32,
  Float64,
  Int32,
  List,
  Map_,
  RecordBatch,
  Schema,
  Struct,
  Table,
  Utf8,
  makeBuilder,
  makeData,
  tableFromIPC,
  tableToIPC,
  RecordBatchReader,
  type DataType,
  type Vector,
} from 'apache-arrow';
import { CorruptDataError, InvalidRowsError, SchemaMismatchError } from './errors.js';

export type ColumnKind =
  'utf8' | 'int32' | 'float32' | 'float64' | 'bool' | 'list<int32>' | 'list<float32>' | 'list<bool>' | 'list<utf8>' | 'map<utf8,float64>';

export interface ColumnSpec {
  kind: ColumnKind;
  /** Documentation, rendered into docs/data-contracts.md. */
  doc: string;
  /** May the value be null? Default false. */
  nullable?: boolean;
  /** For utf8 columns: the only allowed values. */
  values?: readonly string[];
  /** For float columns, float lists and maps: reject NaN and ±Infinity. */
  finite?: boolean;
  /**
   * The table version that added this column (it must then be nullable): files of an older
   * version the table still reads (`readsVersions`) have no such column, and read it as null.
   */
  since?: number;
}

export interface TableSchema<C extends Record<string, ColumnSpec> = Record<string, ColumnSpec>> {
  /** Value of `durable_rl.schema`. */
  name: string;
  /** Value of `durable_rl.schema_version`; bump on any incompatible change. */
  version: number;
  /**
   * Older versions this code still reads (files committed before an upgrade stay readable): a
   * column added later (`since`) reads as null in them. Writing is always at `version`.
   */
  readsVersions?: readonly number[];
  /** What one row is, for the docs. */
  doc: string;
  columns: C;
  /** Cross-column rules: returns a message for a row that breaks one (typed by defineTable). */
  check?: (row: never) => string | undefined;
  /** Documentation of the cross-column rules, for the docs. */
  rules?: readonly string[];
}

export const SCHEMA_NAME_KEY = 'durable_rl.schema';
export const SCHEMA_VERSION_KEY = 'durable_rl.schema_version';

/** A schema reference as recorded in manifests: name + version. */
export interface SchemaRef {
  name: string;
  version: number;
}

// ---- row types derived from specs ----

type Simplify<T> = { [K in keyof T]: T[K] } & {};

type BaseOut<S extends ColumnSpec> = S['kind'] extends 'utf8'
  ? S extends { values: readonly (infer V)[] }
    ? V
    : string
  : S['kind'] extends 'int32' | 'float32' | 'float64'
    ? number
    : S['kind'] extends 'bool'
      ? boolean
      : S['kind'] extends 'list<int32>'
        ? Int32Array
        : S['kind'] extends 'list<float32>'
          ? Float32Array
          : S['kind'] extends 'list<bool>'
            ? boolean[]
            : S['kind'] extends 'list<utf8>'
              ? string[]
              : S['kind'] extends 'map<utf8,float64>'
                ? Record<string, number>
                : never;

type BaseIn<S extends ColumnSpec> = S['kind'] extends 'list<int32>' | 'list<float32>'
  ? ArrayLike<number>
  : S['kind'] extends 'list<bool>'
    ? ArrayLike<boolean>
    : S['kind'] extends 'list<utf8>'
      ? readonly string[]
      : S['kind'] extends 'map<utf8,float64>'
        ? Record<string, number> | ReadonlyMap<string, number>
        : BaseOut<S>;

type NullableKeys<C> = { [K in keyof C]: C[K] extends { nullable: true } ? K : never }[keyof C];
type RequiredKeys<C> = Exclude<keyof C, NullableKeys<C>>;

type RowOfColumns<C extends Record<string, ColumnSpec>> = Simplify<
  { [K in RequiredKeys<C>]: BaseOut<C[K]> } & { [K in NullableKeys<C>]: BaseOut<C[K]> | null }
>;
type InputOfColumns<C extends Record<string, ColumnSpec>> = Simplify<
  { [K in RequiredKeys<C>]: BaseIn<C[K]> } & { [K in NullableKeys<C>]?: BaseIn<C[K]> | null }
>;

/** A decoded row: required columns present, nullable ones `value | null`; number lists as typed arrays. */
export type RowOf<T extends TableSchema> = T extends TableSchema<infer C> ? RowOfColumns<C> : never;

/** A row as accepted by the encoder: nullable columns may be omitted; lists may be plain arrays. */
export type RowInput<T extends TableSchema> = T extends TableSchema<infer C> ? InputOfColumns<C> : never;

/** Declares a table schema, keeping the literal column specs for the row types. */
export function defineTable<const C extends Record<string, ColumnSpec>>(
  t: Omit<TableSchema<C>, 'check'> & { check?: (row: RowOfColumns<C>) => string | undefined },
): TableSchema<C> {
  for (const [name, spec] of Object.entries(t.columns)) {
    if (spec.values && spec.kind !== 'utf8') throw new Error(`${t.name}.${name}: "values" only applies to utf8 columns`);
    if (spec.since !== undefined && !spec.nullable)
      throw new Error(`${t.name}.${name}: a column added in a later version ("since") must be nullable, so older files read it as null`);
  }
  return t as TableSchema<C>;
}

// ---- Arrow types ----

function arrowType(kind: ColumnKind): DataType {
  switch (kind) {
    case 'utf8':
      return new Utf8();
    case 'int32':
      return new Int32();
    case 'float32':
      return new Float32();
    case 'float64':
      return new Float64();
    case 'bool':
      return new Bool();
    case 'list<int32>':
      return new List(new Field('item', new Int32(), false));
    case 'list<float32>':
      return new List(new Field('item', new Float32(), false));
    case 'list<bool>':
      return new List(new Field('item', new Bool(), false));
    case 'list<utf8>':
      return new List(new Field('item', new Utf8(), false));
    case 'map<utf8,float64>':
      return new Map_(
        new Field(
          'entries',
          new Struct<{ key: Utf8; value: Float64 }>([new Field('key', new Utf8(), false), new Field('value', new Float64(), false)]),
          false,
        ),
        false,
      );
  }
}

/** The Arrow schema of a table schema, with its name and version in the metadata. */
export function arrowSchema(t: TableSchema): Schema {
  const fields = Object.entries(t.columns).map(([name, spec]) => new Field(name, arrowType(spec.kind), spec.nullable ?? false));
  return new Schema(
    fields,
    new Map([
      [SCHEMA_NAME_KEY, t.name],
      [SCHEMA_VERSION_KEY, String(t.version)],
    ]),
  );
}

/** The Arrow type of a column as text (`List<Int32>`), for docs and messages. */
export function arrowTypeName(kind: ColumnKind): string {
  return String(arrowType(kind));
}

// ---- row checks ----

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

function isArrayLike(v: unknown): v is ArrayLike<unknown> {
  return Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView));
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return v.length > 40 ? `a string "${v.slice(0, 40)}…"` : `"${v}"`;
  return typeof v;
}

/** Why a value does not fit a column, or undefined if it fits. `deep` checks list elements too. */
function columnProblem(spec: ColumnSpec, v: unknown, deep: boolean): string | undefined {
  if (v === null || v === undefined) return spec.nullable ? undefined : 'is required but missing (null)';
  switch (spec.kind) {
    case 'utf8':
      if (typeof v !== 'string') return `must be a string, got ${describe(v)}`;
      if (spec.values && !spec.values.includes(v))
        return `must be one of ${spec.values.map((x) => `"${x}"`).join(', ')}, got ${describe(v)}`;
      return undefined;
    case 'int32':
      if (typeof v !== 'number' || !Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX)
        return `must be a 32-bit integer, got ${describe(v)}`;
      return undefined;
    case 'float32':
    case 'float64':
      if (typeof v !== 'number') return `must be a number, got ${describe(v)}`;
      if (spec.finite && !Number.isFinite(v))
        return `must be finite, got ${v}${spec.nullable ? ' (use null, and say why where the schema has an error column)' : ''}`;
      return undefined;
    case 'bool':
      return typeof v === 'boolean' ? undefined : `must be a boolean, got ${describe(v)}`;
    case 'list<int32>':
    case 'list<float32>':
    case 'list<bool>':
    case 'list<utf8>': {
      if (!isArrayLike(v)) return `must be an array, got ${describe(v)}`;
      if (!deep || v instanceof Int32Array) return undefined;
      if (v instanceof Float32Array && !(spec.kind === 'list<float32>' && spec.finite)) return undefined;
      for (let i = 0; i < v.length; i++) {
        const x = v[i];
        if (spec.kind === 'list<bool>') {
          if (typeof x !== 'boolean') return `element ${i} must be a boolean, got ${describe(x)}`;
        } else if (spec.kind === 'list<utf8>') {
          if (typeof x !== 'string') return `element ${i} must be a string, got ${describe(x)}`;
        } else if (typeof x !== 'number') {
          return `element ${i} must be a number, got ${describe(x)}`;
        } else if (spec.kind === 'list<int32>' && (!Number.isInteger(x) || x < INT32_MIN || x > INT32_MAX)) {
          return `element ${i} must be a 32-bit integer, got ${x}`;
        } else if (spec.finite && !Number.isFinite(x)) {
          return `element ${i} must be finite, got ${x}`;
        }
      }
      return undefined;
    }
    case 'map<utf8,float64>': {
      const entries =
        v instanceof Map ? [...v.entries()] : typeof v === 'object' && !isArrayLike(v) ? Object.entries(v as object) : undefined;
      if (!entries) return `must be an object of name → number, got ${describe(v)}`;
      for (const [k, x] of entries) {
        if (typeof k !== 'string') return `keys must be strings, got ${describe(k)}`;
        if (typeof x !== 'number') return `entry "${k}" must be a number, got ${describe(x)}`;
        if (spec.finite && !Number.isFinite(x)) return `entry "${k}" must be finite, got ${x}`;
      }
      return undefined;
    }
  }
}

function rowLabel(row: Record<string, unknown>, index: number): string {
  const ids = ['prompt_id', 'sample_id', 'node_id', 'step']
    .filter((k) => row[k] !== undefined && row[k] !== null)
    .map((k) => `${k}=${JSON.stringify(row[k])}`);
  return `row ${index}${ids.length ? ` (${ids.join(', ')})` : ''}`;
}

/** Checks rows against a schema; throws InvalidRowsError naming the first bad row and column. */
export function validateRows<T extends TableSchema>(t: T, rows: readonly RowInput<T>[], deep = true): void {
  if (!Array.isArray(rows)) throw new InvalidRowsError(t.name, `expected an array of rows, got ${describe(rows)}`);
  const specs = Object.entries(t.columns);
  rows.forEach((row, i) => {
    if (row === null || typeof row !== 'object') throw new InvalidRowsError(t.name, `row ${i} must be an object, got ${describe(row)}`);
    const r = row as Record<string, unknown>;
    const normalized: Record<string, unknown> = { ...r };
    for (const [name, spec] of specs) {
      const problem = columnProblem(spec, r[name], deep);
      if (problem) throw new InvalidRowsError(t.name, `${rowLabel(r, i)}: column "${name}" ${problem}`);
      if (r[name] === undefined) normalized[name] = null; // rules see omitted nullable columns as null
    }
    const msg = t.check?.(normalized as never);
    if (msg) throw new InvalidRowsError(t.name, `${rowLabel(r, i)}: ${msg}`);
  });
}

// ---- encode ----

function toArrowValue(kind: ColumnKind, v: unknown): unknown {
  if (v === undefined || v === null) return null;
  if (kind === 'map<utf8,float64>') {
    const entries = v instanceof Map ? [...(v as Map<string, number>).entries()] : Object.entries(v as Record<string, number>);
    entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)); // canonical order: same content, same bytes
    return new Map(entries);
  }
  if (kind === 'list<bool>' && !Array.isArray(v)) return Array.from(v as ArrayLike<boolean>);
  return v;
}

/**
 * A list<int32|float32> column built in one pass: all values copied into one typed array, plus
 * offsets and a validity bitmap (the generic builder appends element by element, ~10× slower).
 */
function numberListData(type: List, kind: 'list<int32>' | 'list<float32>', values: (ArrayLike<number> | null | undefined)[]) {
  const n = values.length;
  let total = 0;
  for (const v of values) total += v ? v.length : 0;
  const flat = kind === 'list<int32>' ? new Int32Array(total) : new Float32Array(total);
  const offsets = new Int32Array(n + 1);
  const validity = new Uint8Array(Math.ceil(n / 8));
  let nullCount = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v === null || v === undefined) {
      nullCount++;
      offsets[i + 1] = offsets[i]!;
      continue;
    }
    flat.set(v, offsets[i]!);
    offsets[i + 1] = offsets[i]! + v.length;
    validity[i >> 3]! |= 1 << (i & 7);
  }
  const child = makeData({ type: type.children[0]!.type, length: total, nullCount: 0, data: flat });
  return makeData({ type, length: n, nullCount, nullBitmap: nullCount ? validity : null, valueOffsets: offsets, child });
}

/** Builds an Arrow table from rows (validated first). */
export function toArrowTable<T extends TableSchema>(t: T, rows: readonly RowInput<T>[]): Table {
  validateRows(t, rows);
  const schema = arrowSchema(t);
  const children = schema.fields.map((field) => {
    const kind = t.columns[field.name]!.kind;
    if (kind === 'list<int32>' || kind === 'list<float32>') {
      return numberListData(
        field.type as List,
        kind,
        rows.map((r) => (r as Record<string, unknown>)[field.name] as ArrayLike<number> | null | undefined),
      );
    }
    const builder = makeBuilder({ type: field.type, nullValues: [null, undefined] });
    for (const row of rows) builder.append(toArrowValue(kind, (row as Record<string, unknown>)[field.name]));
    return builder.finish().flush();
  });
  const data = makeData({ type: new Struct(schema.fields), length: rows.length, nullCount: 0, children });
  return new Table([new RecordBatch(schema, data)]);
}

/** Rows → Arrow IPC file bytes. Same rows, same bytes. */
export function writeTable<T extends TableSchema>(t: T, rows: readonly RowInput<T>[]): Uint8Array {
  return tableToIPC(toArrowTable(t, rows), 'file');
}

// ---- decode ----

const MAGIC = [0x41, 0x52, 0x52, 0x4f, 0x57, 0x31]; // "ARROW1"

function hasMagic(bytes: Uint8Array, at: number): boolean {
  return MAGIC.every((b, i) => bytes[at + i] === b);
}

function checkFraming(bytes: Uint8Array, source: string): void {
  if (!(bytes instanceof Uint8Array)) throw new CorruptDataError(source, `expected bytes (Uint8Array), got ${describe(bytes)}`);
  if (bytes.byteLength < 12 || !hasMagic(bytes, 0)) {
    throw new CorruptDataError(source, `not an Arrow IPC file: it does not start with the ARROW1 magic (${bytes.byteLength} bytes)`);
  }
  if (!hasMagic(bytes, bytes.byteLength - 6)) {
    throw new CorruptDataError(source, `truncated Arrow IPC file: the ARROW1 magic is missing at the end (${bytes.byteLength} bytes)`);
  }
}

/** The schema name and version recorded in Arrow IPC file bytes (only the footer and schema are read). */
export function readSchemaRef(bytes: Uint8Array, source = 'Arrow data'): { name: string | undefined; version: number | undefined } {
  checkFraming(bytes, source);
  let schema: Schema;
  try {
    const reader = RecordBatchReader.from(bytes);
    reader.open();
    schema = reader.schema;
  } catch (err) {
    throw new CorruptDataError(source, `cannot read the Arrow schema (${(err as Error).message})`, { cause: err });
  }
  const name = schema.metadata.get(SCHEMA_NAME_KEY);
  const version = schema.metadata.get(SCHEMA_VERSION_KEY);
  return { name, version: version === undefined ? undefined : Number(version) };
}

function extract(kind: ColumnKind, vec: Vector, n: number): unknown[] {
  const out = new Array<unknown>(n);
  for (let i = 0; i < n; i++) {
    const v: unknown = vec.get(i);
    if (v === null || v === undefined) {
      out[i] = null;
      continue;
    }
    switch (kind) {
      case 'list<int32>':
        out[i] = Int32Array.from((v as Vector).toArray() as Int32Array);
        break;
      case 'list<float32>':
        out[i] = Float32Array.from((v as Vector).toArray() as Float32Array);
        break;
      case 'list<bool>':
        out[i] = Array.from(v as Iterable<boolean>);
        break;
      case 'list<utf8>':
        out[i] = Array.from(v as Iterable<string>);
        break;
      case 'map<utf8,float64>':
        out[i] = (v as { toJSON(): Record<string, number> }).toJSON();
        break;
      default:
        out[i] = v;
    }
  }
  return out;
}

/**
 * Arrow IPC file bytes → typed rows. `source` (a URI or file name) is named in every error.
 * Throws CorruptDataError (truncated, not Arrow, unreadable) or SchemaMismatchError (wrong schema
 * name or version, missing column, wrong column type, nulls in a required column).
 */
export function readTable<T extends TableSchema>(t: T, bytes: Uint8Array, source = `${t.name} data`): RowOf<T>[] {
  checkFraming(bytes, source);
  let table: Table;
  try {
    table = tableFromIPC(bytes);
  } catch (err) {
    throw new CorruptDataError(source, `cannot decode the Arrow IPC file (${(err as Error).message})`, { cause: err });
  }
  const foundName = table.schema.metadata.get(SCHEMA_NAME_KEY);
  const foundVersion = table.schema.metadata.get(SCHEMA_VERSION_KEY);
  if (foundName !== t.name) {
    throw new SchemaMismatchError(
      source,
      `expected schema "${t.name}", found ${foundName === undefined ? `no ${SCHEMA_NAME_KEY} metadata` : `"${foundName}"`}`,
    );
  }
  const version = foundVersion === String(t.version) ? t.version : (t.readsVersions ?? []).find((v) => String(v) === foundVersion);
  if (version === undefined) {
    const readable = [t.version, ...(t.readsVersions ?? [])].join(', ');
    throw new SchemaMismatchError(
      source,
      `expected ${t.name} schema version ${readable}, found ${foundVersion === undefined ? `no ${SCHEMA_VERSION_KEY} metadata` : `version ${foundVersion}`}`,
    );
  }
  const n = table.numRows;
  const columns: [string, unknown[]][] = [];
  for (const [name, spec] of Object.entries(t.columns)) {
    if (spec.since !== undefined && version < spec.since) {
      columns.push([name, new Array<null>(n).fill(null)]); // a column this older file predates
      continue;
    }
    const field = table.schema.fields.find((f) => f.name === name);
    if (!field) throw new SchemaMismatchError(source, `missing column "${name}" (${arrowTypeName(spec.kind)}) of ${t.name} v${t.version}`);
    const expected = arrowTypeName(spec.kind);
    if (String(field.type) !== expected) {
      throw new SchemaMismatchError(source, `column "${name}" has type ${String(field.type)}, expected ${expected}`);
    }
    const vec = table.getChild(name)!;
    if (!spec.nullable && vec.nullCount > 0) {
      throw new SchemaMismatchError(source, `column "${name}" is required but has ${vec.nullCount} null value(s)`);
    }
    try {
      columns.push([name, extract(spec.kind, vec, n)]);
    } catch (err) {
      throw new CorruptDataError(source, `cannot read column "${name}" (${(err as Error).message})`, { cause: err });
    }
  }
  const rows = new Array<RowOf<T>>(n);
  for (let i = 0; i < n; i++) {
    const row: Record<string, unknown> = {};
    for (const [name, values] of columns) row[name] = values[i];
    rows[i] = row as RowOf<T>;
  }
  try {
    validateRows(t, rows as unknown as RowInput<T>[], false);
  } catch (err) {
    throw new SchemaMismatchError(source, `rows break the ${t.name} contract: ${(err as Error).message}`);
  }
  return rows;
}
