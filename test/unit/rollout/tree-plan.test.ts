import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../../activities/common/config.js';
import {
  applyInstructions,
  planBranches,
  planRoots,
  RolloutTree,
  TreeError,
  treePlanOptionsSchema,
  type NodeSignals,
  type TreePlanOptions,
} from '../../../activities/rollout/tree-plan.js';
import { simulate } from '../advantage/tree-sim.js';

const opts = (o: Record<string, unknown> = {}): TreePlanOptions => parseConfig(treePlanOptionsSchema, o, 'tree plan options');

/** Root r (12 tokens) with a child c at 4 (10 tokens), grandchild d of c at 7 (9 tokens). */
function small(): RolloutTree {
  return RolloutTree.from([
    { nodeId: 'd', parentNodeId: 'c', groupId: 'g', branchPosition: 7, length: 9 },
    { nodeId: 'c', parentNodeId: 'r', groupId: 'g', branchPosition: 4, length: 10 },
    { nodeId: 'r', groupId: 'g', length: 12 },
  ]);
}

test('RolloutTree.from accepts nodes in any order and derives depth, paths and token owners', () => {
  const t = small();
  assert.deepEqual(
    t.path('d').map((n) => n.nodeId),
    ['r', 'c', 'd'],
  );
  assert.deepEqual(
    t.path('d').map((n) => n.depth),
    [0, 1, 2],
  );
  assert.deepEqual(
    [0, 3, 4, 6, 7, 8].map((p) => t.owner('d', p).nodeId),
    ['r', 'r', 'c', 'c', 'd', 'd'],
  );
  assert.deepEqual(
    t.children('r').map((n) => n.nodeId),
    ['c'],
  );
  assert.equal(t.size('g'), 3);
});

test('RolloutTree rejects malformed trees with errors naming the node', () => {
  const base = { groupId: 'g' };
  const bad = (nodes: object[], re: RegExp) =>
    assert.throws(
      () => RolloutTree.from(nodes as never),
      (e: unknown) => {
        assert.ok(e instanceof TreeError);
        assert.match(e.message, re);
        return true;
      },
    );
  bad(
    [
      { nodeId: 'a', ...base },
      { nodeId: 'a', ...base },
    ],
    /node "a" appears twice/,
  );
  bad(
    [
      { nodeId: 'a', parentNodeId: 'b', branchPosition: 1, ...base },
      { nodeId: 'b', parentNodeId: 'a', branchPosition: 2, ...base },
    ],
    /is its own ancestor/,
  );
  bad(
    [
      { nodeId: 'r', ...base },
      { nodeId: 'c', parentNodeId: 'r', branchPosition: 0, ...base },
    ],
    /node "c" branches from "r" at position 0, not after/,
  );
  bad(
    [
      { nodeId: 'r', ...base },
      { nodeId: 'c', parentNodeId: 'r', branchPosition: 2, groupId: 'h' },
    ],
    /node "c" is in group "h" but its parent "r" is in group "g"/,
  );
  bad([{ nodeId: 'r', branchPosition: 3, ...base }], /root node "r" has branchPosition 3/);
  bad(
    [
      { nodeId: 'r', length: 5, ...base },
      { nodeId: 'c', parentNodeId: 'r', branchPosition: 3, length: 3, ...base },
    ],
    /node "c" has length 3 but branched at position 3/,
  );
  const t = small();
  assert.throws(() => t.setLength('c', 7), /node "c" has length 7 but its child "d" branches at position 7/);
});

test('planRoots: `roots` samples per prompt with ids group/i, capped by the budget', () => {
  const p = planRoots(['a', 'b'], opts({ roots: 3, samplesPerGroup: 8 }));
  assert.deepEqual(
    p.instructions.map((i) => [i.groupId, i.sourceNodeId, i.position, i.children.map((c) => c.nodeId)]),
    [
      ['a', null, 0, ['a/0', 'a/1', 'a/2']],
      ['b', null, 0, ['b/0', 'b/1', 'b/2']],
    ],
  );
  assert.deepEqual(p.remaining, { a: 5, b: 5 });
  assert.throws(() => planRoots(['a', 'a'], opts()), /group "a" is listed twice/);
  assert.throws(() => opts({ roots: 5, samplesPerGroup: 4 }), /roots: roots must not exceed samplesPerGroup/);
});

