import { test } from 'node:test';
import assert from 'node:assert/strict';
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
import { loadRunReport } from '../../../activities/report/load.js';
import { renderReport } from '../../../activities/report/render.js';
import { advantageShade, logprobShade } from '../../../activities/report/trajectories.js';
import { commitSftStep, metricsRow, tempStore } from './helpers.js';

/** The char ids of a text over a tiny alphabet (index in ALPHA + 3, after pad/bos/eos). */
const ALPHA = '0123456789*<>/acoe:rt ';
const ids = (s: string) => [...s].map((c) => ALPHA.indexOf(c) + 3);
const tokenText = (id: number) => (id === 2 ? '<eos>' : ALPHA[id - 3]!);

/**
 * Episode of 123*45: turn 0 calls calc (policy <c>123*45</c>), observation <o>5535</o>, turn 1 answers
 * <a>5535</a><eos>; sample 1 answers wrong in one turn.
 */
function episode(sample: number): RolloutsInput {
  const segs: [string, 'policy' | 'observation', number][] =
    sample === 0
      ? [
          ['<c>123*45</c>', 'policy', 0],
          ['<o>5535</o>', 'observation', 0],
          ['<a>5535</a>', 'policy', 1],
        ]
      : [['<a>5000</a>', 'policy', 0]];
  const tokens: number[] = [];
  const mask: boolean[] = [];
  const logprobs: number[] = [];
  const ends: number[] = [];
  for (const [text, role] of segs) {
    for (const id of ids(text)) {
      tokens.push(id);
      mask.push(role === 'policy');
      logprobs.push(role === 'policy' ? -0.1 : 0);
    }
    ends.push(tokens.length);
  }
  tokens.push(2); // eos, the last policy turn's
  mask.push(true);
  logprobs.push(-2);
  ends[ends.length - 1] = tokens.length;
  return {
    run_id: 'run-e',
    step: 1,
    prompt_id: 'calculator-train-000000',
    sample_id: sample,
    group_id: 'calculator-train-000000',
    policy_version: 1,
    prompt_text: '123*45=',
    prompt_token_ids: [1, ...ids('123*45=')],
    completion_text: segs.map((s) => s[0]).join(''),
    completion_token_ids: tokens,
    behaviour_logprobs: logprobs,
    finish_reason: 'stop',
    loss_mask: mask,
    segment_ends: ends,
    segment_roles: segs.map((s) => s[1]),
    segment_turns: segs.map((s) => s[2]),
    turns: sample === 0 ? 2 : 1,
    tool_calls:
      sample === 0
        ? [JSON.stringify({ turn: 0, name: 'calc', arguments: { expression: '123*45' }, output: '5535', error: null, attempts: 3 })]
        : [],
    observations: sample === 0 ? ['5535'] : [],
    malformed_turns: 0,
  };
}

async function commitEpisodeStep(store: Parameters<typeof commit>[0]) {
  const rollouts = [episode(0), episode(1)];
  await commit(store, stepPrefix('run-e', 1), [
    { name: METRICS_NAME, bytes: encodeMetrics([metricsRow('run-e', 1, 'rl')]), schema: METRICS },
    { name: rolloutsName(0), bytes: encodeRollouts(rollouts), schema: ROLLOUTS },
    {
      name: rewardsName(0),
      bytes: encodeRewards(
        rollouts.map((r, i) => ({
          run_id: 'run-e',
          step: 1,
          prompt_id: r.prompt_id,
          sample_id: r.sample_id,
          reward: i === 0 ? 1.2 : 0,
          components: { correct: 1 - i },
          error: null,
        })),
      ),
      schema: REWARDS,
    },
    {
      name: ADVANTAGES_NAME,
      bytes: encodeAdvantages(
        rollouts.map((r, i) => ({
          run_id: 'run-e',
          step: 1,
          prompt_id: r.prompt_id,
          sample_id: r.sample_id,
          advantage: i === 0 ? 0.7 : -0.7,
          loss_mask: r.loss_mask,
        })),
      ),
      schema: ADVANTAGES,
    },
  ]);
}

