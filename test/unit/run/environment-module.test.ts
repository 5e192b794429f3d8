/** A run config naming an environment module of the user's own (environment.module / export): resolved, loaded before the run, errors naming the field, the file and the export. */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError } from '../../../activities/common/config.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { checkRunConfig } from '../../../activities/run/resolve.js';

const dir = await mkdtemp(path.join(tmpdir(), 'env-module-config-'));
after(() => rm(dir, { recursive: true, force: true }));
const registryUrl = new URL('../../../activities/env/registry.ts', import.meta.url).href;
await writeFile(
  path.join(dir, 'my-env.ts'),
  `import { environmentByName } from '${registryUrl}';
export const shortCalc = (o) => ({ ...environmentByName('calculator', { maxDigitsA: o.digits ?? 2, maxDigitsB: 2 }), name: 'short-calc' });
export const notAnEnv = { name: 'x' };
export default shortCalc;
`,
);

const config = (environment: RunConfigInput['environment']): RunConfigInput => ({
  name: 'env-module',
  store: 'file:///tmp/env-module-config-test',
  environment,
  model: { hidden: 16, layers: 1, heads: 2 },
  phases: [{ kind: 'rl', steps: 1, promptsPerStep: 2, groupSize: 2, lr: 1e-3 }],
});

async function problems(input: RunConfigInput): Promise<string[]> {
  try {
    await checkRunConfig(parseRunConfig(input, 'run config', { baseDir: dir }));
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

test('environment.module is resolved against the config file and its export becomes the run environment, built with the options (digits 2: prompts up to 99*99=)', async () => {
  const cfg = parseRunConfig(config({ module: './my-env.ts', export: 'shortCalc', options: { digits: 2 } }), 'run config', {
    baseDir: dir,
  });
  assert.equal(cfg.environment!.module, path.join(dir, 'my-env.ts'));
  const run = await checkRunConfig(cfg);
  assert.equal(run.environment!.name, 'short-calc');
  assert.equal(run.task.maxPromptChars, '99*99='.length);
});

test('module errors name the field, the file and the export: no such export, a file that does not import, an export that is not an environment', async () => {
  const file = path.join(dir, 'my-env.ts');
  assert.deepEqual(await problems(config({ module: './my-env.ts', export: 'nope' })), [
    `environment.export: ${file} has no export "nope" (it exports "default", "notAnEnv", "shortCalc")`,
  ]);
  const [missing] = await problems(config({ module: './absent.ts' }));
  assert.match(
    missing!,
    new RegExp(`^environment.module: ${path.join(dir, 'absent.ts').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not exist: check the path`),
  );
  assert.deepEqual(await problems(config({ module: './my-env.ts', export: 'notAnEnv' })), [
    `environment.export: export "notAnEnv" of ${file}: format must be one of hermes, tagged, got undefined`,
  ]);
});

test('environment takes either name or module, and export only with module', () => {
  assert.throws(
    () => parseRunConfig(config({ name: 'calculator', module: './my-env.ts' })),
    /give either name \(a built-in\) or module \(your own\)/,
  );
  assert.throws(() => parseRunConfig(config({ name: 'calculator', export: 'x' })), /export goes with module/);
});
