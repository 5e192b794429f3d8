/**
 * safetensors read/write (https://huggingface.co/docs/safetensors): the weight format of Hugging Face
 * checkpoints and of every checkpoint durable-rl writes.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of JSON header
 * (`{"__metadata__": {..}, "<name>": {"dtype", "shape", "data_offsets": [begin, end]}}`), then the
 * tensor bytes; offsets are relative to the end of the header and the tensors tile the data region
 * exactly.
 *
 * Reading accepts F32, BF16 and F16 (both upcast to F32 — the engine computes in float32) and the
 * integer types I64 and I32 (kept as BigInt64Array / Int32Array). The header is validated before any
 * tensor is touched: known dtype, shape of non-negative integers, byte size matching the shape,
 * offsets contiguous and within the file; every error names the tensor and the file.
 *
 * Writing is deterministic: tensors in sorted-name order (code-unit order), header keys in that
 * order with `__metadata__` first, header padded with spaces to a multiple of 8 bytes (so the data
 * region is 8-byte aligned, as the reference Rust writer does). The same tensors and metadata always
 * give the same bytes, so checkpoints can be compared by sha256.
 *
 * Sharded checkpoints (`model-00001-of-00003.safetensors` + `model.safetensors.index.json` with a
 * `weight_map`) are read and written too.
 */
import { open, readFile, readdir, writeFile, mkdir, rename, rm } from 'node:fs/promises';
import { endianness } from 'node:os';
import path from 'node:path';

/** dtypes that can be read (`F32` | `BF16` | `I64` | `I32` are also written; BF16 from a `Bf16Tensor`). */
export const READABLE_DTYPES = ['F32', 'F16', 'BF16', 'I64', 'I32'] as const;
export type SafetensorsDtype = (typeof READABLE_DTYPES)[number];
/** Every dtype the safetensors format defines, for telling "unknown" from "not supported". */
const KNOWN_DTYPES: Record<string, number> = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E5M2: 1,
  F8_E4M3: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  F64: 8,
  I64: 8,
  U64: 8,
};

/** An in-memory tensor: float tensors are always float32 after reading. */
export type Tensor =
  | { dtype: 'F32'; shape: number[]; data: Float32Array }
  | { dtype: 'I64'; shape: number[]; data: BigInt64Array }
  | { dtype: 'I32'; shape: number[]; data: Int32Array };

/**
 * A bfloat16 tensor to write: its raw bits (`toBf16`). Reading widens BF16 to an F32 `Tensor`, so
 * this type is only ever written.
 */
export interface Bf16Tensor {
  dtype: 'BF16';
  shape: number[];
  data: Uint16Array;
}

/** What `serializeSafetensors` writes: any in-memory tensor, or a bfloat16 one. */
export type WritableTensor = Tensor | Bf16Tensor;

/** Tensors by name. A Map keeps names out of prototype territory (`__proto__`, `constructor`). */
export type TensorMap = Map<string, Tensor>;

/** The contents of one safetensors file. */
export interface SafetensorsContents {
  tensors: TensorMap;
  /** The `__metadata__` string map (empty when absent). */
  metadata: Record<string, string>;
  /** dtype each tensor had in the file (before upcasting). */
  sourceDtypes: Map<string, SafetensorsDtype>;
}

/** A malformed, truncated or unsupported safetensors file or checkpoint directory. */
export class SafetensorsError extends Error {
  override readonly name = 'SafetensorsError';
}

/** One validated header entry; offsets are absolute within the file. */
export interface HeaderEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte offset of the tensor in the file. */
  start: number;
  byteLength: number;
}

/** The safetensors format caps the header at 100 MB. */
const MAX_HEADER = 100_000_000;

if (endianness() !== 'LE') {
  throw new SafetensorsError('safetensors I/O assumes a little-endian host');
}

const elementCount = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/**
 * Validates a header's JSON and returns its entries in data order plus the metadata.
 * `headerLength` is N from the prefix; `fileSize` the total byte count of the file.
 */
