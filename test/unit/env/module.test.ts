import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadEnvironment, loadEnvironmentModule } from '../../../activities/env/module.js';
import { stepEnvironment } from '../../../activities/env/step.js';

const dir = await mkdtemp(path.join(tmpdir(), 'env-module-'));
test.after(() => rm(dir, { recursive: true, force: true }));
const typesUrl = new URL('../../../activities/env/types.ts', import.meta.url).href;
const zodUrl = import.meta.resolve('zod');

const ECHO = `
import { defineEnvironment, defineEnvironmentKind } from '${typesUrl}';
import { z } from '${zodUrl}';
const echoTool = { spec: { name: 'echo', description: 'says it back', parameters: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] } }, tag: 'e', run: (a) => String(a.text).toUpperCase() };
export const echo = defineEnvironment({
  name: 'echo', format: 'tagged', tools: [echoTool],
  limits: { maxTurns: 3, maxTotalTokens: 256, maxSeconds: 10 },
  reset: (row) => [{ role: 'user', content: row.prompt }],
});
export const kind = defineEnvironmentKind({
  name: 'echo-kind', description: 'echo with a turn limit', optionsSchema: z.strictObject({ turns: z.number().int().default(2) }),
  create: (o) => ({ ...echo, name: 'echo-kind', limits: { ...echo.limits, maxTurns: o.turns } }),
});
export const factory = (o) => ({ ...echo, name: 'from-factory-' + o.suffix });
export const noReset = { ...echo, reset: 3 };
export const sameTags = { ...echo, tools: [echoTool, { ...echoTool, spec: { ...echoTool.spec, name: 'echo2' } }] };
export const badSchema = { ...echo, tools: [{ ...echoTool, spec: { ...echoTool.spec, parameters: { type: 'string' } } }] };
export default echo;
`;
const file = path.join(dir, 'echo-env.ts');
await writeFile(file, ECHO);
await writeFile(path.join(dir, 'broken.ts'), 'export const x = ;');

test('an environment module loads: its default export runs its tools through the default step (echo hi -> HI)', async () => {
  const env = await loadEnvironmentModule(file);
  assert.equal(env.name, 'echo');
  const r = await stepEnvironment(env, { kind: 'calls', calls: [{ name: 'echo', arguments: { text: 'hi' } }], text: '<e>hi</e>' }, [], {
    signal: new AbortController().signal,
    seed: 0,
    promptId: 'p',
    sampleId: 0,
    turn: 0,
  });
  assert.deepEqual(r.observations, [{ role: 'tool', name: 'echo', content: 'HI' }]);
});

test('a defineEnvironmentKind export is built with the options (turns 5 -> maxTurns 5), a function export is called with them', async () => {
  assert.equal((await loadEnvironmentModule(file, 'kind', { turns: 5 })).limits.maxTurns, 5);
  assert.equal((await loadEnvironmentModule(file, 'kind')).limits.maxTurns, 2);
  assert.equal((await loadEnvironmentModule(file, 'factory', { suffix: 'x' })).name, 'from-factory-x');
});

test('module errors are one line naming the file and export: no such export, not importable, bad options, bad shape', async () => {
  await assert.rejects(loadEnvironmentModule(file, 'nope'), {
    message: `${file} has no export "nope" (it exports "badSchema", "default", "echo", "factory", "kind", "noReset", "sameTags")`,
  });
  await assert.rejects(
    loadEnvironmentModule(path.join(dir, 'broken.ts')),
    (e: Error) => e.message.startsWith(`${path.join(dir, 'broken.ts')} throws at import: `) && !e.message.includes('\n'),
  );
  await assert.rejects(loadEnvironmentModule(file, 'kind', { turns: 'two' }), /options of export "kind" of .*echo-env\.ts.*turns/);
  await assert.rejects(loadEnvironmentModule(file, 'noReset'), {
    message: `export "noReset" of ${file}: reset must be a function (row) => messages`,
  });
  await assert.rejects(loadEnvironmentModule(file, 'sameTags'), {
    message: `export "sameTags" of ${file}: tools[1].tag "e" is another tool's tag too`,
  });
  await assert.rejects(loadEnvironmentModule(file, 'badSchema'), {
    message: `export "badSchema" of ${file}: tools[0].spec.parameters must be a JSON schema of type "object"`,
  });
  await assert.rejects(
    loadEnvironmentModule(file, 'echo', { x: 1 }),
    /is an environment object: options are for a defineEnvironmentKind export/,
  );
});

test('loadEnvironment: a built-in by name with its options, or a module', async () => {
  assert.equal((await loadEnvironment({ name: 'lookup', options: { maxTurns: 6 } })).limits.maxTurns, 6);
  assert.equal((await loadEnvironment({ module: file, export: 'echo' })).name, 'echo');
  await assert.rejects(loadEnvironment({}), /needs a name \(calculator, lookup\) or a module/);
});
