import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../../../activities/common/config.js';
import { CounterRng } from '../../../activities/common/rng.js';
import {
  composeRewards,
  CompositionInputError,
  compositionNames,
  parseCompositionConfig,
  processWeightAt,
  type ComponentScores,
  type ComposedReward,
} from '../../../activities/reward/compose.js';

const ctx = { step: 0 };
const compose = (cfg: unknown, inputs: ComponentScores[], step = 0) => composeRewards(parseCompositionConfig(cfg), inputs, { step });
const totals = (rs: ComposedReward[]) => rs.map((r) => r.total);
function close(actual: ArrayLike<number>, expected: number[], tol = 1e-12): void {
  const a = Array.from(actual);
  assert.equal(a.length, expected.length, `${JSON.stringify(a)} vs ${JSON.stringify(expected)}`);
  a.forEach((v, i) => assert.ok(Math.abs(v - expected[i]!) <= tol, `index ${i}: ${v} != ${expected[i]} (${JSON.stringify(a)})`));
}

// weighted_sum ---------------------------------------------------------------------------------

test('weighted_sum: total = sum of weight * component, with each contribution in parts', () => {
  const [r] = compose({ name: 'weighted_sum', weights: { a: 2, b: -1 } }, [{ sampleId: 's', components: { a: 1, b: 0.5, ignored: 9 } }]);
  assert.equal(r!.total, 1.5);
  assert.deepEqual(r!.parts, { a: 2, b: -0.5 });
});

test('weighted_sum: a missing component is an error naming sample, component and what it has (or 0 with missing: zero)', () => {
  assert.throws(
    () => compose({ name: 'weighted_sum', weights: { acc: 1 } }, [{ sampleId: 'p3/1', components: { accuracy: 1 } }]),
    (e: unknown) => {
      assert.ok(e instanceof CompositionInputError);
      assert.match(e.message, /sample "p3\/1" has no component "acc" .* it has "accuracy"/);
      return true;
    },
  );
  const [r] = compose({ name: 'weighted_sum', weights: { acc: 1, fmt: 0.5 }, missing: 'zero' }, [
    { sampleId: 's', components: { fmt: 1 } },
  ]);
  assert.equal(r!.total, 0.5);
});

test('a NaN component is rejected, naming sample and component', () => {
  assert.throws(
    () => compose({ name: 'weighted_sum', weights: { a: 1 } }, [{ sampleId: 'x', components: { a: Number.NaN } }]),
    /component "a" of sample "x" is NaN/,
  );
});

// gated (G-RA) -----------------------------------------------------------------------------------

test('gated: dense rewards count only when the outcome reaches the threshold', () => {
  const cfg = { name: 'gated', outcome: 'tests', threshold: 1, dense: { lint: 0.1, steps_ok: 0.5 } };
  const rs = compose(cfg, [
    { sampleId: 'pass', components: { tests: 1, lint: 2, steps_ok: 1 } },
    { sampleId: 'fail', components: { tests: 0, lint: 5, steps_ok: 1 } },
  ]);
  close(totals(rs), [1.7, 0]);
  assert.deepEqual(rs[1]!.parts, { tests: 0, lint: 0, steps_ok: 0 });
});

test('gated: process rewards are accumulated under the gate too', () => {
  const cfg = { name: 'gated', outcome: 'tests', threshold: 0.5, processWeight: 0.5 };
  const rs = compose(cfg, [
    { sampleId: 'pass', components: { tests: 1 }, processRewards: [0.2, 0, 0.4] },
    { sampleId: 'fail', components: { tests: 0.4 }, processRewards: [0.2, 0, 0.4] },
  ]);
  close(rs[0]!.processRewards!, [0.1, 0, 0.2]);
  close(totals(rs), [1.3, 0.4]);
  close(rs[1]!.processRewards!, [0, 0, 0]);
});

// lexicographic (OPTIAGENT) ----------------------------------------------------------------------

