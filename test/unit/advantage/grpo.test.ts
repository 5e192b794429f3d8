import { test } from 'node:test';
import assert from 'node:assert/strict';
import { drGrpo, drGrpoOptionsSchema, grpo, grpoOptionsSchema } from '../../../activities/advantage/grpo.js';
import { AdvantageInputError } from '../../../activities/advantage/types.js';
import { assertClose, group } from './helpers.js';

const opts = (o: Record<string, unknown> = {}) => grpoOptionsSchema.parse({ estimator: 'grpo', ...o });
const adv = (r: ReturnType<typeof grpo>) => r.samples.map((s) => s.advantage);

test('GRPO with population std gives (r - mean) / std: [1,0,0,1] -> [1,-1,-1,1]', () => {
  const r = grpo({ samples: group('p', [1, 0, 0, 1]) }, opts({ std: 'population', eps: 0 }));
  assertClose(adv(r), [1, -1, -1, 1]);
});

test('GRPO with sample std (default, as TRL/verl) divides by sqrt(1/3) for [1,0,0,1]', () => {
  const r = grpo({ samples: group('p', [1, 0, 0, 1]) }, opts({ eps: 0 }));
  const a = 0.5 / Math.sqrt(1 / 3);
  assertClose(adv(r), [a, -a, -a, a]);
});

test('GRPO: tied rewards get equal advantages, [1,1,0] with population std -> [0.7071, 0.7071, -1.4142]', () => {
  const r = grpo({ samples: group('p', [1, 1, 0]) }, opts({ std: 'population', eps: 0 }));
  assertClose(adv(r), [Math.SQRT1_2, Math.SQRT1_2, -Math.SQRT2]);
});

test('GRPO: groups are normalised independently and outputs keep input order', () => {
  const samples = [...group('a', [1, 0]), ...group('b', [10, 20])];
  samples.push(samples.shift()!); // interleave order: a-1, b-0, b-1, a-0
  const r = grpo({ samples }, opts({ std: 'population', eps: 0 }));
  assert.deepEqual(
    r.samples.map((s) => s.sampleId),
    ['a-1', 'b-0', 'b-1', 'a-0'],
  );
  assertClose(adv(r), [-1, -1, 1, 1]);
});

test('GRPO: a single-sample group gets advantage 0 (not NaN) and is counted', () => {
  const r = grpo({ samples: [...group('solo', [0.7]), ...group('p', [1, 0])] }, opts());
  assert.equal(r.samples[0]!.advantage, 0);
  assert.equal(r.stats.singletonGroups, 1);
  assert.equal(r.stats.zeroVarianceGroups, 0);
});

test('GRPO: all-equal rewards give zero advantages with the default eps, and the group is counted', () => {
  const r = grpo({ samples: [...group('flat', [0.5, 0.5, 0.5]), ...group('p', [1, 0])] }, opts());
  assertClose(adv(r).slice(0, 3), [0, 0, 0]);
  assert.equal(r.stats.zeroVarianceGroups, 1);
  assert.equal(r.stats.droppedGroups, 0);
  assert.ok(r.samples.every((s) => s.keep));
});

test('GRPO: dropZeroVarianceGroups marks flat and single-sample groups keep=false with an all-zero loss mask', () => {
  const samples = [...group('flat', [1, 1], [3, 2]), ...group('solo', [0], [4]), ...group('p', [1, 0], [2, 2])];
  const r = grpo({ samples }, opts({ dropZeroVarianceGroups: true }));
  assert.deepEqual(
    r.samples.map((s) => s.keep),
    [false, false, false, true, true],
  );
  assert.deepEqual(Array.from(r.samples[0]!.lossMask!), [0, 0, 0]);
  assert.deepEqual(Array.from(r.samples[3]!.lossMask!), [1, 1]);
  assert.equal(r.stats.droppedGroups, 2);
  assert.equal(r.stats.keptSamples, 2);
});

test('GRPO scale=batch: group mean, std of every reward in the batch', () => {
  const r = grpo({ samples: [...group('a', [2, 0]), ...group('b', [1, 1, 1, 0])] }, opts({ scale: 'batch', eps: 0 }));
  const s = 0.752772652709081; // sample std of [2,0,1,1,1,0]
  assertClose(adv(r), [1 / s, -1 / s, 0.25 / s, 0.25 / s, 0.25 / s, -0.75 / s]);
});

test('GRPO scale=none: r - group mean', () => {
  const r = grpo({ samples: group('p', [3, 1, 2]) }, opts({ scale: 'none' }));
  assertClose(adv(r), [1, -1, 0]);
});

test('GRPO: the loss mask has completionLength ones, or is null without a length', () => {
  const r = grpo({ samples: [...group('p', [1, 0], [3, 0]), ...group('q', [1, 0])] }, opts());
  assert.deepEqual(Array.from(r.samples[0]!.lossMask!), [1, 1, 1]);
  assert.equal(r.samples[1]!.lossMask!.length, 0);
  assert.equal(r.samples[2]!.lossMask, null);
  assert.equal(r.samples[0]!.tokenAdvantages, null);
});

test('GRPO rejects a NaN reward with an error naming the sample and group', () => {
  const samples = group('p1', [1, 0, 1]);
  samples[2]!.reward = Number.NaN;
  assert.throws(
    () => grpo({ samples }, opts()),
    (e: unknown) => {
      assert.ok(e instanceof AdvantageInputError);
      assert.match(e.message, /sample "p1-2" \(group "p1"\) is NaN/);
      assert.match(e.message, /failure policy/);
      return true;
    },
  );
});

test('GRPO rejects an infinite reward, duplicate ids, a missing group and an empty batch', () => {
  const inf = group('p', [1, Infinity]);
  assert.throws(() => grpo({ samples: inf }, opts()), /sample "p-1" .* Infinity/);
  const dup = [...group('p', [1, 0]), ...group('p', [1])];
  assert.throws(() => grpo({ samples: dup }, opts()), /sample "p-0" .*appears twice/);
  assert.throws(() => grpo({ samples: [{ sampleId: 'x', groupId: '', reward: 1 }] }, opts()), /sample "x" .*no groupId/);
  assert.throws(() => grpo({ samples: [] }, opts()), /batch is empty/);
});

test('Dr.GRPO: r - group mean without std scaling', () => {
  const r = drGrpo({ samples: [...group('a', [1, 0, 0, 0]), ...group('b', [5, 7])] }, drGrpoOptionsSchema.parse({ estimator: 'dr_grpo' }));
  assertClose(adv(r), [0.75, -0.25, -0.25, -0.25, -1, 1]);
  assert.equal(r.stats.estimator, 'dr_grpo');
});

test('Dr.GRPO: all-equal and single-sample groups give 0', () => {
  const r = drGrpo({ samples: [...group('a', [2, 2]), ...group('b', [9])] }, drGrpoOptionsSchema.parse({ estimator: 'dr_grpo' }));
  assertClose(adv(r), [0, 0, 0]);
});

test('batch statistics: mean, std, min and max over kept advantages', () => {
  const r = grpo({ samples: group('p', [1, 0, 0, 1]) }, opts({ std: 'population', eps: 0 }));
  assert.equal(r.stats.samples, 4);
  assert.equal(r.stats.groups, 1);
  assert.ok(Math.abs(r.stats.advantageMean) < 1e-12);
  assert.ok(Math.abs(r.stats.advantageStd - 1) < 1e-12);
  assert.equal(r.stats.advantageMin, -1);
  assert.equal(r.stats.advantageMax, 1);
});
