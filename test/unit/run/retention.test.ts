import { test } from 'node:test';
import assert from 'node:assert/strict';
import { retentionPlan, type RetentionPolicy } from '../../../activities/checkpoint/retention.js';
import { ConfigError } from '../../../activities/common/config.js';
import { mainJobConfig, parseRunConfig } from '../../../activities/run/config.js';
import { evaluateAt } from '../../../workflows/run-plan.js';

const policy = (p: Partial<RetentionPolicy> = {}): RetentionPolicy => ({ keepLast: null, keepEvery: null, optimizerState: 'all', ...p });
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const sft = (steps: number) => ({ kind: 'sft', steps });
const rl = (steps: number) => ({ kind: 'rl', steps });

test('no policy (the default) keeps all 11 checkpoints of 0..10 with their optimizer state', () => {
  const r = retentionPlan({ checkpoints: range(0, 10), phases: [sft(20)], frozenBase: false, policy: policy() });
  assert.deepEqual(r.keep, range(0, 10));
  assert.deepEqual(r.drop, []);
  assert.deepEqual(r.optimizer, range(0, 10));
  assert.deepEqual(r.dropOptimizer, []);
});

test('the config defaults to no policy: keepLast null, keepEvery null, optimizerState all, applied by every step’s commit', () => {
  assert.deepEqual(parseRunConfig({}).retention, { keepLast: null, keepEvery: null, optimizerState: 'all', apply: 'every_step' });
});

test('keepEvery without keepLast is refused naming retention.keepEvery', () => {
  assert.throws(
    () => parseRunConfig({ retention: { keepEvery: 5 } }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /retention\.keepEvery/);
      return true;
    },
  );
});

test('keepLast 2, keepEvery 3 over checkpoints 0..10 of an sft run keeps 0, 3, 6, 9, 10 and drops 1, 2, 4, 5, 7, 8', () => {
  const r = retentionPlan({
    checkpoints: range(0, 10),
    phases: [sft(20)],
    frozenBase: false,
    policy: policy({ keepLast: 2, keepEvery: 3 }),
  });
  assert.deepEqual(r.keep, [0, 3, 6, 9, 10]);
  assert.deepEqual(r.drop, [1, 2, 4, 5, 7, 8]);
  assert.deepEqual(r.why.get(10), ['latest', 'last 2']);
  assert.deepEqual(r.why.get(9), ['last 2', 'every 3']);
});

test('keepLast counts committed checkpoints, not numbers: a resumed run with 4, 5, 6, 7 keeps 6 and 7 under keepLast 2', () => {
  const r = retentionPlan({ checkpoints: [7, 5, 4, 6], phases: [sft(20)], frozenBase: false, policy: policy({ keepLast: 2 }) });
  assert.deepEqual(r.keep, [6, 7]);
  assert.deepEqual(r.drop, [4, 5]);
});

test('the latest checkpoint is always kept: keepLast 1 over 0..4 keeps 4 alone', () => {
  const r = retentionPlan({ checkpoints: range(0, 4), phases: [sft(10)], frozenBase: false, policy: policy({ keepLast: 1 }) });
  assert.deepEqual(r.keep, [4]);
  assert.deepEqual(r.drop, [0, 1, 2, 3]);
});

test('a LoRA run keeps checkpoint 0 (the frozen base) under keepLast 1: keeps 0 and 6 of 0..6, 0 for "LoRA base"', () => {
  const r = retentionPlan({ checkpoints: range(0, 6), phases: [sft(10)], frozenBase: true, policy: policy({ keepLast: 1 }) });
  assert.deepEqual(r.keep, [0, 6]);
  assert.deepEqual(r.why.get(0), ['LoRA base']);
});

test('a running rl phase keeps its reference: sft 4 then rl 10, checkpoints 0..9, keepLast 2 keeps 4 (reference of phases.1), 8, 9', () => {
  const r = retentionPlan({ checkpoints: range(0, 9), phases: [sft(4), rl(10)], frozenBase: false, policy: policy({ keepLast: 2 }) });
  assert.deepEqual(r.keep, [4, 8, 9]);
  assert.deepEqual(r.why.get(4), ['reference of phases.1']);
});

test('a finished rl phase frees its reference: sft 4, rl 4, sft 4, checkpoints 0..10, keepLast 2 keeps 9 and 10 only', () => {
  const r = retentionPlan({
    checkpoints: range(0, 10),
    phases: [sft(4), rl(4), sft(4)],
    frozenBase: false,
    policy: policy({ keepLast: 2 }),
  });
  assert.deepEqual(r.keep, [9, 10]);
});

test('a kept checkpoint inside a finished rl phase keeps that phase’s reference: keepEvery 6 keeps 6, and with it 4, of sft 4, rl 4, sft 4', () => {
  const r = retentionPlan({
    checkpoints: range(0, 12),
    phases: [sft(4), rl(4), sft(4)],
    frozenBase: false,
    policy: policy({ keepLast: 1, keepEvery: 6 }),
  });
  assert.deepEqual(r.keep, [0, 4, 6, 12]);
  assert.deepEqual(r.why.get(4), ['reference of phases.1']);
});

test('checkpoint 8 at the end of an rl phase 4..8 needs no reference (it starts the next phase): keepLast 1 keeps 8 alone', () => {
  const r = retentionPlan({
    checkpoints: range(0, 8),
    phases: [sft(4), rl(4), sft(4)],
    frozenBase: false,
    policy: policy({ keepLast: 1 }),
  });
  assert.deepEqual(r.keep, [8]);
});