const lexCfg = {
  name: 'lexicographic',
  levels: [
    { component: 'format', steps: 1, gate: true },
    { component: 'feasible', steps: 1 },
    { component: 'accuracy', steps: 4 },
    { component: 'heuristic', steps: 4 },
  ],
};

test('lexicographic: the mixed-radix code puts feasibility before accuracy before heuristics', () => {
  const rs = compose(lexCfg, [
    { sampleId: 'A', components: { format: 1, feasible: 1, accuracy: 0.5, heuristic: 1 } },
    { sampleId: 'B', components: { format: 1, feasible: 0, accuracy: 1, heuristic: 1 } },
    { sampleId: 'C', components: { format: 0, feasible: 1, accuracy: 1, heuristic: 1 } },
  ]);
  // radices 2,2,5,5: A = ((1*2+1)*5+2)*5+4 = 89, B = ((1*2+0)*5+4)*5+4 = 74, C gated to 0; / 99
  close(totals(rs), [89 / 99, 74 / 99, 0]);
  assert.deepEqual(rs[0]!.parts, { format: 1, feasible: 1, accuracy: 0.5, heuristic: 1 });
  assert.deepEqual(rs[2]!.parts, { format: 0, feasible: 0, accuracy: 0, heuristic: 0 });
});

test('lexicographic: totals order random samples exactly as their quantised level vectors compare', () => {
  const rng = new CounterRng(7, 'compose-lex');
  const levels = [
    { component: 'a', steps: 3 },
    { component: 'b', steps: 5 },
    { component: 'c', steps: 10 },
  ];
  const inputs: ComponentScores[] = [];
  for (let i = 0; i < 200; i++) {
    inputs.push({ sampleId: `s${i}`, components: { a: rng.uniform(3 * i), b: rng.uniform(3 * i + 1), c: rng.uniform(3 * i + 2) } });
  }
  const rs = compose({ name: 'lexicographic', levels }, inputs);
  const vec = (r: ComposedReward) => levels.map((l) => r.parts[l.component]!);
  const lex = (x: number[], y: number[]) => {
    for (let k = 0; k < x.length; k++) if (x[k] !== y[k]) return Math.sign(x[k]! - y[k]!);
    return 0;
  };
  for (let i = 0; i < rs.length; i++) {
    for (let j = 0; j < rs.length; j++) {
      assert.equal(Math.sign(rs[i]!.total - rs[j]!.total), lex(vec(rs[i]!), vec(rs[j]!)), `${i} vs ${j}`);
    }
  }
});

test('lexicographic: scores are normalised over [min, max] and clamped', () => {
  const rs = compose({ name: 'lexicographic', levels: [{ component: 'err', min: -10, max: 0, steps: 2 }] }, [
    { sampleId: 'a', components: { err: -5 } },
    { sampleId: 'b', components: { err: 3 } },
    { sampleId: 'c', components: { err: -20 } },
  ]);
  close(totals(rs), [0.5, 1, 0]);
});

test('lexicographic config: max <= min and too many quanta are rejected, naming the field', () => {
  assert.throws(
    () => parseCompositionConfig({ name: 'lexicographic', levels: [{ component: 'a', min: 1, max: 1 }] }),
    /levels\.0\.max: max must be greater than min/,
  );
  const many = Array.from({ length: 6 }, (_, i) => ({ component: `c${i}`, steps: 1000 }));
  assert.throws(() => parseCompositionConfig({ name: 'lexicographic', levels: many }), /levels: .*2\^53/);
});

// sweet_spot (SSL) -------------------------------------------------------------------------------

const sslCfg = {
  name: 'sweet_spot',
  component: 'distance',
  tiers: [
    { bound: 0.05, reward: 1 },
    { bound: 0.1, reward: 0.6 },
    { bound: 0.2, reward: 0.3 },
  ],
  outside: 0.1,
  outcome: { component: 'hit', threshold: 1 },
};

