/**
 * Tree-shaped rollouts: the data structure and the branching policy (V-STAR, Jiang et al. 2026,
 * "Spend Search Where It Pays: Value-Guided Structured Sampling and Optimization for Generative
 * Recommendation" — Value-Guided Efficient Decoding).
 *
 * The tree. Every node is one complete sampled completion (one row of rollouts.arrow, with
 * `node_id`/`parent_node_id`). A root is sampled from the prompt. A child of node X at position
 * p copies X's completion tokens [0, p) and samples its own tokens from p on, so X and its
 * children at p are alternative continuations of the same prefix: that is where Sibling-GRPO
 * (activities/advantage/sibling-grpo.ts) compares them. Along any root-to-node path the branch
 * positions strictly increase, and a node may only be branched inside the part it generated
 * itself (p > its own branch position), so every token has exactly one owner node.
 *
 * The plan. Rollout happens in rounds: first `planRoots` (k independent samples per prompt),
 * then, after each round is decoded and scored, `planBranches` picks branch points among the
 * tokens the tree has generated so far and says how many children each gets, until the group's
 * sample budget is spent. Each instruction reads "continue node X from position p with k
 * children": the rollout stage feeds prompt + X.completion[0..p) to the engine's decode and
 * samples k continuations, then records their lengths with `setLength`.
 *
 * Branch points are scored per token (VED): `entropy` — the policy's uncertainty at the token
 * (a resample there is likely to take a different path); `value` — an estimate of the expected
 * reward of the prefix before the token plus `explorationWeight` times its entropy, so search is
 * spent on high-potential prefixes at decisive tokens. Selection is greedy top-score
 * (`temperature` 0) or Gumbel-top-k sampling over score/temperature; ties and Gumbel noise come
 * from CounterRng keyed by (seed, step, group and node, position), so a plan is a pure function of
 * its inputs and the seed, whatever order the nodes arrive in.
 */
import { z } from '../common/config.js';
import { CounterRng } from '../common/rng.js';

export interface TreeNode {
  nodeId: string;
  /** The node this one branched from; null for a root (sampled from the prompt). */
  parentNodeId: string | null;
  /** Prompt group of the tree; a node's parent is in the same group. */
  groupId: string;
  /** First completion position this node generated; [0, branchPosition) is its parent's. 0 for roots. */
  branchPosition: number;
  /** 0 for roots, parent's depth + 1 otherwise. */
  depth: number;
  /** Completion length in tokens, once generated; undefined while the node is still planned. */
  length?: number;
}

/** A node as the rollout rows give it: depth is derived, parent and position default to a root. */
export interface TreeNodeInput {
  nodeId: string;
  parentNodeId?: string | null;
  groupId: string;
  branchPosition?: number;
  length?: number;
}

/** Malformed tree or plan input; the message names the node and says what to fix. */
export class TreeError extends Error {
  override readonly name = 'TreeError';
}

export class RolloutTree {
  private readonly byId = new Map<string, TreeNode>();
  private readonly childrenOf = new Map<string, TreeNode[]>();
  private readonly rootsOf = new Map<string, TreeNode[]>();
  private readonly order: TreeNode[] = [];

  /** Builds a tree from nodes in any order (parents need not precede children). */
  static from(nodes: Iterable<TreeNodeInput>): RolloutTree {
    const pending = new Map<string, TreeNodeInput>();
    for (const n of nodes) {
      if (typeof n.nodeId !== 'string' || n.nodeId.length === 0)
        throw new TreeError('a tree node has no nodeId: every node needs a non-empty string id');
      if (pending.has(n.nodeId)) throw new TreeError(`node "${n.nodeId}" appears twice: node ids must be unique`);
      pending.set(n.nodeId, n);
    }
    const tree = new RolloutTree();
    const visiting = new Set<string>();
    const visit = (n: TreeNodeInput): void => {
      if (tree.byId.has(n.nodeId)) return;
      if (visiting.has(n.nodeId)) throw new TreeError(`node "${n.nodeId}" is its own ancestor: parent links must not form a cycle`);
      visiting.add(n.nodeId);
      const pid = n.parentNodeId ?? null;
      if (pid !== null) {
        const p = pending.get(pid);
        if (!p) throw new TreeError(`node "${n.nodeId}" names parent "${pid}", which is not in the tree: include every node of the group`);
        visit(p);
      }
      visiting.delete(n.nodeId);
      tree.add(n);
    };
    for (const n of pending.values()) visit(n);
    return tree;
  }

