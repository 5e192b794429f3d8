import { test } from 'node:test';
import assert from 'node:assert/strict';
import { grpo, grpoOptionsSchema } from '../../../activities/advantage/grpo.js';
import { siblingGrpo, siblingGrpoOptionsSchema } from '../../../activities/advantage/sibling-grpo.js';
import { AdvantageInputError, type AdvantageSample } from '../../../activities/advantage/types.js';
import { assertClose, group } from './helpers.js';

const opts = (o: Record<string, unknown> = {}) => siblingGrpoOptionsSchema.parse({ estimator: 'sibling_grpo', eps: 0, ...o });

/**
 * One root R (reward 0, 10 tokens); R branches at 4 into C (reward 1) and D (reward 0);
 * C branches at 6 into E (reward 0).
 *   branch (R,4): alternatives R {R} = 0, C {C,E} = 0.5, D {D} = 0
 *     mean 1/6, sample std sqrt(1/12): A(R) = A(D) = -1/sqrt(3), A(C) = 2/sqrt(3)
 *   branch (C,6): alternatives C {C} = 1, E {E} = 0: A(C) = 1/sqrt(2), A(E) = -1/sqrt(2)
 */
function tree(): AdvantageSample[] {
  return [
    { sampleId: 'R', groupId: 'g', reward: 0, completionLength: 10, nodeId: 'R', parentNodeId: null, branchPosition: 0 },
    { sampleId: 'C', groupId: 'g', reward: 1, completionLength: 8, nodeId: 'C', parentNodeId: 'R', branchPosition: 4 },
    { sampleId: 'D', groupId: 'g', reward: 0, completionLength: 9, nodeId: 'D', parentNodeId: 'R', branchPosition: 4 },
    { sampleId: 'E', groupId: 'g', reward: 0, completionLength: 7, nodeId: 'E', parentNodeId: 'C', branchPosition: 6 },
  ];
}
const lo = -1 / Math.sqrt(3);
const hi = 2 / Math.sqrt(3);
const h = Math.SQRT1_2;

test('Sibling-GRPO: tokens after each branch point carry the advantage relative to siblings there', () => {
  const r = siblingGrpo({ samples: tree() }, opts());
  const [R, C, D, E] = r.samples;
  assertClose(R!.tokenAdvantages!, [0, 0, 0, 0, lo, lo, lo, lo, lo, lo]);
  assertClose(C!.tokenAdvantages!, [0, 0, 0, 0, hi, hi, h, h]);
  assertClose(D!.tokenAdvantages!, [0, 0, 0, 0, lo, lo, lo, lo, lo]);
  assertClose(E!.tokenAdvantages!, [0, 0, 0, 0, 0, 0, -h]);
  assert.equal(r.stats.extra.branchPoints, 2);
});

test('Sibling-GRPO masks tokens before the first branch point and (owner-only) the copied prefix', () => {
  const r = siblingGrpo({ samples: tree() }, opts());
  const masks = r.samples.map((s) => Array.from(s.lossMask!));
  assert.deepEqual(masks[0], [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]); // R: nothing to compare before 4
  assert.deepEqual(masks[1], [0, 0, 0, 0, 1, 1, 1, 1]); // C: [0,4) is R's
  assert.deepEqual(masks[3], [0, 0, 0, 0, 0, 0, 1]); // E: [0,6) belongs to R and C
  assert.equal(r.stats.extra.copiedTokens, 2); // E's tokens 4,5 (C's) were trainable but copied
  // the sequence-level summary is the mean over kept tokens
  assertClose([r.samples[1]!.advantage], [(2 * hi + 2 * h) / 4]);
});

test('Sibling-GRPO every-sample keeps the copied prefix tokens that follow a branch point', () => {
  const r = siblingGrpo({ samples: tree() }, opts({ prefixTokens: 'every-sample' }));
  const E = r.samples[3]!;
  assert.deepEqual(Array.from(E.lossMask!), [0, 0, 0, 0, 1, 1, 1]);
  assertClose(E.tokenAdvantages!, [0, 0, 0, 0, hi, hi, -h]);
});

