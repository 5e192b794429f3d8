/** loadRunReport against real commits in a temp file:// store. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadRunReport, ReportError } from '../../../activities/report/load.js';
import { contentKey, METRICS_NAME, stepPrefix } from '../../../activities/store/keys.js';
import { readManifest } from '../../../activities/store/manifest.js';
import { commitEval, commitRlStep, commitSftStep, samples, tempStore, writeRunJson } from './helpers.js';

const evalOf = (policy_version: number, step: number, phase: 'init' | 'sft' | 'rl', acc: number, extra: Record<string, unknown> = {}) => ({
  policy_version,
  step,
  phase,
  greedy_accuracy: acc,
  pass_at_k: { k: 4, value: Math.min(1, acc + 0.2) },
  mean_reward: acc,
  num_prompts: 3,
  samples: [{ prompt_id: `e${step}`, prompt: `eval prompt ${step}`, completion: `eval completion ${step}`, reward: 1, reference: '7' }],
  ...extra,
});

describe('loadRunReport', () => {
  it("returns every committed step in step order with its metrics, the evaluations, and the last RL step's samples joined with rewards and advantages", async () => {
    const { store, cleanup } = await tempStore();
    try {
      // Committed out of order, SFT then RL, rollouts in 3 shards of 2 rows.
      await commitRlStep(store, 'r1', 3, samples(3, 6));
      await commitSftStep(store, 'r1', 0);
      await commitRlStep(store, 'r1', 2, samples(2, 4));
      await commitSftStep(store, 'r1', 1);
      await commitEval(store, 'r1', evalOf(0, 0, 'init', 0.1));
      await commitEval(store, 'r1', evalOf(2, 2, 'sft', 0.3));
      await commitEval(store, 'r1', evalOf(4, 4, 'rl', 0.6));
      await writeRunJson(store, 'r1', { run_id: 'r1', name: 'my run', resumed_from: null, config: { lr: 1e-5 } });

      const d = await loadRunReport(store, 'r1', { maxSamples: 5 });
      assert.deepEqual(
        d.steps.map((s) => [s.step, s.phase]),
        [
          [0, 'sft'],
          [1, 'sft'],
          [2, 'rl'],
          [3, 'rl'],
        ],
      );
      assert.deepEqual(
        d.steps.map((s) => s.completion_length_mean),
        [10, 11, 12, 13],
      );
      assert.deepEqual(
        d.steps.map((s) => s.reward_mean),
        [null, null, 0.2, 0.30000000000000004],
      );
      assert.deepEqual(
        d.steps.map((s) => s.kl),
        [null, null, 0.02, 0.03],
      );
      assert.equal(d.name, 'my run');
      assert.deepEqual(d.config, { lr: 1e-5 });
      assert.equal(d.store_uri, store.root);
      assert.deepEqual(d.warnings, []);

      assert.deepEqual(
        d.evals.map((e) => [e.policy_version, e.step, e.greedy_accuracy]),
        [
          [0, 0, 0.1],
          [2, 2, 0.3],
          [4, 4, 0.6],
        ],
      );
      assert.deepEqual(d.evals[2]!.pass_at_k, { k: 4, value: 0.8 });
      assert.equal(d.eval_samples!.policy_version, 4);
      assert.deepEqual(d.eval_samples!.rows, [
        { prompt_id: 'e4', prompt: 'eval prompt 4', completion: 'eval completion 4', reward: 1, reference: '7' },
      ]);

      const s = d.samples!;
      assert.equal(s.step, 3);
      assert.equal(s.total, 6, 'all three rollout shards read');
      assert.equal(s.rows.length, 5, 'maxSamples caps the table');
      assert.deepEqual(
        s.rows.map((r) => [r.prompt_id, r.sample_id, r.reward, r.advantage, r.finish_reason]),
        [
          ['p0', 0, 0, -1, 'stop'],
          ['p0', 1, 1, 1, 'stop'],
          ['p1', 0, 0, -1, 'stop'],
          ['p1', 1, 1, 1, 'stop'],
          ['p2', 0, 0, -1, 'stop'],
        ],
      );
      assert.equal(s.rows[4]!.completion, 'It is 7.');
      assert.equal(s.rows[4]!.prompt, 'What is 3+4?');
      assert.equal(s.rows[4]!.completion_tokens, 'It is 7.'.length);
      assert.equal(s.rows[0]!.advantage_kind, 'scalar');
      assert.equal(s.rows[0]!.reward_error, null);
    } finally {
      await cleanup();
    }
  });

  it("keeps a failed reward's error and a length-truncated finish reason in the sample table", async () => {
    const { store, cleanup } = await tempStore();
    try {
      await commitRlStep(store, 'r2', 0, [
        {
          prompt_id: 'p',
          sample_id: 0,
          prompt: 'q',
          completion: 'a',
          reward: null,
          error: 'timeout after 30 s',
          advantage: 0,
          finish_reason: 'length',
        },
      ]);
      const d = await loadRunReport(store, 'r2');
      assert.deepEqual(
        d.samples!.rows.map((r) => [r.reward, r.reward_error, r.finish_reason]),
        [[null, 'timeout after 30 s', 'length']],
      );
      assert.equal(d.evals.length, 0);
      assert.equal(d.eval_samples, null);
      assert.equal(d.name, null, 'no run.json: no name');
    } finally {
      await cleanup();
    }
  });

  it("follows resumed_from (recursively): source steps before the resume point come first, the run's own steps after", async () => {
    const { store, cleanup } = await tempStore();
    try {
      // a: steps 0..4 (0-1 SFT). b resumed from a at 3 (a's 3 and 4 are superseded), steps 3..5. c resumed from b at 5, step 5..6.
      for (const s of [0, 1]) await commitSftStep(store, 'a', s);
      for (const s of [2, 3, 4]) await commitRlStep(store, 'a', s, samples(s, 2));
      for (const s of [3, 4, 5]) await commitRlStep(store, 'b', s, samples(s, 2));
      for (const s of [5, 6]) await commitRlStep(store, 'c', s, samples(s, 2));
      await commitEval(store, 'a', evalOf(3, 3, 'rl', 0.4));
      await commitEval(store, 'a', evalOf(4, 4, 'rl', 0.45)); // after b's resume point: not b's history
      await commitEval(store, 'c', evalOf(7, 7, 'rl', 0.7));
      await writeRunJson(store, 'a', { run_id: 'a', name: 'first', resumed_from: null, config: {} });
      await writeRunJson(store, 'b', { run_id: 'b', name: 'second', resumed_from: { run_id: 'a', step: 3 }, config: {} });
      await writeRunJson(store, 'c', { run_id: 'c', name: 'third', resumed_from: { run_id: 'b', step: 5 }, config: {} });

      const d = await loadRunReport(store, 'c');
      assert.deepEqual(
        d.steps.map((s) => `${s.run_id}:${s.step}`),
        ['a:0', 'a:1', 'a:2', 'b:3', 'b:4', 'c:5', 'c:6'],
      );
      assert.deepEqual(
        d.lineage.map((l) => [l.run_id, l.steps]),
        [
          ['c', 2],
          ['b', 2],
          ['a', 3],
        ],
      );
      assert.deepEqual(
        d.evals.map((e) => `${e.run_id}:${e.step}`),
        ['a:3', 'c:7'],
      );
      assert.equal(d.name, 'third');
      assert.equal(d.samples!.run_id, 'c');
      assert.equal(d.samples!.step, 6);

      const own = await loadRunReport(store, 'c', { followResumedFrom: false });
      assert.deepEqual(
        own.steps.map((s) => s.step),
        [5, 6],
      );
    } finally {
      await cleanup();
    }
  });

  it('stops at a resume cycle and says so', async () => {
    const { store, cleanup } = await tempStore();
    try {
      await commitSftStep(store, 'x', 0);
      await commitSftStep(store, 'y', 1);
      await writeRunJson(store, 'x', { run_id: 'x', name: 'x', resumed_from: { run_id: 'y', step: 1 }, config: {} });
      await writeRunJson(store, 'y', { run_id: 'y', name: 'y', resumed_from: { run_id: 'x', step: 1 }, config: {} });
      const d = await loadRunReport(store, 'x');
      assert.deepEqual(
        d.steps.map((s) => `${s.run_id}:${s.step}`),
        ['x:0'],
      );
      assert.match(d.warnings.join('\n'), /cycle/);
    } finally {
      await cleanup();
    }
  });

  it('a run without a committed step is an error naming the run and the store', async () => {
    const { store, cleanup } = await tempStore();
    try {
      await assert.rejects(loadRunReport(store, 'nope'), (err: Error) => {
        assert.ok(err instanceof ReportError);
        assert.match(err.message, /run "nope" has no committed step/);
        assert.ok(err.message.includes(store.root), err.message);
        assert.match(err.message, /check the run id/);
        return true;
      });
      // Started but nothing committed yet (an uncommitted artifact does not count).
      await writeRunJson(store, 'started', { run_id: 'started', name: 's', resumed_from: null, config: {} });
      await store.put(`${stepPrefix('started', 0)}/${contentKey(METRICS_NAME, 'abc')}`, new Uint8Array([1]));
      await assert.rejects(loadRunReport(store, 'started'), /run "started" has no committed step .*has not committed a step yet/);
    } finally {
      await cleanup();
    }
  });

  it('leaves out a corrupted step and a malformed evaluation, naming them in warnings', async () => {
    const { store, cleanup } = await tempStore();
    try {
      await commitSftStep(store, 'r', 0);
      await commitSftStep(store, 'r', 1);
      await commitEval(store, 'r', { ...evalOf(1, 1, 'sft', 0.5), greedy_accuracy: 7 });
      const m = (await readManifest(store, stepPrefix('r', 1)))!;
      const key = `${stepPrefix('r', 1)}/${m.artifacts[0]!.key}`;
      const bytes = await store.get(key);
      bytes[bytes.length - 1] ^= 0xff;
      await store.put(key, bytes);

      const d = await loadRunReport(store, 'r');
      assert.deepEqual(
        d.steps.map((s) => s.step),
        [0],
      );
      assert.equal(d.evals.length, 0);
      assert.equal(d.warnings.length, 2);
      assert.match(d.warnings.join('\n'), /step 1 of run r left out: .*sha256/);
      assert.match(d.warnings.join('\n'), /evaluation left out: .*eval\.json: greedy_accuracy must be null or a number in 0\.\.1, got 7/);
    } finally {
      await cleanup();
    }
  });

  it('reads an evaluation without accuracy (greedy_accuracy null, pass_at_k null: a reward that judges no correctness) with its mean reward', async () => {
    const { store, cleanup } = await tempStore();
    try {
      await commitSftStep(store, 'r', 0);
      await commitEval(store, 'r', evalOf(1, 1, 'sft', 0, { greedy_accuracy: null, pass_at_k: null, mean_reward: 0.375 }));
      const d = await loadRunReport(store, 'r');
      assert.deepEqual(d.warnings, []);
      assert.deepEqual(
        d.evals.map((e) => [e.greedy_accuracy, e.pass_at_k, e.mean_reward]),
        [[null, null, 0.375]],
      );
    } finally {
      await cleanup();
    }
  });

  it('rejects bad options by name', async () => {
    const { store, cleanup } = await tempStore();
    try {
      await assert.rejects(loadRunReport(store, 'r', { maxSamples: -1 }), /report option maxSamples must be an integer >= 0, got -1/);
      await assert.rejects(loadRunReport(store, 'r', { concurrency: 0 }), /report option concurrency must be an integer >= 1/);
      await assert.rejects(loadRunReport(store, 'a/b'), /run id must not contain "\/"/);
    } finally {
      await cleanup();
    }
  });
});
