/**
 * Every estimator with its loss (issue 10 §2): an rl phase whose loss leaves `aggregation` unset
 * takes the aggregation its estimator's paper trains with; an explicit value wins; GSPO's sequence
 * ratios pair with sequence_mean and refuse anything else; the run record (run.json, written by
 * initRun) holds the value used, and reads back unchanged.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../../../activities/common/config.js';
import { initRun } from '../../../activities/checkpoint/init-run.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { readRunRecord } from '../../../activities/run/resolve.js';
import { runRecordKey } from '../../../activities/store/keys.js';
import { openStore } from '../../../activities/store/open.js';

// addition with 1-digit operands: the longest gold answer is 2 characters, so the completion budget is 2 + 4 = 6
const base = (rl: Record<string, unknown>): RunConfigInput => ({
  task: { name: 'addition', options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true } },
  model: { hidden: 16, layers: 1, heads: 2 },
  phases: [{ kind: 'rl', steps: 1, promptsPerStep: 2, groupSize: 2, ...rl } as never],
  engine: { threads: 1 },
});

function surrogate(rl: Record<string, unknown>) {
  const p = parseRunConfig(base(rl)).phases[0]!;
  assert.ok(p.kind === 'rl' && p.loss.name === 'clipped_surrogate');
  return p.loss.options;
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a ConfigError');
}

test('unset aggregation pairs with the estimator: grpo sequence_mean, dr_grpo and rloo constant over the 6-token completion budget, reinforce_pp token_mean', () => {
  assert.equal(surrogate({}).aggregation, 'sequence_mean');
  assert.equal(surrogate({ advantage: { estimator: 'grpo' } }).aggregation, 'sequence_mean');
  const dr = surrogate({ advantage: { estimator: 'dr_grpo' } });
  assert.deepEqual([dr.aggregation, dr.constantNormaliser], ['constant', 6]);
  const rloo = surrogate({ advantage: { estimator: 'rloo' } });
  assert.deepEqual([rloo.aggregation, rloo.constantNormaliser], ['constant', 6]);
  assert.equal(surrogate({ advantage: { estimator: 'reinforce_pp' } }).aggregation, 'token_mean');
  assert.equal(surrogate({ advantage: { estimator: 'sibling_grpo' } }).aggregation, 'sequence_mean');
});

test('dr_grpo: the constant is sampling.max_tokens (9) when set, and an explicit constantNormaliser (100) wins', () => {
  assert.equal(surrogate({ advantage: { estimator: 'dr_grpo' }, sampling: { max_tokens: 9 } }).constantNormaliser, 9);
  assert.equal(
    surrogate({ advantage: { estimator: 'dr_grpo' }, loss: { name: 'clipped_surrogate', options: { constantNormaliser: 100 } } })
      .constantNormaliser,
    100,
  );
});

test('an explicit aggregation wins over the pairing: dr_grpo with token_mean stays token_mean, without a constant', () => {
  const o = surrogate({ advantage: { estimator: 'dr_grpo' }, loss: { name: 'clipped_surrogate', options: { aggregation: 'token_mean' } } });
  assert.deepEqual([o.aggregation, o.constantNormaliser], ['token_mean', undefined]);
});

test('the main job (the empty config: grpo) keeps the token_mean it trained with before the pairing, stated in its default phases', () => {
  const rl = parseRunConfig({}).phases[1]!;
  assert.ok(rl.kind === 'rl' && rl.loss.name === 'clipped_surrogate');
  assert.equal(rl.advantage.estimator, 'grpo');
  assert.equal(rl.loss.options.aggregation, 'token_mean');
});

test('GSPO: ratioLevel sequence (and sequence_token) defaults to sequence_mean even for dr_grpo, and an explicit token_mean is refused naming phases.0.loss.options.aggregation', () => {
  assert.equal(surrogate({ loss: { name: 'clipped_surrogate', options: { ratioLevel: 'sequence' } } }).aggregation, 'sequence_mean');
  assert.equal(
    surrogate({
      advantage: { estimator: 'dr_grpo' },
      loss: { name: 'clipped_surrogate', options: { ratioLevel: 'sequence_token', advantages: 'token' } },
    }).aggregation,
    'sequence_mean',
  );
  assert.equal(
    surrogate({ loss: { name: 'clipped_surrogate', options: { ratioLevel: 'sequence', aggregation: 'sequence_mean' } } }).aggregation,
    'sequence_mean',
  );
  const e = configError(() =>
    parseRunConfig(base({ loss: { name: 'clipped_surrogate', options: { ratioLevel: 'sequence', aggregation: 'token_mean' } } })),
  );
  assert.equal(e.issues.length, 1);
  assert.equal(e.issues[0]!.path, 'phases.0.loss.options.aggregation');
  assert.match(e.issues[0]!.message, /GSPO.*sequence_mean.*got "token_mean"/);
});

test('kl.inReward is accepted by the run config (the workflow scores the reference before the advantages): the KL term keeps inReward true, reinforce_pp pairs token_mean', () => {
  const p = surrogate({
    advantage: { estimator: 'reinforce_pp' },
    loss: { name: 'clipped_surrogate', options: { kl: { beta: 0.01, estimator: 'k1', inReward: true } } },
  });
  assert.deepEqual(p.kl, { beta: 0.01, estimator: 'k1', direction: 'reverse', inReward: true });
  assert.equal(p.aggregation, 'token_mean');
});

test('parsing is idempotent: a resolved config parses to itself (run.json is parsed again by every activity)', () => {
  for (const rl of [
    {},
    { advantage: { estimator: 'dr_grpo' } },
    { loss: { name: 'clipped_surrogate', options: { ratioLevel: 'sequence' } } },
  ]) {
    const once = parseRunConfig(base(rl));
    assert.deepEqual(parseRunConfig(once), once);
  }
});

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'loss-pairing-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test('initRun writes run.json with the aggregation used: dr_grpo → constant, constantNormaliser 6 (the raw config said neither)', async () => {
  const storeUri = pathToFileURL(join(dir, 'store')).href;
  const raw = { ...base({ advantage: { estimator: 'dr_grpo' } }), store: storeUri, name: 'pairing' };
  await initRun({ storeUri, runId: 'pairing-1', config: raw as never, resumeFrom: null });
  const record = await readRunRecord(openStore(storeUri), 'pairing-1');
  const p = record.config.phases[0]!;
  assert.ok(p.kind === 'rl' && p.loss.name === 'clipped_surrogate');
  assert.deepEqual([p.loss.options.aggregation, p.loss.options.constantNormaliser], ['constant', 6]);
  // the bytes on disk hold it too (not only the re-parsed copy)
  const text = new TextDecoder().decode(await openStore(storeUri).get(runRecordKey('pairing-1')));
  assert.match(text, /"aggregation": "constant"/);
  assert.match(text, /"constantNormaliser": 6\b/);
});
