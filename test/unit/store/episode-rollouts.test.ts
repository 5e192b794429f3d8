/** The episode columns of the rollouts contract (version 3): segments, loss mask, tool calls, observations; older files still read. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Schema, Table, tableFromIPC, tableToIPC } from 'apache-arrow';
import { SCHEMA_NAME_KEY, SCHEMA_VERSION_KEY } from '../../../activities/store/arrow.js';
import { decodeRollouts, encodeRollouts, ROLLOUTS, type RolloutsInput } from '../../../activities/store/schemas.js';

const EPISODE_COLUMNS = [
  'loss_mask',
  'segment_ends',
  'segment_roles',
  'segment_turns',
  'turns',
  'tool_calls',
  'observations',
  'malformed_turns',
] as const;

/** A two-turn episode: policy tokens [0,3), observation [3,5), policy [5,7). */
function episode(over: Partial<RolloutsInput> = {}): RolloutsInput {
  return {
    run_id: 'run-1',
    step: 3,
    prompt_id: 'calc-000001',
    sample_id: 1,
    group_id: 'calc-000001',
    policy_version: 3,
    prompt_text: '12*34=',
    prompt_token_ids: [1, 5, 6],
    completion_text: '<c>12*34</c><o>408</o>408',
    completion_token_ids: [20, 21, 22, 30, 31, 23, 2],
    behaviour_logprobs: [-0.5, -0.25, -0.125, 0, 0, -1, -0.0625],
    finish_reason: 'stop',
    loss_mask: [true, true, true, false, false, true, true],
    segment_ends: [3, 5, 7],
    segment_roles: ['policy', 'observation', 'policy'],
    segment_turns: [0, 0, 1],
    turns: 2,
    tool_calls: [JSON.stringify({ turn: 0, name: 'calc', arguments: { expression: '12*34' }, output: '408', error: null, attempts: 1 })],
    observations: ['408'],
    malformed_turns: 0,
    ...over,
  };
}

function withVersion(bytes: Uint8Array, version: string, drop: readonly string[]): Uint8Array {
  const t = tableFromIPC(bytes);
  const fields = t.schema.fields.filter((f) => !drop.includes(f.name));
  const schema = new Schema(
    fields,
    new Map([
      [SCHEMA_NAME_KEY, 'rollouts'],
      [SCHEMA_VERSION_KEY, version],
    ]),
  );
  return tableToIPC(new Table(schema, Object.fromEntries(fields.map((f) => [f.name, t.getChild(f.name)!]))), 'file');
}

describe('rollouts v3: episodes', () => {
  it('an episode row round-trips: 3 segments (policy 3, observation 2, policy 2 tokens), loss mask, 1 tool call, 1 observation', () => {
    assert.equal(ROLLOUTS.version, 3);
    const [back] = decodeRollouts(encodeRollouts([episode()]));
    assert.deepEqual(back!.loss_mask, [true, true, true, false, false, true, true]);
    assert.deepEqual(Array.from(back!.segment_ends!), [3, 5, 7]);
    assert.deepEqual(back!.segment_roles, ['policy', 'observation', 'policy']);
    assert.deepEqual(Array.from(back!.segment_turns!), [0, 0, 1]);
    assert.equal(back!.turns, 2);
    assert.deepEqual(JSON.parse(back!.tool_calls![0]!), {
      turn: 0,
      name: 'calc',
      arguments: { expression: '12*34' },
      output: '408',
      error: null,
      attempts: 1,
    });
    assert.deepEqual(back!.observations, ['408']);
    assert.equal(back!.malformed_turns, 0);
  });

  it('episode finish reasons max_turns, max_seconds and tool_failure are written and read', () => {
    for (const reason of ['max_turns', 'max_seconds', 'tool_failure'] as const) {
      const [back] = decodeRollouts(encodeRollouts([episode({ finish_reason: reason })]));
      assert.equal(back!.finish_reason, reason);
    }
  });

  it('a single completion leaves every episode column null, and an episode finish reason on it is refused', () => {
    const {
      loss_mask: _m,
      segment_ends: _e,
      segment_roles: _r,
      segment_turns: _t,
      turns: _n,
      tool_calls: _c,
      observations: _o,
      malformed_turns: _x,
      ...flat
    } = episode();
    const [back] = decodeRollouts(encodeRollouts([{ ...flat, behaviour_logprobs: [-1, -1, -1, -1, -1, -1, -1] }]));
    for (const c of EPISODE_COLUMNS) assert.equal(back![c], null, c);
    assert.throws(() => encodeRollouts([{ ...flat, finish_reason: 'max_turns' }]), /finish_reason "max_turns" is an episode's/);
  });

  it('the episode rules name what is wrong: partial columns, mask length, mask off a policy segment, segment ends, logprob on an observation, observation count', () => {
    const bad = (over: Partial<RolloutsInput>, re: RegExp) => assert.throws(() => encodeRollouts([episode(over)]), re);
    bad({ turns: null }, /the episode columns are set only in part/);
    bad({ loss_mask: [true, true, true, false, false, true] }, /loss_mask has 6 values for 7 completion tokens/);
    bad({ loss_mask: [true, false, true, false, false, true, true] }, /loss_mask\[1\] is false inside a "policy" segment/);
    bad({ loss_mask: [true, true, true, true, false, true, true] }, /loss_mask\[3\] is true inside a "observation" segment/);
    bad({ segment_ends: [3, 5, 6] }, /the last segment ends at 6, not at the 7 completion tokens/);
    bad({ segment_ends: [3, 3, 7] }, /segment 1 ends at 3, not after its start 3/);
    bad({ segment_roles: ['policy', 'tool', 'policy'] }, /segment 1 has role "tool"/);
    bad({ segment_turns: [0, 1] }, /3 segment_ends but 3 segment_roles and 2 segment_turns/);
    bad({ behaviour_logprobs: [-0.5, -0.25, -0.125, -2, 0, -1, -0.0625] }, /behaviour_logprobs\[3\] is -2 on a "observation" token/);
    bad({ observations: [] }, /0 observations for 1 observation segments/);
  });

  it('files of versions 1 and 2 still read: their episode columns (and v1 branch_position) are null, every other column as written', () => {
    const flat: RolloutsInput = {
      ...episode(),
      loss_mask: null,
      segment_ends: null,
      segment_roles: null,
      segment_turns: null,
      turns: null,
      tool_calls: null,
      observations: null,
      malformed_turns: null,
    };
    const now = encodeRollouts([flat, { ...flat, sample_id: 2 }]);
    const v2 = withVersion(now, '2', EPISODE_COLUMNS);
    const v1 = withVersion(now, '1', [...EPISODE_COLUMNS, 'branch_position']);
    const expected = decodeRollouts(now);
    for (const [bytes, v] of [
      [v2, 2],
      [v1, 1],
    ] as const) {
      const rows = decodeRollouts(bytes, `v${v}.arrow`);
      assert.equal(rows.length, 2);
      assert.deepEqual(rows, expected);
      for (const r of rows) for (const c of EPISODE_COLUMNS) assert.equal(r[c], null);
    }
    assert.equal(
      tableFromIPC(v2).schema.fields.some((f) => f.name === 'loss_mask'),
      false,
      'the v2 file really lacks the v3 columns',
    );
  });
});
