/**
 * The queue watch's schedule (workflows/queue-watch.ts `checkPlan`, pure): when the run checks the
 * queues its calls wait on, so that a queue no worker polls shows in the current details within a
 * minute of the call — here: a check covering the call's queue at most 30 s after it was scheduled,
 * whatever the other queues' calls did — and at what history cost (a check per queue per 30 s).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkPlan, QUEUE_CHECK_MS, type WaitingCall } from '../../../workflows/queue-watch.js';
import { CounterRng } from '../../../activities/common/rng.js';

const S = 1000;

test('no call: no plan; one call: its queue is due 30 s after it was scheduled, and checked then', () => {
  assert.equal(checkPlan([], new Map(), 0), undefined);
  assert.deepEqual(checkPlan([{ queue: 'learner', since: 5 * S }], new Map(), 6 * S), { dueAt: 35 * S, queues: [] });
  assert.deepEqual(checkPlan([{ queue: 'learner', since: 5 * S }], new Map(), 35 * S), { dueAt: 35 * S, queues: ['learner'] });
});

test('a queue checked 10 s ago is due 30 s after that check, not at once', () => {
  const plan = checkPlan([{ queue: 'rollout', since: 0 }], new Map([['rollout', 50 * S]]), 60 * S);
  assert.deepEqual(plan, { dueAt: 80 * S, queues: [] });
});

test('the check made when one queue is due covers every queue with a call that has waited 30 s, and no younger one', () => {
  const calls: WaitingCall[] = [
    { queue: 'rollout', since: 0 },
    { queue: 'reward', since: 10 * S },
    { queue: 'learner', since: 45 * S },
  ];
  // rollout due at 30 s (its last check 0 s ago would say 30 s too); reward waited 40 s; learner 15 s
  assert.deepEqual(checkPlan(calls, new Map([['reward', 40 * S]]), 55 * S), { dueAt: 30 * S, queues: ['reward', 'rollout'] });
});

/**
 * The workflow's loop (QueueWatch.run after the patch `queue-watch-due`) over a timeline of calls,
 * with checks taking no time: sleep until the plan's dueAt, check its queues. Returns each check's
 * time and queues.
 */
function simulate(calls: readonly (WaitingCall & { end: number })[], until: number): { at: number; queues: string[] }[] {
  const tried = new Map<string, number>();
  const checks: { at: number; queues: string[] }[] = [];
  let now = 0;
  while (now < until) {
    const waiting = calls.filter((c) => c.since <= now && now < c.end);
    const plan = checkPlan(waiting, tried, now);
    // nothing waits: the loop's condition wakes at the next call's schedule
    const next = Math.min(...calls.filter((c) => c.since > now).map((c) => c.since), until);
    if (!plan) {
      now = next;
      continue;
    }
    if (plan.queues.length === 0) {
      // the sleep; a call scheduled meanwhile is due later than dueAt (it waits 30 s from now or later)
      assert.ok(plan.dueAt > now, 'the plan sleeps forward');
      now = plan.dueAt;
      continue;
    }
    checks.push({ at: now, queues: plan.queues });
    for (const q of plan.queues) tried.set(q, now);
  }
  return checks;
}

test("the old beat's worst case: a learner call scheduled 2 s after a rollout call that settles at 1 s is checked at 32 s, not 60 s", () => {
  const checks = simulate(
    [
      { queue: 'rollout', since: 0, end: 1 * S },
      { queue: 'learner', since: 2 * S, end: Infinity },
    ],
    100 * S,
  );
  assert.deepEqual(checks[0], { at: 32 * S, queues: ['learner'] });
  assert.deepEqual(
    checks.map((c) => c.at),
    [32, 62, 92].map((t) => t * S),
    'then every 30 s while the call waits',
  );
});

test('random timelines on three queues: every call waiting 30 s has its queue checked within 30 s of its schedule, and no 29 s holds more checks than queues', () => {
  const queues = ['durable-rl.rollout', 'durable-rl.reward', 'durable-rl.learner'];
  for (let seed = 0; seed < 200; seed++) {
    const rng = new CounterRng(seed, 'queue-watch');
    let at = 0;
    const draw = () => rng.uniform(at++);
    const calls: (WaitingCall & { end: number })[] = [];
    for (let i = 0; i < 12; i++) {
      const since = Math.floor(draw() * 300_000);
      const wait = draw() < 0.3 ? Infinity : Math.floor(draw() * 90_000);
      calls.push({ queue: queues[rng.int(at++, 3)]!, since, end: since + wait });
    }
    const until = 500 * S;
    const checks = simulate(calls, until);
    for (const c of calls) {
      if (c.end - c.since < QUEUE_CHECK_MS || c.since + QUEUE_CHECK_MS > until) continue;
      const covered = checks.some((k) => k.queues.includes(c.queue) && k.at >= c.since && k.at <= c.since + QUEUE_CHECK_MS);
      assert.ok(covered, `seed ${seed}: a ${c.queue} call scheduled at ${c.since} ms waits unchecked past 30 s`);
    }
    for (const k of checks) {
      const window = checks.filter((o) => o.at >= k.at && o.at < k.at + QUEUE_CHECK_MS - S);
      assert.ok(window.length <= queues.length, `seed ${seed}: ${window.length} checks within 29 s from ${k.at} ms`);
    }
  }
});
