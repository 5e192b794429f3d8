/**
 * The errors of the data plane. Each names the object (by its full URI) or the key it is about and
 * says what to do, so a failed activity's message is enough to find the problem. `code` is stable
 * and meant for callers that branch on the kind of failure (e.g. to raise a non-retryable
 * Temporal `ApplicationFailure` for `invalid_key`, `schema_mismatch`, `corrupt`, `integrity`).
 */

export type StoreErrorCode =
  'not_found' | 'invalid_key' | 'invalid_uri' | 'integrity' | 'corrupt' | 'schema_mismatch' | 'invalid_rows' | 'not_committed' | 'io';

export class StoreError extends Error {
  override name = 'StoreError';
  constructor(
    readonly code: StoreErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** `get`/`getStream` of a key that does not exist. */
export class NotFoundError extends StoreError {
  override name = 'NotFoundError';
  constructor(readonly uri: string) {
    super('not_found', `object not found: ${uri}`);
  }
}

/** A key or prefix that breaks the key rules (see keys.ts). */
export class InvalidKeyError extends StoreError {
  override name = 'InvalidKeyError';
  constructor(
    readonly key: string,
    reason: string,
  ) {
    super('invalid_key', `invalid object key ${JSON.stringify(key)}: ${reason}`);
  }
}

/** A store URI that cannot be opened. */
export class InvalidUriError extends StoreError {
  override name = 'InvalidUriError';
  constructor(
    readonly uri: string,
    reason: string,
  ) {
    super('invalid_uri', `invalid store URI ${JSON.stringify(uri)}: ${reason}`);
  }
}

/** An object whose size or sha256 differs from what its manifest records. */
export class IntegrityError extends StoreError {
  override name = 'IntegrityError';
  constructor(
    readonly uri: string,
    detail: string,
  ) {
    super('integrity', `integrity check failed for ${uri}: ${detail}`);
  }
}

/** Bytes that cannot be parsed at all (truncated or damaged Arrow file, unreadable manifest). */
export class CorruptDataError extends StoreError {
  override name = 'CorruptDataError';
  constructor(
    readonly source: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super('corrupt', `corrupt or truncated data in ${source}: ${detail}`, options);
  }
}

/** A readable Arrow file whose schema is not the one the reader expects. */
export class SchemaMismatchError extends StoreError {
  override name = 'SchemaMismatchError';
  constructor(
    readonly source: string,
    detail: string,
  ) {
    super('schema_mismatch', `schema mismatch in ${source}: ${detail}`);
  }
}

/** Rows handed to an encoder that break the contract (wrong type, missing field, bad lengths). */
export class InvalidRowsError extends StoreError {
  override name = 'InvalidRowsError';
  constructor(
    readonly schema: string,
    detail: string,
  ) {
    super('invalid_rows', `invalid ${schema} rows: ${detail}`);
  }
}

/** Reading an artifact of a prefix that has no manifest yet. */
export class NotCommittedError extends StoreError {
  override name = 'NotCommittedError';
  constructor(readonly uri: string) {
    super('not_committed', `not committed: no manifest at ${uri}`);
  }
}
