/**
 * Replay: histories recorded from real runs (test/fixtures/histories/*.json) are replayed against
 * the current workflow code. A change that makes the code non-deterministic for runs already in
 * flight fails here; such a change must branch on `patched()` (@temporalio/workflow) so that
 * histories recorded before it still replay with the old commands. After an intended, patched
 * change, record a history of the new code with `DURABLE_RL_RECORD_FIXTURES=1 npm test -- annotate`
 * (it writes annotate-rewards.json) and keep it beside the older ones under a versioned name:
 * v1 predates the `annotate-status-on-failure` / `annotate-rate-per-job` patches, v2 has them.
 * training-run-v*-exec1 / -exec3 are the first and the last execution of one training run that
 * continued as new twice (recorded by `DURABLE_RL_RECORD_FIXTURES=1 npm test -- training`, which
 * writes training-run-exec{1,3}.json; rename them to the next version): the first ends in
 * continue-as-new, the last starts from the carried state. v1 predates the
 * `status-before-continue-as-new` patch, v2 has it. training-run-v3-controls (pause / resume /
 * stop as Updates, rl steps of 4 shards, an evaluation every 2 steps) and training-run-v3-blocked
 * (a run blocked on a failing reward, retried, then stopped: the `blocked-not-failed` patch) are
 * and training-run-v3-resume-from (a run started by resume-from another run's checkpoint) are
 * recorded by `DURABLE_RL_RECORD_FIXTURES=1 npm test -- training/controls`. training-run-off-policy
 * (the middle execution of a `rollout.offPolicySteps: 1` run: the `off-policy-steps` patch, a step
 * rolled out ahead carried in and the next carried out) is recorded by
 * `DURABLE_RL_RECORD_FIXTURES=1 npm test -- training/off-policy`. training-run-v4-queue-watch (the
 * default path of today's trainingRun: the `queue-watch` and `queue-watch-due` patches, the
 * `unpolledQueues` checks on their timers with one finding the learner queue unpolled, pause and
 * resume Updates, 3 shards a step, evaluations) and training-run-v4-queued-not-blocked (shard calls
 * timed out waiting behind a busy rollout worker, scheduled again: the `queued-not-blocked` patch)
 * are recorded by `DURABLE_RL_RECORD_FIXTURES=1 npm test -- training/no-worker training/queued-not-blocked`
 * (on servers of their own: DURABLE_RL_STATE_DIR). training-run-v3-queue-watch-beat is a run started
 * by the code before the `queue-watch-due` patch (commit a35c29d), which runs in flight at the
 * upgrade replay: the `queue-watch` patch alone, so today's code checks every queue on one 30 s beat
 * (queue-watch.ts `runOnOneBeat`). It was recorded once, by a one-off test at that commit shaped
 * like no-worker.test.ts: no rollout worker until the run showed the rollout queue unpolled (60 s
 * in), sft ×1 → rl ×1; the step-0 evaluate was scheduled just after the beat began, so the first
 * beat found no call that had waited 30 s and checked nothing, the second found the rollout queue
 * unpolled. The per-queue due checks would have checked at the first beat: it fails replay there.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { Worker } from '@temporalio/worker';
import proto from '@temporalio/proto';
import { workflowsPath } from '../../workers/worker.js';
import { activityCalls, markerTexts } from '../support/history.js';

// Fixtures are a History message as JSON (what `JSON.stringify(await handle.fetchHistory())` writes).
const historyFromJSON = (json: unknown) => proto.temporal.api.history.v1.History.fromObject(json as Record<string, unknown>);

const dir = new URL('../fixtures/histories/', import.meta.url);
const fixtures = readdirSync(dir)
  .filter((f) => f.endsWith('.json'))
  .sort();

test('there are recorded histories to replay', () => {
  assert.ok(fixtures.length >= 1, `no fixtures in ${dir.pathname}`);
});

for (const file of fixtures) {
  test(`replays ${file} against the current workflow code`, async () => {
    const history = historyFromJSON(JSON.parse(readFileSync(new URL(file, dir), 'utf8')));
    const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
    assert.ok(started, `${file} does not start with WorkflowExecutionStarted`);
    await Worker.runReplayHistory({ workflowsPath }, history, file.replace(/\.json$/, ''));
  });
}

test('the training-run fixtures cover a continue-as-new and a run resumed from carried state', () => {
  const load = (f: string) => JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as { events: Record<string, unknown>[] };
  for (const v of ['v1', 'v2']) {
    const first = load(`training-run-${v}-exec1.json`);
    assert.ok(first.events.at(-1)!.workflowExecutionContinuedAsNewEventAttributes, `${v} exec1 ends in continue-as-new`);
    const last = load(`training-run-${v}-exec3.json`);
    assert.ok(last.events[0]!.workflowExecutionStartedEventAttributes, `${v} exec3 starts`);
    assert.ok(last.events.at(-1)!.workflowExecutionCompletedEventAttributes, `${v} exec3 completes`);
  }
});

test('a history that the current code cannot produce is reported as non-deterministic', async () => {
  const file = fixtures.find((f) => f.startsWith('annotate-rewards'));
  assert.ok(file, 'the annotate-rewards fixture is missing');
  const json = JSON.parse(readFileSync(new URL(file, dir), 'utf8'));
  // Tamper with the recorded history: the first activity it scheduled now has another name.
  const scheduled = json.events.find((e: { activityTaskScheduledEventAttributes?: unknown }) => e.activityTaskScheduledEventAttributes);
  scheduled.activityTaskScheduledEventAttributes.activityType.name = 'somethingElse';
  await assert.rejects(
    Worker.runReplayHistory({ workflowsPath }, historyFromJSON(json), 'tampered'),
    /[Nn]ondeterminism|DeterminismViolation/,
  );
});

/** The events of a fixture, as JSON. */
type Event = Record<string, Record<string, unknown> | undefined>;
const events = (f: string) => (JSON.parse(readFileSync(new URL(f, dir), 'utf8')) as { events: Event[] }).events;
const updates = (evs: Event[]) =>
  evs.flatMap((e) => {
    const a = e.workflowExecutionUpdateAcceptedEventAttributes as { acceptedRequest?: { input?: { name?: string } } } | undefined;
    return a?.acceptedRequest?.input?.name ? [a.acceptedRequest.input.name] : [];
  });