  /** Adds a node whose parent (if any) is already in the tree; returns it with its depth. */
  add(input: TreeNodeInput): TreeNode {
    const id = input.nodeId;
    if (typeof id !== 'string' || id.length === 0) throw new TreeError('a tree node has no nodeId: every node needs a non-empty string id');
    if (this.byId.has(id)) throw new TreeError(`node "${id}" is already in the tree: node ids must be unique`);
    if (typeof input.groupId !== 'string' || input.groupId.length === 0)
      throw new TreeError(`node "${id}" has no groupId: set it to the prompt id`);
    const pid = input.parentNodeId ?? null;
    const bp = input.branchPosition ?? 0;
    if (!Number.isSafeInteger(bp) || bp < 0)
      throw new TreeError(`node "${id}" has branchPosition ${String(bp)}: give a non-negative integer`);
    let depth = 0;
    if (pid === null) {
      if (bp !== 0)
        throw new TreeError(`root node "${id}" has branchPosition ${bp}: a root is sampled from the prompt, so its branch position is 0`);
    } else {
      const parent = this.byId.get(pid);
      if (!parent) throw new TreeError(`node "${id}" names parent "${pid}", which is not in the tree: add parents before children`);
      if (parent.groupId !== input.groupId) {
        throw new TreeError(
          `node "${id}" is in group "${input.groupId}" but its parent "${pid}" is in group "${parent.groupId}": a tree belongs to one prompt`,
        );
      }
      if (bp <= parent.branchPosition) {
        throw new TreeError(
          `node "${id}" branches from "${pid}" at position ${bp}, not after the parent's own branch position ${parent.branchPosition}: ` +
            'a node may only be branched inside the tokens it generated itself',
        );
      }
      if (parent.length !== undefined && bp >= parent.length) {
        throw new TreeError(`node "${id}" branches from "${pid}" at position ${bp}, but the parent has only ${parent.length} tokens`);
      }
      depth = parent.depth + 1;
    }
    const node: TreeNode = { nodeId: id, parentNodeId: pid, groupId: input.groupId, branchPosition: bp, depth };
    this.byId.set(id, node);
    this.order.push(node);
    if (input.length !== undefined) this.setLength(id, input.length);
    if (pid === null) {
      const list = this.rootsOf.get(input.groupId) ?? [];
      list.push(node);
      this.rootsOf.set(input.groupId, list);
    } else {
      const list = this.childrenOf.get(pid) ?? [];
      list.push(node);
      this.childrenOf.set(pid, list);
    }
    return node;
  }

  /** Records a node's completion length once it has been generated. */
  setLength(nodeId: string, length: number): void {
    const n = this.get(nodeId);
    if (!Number.isSafeInteger(length) || length < 0)
      throw new TreeError(`node "${nodeId}" has length ${String(length)}: give the number of completion tokens`);
    if (n.parentNodeId !== null && length <= n.branchPosition) {
      throw new TreeError(
        `node "${nodeId}" has length ${length} but branched at position ${n.branchPosition}: a child holds its parent's ` +
          `${n.branchPosition} prefix tokens plus at least one token of its own`,
      );
    }
    for (const c of this.childrenOf.get(nodeId) ?? []) {
      if (c.branchPosition >= length) {
        throw new TreeError(`node "${nodeId}" has length ${length} but its child "${c.nodeId}" branches at position ${c.branchPosition}`);
      }
    }
    n.length = length;
  }

  has(nodeId: string): boolean {
    return this.byId.has(nodeId);
  }

  get(nodeId: string): TreeNode {
    const n = this.byId.get(nodeId);
    if (!n) throw new TreeError(`node "${nodeId}" is not in the tree`);
    return n;
  }

  /** All nodes in insertion order. */
  nodes(): readonly TreeNode[] {
    return this.order;
  }

  /** Group ids in order of their first node. */
  groups(): string[] {
    return [...new Set(this.order.map((n) => n.groupId))];
  }

  /** Number of nodes (samples) of a group, planned ones included. */
  size(groupId: string): number {
    let n = 0;
    for (const node of this.order) if (node.groupId === groupId) n++;
    return n;
  }

  roots(groupId: string): readonly TreeNode[] {
    return this.rootsOf.get(groupId) ?? [];
  }

