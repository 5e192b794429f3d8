/** The report draws tree-structured rollouts (the rl phase's `tree` option): load, then render. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { loadRunReport } from '../../../activities/report/load.js';
import { renderReport } from '../../../activities/report/render.js';
import { ADVANTAGES_NAME, METRICS_NAME, rewardsName, rolloutsName, stepPrefix } from '../../../activities/store/keys.js';
import { commit } from '../../../activities/store/manifest.js';
import {
  ADVANTAGES,
  METRICS,
  REWARDS,
  ROLLOUTS,
  encodeAdvantages,
  encodeMetrics,
  encodeRewards,
  encodeRollouts,
  type RolloutsInput,
} from '../../../activities/store/schemas.js';
import { metricsRow, tempStore } from './helpers.js';

/** One prompt's tree: root r (text "12+3"), children a at token 2 ("12=9"), b at token 3 ("12+7") and a's child c at token 3 ("12=<x>"). */
const NODES = [
  { id: 'p/0', parent: null, bp: 0, text: '12+3', reward: 1 },
  { id: 'p/0>2.0', parent: 'p/0', bp: 2, text: '12=9', reward: 0 },
  { id: 'p/0>3.0', parent: 'p/0', bp: 3, text: '12+7', reward: 0.5 },
  { id: 'p/0>2.0>3.0', parent: 'p/0>2.0', bp: 3, text: '12=<x>', reward: 0 },
];

it("loads the step's trees and draws each as a nested list: children under their parent, branch position, shared prefix, reward and advantage per node", async () => {
  const { store, cleanup } = await tempStore();
  try {
    const step = 1;
    const rollouts: RolloutsInput[] = NODES.map((n, i) => ({
      run_id: 'r',
      step,
      prompt_id: 'p',
      sample_id: i,
      group_id: 'p',
      node_id: n.id,
      parent_node_id: n.parent,
      branch_position: n.bp,
      policy_version: 1,
      prompt_text: 'What is 12?',
      prompt_token_ids: [1],
      completion_text: n.text,
      completion_token_ids: [...n.text].map((_, k) => k),
      behaviour_logprobs: [...n.text].map(() => -1),
      finish_reason: 'stop',
    }));
    await commit(store, stepPrefix('r', step), [
      { name: METRICS_NAME, bytes: encodeMetrics([metricsRow('r', step, 'rl')]), schema: METRICS },
      { name: rolloutsName(0), bytes: encodeRollouts(rollouts), schema: ROLLOUTS },
      {
        name: rewardsName(0),
        bytes: encodeRewards(
          NODES.map((n, i) => ({ run_id: 'r', step, prompt_id: 'p', sample_id: i, node_id: n.id, reward: n.reward, components: {} })),
        ),
        schema: REWARDS,
      },
      {
        name: ADVANTAGES_NAME,
        schema: ADVANTAGES,
        bytes: encodeAdvantages(
          NODES.map((n, i) => ({
            run_id: 'r',
            step,
            prompt_id: 'p',
            sample_id: i,
            node_id: n.id,
            // 0.25 on the node's own tokens, masked copied prefix carrying 9 (must not count)
            token_advantages: [...n.text].map((_, k) => (k < n.bp ? 9 : 0.25)),
            loss_mask: [...n.text].map((_, k) => k >= n.bp),
          })),
        ),
      },
    ]);
    const data = await loadRunReport(store, 'r');
    const trees = data.samples!.trees!;
    assert.equal(trees.length, 1);
    assert.deepEqual(
      trees[0]!.nodes.map((n) => [n.node_id, n.parent_node_id, n.branch_position, n.shared_chars, n.reward, n.advantage]),
      [
        ['p/0', null, 0, 0, 1, 0.25],
        ['p/0>2.0', 'p/0', 2, 2, 0, 0.25],
        ['p/0>3.0', 'p/0', 3, 3, 0.5, 0.25],
        ['p/0>2.0>3.0', 'p/0>2.0', 3, 3, 0, 0.25],
      ],
    );

    const html = renderReport(data);
    const section = html.slice(html.indexOf('Rollout trees of step 1'));
    assert.ok(section.length < html.length, 'the page has a tree section');
    // nesting: the root's list holds a (which holds c) and b, in branch-position order
    const order = ['p/0<', 'p/0&gt;2.0<', 'p/0&gt;2.0&gt;3.0<', 'p/0&gt;3.0<'].map((id) => section.indexOf(`<span class="node">${id}`));
    assert.ok(
      order.every((at, k) => at > 0 && (k === 0 || at > order[k - 1]!)),
      `nodes in tree order: ${order.join(' ')}`,
    );
    const a = section.slice(order[1]!, order[3]!);
    assert.match(a, /<ul><li><span class="node">p\/0&gt;2\.0&gt;3\.0/, "c is nested in a's list");
    assert.match(section, /branch at token 2/);
    assert.match(section, /<span class="shared">12=<\/span>&lt;x&gt;/, 'the shared prefix is marked, the rest escaped');
    assert.match(section, /reward 0\.5/);
    assert.ok(!section.includes('<x>'), 'completion text is escaped');
  } finally {
    await cleanup();
  }
});

it('a run with flat rollouts has no tree section', async () => {
  const { store, cleanup } = await tempStore();
  try {
    const row: RolloutsInput = {
      run_id: 'r',
      step: 0,
      prompt_id: 'p',
      sample_id: 0,
      group_id: 'p',
      policy_version: 0,
      prompt_text: 'q',
      prompt_token_ids: [1],
      completion_text: 'a',
      completion_token_ids: [3],
      behaviour_logprobs: [-1],
      finish_reason: 'stop',
    };
    await commit(store, stepPrefix('r', 0), [
      { name: METRICS_NAME, bytes: encodeMetrics([metricsRow('r', 0, 'rl')]), schema: METRICS },
      { name: rolloutsName(0), bytes: encodeRollouts([row]), schema: ROLLOUTS },
    ]);
    const data = await loadRunReport(store, 'r');
    assert.deepEqual(data.samples!.trees, []);
    assert.ok(!renderReport(data).includes('Rollout trees'));
  } finally {
    await cleanup();
  }
});