const scheduled = (evs: Event[], type: string) =>
  evs.filter(
    (e) => (e.activityTaskScheduledEventAttributes as { activityType?: { name?: string } } | undefined)?.activityType?.name === type,
  );
const patches = (evs: Event[]) =>
  evs.flatMap((e) => {
    const details = (e.markerRecordedEventAttributes as { details?: Record<string, { payloads?: { data?: string }[] }> } | undefined)
      ?.details;
    return Object.values(details ?? {}).flatMap((p) => (p.payloads ?? []).map((x) => Buffer.from(x.data ?? '', 'base64').toString('utf8')));
  });

test('training-run-v3-controls holds pause, resume and stop Updates, rl steps of 4 rollout shards and evaluations every 2 steps', () => {
  const evs = events('training-run-v3-controls.json');
  assert.deepEqual(updates(evs), ['pause', 'resume', 'stop']);
  const summaries = scheduled(evs, 'rolloutShard').map((e) =>
    String((e.userMetadata as { summary?: { data?: string } } | undefined)?.summary?.data ?? ''),
  );
  assert.ok(
    summaries.some((s) => Buffer.from(s, 'base64').toString('utf8').includes('shard 4/4')),
    'a fourth shard of four',
  );
  assert.ok(scheduled(evs, 'evaluate').length >= 3, 'the initial, end-of-sft and every-2-steps evaluations');
  assert.ok(evs.at(-1)!.workflowExecutionCompletedEventAttributes, 'the run ends (stopped)');
});

