import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultStep, runToolCall, stepEnvironment } from '../../../activities/env/step.js';
import { defineEnvironment, ToolInfraError, type Tool, type ToolContext } from '../../../activities/env/types.js';

const spec = (name: string) => ({ name, description: name, parameters: { type: 'object', properties: { x: { type: 'integer' } } } });
const double: Tool = { spec: spec('double'), run: (a) => String(2 * (a.x as number)) };
let aborted: unknown = null;
const hang: Tool = {
  spec: spec('hang'),
  timeoutMs: 20,
  run: (_a, ctx) =>
    new Promise<string>((resolve) => {
      ctx.signal.addEventListener('abort', () => {
        aborted = ctx.signal.reason;
        resolve('late');
      });
    }),
};
const infra: Tool = {
  spec: spec('infra'),
  run: () => {
    throw new ToolInfraError('sandbox did not start');
  },
};
const buggy: Tool = {
  spec: spec('buggy'),
  run: () => {
    throw new RangeError('x out of range');
  },
};
const env = defineEnvironment({
  name: 't',
  tools: [double, hang, infra, buggy],
  limits: { maxTurns: 4, maxTotalTokens: 512, maxSeconds: 60 },
  format: 'tagged',
  reset: (row) => [{ role: 'user', content: row.prompt }],
});
const ctx = (): ToolContext => ({ signal: new AbortController().signal, seed: 1, promptId: 'p', sampleId: 0, turn: 0 });

test('default step: a final turn ends the episode with no observation', async () => {
  assert.deepEqual(await defaultStep(env, { kind: 'final', text: '<a>4</a>' }, ctx()), { observations: [], done: true });
});

test('default step: a malformed turn is answered by "error: <what was wrong>" and the episode goes on', async () => {
  const r = await defaultStep(env, { kind: 'malformed', error: '<c> is not closed', text: '<c>1' }, ctx());
  assert.deepEqual(r, { observations: [{ role: 'tool', content: 'error: <c> is not closed' }], done: false });
});

test('default step: two calls give two observations in call order, named by their tools: double(3), double(5) -> 6, 10', async () => {
  const r = await stepEnvironment(
    env,
    {
      kind: 'calls',
      calls: [
        { name: 'double', arguments: { x: 3 } },
        { name: 'double', arguments: { x: 5 } },
      ],
      text: '',
    },
    [],
    ctx(),
  );
  assert.deepEqual(r.observations, [
    { role: 'tool', name: 'double', content: '6' },
    { role: 'tool', name: 'double', content: '10' },
  ]);
});

test('a tool past its own timeout (20 ms) throws ToolInfraError naming it, and the signal it was given is aborted', async () => {
  aborted = null;
  await assert.rejects(runToolCall(env, { name: 'hang', arguments: {} }, ctx()), (e: Error) => {
    assert.ok(e instanceof ToolInfraError);
    assert.equal(e.message, 'tool hang did not answer within 20 ms');
    return true;
  });
  assert.ok(aborted instanceof ToolInfraError);
});

test("a tool's ToolInfraError is thrown on (the episode retries the call), any other exception is an error observation", async () => {
  await assert.rejects(runToolCall(env, { name: 'infra', arguments: {} }, ctx()), /sandbox did not start/);
  assert.equal(await runToolCall(env, { name: 'buggy', arguments: {} }, ctx()), 'error: x out of range');
});

test('a tool that answers after the activity was cancelled (a sandbox reports its killed program as timed out) is not an outcome: runToolCall throws the cancellation', async () => {
  const killed: Tool = {
    spec: spec('killed'),
    timeoutMs: 10_000,
    run: (_a, c) => new Promise<string>((resolve) => c.signal.addEventListener('abort', () => resolve('error: timed out after 5000 ms'))),
  };
  const withKilled = defineEnvironment({ ...env, name: 't2', tools: [killed] });
  const cancel = new AbortController();
  setTimeout(() => cancel.abort(new Error('activity cancelled')), 5);
  await assert.rejects(
    runToolCall(withKilled, { name: 'killed', arguments: {} }, { ...ctx(), signal: cancel.signal }),
    /^Error: activity cancelled$/,
  );
});
