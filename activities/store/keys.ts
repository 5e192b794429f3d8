/**
 * Object keys and the key layout of DESIGN.md §5.
 *
 * A key is a relative, `/`-separated path inside a store: no leading or trailing `/`, no empty,
 * `.` or `..` segments, no backslashes, no control characters (NUL included), at most 1024 UTF-8
 * bytes (the S3 limit). The same rules hold for every backend, so a key that works on `file://`
 * works on `s3://` and cannot escape the store's root. The first segment `.tmp` is reserved for the
 * file store's in-flight writes.
 */
import { InvalidKeyError } from './errors.js';

export const MAX_KEY_BYTES = 1024;

/** The file store keeps in-flight temp files under this top-level folder; keys may not use it. */
export const RESERVED_TOP_SEGMENT = '.tmp';

/** Name of the commit marker of a prefix (see manifest.ts). */
export const MANIFEST_NAME = 'manifest.json';

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

function checkSegments(key: string, segments: string[]): void {
  for (const s of segments) {
    if (s === '') throw new InvalidKeyError(key, 'empty path segment (leading, trailing or doubled "/")');
    if (s === '.' || s === '..') throw new InvalidKeyError(key, `"${s}" segments are not allowed; keys are plain relative paths`);
  }
}

/** Throws InvalidKeyError (naming the key and the broken rule) unless `key` is a valid object key. */
export function validateKey(key: string): string {
  if (typeof key !== 'string') throw new InvalidKeyError(String(key), `a key must be a string, got ${typeof key}`);
  if (key.length === 0) throw new InvalidKeyError(key, 'a key must not be empty');
  if (key.startsWith('/')) throw new InvalidKeyError(key, 'absolute paths are not allowed; use a key relative to the store root');
  if (key.includes('\\')) throw new InvalidKeyError(key, 'backslashes are not allowed; separate segments with "/"');
  if (CONTROL.test(key)) throw new InvalidKeyError(key, 'control characters (NUL, newline, ...) are not allowed');
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw new InvalidKeyError(key, `longer than ${MAX_KEY_BYTES} UTF-8 bytes`);
  const segments = key.split('/');
  checkSegments(key, segments);
  if (segments[0] === RESERVED_TOP_SEGMENT) throw new InvalidKeyError(key, `the top-level folder "${RESERVED_TOP_SEGMENT}" is reserved for in-flight writes`);
  return key;
}

/**
 * Validates a listing prefix: like a key, but it may be empty (everything) and may end with `/`
 * (everything below a folder). A prefix matches keys by plain string prefix, as in S3.
 */
export function validatePrefix(prefix: string): string {
  if (prefix === '') return prefix;
  const body = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (body === '') throw new InvalidKeyError(prefix, 'a prefix of only "/" is not allowed; use "" to list everything');
  validateKey(body);
  return prefix;
}

/** Joins key parts with `/` and validates the result. Parts may themselves contain `/`. */
export function joinKey(...parts: string[]): string {
  return validateKey(parts.filter((p) => p !== '').join('/'));
}

/** Validates one segment of a key (an id that becomes a folder name): non-empty, no `/`. */
export function validateSegment(what: string, value: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new InvalidKeyError(String(value), `${what} must be a non-empty string`);
  }
  if (value.includes('/')) throw new InvalidKeyError(value, `${what} must not contain "/" (it becomes one folder name)`);
  validateKey(value);
  return value;
}

function stepNumber(step: number): string {
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new InvalidKeyError(String(step), 'a step must be a non-negative integer');
  }
  return String(step).padStart(6, '0');
}

/** `runs/{runId}` — everything a run writes lives below it. */
export function runPrefix(runId: string): string {
  return `runs/${validateSegment('run id', runId)}`;
}

/** `runs/{runId}/steps/{step:06d}` — the artifacts and manifest of one training step. */
export function stepPrefix(runId: string, step: number): string {
  return `${runPrefix(runId)}/steps/${stepNumber(step)}`;
}

/** `runs/{runId}/checkpoints/{step:06d}` — weights and optimizer state after a step. */
export function checkpointPrefix(runId: string, step: number): string {
  return `${runPrefix(runId)}/checkpoints/${stepNumber(step)}`;
}

/** The step number of a step or checkpoint prefix (or a key below one), or undefined. */
export function parseStep(key: string): number | undefined {
  const m = /^runs\/[^/]+\/(?:steps|checkpoints)\/(\d{6,})(?:\/|$)/.exec(key);
  return m ? Number(m[1]) : undefined;
}
