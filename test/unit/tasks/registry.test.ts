import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeTasks, getTask, registerTaskRewards, taskNames, taskRewardDefinitions } from '../../../activities/tasks/tasks.js';
import { ConfigError } from '../../../activities/common/config.js';
import { logger } from '../../../activities/common/log.js';
import { RewardRegistry } from '../../../activities/reward/registry.js';
import type { RewardResult } from '../../../activities/reward/types.js';

const ctx = { step: 0, signal: new AbortController().signal, log: logger('test') };

test('tasks by name, with their descriptions', () => {
  assert.deepEqual(taskNames(), ['addition', 'countdown']);
  assert.deepEqual(
    describeTasks().map((d) => d.name),
    ['addition', 'countdown'],
  );
  assert.ok(describeTasks().every((d) => d.description.length > 10 && d.source));
  assert.equal(getTask('countdown').name, 'countdown');
  assert.equal((getTask('addition', { maxDigits: 5 }).options as { maxDigits: number }).maxDigits, 5);
});

test('an unknown task name is a ConfigError listing the known names', () => {
  assert.throws(
    () => getTask('multiplication'),
    (e: unknown) => e instanceof ConfigError && /name: unknown task "multiplication"; known tasks: addition, countdown/.test(e.message),
  );
  assert.throws(() => getTask(7 as unknown as string), /a task name is a string/);
  assert.throws(
    () => getTask('addition', 'big'),
    (e: unknown) => e instanceof ConfigError && /options of task addition/.test(e.message),
  );
});

test('defaults fill in; unknown options are rejected by name', () => {
  const t = getTask('countdown', undefined);
  assert.deepEqual(
    { ...(t.options as object) },
    {
      numberUse: 'exactly_once',
      intermediates: 'rational',
      operators: ['+', '-', '*', '/'],
      minNumbers: 3,
      maxNumbers: 4,
      minNumber: 1,
      maxNumber: 99,
      minTarget: 1,
      maxTarget: 100,
      format: 'compact',
      evalFraction: 0.1,
      formatReward: 0.1,
      sftSolution: 'shortest',
    },
  );
  assert.throws(() => getTask('countdown', { maxNumbr: 9 }), /maxNumbr/);
});

test("registerTaskRewards adds the task rewards to a registry; each task's reward spec then creates a reward that scores its gold answers 1", async () => {
  const registry = registerTaskRewards(new RewardRegistry());
  assert.deepEqual(registry.names(), ['addition', 'countdown']);
  assert.deepEqual(
    taskRewardDefinitions().map((d) => d.name),
    ['addition', 'countdown'],
  );
  for (const name of taskNames()) {
    const task = getTask(name, name === 'addition' ? { reverse: true } : { intermediates: 'integer' });
    assert.equal(task.rewardDefinition.name, task.reward.name);
    const fromRegistry = registry.create(task.reward);
    assert.deepEqual(fromRegistry.options, task.createReward().options);
    for (const it of task.prompts(2, 'eval', 20)) {
      const sample = { ...it, sampleId: 0, completion: task.sftTarget(it) };
      const r = (await fromRegistry.score!(sample, ctx)) as RewardResult;
      assert.equal(r.reward, 1, `${it.prompt} ${sample.completion}`);
    }
  }
  assert.throws(() => registerTaskRewards(registry), /reward "addition" is already registered/);
});
