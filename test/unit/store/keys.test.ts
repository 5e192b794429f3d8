/** Key rules and the key layout of DESIGN.md §5. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidKeyError } from '../../../activities/store/errors.js';
import { checkpointPrefix, joinKey, parseStep, runPrefix, stepPrefix, validateKey, validatePrefix } from '../../../activities/store/keys.js';
import { contentKey } from '../../../activities/store/manifest.js';

describe('keys', () => {
  it('accepts plain relative keys, unicode and dots inside names', () => {
    for (const k of ['a', 'runs/r1/steps/000001/rollouts.arrow', 'ü/日本/🌍.bin', 'a/.hidden', 'a/b..c', '...x', 'x'.repeat(1024)]) {
      assert.equal(validateKey(k), k);
    }
  });

  it('rejects each broken rule with a message naming the key and the rule', () => {
    const cases: [string, RegExp][] = [
      ['', /must not be empty/],
      ['/etc/passwd', /absolute paths/],
      ['a//b', /empty path segment/],
      ['a/', /empty path segment/],
      ['a/../../b', /"\.\." segments/],
      ['..', /"\.\." segments/],
      ['a/./b', /"\." segments/],
      ['a\\b', /backslashes/],
      ['a\u0000b', /control characters/],
      ['a\tb', /control characters/],
      ['.tmp/x', /reserved/],
      ['é'.repeat(513), /longer than 1024 UTF-8 bytes/],
    ];
    for (const [key, rule] of cases) {
      assert.throws(() => validateKey(key), (e: unknown) =>
        e instanceof InvalidKeyError && e.code === 'invalid_key' && e.key === key && e.message.includes(JSON.stringify(key)) && rule.test(e.message), JSON.stringify(key));
    }
    assert.throws(() => validateKey(42 as unknown as string), /must be a string/);
  });

  it('prefixes may be empty or end with "/"', () => {
    assert.equal(validatePrefix(''), '');
    assert.equal(validatePrefix('runs/'), 'runs/');
    assert.equal(validatePrefix('runs/r1/st'), 'runs/r1/st');
    assert.throws(() => validatePrefix('/'), InvalidKeyError);
    assert.throws(() => validatePrefix('a//'), InvalidKeyError);
    assert.throws(() => validatePrefix('../'), InvalidKeyError);
  });

  it('builds the DESIGN.md §5 layout', () => {
    assert.equal(runPrefix('run-7'), 'runs/run-7');
    assert.equal(stepPrefix('run-7', 0), 'runs/run-7/steps/000000');
    assert.equal(stepPrefix('run-7', 42), 'runs/run-7/steps/000042');
    assert.equal(stepPrefix('run-7', 1234567), 'runs/run-7/steps/1234567');
    assert.equal(checkpointPrefix('run-7', 42), 'runs/run-7/checkpoints/000042');
    assert.equal(joinKey(stepPrefix('r', 1), 'rollouts.arrow'), 'runs/r/steps/000001/rollouts.arrow');
    assert.equal(parseStep('runs/r/steps/000042/manifest.json'), 42);
    assert.equal(parseStep('runs/r/checkpoints/000003'), 3);
    assert.equal(parseStep('other/000003'), undefined);
  });

  it('rejects run ids and steps that would break the layout', () => {
    assert.throws(() => stepPrefix('a/b', 1), /run id must not contain "\/"/);
    assert.throws(() => stepPrefix('', 1), /run id must be a non-empty string/);
    assert.throws(() => stepPrefix('..', 1), /"\.\." segments/);
    assert.throws(() => stepPrefix('r', -1), /non-negative integer/);
    assert.throws(() => stepPrefix('r', 1.5), /non-negative integer/);
    assert.throws(() => joinKey('a', '../b'), InvalidKeyError);
  });

  it('content keys put the hash before the extension', () => {
    const sha = 'ab'.repeat(32);
    assert.equal(contentKey('rollouts.arrow', sha), 'rollouts.abababababababab.arrow');
    assert.equal(contentKey('weights/model.safetensors', sha), 'weights/model.abababababababab.safetensors');
    assert.equal(contentKey('summary', sha), 'summary.abababababababab');
    assert.equal(contentKey('.hidden', sha), '.hidden.abababababababab');
    assert.equal(contentKey('a.b.c', sha), 'a.b.abababababababab.c');
  });
});
