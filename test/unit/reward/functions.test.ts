/**
 * `reward.functions` + `reward.compose` from a run config to scored samples: the config is parsed
 * (parseRunConfig), checked before a run starts (checkRunConfig: modules imported, exports usable),
 * and the run's reward (resolveRun(config).createReward(), what the reward shard and the evaluation
 * call) scores samples through scoreSamples with the run's error policy. Every composition of
 * compose.ts is reached from a config, with its numbers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { ApplicationFailure } from '@temporalio/common';
import { ConfigError } from '../../../activities/common/config.js';
import { parseRunConfig } from '../../../activities/run/config.js';
import { checkRunConfig, resolveRun } from '../../../activities/run/resolve.js';
import { scoreSamples } from '../../../activities/reward/run.js';
import type { RewardSample } from '../../../activities/reward/types.js';

const fixtures = fileURLToPath(new URL('../../fixtures/rewards/', import.meta.url));
const good = `${fixtures}good.ts`;

/** A run config on the built-in addition task whose reward is `functions` composed by `compose`. */
const config = (functions: unknown[], compose?: unknown, extra: Record<string, unknown> = {}) =>
  parseRunConfig({ reward: { functions, ...(compose ? { compose } : {}), ...extra }, phases: [{ kind: 'rl', steps: 20 }] }, 'test config', {
    baseDir: fixtures,
  });

const sample = (completion: string, o: Partial<RewardSample> = {}): RewardSample => ({
  promptId: 'p',
  sampleId: completion,
  prompt: '3+4=',
  completion,
  reference: '7',
  metadata: { level: 2 },
  completionTokens: completion.length,
  ...o,
});

async function score(cfg: ReturnType<typeof config>, samples: RewardSample[], step = 0) {
  const out = await scoreSamples(resolveRun(cfg).createReward(), samples, cfg.reward.errorPolicy, { step });
  return out.rows;
}

const totals = async (cfg: ReturnType<typeof config>, completions: string[], step = 0) =>
  (
    await score(
      cfg,
      completions.map((c) => sample(c)),
      step,
    )
  ).map((r) => (r.reward === null ? null : Math.round(r.reward * 1e9) / 1e9));

test('module paths resolve against the config file directory; ids default to the export (the file for default) or the registry name', () => {
  const cfg = config(
    [{ module: './good.ts', export: 'exact' }, { module: './good.ts' }, { name: 'format_tags', options: { tags: ['answer'] } }],
    undefined,
  );
  assert.equal(cfg.reward.functions![0]!.module, good);
  assert.deepEqual(cfg.reward.compose, { name: 'weighted_sum', weights: { exact: 1, good: 1, format_tags: 1 }, missing: 'error' });
});

test('default weighted sum of a plain function (weight 1) and an async RewardResult (weight 0.5): "7" → 1 + 0.5·(−0.1) = 0.95, components reward/<id>', async () => {
  const cfg = config([
    { module: good, export: 'exact' },
    { module: good, export: 'brevity', weight: 0.5 },
  ]);
  const [r] = await score(cfg, [sample('7')]);
  assert.equal(r!.reward, 0.95);
  assert.deepEqual(r!.components, { exact: 1, brevity: -0.1, 'brevity/chars': 1 });
});

test('a defineReward export is built with the entry options: level 2 ≥ minLevel 2 gives bonus 0.3, level 1 gives 0', async () => {
  const cfg = config([{ module: good, export: 'levelBonus', options: { minLevel: 2, bonus: 0.3 } }]);
  const rows = await score(cfg, [sample('7'), sample('8', { metadata: { level: 1 } })]);
  assert.deepEqual(
    rows.map((r) => r.reward),
    [0.3, 0],
  );
});

test('verifiable functions give the correct component evaluations count: correct = 1 only when every verifiable one is right', async () => {
  const cfg = config([
    { module: good, export: 'exact', verifiable: true },
    { module: good, export: 'brevity' },
  ]);
  const rows = await score(cfg, [sample('7'), sample('8')]);
  assert.deepEqual(
    rows.map((r) => r.components?.correct),
    [1, 0],
  );
});

