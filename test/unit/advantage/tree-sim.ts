/** Test helper: simulated tree rollouts (no model), driven by the planner and the seeded RNG. */
import { CounterRng } from '../../../activities/common/rng.js';
import {
  applyInstructions,
  planBranches,
  planRoots,
  RolloutTree,
  type NodeSignals,
  type TreePlanOptions,
} from '../../../activities/rollout/tree-plan.js';

/** Rolls out whole trees: roots, then rounds of branching, with lengths and entropies from the seed. */
export function simulate(seed: number, groups: string[], o: TreePlanOptions, order: 'forward' | 'reverse' = 'forward') {
  const rng = new CounterRng(seed, 'simulate');
  let pos = 0;
  const tree = new RolloutTree();
  const signals = new Map<string, NodeSignals>();
  const plans = [];
  const execute = (instructions: ReturnType<typeof planRoots>['instructions']) => {
    applyInstructions(tree, instructions);
    for (const ins of instructions) {
      for (const c of ins.children) {
        const length = c.branchPosition + 1 + rng.int(pos++, 40);
        tree.setLength(c.nodeId, length);
        const entropy = Array.from({ length }, () => 3 * rng.uniform(pos++));
        signals.set(c.nodeId, { entropy, value: entropy.map((h) => 1 - h / 3) });
      }
    }
  };
  execute(planRoots(groups, o).instructions);
  for (let round = 1; round < 50; round++) {
    // the planner must not depend on the order nodes were added: rebuild in reverse when asked
    const view = order === 'forward' ? tree : RolloutTree.from([...tree.nodes()].reverse().map((n) => ({ ...n })));
    const plan = planBranches(view, signals, o, { seed, step: 0 });
    plans.push(
      plan.instructions
        .map((i) => `${i.sourceNodeId}@${i.position}x${i.children.length}`)
        .sort()
        .join(','),
    );
    if (plan.newSamples === 0) break;
    execute(plan.instructions);
  }
  return { tree, plans };
}
