/**
 * Where dynamic-sampling refill rounds take their prompts (workflows/run-plan.ts `planRefill`): a
 * region of the train stream past every phase's planned items, `refillRoundPrompts` items per
 * (phase, step, round), so a step's refill prompts are a function of the config, the step, the
 * round and the count, and no two steps or rounds ever share a prompt.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRunConfig, refillRoundPrompts as configRoundPrompts } from '../../../activities/run/config.js';
import { planRefill, planStep, refillRoundPrompts, totalSteps } from '../../../workflows/run-plan.js';

const config = parseRunConfig({
  phases: [
    { kind: 'sft', steps: 2, batchSize: 10 },
    {
      kind: 'rl',
      steps: 3,
      promptsPerStep: 4,
      groupSize: 2,
      dynamicSampling: { mode: 'refill', maxRounds: 2, oversample: 1.5, minKeepRate: 0.5 },
    },
    { kind: 'rl', steps: 2, promptsPerStep: 5, groupSize: 2, dynamicSampling: { mode: 'refill', maxRounds: 1 } },
  ],
  rollout: { promptsPerShard: 3 },
});

test('a refill round reserves ceil(oversample · promptsPerStep / minKeepRate) prompts: 12 for 1.5·4/0.5, 60 for 1.2·5/0.1 (the config and the plan agree)', () => {
  assert.equal(refillRoundPrompts(config.phases[1]!), 12);
  assert.equal(refillRoundPrompts(config.phases[2]!), 60);
  assert.equal(refillRoundPrompts(config.phases[0]!), 0);
  for (const p of config.phases) if (p.kind === 'rl') assert.equal(configRoundPrompts(p), refillRoundPrompts(p));
});

test("refill regions start past the 20 + 12 + 10 planned items: phase 1 step k round r at 42 + (2k + r - 1)·12, phase 2 after phase 1's 72", () => {
  const planned = 2 * 10 + 3 * 4 + 2 * 5;
  assert.equal(planRefill(config, planStep(config, 2), 1, 5, 2).promptOffset, planned);
  assert.equal(planRefill(config, planStep(config, 2), 2, 5, 2).promptOffset, planned + 12);
  assert.equal(planRefill(config, planStep(config, 4), 2, 5, 2).promptOffset, planned + (2 * 2 + 1) * 12);
  assert.equal(planRefill(config, planStep(config, 5), 1, 5, 2).promptOffset, planned + 3 * 2 * 12);
  assert.equal(planRefill(config, planStep(config, 6), 1, 5, 2).promptOffset, planned + 3 * 2 * 12 + 60);
});

test('no prompt is drawn twice: every planned and every possible refill item of the run is distinct', () => {
  const seen = new Set<number>();
  const take = (from: number, n: number, what: string) => {
    for (let i = from; i < from + n; i++) {
      assert.ok(!seen.has(i), `${what}: item ${i} drawn twice`);
      seen.add(i);
    }
  };
  for (let s = 0; s < totalSteps(config); s++) {
    const plan = planStep(config, s);
    take(plan.promptOffset, plan.count, `step ${s}`);
    if (plan.phase.kind !== 'rl') continue;
    for (let r = 1; r <= plan.phase.dynamicSampling.maxRounds; r++) {
      const refill = planRefill(config, plan, r, 1e9, 0);
      take(refill.promptOffset, refill.count, `step ${s} round ${r}`);
    }
  }
});

test('a round of 7 prompts after 2 shards is shards 2, 3, 4 of 3 + 3 + 1 prompts; a larger request is clamped to the reservation', () => {
  const plan = planStep(config, 3);
  const r = planRefill(config, plan, 1, 7, 2);
  assert.deepEqual(
    r.shards.map((s) => [s.shard, s.promptCount, s.promptOffset - r.promptOffset]),
    [
      [2, 3, 0],
      [3, 3, 3],
      [4, 1, 6],
    ],
  );
  assert.equal(r.count, 7);
  assert.equal(planRefill(config, plan, 1, 100, 2).count, 12);
  assert.deepEqual(planRefill(config, plan, 1, 7, 2), r, 'a pure function of (config, step, round, count, first shard)');
});

test('planRefill refuses a round outside 1..maxRounds and a phase without refill', () => {
  assert.throws(() => planRefill(config, planStep(config, 2), 3, 1, 0), /refill round 3 is outside 1\.\.2/);
  assert.throws(() => planRefill(config, planStep(config, 2), 0, 1, 0), /refill round 0/);
  assert.throws(() => planRefill(config, planStep(config, 0), 1, 1, 0), /phase 0 has no dynamicSampling refill/);
});