function validateHeader(
  json: unknown,
  headerLength: number,
  fileSize: number,
  what: string,
): { entries: HeaderEntry[]; metadata: Record<string, string> } {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new SafetensorsError(`${what}: header is not a JSON object`);
  }
  const dataStart = 8 + headerLength;
  const dataSize = fileSize - dataStart;
  let metadata: Record<string, string> = {};
  const raw: { name: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value) || Object.values(value).some((v) => typeof v !== 'string')) {
        throw new SafetensorsError(`${what}: __metadata__ must be an object of strings`);
      }
      metadata = { ...(value as Record<string, string>) };
      continue;
    }
    const bad = (msg: string) => new SafetensorsError(`${what}: tensor "${name}": ${msg}`);
    if (typeof value !== 'object' || value === null) throw bad('header entry is not an object');
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in KNOWN_DTYPES)) {
      throw bad(`unknown dtype ${JSON.stringify(dtype)} (safetensors dtypes: ${Object.keys(KNOWN_DTYPES).join(', ')})`);
    }
    if (!(READABLE_DTYPES as readonly string[]).includes(dtype)) {
      throw bad(`dtype ${dtype} is not supported (readable: ${READABLE_DTYPES.join(', ')}); convert the checkpoint`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw bad(`shape ${JSON.stringify(shape)} must be an array of non-negative integers`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      throw bad(`data_offsets ${JSON.stringify(offsets)} must be [begin, end] with 0 <= begin <= end`);
    }
    const expected = elementCount(shape) * KNOWN_DTYPES[dtype]!;
    if (offsets[1] - offsets[0] !== expected) {
      throw bad(`data_offsets span ${offsets[1] - offsets[0]} bytes but ${dtype} ${JSON.stringify(shape)} needs ${expected}`);
    }
    if (offsets[1] > dataSize) {
      throw bad(`data_offsets end ${offsets[1]} lies beyond the data region (${dataSize} bytes): the file is truncated`);
    }
    raw.push({ name, dtype: dtype as SafetensorsDtype, shape: [...shape], begin: offsets[0], end: offsets[1] });
  }
  raw.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  for (const r of raw) {
    if (r.begin !== cursor) {
      throw new SafetensorsError(
        `${what}: tensor "${r.name}": data_offsets begin ${r.begin} but the previous tensor ends at ${cursor} (tensors must be contiguous, without gaps or overlaps)`,
      );
    }
    cursor = r.end;
  }
  if (cursor !== dataSize) {
    throw new SafetensorsError(`${what}: tensors cover ${cursor} bytes but the data region holds ${dataSize} (trailing bytes)`);
  }
  return {
    entries: raw.map((r) => ({ name: r.name, dtype: r.dtype, shape: r.shape, start: dataStart + r.begin, byteLength: r.end - r.begin })),
    metadata,
  };
}

function headerLengthOf(prefix: Uint8Array, fileSize: number, what: string): number {
  if (fileSize < 8)
    throw new SafetensorsError(`${what}: ${fileSize} bytes is too short for a safetensors file (8-byte header length missing)`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER)) throw new SafetensorsError(`${what}: header length ${n} exceeds the 100 MB limit (not a safetensors file?)`);
  if (Number(n) > fileSize - 8)
    throw new SafetensorsError(`${what}: header length ${n} runs past the end of the ${fileSize}-byte file (truncated?)`);
  return Number(n);
}

