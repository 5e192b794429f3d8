import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultRegistry } from '../../../activities/reward/registry.js';
import { checkSchema } from '../../../activities/reward/format.js';
import { softOverlong } from '../../../activities/reward/length.js';
import type { RewardResult, RewardSample } from '../../../activities/reward/types.js';
import { logger } from '../../../activities/common/log.js';

const reg = defaultRegistry();
const ctx = { step: 0, signal: new AbortController().signal, log: logger('test') };
const run = async (name: string, s: Partial<RewardSample>, options: unknown = {}): Promise<RewardResult> =>
  reg.create({ name, options }).score!({ promptId: 'p', sampleId: 0, prompt: '', completion: '', ...s }, ctx);

test('format_tags: the R1 format passes, each broken property fails its own check', async () => {
  assert.deepEqual(await run('format_tags', { completion: '<think>reason</think>\n<answer>42</answer>' }), {
    reward: 1,
    components: { tags_present: 1, tags_unique: 1, tags_ordered: 1, tags_nonempty: 1 },
  });
  const cases: [string, string][] = [
    ['<answer>42</answer>', 'tags_present'],
    ['<answer>42</answer><think>r</think>', 'tags_ordered'],
    ['<think>r</think><answer>1</answer><answer>2</answer>', 'tags_unique'],
    ['<think>  </think><answer>42</answer>', 'tags_nonempty'],
    ['<think>r</think><answer>42', 'tags_present'],
    ['', 'tags_present'],
  ];
  for (const [c, failing] of cases) {
    const r = await run('format_tags', { completion: c });
    assert.equal(r.reward, 0, c);
    assert.equal(r.components![failing], 0, `${c} should fail ${failing}`);
  }
});

test('format_tags: strict, prefilled <think>, custom tags, partial credit', async () => {
  const strict = { strict: true };
  assert.equal((await run('format_tags', { completion: '<think>a</think> <answer>b</answer>' }, strict)).reward, 1);
  assert.equal((await run('format_tags', { completion: 'Sure! <think>a</think><answer>b</answer>' }, strict)).reward, 0);
  assert.equal((await run('format_tags', { completion: '<think>a</think><answer>b</answer> bye' }, strict)).components!.tags_strict, 0);
  // The chat template put <think> at the end of the prompt.
  assert.equal((await run('format_tags', { prompt: 'Q?\n<think>', completion: 'a</think><answer>b</answer>' })).reward, 1);
  assert.equal(
    (await run('format_tags', { prompt: 'Q?\n<think>', completion: 'a</think><answer>b</answer>' }, { openTagInPrompt: false })).reward,
    0,
  );
  assert.equal((await run('format_tags', { completion: '<plan>x</plan><code>y</code>' }, { tags: ['plan', 'code'] })).reward, 1);
  const partial = await run('format_tags', { completion: '<answer>42</answer><think>r</think>' }, { partialCredit: true, failReward: -1 });
  // present, unique, non-empty pass; ordered fails: -1 + 2 * 3/4.
  assert.equal(partial.reward, 0.5);
  assert.equal((await run('format_tags', { completion: '<think>日本語 😀</think><answer>ü</answer>' })).reward, 1);
  assert.throws(() => reg.create({ name: 'format_tags', options: { tags: ['bad tag'] } }), /tags\.0: a tag name/);
});

