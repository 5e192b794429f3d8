import { test } from 'node:test';
import assert from 'node:assert/strict';
import { r3l, r3lOptionsSchema } from '../../../activities/advantage/r3l.js';
import { AdvantageInputError, type AdvantageSample } from '../../../activities/advantage/types.js';
import { assertClose } from './helpers.js';

const opts = (o: Record<string, unknown> = {}) => r3lOptionsSchema.parse({ estimator: 'r3l', ...o });

function batch(): AdvantageSample[] {
  return [
    { sampleId: 'fail', groupId: 'g', reward: 0, completionLength: 6, tokenIds: [1, 2, 3, 4, 5, 6] },
    { sampleId: 'retry', groupId: 'g', reward: 1, completionLength: 5, tokenIds: [1, 2, 3, 9, 9] },
    { sampleId: 'other', groupId: 'g', reward: 0, completionLength: 4, tokenIds: [7, 7, 7, 7] },
  ];
}

test('R3L pivotal credit: the shared prefix before the first differing token is masked in both paired samples', () => {
  const r = r3l(
    { samples: batch(), pairs: [{ failedSampleId: 'fail', retrySampleId: 'retry' }] },
    opts({ scale: 'none', amplification: 1 }),
  );
  assert.deepEqual(Array.from(r.samples[0]!.lossMask!), [0, 0, 0, 1, 1, 1]);
  assert.deepEqual(Array.from(r.samples[1]!.lossMask!), [0, 0, 0, 1, 1]);
  assert.deepEqual(Array.from(r.samples[2]!.lossMask!), [1, 1, 1, 1]);
  assertClose(
    r.samples.map((s) => s.advantage),
    [-1 / 3, 2 / 3, -1 / 3],
  );
  assert.equal(r.stats.extra.pivotMaskedTokens, 6);
  assert.equal(r.stats.extra.pairedSamples, 2);
});

test('R3L positive amplification multiplies the positive advantage of a successful sample', () => {
  const r = r3l({ samples: batch() }, opts({ scale: 'none', amplification: 2 }));
  assertClose(
    r.samples.map((s) => s.advantage),
    [-1 / 3, 4 / 3, -1 / 3],
  );
  assert.equal(r.stats.extra.amplifiedSamples, 1);
});

test('R3L: a positive advantage below the success threshold is not amplified', () => {
  const samples: AdvantageSample[] = [
    { sampleId: 'a', groupId: 'g', reward: 0.8 },
    { sampleId: 'b', groupId: 'g', reward: 0 },
  ];
  const r = r3l({ samples }, opts({ scale: 'none', amplification: 3, successThreshold: 1 }));
  assertClose(
    r.samples.map((s) => s.advantage),
    [0.4, -0.4],
  );
  assert.equal(r.stats.extra.amplifiedSamples, 0);
});

test('R3L: an explicit pivot is used and checked against the token ids', () => {
  const r = r3l({ samples: batch(), pairs: [{ failedSampleId: 'fail', retrySampleId: 'retry', pivot: 2 }] }, opts());
  assert.deepEqual(Array.from(r.samples[0]!.lossMask!), [0, 0, 1, 1, 1, 1]);
  assert.throws(
    () => r3l({ samples: batch(), pairs: [{ failedSampleId: 'fail', retrySampleId: 'retry', pivot: 4 }] }, opts()),
    /pair 0 \(failed "fail", retry "retry"\) has pivot 4 but the token ids already differ at position 3/,
  );
});

test('R3L: a sample in two pairs keeps the shortest shared prefix masked', () => {
  const samples = batch();
  samples.push({ sampleId: 'retry2', groupId: 'g', reward: 1, completionLength: 6, tokenIds: [1, 8, 8, 8, 8, 8] });
  const r = r3l(
    {
      samples,
      pairs: [
        { failedSampleId: 'fail', retrySampleId: 'retry' },
        { failedSampleId: 'fail', retrySampleId: 'retry2' },
      ],
    },
    opts(),
  );
  assert.deepEqual(Array.from(r.samples[0]!.lossMask!), [0, 1, 1, 1, 1, 1]);
  assert.deepEqual(Array.from(r.samples[3]!.lossMask!), [0, 1, 1, 1, 1, 1]);
});

test('R3L: all-equal group gives zero advantages; single-sample group gives 0', () => {
  const samples: AdvantageSample[] = [
    { sampleId: 'a', groupId: 'flat', reward: 1 },
    { sampleId: 'b', groupId: 'flat', reward: 1 },
    { sampleId: 'c', groupId: 'solo', reward: 1 },
  ];
  const r = r3l({ samples }, opts());
  assertClose(
    r.samples.map((s) => s.advantage),
    [0, 0, 0],
  );
  assert.equal(r.stats.extra.amplifiedSamples, 0);
});

test('R3L rejects bad pairs with errors that name the pair', () => {
  const samples = batch();
  samples.push({ sampleId: 'elsewhere', groupId: 'h', reward: 1, completionLength: 3, tokenIds: [1, 2, 3] });
  const run = (pairs: { failedSampleId: string; retrySampleId: string; pivot?: number }[]) => () => r3l({ samples, pairs }, opts());
  assert.throws(run([{ failedSampleId: 'fail', retrySampleId: 'ghost' }]), /pair 0 .* not in the batch/);
  assert.throws(run([{ failedSampleId: 'fail', retrySampleId: 'elsewhere' }]), /spans groups "g" and "h"/);
  assert.throws(run([{ failedSampleId: 'fail', retrySampleId: 'fail' }]), /with itself/);
  assert.throws(run([{ failedSampleId: 'fail', retrySampleId: 'retry', pivot: 9 }]), /pivot 9: give a position in \[0, 5\]/);
  const noTokens: AdvantageSample[] = [
    { sampleId: 'f', groupId: 'g', reward: 0, completionLength: 2 },
    { sampleId: 'r', groupId: 'g', reward: 1, completionLength: 2 },
  ];
  assert.throws(
    () => r3l({ samples: noTokens, pairs: [{ failedSampleId: 'f', retrySampleId: 'r' }] }, opts()),
    (e: unknown) => {
      assert.ok(e instanceof AdvantageInputError);
      assert.match(e.message, /no pivot and the samples lack tokenIds/);
      return true;
    },
  );
});

test('R3L rejects a NaN reward naming the sample', () => {
  const samples = batch();
  samples[1]!.reward = Number.NaN;
  assert.throws(() => r3l({ samples }, opts()), /sample "retry" \(group "g"\) is NaN/);
});
