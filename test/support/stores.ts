/**
 * The object-store and commit-protocol suite, written once and run against every backend:
 * test/unit/store/file-store.test.ts (file://) and test/integration/store/s3-store.test.ts (real
 * MinIO). `factory` returns a fresh, empty store (and a cleanup) for each test.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Readable } from 'node:stream';
import {
  IntegrityError,
  InvalidKeyError,
  NotCommittedError,
  NotFoundError,
  SchemaMismatchError,
  CorruptDataError,
} from '../../activities/store/errors.js';
import { readAll, type ObjectStore } from '../../activities/store/object-store.js';
import {
  artifactKey,
  commit,
  committedSteps,
  encodeManifest,
  manifestKey,
  readArtifact,
  readCommitted,
  readManifest,
  writeArtifact,
} from '../../activities/store/manifest.js';
import { stepPrefix } from '../../activities/store/keys.js';
import { decodeRewards, encodeRewards, decodeRollouts, REWARDS, type RewardsInput } from '../../activities/store/schemas.js';

export interface StoreFixture {
  store: ObjectStore;
  cleanup(): Promise<void>;
}

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

async function keysOf(store: ObjectStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const o of store.list(prefix)) out.push(o.key);
  return out;
}

function rewardRows(n: number, tag: string): RewardsInput[] {
  return Array.from({ length: n }, (_, i) => ({
    run_id: 'r1',
    step: 3,
    prompt_id: `p${i}`,
    sample_id: i,
    reward: i * 0.5,
    components: { [tag]: i },
    token_rewards: i % 2 ? null : [0.25, -1],
    error: null,
  }));
}

/** A deterministic byte pattern (not random: tests must be reproducible). */
export function pattern(size: number, seed = 7): Uint8Array {
  const b = new Uint8Array(size);
  let x = seed >>> 0;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

export function storeSuite(backend: string, factory: () => Promise<StoreFixture>): void {
  const withStore = (fn: (store: ObjectStore) => Promise<void>) => async () => {
    const f = await factory();
    try {
      await fn(f.store);
    } finally {
      await f.cleanup();
    }
  };

  describe(`object store (${backend})`, () => {
    it(
      'round-trips bytes: empty, binary, unicode keys',
      withStore(async (s) => {
        await s.put('a/empty.bin', new Uint8Array(0));
        await s.put('a/bin.bin', pattern(70_000));
        await s.put('ünï/cödé 🌍.txt', enc('héllo'));
        assert.deepEqual(await s.get('a/empty.bin'), new Uint8Array(0));
        assert.deepEqual(await s.get('a/bin.bin'), pattern(70_000));
        assert.equal(dec(await s.get('ünï/cödé 🌍.txt')), 'héllo');
        assert.deepEqual(await s.head('a/bin.bin'), { size: 70_000 });
        assert.deepEqual(await s.head('a/empty.bin'), { size: 0 });
      }),
    );

    it(
      'put replaces an object whole',
      withStore(async (s) => {
        await s.put('k', enc('first version, longer'));
        await s.put('k', enc('second'));
        assert.equal(dec(await s.get('k')), 'second');
      }),
    );

    it(
      'put accepts a stream of chunks',
      withStore(async (s) => {
        const chunks = [enc('ab'), enc(''), enc('cdé'), pattern(10_000)];
        const r = await s.put('streamed', Readable.from(chunks));
        const whole = Buffer.concat(chunks);
        assert.equal(r.size, whole.byteLength);
        assert.deepEqual(Buffer.from(await s.get('streamed')), whole);
      }),
    );

    it(
      'getStream streams the object; a missing key fails before streaming',
      withStore(async (s) => {
        await s.put('x/y', pattern(100_000, 3));
        assert.deepEqual(await readAll(await s.getStream('x/y')), pattern(100_000, 3));
        await assert.rejects(s.getStream('x/nope'), (e: unknown) => e instanceof NotFoundError && e.uri === s.uri('x/nope'));
      }),
    );

    it(
      'get of a missing key is NotFoundError naming the URI; head is undefined',
      withStore(async (s) => {
        await assert.rejects(s.get('no/such/key'), (e: unknown) => {
          assert.ok(e instanceof NotFoundError);
          assert.equal(e.code, 'not_found');
          assert.match(e.message, /no\/such\/key/);
          assert.ok(e.message.includes(s.uri('no/such/key')));
          return true;
        });
        assert.equal(await s.head('no/such/key'), undefined);
        await s.put('no/such', enc('file, not folder'));
        assert.equal(await s.head('no'), undefined, 'a folder-like prefix is not an object');
      }),
    );

    it(
      'putIfAbsent creates once and never overwrites',
      withStore(async (s) => {
        assert.equal(await s.putIfAbsent('once', enc('A')), true);
        assert.equal(await s.putIfAbsent('once', enc('B')), false);
        assert.equal(dec(await s.get('once')), 'A');
      }),
    );

    it(
      'putIfAbsent: of 8 racing creators exactly one wins and its bytes stay',
      withStore(async (s) => {
        const results = await Promise.all(Array.from({ length: 8 }, (_, i) => s.putIfAbsent('race', enc(`writer ${i}`))));
        assert.equal(results.filter(Boolean).length, 1);
        assert.equal(dec(await s.get('race')), `writer ${results.indexOf(true)}`);
      }),
    );

    it(
      'list: by string prefix, byte-ordered, with sizes, nothing outside',
      withStore(async (s) => {
        for (const k of ['d/b', 'd/a/x', 'd/a-b', 'd/ab', 'e/z', 'd2/q', 'd/a/y/z']) await s.put(k, enc(k));
        assert.deepEqual(await keysOf(s, 'd/'), ['d/a-b', 'd/a/x', 'd/a/y/z', 'd/ab', 'd/b']);
        assert.deepEqual(await keysOf(s, 'd/a'), ['d/a-b', 'd/a/x', 'd/a/y/z', 'd/ab']);
        assert.deepEqual(await keysOf(s, 'd'), ['d/a-b', 'd/a/x', 'd/a/y/z', 'd/ab', 'd/b', 'd2/q']);
        assert.deepEqual(await keysOf(s, 'nothing/'), []);
        const all: { key: string; size: number }[] = [];
        for await (const o of s.list('')) all.push(o);
        assert.equal(all.length, 7);
        assert.deepEqual(
          all.find((o) => o.key === 'd/a/y/z'),
          { key: 'd/a/y/z', size: 'd/a/y/z'.length },
        );
      }),
    );

    it(
      'delete removes; deleting an absent key is fine',
      withStore(async (s) => {
        await s.put('gone', enc('x'));
        await s.delete('gone');
        assert.equal(await s.head('gone'), undefined);
        await s.delete('gone');
        await s.delete('never/was');
      }),
    );

    it(
      'rejects bad keys on every operation, naming the key',
      withStore(async (s) => {
        const bad = ['', '/abs', 'a//b', 'a/', 'a/../b', './a', 'a\\b', 'nul\u0000x', 'line\nbreak', '.tmp/x', 'x'.repeat(1025)];
        for (const k of bad) {
          const named = (e: unknown) => e instanceof InvalidKeyError && e.key === k && e.message.includes(JSON.stringify(k));
          await assert.rejects(s.put(k, enc('x')), named, `put ${JSON.stringify(k)}`);
          await assert.rejects(s.get(k), named, `get ${JSON.stringify(k)}`);
          await assert.rejects(s.putIfAbsent(k, enc('x')), named);
          await assert.rejects(s.head(k), named);
          await assert.rejects(s.delete(k), named);
          assert.throws(() => s.uri(k), named);
        }
        assert.deepEqual(await keysOf(s, ''), [], 'nothing was written');
      }),
    );

    it(
      'uri names the store and the key',
      withStore(async (s) => {
        assert.ok(s.uri('runs/r/x.arrow').startsWith(s.root));
        assert.ok(s.uri('runs/r/x.arrow').endsWith('runs/r/x.arrow'));
      }),
    );
  });

  describe(`commit protocol (${backend})`, () => {
    const prefix = stepPrefix('r1', 3);

    it(
      'commits artifacts then manifest; readers verify and decode',
      withStore(async (s) => {
        const rewards = encodeRewards(rewardRows(5, 'acc'));
        const { manifest, created } = await commit(s, prefix, [
          { name: 'rewards.arrow', bytes: rewards, schema: REWARDS },
          { name: 'notes.txt', bytes: enc('hello') },
        ]);
        assert.equal(created, true);
        assert.equal(manifest.run_id, 'r1');
        assert.equal(manifest.step, 3);
        assert.deepEqual(
          manifest.artifacts.map((a) => a.name),
          ['notes.txt', 'rewards.arrow'],
        );
        const entry = manifest.artifacts[1]!;
        assert.deepEqual(entry.schema, { name: 'rewards', version: 1 });
        assert.equal(entry.bytes, rewards.byteLength);
        assert.match(entry.key, /^rewards\.[0-9a-f]{16}\.arrow$/);
        assert.deepEqual(await readCommitted(s, prefix), manifest);
        const rows = decodeRewards(await readArtifact(s, prefix, 'rewards.arrow'));
        assert.equal(rows.length, 5);
        assert.deepEqual(rows[1]!.components, { acc: 1 });
        assert.equal(dec(await readArtifact(s, prefix, 'notes.txt')), 'hello');
        assert.deepEqual(await committedSteps(s, 'r1'), [3]);
      }),
    );

    it(
      'an uncommitted prefix reads as not committed',
      withStore(async (s) => {
        assert.equal(await readCommitted(s, prefix), undefined);
        await assert.rejects(readArtifact(s, prefix, 'rewards.arrow'), NotCommittedError);
      }),
    );

    it(
      'the manifest is deterministic: same artifacts, same bytes, whatever the order',
      withStore(async (s) => {
        const a = { name: 'a.bin', bytes: pattern(300, 1) };
        const b = { name: 'b.bin', bytes: pattern(200, 2) };
        await commit(s, stepPrefix('r1', 1), [a, b]);
        await commit(s, stepPrefix('r1', 2), [b, a], { step: 1 });
        const m1 = await s.get(manifestKey(stepPrefix('r1', 1)));
        const m2 = await s.get(manifestKey(stepPrefix('r1', 2)));
        assert.equal(dec(m1), dec(m2).replace('"prefix": "runs/r1/steps/000002"', '"prefix": "runs/r1/steps/000001"'));
        assert.deepEqual(m1, encodeManifest((await readManifest(s, stepPrefix('r1', 1)))!));
        assert.doesNotMatch(dec(m1), /time|date|created/i);
      }),
    );

    it(
      're-committing a committed prefix is a no-op that returns the existing manifest',
      withStore(async (s) => {
        const first = await commit(s, prefix, [{ name: 'x.bin', bytes: enc('original') }]);
        const before = await keysOf(s, `${prefix}/`);
        const manifestBytes = await s.get(manifestKey(prefix));
        const again = await commit(s, prefix, [
          { name: 'x.bin', bytes: enc('different content') },
          { name: 'y.bin', bytes: enc('new') },
        ]);
        assert.equal(again.created, false);
        assert.deepEqual(again.manifest, first.manifest);
        assert.deepEqual(await keysOf(s, `${prefix}/`), before, 'no new objects');
        assert.deepEqual(await s.get(manifestKey(prefix)), manifestBytes);
        assert.equal(dec(await readArtifact(s, prefix, 'x.bin')), 'original');
        // writeArtifact to a committed prefix is skipped too, returning the committed entry.
        const entry = await writeArtifact(s, prefix, { name: 'x.bin', bytes: enc('yet another') });
        assert.deepEqual(entry, first.manifest.artifacts[0]);
        assert.deepEqual(await keysOf(s, `${prefix}/`), before);
      }),
    );

    it(
      'crash between artifacts and manifest: not committed; a later commit completes it',
      withStore(async (s) => {
        // The "crashed" attempt wrote its artifacts, then died before the manifest.
        const e1 = await writeArtifact(s, prefix, { name: 'rewards.arrow', bytes: encodeRewards(rewardRows(2, 'a')), schema: REWARDS });
        await writeArtifact(s, prefix, { name: 'partial.bin', bytes: enc('from the crashed attempt') });
        assert.equal(await readCommitted(s, prefix), undefined);
        await assert.rejects(readArtifact(s, prefix, 'rewards.arrow'), NotCommittedError);
        // The re-execution produces the same rewards and a different second artifact.
        const { manifest, created } = await commit(s, prefix, [
          { name: 'rewards.arrow', bytes: encodeRewards(rewardRows(2, 'a')), schema: REWARDS },
          { name: 'partial.bin', bytes: enc('from the retry') },
        ]);
        assert.equal(created, true);
        assert.equal(manifest.artifacts.find((a) => a.name === 'rewards.arrow')!.key, e1.key, 'same bytes, same object');
        assert.ok(await readCommitted(s, prefix));
        assert.equal(dec(await readArtifact(s, prefix, 'partial.bin')), 'from the retry');
      }),
    );

    it(
      'commit of entries written earlier (claim-checks) checks they exist',
      withStore(async (s) => {
        const e = await writeArtifact(s, prefix, { name: 'rewards.arrow', bytes: encodeRewards(rewardRows(3, 'a')), schema: REWARDS });
        const ghost = { ...e, name: 'ghost.arrow', key: 'ghost.0000000000000000.arrow' };
        await assert.rejects(
          commit(s, prefix, [e, ghost]),
          (err: unknown) => err instanceof IntegrityError && err.uri === s.uri(`${prefix}/ghost.0000000000000000.arrow`),
        );
        assert.equal(await readManifest(s, prefix), undefined, 'no manifest after a failed commit');
        const { created, manifest } = await commit(s, prefix, [e]);
        assert.equal(created, true);
        assert.deepEqual(manifest.artifacts, [e]);
      }),
    );

    it(
      'a corrupted artifact is an IntegrityError naming its URI',
      withStore(async (s) => {
        const { manifest } = await commit(s, prefix, [
          { name: 'rewards.arrow', bytes: encodeRewards(rewardRows(4, 'a')), schema: REWARDS },
        ]);
        const key = artifactKey(prefix, manifest.artifacts[0]!);
        const bytes = await s.get(key);
        const flipped = bytes.slice();
        flipped[Math.floor(bytes.length / 2)]! ^= 0xff;
        await s.put(key, flipped);
        for (const read of [() => readCommitted(s, prefix), () => readArtifact(s, prefix, 'rewards.arrow')]) {
          await assert.rejects(read(), (e: unknown) => {
            assert.ok(e instanceof IntegrityError);
            assert.equal(e.uri, s.uri(key));
            assert.match(e.message, /sha256/);
            assert.ok(e.message.includes(s.uri(key)));
            return true;
          });
        }
        // Same size: only a full check sees it.
        assert.ok(await readCommitted(s, prefix, { verify: 'size' }));
      }),
    );

    it(
      'a truncated or missing artifact is an IntegrityError naming its URI',
      withStore(async (s) => {
        const { manifest } = await commit(s, prefix, [
          { name: 'a.bin', bytes: pattern(5000) },
          { name: 'b.bin', bytes: pattern(100, 9) },
        ]);
        const keyA = artifactKey(prefix, manifest.artifacts[0]!);
        await s.put(keyA, (await s.get(keyA)).subarray(0, 4000));
        for (const verify of ['full', 'size'] as const) {
          await assert.rejects(
            readCommitted(s, prefix, { verify }),
            (e: unknown) => e instanceof IntegrityError && e.uri === s.uri(keyA) && /4000/.test(e.message),
          );
        }
        await s.put(keyA, pattern(5000));
        assert.ok(await readCommitted(s, prefix));
        const keyB = artifactKey(prefix, manifest.artifacts[1]!);
        await s.delete(keyB);
        await assert.rejects(
          readCommitted(s, prefix),
          (e: unknown) => e instanceof IntegrityError && e.uri === s.uri(keyB) && /missing/.test(e.message),
        );
      }),
    );

    it(
      'a damaged manifest is a CorruptDataError naming its URI',
      withStore(async (s) => {
        await commit(s, prefix, [{ name: 'a.bin', bytes: enc('a') }]);
        const mk = manifestKey(prefix);
        const good = await s.get(mk);
        await s.put(mk, good.subarray(0, good.length - 20));
        await assert.rejects(readCommitted(s, prefix), (e: unknown) => e instanceof CorruptDataError && e.message.includes(s.uri(mk)));
        await s.put(mk, enc('{"format": "something else"}'));
        await assert.rejects(readManifest(s, prefix), (e: unknown) => e instanceof CorruptDataError && /format/.test(e.message));
      }),
    );

    it(
      '8 racing commits of different content: one manifest, all agree, it verifies',
      withStore(async (s) => {
        const results = await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            commit(s, prefix, [
              { name: 'rewards.arrow', bytes: encodeRewards(rewardRows(3 + i, `writer${i}`)), schema: REWARDS },
              { name: 'who.txt', bytes: enc(`writer ${i}`) },
            ]),
          ),
        );
        assert.equal(results.filter((r) => r.created).length, 1, 'exactly one created the manifest');
        const winner = results.find((r) => r.created)!.manifest;
        for (const r of results) assert.deepEqual(r.manifest, winner);
        assert.deepEqual(await readCommitted(s, prefix), winner);
        const who = dec(await readArtifact(s, prefix, 'who.txt'));
        const i = Number(who.split(' ')[1]);
        const rows = decodeRewards(await readArtifact(s, prefix, 'rewards.arrow'));
        assert.equal(rows.length, 3 + i, 'artifacts are all from the winning writer');
        assert.deepEqual(Object.keys(rows[0]!.components), [`writer${i}`]);
      }),
    );

    it(
      'rejects a wrong schema claim, duplicate and reserved names',
      withStore(async (s) => {
        await assert.rejects(
          commit(s, prefix, [
            { name: 'rollouts.arrow', bytes: encodeRewards(rewardRows(1, 'a')), schema: { name: 'rollouts', version: 1 } },
          ]),
          (e: unknown) => e instanceof SchemaMismatchError && /rollouts v1/.test(e.message) && /rewards v1/.test(e.message),
        );
        await assert.rejects(
          commit(s, prefix, [
            { name: 'a', bytes: enc('1') },
            { name: 'a', bytes: enc('2') },
          ]),
          /listed twice/,
        );
        await assert.rejects(commit(s, prefix, [{ name: 'manifest.json', bytes: enc('{}') }]), /reserved/);
        await assert.rejects(commit(s, prefix, [{ name: '../escape', bytes: enc('x') }]), InvalidKeyError);
        assert.equal(await readManifest(s, prefix), undefined);
      }),
    );

    it(
      'a table read with the wrong decoder is a SchemaMismatchError naming both',
      withStore(async (s) => {
        await commit(s, prefix, [{ name: 'rewards.arrow', bytes: encodeRewards(rewardRows(2, 'a')), schema: REWARDS }]);
        const bytes = await readArtifact(s, prefix, 'rewards.arrow');
        assert.throws(
          () => decodeRollouts(bytes, 'the-source'),
          (e: unknown) =>
            e instanceof SchemaMismatchError &&
            /expected schema "rollouts"/.test(e.message) &&
            /found "rewards"/.test(e.message) &&
            /the-source/.test(e.message),
        );
      }),
    );
  });
}