test('Sibling-GRPO with several roots compares them at the prompt, then at each branch', () => {
  const samples: AdvantageSample[] = [
    { sampleId: 'a', groupId: 'g', reward: 1, completionLength: 4, nodeId: 'a' },
    { sampleId: 'b', groupId: 'g', reward: 0, completionLength: 5, nodeId: 'b' },
    { sampleId: 'b1', groupId: 'g', reward: 1, completionLength: 5, nodeId: 'b1', parentNodeId: 'b', branchPosition: 2 },
  ];
  // prompt: a {a}=1, b {b,b1}=0.5 -> scale none: +0.25, -0.25; (b,2): b=0, b1=1 -> -0.5, +0.5
  const r = siblingGrpo({ samples }, opts({ scale: 'none' }));
  assertClose(r.samples[0]!.tokenAdvantages!, [0.25, 0.25, 0.25, 0.25]);
  assertClose(r.samples[1]!.tokenAdvantages!, [-0.25, -0.25, -0.5, -0.5, -0.5]);
  assertClose(r.samples[2]!.tokenAdvantages!, [0, 0, 0.5, 0.5, 0.5]);
  assert.deepEqual(Array.from(r.samples[2]!.lossMask!), [0, 0, 1, 1, 1]);
});

test('Sibling-GRPO without tree fields is GRPO: every sample a root, compared at the prompt', () => {
  const samples = [...group('p', [1, 0, 0, 1, 0.5], [3, 2, 4, 1, 2]), ...group('q', [2, 5, 3], [1, 1, 2])];
  const s = siblingGrpo({ samples }, opts({ eps: 1e-6 }));
  const g = grpo({ samples }, grpoOptionsSchema.parse({ estimator: 'grpo' }));
  assertClose(
    s.samples.map((x) => x.advantage),
    g.samples.map((x) => x.advantage),
    1e-12,
  );
  assert.ok(s.samples.every((x) => x.lossMask!.every((m) => m === 1)));
});

test('Sibling-GRPO: a flat branch point gives zero advantage and is counted; a lone root has nothing to compare', () => {
  const samples: AdvantageSample[] = [
    { sampleId: 'r', groupId: 'g', reward: 1, completionLength: 3, nodeId: 'r' },
    { sampleId: 'c', groupId: 'g', reward: 1, completionLength: 3, nodeId: 'c', parentNodeId: 'r', branchPosition: 1 },
    { sampleId: 'solo', groupId: 'h', reward: 1, completionLength: 2, nodeId: 'solo' },
  ];
  const r = siblingGrpo({ samples }, opts({ eps: 1e-6 }));
  assertClose(r.samples[0]!.tokenAdvantages!, [0, 0, 0]);
  assert.equal(r.stats.extra.flatBranchPoints, 1);
  assert.deepEqual(Array.from(r.samples[2]!.lossMask!), [0, 0]);
  assert.equal(r.samples[2]!.advantage, 0);
});

test('Sibling-GRPO rejects samples that do not form a tree, naming the node', () => {
  const bad = tree();
  bad[3]!.branchPosition = 3; // E branches from C before C's own tokens start (4)
  assert.throws(
    () => siblingGrpo({ samples: bad }, opts()),
    (e: unknown) => {
      assert.ok(e instanceof AdvantageInputError);
      assert.match(e.message, /node "E" branches from "C" at position 3, not after the parent's own branch position 4/);
      return true;
    },
  );
  const orphan = tree();
  orphan[1]!.parentNodeId = 'Z';
  assert.throws(() => siblingGrpo({ samples: orphan }, opts()), /node "C" names parent "Z", which is not in the tree/);
  const tooLong = tree();
  tooLong[1]!.branchPosition = 10;
  assert.throws(() => siblingGrpo({ samples: tooLong }, opts()), /node "C" .* position 10, but the parent has only 10 tokens/);
});

test('Sibling-GRPO needs completion lengths and finite rewards, and says which sample lacks them', () => {
  const noLen = tree();
  delete noLen[2]!.completionLength;
  assert.throws(() => siblingGrpo({ samples: noLen }, opts()), /sample "D" \(group "g"\) has no completionLength/);
  const nan = tree();
  nan[0]!.reward = Number.NaN;
  assert.throws(() => siblingGrpo({ samples: nan }, opts()), /sample "R" \(group "g"\) is NaN/);
});
