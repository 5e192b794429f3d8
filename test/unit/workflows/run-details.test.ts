/** The Web UI's current details of a training run (workflows/run-details.ts), from plain snapshots. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runPrefix } from '../../../activities/store/keys.js';
import { parseRunConfig } from '../../../activities/run/config.js';
import {
  environmentLabel,
  fmt,
  renderRunDetails,
  renderStaticDetails,
  rolloutSummary,
  sparkline,
  type RunDetails,
} from '../../../workflows/run-details.js';

const snapshot = (o: Partial<RunDetails> = {}): RunDetails => ({
  runId: 'tiny-1',
  name: 'tiny',
  status: 'running',
  phase: 'rl',
  phaseIndex: 1,
  step: 3,
  totalSteps: 5,
  stage: 'learner',
  shardsDone: 0,
  shardsTotal: 0,
  lastMetrics: null,
  rewardTrend: [],
  evals: [],
  storeUri: 'file:///tmp/store',
  lastStepUri: null,
  lastCheckpointUri: null,
  executions: 1,
  model: 'llama 1×32',
  stopRequested: false,
  pauseRequested: false,
  phases: 2,
  task: 'addition',
  seed: 11,
  ...o,
});

test('sparkline of 0, 0.5, 1 is ▁▅█; of two equal values ▄▄; of nothing the empty string', () => {
  assert.equal(sparkline([0, 0.5, 1]), '▁▅█');
  assert.equal(sparkline([0.3, 0.3]), '▄▄');
  assert.equal(sparkline([]), '');
});

test('fmt: 0.12345 → 0.123 (4 digits: 0.1235), null, undefined and NaN → an en dash', () => {
  assert.equal(fmt(0.12345), '0.123');
  assert.equal(fmt(0.12345, 4), '0.1235');
  for (const x of [null, undefined, Number.NaN, Number.POSITIVE_INFINITY]) assert.equal(fmt(x), '–');
});

test('a run after its first execution, at step 3 of 5 with last metrics, a reward trend of 0.2 then 0.6, three evaluations (the last with no accuracy: its reward judges no correctness, mean reward only) and its store URIs', () => {
  const text = renderRunDetails(
    snapshot({
      lastMetrics: { reward_mean: 0.6, reward_std: 0.49, loss: 0.12345, kl: 0.00123, entropy: 1.5, clip_fraction: 0.1, step_seconds: 2.25 },
      rewardTrend: [0.2, 0.6],
      evals: [
        { policyVersion: 0, phase: 'init', greedyAccuracy: 0.125, passAtK: { k: 2, value: 0.25 }, meanReward: 0.125, uri: 'e0' },
        { policyVersion: 2, phase: 'sft', greedyAccuracy: 0.5, passAtK: null, meanReward: 0.5, uri: 'e2' },
        { policyVersion: 3, phase: 'rl', greedyAccuracy: null, passAtK: null, meanReward: 0.75, uri: 'e3' },
      ],
      lastCheckpointUri: 'file:///tmp/store/runs/tiny-1/checkpoints/000003/manifest.json',
      lastStepUri: 'file:///tmp/store/runs/tiny-1/steps/000002/manifest.json',
      executions: 3,
    }),
  );
  assert.equal(
    text,
    [
      '## Training run `tiny-1`',
      '- **status:** running',
      '- **phase:** rl (2/2) · **step:** 3 / 5 · **stage:** learner',
      '- **model:** llama 1×32 · **task:** addition · **seed:** 11',
      '- **last step:** reward 0.600 ± 0.490 · loss 0.1235 · KL 0.0012 · entropy 1.500 · clip 0.100 · 2.3 s',
      '- **reward trend** (last 2 rl steps): `▁█` 0.600',
      '',
      '| checkpoint | phase | greedy accuracy | pass@k | mean reward |',
      '| --- | --- | --- | --- | --- |',
      '| 0 | init | 12.5% | pass@2 25.0% | 0.125 |',
      '| 2 | sft | 50.0% | – | 0.500 |',
      '| 3 | rl | – | – | 0.750 |',
      '',
      '- **store:** `file:///tmp/store` · run data under `runs/tiny-1/`',
      '- **last checkpoint:** `file:///tmp/store/runs/tiny-1/checkpoints/000003/manifest.json`',
      '- **last step manifest:** `file:///tmp/store/runs/tiny-1/steps/000002/manifest.json`',
      '- continued as new 2 time(s)',
    ].join('\n'),
  );
});

test('a new run shows no metrics, trend, evaluations, checkpoint or continue-as-new lines, and "…" for a model not yet known', () => {
  const text = renderRunDetails(snapshot({ status: 'starting', phase: 'sft', phaseIndex: 0, step: 0, stage: 'init', model: '' }));
  assert.equal(
    text,
    [
      '## Training run `tiny-1`',
      '- **status:** starting',
      '- **phase:** sft (1/2) · **step:** 0 / 5 · **stage:** init',
      '- **model:** … · **task:** addition · **seed:** 11',
      '- **store:** `file:///tmp/store` · run data under `runs/tiny-1/`',
    ].join('\n'),
  );
});

test('shards done show during rollout and reward only: 1/2 shards while rewarding, none while learning', () => {
  const line = (o: Partial<RunDetails>) => renderRunDetails(snapshot(o)).split('\n')[2];
  assert.equal(
    line({ stage: 'reward', shardsDone: 1, shardsTotal: 2 }),
    '- **phase:** rl (2/2) · **step:** 3 / 5 · **stage:** reward (1/2 shards)',
  );
  assert.equal(
    line({ stage: 'rollout', shardsDone: 0, shardsTotal: 2 }),
    '- **phase:** rl (2/2) · **step:** 3 / 5 · **stage:** rollout (0/2 shards)',
  );
  assert.equal(line({ stage: 'learner', shardsDone: 2, shardsTotal: 2 }), '- **phase:** rl (2/2) · **step:** 3 / 5 · **stage:** learner');
});

test('a requested stop or pause is noted until the run is stopped or paused', () => {
  const status = (o: Partial<RunDetails>) => renderRunDetails(snapshot(o)).split('\n')[1];
  assert.equal(status({ stopRequested: true }), '- **status:** running (stop requested: finishing the step)');
  assert.equal(status({ stopRequested: true, status: 'stopped' }), '- **status:** stopped');
  assert.equal(status({ pauseRequested: true }), '- **status:** running (pause requested: after this step)');
  assert.equal(status({ pauseRequested: true, status: 'paused' }), '- **status:** paused');
});

test('the step shown is capped at the total: a finished run at step 6 of 5 shows step 5 / 5', () => {
  const text = renderRunDetails(snapshot({ status: 'completed', phase: 'done', step: 6, stage: 'done' }));
  assert.match(text.split('\n')[2]!, / · \*\*step:\*\* 5 \/ 5 · \*\*stage:\*\* done$/);
});

test("the run data folder the details name is the store layout's runPrefix (store/keys.ts), followed by a slash", () => {
  for (const runId of ['tiny-1', 'addition-grpo-20250101-abc']) {
    const text = renderRunDetails(snapshot({ runId }));
    assert.ok(text.includes(`run data under \`${runPrefix(runId)}/\``), text);
  }
});

test('static details: phases sft ×2 → rl ×3 (5 steps), task, seed, model, resume source, store and the commands that read a closed run', () => {
  const text = renderStaticDetails({
    runId: 'tiny-1',
    name: 'tiny',
    phases: [
      { kind: 'sft', steps: 2 },
      { kind: 'rl', steps: 3 },
    ],
    task: 'addition',
    seed: 7,
    model: { hidden: 32, layers: 1 },
    storeUri: 'file:///data',
    resumeFrom: { runId: 'tiny-0', checkpoint: 4 },
  });
  assert.deepEqual(text.split('\n'), [
    '## Training run `tiny-1` (tiny)',
    '- **phases:** sft ×2 → rl ×3 (5 steps)',
    '- **task:** addition · **seed:** 7 · **model:** `{"hidden":32,"layers":1}`',
    '- **resumed from:** run `tiny-0` at checkpoint 4',
    `- **store:** \`file:///data\` · run data under \`${runPrefix('tiny-1')}/\``,
    '- its state: `durable-rl status tiny-1` · its results: `durable-rl report tiny-1`',
  ]);
});

test("a rollout shard's summary names its episodes: a built-in by name, a module environment by its file and export (never 'undefined')", () => {
  const shard = { step: 3, shard: 0, of: 2, promptCount: 8, groupSize: 4, policyVersion: 3 };
  // the environment as a run config holds it: a module's path made absolute against the config file
  const own = parseRunConfig({ environment: { module: './envs/my-env.ts', export: 'searchEnv' } }, 'run config', {
    baseDir: '/home/me/project',
  }).environment!;
  assert.equal(own.module, '/home/me/project/envs/my-env.ts');
  assert.equal(
    rolloutSummary({ ...shard, environment: own }),
    'rollout · step 3 · shard 1/2 · 8 prompts × 4 my-env.ts#searchEnv episodes (heartbeats: turn, live episodes)',
  );
  assert.equal(environmentLabel({ module: '/home/me/project/envs/my-env.ts' }), 'my-env.ts', 'the default export: the file alone');
  assert.equal(environmentLabel({ module: 'C:\\envs\\my-env.ts', export: 'default' }), 'my-env.ts');
  assert.equal(
    rolloutSummary({ ...shard, environment: { name: 'calculator' }, policyVersion: 2 }),
    'rollout · step 3 · shard 1/2 · 8 prompts × 4 calculator episodes (heartbeats: turn, live episodes) · checkpoint 2',
  );
  assert.equal(rolloutSummary({ ...shard, environment: null }), 'rollout · step 3 · shard 1/2 · 8 prompts × 4');
});
