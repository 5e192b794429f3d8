/** The run config's `environment` option (activities/run/environment.ts): defaults, limits, and what is refused before a run starts. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../../activities/common/config.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { checkRunConfig, resolveRun } from '../../../activities/run/resolve.js';

const base = (over: Partial<RunConfigInput> = {}): RunConfigInput => ({
  name: 'env',
  store: 'file:///tmp/env-config-test',
  environment: { name: 'calculator' },
  model: { hidden: 16, layers: 1, heads: 2 },
  phases: [{ kind: 'rl', steps: 1, promptsPerStep: 2, groupSize: 2, lr: 1e-3 }],
  ...over,
});

async function problems(input: RunConfigInput): Promise<string[]> {
  try {
    await checkRunConfig(parseRunConfig(input));
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

describe('run config: environment', () => {
  it('null by default; given, the toolRetry defaults are 5 attempts from 100 ms doubling to at most 2000 ms', () => {
    assert.equal(parseRunConfig({}).environment, null);
    assert.deepEqual(parseRunConfig(base()).environment!.toolRetry, {
      maxAttempts: 5,
      initialBackoffMs: 100,
      backoffCoefficient: 2,
      maxBackoffMs: 2000,
    });
  });

  it("toolConcurrency: 8 episodes' tool calls at once by default, as given otherwise; 0 is refused naming the field", () => {
    assert.equal(parseRunConfig(base()).environment!.toolConcurrency, 8);
    assert.equal(parseRunConfig(base({ environment: { name: 'calculator', toolConcurrency: 2 } })).environment!.toolConcurrency, 2);
    assert.throws(
      () => parseRunConfig(base({ environment: { name: 'calculator', toolConcurrency: 0 } })),
      (e: unknown) => e instanceof ConfigError && /environment\.toolConcurrency/.test(e.message),
    );
  });

  it("the resolved run's prompts, alphabet and reward are the environment's; limits override its own (maxTurns 2, maxTotalTokens 64); the model has room for an episode", () => {
    const run = resolveRun(parseRunConfig(base({ environment: { name: 'calculator', limits: { maxTurns: 2, maxTotalTokens: 64 } } })));
    assert.equal(run.environment!.name, 'calculator');
    assert.equal(run.environment!.limits.maxTurns, 2);
    assert.equal(run.environment!.limits.maxTotalTokens, 64);
    assert.match(run.task.prompts(1, 'train', 1)[0]!.promptId, /^calculator-train-000000$/);
    assert.ok(run.model.maxPositions >= 64);
    assert.equal(run.createReward().name, run.environment!.reward!.name);
    assert.match(run.task.sftTarget(run.task.prompts(1, 'train', 1)[0]!), /<a>\d+<\/a>$/);
  });

  it('an unknown environment name is refused naming the built-ins', () => {
    assert.throws(
      () => parseRunConfig(base({ environment: { name: 'chess' } })),
      (e: unknown) => e instanceof ConfigError && /environment\.name.*built-in environments: calculator, lookup/.test(e.message),
    );
  });

  it('before a run starts: a bad environment option, tree and retry rollouts, and online_dpo are refused, each naming its field', async () => {
    assert.deepEqual(
      (await problems(base({ environment: { name: 'calculator', options: { maxTurns: 0 } } }))).map((p) => p.split(':')[0]),
      ['environment.options'],
    );
    const tree = await problems(
      base({
        phases: [
          { kind: 'rl', steps: 1, promptsPerStep: 2, groupSize: 4, lr: 1e-3, tree: {}, advantage: { estimator: 'sibling_grpo' } } as never,
        ],
      }),
    );
    assert.ok(
      tree.some((p) => p.startsWith('phases.0.tree: tree rollouts are single completions')),
      tree.join('; '),
    );
    const dpo = await problems(base({ phases: [{ kind: 'online_dpo', steps: 1, promptsPerStep: 2, groupSize: 2, lr: 1e-3 } as never] }));
    assert.ok(
      dpo.some((p) => p.startsWith('phases.0.kind: online_dpo samples single completions')),
      dpo.join('; '),
    );
    assert.deepEqual(await problems(base()), []);
  });
});