test('trajectory viewer data: step -> group -> samples -> turns -> tokens, observation tokens without logprob or advantage, calls on their turn', async () => {
  const { store, cleanup } = await tempStore();
  try {
    await commitSftStep(store, 'run-e', 0);
    await commitEpisodeStep(store);
    const data = await loadRunReport(store, 'run-e', { tokenText });
    const [step] = data.trajectories!;
    assert.equal(step!.step, 1);
    assert.equal(step!.episodes, 2);
    const [group] = step!.groups;
    assert.equal(group!.prompt, '123*45=');
    const [s0, s1] = group!.samples;
    assert.deepEqual([s0!.reward, s0!.advantage, s1!.reward, s1!.advantage], [1.2, 0.7, 0, -0.7]);
    assert.deepEqual(
      s0!.turns.map((t) => t.segments.map((g) => [g.role, g.tokens.map((x) => x.text).join('')])),
      [
        [
          ['policy', '<c>123*45</c>'],
          ['observation', '<o>5535</o>'],
        ],
        [['policy', '<a>5535</a><eos>']],
      ],
    );
    const obs = s0!.turns[0]!.segments[1]!;
    assert.equal(obs.observation, '5535');
    assert.ok(obs.tokens.every((t) => t.logprob === null && t.advantage === null));
    const policy = s0!.turns[0]!.segments[0]!.tokens;
    assert.ok(policy.every((t) => t.logprob === Math.fround(-0.1) && t.advantage === 0.7));
    assert.deepEqual(s0!.turns[0]!.calls, [
      { name: 'calc', arguments: '{"expression":"123*45"}', output: '5535', error: null, attempts: 3 },
    ]);
    assert.deepEqual(s1!.turns.length, 1);
  } finally {
    await cleanup();
  }
});

test('trajectory viewer HTML: each token a span shaded by logprob and underlined by advantage, the call inline, text escaped', async () => {
  const { store, cleanup } = await tempStore();
  try {
    await commitSftStep(store, 'run-e', 0);
    await commitEpisodeStep(store);
    const html = renderReport(await loadRunReport(store, 'run-e', { tokenText }));
    assert.match(html, /<h2>Trajectories<\/h2>/);
    // '<' of <c> escaped, its background from logprob -0.1, its underline green at full opacity (0.7 is the largest |advantage|)
    assert.ok(
      html.includes(
        `title="id ${ids('<')[0]} · logprob -0.100 · advantage 0.700" style="background:${logprobShade(-0.1)};border-bottom:3px solid ${advantageShade(0.7, 0.7)}">&lt;</span>`,
      ),
    );
    assert.ok(html.includes('<code>calc({&quot;expression&quot;:&quot;123*45&quot;})</code> → 5535 <small>(3 attempts)</small>'));
    assert.ok(html.includes('<span class="seg observation" title="observation: 5535">'));
    assert.ok(!html.includes('<script'));
  } finally {
    await cleanup();
  }
});

test('token shades: logprob 0 is transparent, -inf is the deepest orange; advantage sign picks green or red, |a|/scale the opacity', () => {
  assert.equal(logprobShade(0), 'rgba(247,103,7,0.000)');
  assert.equal(logprobShade(-Infinity), 'rgba(247,103,7,0.750)');
  assert.equal(logprobShade(Math.log(0.5)), 'rgba(247,103,7,0.375)');
  assert.equal(advantageShade(0.5, 1), 'rgba(47,158,68,0.500)');
  assert.equal(advantageShade(-2, 1), 'rgba(201,42,42,1.000)');
});

test('a run without episodes has no trajectories and no Trajectories section', async () => {
  const { store, cleanup } = await tempStore();
  try {
    await commitSftStep(store, 'run-s', 0);
    const data = await loadRunReport(store, 'run-s');
    assert.deepEqual(data.trajectories, []);
    assert.ok(!renderReport(data).includes('Trajectories'));
  } finally {
    await cleanup();
  }
});