test("a function returning NaN goes through the run's error policy (drop: reward null, kind non_finite, the message names the function)", async () => {
  const cfg = config([
    { module: good, export: 'exact' },
    { module: good, export: 'broken' },
  ]);
  const out = await scoreSamples(resolveRun(cfg).createReward(), [sample('7')], cfg.reward.errorPolicy);
  const [r] = out.rows;
  assert.equal(r!.reward, null);
  assert.match(r!.error ?? '', /reward function broken: .*NaN/);
  assert.equal(r!.errorKind, 'non_finite', 'a NaN, not a throw');
  assert.deepEqual([out.counts.nonFinite, out.counts.thrown, out.counts.dropped], [1, 0, 1]);
});

/** A run config over exact plus `failing` (a function that fails on every sample) under `errorPolicy`. */
const failingConfig = (failing: string, errorPolicy: Record<string, unknown>) =>
  config(
    [
      { module: good, export: 'exact' },
      { module: good, export: failing },
    ],
    undefined,
    { errorPolicy },
  );

/** The step's reward refused under onError fail: a non-retryable RewardError whose message says `what`. */
const failsTheStep = (what: RegExp) => (err: unknown) => {
  assert.ok(err instanceof ApplicationFailure, String(err));
  assert.equal(err.type, 'RewardError');
  assert.equal(err.nonRetryable, true);
  assert.match(err.message, what);
  return true;
};

test("a function that throws goes through the run's error policy: drop (null, kind threw, named), default (the default reward, the error kept), fail (the step)", async () => {
  const drop = failingConfig('crashes', { onError: 'drop' });
  const dropped = await scoreSamples(resolveRun(drop).createReward(), [sample('7'), sample('8')], drop.reward.errorPolicy);
  for (const r of dropped.rows) {
    assert.deepEqual([r.reward, r.dropped, r.errorKind, r.error], [null, true, 'threw', 'reward function crashes: the grader crashed']);
  }
  assert.deepEqual([dropped.counts.thrown, dropped.counts.dropped, dropped.counts.scored], [2, 2, 0]);

  const dflt = failingConfig('crashes', { onError: 'default', defaultReward: -1 });
  const defaulted = await scoreSamples(resolveRun(dflt).createReward(), [sample('7')], dflt.reward.errorPolicy);
  assert.deepEqual(
    [defaulted.rows[0]!.reward, defaulted.rows[0]!.error, defaulted.counts.defaulted],
    [-1, 'reward function crashes: the grader crashed', 1],
  );

  const fail = failingConfig('crashes', { onError: 'fail' });
  await assert.rejects(
    scoreSamples(resolveRun(fail).createReward(), [sample('7')], fail.reward.errorPolicy),
    failsTheStep(/failed on sample p\/7 \(threw\): reward function crashes: the grader crashed/),
  );
});

test("a function that never returns times out after the policy's timeoutMs: drop (null, kind timeout), fail (the step)", async () => {
  const drop = failingConfig('hangs', { onError: 'drop', timeoutMs: 50 });
  const dropped = await scoreSamples(resolveRun(drop).createReward(), [sample('7')], drop.reward.errorPolicy);
  const [r] = dropped.rows;
  assert.deepEqual([r!.reward, r!.dropped, r!.errorKind], [null, true, 'timeout']);
  assert.match(r!.error ?? '', /timed out after 50 ms/);
  assert.deepEqual([dropped.counts.timeouts, dropped.counts.dropped], [1, 1]);

  const fail = failingConfig('hangs', { onError: 'fail', timeoutMs: 50 });
  await assert.rejects(
    scoreSamples(resolveRun(fail).createReward(), [sample('7')], fail.reward.errorPolicy),
    failsTheStep(/failed on sample p\/7 \(timeout\): timed out after 50 ms/),
  );
});

test('compose weighted_sum with its own weights: exact·2 + brevity·1 on "7" = 1.9', async () => {
  const cfg = config(
    [
      { module: good, export: 'exact' },
      { module: good, export: 'brevity' },
    ],
    { name: 'weighted_sum', weights: { exact: 2, brevity: 1 } },
  );
  assert.deepEqual(await totals(cfg, ['7']), [1.9]);
});

test('compose gated (G-RA): brevity counts only when exact opens the gate: "7" → 1 − 0.1 = 0.9, "77" → 0', async () => {
  const cfg = config(
    [
      { module: good, export: 'exact' },
      { module: good, export: 'brevity' },
    ],
    { name: 'gated', outcome: 'exact', dense: { brevity: 1 } },
  );
  assert.deepEqual(await totals(cfg, ['7', '77']), [0.9, 0]);
});