test('sweet_spot: successful samples get the reward of their distance tier, failures failReward', () => {
  const rs = compose(sslCfg, [
    { sampleId: 'core', components: { hit: 1, distance: 0.03 } },
    { sampleId: 'edge', components: { hit: 1, distance: 0.05 } },
    { sampleId: 'mid', components: { hit: 1, distance: 0.07 } },
    { sampleId: 'far', components: { hit: 1, distance: 0.5 } },
    { sampleId: 'miss', components: { hit: 0, distance: 0.01 } },
  ]);
  close(totals(rs), [1, 1, 0.6, 0.1, 0]);
  assert.deepEqual(
    rs.map((r) => r.parts.tier),
    [3, 3, 2, 0, 0],
  );
});

test('sweet_spot higher-is-better: progress tiers, every sample tiered when no outcome is given', () => {
  const cfg = {
    name: 'sweet_spot',
    component: 'progress',
    direction: 'higher-is-better',
    tiers: [
      { bound: 1, reward: 1 },
      { bound: 0.5, reward: 0.4 },
    ],
  };
  close(
    totals(
      compose(cfg, [
        { sampleId: 'a', components: { progress: 1 } },
        { sampleId: 'b', components: { progress: 0.7 } },
        { sampleId: 'c', components: { progress: 0.2 } },
      ]),
    ),
    [1, 0.4, 0],
  );
});

test('sweet_spot config must amplify toward the sweet spot and rank failures last', () => {
  const bad = (patch: Record<string, unknown>) => () => parseCompositionConfig({ ...sslCfg, ...patch });
  assert.throws(
    bad({
      tiers: [
        { bound: 0.05, reward: 1 },
        { bound: 0.1, reward: 1 },
      ],
    }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /tiers\.1\.reward: tier rewards must strictly decrease/);
      return true;
    },
  );
  assert.throws(
    bad({
      tiers: [
        { bound: 0.1, reward: 1 },
        { bound: 0.05, reward: 0.5 },
      ],
    }),
    /tiers\.1\.bound/,
  );
  assert.throws(bad({ failReward: 0.2 }), /failReward: failReward must not exceed outside/);
  assert.throws(bad({ outside: 0.5 }), /outside: outside must be below the last tier reward/);
});

// clip_delta (Gao et al. 2024) ---------------------------------------------------------------------

const prm = [0, 0.9, 0, 0.3, 0.7]; // steps end at tokens 1, 3, 4

test('clip: every step reward becomes min(r - eta, 0)', () => {
  const [r] = compose({ name: 'clip_delta', outcome: 'correct', mechanism: 'clip', eta: 0.5 }, [
    { sampleId: 's', components: { correct: 1 }, processRewards: prm },
  ]);
  close(r!.processRewards!, [0, 0, 0, -0.2, 0]);
  close([r!.total], [0.8]);
});

test('delta: step k gets r_k - r_{k+1}, the last step 0, so the process part telescopes to r_1 - r_K', () => {
  const [r] = compose({ name: 'clip_delta', outcome: 'correct', mechanism: 'delta' }, [
    { sampleId: 's', components: { correct: 0 }, processRewards: prm },
  ]);
  close(r!.processRewards!, [0, 0.6, 0, -0.4, 0]);
  close([r!.total], [0.9 - 0.7]);
});

test('clip-delta: deltas of the clipped rewards', () => {
  const [r] = compose({ name: 'clip_delta', outcome: 'correct', mechanism: 'clip-delta', eta: 0.5 }, [
    { sampleId: 's', components: { correct: 1 }, processRewards: prm },
  ]);
  close(r!.processRewards!, [0, 0.2, 0, -0.2, 0]);
  close([r!.total], [1]);
});

