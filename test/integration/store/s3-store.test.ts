/**
 * The shared store suite on s3:// against the real MinIO from infra/, plus what only S3 has:
 * multipart uploads, and retries — tested through a loopback proxy in front of the same MinIO that
 * answers 503 SlowDown, drops connections, or loses responses on chosen requests.
 */
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { before, describe, it } from 'node:test';
import { openStore, type S3Options } from '../../../activities/store/open.js';
import { StoreError } from '../../../activities/store/errors.js';
import { readAll, type ObjectStore } from '../../../activities/store/object-store.js';
import { MANIFEST_NAME, stepPrefix } from '../../../activities/store/keys.js';
import { commit, readCommitted } from '../../../activities/store/manifest.js';
import { servers } from '../../support/servers.js';
import { pattern, storeSuite } from '../../support/stores.js';

const MiB = 1024 * 1024;
const runTag = `test-store/${process.pid}-${Date.now()}`;
let counter = 0;

let bucket = '';
let s3: S3Options = {};

async function minio(): Promise<void> {
  if (bucket) return;
  const { minio: m } = await servers();
  bucket = m.bucket;
  s3 = { endpoint: m.endpoint, region: m.region, accessKeyId: m.accessKeyId, secretAccessKey: m.secretAccessKey };
}

/** A store on a fresh prefix of the test bucket; cleanup deletes everything under it. */
async function freshStore(extra: Partial<S3Options> = {}, endpoint?: string): Promise<{ store: ObjectStore; cleanup(): Promise<void> }> {
  await minio();
  const uri = `s3://${bucket}/${runTag}/${++counter}`;
  const store = openStore(uri, { s3: { ...s3, ...extra, ...(endpoint ? { endpoint } : {}) } });
  const cleaner = openStore(uri, { s3 });
  return {
    store,
    cleanup: async () => {
      for await (const o of cleaner.list('')) await cleaner.delete(o.key);
      await store.close();
      await cleaner.close();
    },
  };
}

storeSuite('s3:// on MinIO', () => freshStore());

type Action = 'pass' | 'slow-pass' | 'slowdown' | 'drop' | 'lose-response' | 'forbidden';

/**
 * A loopback HTTP proxy in front of MinIO. `plan(n, req)` decides, per request (n counts from 1),
 * to pass it through (at once, or after 300 ms), answer 503 SlowDown, drop the connection before
 * answering, forward it and then drop the connection instead of returning the answer, or answer 403.
 * Each request's arrival and (for forwarded ones) the end of its answer are timed.
 */
class FaultyProxy {
  readonly seen: { n: number; method: string; url: string; action: Action; at: number; doneAt?: number }[] = [];
  private server!: Server;
  endpoint = '';

  constructor(
    private readonly target: URL,
    private readonly plan: (n: number, req: IncomingMessage) => Action,
  ) {}

  async start(): Promise<void> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const n = this.seen.length + 1;
    const action = this.plan(n, req);
    const entry: FaultyProxy['seen'][number] = { n, method: req.method ?? '', url: req.url ?? '', action, at: performance.now() };
    this.seen.push(entry);
    if (action === 'drop') {
      req.socket.destroy();
      return;
    }
    if (action === 'slowdown' || action === 'forbidden') {
      req.resume();
      req.on('end', () => {
        const [status, code, msg] =
          action === 'slowdown' ? [503, 'SlowDown', 'Please reduce your request rate.'] : [403, 'AccessDenied', 'Access Denied.'];
        res.writeHead(status, { 'content-type': 'application/xml' });
        res.end(
          `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${msg}</Message><RequestId>proxy-${n}</RequestId></Error>`,
        );
      });
      return;
    }
    if (action === 'slow-pass') {
      req.pause();
      setTimeout(() => this.forward(req, res, 'pass', entry), 300);
      return;
    }
    this.forward(req, res, action, entry);
  }

  private forward(req: IncomingMessage, res: ServerResponse, action: Action, entry: FaultyProxy['seen'][number]): void {
    const upstream = httpRequest(
      {
        host: this.target.hostname,
        port: this.target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (up) => {
        if (action === 'lose-response') {
          up.resume();
          up.on('end', () => req.socket.destroy());
          return;
        }
        res.writeHead(up.statusCode ?? 502, up.headers);
        res.on('finish', () => (entry.doneAt = performance.now()));
        up.pipe(res);
      },
    );
    upstream.on('error', () => req.socket.destroy());
    req.pipe(upstream);
  }
}

