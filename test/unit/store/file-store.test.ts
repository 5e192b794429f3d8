/** The shared store suite on file://, plus what only the file store has (temp files, fsync, URIs). */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { openStore } from '../../../activities/store/open.js';
import { FileStore } from '../../../activities/store/file-store.js';
import { storeSuite } from '../../support/stores.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'durable-rl-store-'));
}

storeSuite('file://', async () => {
  const dir = await tempDir();
  return { store: openStore(pathToFileURL(dir).href), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

describe('file store specifics', () => {
  it('leaves no temp files behind and keeps crash debris out of listings', async () => {
    const dir = await tempDir();
    try {
      const s = new FileStore(dir);
      await s.put('a/b', new Uint8Array([1, 2, 3]));
      assert.equal(await s.putIfAbsent('a/c', new Uint8Array([4])), true);
      assert.equal(await s.putIfAbsent('a/c', new Uint8Array([5])), false);
      assert.deepEqual(await readdir(join(dir, '.tmp')), [], 'temp files removed after put and putIfAbsent');
      // A writer that died mid-write leaves a temp file; nobody sees it.
      await writeFile(join(dir, '.tmp', 'dead-writer-1'), 'partial');
      const keys: string[] = [];
      for await (const o of s.list('')) keys.push(o.key);
      assert.deepEqual(keys, ['a/b', 'a/c']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('creates nested folders on put and reports a folder as absent', async () => {
    const dir = await tempDir();
    try {
      const s = new FileStore(dir, { fsync: true });
      await s.put('deep/er/and/deeper/x.bin', new Uint8Array([9]));
      assert.deepEqual(await s.get('deep/er/and/deeper/x.bin'), new Uint8Array([9]));
      await mkdir(join(dir, 'just-a-folder'));
      await assert.rejects(s.get('just-a-folder'), /object not found/);
      await assert.rejects(s.getStream('just-a-folder'), /object not found/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('opens relative and absolute file URIs; root and uri() are file URLs', async () => {
    const dir = await tempDir();
    try {
      const abs = openStore(pathToFileURL(dir).href);
      assert.equal(abs.root, pathToFileURL(dir).href);
      assert.equal(abs.uri('runs/a b/x.arrow'), `${pathToFileURL(dir).href}/runs/a%20b/x.arrow`);
      const rel = openStore('file://some/relative/dir');
      assert.equal(rel.root, pathToFileURL(join(process.cwd(), 'some/relative/dir')).href);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
