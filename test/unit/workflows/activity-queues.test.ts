/**
 * The activity → queue table (workflows/activity-queues.ts) is the one source of where each
 * activity runs: it names every registered activity once, and each worker registers exactly the
 * activities of its queue. Pure: no server (the Worker options are built, not created).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NativeConnection } from '@temporalio/worker';
import { ACTIVITIES } from '../../../activities/index.js';
import { ACTIVITY_QUEUES, activityNamesOn } from '../../../workflows/activity-queues.js';
import { TASK_QUEUES, type QueueName } from '../../../workflows/task-queues.js';
import { activitiesFor, activityWorkerOptions } from '../../../workers/worker.js';

const queues = Object.keys(TASK_QUEUES) as QueueName[];
const sorted = (xs: Iterable<string>) => [...xs].sort();

test('the table names every registered activity, and nothing else', () => {
  assert.deepEqual(sorted(Object.keys(ACTIVITY_QUEUES)), sorted(Object.keys(ACTIVITIES)));
});

test("each activity is on exactly one queue: the queues' lists together hold each of the 11 names once", () => {
  const all = queues.flatMap((q) => activityNamesOn(q));
  assert.equal(all.length, 11);
  assert.deepEqual(sorted(all), sorted(Object.keys(ACTIVITIES)));
});

test('the queues are those of the workflows before the table: rollout runs rolloutShard and evaluate; reward runs the annotation job, rewardShard and computeStepAdvantages; learner runs initRun, scoreReferenceLogprobs, learnerUpdate, commitStep', () => {
  assert.deepEqual(activityNamesOn('rollout'), ['rolloutShard', 'evaluate']);
  assert.deepEqual(activityNamesOn('reward'), [
    'planAnnotation',
    'annotateShard',
    'finalizeAnnotation',
    'rewardShard',
    'computeStepAdvantages',
  ]);
  assert.deepEqual(activityNamesOn('learner'), ['initRun', 'scoreReferenceLogprobs', 'learnerUpdate', 'commitStep']);
  assert.deepEqual(activityNamesOn('control'), []);
});

test('the control worker registers no activity', () => {
  assert.deepEqual(activitiesFor('control'), {});
});

test('the worker of each activity queue registers exactly the activities the table puts on it, as the activity functions themselves', () => {
  const conn = {} as NativeConnection;
  const opts = { temporal: { address: 'localhost:7233', namespace: 'default' } as never, queues };
  for (const q of ['rollout', 'reward', 'learner'] as const) {
    const registered = activityWorkerOptions(opts, q, conn).activities as Record<string, unknown>;
    assert.deepEqual(sorted(Object.keys(registered)), sorted(activityNamesOn(q)), `${q} worker`);
    for (const [name, fn] of Object.entries(registered))
      assert.equal(fn, ACTIVITIES[name as keyof typeof ACTIVITIES], `${q} worker's ${name}`);
    assert.equal(activityWorkerOptions(opts, q, conn).taskQueue, TASK_QUEUES[q]);
  }
});