describe('s3:// retries and multipart (MinIO behind a faulty proxy)', () => {
  let target: URL;
  before(async () => {
    await minio();
    target = new URL(s3.endpoint!);
  });

  async function throughProxy(plan: (n: number, req: IncomingMessage) => Action, extra: Partial<S3Options> = {}) {
    const proxy = new FaultyProxy(target, plan);
    await proxy.start();
    const f = await freshStore({ baseDelayMs: 5, maxDelayMs: 50, ...extra }, proxy.endpoint);
    return {
      proxy,
      store: f.store,
      cleanup: async () => {
        await f.cleanup();
        await proxy.stop();
      },
    };
  }

  it('retries 503 SlowDown with backoff until the request succeeds', async () => {
    const { proxy, store, cleanup } = await throughProxy((n) => (n <= 2 ? 'slowdown' : 'pass'), { maxAttempts: 5 });
    try {
      await store.put('a.bin', pattern(1000));
      assert.deepEqual(
        proxy.seen.map((s) => s.action),
        ['slowdown', 'slowdown', 'pass'],
      );
      assert.ok(
        proxy.seen.every((s) => s.method === 'PUT'),
        'the same PUT was re-sent',
      );
      assert.deepEqual(await store.get('a.bin'), pattern(1000));
    } finally {
      await cleanup();
    }
  });

  it('retries dropped connections', async () => {
    const { proxy, store, cleanup } = await throughProxy((n) => (n === 1 || n === 3 ? 'drop' : 'pass'));
    try {
      await store.put('b.bin', pattern(500, 2)); // request 1 dropped, 2 passes
      assert.deepEqual(await store.get('b.bin'), pattern(500, 2)); // request 3 dropped, 4 passes
      assert.deepEqual(
        proxy.seen.map((s) => `${s.method}:${s.action}`),
        ['PUT:drop', 'PUT:pass', 'GET:drop', 'GET:pass'],
      );
    } finally {
      await cleanup();
    }
  });

  it('gives up after maxAttempts, naming the operation, URI and last error', async () => {
    const { proxy, store, cleanup } = await throughProxy(() => 'slowdown', { maxAttempts: 3 });
    try {
      await assert.rejects(store.get('c.bin'), (e: unknown) => {
        assert.ok(e instanceof StoreError);
        assert.match(e.message, /^GET s3:\/\/.*\/c\.bin failed after 3 attempts: SlowDown HTTP 503/);
        return true;
      });
      assert.equal(proxy.seen.length, 3);
    } finally {
      await cleanup();
    }
  });

  it('does not retry a non-transient error (403)', async () => {
    const { proxy, store, cleanup } = await throughProxy(() => 'forbidden', { maxAttempts: 5 });
    try {
      await assert.rejects(store.put('d.bin', pattern(10)), /AccessDenied HTTP 403.*check the credentials/);
      assert.equal(proxy.seen.length, 1);
    } finally {
      await cleanup();
    }
  });

  it('uploads an object larger than the part size in parts, retrying a failed part alone', async () => {
    const isPart = (req: IncomingMessage, part: number) => req.method === 'PUT' && (req.url ?? '').includes(`partNumber=${part}&`);
    let failedOnce = false;
    const { proxy, store, cleanup } = await throughProxy(
      (_n, req) => {
        if (!failedOnce && isPart(req, 2)) {
          failedOnce = true;
          return 'slowdown';
        }
        return 'pass';
      },
      { partSizeBytes: 5 * MiB, partConcurrency: 2 },
    );
    try {
      const big = pattern(12 * MiB + 12345, 11);
      assert.deepEqual(await store.put('big.bin', big), { size: big.byteLength });
      const parts = proxy.seen.filter((s) => s.method === 'PUT' && s.url.includes('partNumber='));
      assert.equal(parts.filter((s) => s.action === 'pass').length, 3, 'three parts: 5 + 5 + 2 MiB');
      assert.equal(parts.filter((s) => s.action === 'slowdown').length, 1, 'part 2 failed once and was re-sent');
      assert.ok(
        proxy.seen.some((s) => s.method === 'POST' && s.url.includes('uploads')),
        'CreateMultipartUpload',
      );
      assert.ok(
        proxy.seen.some((s) => s.method === 'POST' && s.url.includes('uploadId=')),
        'CompleteMultipartUpload',
      );
      assert.deepEqual(await store.head('big.bin'), { size: big.byteLength });
      assert.ok(Buffer.from(await readAll(await store.getStream('big.bin'))).equals(Buffer.from(big)));
      // A stream longer than a part goes multipart too; one shorter is a single PUT.
      const before = proxy.seen.length;
      await store.put(
        'streamed.bin',
        Readable.from(
          (function* () {
            for (let i = 0; i < 11; i++) yield pattern(MiB, i);
          })(),
        ),
      );
      assert.equal(proxy.seen.slice(before).filter((s) => s.url.includes('partNumber=')).length, 3);
      const expected = Buffer.concat(Array.from({ length: 11 }, (_, i) => pattern(MiB, i)));
      assert.ok(Buffer.from(await store.get('streamed.bin')).equals(expected));
      const before2 = proxy.seen.length;
      await store.put('small-stream.bin', Readable.from([pattern(1000)]));
      assert.deepEqual(
        proxy.seen.slice(before2).map((s) => s.method),
        ['PUT'],
      );
      assert.ok(!proxy.seen.slice(before2)[0]!.url.includes('partNumber='));
    } finally {
      await cleanup();
    }
  });

  it('a multipart upload that fails aborts only after its in-flight parts have settled', async () => {
    // Part 1 is refused for good while part 2 is still on its way; an abort sent before part 2
    // lands would leave part 2 stored (and billed on S3) under an upload nobody completes.
    const isPart = (req: IncomingMessage, part: number) => req.method === 'PUT' && (req.url ?? '').includes(`partNumber=${part}&`);
    const { proxy, store, cleanup } = await throughProxy(
      (_n, req) => (isPart(req, 1) ? 'forbidden' : isPart(req, 2) ? 'slow-pass' : 'pass'),
      { partSizeBytes: 5 * MiB, partConcurrency: 2 },
    );
    try {
      await assert.rejects(store.put('aborted.bin', pattern(11 * MiB, 5)), /UploadPart 1 .*aborted\.bin failed: AccessDenied HTTP 403/);
      const part2 = proxy.seen.find((s) => s.url.includes('partNumber=2&'));
      const abort = proxy.seen.find((s) => s.method === 'DELETE' && s.url.includes('uploadId='));
      assert.ok(part2?.doneAt !== undefined, 'part 2 was forwarded and answered');
      assert.ok(abort, 'the upload was aborted');
      assert.ok(abort.at >= part2.doneAt, `abort sent ${(part2.doneAt - abort.at).toFixed(0)} ms before part 2 settled`);
      assert.equal(proxy.seen.filter((s) => s.url.includes('partNumber=3&')).length, 0, 'no part started after the failure');
      assert.equal(await store.head('aborted.bin'), undefined);
    } finally {
      await cleanup();
    }
  });

  it('a commit whose manifest PUT succeeded but whose answer was lost still agrees with the store', async () => {
    // The first conditional PUT of the manifest reaches MinIO, but the answer never comes back; the
    // retry then gets 412. The committer must report the manifest that is in the store (its own).
    let lost = false;
    const { proxy, store, cleanup } = await throughProxy((_n, req) => {
      if (!lost && req.method === 'PUT' && (req.url ?? '').includes(MANIFEST_NAME)) {
        lost = true;
        return 'lose-response';
      }
      return 'pass';
    });
    try {
      const r = await commit(store, stepPrefix('r9', 1), [{ name: 'x.bin', bytes: pattern(300) }]);
      assert.ok(proxy.seen.some((s) => s.action === 'lose-response'));
      assert.equal(r.created, false, 'the retry found the manifest already there');
      assert.deepEqual(await readCommitted(store, stepPrefix('r9', 1)), r.manifest);
      assert.equal(r.manifest.artifacts[0]!.bytes, 300);
    } finally {
      await cleanup();
    }
  });
});