test('clip and delta stop repeated good steps from paying: more steps never raise the total', () => {
  for (const mechanism of ['clip', 'delta', 'clip-delta']) {
    const cfg = { name: 'clip_delta', outcome: 'correct', mechanism, eta: 0.5 };
    const [short, long] = compose(cfg, [
      { sampleId: 'short', components: { correct: 1 }, processRewards: [0.9, 0.8] },
      { sampleId: 'long', components: { correct: 1 }, processRewards: [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.8] },
    ]);
    assert.ok(long!.total <= short!.total + 1e-12, `${mechanism}: ${long!.total} > ${short!.total}`);
  }
});

test('clip_delta: explicit stepEnds count a step scored exactly 0; stepTokens all treats every token as a step', () => {
  const [a] = compose({ name: 'clip_delta', outcome: 'c', eta: 0.5 }, [
    { sampleId: 's', components: { c: 0 }, processRewards: [0, 0, 0.8], stepEnds: [0, 2] },
  ]);
  close(a!.processRewards!, [-0.5, 0, 0]);
  const [b] = compose({ name: 'clip_delta', outcome: 'c', eta: 0.5, stepTokens: 'all' }, [
    { sampleId: 's', components: { c: 0 }, processRewards: [0, 0, 0.8] },
  ]);
  close(b!.processRewards!, [-0.5, -0.5, 0]);
  assert.throws(
    () =>
      compose({ name: 'clip_delta', outcome: 'c' }, [{ sampleId: 's', components: { c: 0 }, processRewards: [0, 1], stepEnds: [1, 0] }]),
    /sample "s" has step end 0 at index 1: step ends must be increasing/,
  );
});

test('clip_delta without process rewards is the weighted outcome alone', () => {
  const [r] = compose({ name: 'clip_delta', outcome: 'c', outcomeWeight: 2 }, [{ sampleId: 's', components: { c: 1 } }]);
  assert.equal(r!.total, 2);
  assert.equal(r!.processRewards, undefined);
});

// process_outcome_schedule (Atom-Searcher) --------------------------------------------------------

test('schedule: the process weight moves from start to end over totalSteps (linear and cosine)', () => {
  const lin = parseCompositionConfig({ name: 'process_outcome_schedule', outcome: 'f1', process: 'atr', totalSteps: 100 });
  const cos = parseCompositionConfig({ name: 'process_outcome_schedule', outcome: 'f1', process: 'atr', totalSteps: 100, shape: 'cosine' });
  assert.ok(lin.name === 'process_outcome_schedule' && cos.name === 'process_outcome_schedule');
  close(
    [0, 50, 100, 200].map((s) => processWeightAt(lin, s)),
    [0.5, 0.25, 0, 0],
  );
  close(
    [0, 25, 50, 100].map((s) => processWeightAt(cos, s)),
    [0.5, 0.25 * (1 + Math.SQRT1_2), 0.25, 0],
  );
});

test('schedule: total = (1 - w) * outcome + w * process at the given step', () => {
  const cfg = { name: 'process_outcome_schedule', outcome: 'f1', process: 'atr', totalSteps: 100 };
  const input = [{ sampleId: 's', components: { f1: 1, atr: 0.6 } }];
  close(totals(compose(cfg, input, 50)), [0.75 + 0.25 * 0.6]);
  close(totals(compose(cfg, input, 0)), [0.5 + 0.5 * 0.6]);
  close(totals(compose(cfg, input, 150)), [1]);
});

test('schedule with process: null sums the per-token process rewards and scales them by w', () => {
  const cfg = { name: 'process_outcome_schedule', outcome: 'f1', totalSteps: 10 };
  const [r] = compose(cfg, [{ sampleId: 's', components: { f1: 0 }, processRewards: [0.2, 0.4] }], 5);
  close(r!.processRewards!, [0.05, 0.1]);
  close([r!.total], [0.15]);
  assert.throws(() => compose(cfg, [{ sampleId: 'q', components: { f1: 0 } }], 5), /sample "q" has no processRewards/);
});

// hybrid ---------------------------------------------------------------------------------------