test('training-run-v3-blocked holds the blocked-not-failed patch, a retry Update and a stop Update, and completes (stopped), never failed', () => {
  const evs = events('training-run-v3-blocked.json');
  assert.ok(patches(evs).some((p) => p.includes('blocked-not-failed')));
  assert.deepEqual(updates(evs), ['retry', 'stop']);
  assert.ok(
    evs.some((e) => e.activityTaskFailedEventAttributes),
    'reward calls that failed',
  );
  assert.ok(evs.at(-1)!.workflowExecutionCompletedEventAttributes);
  assert.ok(!evs.some((e) => e.workflowExecutionFailedEventAttributes));
});

test("training-run-v3-resume-from starts from another run's checkpoint (initRun with resumeFrom) and completes", () => {
  const evs = events('training-run-v3-resume-from.json');
  const started = evs[0]!.workflowExecutionStartedEventAttributes as { input?: { payloads?: { data?: string }[] } };
  const input = JSON.parse(Buffer.from(started.input!.payloads![0]!.data!, 'base64').toString('utf8')) as {
    resumeFrom: { checkpoint: number } | null;
  };
  assert.ok(input.resumeFrom && input.resumeFrom.checkpoint > 0, 'a resume-from run');
  assert.equal(scheduled(evs, 'initRun').length, 1);
  assert.ok(evs.at(-1)!.workflowExecutionCompletedEventAttributes);
});

test('training-run-off-policy (rollout.offPolicySteps 1) holds the off-policy-steps patch, starts with a step rolled out ahead in its carry (never rolled out again) and continues as new with the next one', () => {
  const evs = events('training-run-off-policy.json');
  assert.ok(patches(evs).some((p) => p.includes('off-policy-steps')));
  const payload = (e: Event, key: string) => {
    const a = e[key] as { input?: { payloads?: { data?: string }[] } };
    return JSON.parse(Buffer.from(a.input!.payloads![0]!.data!, 'base64').toString('utf8')) as {
      carry?: { nextStep: number; ahead?: { step: number }[] };
    };
  };
  const carried = payload(evs[0]!, 'workflowExecutionStartedEventAttributes').carry!;
  assert.deepEqual(
    carried.ahead?.map((b) => b.step),
    [carried.nextStep],
    'starts with its first step rolled out',
  );
  const next = payload(evs.at(-1)!, 'workflowExecutionContinuedAsNewEventAttributes').carry!;
  assert.deepEqual(
    next.ahead?.map((b) => b.step),
    [next.nextStep],
    'hands the next step over rolled out',
  );
  const steps = scheduled(evs, 'rolloutShard').map(
    (e) =>
      (
        JSON.parse(
          Buffer.from(
            (e.activityTaskScheduledEventAttributes as { input: { payloads: { data: string }[] } }).input.payloads[0]!.data,
            'base64',
          ).toString('utf8'),
        ) as { step: number }
      ).step,
  );
  // its steps are 2 and 3: it rolls out 3 (beside 2's learner) and 4 (beside 3's), never 2 again
  assert.deepEqual(
    [...new Set(steps)],
    [carried.nextStep + 1, next.nextStep],
    'rolls out the steps after its first, never the carried one',
  );
});

/** A fixture as the SDK's History message (what the replayer takes), for the helpers of support/history.ts. */
const protoEvents = (f: string) => historyFromJSON(JSON.parse(readFileSync(new URL(f, dir), 'utf8'))).events ?? [];

test("training-run-v4-queue-watch holds today's default path: the queue-watch patches, unpolledQueues checks on their timers (one finding the learner queue unpolled), pause and resume Updates, 3 shards a step, evaluations, and completes", () => {
  const evs = protoEvents('training-run-v4-queue-watch.json');
  const markers = markerTexts(evs);
  for (const patch of ['queue-watch', 'queue-watch-due'])
    assert.ok(
      markers.some((m) => m.includes(`"id":"${patch}"`)),
      `the ${patch} patch`,
    );
  const checks = markers.filter((m) => m.includes('"activity_type":"unpolledQueues"'));
  assert.ok(checks.length >= 1, 'unpolledQueues local activities');
  assert.ok(
    markers.some((m) => m.startsWith('[{"taskQueue":"durable-rl.learner"')),
    'a check that found the learner queue unpolled (the details\' "### No worker" line)',
  );
  assert.ok(evs.filter((e) => e.timerFiredEventAttributes).length >= checks.length, 'a timer before each check');
  assert.deepEqual(updates(events('training-run-v4-queue-watch.json')), ['pause', 'resume']);
  const calls = activityCalls(evs);
  assert.ok(
    calls.some((c) => c.type === 'rolloutShard' && c.summary.includes('shard 3/3')),
    'a third shard of three',
  );
  assert.ok(calls.filter((c) => c.type === 'evaluate').length >= 2, 'evaluations');
  assert.ok(evs.at(-1)!.workflowExecutionCompletedEventAttributes, 'the run completes');
});

