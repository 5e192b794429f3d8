/** The data plane in one import: object stores, Arrow contracts and the commit protocol. */
export * from './errors.js';
export * from './keys.js';
export * from './object-store.js';
export * from './open.js';
export { FileStore } from './file-store.js';
export { S3Store } from './s3-store.js';
export * from './retry.js';
export * from './arrow.js';
export * from './schemas.js';
export * from './manifest.js';
