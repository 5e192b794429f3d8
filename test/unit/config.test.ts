import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig, ConfigError, z } from '../../activities/common/config.js';

const schema = z.strictObject({
  shards: z.number().int().positive().default(4),
  store: z.strictObject({ uri: z.string().min(1) }),
});

test('defaults are filled from the schema', () => {
  assert.deepEqual(parseConfig(schema, { store: { uri: 'file:///tmp/x' } }, 'job config'), { shards: 4, store: { uri: 'file:///tmp/x' } });
});

test('a bad field is named by its dotted path', () => {
  assert.throws(
    () => parseConfig(schema, { shards: -2, store: {} }, 'job config'),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /^invalid job config: /);
      assert.match(e.message, /shards: .*>0/);
      assert.match(e.message, /store\.uri: /);
      return true;
    },
  );
});

test('an unknown field is rejected and named', () => {
  assert.throws(() => parseConfig(schema, { store: { uri: 'x' }, shard: 3 }, 'job config'), /shard/);
});
