/**
 * The run config: defaults are a complete, valid run; bad fields are named; YAML and JSON files
 * load the same; the plan (phases, learning rates, prompt offsets, shards, evals) follows it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../../activities/common/config.js';
import { loadRunConfig, parseRunConfig } from '../../../activities/run/config.js';
import { inspectModelSource } from '../../../activities/run/base-model.js';
import { checkRunConfig, resolveRun } from '../../../activities/run/resolve.js';
import { failsSample, withRewardFaults } from '../../../activities/reward/faults.js';
import { evaluateAt, learningRate, planStep, totalSteps } from '../../../workflows/run-plan.js';

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a ConfigError');
}

test('the empty config is the main job: sft then rl on addition, a from-scratch model sized to the task', () => {
  const c = parseRunConfig({});
  assert.deepEqual(
    c.phases.map((p) => p.kind),
    ['sft', 'rl'],
  );
  assert.equal(c.task.name, 'addition');
  const r = resolveRun(c);
  assert.equal(r.model.vocabSize, r.tokenizer.vocabSize);
  assert.equal(r.model.eosTokenIds[0], r.tokenizer.eosId);
  assert.ok(r.model.maxPositions >= 1 + r.task.maxPromptChars + r.maxNewTokens());
  assert.equal(r.model.maxPositions % 8, 0);
});

test('bad fields are named with their path, and several at once', () => {
  const e = configError(() => parseRunConfig({ seed: -1, phases: [{ kind: 'rl', steps: 2, groupSize: 1 }], task: { name: 'nope' } }));
  const paths = e.issues.map((i) => i.path).sort();
  assert.deepEqual(paths, ['phases.0.groupSize', 'seed', 'task.name']);
  assert.match(e.message, /built-in tasks: addition, countdown/);
});

test('an unknown option is refused rather than ignored (a typo must not silently change a run)', () => {
  const e = configError(() => parseRunConfig({ phases: [{ kind: 'sft', steps: 3, batchsize: 8 }] }));
  assert.deepEqual(
    e.issues.map((i) => i.path),
    ['phases.0'],
  );
  assert.match(e.message, /batchsize/);
});

test('cross-field rules: warm-up longer than the phase, a non-surrogate rl loss', () => {
  const e = configError(() =>
    parseRunConfig({
      phases: [
        { kind: 'sft', steps: 3, warmupSteps: 5 },
        { kind: 'rl', steps: 2, loss: { name: 'sft' } },
      ],
    }),
  );
  assert.deepEqual(
    e.issues.map((i) => i.path),
    ['phases.0.warmupSteps', 'phases.1.loss.name'],
  );
});

test('a YAML file and a JSON file with the same content give the same config; a broken file names itself', () => {
  const dir = mkdtempSync(join(tmpdir(), 'run-config-'));
  writeFileSync(join(dir, 'a.yaml'), 'name: tiny\nseed: 7\nphases:\n  - kind: sft\n    steps: 4\n    batchSize: 8\n');
  writeFileSync(join(dir, 'a.json'), JSON.stringify({ name: 'tiny', seed: 7, phases: [{ kind: 'sft', steps: 4, batchSize: 8 }] }));
  assert.deepEqual(loadRunConfig(join(dir, 'a.yaml')), loadRunConfig(join(dir, 'a.json')));
  writeFileSync(join(dir, 'bad.yaml'), 'phases: [\n');
  const e = configError(() => loadRunConfig(join(dir, 'bad.yaml')));
  assert.match(e.message, /bad\.yaml/);
  assert.match(e.message, /not valid YAML/);
  assert.match(configError(() => loadRunConfig(join(dir, 'missing.yaml'))).message, /cannot read the file/);
});

test('plan: steps are numbered across phases; prompt offsets never overlap; shards cover the prompts', () => {
  const c = parseRunConfig({
    phases: [
      { kind: 'sft', steps: 3, batchSize: 10 },
      { kind: 'rl', steps: 2, promptsPerStep: 7 },
    ],
    rollout: { promptsPerShard: 3 },
  });
  assert.equal(totalSteps(c), 5);
  const plans = [0, 1, 2, 3, 4].map((s) => planStep(c, s));
  assert.deepEqual(
    plans.map((p) => p.phase.kind),
    ['sft', 'sft', 'sft', 'rl', 'rl'],
  );
  assert.deepEqual(
    plans.map((p) => p.promptOffset),
    [0, 10, 20, 30, 37],
  );
  assert.deepEqual(plans[3]!.shards, [
    { shard: 0, promptOffset: 30, promptCount: 3 },
    { shard: 1, promptOffset: 33, promptCount: 3 },
    { shard: 2, promptOffset: 36, promptCount: 1 },
  ]);
  assert.equal(plans[4]!.phaseStart, 3);
  assert.throws(() => planStep(c, 5), /outside the run's 5 steps/);
});

test('plan: an sft step of several updates takes consecutive batches; the schedule counts updates', () => {
  const c = parseRunConfig({
    phases: [
      { kind: 'sft', steps: 2, batchSize: 4, updatesPerStep: 3, lr: 1, warmupSteps: 4 },
      { kind: 'rl', steps: 1, promptsPerStep: 5 },
    ],
  });
  const [a, b, r] = [0, 1, 2].map((s) => planStep(c, s));
  assert.deepEqual([a!.promptOffset, a!.count, b!.promptOffset, b!.count, r!.promptOffset], [0, 12, 12, 12, 24]);
  assert.deepEqual(a!.lrs, [0.25, 0.5, 0.75]);
  assert.deepEqual(b!.lrs, [1, 1, 1]);
  assert.deepEqual(r!.lrs.length, 1);
});

test('plan: warm-up is linear, cosine ends at the floor, evals at start, phase ends and every N', () => {
  const c = parseRunConfig({
    phases: [
      { kind: 'sft', steps: 10, lr: 1, warmupSteps: 4, schedule: 'cosine', minLrRatio: 0.1 },
      { kind: 'rl', steps: 6 },
    ],
    eval: { every: 4 },
  });
  const p = c.phases[0]!;
  assert.deepEqual(
    [0, 1, 2, 3].map((k) => learningRate(p, k)),
    [0.25, 0.5, 0.75, 1],
  );
  assert.ok(Math.abs(learningRate(p, 9) - 0.1) < 1e-12);
  assert.ok(learningRate(p, 6) < learningRate(p, 5));
  assert.deepEqual(
    [...Array(17).keys()].filter((v) => evaluateAt(c, v)),
    [0, 4, 8, 10, 12, 16],
  );
});

test('reward fault drills fail the same samples every time, at about the configured rate', async () => {
  const faults = { rate: 0.3, kind: 'throw' as const, seed: 5 };
  const ids = Array.from({ length: 2000 }, (_, i) => ({ promptId: `p${i % 50}`, sampleId: i }));
  const failing = ids.filter((s) => failsSample(faults, s)).length;
  assert.ok(failing > 500 && failing < 700, `${failing} of 2000 failed`);
  assert.deepEqual(
    ids.map((s) => failsSample(faults, s)),
    ids.map((s) => failsSample(faults, s)),
  );
  const inner = { name: 'one', optionsSchema: undefined as never, options: {}, score: () => ({ reward: 1 }) };
  const drill = withRewardFaults(inner, faults);
  const bad = ids.find((s) => failsSample(faults, s))!;
  const good = ids.find((s) => !failsSample(faults, s))!;
  const ctx = { step: 0, signal: new AbortController().signal, log: undefined as never };
  assert.deepEqual(await drill.score!({ ...good, prompt: '', completion: '' }, ctx), { reward: 1 });
  await assert.rejects(async () => drill.score!({ ...bad, prompt: '', completion: '' }, ctx), /injected reward fault/);
});

test('the example configs in docs/configs/ are valid', async () => {
  const dir = new URL('../../../docs/configs/', import.meta.url);
  const files = readdirSync(dir).filter((f) => /\.(ya?ml|json)$/.test(f));
  assert.ok(files.length >= 2);
  // a config that starts from a model directory made by an earlier run (the README's second example)
  // is built here on a fixture model directory instead
  const base = (await inspectModelSource(new URL('../../fixtures/hf/qwen3', import.meta.url).href)).files;
  for (const f of files) {
    const c = loadRunConfig(join(dir.pathname, f));
    assert.ok(c.phases.length >= 1, f);
    if (c.data) continue; // a dataset example needs its generated file (docs/README)
    resolveRun(c, undefined, c.model.from === null ? undefined : base); // the task options and the model build
  }
});

test('what the schema cannot see is checked before a run starts: model shape, task options, reward, store', async () => {
  const bad = parseRunConfig({
    store: 'ftp://nowhere',
    model: { hidden: 100, heads: 3 },
    reward: { spec: { name: 'no_such_reward' } },
  });
  const e = await checkRunConfig(bad).then(
    () => assert.fail('accepted'),
    (err: unknown) => err as ConfigError,
  );
  assert.ok(e instanceof ConfigError);
  const paths = e.issues.map((i) => i.path);
  assert.ok(paths.includes('store'), e.message);
  assert.ok(paths.includes('model.heads'), e.message);
  assert.match(e.message, /hidden \(100\) must be divisible by heads \(3\)/);
  const e2 = await checkRunConfig(parseRunConfig({ task: { name: 'addition', options: { maxDigits: 0 } } })).then(
    () => assert.fail('accepted'),
    (err: unknown) => err as ConfigError,
  );
  assert.deepEqual(
    e2.issues.map((i) => i.path),
    ['task.options'],
  );
  assert.match(e2.message, /maxDigits/);
  const e3 = await checkRunConfig(parseRunConfig({ reward: { spec: { name: 'no_such_reward' } } })).then(
    () => assert.fail('accepted'),
    (err: unknown) => err as ConfigError,
  );
  assert.deepEqual(
    e3.issues.map((i) => i.path),
    ['reward.spec'],
  );
  assert.match(e3.message, /no_such_reward/);
  const ok = await checkRunConfig(parseRunConfig({}));
  assert.equal(ok.model.hidden, 128);
});
