import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  reinforcePp,
  reinforcePpBaseline,
  reinforcePpBaselineOptionsSchema,
  reinforcePpOptionsSchema,
} from '../../../activities/advantage/reinforce-pp.js';
import { AdvantageInputError, type AdvantageSample } from '../../../activities/advantage/types.js';
import { assertClose, group } from './helpers.js';

const plain = (o: Record<string, unknown> = {}) => reinforcePpOptionsSchema.parse({ estimator: 'reinforce_pp', ...o });
const base = (o: Record<string, unknown> = {}) => reinforcePpBaselineOptionsSchema.parse({ estimator: 'reinforce_pp_baseline', ...o });
const adv = (r: ReturnType<typeof reinforcePp>) => r.samples.map((s) => s.advantage);

test('REINFORCE++ over samples: rewards whitened with the batch mean and std, across groups', () => {
  const samples = [...group('a', [1, 0]), ...group('b', [1, 1])];
  // mean 0.75, sample std 0.5
  assertClose(adv(reinforcePp({ samples }, plain({ normaliseOver: 'samples', eps: 0 }))), [0.5, -1.5, 0.5, 0.5]);
});

test('REINFORCE++ baseline variant: subtract the group mean first, then whiten over the batch', () => {
  const samples = [...group('a', [1, 0]), ...group('b', [1, 1])];
  // centred [0.5,-0.5,0,0]: mean 0, sample std sqrt(1/6)
  const s = Math.sqrt(1 / 6);
  assertClose(adv(reinforcePpBaseline({ samples }, base({ normaliseOver: 'samples', eps: 0 }))), [0.5 / s, -0.5 / s, 0, 0]);
});

test('REINFORCE++ over tokens: a longer completion weighs more in the batch statistics', () => {
  const samples = group('a', [1, 0], [2, 1]);
  // token returns [1,1,0]: mean 2/3, population std sqrt(2/9)
  const r = reinforcePp({ samples }, plain({ std: 'population', eps: 0 }));
  assertClose(adv(r), [Math.SQRT1_2, -Math.SQRT2]);
  assert.equal(r.samples[0]!.tokenAdvantages, null, 'no process rewards and gamma 1: one advantage for every token');
  assert.deepEqual(Array.from(r.samples[0]!.lossMask!), [1, 1]);
});

test('REINFORCE++: process rewards redistribute the total over tokens; the return at token 0 is the total', () => {
  const samples: AdvantageSample[] = [
    { sampleId: 'a', groupId: 'g', reward: 1, completionLength: 3, processRewards: [0.2, 0, 0.3] },
    { sampleId: 'b', groupId: 'g', reward: 0, completionLength: 1 },
  ];
  // token rewards of a: [0.2, 0, 0.3 + (1 - 0.5)] -> returns [1.0, 0.8, 0.8]; b: [0]
  // all returns [1, .8, .8, 0]: mean .65, population std sqrt(.1475)
  const sd = Math.sqrt(0.1475);
  const r = reinforcePp({ samples }, plain({ std: 'population', eps: 0 }));
  assertClose(r.samples[0]!.tokenAdvantages!, [0.35 / sd, 0.15 / sd, 0.15 / sd]);
  assertClose([r.samples[1]!.advantage], [-0.65 / sd]);
  assertClose([r.samples[0]!.advantage], [(0.35 + 0.15 + 0.15) / 3 / sd], 1e-12);
});

test('REINFORCE++: gamma < 1 discounts the final reward back over the tokens', () => {
  const samples = [...group('a', [1], [3]), ...group('b', [0], [3])];
  const r = reinforcePp({ samples }, plain({ gamma: 0.5, normaliseOver: 'samples', std: 'population', eps: 0 }));
  // returns a: [.25,.5,1], b: [0,0,0]; over samples G_0 = [.25, 0]: mean .125, std .125
  assertClose(r.samples[0]!.tokenAdvantages!, [1, 3, 7]);
  assertClose(r.samples[1]!.tokenAdvantages!, [-1, -1, -1]);
});

test('REINFORCE++ over tokens without a completion length: error names the sample and the way out', () => {
  assert.throws(
    () => reinforcePp({ samples: group('p', [1, 0]) }, plain()),
    (e: unknown) => {
      assert.ok(e instanceof AdvantageInputError);
      assert.match(e.message, /sample "p-0" \(group "p"\) has no completionLength/);
      assert.match(e.message, /normaliseOver "samples"/);
      return true;
    },
  );
});

test('REINFORCE++: process rewards of the wrong length or NaN are rejected, naming sample and token', () => {
  const short: AdvantageSample[] = [{ sampleId: 's', groupId: 'g', reward: 1, completionLength: 3, processRewards: [0, 1] }];
  assert.throws(() => reinforcePp({ samples: short }, plain()), /sample "s" .* 2 process rewards for 3 completion tokens/);
  const nan: AdvantageSample[] = [{ sampleId: 's', groupId: 'g', reward: 1, completionLength: 2, processRewards: [0, Number.NaN] }];
  assert.throws(() => reinforcePp({ samples: nan }, plain()), /process reward of sample "s" .* at token 1 is NaN/);
});

test('REINFORCE++ baseline: all-equal and single-sample groups centre to 0 and can be dropped', () => {
  const samples = [...group('flat', [1, 1]), ...group('solo', [0.3]), ...group('p', [1, 0])];
  const r = reinforcePpBaseline({ samples }, base({ normaliseOver: 'samples', std: 'population', eps: 0, dropZeroVarianceGroups: true }));
  assert.deepEqual(
    r.samples.map((s) => s.keep),
    [false, false, false, true, true],
  );
  // kept centred returns [.5,-.5]: mean 0, std .5
  assertClose(adv(r), [0, 0, 0, 1, -1]);
  assert.equal(r.stats.droppedGroups, 2);
});