/** One root of 20 tokens whose entropy peaks at 5 (2.0), 6 (1.9), 12 (1.5), 17 (1.0). */
function peaked(): { tree: RolloutTree; signals: Map<string, NodeSignals> } {
  const tree = RolloutTree.from([{ nodeId: 'g/0', groupId: 'g', length: 20 }]);
  const entropy = new Array(20).fill(0.1);
  entropy[5] = 2.0;
  entropy[6] = 1.9;
  entropy[12] = 1.5;
  entropy[17] = 1.0;
  return { tree, signals: new Map([['g/0', { entropy }]]) };
}

test('planBranches (entropy): highest-entropy tokens, at least minSpacing apart, k children each', () => {
  const { tree, signals } = peaked();
  const p = planBranches(tree, signals, opts({ samplesPerGroup: 7, roots: 1, childrenPerBranch: 2, minSpacing: 3 }), { seed: 1, step: 0 });
  // budget 6 -> 3 branch points; 6 is too close to 5, so 5, 12, 17
  assert.deepEqual(
    p.instructions.map((i) => [i.sourceNodeId, i.position, i.children.length, i.score]),
    [
      ['g/0', 5, 2, 2.0],
      ['g/0', 12, 2, 1.5],
      ['g/0', 17, 2, 1.0],
    ],
  );
  assert.deepEqual(
    p.instructions[0]!.children.map((c) => [c.nodeId, c.parentNodeId, c.branchPosition, c.depth]),
    [
      ['g/0>5.0', 'g/0', 5, 1],
      ['g/0>5.1', 'g/0', 5, 1],
    ],
  );
  assert.equal(p.newSamples, 6);
  assert.deepEqual(p.remaining, { g: 0 });
});

test('planBranches never exceeds the budget: the last branch point gets fewer children', () => {
  const { tree, signals } = peaked();
  const p = planBranches(tree, signals, opts({ samplesPerGroup: 6, roots: 1, childrenPerBranch: 2, minSpacing: 3 }), { seed: 1, step: 0 });
  assert.deepEqual(
    p.instructions.map((i) => i.children.length),
    [2, 2, 1],
  );
  assert.equal(tree.size('g') + p.newSamples, 6);
});

test('planBranches respects maxBranchesPerRound, minEntropy, maxDepth and existing children', () => {
  const { tree, signals } = peaked();
  const capped = planBranches(tree, signals, opts({ samplesPerGroup: 20, roots: 1, minSpacing: 3, maxBranchesPerRound: 1 }), {
    seed: 1,
    step: 0,
  });
  assert.deepEqual(
    capped.instructions.map((i) => i.position),
    [5],
  );
  const picky = planBranches(tree, signals, opts({ samplesPerGroup: 20, roots: 1, minSpacing: 3, minEntropy: 1.2 }), { seed: 1, step: 0 });
  assert.deepEqual(
    picky.instructions.map((i) => i.position),
    [5, 12],
  );
  const shallow = planBranches(tree, signals, opts({ samplesPerGroup: 20, roots: 1, maxDepth: 0 }), { seed: 1, step: 0 });
  assert.deepEqual(shallow.instructions, []);
  assert.deepEqual(shallow.stalled, ['g']);
  applyInstructions(tree, capped.instructions);
  for (const c of capped.instructions[0]!.children) tree.setLength(c.nodeId, 20);
  const again = planBranches(tree, signals, opts({ samplesPerGroup: 20, roots: 1, minSpacing: 3, maxDepth: 0 + 1 }), { seed: 1, step: 1 });
  assert.ok(
    again.instructions.every((i) => i.sourceNodeId !== 'g/0' || Math.abs(i.position - 5) >= 3),
    'no branch within minSpacing of an existing one',
  );
});

test('planBranches (value): prefix value plus explorationWeight * entropy', () => {
  const tree = RolloutTree.from([{ nodeId: 'r', groupId: 'g', length: 10 }]);
  const value = [0, 0.2, 0.9, 0.3, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1];
  const entropy = [0, 0, 0, 2, 0, 0, 0, 0, 0, 0];
  const signals = new Map([['r', { value, entropy }]]);
  const o = { samplesPerGroup: 3, roots: 1, childrenPerBranch: 1, minSpacing: 1, criterion: 'value' };
  const pure = planBranches(tree, signals, opts({ ...o, explorationWeight: 0 }), { seed: 3, step: 0 });
  assert.deepEqual(
    pure.instructions.map((i) => i.position),
    [2, 4],
  );
  const explore = planBranches(tree, signals, opts({ ...o, explorationWeight: 0.5 }), { seed: 3, step: 0 });
  assert.deepEqual(
    explore.instructions.map((i) => [i.position, i.score]),
    [
      [3, 1.3],
      [2, 0.9],
    ],
  );
});

