/**
 * A run whose reward is the user's own (the run config's `reward.functions`), against the real
 * servers: a YAML config, a JSONL dataset and a TypeScript reward module written into a temp dir
 * (paths relative to the config file), trained (sft then GRPO), evaluated and reported. Every
 * committed reward is the composition of the functions' values, recomputed from the completion
 * text; the steps' metrics carry `reward/<id>` per function and `durable-rl report` charts them;
 * accuracy and pass@k are measured only when a function is `verifiable`. Every composition of
 * activities/reward/compose.ts reached from a run config: each committed total is its composition
 * of the committed components.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { composeRewards, parseCompositionConfig } from '../../../activities/reward/compose.js';
import { loadRunConfig, type RunConfig } from '../../../activities/run/config.js';
import type { EvalRecord } from '../../../activities/run/types.js';
import { EVAL_NAME, evalPrefix, METRICS_NAME, rewardsName, rolloutsName, stepPrefix } from '../../../activities/store/keys.js';
import { readArtifact } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { decodeMetrics, decodeRewards, decodeRollouts } from '../../../activities/store/schemas.js';
import { startTrainingRun } from '../../../workers/train-client.js';
import { planStep, totalSteps } from '../../../workflows/run-plan.js';
import { runCli } from '../../support/cli.js';
import { startWorkers, testTemporal, type TestTemporal } from '../../support/temporal.js';
import { assertCommittedRun } from '../../support/training.js';

const dir = mkdtempSync(join(tmpdir(), 'reward-functions-run-'));
const storeUri = pathToFileURL(join(dir, 'store')).href;
/** 24 one-digit additions ("3+4=" → "7"), with a column no mapping names (it reaches the rewards' metadata). */
const rows = Array.from({ length: 24 }, (_, i) => ({
  prompt: `${i % 5}+${Math.floor(i / 5)}=`,
  completion: String((i % 5) + Math.floor(i / 5)),
  level: i % 3,
}));
writeFileSync(join(dir, 'train.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
mkdirSync(join(dir, 'rewards'));
/** The user's module: TypeScript (type annotations, an interface), two plain functions. */
writeFileSync(
  join(dir, 'rewards', 'mine.ts'),
  `interface Sample { completion: string; reference?: string | string[]; metadata?: Record<string, unknown> }
/** 1 when the completion is the reference, else 0; the dataset's level column must arrive in metadata. */
export function correctness(sample: Sample): { reward: number; components: Record<string, number> } {
  if (typeof sample.metadata?.level !== 'number') throw new Error('no level column in metadata');
  const ok = sample.completion.trim() === sample.reference ? 1 : 0;
  return { reward: ok, components: { correct: ok } };
}
/** Shorter is better: minus the completion's length in characters, over 10. */
export const brevity = (sample: Sample): number => -sample.completion.length / 10;
/** No reward of its own: a process reward of 0.25 on every completion token. */
export function perToken(sample: Sample & { completionTokens?: number }) {
  return { reward: 0, processRewards: Array.from({ length: sample.completionTokens ?? 0 }, () => 0.25) };
}
`,
);

let t: TestTemporal;
let workers: { stop(): Promise<void> };
let store: ObjectStore;

before(async () => {
  t = await testTemporal();
  workers = await startWorkers(t, ['control', 'rollout', 'reward', 'learner']);
  store = openStore(storeUri);
});

after(async () => {
  await workers?.stop();
  await t?.client.connection.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Writes `name.yaml` into the temp dir (relative paths resolve against it) and loads it. */
function configFile(name: string, reward: string, phases: string): RunConfig {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(
    file,
    `name: ${name}
seed: 3
store: ${storeUri}
data: { train: ./train.jsonl, evalFraction: 0.25 }
model: { hidden: 32, layers: 1, heads: 2 }
reward:
${reward}
phases:
${phases}
rollout: { promptsPerShard: 4, maxConcurrentShards: 2 }
eval: { prompts: 8, passK: 2 }
engine: { threads: 1 }
workflow: { heartbeatTimeoutSeconds: 5 }
`,
  );
  return loadRunConfig(file);
}

const SFT_THEN_RL = `  - { kind: sft, steps: 2, batchSize: 8, lr: 0.003 }
  - { kind: rl, steps: 2, promptsPerStep: 4, groupSize: 4, lr: 0.001 }`;

/** Every scored sample of the rl steps [from, to): its completion, the committed reward and components. */
async function scored(runId: string, config: RunConfig, from: number, to: number) {
  const out: {
    step: number;
    prompt: string;
    completion: string;
    tokens: number;
    reward: number | null;
    components: Record<string, number>;
  }[] = [];
  for (let step = from; step < to; step++) {
    const shards = Math.ceil(planStep(config, step).count / config.rollout.promptsPerShard);
    for (let k = 0; k < shards; k++) {
      const rollouts = decodeRollouts(await readArtifact(store, stepPrefix(runId, step), rolloutsName(k)));
      const rewards = decodeRewards(await readArtifact(store, stepPrefix(runId, step), rewardsName(k)));
      assert.equal(rewards.length, rollouts.length);
      rollouts.forEach((r, i) =>
        out.push({
          step,
          prompt: r.prompt_text,
          completion: r.completion_text,
          tokens: r.completion_token_ids.length,
          reward: rewards[i]!.reward,
          components: rewards[i]!.components,
        }),
      );
    }
  }
  return out;
}

test('a dataset run with a TypeScript reward module of its own trains, evaluates and reports: every reward is correctness + 0.1 · brevity of its text, reward/brevity, reward/correct (the verdict) and reward/correctness charted', async () => {
  const config = configFile(
    'my-reward',
    `  functions:
    - { module: ./rewards/mine.ts, export: correctness, weight: 1, verifiable: true }
    - { module: ./rewards/mine.ts, export: brevity, weight: 0.1 }`,
    SFT_THEN_RL,
  );
  assert.equal(config.reward.functions![0]!.module, join(dir, 'rewards', 'mine.ts'), 'the module path resolves against the config file');
  const total = totalSteps(config);
  const run = await startTrainingRun(t.client, config);
  const result = await run.result();
  assert.equal(result.status, 'completed');
  await assertCommittedRun(store, run.runId, total);

  // 2 rl steps × 4 prompts × 4 samples, each scored by the module's functions, weighted 1 and 0.1
  const samples = await scored(run.runId, config, 2, total);
  assert.equal(samples.length, 32);
  const eval6 = (n: number) => Math.round(n * 1e6) / 1e6;
  for (const s of samples) {
    const sum = s.prompt
      .slice(0, -1)
      .split('+')
      .reduce((a, b) => a + Number(b), 0);
    const correct = s.completion.trim() === String(sum) ? 1 : 0;
    assert.equal(s.components.correctness, correct, `correctness of ${s.prompt}${JSON.stringify(s.completion)}`);
    assert.equal(s.components['correctness/correct'], correct);
    assert.equal(s.components.correct, correct, 'the verifiable function gives correct');
    assert.equal(s.components.brevity, -s.completion.length / 10, `brevity of ${JSON.stringify(s.completion)}`);
    assert.equal(eval6(s.reward!), eval6(correct + 0.1 * s.components.brevity!));
  }
  // the metrics' reward/<id>: the step's mean of each function
  for (const step of [2, 3]) {
    const [m] = decodeMetrics(await readArtifact(store, stepPrefix(run.runId, step), METRICS_NAME));
    const mine = samples.filter((s) => s.step === step);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.equal(eval6(m!.extra['reward/correctness']!), eval6(mean(mine.map((s) => s.components.correctness!))));
    assert.equal(eval6(m!.extra['reward/brevity']!), eval6(mean(mine.map((s) => s.components.brevity!))));
  }

  // evaluations on the 6 held-out rows: accuracy counts the verifiable function's verdict
  const ev = JSON.parse(new TextDecoder().decode(await readArtifact(store, evalPrefix(run.runId, total), EVAL_NAME))) as EvalRecord;
  assert.equal(ev.num_prompts, 6);
  assert.equal(ev.greedy_accuracy, ev.samples.filter((s) => s.completion.trim() === s.reference).length / 6);
  assert.equal(ev.pass_at_k?.k, 2);
  assert.deepEqual(
    result.evals.map((e) => e.policyVersion),
    [0, 2, 4],
  );

  // durable-rl report charts the functions' components
  const out = join(dir, 'report.html');
  const r = await runCli(['report', run.runId, '--store', storeUri, '--out', out], t.env);
  assert.equal(r.code, 0, r.stderr);
  const html = readFileSync(out, 'utf8');
  const chart = /<svg data-chart="reward_components"[\s\S]*?<\/svg>/.exec(html)?.[0] ?? '';
  assert.deepEqual(
    [...chart.matchAll(/<polyline[^>]*data-series="([^"]*)"[^>]*points="([^"]*)"/g)].map((m) => [m[1], m[2]!.trim().split(/\s+/).length]),
    [
      ['reward/brevity', 2],
      ['reward/correct', 2], // the verifiable functions' verdict
      ['reward/correctness', 2],
    ],
  );
});

test('a run whose functions are none verifiable evaluates by mean reward only: accuracy and pass@k null, the mean of the greedy samples’ rewards', async () => {
  const config = configFile('plain-reward', `  functions:\n    - { module: ./rewards/mine.ts, export: brevity }`, SFT_THEN_RL);
  const run = await startTrainingRun(t.client, config);
  const result = await run.result();
  assert.equal(result.status, 'completed');
  for (const e of result.evals) {
    assert.equal(e.greedyAccuracy, null);
    assert.equal(e.passAtK, null);
    const rec = JSON.parse(
      new TextDecoder().decode(await readArtifact(store, evalPrefix(run.runId, e.policyVersion), EVAL_NAME)),
    ) as EvalRecord;
    assert.equal(rec.greedy_accuracy, null);
    assert.equal(rec.pass_at_k, null);
    const rewards = rec.samples.map((s) => -s.completion.length / 10);
    assert.deepEqual(
      rec.samples.map((s) => s.reward),
      rewards,
    );
    assert.ok(Math.abs(rec.mean_reward - rewards.reduce((a, b) => a + b, 0) / rewards.length) < 1e-12);
    assert.equal(e.meanReward, rec.mean_reward);
  }
});

/** Every composition of compose.ts, as a run config names it over the module's functions (perToken: process rewards, for the two that refine them). */
const COMPOSITIONS: Record<string, { compose: string; perToken?: true }> = {
  weighted_sum: { compose: `{ name: weighted_sum, weights: { correctness: 2, brevity: 0.5 } }` },
  gated: { compose: `{ name: gated, outcome: correctness, dense: { brevity: 1 } }` },
  lexicographic: {
    compose: `{ name: lexicographic, levels: [{ component: correctness, steps: 1 }, { component: brevity, min: -2, max: 0, steps: 4 }] }`,
  },
  sweet_spot: { compose: `{ name: sweet_spot, component: brevity, tiers: [{ bound: -0.5, reward: 1 }, { bound: -0.1, reward: 0.5 }] }` },
  clip_delta: { compose: `{ name: clip_delta, outcome: correctness, eta: 0.5, stepTokens: all }`, perToken: true },
  process_outcome_schedule: { compose: `{ name: process_outcome_schedule, outcome: correctness, totalSteps: 2 }`, perToken: true },
  hybrid: { compose: `{ name: hybrid, rule: correctness, model: brevity, lengthPenalty: { weight: 1, target: 2, limit: 6 } }` },
};

test('every composition of compose.ts is reached from a run config: in a 1-step rl run of each, every committed reward is the composition of its committed components', async () => {
  for (const [name, { compose, perToken }] of Object.entries(COMPOSITIONS)) {
    const config = configFile(
      `compose-${name.replace(/_/g, '-')}`,
      `  functions:
    - { module: ./rewards/mine.ts, export: correctness, verifiable: true }
    - { module: ./rewards/mine.ts, export: brevity }${perToken ? '\n    - { module: ./rewards/mine.ts, export: perToken }' : ''}
  compose: ${compose}`,
      `  - { kind: rl, steps: 1, promptsPerStep: 4, groupSize: 2, lr: 0.001 }`,
    );
    assert.equal(config.reward.compose?.name, name);
    const run = await startTrainingRun(t.client, config);
    assert.equal((await run.result()).status, 'completed', name);
    const composition = parseCompositionConfig(config.reward.compose!);
    // what the run would have committed without its compose: the functions' plain sum
    const plainSum = parseCompositionConfig({
      name: 'weighted_sum',
      weights: { correctness: 1, brevity: 1, ...(perToken ? { perToken: 1 } : {}) },
    });
    let differs = 0;
    const samples = await scored(run.runId, config, 0, 1);
    assert.equal(samples.length, 8, name);
    for (const s of samples) {
      const { correctness, brevity } = s.components;
      assert.equal(brevity, -s.completion.length / 10, name);
      const components = {
        correctness: correctness!,
        'correctness/correct': correctness!,
        brevity: brevity!,
        ...(perToken ? { perToken: 0 } : {}),
      };
      const processRewards = perToken ? Array.from({ length: s.tokens }, () => 0.25) : undefined;
      const [want] = composeRewards(
        composition,
        [{ sampleId: 's', components, ...(processRewards ? { processRewards } : {}), completionLength: s.tokens }],
        { step: s.step },
      );
      assert.equal(s.reward, want!.total, `${name}: ${JSON.stringify(s.completion)} → ${s.reward}`);
      const [plain] = composeRewards(plainSum, [{ sampleId: 's', components, ...(processRewards ? { processRewards } : {}) }], {
        step: s.step,
      });
      if (Math.abs(plain!.total - s.reward!) > 1e-9) differs++;
    }
    assert.ok(differs > 0, `${name}: some committed reward differs from the plain sum the run would give without compose`);
  }
});
