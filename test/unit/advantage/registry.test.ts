import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ConfigError } from '../../../activities/common/config.js';
import {
  computeAdvantages,
  estimatorNames,
  estimators,
  impliedAggregation,
  parseAdvantageConfig,
} from '../../../activities/advantage/index.js';
import { grpo } from '../../../activities/advantage/grpo.js';
import type { AdvantageSample } from '../../../activities/advantage/types.js';
import { group } from './helpers.js';

test("parseAdvantageConfig fills each estimator's defaults", () => {
  assert.deepEqual(parseAdvantageConfig({ estimator: 'grpo' }), {
    estimator: 'grpo',
    scale: 'group',
    std: 'sample',
    eps: 1e-6,
    dropZeroVarianceGroups: false,
  });
  assert.deepEqual(parseAdvantageConfig({ estimator: 'dr_grpo' }), { estimator: 'dr_grpo', dropZeroVarianceGroups: false });
});

test('parseAdvantageConfig names a bad option, an unknown option and an unknown estimator', () => {
  assert.throws(
    () => parseAdvantageConfig({ estimator: 'grpo', scale: 'groups' }),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /^invalid advantage config: scale: /);
      return true;
    },
  );
  assert.throws(() => parseAdvantageConfig({ estimator: 'rloo', eps: 1 }), /eps/);
  assert.throws(() => parseAdvantageConfig({ estimator: 'ppo' }), /estimator/);
  assert.throws(() => parseAdvantageConfig({ estimator: 'r3l', amplification: 0.5 }), /amplification/);
});

test('computeAdvantages dispatches to the configured estimator', () => {
  const samples = [...group('p', [1, 0, 0.5], [2, 3, 1])];
  const cfg = parseAdvantageConfig({ estimator: 'grpo', scale: 'none' });
  assert.ok(cfg.estimator === 'grpo');
  assert.deepEqual(
    computeAdvantages(cfg, { samples }).samples.map((s) => s.advantage),
    grpo({ samples }, cfg).samples.map((s) => s.advantage),
  );
  assert.deepEqual(
    computeAdvantages(cfg, { samples }).samples.map((s) => s.advantage),
    [0.5, -0.5, 0],
  );
});

test('each estimator declares the aggregation of its paper: grpo, sibling_grpo, r3l sequence_mean; dr_grpo, rloo constant; reinforce_pp(_baseline) token_mean', () => {
  const got = Object.fromEntries(estimatorNames.map((n) => [n, impliedAggregation({ estimator: n })]));
  assert.deepEqual(got, {
    grpo: 'sequence_mean',
    dr_grpo: 'constant',
    rloo: 'constant',
    reinforce_pp: 'token_mean',
    reinforce_pp_baseline: 'token_mean',
    sibling_grpo: 'sequence_mean',
    r3l: 'sequence_mean',
  });
  for (const n of estimatorNames) assert.ok(estimators[n].why.length > 20, `${n} says where its aggregation comes from`);
});

test('every registered estimator runs on a plain batch and returns one finite result per sample', () => {
  const samples: AdvantageSample[] = [...group('p', [1, 0, 0, 1], [3, 2, 4, 1]), ...group('q', [0.2, 0.9], [2, 2])];
  for (const name of estimatorNames) {
    const r = computeAdvantages(parseAdvantageConfig({ estimator: name }), { samples });
    assert.equal(r.samples.length, samples.length, name);
    assert.equal(r.stats.estimator, name);
    for (const s of r.samples) {
      assert.ok(Number.isFinite(s.advantage), `${name}: ${s.sampleId}`);
      assert.equal(s.lossMask!.length, samples.find((x) => x.sampleId === s.sampleId)!.completionLength, name);
    }
  }
});

test('the advantage README documents every estimator by its config name', () => {
  const readme = readFileSync(new URL('../../../activities/advantage/README.md', import.meta.url), 'utf8');
  for (const name of Object.keys(estimators)) assert.match(readme, new RegExp('`' + name + '`'), `README lacks ${name}`);
});
