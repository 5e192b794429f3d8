/**
 * `durable-rl worker` as a child process: it takes the per-queue worker entrypoints' concurrency
 * defaults, environment overrides and shutdown grace (workers/worker.ts workerProcessOptions),
 * with its own --QUEUE-concurrency flags on top; a bad setting is one line and exit 2 before
 * anything connects; SIGTERM stops it with exit 0.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { testTemporal, type TestTemporal } from '../../support/temporal.js';
import { root, runCli } from '../../support/cli.js';

let t: TestTemporal;
before(async () => {
  t = await testTemporal();
});
after(async () => {
  await t?.client.connection.close();
});

test('a bad concurrency or grace setting is one line naming it and exit 2', async () => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [
      ['worker', '--queues', 'reward'],
      { DURABLE_RL_REWARD_CONCURRENCY: 'many' },
      /^durable-rl: DURABLE_RL_REWARD_CONCURRENCY must be a positive integer, got "many"$/,
    ],
    [['worker', '--rollout-concurrency', '0'], {}, /^durable-rl: --rollout-concurrency must be a positive integer, got "0"$/],
    [
      ['worker', '--queues', 'reward', '--learner-concurrency', '2'],
      {},
      /^durable-rl: --learner-concurrency: this worker does not poll learner/,
    ],
    [['worker', '--shutdown-grace', 'soon'], {}, /^durable-rl: --shutdown-grace must be a positive number, got "soon"$/],
    [['worker', '--queues', 'reward,gpu'], {}, /^durable-rl: unknown queue "gpu" in --queues/],
  ];
  for (const [args, env, message] of cases) {
    const r = await runCli(args, { ...t.env, ...env });
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr.trim(), message);
    assert.ok(!r.stdout.includes('workers polling'), `${args.join(' ')} started workers`);
  }
});

test(
  'worker polls with the entrypoint defaults, the environment overrides and its flags, and exits 0 on SIGTERM',
  { timeout: 120_000 },
  async () => {
    // rollout: the default 1; reward: 3 from the environment; learner: 2 from the flag over the environment's 5.
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(root, 'workers/cli.ts'), 'worker', '--queues', 'rollout,reward,learner', '--learner-concurrency', '2'],
      {
        cwd: root,
        env: {
          ...process.env,
          ...t.env,
          DURABLE_RL_REWARD_CONCURRENCY: '3',
          DURABLE_RL_LEARNER_CONCURRENCY: '5',
          DURABLE_RL_SHUTDOWN_GRACE_SECONDS: '2',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (/tasks at once: .*\n/.test(out)) resolve();
        });
        child.stderr.on('data', (d: Buffer) => (out += d.toString()));
        void exited.then((code) => reject(new Error(`worker exited before polling (${code}):\n${out}`)));
      });
      assert.match(out, /^workers polling durable-rl\.rollout, durable-rl\.reward, durable-rl\.learner on \S+; Ctrl-C to stop$/m);
      assert.match(out, /^ {2}tasks at once: rollout 1, reward 3, learner 2; shutdown grace 2 s$/m);
      child.kill('SIGTERM');
      assert.equal(await exited, 0, out);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  },
);
