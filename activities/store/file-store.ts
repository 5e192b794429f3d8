/**
 * `file://DIR` — the embedded object store: one file per object under DIR.
 *
 * Writes never expose partial content: bytes go to a temp file under `DIR/.tmp/` (fsync'd), which
 * is then renamed over the final name (`put`) or hard-linked to it (`putIfAbsent`: `link()` fails
 * with EEXIST when the name exists, so of racing creators exactly one wins, and the winner's file
 * is complete the moment it appears). Directories touched are fsync'd so a committed object
 * survives a power cut. Crash debris stays in `DIR/.tmp/`, which listings skip.
 */
import { constants as fsc } from 'node:fs';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Readable } from 'node:stream';
import { NotFoundError, StoreError } from './errors.js';
import { RESERVED_TOP_SEGMENT, validateKey, validatePrefix } from './keys.js';
import { chunksOf, compareKeys, type Body, type ObjectInfo, type ObjectStore } from './object-store.js';

export interface FileStoreOptions {
  /** fsync files and directories on write (durability across power loss). Default true. */
  fsync: boolean;
}

let tempCounter = 0;
const host = hostname().replace(/[^A-Za-z0-9_-]/g, '_');

function isErrno(err: unknown, ...codes: string[]): boolean {
  return typeof err === 'object' && err !== null && codes.includes((err as NodeJS.ErrnoException).code ?? '');
}

export class FileStore implements ObjectStore {
  readonly root: string;
  private readonly dir: string;
  private readonly tmpDir: string;

  constructor(
    dir: string,
    private readonly options: FileStoreOptions = { fsync: true },
  ) {
    this.dir = resolve(dir);
    this.tmpDir = join(this.dir, RESERVED_TOP_SEGMENT);
    this.root = pathToFileURL(this.dir).href;
  }

  uri(key: string): string {
    validateKey(key);
    return `${this.root}/${key.split('/').map(encodeURIComponent).join('/')}`;
  }

  private path(key: string): string {
    validateKey(key);
    return join(this.dir, ...key.split('/'));
  }

  private async fsyncDir(path: string): Promise<void> {
    if (!this.options.fsync) return;
    let fh: FileHandle | undefined;
    try {
      fh = await open(path, fsc.O_RDONLY);
      await fh.sync();
    } catch (err) {
      // Some filesystems refuse fsync on directories; durability there is the filesystem's business.
      if (!isErrno(err, 'EINVAL', 'EISDIR', 'EPERM', 'EBADF')) throw err;
    } finally {
      await fh?.close();
    }
  }

  /** mkdir -p, then fsync every directory it created (and the parent of the first) so the new path is durable. */
  private async ensureDir(path: string): Promise<void> {
    const first = await mkdir(path, { recursive: true });
    if (first === undefined || !this.options.fsync) return;
    const chain: string[] = [];
    for (let p = path; ; p = dirname(p)) {
      chain.push(p);
      if (p === first || p === dirname(p)) break;
    }
    chain.push(dirname(first));
    for (const p of chain.reverse()) await this.fsyncDir(p);
  }

  /** Writes `body` to a fresh temp file and fsyncs it; returns its path and size. */
  private async writeTemp(body: Body): Promise<{ tmp: string; size: number }> {
    await mkdir(this.tmpDir, { recursive: true });
    tempCounter = (tempCounter + 1) >>> 0;
    const tmp = join(this.tmpDir, `${host}-${process.pid}-${tempCounter}-${process.hrtime.bigint()}`);
    const fh = await open(tmp, 'wx');
    let size = 0;
    try {
      for await (const chunk of chunksOf(body)) {
        let off = 0;
        while (off < chunk.byteLength) {
          const { bytesWritten } = await fh.write(chunk, off, chunk.byteLength - off);
          off += bytesWritten;
        }
        size += chunk.byteLength;
      }
      if (this.options.fsync) await fh.sync();
    } catch (err) {
      await fh.close();
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
    await fh.close();
    return { tmp, size };
  }

  async put(key: string, body: Body): Promise<{ size: number }> {
    const target = this.path(key);
    const { tmp, size } = await this.writeTemp(body);
    try {
      await this.ensureDir(dirname(target));
      await rename(tmp, target);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      if (isErrno(err, 'EISDIR', 'ENOTDIR', 'ENOTEMPTY')) {
        throw new StoreError('io', `cannot write ${this.uri(key)}: a path component is both a folder and an object in this file store`, {
          cause: err,
        });
      }
      throw err;
    }
    await this.fsyncDir(dirname(target));
    return { size };
  }

  async putIfAbsent(key: string, bytes: Uint8Array): Promise<boolean> {
    const target = this.path(key);
    const { tmp } = await this.writeTemp(bytes);
    try {
      await this.ensureDir(dirname(target));
      await link(tmp, target);
    } catch (err) {
      if (isErrno(err, 'EEXIST')) return false;
      if (isErrno(err, 'EPERM', 'ENOTSUP', 'EOPNOTSUPP')) {
        throw new StoreError(
          'io',
          `cannot create ${this.uri(key)}: the filesystem does not support hard links, which create-if-absent needs; use a local disk or s3://`,
          { cause: err },
        );
      }
      throw err;
    } finally {
      await unlink(tmp).catch(() => undefined);
    }
    await this.fsyncDir(dirname(target));
    return true;
  }

  async get(key: string): Promise<Uint8Array> {
    try {
      const buf = await readFile(this.path(key));
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'EISDIR', 'ENOTDIR')) throw new NotFoundError(this.uri(key));
      throw err;
    }
  }

  async getStream(key: string): Promise<Readable> {
    let fh: FileHandle | undefined;
    try {
      fh = await open(this.path(key), 'r');
      const st = await fh.stat();
      if (!st.isFile()) throw new NotFoundError(this.uri(key));
    } catch (err) {
      await fh?.close(); // never leak the descriptor of an object we do not stream
      if (isErrno(err, 'ENOENT', 'EISDIR', 'ENOTDIR')) throw new NotFoundError(this.uri(key));
      throw err;
    }
    return fh.createReadStream();
  }

  async head(key: string): Promise<{ size: number } | undefined> {
    try {
      const st = await stat(this.path(key));
      return st.isFile() ? { size: st.size } : undefined;
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return undefined;
      throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    validatePrefix(prefix);
    // Walk only the deepest folder that contains every possible match.
    const cut = prefix.lastIndexOf('/');
    const baseKey = cut < 0 ? '' : prefix.slice(0, cut);
    const start = baseKey ? join(this.dir, ...baseKey.split('/')) : this.dir;
    const found: ObjectInfo[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (isErrno(err, 'ENOENT', 'ENOTDIR')) return;
        throw err;
      }
      for (const e of entries) {
        const full = join(dir, e.name);
        const key = relative(this.dir, full).split(sep).join('/');
        if (dir === this.dir && e.name === RESERVED_TOP_SEGMENT) continue;
        if (e.isDirectory()) {
          // Descend only where a match can lie: the key (as a folder) and the prefix must overlap.
          if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`)) await walk(full);
        } else if (e.isFile() && key.startsWith(prefix)) {
          const st = await stat(full).catch(() => undefined);
          if (st) found.push({ key, size: st.size });
        }
      }
    };
    await walk(start);
    found.sort((a, b) => compareKeys(a.key, b.key));
    yield* found;
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.path(key));
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return;
      throw err;
    }
    await this.fsyncDir(dirname(this.path(key)));
  }

  async close(): Promise<void> {}
}