  children(nodeId: string): readonly TreeNode[] {
    return this.childrenOf.get(nodeId) ?? [];
  }

  /** Root-to-node path, the node last. */
  path(nodeId: string): TreeNode[] {
    const out: TreeNode[] = [];
    for (let n: TreeNode | undefined = this.get(nodeId); n; n = n.parentNodeId === null ? undefined : this.byId.get(n.parentNodeId))
      out.push(n);
    return out.reverse();
  }

  /** The node that generated token `position` of `nodeId`'s completion. */
  owner(nodeId: string, position: number): TreeNode {
    let n = this.get(nodeId);
    while (position < n.branchPosition) n = this.get(n.parentNodeId!);
    return n;
  }
}

/**
 * The branching options shared by the plan (`treePlanOptionsSchema`) and the run config's rl phase
 * option `tree` (`treeRolloutSchema`), which takes the sample budget from the phase's groupSize.
 */
const branchingShape = {
  /** Independent samples drawn from the prompt in the first round. */
  roots: z.number().int().min(1).default(4),
  /** Children per branch point (k); with the source's own continuation, k+1 siblings compete there. */
  childrenPerBranch: z.number().int().min(1).default(2),
  /** At most this many branch points per group per round; null: as many as the budget allows. */
  maxBranchesPerRound: z.number().int().min(1).nullable().default(null),
  /** Nodes at this depth are not branched further (roots have depth 0). */
  maxDepth: z.number().int().min(0).default(3),
  /**
   * Minimum distance in tokens between a branch point and the node's own branch position, and
   * between two branch points on the same node, so siblings differ by more than a token.
   */
  minSpacing: z.number().int().min(1).default(8),
  /**
   * Token score used to rank branch points (V-STAR VED). `entropy`: policy entropy at the token.
   * `value`: value estimate of the prefix before the token + explorationWeight * entropy.
   */
  criterion: z.enum(['entropy', 'value']).default('entropy'),
  /**
   * With `criterion: value`, weight of the token entropy added to the prefix value (0: value
   * only). Nodes given without an entropy signal count entropy as 0.
   */
  explorationWeight: z.number().nonnegative().default(0.5),
  /** Tokens whose entropy is below this are never branch points (a resample would repeat them). */
  minEntropy: z.number().nonnegative().default(0),
  /** 0: take the top scores (ties broken by the seeded RNG). >0: Gumbel-top-k sampling of score/temperature. */
  temperature: z.number().nonnegative().default(0),
  /**
   * How the round's new samples are split among the chosen branch points. `uniform`:
   * childrenPerBranch each (the last may get fewer to fit the budget). `proportional`: at least
   * one each, the rest in proportion to score - min score (higher-potential prefixes deepen more).
   */
  allocation: z.enum(['uniform', 'proportional']).default('uniform'),
};

export const treePlanOptionsSchema = z
  .strictObject({
    /** Total completions per prompt, roots included: the sample budget the plan never exceeds. */
    samplesPerGroup: z.number().int().min(1).default(16),
    ...branchingShape,
  })
  .refine((o) => o.roots <= o.samplesPerGroup, { message: 'roots must not exceed samplesPerGroup', path: ['roots'] });
export type TreePlanOptions = z.output<typeof treePlanOptionsSchema>;

/**
 * The rl phase's `tree` option (activities/run/config.ts): tree-structured rollouts with
 * value-guided branching (V-STAR's VED, Jiang et al. 2026), built by `rolloutTrees`
 * (tree-rollout.ts) inside the rollout activity. The phase's groupSize is the sample budget of each
 * prompt's tree (`samplesPerGroup`), so a step has as many rows as with flat sampling. The fields
 * are the plan's (above) with V-STAR's defaults for the criterion: branch points are ranked by
 * the Monte-Carlo value of their prefix (mean reward of the tree's samples that share it, scored
 * by the run's reward during the rollout) plus `explorationWeight` × the token's entropy.
 */
export const treeRolloutSchema = z.strictObject({
  ...branchingShape,
  /**
   * Token score used to rank branch points (V-STAR VED). `value` (default): the prefix's
   * Monte-Carlo value (mean reward of the tree's completed samples through that prefix, so the
   * rollout activity scores each round with the run's reward) + explorationWeight × entropy.
   * `entropy`: the policy's entropy at the token alone (no reward is called during the rollout).
   */
  criterion: z.enum(['entropy', 'value']).default('value'),
  /** Tokens closer than this to a node's own branch position or to another branch point on it are not branch points. Default 1: the main job's answers are a few tokens long. */
  minSpacing: z.number().int().min(1).default(1),
});
export type TreeRolloutOptions = z.output<typeof treeRolloutSchema>;