test('json_valid: syntax, extraction, schema from options or metadata, partial credit', async () => {
  assert.equal((await run('json_valid', { completion: '{"a": 1}' })).reward, 1);
  assert.equal((await run('json_valid', { completion: '{"a": 1,}' })).reward, 0);
  assert.equal((await run('json_valid', { completion: '' })).reward, 0);
  assert.equal((await run('json_valid', { completion: 'Here:\n```json\n[1, 2]\n```\nDone.' })).reward, 1);
  assert.equal((await run('json_valid', { completion: 'x <answer>{"ok": true}</answer>' })).reward, 1);
  assert.equal((await run('json_valid', { completion: '{"big": 123456789012345678901234567890, "s": "東京 😀"}' })).reward, 1);
  const schema = {
    type: 'object',
    required: ['name', 'age'],
    properties: { name: { type: 'string', minLength: 1 }, age: { type: 'integer', minimum: 0 } },
    additionalProperties: false,
  };
  assert.deepEqual(await run('json_valid', { completion: '{"name": "Zoë", "age": 3}' }, { schema }), {
    reward: 1,
    components: { json_parsed: 1, json_schema: 1 },
  });
  assert.equal((await run('json_valid', { completion: '{"name": "Zoë", "age": 3.5}' }, { schema })).reward, 0);
  assert.equal((await run('json_valid', { completion: '{"name": "Zoë"}' }, { schema })).reward, 0);
  assert.equal((await run('json_valid', { completion: '{"name": "Zoë", "age": 3, "x": 1}' }, { schema })).reward, 0);
  const partial = await run('json_valid', { completion: '{"name": "Zoë"}' }, { schema, partialCredit: true });
  // checks: type object ok, required name ok, required age missing, name type ok, name minLength ok -> 4/5.
  assert.equal(partial.reward, 0.8);
  const meta = await run('json_valid', { completion: '[1, "2"]', metadata: { jsonSchema: { type: 'array', items: { type: 'number' } } } });
  assert.equal(meta.reward, 0);
  await assert.rejects(
    async () => run('json_valid', { completion: '{}', metadata: { jsonSchema: { type: 'dict' } } }),
    /metadata\.jsonSchema of prompt p is not a JSON-schema-lite: type/,
  );
  assert.throws(() => reg.create({ name: 'json_valid', options: { schema: { required: 'name' } } }), /schema\.required/);
});

test('checkSchema names the failing path', () => {
  const failing = checkSchema({ a: [1, 'x'] }, { properties: { a: { type: 'array', items: { type: 'integer' } } } }).filter((c) => !c.ok);
  assert.deepEqual(
    failing.map((c) => c.path),
    ['$.a[1]'],
  );
  assert.equal(
    checkSchema(1e300, { type: 'number', maximum: 1e299 }).every((c) => c.ok),
    false,
  );
  assert.ok(checkSchema(5, { enum: [1, 5] }).every((c) => c.ok));
});

test('overlong_penalty: DAPO soft punishment by hand', async () => {
  // L_max = 100, L_cache = 20: no penalty up to 80, linear to -1 at 100, -1 beyond.
  assert.equal(softOverlong(80, 100, 20), 0);
  assert.equal(softOverlong(90, 100, 20), -0.5);
  assert.equal(softOverlong(100, 100, 20), -1);
  assert.equal(softOverlong(101, 100, 20), -1);
  const opts = { maxLength: 100, cacheLength: 20 };
  assert.equal((await run('overlong_penalty', { completionTokens: 95 }, opts)).reward, -0.75);
  assert.equal((await run('overlong_penalty', { completionTokens: 0 }, opts)).reward, 0);
  assert.equal((await run('overlong_penalty', { completionTokens: 2 ** 40 }, opts)).reward, -1);
  assert.equal((await run('overlong_penalty', { completionTokens: 95 }, { ...opts, penaltyFactor: 0.5 })).reward, -0.375);
  // Characters are code points: 90 emoji are 90 characters, not 180 UTF-16 units.
  assert.equal((await run('overlong_penalty', { completion: '😀'.repeat(90) }, { ...opts, unit: 'chars' })).reward, -0.5);
  await assert.rejects(async () => run('overlong_penalty', { completion: 'x' }, opts), /has no completionTokens.*unit: "chars"/);
  assert.throws(
    () => reg.create({ name: 'overlong_penalty', options: { maxLength: 10, cacheLength: 20 } }),
    /cacheLength: cacheLength must not exceed maxLength/,
  );
});

test('length_penalty: zero inside the range, linear ramp outside', async () => {
  const opts = { minLength: 2, maxLength: 4, rampLength: 4, unit: 'words' };
  assert.equal((await run('length_penalty', { completion: 'a b c' }, opts)).reward, 0);
  assert.equal((await run('length_penalty', { completion: 'a b c d e f' }, opts)).reward, -0.5);
  assert.equal((await run('length_penalty', { completion: '' }, opts)).reward, -0.5);
  assert.equal((await run('length_penalty', { completion: 'w '.repeat(100) }, opts)).reward, -1);
  assert.throws(() => reg.create({ name: 'length_penalty', options: {} }), /maxLength/);
});