test('compose lexicographic (OPTIAGENT): exact before the level bonus: (1, 1) → 3/3 = 1, (0, 1) → 1/3', async () => {
  const cfg = config(
    [
      { module: good, export: 'exact' },
      { module: good, export: 'levelBonus' },
    ],
    {
      name: 'lexicographic',
      levels: [
        { component: 'exact', steps: 1 },
        { component: 'levelBonus', min: 0, max: 0.5, steps: 1 },
      ],
    },
  );
  assert.deepEqual(await totals(cfg, ['7', '8']), [1, 0.333333333]);
});

test('compose sweet_spot (SSL) on a function component: chars ≤ 1 → 1, ≤ 3 → 0.5, beyond → 0', async () => {
  const cfg = config([{ module: good, export: 'brevity' }], {
    name: 'sweet_spot',
    component: 'brevity/chars',
    tiers: [
      { bound: 1, reward: 1 },
      { bound: 3, reward: 0.5 },
    ],
  });
  assert.deepEqual(await totals(cfg, ['7', '777', '77777']), [1, 0.5, 0]);
});

test('compose clip_delta (Gao et al. 2024) on process rewards: clip at η 0.5 makes 0.25/token −0.25/token: "7" → 1 − 0.25, "77" → 0 − 0.5', async () => {
  const cfg = config(
    [
      { module: good, export: 'exact' },
      { module: good, export: 'perToken' },
    ],
    {
      name: 'clip_delta',
      outcome: 'exact',
      eta: 0.5,
      stepTokens: 'all',
    },
  );
  assert.deepEqual(await totals(cfg, ['7', '77']), [0.75, -0.5]);
});

test('compose process_outcome_schedule (Atom-Searcher): "7" at step 0 (w 0.5) → 0.5·1 + 0.5·0.25 = 0.625, at step 10 (w 0) → 1', async () => {
  const cfg = config(
    [
      { module: good, export: 'exact' },
      { module: good, export: 'perToken' },
    ],
    {
      name: 'process_outcome_schedule',
      outcome: 'exact',
      totalSteps: 10,
    },
  );
  assert.deepEqual(await totals(cfg, ['7'], 0), [0.625]);
  assert.deepEqual(await totals(cfg, ['7'], 10), [1]);
});

test('compose hybrid: the rule (exact) judges, a length penalty ramps from 1 to 3 tokens: "7" → 1, "777" → 0 − 1', async () => {
  const cfg = config(
    [
      { module: good, export: 'exact' },
      { module: good, export: 'levelBonus' },
    ],
    {
      name: 'hybrid',
      rule: 'exact',
      model: 'levelBonus',
      lengthPenalty: { weight: 1, target: 1, limit: 3 },
    },
  );
  assert.deepEqual(await totals(cfg, ['7', '777']), [1, -1]);
});

test('config errors name the field: a weight with another composition, a duplicate id, an unknown composition, compose without functions, spec and functions', () => {
  const problems = (f: () => unknown) => {
    try {
      f();
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.issues.map((i) => `${i.path}: ${i.message}`);
    }
    assert.fail('no ConfigError');
  };
  assert.match(
    problems(() => config([{ module: good, export: 'exact', weight: 2 }], { name: 'gated', outcome: 'exact' })).join('\n'),
    /reward\.functions\.0\.weight: weight is the weighted_sum composition's/,
  );
  assert.match(
    problems(() =>
      config([
        { module: good, export: 'exact' },
        { module: good, export: 'exact' },
      ]),
    ).join('\n'),
    /reward\.functions\.1\.id: "exact" names functions\.0 too/,
  );
  assert.match(
    problems(() => config([{ module: good, export: 'exact' }], { name: 'weighted' })).join('\n'),
    /reward\.compose\.name: unknown composition; one of weighted_sum, gated/,
  );
  assert.match(problems(() => config([{ module: good, export: 'exact' }], { name: 'gated' })).join('\n'), /reward\.compose\.outcome/);
  assert.match(
    problems(() => parseRunConfig({ reward: { compose: { name: 'gated', outcome: 'x' } } })).join('\n'),
    /reward\.compose: compose combines reward\.functions/,
  );
  assert.match(
    problems(() => config([{ name: 'exact_match' }], undefined, { spec: { name: 'exact_match' } })).join('\n'),
    /reward\.spec: give either/,
  );
});

