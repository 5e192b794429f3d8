/**
 * rolloutTrees (activities/rollout/tree-rollout.ts) with a scripted policy and reward: where the
 * value-guided plan branches, the budget, deeper trees, stalled trees and the prefix values.
 * (The same code with the real policy and the run's reward: test/unit/run/tree-rollout.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../../activities/common/config.js';
import {
  prefixValues,
  rolloutTrees,
  type TreeCompletion,
  type TreeDecodeJob,
  type TreeRolloutDeps,
} from '../../../activities/rollout/tree-rollout.js';
import { RolloutTree, treeRolloutSchema } from '../../../activities/rollout/tree-plan.js';

const opts = (o: Record<string, unknown> = {}) => parseConfig(treeRolloutSchema, o, 'tree');

/**
 * Completions of `length` tokens. Root i's tokens are all i + 1 (root 0: 1,1,1,...); a child
 * continues with 10 + its depth. Entropy: `entropyOf(root)` at a root's tokens, 3 at a child's own.
 * The reward is 1 for completions that start with token 1 (root 0's line), 0 otherwise.
 */
function scripted(length: number, entropyOf: (root: number) => number) {
  const calls: string[][] = [];
  const deps: TreeRolloutDeps = {
    async decode(jobs: readonly TreeDecodeJob[]): Promise<TreeCompletion[]> {
      calls.push(jobs.map((j) => j.nodeId));
      return jobs.map((j) => {
        const p = j.prefix.tokens.length;
        const own = typeof j.streamKey === 'number' ? j.streamKey + 1 : 10 + j.nodeId.split('>').length - 1;
        const h = typeof j.streamKey === 'number' ? entropyOf(j.streamKey) : 3;
        const tokens = [...j.prefix.tokens, ...new Array<number>(length - p).fill(own)];
        return {
          tokens,
          logprobs: tokens.map(() => -1),
          entropy: [...j.prefix.entropy, ...new Array<number>(length - p).fill(h)],
          text: tokens.join(' '),
          finishReason: 'length',
        };
      });
    },
    async score(samples) {
      return samples.map((s) => (s.completion.tokens[0] === 1 ? 1 : 0));
    },
  };
  return { deps, calls };
}

test('value criterion (explorationWeight 0): every branch point is on the rewarded root, though the other root has the higher entropy', async () => {
  const { deps } = scripted(6, (r) => (r === 0 ? 0.1 : 2));
  const res = await rolloutTrees(
    ['g'],
    opts({ roots: 2, childrenPerBranch: 2, explorationWeight: 0, criterion: 'value' }),
    6,
    { seed: 1, step: 0 },
    deps,
  );
  assert.equal(res.nodes.length, 6);
  const children = res.nodes.filter((n) => n.parentNodeId !== null);
  assert.equal(children.length, 4);
  assert.ok(
    children.every((n) => n.parentNodeId === 'g/0'),
    children.map((n) => n.nodeId).join(' '),
  );
});

test('entropy criterion: the branch points go to the high-entropy root instead', async () => {
  const { deps } = scripted(6, (r) => (r === 0 ? 0.1 : 2));
  const res = await rolloutTrees(['g'], opts({ roots: 2, childrenPerBranch: 2, criterion: 'entropy' }), 6, { seed: 1, step: 0 }, deps);
  const children = res.nodes.filter((n) => n.parentNodeId !== null);
  assert.ok(children.length === 4 && children.every((n) => n.parentNodeId === 'g/1'), children.map((n) => n.nodeId).join(' '));
});

test('maxBranchesPerRound 1, childrenPerBranch 1: one child per round, so trees grow deeper over 1 + (G - roots) rounds; ids, depth and sample ids in creation order', async () => {
  const { deps, calls } = scripted(8, () => 1);
  const res = await rolloutTrees(
    ['a', 'b'],
    opts({ roots: 1, childrenPerBranch: 1, maxBranchesPerRound: 1, maxDepth: 5 }),
    4,
    { seed: 3, step: 2 },
    deps,
  );
  assert.equal(res.rounds, 4);
  assert.deepEqual(
    calls.map((c) => c.length),
    [2, 2, 2, 2],
    'each round decodes both trees at once',
  );
  for (const g of ['a', 'b']) {
    const nodes = res.nodes.filter((n) => n.group === (g === 'a' ? 0 : 1));
    assert.deepEqual(
      nodes.map((n) => n.sampleId),
      [0, 1, 2, 3],
    );
    assert.equal(nodes[0]!.nodeId, `${g}/0`);
    const tree = RolloutTree.from(
      nodes.map((n) => ({
        nodeId: n.nodeId,
        parentNodeId: n.parentNodeId,
        groupId: g,
        branchPosition: n.branchPosition,
        length: n.completion.tokens.length,
      })),
    );
    assert.ok(Math.max(...tree.nodes().map((n) => n.depth)) >= 2, 'some node branches from a child');
    for (const n of nodes) {
      assert.equal(tree.get(n.nodeId).depth, n.depth);
      if (n.parentNodeId === null) continue;
      const parent = nodes.find((m) => m.nodeId === n.parentNodeId)!;
      assert.deepEqual(n.completion.tokens.slice(0, n.branchPosition), parent.completion.tokens.slice(0, n.branchPosition));
    }
  }
  assert.equal(res.branchPoints, 6);
});

test('a tree with nothing to branch (one-token completions) spends its budget on further roots, keyed by their index', async () => {
  const { deps, calls } = scripted(1, () => 1);
  const res = await rolloutTrees(['g'], opts({ roots: 2 }), 5, { seed: 1, step: 0 }, deps);
  assert.deepEqual(
    res.nodes.map((n) => n.nodeId),
    ['g/0', 'g/1', 'g/2', 'g/3', 'g/4'],
  );
  assert.ok(res.nodes.every((n) => n.parentNodeId === null && n.branchPosition === 0));
  assert.equal(res.fillRoots, 3);
  assert.deepEqual(calls, [
    ['g/0', 'g/1'],
    ['g/2', 'g/3', 'g/4'],
  ]);
});

test('prefixValues: value[t] is the mean reward of the samples sharing tokens [0, t); value[0] the mean of the tree', () => {
  // r (len 6, reward 1) with children c1 at 2 (len 5, reward 0) and c2 at 4 (len 6, reward 0.5)
  const tree = RolloutTree.from([
    { nodeId: 'r', groupId: 'g', length: 6 },
    { nodeId: 'c1', parentNodeId: 'r', groupId: 'g', branchPosition: 2, length: 5 },
    { nodeId: 'c2', parentNodeId: 'r', groupId: 'g', branchPosition: 4, length: 6 },
  ]);
  const v = prefixValues(
    tree,
    'g',
    new Map([
      ['r', 1],
      ['c1', 0],
      ['c2', 0.5],
    ]),
  );
  assert.deepEqual(v.get('r'), [0.5, 0.5, 0.5, 0.75, 0.75, 1]);
  assert.deepEqual(v.get('c1'), [0.5, 0.5, 0.5, 0, 0]);
  assert.deepEqual(v.get('c2'), [0.5, 0.5, 0.5, 0.75, 0.75, 0.5]);
});
