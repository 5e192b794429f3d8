import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rloo, rlooOptionsSchema } from '../../../activities/advantage/rloo.js';
import { assertClose, group } from './helpers.js';

const opts = (o: Record<string, unknown> = {}) => rlooOptionsSchema.parse({ estimator: 'rloo', ...o });
const adv = (r: ReturnType<typeof rloo>) => r.samples.map((s) => s.advantage);

test('RLOO: each reward minus the mean of the others, [1,0,0,1] -> [2/3,-2/3,-2/3,2/3]', () => {
  assertClose(adv(rloo({ samples: group('p', [1, 0, 0, 1]) }, opts())), [2 / 3, -2 / 3, -2 / 3, 2 / 3]);
});

test('RLOO: [3,1,2] -> [1.5,-1.5,0] (= G/(G-1) times the GRPO centring, no std)', () => {
  assertClose(adv(rloo({ samples: group('p', [3, 1, 2]) }, opts())), [1.5, -1.5, 0]);
});

test('RLOO: ties share an advantage, [1,1,0] -> [0.5,0.5,-1]', () => {
  assertClose(adv(rloo({ samples: group('p', [1, 1, 0]) }, opts())), [0.5, 0.5, -1]);
});

test('RLOO: a single-sample group has no peers and gets 0; all-equal groups get 0', () => {
  const r = rloo({ samples: [...group('solo', [5]), ...group('flat', [2, 2, 2])] }, opts());
  assertClose(adv(r), [0, 0, 0, 0]);
  assert.equal(r.stats.singletonGroups, 1);
  assert.equal(r.stats.zeroVarianceGroups, 1);
});

test('RLOO: dropZeroVarianceGroups drops only the flat group', () => {
  const r = rloo({ samples: [...group('flat', [2, 2]), ...group('p', [1, 0])] }, opts({ dropZeroVarianceGroups: true }));
  assert.deepEqual(
    r.samples.map((s) => s.keep),
    [false, false, true, true],
  );
  assertClose(adv(r), [0, 0, 1, -1]);
});

test('RLOO rejects a NaN reward naming the sample', () => {
  const samples = group('q7', [1, Number.NaN]);
  assert.throws(() => rloo({ samples }, opts()), /sample "q7-1" \(group "q7"\) is NaN/);
});