test('planBranches proportional allocation gives higher scores more children, summing to the budget', () => {
  const { tree, signals } = peaked();
  const p = planBranches(
    tree,
    signals,
    opts({ samplesPerGroup: 10, roots: 1, childrenPerBranch: 3, minSpacing: 3, allocation: 'proportional' }),
    { seed: 1, step: 0 },
  );
  const counts = p.instructions.map((i) => i.children.length);
  assert.equal(
    counts.reduce((a, b) => a + b, 0),
    9,
  );
  assert.deepEqual(
    p.instructions.map((i) => i.position),
    [5, 12, 17],
  );
  // scores 2.0, 1.5, 1.0: one each, the other 6 split 1 : 0.5 : 0 -> 4, 2, 0
  assert.deepEqual(counts, [5, 3, 1]);
});

test('planBranches: signals must cover the node, one value per completion token', () => {
  const tree = RolloutTree.from([{ nodeId: 'r', groupId: 'g', length: 10 }]);
  assert.throws(
    () => planBranches(tree, new Map([['r', { entropy: [1, 2] }]]), opts({ roots: 1, minSpacing: 1 }), { seed: 0, step: 0 }),
    /node "r" has 2 entropy values for 10 completion tokens/,
  );
  assert.throws(
    () => planBranches(tree, new Map(), opts({ roots: 1, minSpacing: 1 }), { seed: 0, step: 0 }),
    /node "r" has no entropy signal/,
  );
});

test('tree rollouts spend exactly the sample budget per group and stay valid trees', () => {
  const o = opts({ samplesPerGroup: 12, roots: 3, childrenPerBranch: 2, minSpacing: 2, maxDepth: 3 });
  const { tree } = simulate(11, ['p0', 'p1', 'p2'], o);
  for (const g of ['p0', 'p1', 'p2']) assert.equal(tree.size(g), 12, g);
  for (const n of tree.nodes()) {
    assert.ok(n.depth <= 3);
    if (n.parentNodeId) assert.ok(n.branchPosition >= tree.get(n.parentNodeId).branchPosition + 2);
  }
  assert.doesNotThrow(() => RolloutTree.from(tree.nodes().map((n) => ({ ...n }))));
});

test('tree plans are deterministic under a seed and independent of node order', () => {
  for (const temperature of [0, 1]) {
    const o = opts({ samplesPerGroup: 10, roots: 2, childrenPerBranch: 2, minSpacing: 2, temperature });
    const a = simulate(5, ['x', 'y'], o);
    const b = simulate(5, ['x', 'y'], o);
    const c = simulate(5, ['x', 'y'], o, 'reverse');
    assert.deepEqual(a.plans, b.plans, `temperature ${temperature}: same seed, same plans`);
    assert.deepEqual(a.plans, c.plans, `temperature ${temperature}: node order does not matter`);
  }
});

test('with temperature > 0 the seed changes which branch points are sampled', () => {
  const { tree, signals } = peaked();
  const o = opts({ samplesPerGroup: 3, roots: 1, childrenPerBranch: 1, minSpacing: 1, temperature: 5 });
  const picks = new Set<string>();
  for (let seed = 0; seed < 20; seed++) {
    picks.add(
      planBranches(tree, signals, o, { seed, step: 0 })
        .instructions.map((i) => i.position)
        .join(','),
    );
  }
  assert.ok(picks.size > 1, `20 seeds gave the same branch points: ${[...picks].join(' | ')}`);
  // greedy (temperature 0) is the same for every seed
  const greedy = new Set<string>();
  for (let seed = 0; seed < 5; seed++) {
    greedy.add(
      planBranches(tree, signals, opts({ samplesPerGroup: 3, roots: 1, childrenPerBranch: 1, minSpacing: 1 }), { seed, step: 0 })
        .instructions.map((i) => i.position)
        .join(','),
    );
  }
  assert.deepEqual([...greedy], ['5,6']);
});