const hybridCfg = { name: 'hybrid', rule: 'exact', ruleConfidence: 'exact_conf', model: 'rm', aspects: { instruction: 0.5 } };

test('hybrid gate: the rule verdict where its confidence passes, the reward model elsewhere', () => {
  const rs = compose(hybridCfg, [
    { sampleId: 'sure', components: { exact: 1, exact_conf: 0.9, rm: 0.2, instruction: 1 } },
    { sampleId: 'unsure', components: { exact: 1, exact_conf: 0.2, rm: 0.2, instruction: 1 } },
    { sampleId: 'no-rule', components: { rm: 0.7, instruction: 0 } },
  ]);
  close(totals(rs), [1.5, 0.7, 0.7]);
  assert.deepEqual(rs[0]!.parts, { accuracy: 1, instruction: 0.5 });
});

test('hybrid blend: confidence-weighted mix of rule and model', () => {
  const [r] = compose({ ...hybridCfg, mixing: 'blend', aspects: {} }, [
    { sampleId: 's', components: { exact: 1, exact_conf: 0.25, rm: 0.6 } },
  ]);
  close([r!.total], [0.25 + 0.75 * 0.6]);
});

test('hybrid length penalty ramps from target to limit with the given power', () => {
  const cfg = { name: 'hybrid', rule: 'exact', model: 'rm', lengthPenalty: { weight: 0.2, target: 100, limit: 200, power: 2 } };
  const rs = compose(cfg, [
    { sampleId: 'short', components: { rm: 1 }, completionLength: 80 },
    { sampleId: 'mid', components: { rm: 1 }, completionLength: 150 },
    { sampleId: 'long', components: { rm: 1 }, completionLength: 300 },
  ]);
  close(totals(rs), [1, 1 - 0.05, 0.8]);
  assert.throws(() => compose(cfg, [{ sampleId: 'n', components: { rm: 1 } }]), /sample "n" has no completionLength/);
  assert.throws(
    () => compose(hybridCfg, [{ sampleId: 'c', components: { exact: 1, exact_conf: 2, rm: 0, instruction: 0 } }]),
    /confidence must lie in \[0, 1\]/,
  );
});

// registry -------------------------------------------------------------------------------------

test('parseCompositionConfig fills defaults and names bad fields', () => {
  assert.deepEqual(parseCompositionConfig({ name: 'gated', outcome: 'ok' }), {
    name: 'gated',
    outcome: 'ok',
    threshold: 1,
    outcomeWeight: 1,
    dense: {},
    processWeight: 0,
  });
  assert.throws(() => parseCompositionConfig({ name: 'weighted' }), /invalid reward composition: name/);
  assert.throws(() => parseCompositionConfig({ name: 'weighted_sum', weights: {} }), /weights: give at least one component weight/);
  assert.throws(() => parseCompositionConfig({ name: 'process_outcome_schedule', outcome: 'f1' }), /totalSteps/);
});

test('composeRewards keeps input order and checks each input has an id', () => {
  const rs = composeRewards(
    parseCompositionConfig({ name: 'weighted_sum', weights: { a: 1 } }),
    [
      { sampleId: 'z', components: { a: 3 } },
      { sampleId: 'y', components: { a: 1 } },
    ],
    ctx,
  );
  assert.deepEqual(
    rs.map((r) => [r.sampleId, r.total]),
    [
      ['z', 3],
      ['y', 1],
    ],
  );
  assert.throws(
    () => composeRewards(parseCompositionConfig({ name: 'weighted_sum', weights: { a: 1 } }), [{ sampleId: '', components: {} }], ctx),
    /index 0 has no sampleId/,
  );
});

test('COMPOSE.md documents every composition by its config name', () => {
  const doc = readFileSync(new URL('../../../activities/reward/COMPOSE.md', import.meta.url), 'utf8');
  for (const name of compositionNames) assert.match(doc, new RegExp('`' + name + '`'), `COMPOSE.md lacks ${name}`);
});