function parseHeaderJson(bytes: Uint8Array, what: string): unknown {
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw new SafetensorsError(`${what}: header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
}

/** Parses and validates the header of an in-memory safetensors file. */
export function readSafetensorsHeader(
  bytes: Uint8Array,
  what = 'safetensors',
): { entries: HeaderEntry[]; metadata: Record<string, string> } {
  const n = headerLengthOf(bytes, bytes.byteLength, what);
  return validateHeader(parseHeaderJson(bytes.subarray(8, 8 + n), what), n, bytes.byteLength, what);
}

/** float16 bits → float32 value, for all 65536 patterns (built on first use). */
let halfTable: Float32Array | undefined;
function halfToFloatTable(): Float32Array {
  if (halfTable) return halfTable;
  halfTable = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) halfTable[h] = sign * frac * 2 ** -24;
    else if (exp === 31) halfTable[h] = frac ? NaN : sign * Infinity;
    else halfTable[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return halfTable;
}

/** bfloat16 bits → float32 values: bfloat16 is the top half of a float32, so the bits shift into place (exact). */
export function bf16ToFloat32(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i]! << 16;
  return new Float32Array(out.buffer);
}

/**
 * float32 values → bfloat16 bits, rounded to nearest, ties to even (as torch's `.to(torch.bfloat16)`
 * and the accelerators do): add 0x7fff plus the lowest kept bit, then keep the top 16 bits. Values
 * past the largest bfloat16 round to ±Infinity; a NaN stays a (quiet) NaN of its sign. A pure
 * function of the bits, so the same float32 weights always give the same bytes.
 */
export function float32ToBf16(values: Float32Array): Uint16Array {
  const src = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < src.length; i++) {
    const b = src[i]!;
    if ((b & 0x7fffffff) > 0x7f800000) out[i] = (b >>> 16) | 0x0040;
    else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
  }
  return out;
}

/** An F32 tensor as a bfloat16 one to write (`float32ToBf16`). */
export function toBf16(t: { shape: number[]; data: Float32Array }): Bf16Tensor {
  return { dtype: 'BF16', shape: [...t.shape], data: float32ToBf16(t.data) };
}

/**
 * Decodes one tensor's bytes into an owned typed array. `bytes` is copied first unless `owned`
 * (a fresh buffer of exactly this tensor, offset 0, that nothing else references).
 */
function decodeTensor(entry: HeaderEntry, bytes: Uint8Array, owned = false): Tensor {
  const n = elementCount(entry.shape);
  let own = bytes;
  if (!owned || bytes.byteOffset !== 0 || bytes.buffer.byteLength !== bytes.byteLength) {
    own = new Uint8Array(bytes.byteLength);
    own.set(bytes);
  }
  switch (entry.dtype) {
    case 'F32':
      return { dtype: 'F32', shape: entry.shape, data: new Float32Array(own.buffer, 0, n) };
    case 'I64':
      return { dtype: 'I64', shape: entry.shape, data: new BigInt64Array(own.buffer, 0, n) };
    case 'I32':
      return { dtype: 'I32', shape: entry.shape, data: new Int32Array(own.buffer, 0, n) };
    case 'BF16':
      return { dtype: 'F32', shape: entry.shape, data: bf16ToFloat32(new Uint16Array(own.buffer, 0, n)) };
    case 'F16': {
      const src = new Uint16Array(own.buffer, 0, n);
      const table = halfToFloatTable();
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[src[i]!]!;
      return { dtype: 'F32', shape: entry.shape, data: out };
    }
  }
}

/** Parses an in-memory safetensors file. `what` names it in errors. */
export function parseSafetensors(bytes: Uint8Array, what = 'safetensors'): SafetensorsContents {
  const { entries, metadata } = readSafetensorsHeader(bytes, what);
  const tensors: TensorMap = new Map();
  const sourceDtypes = new Map<string, SafetensorsDtype>();
  for (const e of entries) {
    tensors.set(e.name, decodeTensor(e, bytes.subarray(e.start, e.start + e.byteLength)));
    sourceDtypes.set(e.name, e.dtype);
  }
  return { tensors, metadata, sourceDtypes };
}

/**
 * Reads a safetensors file tensor by tensor (never holding the whole file and its decoded copy at
 * once). Errors name the file and the tensor.
 */
export async function readSafetensorsFile(file: string): Promise<SafetensorsContents> {
  const fh = await open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    const prefix = new Uint8Array(8);
    if (size >= 8) await fh.read(prefix, 0, 8, 0);
    const n = headerLengthOf(prefix, size, file);
    const headerBytes = new Uint8Array(n);
    await fh.read(headerBytes, 0, n, 8);
    const { entries, metadata } = validateHeader(parseHeaderJson(headerBytes, file), n, size, file);
    const tensors: TensorMap = new Map();
    const sourceDtypes = new Map<string, SafetensorsDtype>();
    for (const e of entries) {
      const buf = new Uint8Array(e.byteLength);
      let got = 0;
      while (got < e.byteLength) {
        const { bytesRead } = await fh.read(buf, got, e.byteLength - got, e.start + got);
        if (bytesRead === 0) throw new SafetensorsError(`${file}: tensor "${e.name}": file ended while reading its data`);
        got += bytesRead;
      }
      tensors.set(e.name, decodeTensor(e, buf, true));
      sourceDtypes.set(e.name, e.dtype);
    }
    return { tensors, metadata, sourceDtypes };
  } finally {
    await fh.close();
  }
}

const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function checkTensor(name: string, t: WritableTensor): void {
  if (name === '__metadata__' || name.length === 0) throw new SafetensorsError(`tensor name ${JSON.stringify(name)} is reserved or empty`);
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(`tensor "${name}": shape ${JSON.stringify(t.shape)} must be non-negative integers`);
  }
  if (t.data.length !== elementCount(t.shape)) {
    throw new SafetensorsError(
      `tensor "${name}": ${t.data.length} elements do not fill shape ${JSON.stringify(t.shape)} (${elementCount(t.shape)})`,
    );
  }
  const ok =
    (t.dtype === 'F32' && t.data instanceof Float32Array) ||
    (t.dtype === 'I64' && t.data instanceof BigInt64Array) ||
    (t.dtype === 'I32' && t.data instanceof Int32Array) ||
    (t.dtype === 'BF16' && t.data instanceof Uint16Array);
  if (!ok) throw new SafetensorsError(`tensor "${name}": dtype ${t.dtype} does not match its ${t.data.constructor.name} data`);
}

/** Byte size a tensor takes in a safetensors file. */
export function tensorByteLength(t: WritableTensor): number {
  return t.data.byteLength;
}

/**
 * Serialises tensors into safetensors bytes, deterministically (see the file comment).
 * Accepts a Map or a plain record of tensors; `metadata` becomes `__metadata__` (omitted when empty).
 */
export function serializeSafetensors(
  tensors: ReadonlyMap<string, WritableTensor> | Record<string, WritableTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const map = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
  const names = [...map.keys()].sort(byCodeUnit);
  // The header is assembled as text so that any tensor name (even `__proto__`) is an ordinary key
  // and the key order is exactly: __metadata__, then tensors in sorted order.
  const parts: string[] = [];
  const metaKeys = Object.keys(metadata).sort(byCodeUnit);
  if (metaKeys.length > 0) {
    const meta = metaKeys.map((k) => {
      if (typeof metadata[k] !== 'string') throw new SafetensorsError(`metadata "${k}" must be a string`);
      return `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`;
    });
    parts.push(`"__metadata__":{${meta.join(',')}}`);
  }
  let offset = 0;
  for (const name of names) {
    const t = map.get(name)!;
    checkTensor(name, t);
    const len = tensorByteLength(t);
    parts.push(`${JSON.stringify(name)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + len] })}`);
    offset += len;
  }
  const json = new TextEncoder().encode(`{${parts.join(',')}}`);
  const padded = Math.ceil(json.byteLength / 8) * 8;
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.byteLength, 8 + padded);
  let pos = 8 + padded;
  for (const name of names) {
    const d = map.get(name)!.data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), pos);
    pos += d.byteLength;
  }
  return out;
}

/** Writes a file atomically (temp file + rename), so a crash never leaves half a checkpoint. */
async function writeAtomic(file: string, bytes: Uint8Array | string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, bytes);
  await rename(tmp, file);
}

/** Writes one safetensors file (atomically). */
export async function writeSafetensorsFile(
  file: string,
  tensors: TensorMap | Record<string, Tensor>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeAtomic(file, serializeSafetensors(tensors, metadata));
}

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

/** A sharded checkpoint's index: which shard file holds each tensor. */
export interface ShardIndex {
  metadata: { total_size: number } & Record<string, unknown>;
  weight_map: Record<string, string>;
}

/** Validates a `model.safetensors.index.json`. */
export function parseShardIndex(json: unknown, what = INDEX_FILE): ShardIndex {
  if (typeof json !== 'object' || json === null) throw new SafetensorsError(`${what}: not a JSON object`);
  const wm = (json as Record<string, unknown>).weight_map;
  if (typeof wm !== 'object' || wm === null || Array.isArray(wm))
    throw new SafetensorsError(`${what}: weight_map missing or not an object`);
  for (const [name, file] of Object.entries(wm)) {
    if (typeof file !== 'string' || file.length === 0 || file.includes('/') || file.includes('\\') || file.startsWith('.')) {
      throw new SafetensorsError(
        `${what}: weight_map["${name}"] must be a shard file name in the same directory, got ${JSON.stringify(file)}`,
      );
    }
  }
  const meta = (json as Record<string, unknown>).metadata;
  return {
    metadata: { total_size: 0, ...(typeof meta === 'object' && meta !== null ? meta : {}) } as ShardIndex['metadata'],
    weight_map: wm as Record<string, string>,
  };
}

/**
 * Reads the weights of a checkpoint directory: `model.safetensors`, or the shards listed in
 * `model.safetensors.index.json`. Every tensor the index names must be in its shard, and every
 * tensor of a shard must be named by the index for that shard; errors name the tensor and file.
 */
export async function readCheckpointDir(dir: string): Promise<SafetensorsContents> {
  const indexPath = path.join(dir, INDEX_FILE);
  let indexText: string | undefined;
  try {
    indexText = await readFile(indexPath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  if (indexText === undefined) {
    const single = path.join(dir, SINGLE_FILE);
    try {
      return await readSafetensorsFile(single);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new SafetensorsError(
          `${dir}: no ${SINGLE_FILE} and no ${INDEX_FILE}; expected the weights of a Hugging Face model directory`,
        );
      }
      throw e;
    }
  }
  let json: unknown;
  try {
    json = JSON.parse(indexText);
  } catch (e) {
    throw new SafetensorsError(`${indexPath}: not valid JSON (${(e as Error).message})`);
  }
  const index = parseShardIndex(json, indexPath);
  const byShard = new Map<string, Set<string>>();
  for (const [name, file] of Object.entries(index.weight_map)) {
    if (!byShard.has(file)) byShard.set(file, new Set());
    byShard.get(file)!.add(name);
  }
  const tensors: TensorMap = new Map();
  const sourceDtypes = new Map<string, SafetensorsDtype>();
  let metadata: Record<string, string> = {};
  for (const file of [...byShard.keys()].sort(byCodeUnit)) {
    const want = byShard.get(file)!;
    const shardPath = path.join(dir, file);
    let shard: SafetensorsContents;
    try {
      shard = await readSafetensorsFile(shardPath);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new SafetensorsError(`${indexPath}: shard ${file} (holding e.g. "${[...want][0]}") does not exist`);
      }
      throw e;
    }
    for (const name of want) {
      if (!shard.tensors.has(name))
        throw new SafetensorsError(`${shardPath}: tensor "${name}" is listed in ${INDEX_FILE} but missing from the shard`);
    }
    for (const [name, t] of shard.tensors) {
      if (!want.has(name))
        throw new SafetensorsError(`${shardPath}: tensor "${name}" is in the shard but ${INDEX_FILE} does not map it there`);
      tensors.set(name, t);
      sourceDtypes.set(name, shard.sourceDtypes.get(name)!);
    }
    metadata = { ...metadata, ...shard.metadata };
  }
  return { tensors, metadata, sourceDtypes };
}

/** Options of `writeCheckpointDir`. */
export interface WriteCheckpointOptions {
  /**
   * Largest shard in bytes; a checkpoint bigger than this is split into
   * `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json` (HF `max_shard_size`,
   * default 5 GB as in `save_pretrained`). Tensors are never split; one larger than the limit gets
   * a shard of its own.
   */
  maxShardBytes?: number;
  /** `__metadata__` of every file (HF writes `{"format": "pt"}`). */
  metadata?: Record<string, string>;
}

const SHARD_NAME = /^model-\d{5}-of-\d{5}\.safetensors$/;

/** Removes shard files of an earlier write with a different layout. */
async function removeStaleShards(dir: string, keep: string[]): Promise<void> {
  for (const f of await readdir(dir)) {
    if (SHARD_NAME.test(f) && !keep.includes(f)) await rm(path.join(dir, f), { force: true });
  }
}

/**
 * Writes weights into a directory as HF does: one `model.safetensors`, or shards and an index when
 * larger than `maxShardBytes`. Deterministic: tensors are assigned to shards in sorted-name order.
 * Returns the file names written. Stale weight files of the other layout are removed.
 */
export async function writeCheckpointDir(
  dir: string,
  tensors: TensorMap | Record<string, Tensor>,
  options: WriteCheckpointOptions = {},
): Promise<string[]> {
  const map = tensors instanceof Map ? tensors : new Map(Object.entries(tensors));
  const maxShard = options.maxShardBytes ?? 5_000_000_000;
  if (!(maxShard > 0)) throw new SafetensorsError(`maxShardBytes must be positive, got ${maxShard}`);
  const metadata = options.metadata ?? { format: 'pt' };
  await mkdir(dir, { recursive: true });
  const names = [...map.keys()].sort(byCodeUnit);
  const shards: string[][] = [];
  let current: string[] = [];
  let size = 0;
  let total = 0;
  for (const name of names) {
    const len = tensorByteLength(map.get(name)!);
    total += len;
    if (current.length > 0 && size + len > maxShard) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(name);
    size += len;
  }
  if (current.length > 0 || shards.length === 0) shards.push(current);
  if (shards.length === 1) {
    await writeSafetensorsFile(path.join(dir, SINGLE_FILE), map, metadata);
    await rm(path.join(dir, INDEX_FILE), { force: true });
    await removeStaleShards(dir, []);
    return [SINGLE_FILE];
  }
  const n = shards.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  const weightMap = new Map<string, string>();
  const files: string[] = [];
  for (let i = 0; i < n; i++) {
    const file = `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
    const part: TensorMap = new Map(shards[i]!.map((name) => [name, map.get(name)!]));
    await writeSafetensorsFile(path.join(dir, file), part, metadata);
    for (const name of shards[i]!) weightMap.set(name, file);
    files.push(file);
  }
  const mapLines = names.map((name) => `    ${JSON.stringify(name)}: ${JSON.stringify(weightMap.get(name))}`);
  const indexText = `{\n  "metadata": {\n    "total_size": ${total}\n  },\n  "weight_map": {\n${mapLines.join(',\n')}\n  }\n}\n`;
  await writeAtomic(path.join(dir, INDEX_FILE), indexText);
  await rm(path.join(dir, SINGLE_FILE), { force: true });
  await removeStaleShards(dir, files);
  return [...files, INDEX_FILE];
}

/** Convenience: a float32 tensor from a shape and values (copied). */
export function f32(shape: number[], values?: ArrayLike<number>): Tensor {
  const data = new Float32Array(elementCount(shape));
  if (values) {
    if (values.length !== data.length)
      throw new SafetensorsError(`f32: ${values.length} values for shape ${JSON.stringify(shape)} (${data.length})`);
    data.set(values);
  }
  return { dtype: 'F32', shape: [...shape], data };
}