/** Per-node token signals from decoding/scoring, indexed by completion position over the node's full length. */
export interface NodeSignals {
  /** Entropy (nats) of the policy's distribution that token t was sampled from. */
  entropy?: ArrayLike<number>;
  /** Estimated expected reward of continuing from the prefix [0, t) (before token t is chosen). */
  value?: ArrayLike<number>;
}

/** "Continue `sourceNodeId` from `position` with `children.length` children" (source null: sample from the prompt). */
export interface BranchInstruction {
  groupId: string;
  sourceNodeId: string | null;
  position: number;
  /** The nodes to create, ids assigned; lengths unknown until generated. */
  children: TreeNode[];
  /** The branch point's score (null for roots). */
  score: number | null;
}

export interface TreePlan {
  instructions: BranchInstruction[];
  /** Samples these instructions create. */
  newSamples: number;
  /** Budget left per group after these instructions. */
  remaining: Record<string, number>;
  /** Groups that still have budget but no eligible branch point (too short, too deep, too flat). */
  stalled: string[];
}

/** First round: `roots` independent samples per prompt (capped by the budget). Ids `${groupId}/${i}`. */
export function planRoots(groupIds: readonly string[], options: TreePlanOptions): TreePlan {
  const instructions: BranchInstruction[] = [];
  const remaining: Record<string, number> = {};
  const seen = new Set<string>();
  for (const g of groupIds) {
    if (typeof g !== 'string' || g.length === 0) throw new TreeError('a group id is empty: give each prompt a non-empty id');
    if (seen.has(g)) throw new TreeError(`group "${g}" is listed twice: plan each prompt once`);
    seen.add(g);
    const n = Math.min(options.roots, options.samplesPerGroup);
    const children: TreeNode[] = [];
    for (let i = 0; i < n; i++) children.push({ nodeId: `${g}/${i}`, parentNodeId: null, groupId: g, branchPosition: 0, depth: 0 });
    instructions.push({ groupId: g, sourceNodeId: null, position: 0, children, score: null });
    remaining[g] = options.samplesPerGroup - n;
  }
  return { instructions, newSamples: instructions.reduce((a, i) => a + i.children.length, 0), remaining, stalled: [] };
}

interface Candidate {
  node: TreeNode;
  position: number;
  score: number;
  key: number;
  tie: number;
}

function signalOf(arr: ArrayLike<number> | undefined, node: TreeNode, kind: string, need: boolean): ArrayLike<number> | undefined {
  if (arr === undefined) {
    if (need)
      throw new TreeError(
        `node "${node.nodeId}" has no ${kind} signal: criterion needs per-token ${kind} for every node that can still be branched`,
      );
    return undefined;
  }
  if (arr.length !== node.length) {
    throw new TreeError(
      `node "${node.nodeId}" has ${arr.length} ${kind} values for ${node.length} completion tokens: give one per completion position`,
    );
  }
  return arr;
}

export interface PlanSeed {
  /** Run seed (DESIGN §6). */
  seed: number | string;
  /** Training step; with the group and token it addresses the random stream. */
  step: number;
}

/**
 * Next round: picks branch points in every group that still has budget, and how many children
 * each gets. Nodes whose length is unknown (not generated yet) are not branched.
 */
