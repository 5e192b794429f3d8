/**
 * The live display of `durable-rl train --follow` (workers/cli-follow.ts), without servers: one
 * line per change when not on a terminal, an in-place redraw on one, and which evaluations count
 * as "before RL" and "after RL".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bar, beforeAfterRl, evalText, Follower, progressBlock, progressLine } from '../../../workers/cli-follow.js';
import type { EvalSummary, RunProgress } from '../../../workflows/run-details.js';

const ev = (policyVersion: number, phase: string, greedyAccuracy: number): EvalSummary => ({
  policyVersion,
  phase,
  greedyAccuracy,
  passAtK: { k: 4, value: greedyAccuracy + 0.1 },
  uri: `file:///s/evals/${policyVersion}`,
});

function progress(over: Partial<RunProgress> = {}): RunProgress {
  return {
    runId: 'r-1',
    name: 'r',
    status: 'running',
    phase: 'rl',
    phaseIndex: 1,
    step: 6,
    totalSteps: 10,
    stage: 'rollout',
    shardsDone: 1,
    shardsTotal: 4,
    lastMetrics: { reward_mean: 0.25, loss: 0.5, kl: 0.001 },
    rewardTrend: [0.1, 0.25],
    evals: [ev(0, 'init', 0)],
    storeUri: 'file:///s',
    lastStepUri: null,
    lastCheckpointUri: null,
    executions: 1,
    model: 'llama 1x32',
    ...over,
  };
}

function sink(isTTY: boolean) {
  const chunks: string[] = [];
  return { out: { isTTY, write: (s: string) => chunks.push(s) > 0 }, text: () => chunks.join(''), chunks };
}

test('not on a terminal: one line per change, each evaluation once, no ANSI', () => {
  const s = sink(false);
  const f = new Follower(s.out);
  f.update(progress());
  f.update(progress()); // unchanged: nothing new
  f.update(progress({ shardsDone: 2 }));
  f.update(progress({ shardsDone: 2, evals: [ev(0, 'init', 0), ev(6, 'sft', 0.4)] }));
  const lines = s.text().trimEnd().split('\n');
  assert.deepEqual(lines, [
    'eval checkpoint 0 (init): greedy 0.0%, pass@4 10.0%',
    'running · phase rl · step 7/10 · rollout 1/4 shards · last step: reward 0.250 · loss 0.5000 · KL 0.0010',
    'running · phase rl · step 7/10 · rollout 2/4 shards · last step: reward 0.250 · loss 0.5000 · KL 0.0010',
    'eval checkpoint 6 (sft): greedy 40.0%, pass@4 50.0%',
  ]);
  assert.ok(!s.text().includes('\u001b'));
});

test('not on a terminal: evaluations no poll caught (a run that ends between polls) are written at the end, in checkpoint order, each once', () => {
  const s = sink(false);
  const f = new Follower(s.out);
  f.update(progress({ stage: 'init', evals: [] }));
  f.update(progress({ evals: [ev(0, 'init', 0)] }));
  f.done([ev(4, 'rl', 0.5), ev(0, 'init', 0), ev(2, 'sft', 0.25)]);
  const evalLines = s
    .text()
    .split('\n')
    .filter((l) => l.startsWith('eval '));
  assert.deepEqual(evalLines, [
    'eval checkpoint 0 (init): greedy 0.0%, pass@4 10.0%',
    'eval checkpoint 2 (sft): greedy 25.0%, pass@4 35.0%',
    'eval checkpoint 4 (rl): greedy 50.0%, pass@4 60.0%',
  ]);
});

test('on a terminal: the block is redrawn in place (cursor up by the lines drawn, clear, redraw)', () => {
  const s = sink(true);
  const f = new Follower(s.out);
  f.update(progress());
  const first = progressBlock(progress());
  assert.equal(s.chunks[0], `${first.join('\n')}\n`);
  f.update(progress({ shardsDone: 3 }));
  assert.ok(s.chunks[1]!.startsWith(`\u001b[${first.length}F\u001b[J`), JSON.stringify(s.chunks[1]));
  assert.match(s.chunks[1]!, /rollout \[█+░+\] 3\/4 shards/);
});

test('progress text: the step in training is 1-based, steps done otherwise; evals show checkpoint and phase', () => {
  assert.match(progressLine(progress({ stage: 'learner', step: 0 })), /step 1\/10 · learner/);
  assert.match(progressLine(progress({ stage: 'eval', step: 4, shardsTotal: 0 })), /step 4\/10 · eval of checkpoint 4/);
  assert.match(progressLine(progress({ stage: 'done', status: 'completed', phase: 'done', step: 10 })), /^completed · step 10\/10 · done/);
  assert.equal(bar(1, 4, 8), '[██░░░░░░]');
  assert.equal(bar(0, 0, 4), '[░░░░]');
});

test('before RL is the last evaluation of weights no RL step trained; after RL the last one, when RL made it', () => {
  const r = beforeAfterRl([ev(10, 'rl', 0.6), ev(0, 'init', 0), ev(6, 'sft', 0.4), ev(8, 'rl', 0.5)]);
  assert.equal(r.before?.policyVersion, 6);
  assert.equal(r.after?.policyVersion, 10);
  const noSft = beforeAfterRl([ev(0, 'init', 0.1), ev(4, 'rl', 0.3)]);
  assert.equal(noSft.before?.policyVersion, 0);
  assert.equal(noSft.after?.policyVersion, 4);
  const sftOnly = beforeAfterRl([ev(0, 'init', 0.1), ev(4, 'sft', 0.3)]);
  assert.equal(sftOnly.after, null);
});

test('an evaluation without accuracy (a reward that judges no correctness) reads as its mean reward: "checkpoint 3 (rl): mean reward 0.375"', () => {
  assert.equal(
    evalText({ ...ev(3, 'rl', 0), greedyAccuracy: null, passAtK: null, meanReward: 0.375 }),
    'checkpoint 3 (rl): mean reward 0.375',
  );
  assert.equal(evalText(ev(3, 'rl', 0.5)), 'checkpoint 3 (rl): greedy 50.0%, pass@4 60.0%');
});