test('dpo and online_dpo phases keep their reference too; sft and reward_model phases have none', () => {
  for (const kind of ['dpo', 'online_dpo']) {
    const r = retentionPlan({
      checkpoints: range(0, 5),
      phases: [sft(2), { kind, steps: 6 }],
      frozenBase: false,
      policy: policy({ keepLast: 1 }),
    });
    assert.deepEqual(r.keep, [2, 5], kind);
  }
  for (const kind of ['sft', 'reward_model']) {
    const r = retentionPlan({
      checkpoints: range(0, 5),
      phases: [sft(2), { kind, steps: 6 }],
      frozenBase: false,
      policy: policy({ keepLast: 1 }),
    });
    assert.deepEqual(r.keep, [5], kind);
  }
});

test("optimizerState 'last' keeps the moments of the latest only: keepLast 3 over 0..5 keeps 3, 4, 5, moments of 5, drops those of 3 and 4", () => {
  const r = retentionPlan({
    checkpoints: range(0, 5),
    phases: [sft(10)],
    frozenBase: false,
    policy: policy({ keepLast: 3, optimizerState: 'last' }),
  });
  assert.deepEqual(r.keep, [3, 4, 5]);
  assert.deepEqual(r.optimizer, [5]);
  assert.deepEqual(r.dropOptimizer, [3, 4]);
});

test("optimizerState 'last' without keepLast keeps all 4 checkpoints of 0..3, the moments of 3 only", () => {
  const r = retentionPlan({ checkpoints: range(0, 3), phases: [sft(10)], frozenBase: false, policy: policy({ optimizerState: 'last' }) });
  assert.deepEqual(r.keep, [0, 1, 2, 3]);
  assert.deepEqual(r.dropOptimizer, [0, 1, 2]);
});

test('no committed checkpoints: nothing to keep or drop', () => {
  const r = retentionPlan({ checkpoints: [], phases: [sft(10)], frozenBase: true, policy: policy({ keepLast: 1 }) });
  assert.deepEqual([r.keep, r.drop, r.optimizer, r.dropOptimizer], [[], [], [], []]);
});

test('a 1,000-step run with keepLast 3, keepEvery 100 keeps 13 checkpoints (0, 100, ..., 1000 and 998, 999)', () => {
  const r = retentionPlan({
    checkpoints: range(0, 1000),
    phases: [sft(1000)],
    frozenBase: false,
    policy: policy({ keepLast: 3, keepEvery: 100 }),
  });
  assert.equal(r.keep.length, 13);
  assert.deepEqual(r.keep.slice(-3), [998, 999, 1000]);
  assert.equal(r.drop.length, 988);
});

test('offPolicySteps 2, keepLast 1, checkpoints 0..7 of sft 2 + rl 10: keeps 5 and 6 (steps 7..9 roll out from 5, 6, 7), 7 (latest) and 2 (the reference); drops 0, 1, 3, 4', () => {
  const r = retentionPlan({
    checkpoints: range(0, 7),
    phases: [sft(2), rl(10)],
    frozenBase: false,
    policy: policy({ keepLast: 1 }),
    offPolicySteps: 2,
  });
  assert.deepEqual(r.keep, [2, 5, 6, 7]);
  assert.deepEqual(r.drop, [0, 1, 3, 4]);
  assert.deepEqual(r.why.get(5), ['rollouts of step 7']);
});

test('offPolicySteps 2 at the start of an rl phase (latest 3 of sft 2 + rl 10) keeps no sft checkpoint: steps 3..5 roll out from 2, 2, 3', () => {
  const r = retentionPlan({
    checkpoints: range(0, 3),
    phases: [sft(2), rl(10)],
    frozenBase: false,
    policy: policy({ keepLast: 1 }),
    offPolicySteps: 2,
  });
  assert.deepEqual(r.keep, [2, 3]);
  assert.deepEqual(r.drop, [0, 1]);
});

test('the main job keeps at most 8 checkpoints over its 74 steps, always the last 3 and its rl phase’s KL reference, and ends with 0, 24, 48, 72, 73, 74, all resumable', () => {
  const config = mainJobConfig();
  assert.deepEqual(config.retention, { keepLast: 3, keepEvery: 24, optimizerState: 'all', apply: 'every_step' });
  assert.deepEqual(
    config.phases.map((p) => [p.kind, p.steps]),
    [
      ['sft', 24],
      ['rl', 50],
    ],
  );
  // the store as the commits leave it: each step commits checkpoint s + 1, then gcRun removes what the plan drops
  let stored = [0];
  let most = 0;
  for (let s = 0; s < 74; s++) {
    const v = s + 1;
    const plan = retentionPlan({
      checkpoints: [...stored, v],
      phases: config.phases,
      frozenBase: Boolean(config.model.lora),
      policy: config.retention,
      offPolicySteps: config.rollout.offPolicySteps,
    });
    stored = plan.keep;
    most = Math.max(most, stored.length);
    for (const c of [v, v - 1, v - 2].filter((c) => c >= 0)) assert.ok(stored.includes(c), `checkpoint ${c} dropped after step ${s}`);
    // the rl phase (steps 24..73) reads its reference, checkpoint 24, every step until its last
    if (s >= 24 && s < 73) assert.ok(stored.includes(24), `KL reference 24 dropped after step ${s}`);
    // an evaluation of checkpoint v runs after its commit: v is there (and stays, the latest, until the next commit)
    if (evaluateAt(config, v)) assert.ok(stored.includes(v));
    assert.deepEqual(plan.dropOptimizer, [], 'every kept checkpoint keeps its AdamW moments (resume-from --step works from each)');
  }
  assert.ok(most <= 8, `${most} checkpoints at once`);
  assert.deepEqual(stored, [0, 24, 48, 72, 73, 74]);
});