export function planBranches(
  tree: RolloutTree,
  signals: ReadonlyMap<string, NodeSignals>,
  options: TreePlanOptions,
  seed: PlanSeed,
): TreePlan {
  const instructions: BranchInstruction[] = [];
  const remaining: Record<string, number> = {};
  const stalled: string[] = [];
  const k = options.childrenPerBranch;
  for (const groupId of tree.groups()) {
    const budget = options.samplesPerGroup - tree.size(groupId);
    remaining[groupId] = Math.max(0, budget);
    if (budget <= 0) continue;
    const candidates: Candidate[] = [];
    for (const node of tree.nodes()) {
      if (node.groupId !== groupId || node.length === undefined || node.depth >= options.maxDepth) continue;
      const lo = node.branchPosition + options.minSpacing;
      const hi = node.length - 1;
      if (lo > hi) continue;
      const sig = signals.get(node.nodeId) ?? {};
      const entropy = signalOf(sig.entropy, node, 'entropy', options.criterion === 'entropy' || options.minEntropy > 0);
      const value = signalOf(sig.value, node, 'value', options.criterion === 'value');
      const taken = tree.children(node.nodeId).map((c) => c.branchPosition);
      // One random stream per node, addressed by token position: order-independent by construction.
      const rng = new CounterRng(seed.seed, 'tree-plan', seed.step, `${groupId}\u0000${node.nodeId}`);
      for (let p = lo; p <= hi; p++) {
        if (taken.some((q) => Math.abs(p - q) < options.minSpacing)) continue;
        const h = entropy ? entropy[p]! : 0;
        if (!Number.isFinite(h) || (value && !Number.isFinite(value[p]!))) {
          throw new TreeError(`node "${node.nodeId}" has a non-finite signal at position ${p}: entropies and values must be finite`);
        }
        if (h < options.minEntropy) continue;
        const score = options.criterion === 'entropy' ? h : value![p]! + options.explorationWeight * h;
        const u = rng.uniform(p);
        const key = options.temperature > 0 ? score / options.temperature - Math.log(-Math.log(u === 0 ? Number.MIN_VALUE : u)) : score;
        candidates.push({ node, position: p, score, key, tie: u });
      }
    }
    candidates.sort((a, b) => b.key - a.key || b.tie - a.tie);
    const want = Math.min(options.maxBranchesPerRound ?? Infinity, Math.ceil(budget / k));
    const picked: Candidate[] = [];
    for (const c of candidates) {
      if (picked.length >= want) break;
      if (picked.some((q) => q.node === c.node && Math.abs(q.position - c.position) < options.minSpacing)) continue;
      picked.push(c);
    }
    if (picked.length === 0) {
      stalled.push(groupId);
      continue;
    }
    const counts = allocate(picked, Math.min(budget, picked.length * k), k, options.allocation);
    let created = 0;
    picked.forEach((c, idx) => {
      const n = counts[idx]!;
      if (n === 0) return;
      const children: TreeNode[] = [];
      for (let i = 0; i < n; i++) {
        children.push({
          nodeId: `${c.node.nodeId}>${c.position}.${i}`,
          parentNodeId: c.node.nodeId,
          groupId,
          branchPosition: c.position,
          depth: c.node.depth + 1,
        });
      }
      created += n;
      instructions.push({ groupId, sourceNodeId: c.node.nodeId, position: c.position, children, score: c.score });
    });
    remaining[groupId] = budget - created;
  }
  return { instructions, newSamples: instructions.reduce((a, i) => a + i.children.length, 0), remaining, stalled };
}

/** Splits `total` children among the picked branch points (in rank order). */
function allocate(picked: readonly Candidate[], total: number, k: number, mode: 'uniform' | 'proportional'): number[] {
  const n = picked.length;
  if (mode === 'uniform') {
    const counts: number[] = [];
    let left = total;
    for (let i = 0; i < n; i++) {
      const c = Math.min(k, left);
      counts.push(c);
      left -= c;
    }
    return counts;
  }
  // proportional: one each, the rest by largest remainder on (score - min score).
  const counts = new Array<number>(n).fill(0);
  const base = Math.min(n, total);
  for (let i = 0; i < base; i++) counts[i] = 1;
  const rest = total - base;
  if (rest <= 0) return counts;
  const min = Math.min(...picked.map((c) => c.score));
  const w = picked.map((c) => c.score - min);
  const sum = w.reduce((a, b) => a + b, 0);
  const share = w.map((x) => (sum > 0 ? (x / sum) * rest : rest / n));
  const floors = share.map(Math.floor);
  let given = floors.reduce((a, b) => a + b, 0);
  floors.forEach((f, i) => (counts[i] = counts[i]! + f));
  const order = share.map((s, i) => ({ r: s - floors[i]!, i })).sort((a, b) => b.r - a.r || a.i - b.i);
  for (let j = 0; given < rest; j++, given++) {
    const i = order[j % n]!.i;
    counts[i] = counts[i]! + 1;
  }
  return counts;
}

/** Adds an instruction's children to the tree (lengths still unknown). */
export function applyInstructions(tree: RolloutTree, instructions: readonly BranchInstruction[]): void {
  for (const ins of instructions) for (const c of ins.children) tree.add(c);
}
