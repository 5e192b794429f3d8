/** Key rules, the store layout and its parsers (activities/store/keys.ts). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidKeyError } from '../../../activities/store/errors.js';
import {
  ADVANTAGES_NAME,
  ANNOTATION_JOB_NAME,
  ANNOTATION_REWARDS_NAME,
  ANNOTATION_SUMMARY_NAME,
  EVAL_NAME,
  MANIFEST_NAME,
  METRICS_NAME,
  MODEL_NAME,
  OPTIMIZER_NAME,
  RUN_RECORD_NAME,
  annotationPartKey,
  annotationPrefix,
  annotationShardPrefix,
  checkpointPrefix,
  contentKey,
  evalPrefix,
  joinKey,
  parseRunKey,
  parseShardName,
  parseStep,
  rewardsName,
  rolloutsName,
  episodePartKey,
  episodePartsPrefix,
  stepEpisodePartsPrefix,
  runFolder,
  runPrefix,
  runRecordKey,
  stepPrefix,
  validateKey,
  validatePrefix,
} from '../../../activities/store/keys.js';

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
      assert.throws(
        () => validateKey(key),
        (e: unknown) =>
          e instanceof InvalidKeyError &&
          e.code === 'invalid_key' &&
          e.key === key &&
          e.message.includes(JSON.stringify(key)) &&
          rule.test(e.message),
        JSON.stringify(key),
      );
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

  it('builds the prefixes of a run', () => {
    assert.equal(runPrefix('run-7'), 'runs/run-7');
    assert.equal(stepPrefix('run-7', 0), 'runs/run-7/steps/000000');
    assert.equal(stepPrefix('run-7', 42), 'runs/run-7/steps/000042');
    assert.equal(stepPrefix('run-7', 1234567), 'runs/run-7/steps/1234567');
    assert.equal(checkpointPrefix('run-7', 42), 'runs/run-7/checkpoints/000042');
    assert.equal(evalPrefix('run-7', 0), 'runs/run-7/evals/000000');
    assert.equal(evalPrefix('run-7', 12), 'runs/run-7/evals/000012');
    assert.equal(runFolder('run-7', 'steps'), 'runs/run-7/steps');
    assert.equal(runFolder('run-7', 'checkpoints'), 'runs/run-7/checkpoints');
    assert.equal(runFolder('run-7', 'evals'), 'runs/run-7/evals');
    assert.equal(runRecordKey('run-7'), 'runs/run-7/run.json');
    assert.equal(joinKey(stepPrefix('r', 1), 'rollouts.arrow'), 'runs/r/steps/000001/rollouts.arrow');
  });

  it('names every artifact of a run', () => {
    assert.equal(rolloutsName(0), 'rollouts-000.arrow');
    assert.equal(rolloutsName(7), 'rollouts-007.arrow');
    assert.equal(rolloutsName(1234), 'rollouts-1234.arrow');
    assert.equal(rewardsName(0), 'rewards-000.arrow');
    assert.equal(rewardsName(42), 'rewards-042.arrow');
    assert.equal(ADVANTAGES_NAME, 'advantages.arrow');
    assert.equal(METRICS_NAME, 'metrics.arrow');
    assert.equal(EVAL_NAME, 'eval.json');
    assert.equal(RUN_RECORD_NAME, 'run.json');
    assert.equal(MODEL_NAME, 'model.safetensors');
    assert.equal(OPTIMIZER_NAME, 'optimizer.safetensors');
    assert.equal(MANIFEST_NAME, 'manifest.json');
  });

  it("names an episode shard's resume points: runs/r/steps/000003/episodes-001/turn-0002.json; shards past 999 keep every digit", () => {
    assert.equal(episodePartsPrefix('r', 3, 1), 'runs/r/steps/000003/episodes-001');
    assert.equal(episodePartKey('r', 3, 1, 2), 'runs/r/steps/000003/episodes-001/turn-0002.json');
    assert.equal(episodePartKey('r', 3, 1234, 12345), 'runs/r/steps/000003/episodes-1234/turn-12345.json');
    assert.throws(() => episodePartKey('r', 3, 1, -1), /a turn count must be a non-negative integer/);
    // the step's prefix of them all (what the commit lists to delete them) holds every shard's, and no artifact of the step
    assert.equal(stepEpisodePartsPrefix('r', 3), 'runs/r/steps/000003/episodes-');
    assert.ok(episodePartKey('r', 3, 1234, 1).startsWith(stepEpisodePartsPrefix('r', 3)));
    for (const name of [rolloutsName(0), rewardsName(0), METRICS_NAME, ADVANTAGES_NAME])
      assert.ok(!`${stepPrefix('r', 3)}/${name}`.startsWith(stepEpisodePartsPrefix('r', 3)), name);
  });

  it('lays out an annotation job', () => {
    assert.equal(annotationPrefix('job-1'), 'annotations/job-1');
    assert.equal(annotationShardPrefix('annotations/job-1', 2), 'annotations/job-1/shards/000002');
    assert.equal(annotationPartKey('out/p', 2, 13), 'out/p/shards/000002/parts/000013.arrow');
    assert.equal(ANNOTATION_REWARDS_NAME, 'rewards.arrow');
    assert.equal(ANNOTATION_JOB_NAME, 'job.json');
    assert.equal(ANNOTATION_SUMMARY_NAME, 'summary.json');
    assert.throws(() => annotationPrefix('a/b'), /job id must not contain "\/"/);
    assert.throws(() => annotationShardPrefix('p', -1), /shard index must be a non-negative integer/);
    assert.throws(() => annotationPartKey('p', 0, 0.5), /chunk index must be a non-negative integer/);
  });

  it('parses step and checkpoint numbers out of keys', () => {
    assert.equal(parseStep('runs/r/steps/000042/manifest.json'), 42);
    assert.equal(parseStep('runs/r/checkpoints/000003'), 3);
    assert.equal(parseStep('runs/r/steps/1234567/x'), 1234567);
    assert.equal(parseStep('runs/r/evals/000003'), undefined, 'an evaluation is not a step');
    assert.equal(parseStep('runs/r/steps/00042'), undefined, 'fewer than six digits');
    assert.equal(parseStep('other/000003'), undefined);
  });

  it('parseRunKey reads back every prefix and key the builders make', () => {
    const cases: [string, ReturnType<typeof parseRunKey>][] = [
      [stepPrefix('r1', 3), { runId: 'r1', folder: 'steps', number: 3, rest: '' }],
      [`${stepPrefix('r1', 3)}/${METRICS_NAME}`, { runId: 'r1', folder: 'steps', number: 3, rest: METRICS_NAME }],
      [
        `${stepPrefix('r1', 3)}/${contentKey(rolloutsName(1), 'ab'.repeat(32))}`,
        { runId: 'r1', folder: 'steps', number: 3, rest: 'rollouts-001.abababababababab.arrow' },
      ],
      [
        `${checkpointPrefix('run.x', 1234567)}/${MANIFEST_NAME}`,
        { runId: 'run.x', folder: 'checkpoints', number: 1234567, rest: MANIFEST_NAME },
      ],
      [evalPrefix('r-2', 0), { runId: 'r-2', folder: 'evals', number: 0, rest: '' }],
      [runRecordKey('r1'), { runId: 'r1', folder: null, number: null, rest: RUN_RECORD_NAME }],
      [`${runFolder('r1', 'steps')}/notes`, { runId: 'r1', folder: null, number: null, rest: 'steps/notes' }],
    ];
    for (const [key, want] of cases) assert.deepEqual(parseRunKey(key), want, key);
    for (const s of [0, 1, 999999, 1000000]) assert.equal(parseRunKey(stepPrefix('r', s))!.number, s);
    for (const key of [runPrefix('r1'), 'runs/', 'other/r1/steps/000001', 'annotations/j/shards/000001']) {
      assert.equal(parseRunKey(key), undefined, key);
    }
  });

  it('parseShardName reads back rolloutsName and rewardsName, and nothing else', () => {
    for (const k of [0, 1, 42, 999, 1000]) {
      assert.deepEqual(parseShardName(rolloutsName(k)), { kind: 'rollouts', shard: k });
      assert.deepEqual(parseShardName(rewardsName(k)), { kind: 'rewards', shard: k });
    }
    for (const name of [METRICS_NAME, ADVANTAGES_NAME, 'rollouts.arrow', 'rollouts-.arrow', 'rewards-001.json', 'x-rewards-001.arrow']) {
      assert.equal(parseShardName(name), undefined, name);
    }
  });

  it('rejects run ids and steps that would break the layout', () => {
    assert.throws(() => stepPrefix('a/b', 1), /run id must not contain "\/"/);
    assert.throws(() => stepPrefix('', 1), /run id must be a non-empty string/);
    assert.throws(() => stepPrefix('..', 1), /"\.\." segments/);
    assert.throws(() => stepPrefix('r', -1), /non-negative integer/);
    assert.throws(() => stepPrefix('r', 1.5), /non-negative integer/);
    assert.throws(() => checkpointPrefix('r', -1), /non-negative integer/);
    assert.throws(() => evalPrefix('r', -1), /policy version must be a non-negative integer/);
    assert.throws(() => runRecordKey('a/b'), /run id must not contain "\/"/);
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
