/** Store URIs, S3 options from code and environment, and the docs staying in step with the schemas. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ConfigError } from '../../../activities/common/config.js';
import { InvalidUriError } from '../../../activities/store/errors.js';
import { openStore, parseStoreUri, s3OptionsFromEnv } from '../../../activities/store/open.js';
import { S3Store } from '../../../activities/store/s3-store.js';
import { FileStore } from '../../../activities/store/file-store.js';
import { DOC_PATH, updatedDoc } from '../../../activities/store/schemas-doc.js';
import { CONTRACTS } from '../../../activities/store/schemas.js';

describe('store URIs and options', () => {
  it('parses file and s3 URIs', () => {
    assert.deepEqual(parseStoreUri('file:///var/data/rl'), { scheme: 'file', dir: '/var/data/rl' });
    assert.deepEqual(parseStoreUri('file:///tmp/a%20b'), { scheme: 'file', dir: '/tmp/a b' });
    assert.deepEqual(parseStoreUri('file://data/rl'), { scheme: 'file', dir: 'data/rl' });
    assert.deepEqual(parseStoreUri('s3://my-bucket'), { scheme: 's3', bucket: 'my-bucket', prefix: '' });
    assert.deepEqual(parseStoreUri('s3://my-bucket/'), { scheme: 's3', bucket: 'my-bucket', prefix: '' });
    assert.deepEqual(parseStoreUri('s3://my.bucket/team/rl/'), { scheme: 's3', bucket: 'my.bucket', prefix: 'team/rl' });
  });

  it('rejects bad URIs, saying what is accepted', () => {
    const cases: [string, RegExp][] = [
      ['', /expected file:\/\/DIR or s3:\/\/bucket\/prefix/],
      ['/plain/path', /not a URI; use file:\/\/\/absolute\/dir/],
      ['gs://bucket/x', /unsupported scheme "gs:"/],
      ['file://', /no directory given/],
      ['s3://', /is not a valid bucket name/],
      ['s3://Upper_Case/x', /"Upper_Case" is not a valid bucket name/],
      ['s3://ok-bucket/a//b', /bad prefix: .*empty path segment/],
      ['s3://ok-bucket/../x', /bad prefix/],
    ];
    for (const [uri, why] of cases) {
      assert.throws(
        () => parseStoreUri(uri),
        (e: unknown) => e instanceof InvalidUriError && e.code === 'invalid_uri' && why.test(e.message),
        uri,
      );
    }
  });

  it('opens the backend the URI names', async () => {
    const f = openStore('file:///tmp/durable-rl-open-test');
    assert.ok(f instanceof FileStore);
    const s = openStore('s3://bkt/pre/fix', { s3: { endpoint: 'http://127.0.0.1:9', accessKeyId: 'a', secretAccessKey: 'b' } });
    assert.ok(s instanceof S3Store);
    assert.equal(s.root, 's3://bkt/pre/fix');
    assert.equal(s.uri('runs/x/manifest.json'), 's3://bkt/pre/fix/runs/x/manifest.json');
    await s.close();
  });

  it('validates S3 options, naming the field', () => {
    const open = (s3: object) => () => openStore('s3://bkt', { s3 });
    assert.throws(open({ endpoint: 'not a url' }), (e: unknown) => e instanceof ConfigError && /endpoint/.test(e.message));
    assert.throws(open({ accessKeyId: 'only-one' }), /secretAccessKey: give both accessKeyId and secretAccessKey, or neither/);
    assert.throws(open({ partSizeBytes: 1024 }), /partSizeBytes/);
    assert.throws(open({ maxAttempts: 0 }), /maxAttempts/);
    assert.throws(open({ endPoint: 'http://x:1' }), /Unrecognized key.*endPoint/, 'a misspelt option is not silently ignored');
    // Empty strings (as infra reports "use the default chain") count as unset.
    assert.ok(openStore('s3://bkt', { s3: { endpoint: '', accessKeyId: '', secretAccessKey: '' } }) instanceof S3Store);
  });

  it('reads S3 options from DURABLE_RL_S3_* variables', () => {
    assert.deepEqual(
      s3OptionsFromEnv({
        DURABLE_RL_S3_ENDPOINT: 'http://127.0.0.1:9000',
        DURABLE_RL_S3_REGION: 'eu-west-1',
        DURABLE_RL_S3_ACCESS_KEY_ID: 'id',
        DURABLE_RL_S3_SECRET_ACCESS_KEY: 'secret',
        DURABLE_RL_S3_MAX_ATTEMPTS: '7',
        UNRELATED: 'x',
      }),
      { endpoint: 'http://127.0.0.1:9000', region: 'eu-west-1', accessKeyId: 'id', secretAccessKey: 'secret', maxAttempts: 7 },
    );
    assert.deepEqual(s3OptionsFromEnv({ DURABLE_RL_S3_ENDPOINT: '' }), {});
  });

  it('a bad setting from the environment is reported as coming from DURABLE_RL_S3_*', () => {
    const saved = process.env.DURABLE_RL_S3_MAX_ATTEMPTS;
    process.env.DURABLE_RL_S3_MAX_ATTEMPTS = 'lots';
    try {
      assert.throws(
        () => openStore('s3://bkt'),
        (e: unknown) => e instanceof ConfigError && /from the DURABLE_RL_S3_\* environment variables: maxAttempts:/.test(e.message),
      );
    } finally {
      if (saved === undefined) delete process.env.DURABLE_RL_S3_MAX_ATTEMPTS;
      else process.env.DURABLE_RL_S3_MAX_ATTEMPTS = saved;
    }
  });
});

describe('docs/data-contracts.md', () => {
  it('is in step with the schema declarations (regenerate: npx tsx activities/store/schemas-doc.ts)', () => {
    const doc = readFileSync(DOC_PATH, 'utf8');
    assert.equal(doc, updatedDoc(doc));
    for (const t of CONTRACTS) {
      for (const name of Object.keys(t.columns)) assert.ok(doc.includes(`| \`${name}\` |`), `${t.name}.${name} documented`);
    }
  });
});
