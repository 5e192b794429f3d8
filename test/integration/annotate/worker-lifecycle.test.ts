/**
 * Worker groups (workers/worker.ts) against the real Temporal dev server: they never keep a
 * process alive after they are done, whether creation failed half-way or they were stopped before
 * they ran. And connection settings that are wrong are reported as such (workers/temporal.ts).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { testTemporal, type TestTemporal } from '../../support/temporal.js';
import { createWorkers } from '../../../workers/worker.js';
import { connectClient, connectWorker, temporalConfig } from '../../../workers/temporal.js';

const root = fileURLToPath(new URL('../../..', import.meta.url));
let t: TestTemporal;

before(async () => {
  t = await testTemporal();
});
after(async () => {
  await t?.client.connection.close();
});

test('a worker group whose creation fails half-way releases its connection: the process exits by itself', async () => {
  // The reward worker is created, then the control worker fails on a broken bundle.
  const script = `
    import { createWorkers } from './workers/worker.ts';
    import { temporalConfig } from './workers/temporal.ts';
    const temporal = temporalConfig({ address: process.env.DURABLE_RL_TEMPORAL_ADDRESS, namespace: process.env.DURABLE_RL_TEMPORAL_NAMESPACE });
    await createWorkers({ temporal, queues: ['reward', 'control'], workflowBundle: { code: 'not a bundle (' } }).then(
      () => console.log('created'),
      (err) => console.log('failed: ' + err.message),
    );`;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: root,
    env: { ...process.env, ...t.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  // SIGKILL: the SDK's runtime catches SIGTERM, and a leaked connection would ignore it.
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const code = await exited;
  clearTimeout(timer);
  assert.match(out, /failed: /, out);
  assert.equal(code, 0, `the process did not exit on its own (killed after 30 s):\n${out}`);
});

test('a worker group stopped before it runs stops at once when run', async () => {
  const abort = new AbortController();
  abort.abort();
  const group = await createWorkers({ temporal: t.config, queues: ['reward'], signal: abort.signal, shutdownGraceTimeMs: 500 });
  const t0 = Date.now();
  await group.run();
  assert.ok(Date.now() - t0 < 15_000, 'run() returned after the stop request');
  assert.deepEqual(
    group.workers.map((w) => w.getState()),
    ['STOPPED'],
  );

  // shutdown() before run(), without a signal, is not an error either.
  const second = await createWorkers({ temporal: t.config, queues: ['reward'], shutdownGraceTimeMs: 500 });
  assert.doesNotThrow(() => second.shutdown());
  await second.run();
  assert.deepEqual(
    second.workers.map((w) => w.getState()),
    ['STOPPED'],
  );
});

test('a TLS file that cannot be read is named, not reported as an unreachable server', async () => {
  const cfg = temporalConfig({ address: t.config.address, tls: { serverRootCACertPath: '/nonexistent/ca.pem' } });
  for (const connect of [connectClient, connectWorker]) {
    await assert.rejects(connect(cfg), (err: Error) => {
      assert.match(err.message, /cannot read tls\.serverRootCACertPath "\/nonexistent\/ca\.pem": ENOENT/);
      assert.doesNotMatch(err.message, /cannot reach Temporal/);
      return true;
    });
  }
});
