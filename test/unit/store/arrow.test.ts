/** Arrow contracts: typed rows ↔ IPC file bytes, and every way reading or writing can fail. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Field, Int32, Schema, Table, Utf8, tableFromIPC, tableToIPC, vectorFromArray, makeData, RecordBatch, Struct } from 'apache-arrow';
import { CorruptDataError, InvalidRowsError, SchemaMismatchError } from '../../../activities/store/errors.js';
import { arrowSchema, readSchemaRef, readTable, writeTable, SCHEMA_NAME_KEY, SCHEMA_VERSION_KEY } from '../../../activities/store/arrow.js';
import {
  ADVANTAGES,
  ANNOTATION_INPUTS,
  CONTRACTS,
  METRICS,
  REFERENCE_LOGPROBS,
  REWARDS,
  ROLLOUTS,
  decodeAdvantages,
  decodeAnnotationInputs,
  decodeMetrics,
  decodeRewards,
  decodeRollouts,
  encodeAdvantages,
  encodeAnnotationInputs,
  encodeMetrics,
  encodeRewards,
  encodeRollouts,
  type RolloutsInput,
  type MetricsInput,
} from '../../../activities/store/schemas.js';

function rollout(i: number, over: Partial<RolloutsInput> = {}): RolloutsInput {
  return {
    run_id: 'run-1',
    step: 7,
    prompt_id: `p${i % 3}`,
    sample_id: i,
    group_id: `p${i % 3}`,
    policy_version: 6,
    prompt_text: `What is ${i} + ${i}?`,
    prompt_token_ids: [1, 2, 3, i],
    completion_text: `${2 * i}`,
    completion_token_ids: [10 + i, 11],
    behaviour_logprobs: [-0.5, -0.25],
    finish_reason: 'stop',
    ...over,
  };
}

const f32 = (xs: number[]) => Array.from(Float32Array.from(xs));

describe('arrow contracts: round trips', () => {
  it('rollouts: flat and tree rows, unicode, typed arrays out', () => {
    const rows: RolloutsInput[] = [
      rollout(0),
      rollout(1, { prompt_text: 'Ünïcödé ✓ 日本語 🌍', completion_text: '', completion_token_ids: [], behaviour_logprobs: [] }),
      rollout(2, {
        node_id: '0',
        parent_node_id: null,
        finish_reason: 'branch',
        completion_token_ids: new Int32Array([5]),
        behaviour_logprobs: new Float32Array([-1.5]),
      }),
      rollout(3, { node_id: '0.1', parent_node_id: '0', finish_reason: 'length' }),
    ];
    const back = decodeRollouts(encodeRollouts(rows));
    assert.equal(back.length, 4);
    assert.equal(back[1]!.prompt_text, 'Ünïcödé ✓ 日本語 🌍');
    assert.deepEqual(back[1]!.completion_token_ids, new Int32Array([]));
    assert.ok(back[0]!.prompt_token_ids instanceof Int32Array);
    assert.ok(back[0]!.behaviour_logprobs instanceof Float32Array);
    assert.deepEqual(Array.from(back[0]!.prompt_token_ids), [1, 2, 3, 0]);
    assert.equal(back[0]!.node_id, null, 'omitted nullable → null');
    assert.equal(back[3]!.parent_node_id, '0');
    assert.equal(back[2]!.finish_reason, 'branch');
    assert.deepEqual(Array.from(back[2]!.behaviour_logprobs), [-1.5]);
    for (let i = 0; i < 4; i++) {
      assert.equal(back[i]!.sample_id, i);
      assert.equal(back[i]!.step, 7);
      assert.equal(back[i]!.policy_version, 6);
    }
  });

  it('long lists survive intact (32k tokens, float32 precision)', () => {
    const n = 32_768;
    const ids = Int32Array.from({ length: n }, (_, i) => (i * 7919) % 151_936);
    const lps = Array.from({ length: n }, (_, i) => -Math.abs(Math.sin(i)) * 10);
    const [back] = decodeRollouts(encodeRollouts([rollout(0, { completion_token_ids: ids, behaviour_logprobs: lps })]));
    assert.deepEqual(back!.completion_token_ids, ids);
    assert.deepEqual(Array.from(back!.behaviour_logprobs), f32(lps));
  });

  it('empty batches keep their schema', () => {
    for (const t of CONTRACTS) {
      const bytes = writeTable(t, []);
      assert.deepEqual(readTable(t, bytes), []);
      assert.deepEqual(readSchemaRef(bytes), { name: t.name, version: t.version });
    }
  });

  it('rewards: nulls, components, per-token rewards, errors', () => {
    const rows = decodeRewards(
      encodeRewards([
        { run_id: 'r', step: 0, prompt_id: 'a', sample_id: 0, reward: 1, components: { accuracy: 1, format: 0.5 } },
        { run_id: 'r', step: 0, prompt_id: 'a', sample_id: 1, reward: null, components: {}, error: 'TypeError: boom' },
        {
          run_id: 'r',
          step: 0,
          prompt_id: 'b',
          sample_id: 0,
          node_id: '0.1',
          reward: -0.25,
          components: new Map([
            ['z', 2],
            ['a', -1],
          ]),
          token_rewards: [0, 0.5, 1],
        },
        { run_id: 'r', step: 0, prompt_id: 'b', sample_id: 1, reward: -1, components: {}, error: 'timeout after 30 s (penalty applied)' },
      ]),
    );
    assert.deepEqual(rows[0], {
      run_id: 'r',
      step: 0,
      prompt_id: 'a',
      sample_id: 0,
      node_id: null,
      reward: 1,
      components: { accuracy: 1, format: 0.5 },
      token_rewards: null,
      error: null,
    });
    assert.equal(rows[1]!.reward, null);
    assert.equal(rows[1]!.error, 'TypeError: boom');
    assert.deepEqual(rows[1]!.components, {});
    assert.deepEqual(rows[2]!.components, { a: -1, z: 2 });
    assert.deepEqual(rows[2]!.token_rewards, new Float32Array([0, 0.5, 1]));
    assert.equal(rows[3]!.reward, -1);
  });

  it('advantages: scalar or per-token, optional loss mask', () => {
    const rows = decodeAdvantages(
      encodeAdvantages([
        { run_id: 'r', step: 1, prompt_id: 'a', sample_id: 0, advantage: 0.75 },
        { run_id: 'r', step: 1, prompt_id: 'a', sample_id: 1, token_advantages: [0.5, -0.5, 0], loss_mask: [true, false, true] },
      ]),
    );
    assert.equal(rows[0]!.advantage, 0.75);
    assert.equal(rows[0]!.token_advantages, null);
    assert.equal(rows[0]!.loss_mask, null);
    assert.deepEqual(rows[1]!.token_advantages, new Float32Array([0.5, -0.5, 0]));
    assert.deepEqual(rows[1]!.loss_mask, [true, false, true]);
  });

  it('metrics and annotation inputs', () => {
    const m: MetricsInput = {
      run_id: 'r',
      step: 12,
      phase: 'rl',
      policy_version: 12,
      num_prompts: 8,
      num_samples: 64,
      reward_mean: 0.5,
      reward_std: 0.25,
      kl: null,
      rollout_seconds: 1.5,
      reward_errors: 1,
      dropped_samples: 2,
      truncated_samples: 3,
      completion_length_max: 512,
      extra: { 'sibling_grpo/branch_nodes': 17 },
    };
    const [back] = decodeMetrics(encodeMetrics([m]));
    assert.equal(back!.phase, 'rl');
    assert.equal(back!.reward_mean, 0.5);
    assert.equal(back!.kl, null);
    assert.equal(back!.entropy, null);
    assert.equal(back!.completion_length_max, 512);
    assert.deepEqual(back!.extra, { 'sibling_grpo/branch_nodes': 17 });
    const inputs = decodeAnnotationInputs(
      encodeAnnotationInputs([
        { prompt_id: 'q1', prompt: '2+2?', completion: '4', reference: '4' },
        { prompt_id: 'q2', sample_id: 3, prompt: 'Name a colour', completion: 'blue' },
      ]),
    );
    assert.deepEqual(inputs, [
      { prompt_id: 'q1', sample_id: null, prompt: '2+2?', completion: '4', reference: '4' },
      { prompt_id: 'q2', sample_id: 3, prompt: 'Name a colour', completion: 'blue', reference: null },
    ]);
  });

  it('encoding is deterministic (same rows → same bytes; map order does not matter)', () => {
    const a = encodeRewards([{ run_id: 'r', step: 0, prompt_id: 'a', sample_id: 0, reward: 1, components: { x: 1, y: 2 } }]);
    const b = encodeRewards([{ run_id: 'r', step: 0, prompt_id: 'a', sample_id: 0, reward: 1, components: { y: 2, x: 1 } }]);
    assert.deepEqual(a, b);
    assert.deepEqual(encodeRollouts([rollout(1), rollout(2)]), encodeRollouts([rollout(1), rollout(2)]));
  });

  it('writes the schema name and version into the Arrow metadata, readable by any Arrow reader', () => {
    const t = tableFromIPC(encodeAdvantages([{ run_id: 'r', step: 1, prompt_id: 'a', sample_id: 0, advantage: 1 }]));
    assert.equal(t.schema.metadata.get(SCHEMA_NAME_KEY), 'advantages');
    assert.equal(t.schema.metadata.get(SCHEMA_VERSION_KEY), '1');
    assert.deepEqual(
      t.schema.fields.map((f) => f.name),
      Object.keys(ADVANTAGES.columns),
    );
    assert.equal(t.getChild('advantage')!.get(0), 1);
  });
});

describe('arrow contracts: writing rejects bad rows, naming row and column', () => {
  const bad = (rows: unknown[], pattern: RegExp) =>
    assert.throws(
      () => encodeRollouts(rows as RolloutsInput[]),
      (e: unknown) => e instanceof InvalidRowsError && pattern.test(e.message),
    );

  it('missing required column', () => {
    const r = rollout(0) as Record<string, unknown>;
    delete r.prompt_text;
    bad([rollout(1), r], /^invalid rollouts rows: row 1 \(prompt_id="p0", sample_id=0, step=7\): column "prompt_text" is required/);
  });

  it('wrong types', () => {
    bad([rollout(0, { step: 1.5 })], /column "step" must be a 32-bit integer, got 1\.5/);
    bad([rollout(0, { step: 2 ** 31 })], /column "step" must be a 32-bit integer/);
    bad([rollout(0, { prompt_id: 7 as unknown as string })], /column "prompt_id" must be a string, got 7/);
    bad([rollout(0, { prompt_token_ids: 'abc' as unknown as number[] })], /column "prompt_token_ids" must be an array/);
    bad([rollout(0, { prompt_token_ids: [1, 2.5] })], /column "prompt_token_ids" element 1 must be a 32-bit integer, got 2\.5/);
    bad(['not a row'], /row 0 must be an object/);
  });

  it('enum values', () => {
    bad(
      [rollout(0, { finish_reason: 'eos' as 'stop' })],
      /column "finish_reason" must be one of "stop", "length", "branch", "max_turns", "max_seconds", "tool_failure", got "eos"/,
    );
  });

  it('non-finite numbers where finite is required', () => {
    bad([rollout(0, { behaviour_logprobs: [-1, Number.NaN] })], /column "behaviour_logprobs" element 1 must be finite, got NaN/);
    assert.throws(
      () => encodeRewards([{ run_id: 'r', step: 0, prompt_id: 'a', sample_id: 0, reward: Number.NaN, components: {} }]),
      /column "reward" must be finite, got NaN \(use null/,
    );
    assert.throws(
      () => encodeRewards([{ run_id: 'r', step: 0, prompt_id: 'a', sample_id: 0, reward: 1, components: { acc: Infinity } }]),
      /column "components" entry "acc" must be finite/,
    );
  });

  it('cross-column rules', () => {
    bad([rollout(0, { behaviour_logprobs: [-1] })], /behaviour_logprobs has 1 values but completion_token_ids has 2/);
    bad([rollout(0, { parent_node_id: '0' })], /parent_node_id is set but node_id is null/);
    bad([rollout(0, { finish_reason: 'branch' })], /"branch" is only for tree nodes/);
    bad([rollout(0, { branch_position: 0 })], /branch_position is set but node_id is null/);
    bad([rollout(0, { node_id: 'a/0', branch_position: 1 })], /branch_position is 1 on a root node/);
    bad([rollout(0, { node_id: 'a/0>2.0', parent_node_id: 'a/0', branch_position: 2 })], /branch_position is 2 with 2 completion tokens/);
    assert.equal(encodeRollouts([rollout(0, { node_id: 'a/0>1.0', parent_node_id: 'a/0', branch_position: 1 })]).length > 0, true);
    assert.throws(
      () => encodeRewards([{ run_id: 'r', step: 0, prompt_id: 'a', sample_id: 0, reward: null, components: {} }]),
      /reward is null but error is empty/,
    );
    assert.throws(
      () => encodeAdvantages([{ run_id: 'r', step: 0, prompt_id: 'a', sample_id: 0 }]),
      /neither advantage nor token_advantages/,
    );
    assert.throws(
      () => encodeAdvantages([{ run_id: 'r', step: 0, prompt_id: 'a', sample_id: 0, token_advantages: [1, 2], loss_mask: [true] }]),
      /token_advantages has 2 values but loss_mask has 1/,
    );
  });

  it('not an array of rows', () => {
    assert.throws(() => encodeRollouts('nope' as unknown as RolloutsInput[]), /expected an array of rows/);
  });
});

describe('arrow contracts: reading fails clearly', () => {
  const good = encodeRollouts([rollout(0), rollout(1)]);

  it('schema name mismatch names expected and found', () => {
    assert.throws(
      () => decodeRewards(good, 's3://b/x.arrow'),
      (e: unknown) =>
        e instanceof SchemaMismatchError && e.message === 'schema mismatch in s3://b/x.arrow: expected schema "rewards", found "rollouts"',
    );
  });

  function withMetadata(bytes: Uint8Array, meta: Record<string, string>): Uint8Array {
    const t = tableFromIPC(bytes);
    const schema = new Schema(t.schema.fields, new Map(Object.entries(meta)));
    return tableToIPC(new Table(schema, Object.fromEntries(t.schema.fields.map((f) => [f.name, t.getChild(f.name)!]))), 'file');
  }

  it('schema version mismatch names the versions read and the one found', () => {
    const v4 = withMetadata(good, { [SCHEMA_NAME_KEY]: 'rollouts', [SCHEMA_VERSION_KEY]: '4' });
    assert.throws(() => decodeRollouts(v4, 'f.arrow'), /expected rollouts schema version 3, 1, 2, found version 4/);
    const none = withMetadata(good, {});
    assert.throws(() => decodeRollouts(none, 'f.arrow'), /expected schema "rollouts", found no durable_rl.schema metadata/);
  });

  it('a rollouts file of version 1 (written before branch_position existed) still reads, branch_position null', () => {
    const v1 = withMetadata(rebuilt(['branch_position']), { [SCHEMA_NAME_KEY]: 'rollouts', [SCHEMA_VERSION_KEY]: '1' });
    const rows = decodeRollouts(v1, 'old.arrow');
    const now = decodeRollouts(good, 'new.arrow');
    assert.equal(rows.length, now.length);
    assert.ok(rows.every((r) => r.branch_position === null));
    assert.deepEqual(
      rows.map(({ branch_position: _b, ...rest }) => rest),
      now.map(({ branch_position: _b, ...rest }) => rest),
    );
  });

  function rebuilt(drop: string[], replace: Record<string, Field> = {}): Uint8Array {
    const t = tableFromIPC(good);
    const fields: Field[] = [];
    const children = [];
    for (const f of t.schema.fields) {
      if (drop.includes(f.name)) continue;
      if (replace[f.name]) {
        fields.push(replace[f.name]!);
        children.push(
          vectorFromArray(
            Array.from({ length: t.numRows }, (_, i) => `${i}`),
            new Utf8(),
          ).data[0]!,
        );
      } else {
        fields.push(f);
        children.push(t.getChild(f.name)!.data[0]!);
      }
    }
    const schema = new Schema(fields, t.schema.metadata);
    return tableToIPC(
      new Table([new RecordBatch(schema, makeData({ type: new Struct(fields), length: t.numRows, nullCount: 0, children }))]),
      'file',
    );
  }

  it('a missing column is named', () => {
    assert.throws(
      () => decodeRollouts(rebuilt(['behaviour_logprobs']), 'f.arrow'),
      (e: unknown) =>
        e instanceof SchemaMismatchError && /missing column "behaviour_logprobs" \(List<Float32>\) of rollouts v3/.test(e.message),
    );
  });

  it('a column of the wrong type names expected and found', () => {
    assert.throws(
      () => decodeRollouts(rebuilt([], { step: new Field('step', new Utf8(), false) }), 'f.arrow'),
      /column "step" has type Utf8, expected Int32/,
    );
  });

  it('nulls in a required column are rejected', () => {
    const t = tableFromIPC(good);
    const fields = t.schema.fields.map((f) => (f.name === 'prompt_id' ? new Field('prompt_id', new Utf8(), true) : f));
    const children = t.schema.fields.map((f) =>
      f.name === 'prompt_id' ? vectorFromArray(['a', null], new Utf8()).data[0]! : t.getChild(f.name)!.data[0]!,
    );
    const bytes = tableToIPC(
      new Table([
        new RecordBatch(new Schema(fields, t.schema.metadata), makeData({ type: new Struct(fields), length: 2, nullCount: 0, children })),
      ]),
      'file',
    );
    assert.throws(() => decodeRollouts(bytes, 'f.arrow'), /column "prompt_id" is required but has 1 null value/);
  });

  it('extra columns are ignored', () => {
    const t = tableFromIPC(good);
    const fields = [...t.schema.fields, new Field('future_column', new Int32(), false)];
    const children = [...t.schema.fields.map((f) => t.getChild(f.name)!.data[0]!), vectorFromArray([1, 2], new Int32()).data[0]!];
    const bytes = tableToIPC(
      new Table([
        new RecordBatch(new Schema(fields, t.schema.metadata), makeData({ type: new Struct(fields), length: 2, nullCount: 0, children })),
      ]),
      'file',
    );
    const rows = decodeRollouts(bytes);
    assert.equal(rows.length, 2);
    assert.ok(!('future_column' in rows[0]!));
  });

  it('a truncated file is a CorruptDataError naming the source, at any cut', () => {
    for (const cut of [0, 5, 12, 100, Math.floor(good.length / 2), good.length - 7, good.length - 1]) {
      assert.throws(
        () => decodeRollouts(good.subarray(0, cut), 's3://b/r.arrow'),
        (e: unknown) =>
          e instanceof CorruptDataError && e.message.includes('s3://b/r.arrow') && /truncated|not an Arrow IPC file/.test(e.message),
        `cut at ${cut}`,
      );
    }
  });

  it('garbage and damaged footers are CorruptDataErrors', () => {
    assert.throws(() => decodeRollouts(new TextEncoder().encode('{"json": "not arrow"}'), 'x.json'), /not an Arrow IPC file/);
    const damaged = good.slice();
    damaged.fill(0xff, damaged.length - 40, damaged.length - 10); // footer length and flatbuffer, magic intact
    assert.throws(
      () => decodeRollouts(damaged, 'd.arrow'),
      (e: unknown) => e instanceof CorruptDataError && e.message.includes('d.arrow'),
    );
    assert.throws(() => decodeRollouts('bytes' as unknown as Uint8Array, 'x'), /expected bytes/);
  });

  it('rows that break a contract rule on read are named', () => {
    // A foreign writer put 2 logprobs for 3 tokens: the Arrow types are fine, the contract is not.
    const t = tableFromIPC(good);
    const fields = t.schema.fields;
    const children = fields.map((f) =>
      f.name === 'completion_token_ids'
        ? vectorFromArray(
            [
              [1, 2, 3],
              [4, 5],
            ],
            f.type,
          ).data[0]!
        : t.getChild(f.name)!.data[0]!,
    );
    const bytes = tableToIPC(
      new Table([
        new RecordBatch(new Schema(fields, t.schema.metadata), makeData({ type: new Struct(fields), length: 2, nullCount: 0, children })),
      ]),
      'file',
    );
    assert.throws(
      () => decodeRollouts(bytes, 'f.arrow'),
      (e: unknown) =>
        e instanceof SchemaMismatchError && /row 0 .*behaviour_logprobs has 2 values but completion_token_ids has 3/.test(e.message),
    );
  });
});

describe('arrow contracts: declarations', () => {
  it('every contract has name, version, docs on every column, and row-key columns', () => {
    assert.deepEqual(
      CONTRACTS.map((t) => t.name),
      ['rollouts', 'rewards', 'advantages', 'reference_logprobs', 'preference_pairs', 'metrics', 'annotation_inputs'],
    );
    for (const t of CONTRACTS) {
      assert.ok(Number.isInteger(t.version) && t.version >= 1);
      for (const [name, spec] of Object.entries(t.columns)) {
        assert.match(name, /^[a-z][a-z0-9_]*$/, `${t.name}.${name} is snake_case`);
        assert.ok(spec.doc.length > 10, `${t.name}.${name} is documented`);
      }
      assert.equal(arrowSchema(t).fields.length, Object.keys(t.columns).length);
    }
    for (const t of [ROLLOUTS, REWARDS, ADVANTAGES, REFERENCE_LOGPROBS]) {
      for (const k of ['run_id', 'step', 'prompt_id', 'sample_id', 'node_id']) assert.ok(k in t.columns, `${t.name} has ${k}`);
    }
    assert.ok('parent_node_id' in ROLLOUTS.columns);
    assert.ok('run_id' in METRICS.columns && 'step' in METRICS.columns);
    assert.deepEqual(Object.keys(ANNOTATION_INPUTS.columns), ['prompt_id', 'sample_id', 'prompt', 'completion', 'reference']);
  });
});
