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
 * `status-before-continue-as-new` patch, v2 has it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { Worker } from '@temporalio/worker';
import proto from '@temporalio/proto';
import { workflowsPath } from '../../workers/worker.js';

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