test("every composition option that names a component is checked against the functions' ids before the run: the field, the unknown id, the ids", () => {
  const fns = [
    { module: good, export: 'exact' },
    { module: good, export: 'brevity' },
  ];
  const ids = '"exact", "brevity"';
  // each option that names a component, set to a name no function has (the rest valid)
  const cases: [string, Record<string, unknown>][] = [
    ['weights.typo', { name: 'weighted_sum', weights: { exact: 1, typo: 1 } }],
    ['outcome', { name: 'gated', outcome: 'typo' }],
    ['dense.typo', { name: 'gated', outcome: 'exact', dense: { typo: 1 } }],
    ['levels.1.component', { name: 'lexicographic', levels: [{ component: 'exact' }, { component: 'typo' }] }],
    ['component', { name: 'sweet_spot', component: 'typo', tiers: [{ bound: 1, reward: 1 }] }],
    [
      'outcome.component',
      { name: 'sweet_spot', component: 'brevity/chars', tiers: [{ bound: 1, reward: 1 }], outcome: { component: 'typo' } },
    ],
    ['outcome', { name: 'clip_delta', outcome: 'typo' }],
    ['outcome', { name: 'process_outcome_schedule', outcome: 'typo', totalSteps: 10 }],
    ['process', { name: 'process_outcome_schedule', outcome: 'exact', process: 'typo', totalSteps: 10 }],
    ['rule', { name: 'hybrid', rule: 'typo', model: 'brevity' }],
    ['ruleConfidence', { name: 'hybrid', rule: 'exact', ruleConfidence: 'typo', model: 'brevity' }],
    ['model', { name: 'hybrid', rule: 'exact', model: 'typo' }],
    ['aspects.typo', { name: 'hybrid', rule: 'exact', model: 'brevity', aspects: { typo: 0.5 } }],
  ];
  for (const [field, compose] of cases) {
    let issues: { path: string; message: string }[] | undefined;
    try {
      config(fns, compose);
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      issues = err.issues;
    }
    assert.deepEqual(
      issues?.map((i) => `${i.path}: ${i.message}`),
      [
        `reward.compose.${field}: "typo" is not the id of a reward function; the ids are ${ids} (a function's own component is "<id>/<name>")`,
      ],
      `${compose.name as string} ${field}`,
    );
  }
  // a function's own component (<id>/<name>) and the ids themselves are accepted
  config(fns, { name: 'sweet_spot', component: 'brevity/chars', tiers: [{ bound: 1, reward: 1 }], outcome: { component: 'exact' } });
  config(fns, { name: 'hybrid', rule: 'exact', ruleConfidence: 'exact/confidence', model: 'brevity', aspects: { brevity: 1 } });
});

test('checkRunConfig refuses unusable modules before a run starts, one line naming the file and the export', async () => {
  const refused = async (f: unknown): Promise<string> => {
    try {
      await checkRunConfig(config([f]));
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.issues.map((i) => `${i.path}: ${i.message}`).join('\n');
    }
    assert.fail('accepted');
  };
  assert.match(
    await refused({ module: good, export: 'nope' }),
    new RegExp(`^reward\\.functions\\.0\\.export: ${good} has no export "nope" \\(it exports .*"exact"`),
  );
  assert.match(
    await refused({ module: good, export: 'notAReward' }),
    /^reward\.functions\.0\.module: export "notAReward" of .*good\.ts is number: export a function/,
  );
  assert.match(
    await refused({ module: `${fixtures}throws.ts`, export: 'x' }),
    /^reward\.functions\.0\.module: .*throws\.ts throws at import: reward module failed to initialise: missing API key$/,
  );
  assert.match(
    await refused({ module: `${fixtures}missing.ts` }),
    /^reward\.functions\.0\.module: .*missing\.ts does not exist: check the path/,
  );
  assert.match(await refused({ name: 'no_such_reward' }), /^reward\.functions\.0\.name: .*unknown reward "no_such_reward"/);
  assert.match(
    await refused({ module: good, export: 'exact', options: { a: 1 } }),
    /^reward\.functions\.0\.options: export "exact" of .* is a plain function: options are for a defineReward export/,
  );
  await checkRunConfig(config([{ module: good, export: 'levelBonus', options: { bonus: 1 } }, { name: 'format_tags' }]));
});