test('training-run-v4-queued-not-blocked holds the queued-not-blocked patch: shard calls that timed out waiting in their queue, scheduled again, every shard completed once, and the run completes', () => {
  const evs = protoEvents('training-run-v4-queued-not-blocked.json');
  const markers = markerTexts(evs);
  for (const patch of ['queue-watch', 'queue-watch-due', 'queued-not-blocked'])
    assert.ok(
      markers.some((m) => m.includes(`"id":"${patch}"`)),
      `the ${patch} patch`,
    );
  const shards = activityCalls(evs).filter((c) => c.type === 'rolloutShard');
  assert.ok(
    shards.some((c) => c.outcome === 'timed-out'),
    'a shard call that timed out waiting',
  );
  const completed = shards.filter((c) => c.outcome === 'completed').map((c) => c.summary);
  assert.equal(new Set(completed).size, completed.length, 'each shard completed once');
  assert.ok(completed.length >= 4, 'four shards');
  assert.ok(evs.at(-1)!.workflowExecutionCompletedEventAttributes, 'the run completes');
});

test('training-run-v3-queue-watch-beat (started before queue-watch-due) holds the old one-beat path: the queue-watch patch without queue-watch-due, a beat that checked nothing, then a check finding the rollout queue unpolled, and completes', () => {
  const evs = protoEvents('training-run-v3-queue-watch-beat.json');
  const markers = markerTexts(evs);
  assert.ok(
    markers.some((m) => m.includes('"id":"queue-watch"')),
    'the queue-watch patch',
  );
  assert.ok(!markers.some((m) => m.includes('"id":"queue-watch-due"')), "no queue-watch-due patch: today's code takes runOnOneBeat");
  const checks = markers.filter((m) => m.includes('"activity_type":"unpolledQueues"'));
  assert.ok(checks.length >= 1, 'unpolledQueues local activities');
  assert.ok(
    markers.some((m) => m.startsWith('[{"taskQueue":"durable-rl.rollout"')),
    'a check that found the rollout queue unpolled',
  );
  assert.ok(evs.filter((e) => e.timerFiredEventAttributes).length > checks.length, 'a timer before each check, and beats without one');
  // What sets the one-beat path apart: a beat that checked nothing (its timer fired and was started
  // again with no marker between) while a call had waited 29-30 s, the step-0 evaluate scheduled just
  // after the beat began. The due checks (1 s slack) check that call then: that history fails their replay.
  const ms = (e: (typeof evs)[number]) => Number(e.eventTime?.seconds ?? 0) * 1000 + Math.floor((e.eventTime?.nanos ?? 0) / 1e6);
  const calls = activityCalls(evs);
  const beatsWithoutCheck = evs.filter((e, i) => {
    if (!e.timerFiredEventAttributes) return false;
    const next = evs.slice(i + 1).find((n) => n.timerStartedEventAttributes || n.markerRecordedEventAttributes);
    return !!next?.timerStartedEventAttributes;
  });
  assert.ok(
    beatsWithoutCheck.some((b) =>
      calls.some((c) => ms(b) - c.scheduledAt >= 29_000 && ms(b) - c.scheduledAt < 30_000 && (c.closedAt ?? Infinity) > ms(b)),
    ),
    'a beat that checked nothing while a call had waited 29-30 s',
  );
  assert.ok(evs.at(-1)!.workflowExecutionCompletedEventAttributes, 'the run completes');
});
