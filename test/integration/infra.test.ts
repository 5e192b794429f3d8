/**
 * infra/ against the real binaries, in a temporary state dir so the shared default servers are
 * never touched: concurrent `up`, reuse, search attributes, bucket, stale pid and lock recovery,
 * restart on the same address with the same data, busy ports, external servers, missing Go, down.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { GetObjectCommand, HeadBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes.js';
import {
  down,
  endpointsEnv,
  ensure,
  startMinio,
  startTemporal,
  status,
  stopMinio,
  stopTemporal,
  type InfraEndpoints,
  type UpResult,
} from '../../infra/index.js';
import { GoMissingError, MINIO_BINARY, resolveBinary, TEMPORAL_BINARY } from '../../infra/binaries.js';
import { acquireLock } from '../../infra/lock.js';
import { externalS3, externalTemporal } from '../../infra/env.js';
import { isPortFree } from '../../infra/proc.js';
import { lockFile } from '../../infra/state.js';
import { SEARCH_ATTRIBUTES } from '../../workflows/search-attributes.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const stateDir = mkdtempSync(join(tmpdir(), 'drl-infra-test-'));
const scratch = mkdtempSync(join(tmpdir(), 'drl-infra-scratch-'));

/** Runs `infra/cli.ts` in a child process. */
function cli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'infra', 'cli.ts'), ...args], { cwd: root, env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** True while any thread of `pid` runs: a Go server's main thread can be a zombie while the others still hold its sockets. */
function running(pid: number | string): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).some((tid) => {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      return !'ZX'.includes(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
    });
  } catch {
    return false; // gone
  }
}

/** Running processes whose command line mentions `dir`: the servers of that state dir. */
function serverProcesses(dir: string): { pid: number; bin: string }[] {
  const out: { pid: number; bin: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const args = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0');
      if (args.some((a) => a.startsWith(dir)) && running(name)) out.push({ pid: Number(name), bin: args[0] });
    } catch {
      /* exited while we looked */
    }
  }
  return out;
}

/** By pid, not by command line: an exiting process's command line reads as empty. */
function alive(pid: number): boolean {
  return running(pid);
}

async function untilDead(pid: number): Promise<void> {
  for (let i = 0; i < 100 && alive(pid); i++) await sleep(50);
  assert.equal(alive(pid), false, `pid ${pid} should have exited`);
}

/** Resolves to 'blocked' if `p` has not settled within `ms` (for "does not wait for the lock"). */
function orBlocked<T>(p: Promise<T>, ms: number): Promise<T | 'blocked'> {
  // An unref'd timer: once `p` wins, the pending timeout must not keep the test process alive.
  return Promise.race([p, sleep(ms, undefined, { ref: false }).then(() => 'blocked' as const)]);
}

function s3(e: InfraEndpoints): S3Client {
  return new S3Client({
    endpoint: e.minio.endpoint,
    region: e.minio.region,
    forcePathStyle: true,
    credentials: { accessKeyId: e.minio.accessKeyId, secretAccessKey: e.minio.secretAccessKey },
  });
}

/**
 * The servers of this file's state dir, started if they are not running (`ensure` is idempotent:
 * healthy servers are reused as they are). Each test that needs servers calls it first, so it
 * finds them up and learns their current endpoints whatever ran before it, or if nothing did.
 */
function serversUp(): Promise<UpResult> {
  return ensure({ stateDir, quiet: true });
}

describe('infra', () => {
  before(() => {
    // The test owns its state dir; make sure no outside settings redirect it to other servers.
    for (const k of Object.keys(process.env))
      if (k.startsWith('DURABLE_RL_TEMPORAL_') || k.startsWith('DURABLE_RL_S3_')) delete process.env[k];
  });

  after(async () => {
    await down({ stateDir, purge: true, quiet: true }).catch(() => {});
    for (const p of [...serverProcesses(stateDir), ...serverProcesses(scratch)]) process.kill(p.pid, 'SIGKILL');
    rmSync(stateDir, { recursive: true, force: true });
    rmSync(scratch, { recursive: true, force: true });
  });

  it('two concurrent `up` processes on a fresh state dir end with one server set', async () => {
    const fresh = join(scratch, 'concurrent-up-state');
    try {
      const [a, b] = await Promise.all([cli(['up', '--json', '--state-dir', fresh]), cli(['up', '--json', '--state-dir', fresh])]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      const ra = JSON.parse(a.stdout) as UpResult & { seconds: number };
      const rb = JSON.parse(b.stdout) as UpResult & { seconds: number };
      assert.deepEqual(ra.endpoints, rb.endpoints);
      for (const c of ['temporal', 'minio'] as const) {
        const started = [ra.actions[c], rb.actions[c]].filter((x) => x === 'started').length;
        assert.equal(started, 1, `${c} must be started by exactly one process (got ${ra.actions[c]} and ${rb.actions[c]})`);
      }
      const procs = serverProcesses(fresh);
      assert.equal(procs.length, 2, `expected one temporal and one minio process, got ${JSON.stringify(procs)}`);
      assert.ok(procs.some((p) => p.bin.includes('temporal')) && procs.some((p) => p.bin.includes('minio')));
      assert.match(ra.endpoints.temporal.address, /^127\.0\.0\.1:\d+$/);
      assert.match(ra.endpoints.temporal.uiUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.match(ra.endpoints.minio.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(ra.endpoints.minio.bucket, 'durable-rl');
    } finally {
      await down({ stateDir: fresh, purge: true, quiet: true }).catch(() => {});
    }
  });

  it('keeps credentials in a 0600 state file', async () => {
    const { endpoints } = await serversUp();
    const st = spawnSync('stat', ['-c', '%a', join(stateDir, 'state.json')], { encoding: 'utf8' });
    assert.equal(st.stdout.trim(), '600');
    const saved = JSON.parse(readFileSync(join(stateDir, 'state.json'), 'utf8')) as { minio: { secretAccessKey: string } };
    assert.equal(saved.minio.secretAccessKey, endpoints.minio.secretAccessKey);
    assert.ok(endpoints.minio.secretAccessKey.length >= 32);
  });

  it('a second up reuses the healthy servers (same pids and ports) without taking the lock', async (t) => {
    const first = await serversUp();
    const before = await status({ stateDir });
    assert.equal(before.temporal.state, 'running');
    assert.equal(before.minio.state, 'running');
    // Hold the state lock ourselves: the slow path would wait for it, the fast path must not.
    const release = await acquireLock(lockFile(stateDir), { what: 'test', purpose: 'proving the fast path takes no lock' });
    const t0 = Date.now();
    let r: UpResult | 'blocked';
    try {
      r = await orBlocked(ensure({ stateDir, quiet: true }), 20_000);
    } finally {
      release();
    }
    t.diagnostic(`warm up(): ${Date.now() - t0} ms`);
    if (r === 'blocked') assert.fail('up() on healthy servers waited for the lock');
    assert.deepEqual(r.actions, { temporal: 'reused', minio: 'reused' });
    assert.deepEqual(r.endpoints, first.endpoints);
    const after = await status({ stateDir });
    assert.equal(after.temporal.pid, before.temporal.pid);
    assert.equal(after.minio.pid, before.minio.pid);
  });

  it("registers the project's custom search attributes", async () => {
    const { address, namespace } = (await serversUp()).endpoints.temporal;
    const conn = await Connection.connect({ address });
    try {
      const r = await conn.operatorService.listSearchAttributes({ namespace });
      const custom = r.customAttributes ?? {};
      for (const sa of SEARCH_ATTRIBUTES) {
        assert.equal(
          custom[sa.name],
          encodeSearchAttributeIndexedValueType(sa.type.toUpperCase() as 'KEYWORD'),
          `${sa.name} as ${sa.type}`,
        );
      }
    } finally {
      await conn.close();
    }
  });

  it('registers search attributes added to the list after the server was started', async () => {
    const { address, namespace } = (await serversUp()).endpoints.temporal;
    const victim = SEARCH_ATTRIBUTES[SEARCH_ATTRIBUTES.length - 1].name;
    const list = async (): Promise<string[]> => {
      const conn = await Connection.connect({ address });
      try {
        return Object.keys((await conn.operatorService.listSearchAttributes({ namespace })).customAttributes ?? {});
      } finally {
        await conn.close();
      }
    };
    // Simulate a server from before `victim` joined SEARCH_ATTRIBUTES: unregister it, and forget it in the state.
    const conn = await Connection.connect({ address });
    try {
      await conn.operatorService.removeSearchAttributes({ namespace, searchAttributes: [victim] });
    } finally {
      await conn.close();
    }
    assert.equal((await list()).includes(victim), false);
    const file = join(stateDir, 'state.json');
    const saved = JSON.parse(readFileSync(file, 'utf8')) as { temporal: { searchAttributes: string[]; pid: number } };
    saved.temporal.searchAttributes = saved.temporal.searchAttributes.filter((n) => n !== victim);
    writeFileSync(file, JSON.stringify(saved), { mode: 0o600 });

    const r = await ensure({ stateDir, quiet: true });
    assert.equal(r.actions.temporal, 'reused', 'registering attributes needs no restart');
    assert.equal((await status({ stateDir })).temporal.pid, saved.temporal.pid);
    assert.ok((await list()).includes(victim), `${victim} registered again`);
  });

  it('creates the bucket, and S3 works with the returned credentials (path-style)', async () => {
    const { endpoints } = await serversUp();
    const client = s3(endpoints);
    try {
      await client.send(new HeadBucketCommand({ Bucket: endpoints.minio.bucket }));
      await client.send(new PutObjectCommand({ Bucket: endpoints.minio.bucket, Key: 'infra-test/hello.txt', Body: 'hello' }));
      const got = await client.send(new GetObjectCommand({ Bucket: endpoints.minio.bucket, Key: 'infra-test/hello.txt' }));
      assert.equal(await got.Body?.transformToString(), 'hello');
    } finally {
      client.destroy();
    }
  });

  it('recovers a stale pid: a killed MinIO is restarted on the same port with its data', async () => {
    const first = await serversUp();
    const writer = s3(first.endpoints);
    try {
      await writer.send(new PutObjectCommand({ Bucket: first.endpoints.minio.bucket, Key: 'infra-test/before-kill.txt', Body: 'kept' }));
    } finally {
      writer.destroy();
    }
    const pid = (await status({ stateDir })).minio.pid as number;
    process.kill(pid, 'SIGKILL');
    await untilDead(pid);
    const st = await status({ stateDir });
    assert.equal(st.minio.state, 'stopped', JSON.stringify(st.minio));
    assert.match(st.minio.detail ?? '', /stale/);

    const r = await ensure({ stateDir, quiet: true });
    assert.deepEqual(r.actions, { temporal: 'reused', minio: 'restarted' });
    assert.equal(r.endpoints.minio.endpoint, first.endpoints.minio.endpoint);
    const now = await status({ stateDir });
    assert.notEqual(now.minio.pid, pid);
    const client = s3(r.endpoints);
    try {
      const got = await client.send(new GetObjectCommand({ Bucket: r.endpoints.minio.bucket, Key: 'infra-test/before-kill.txt' }));
      assert.equal(await got.Body?.transformToString(), 'kept');
    } finally {
      client.destroy();
    }
  });

  it('breaks a stale lock left by a dead process', async () => {
    await serversUp();
    await stopMinio({ stateDir, quiet: true });
    const dead = spawnSync('true').pid as number; // exited and reaped: its pid names no process
    writeFileSync(
      lockFile(stateDir),
      JSON.stringify({ pid: dead, procStart: null, host: hostname(), since: new Date().toISOString(), purpose: 'crashed test' }),
    );
    const r = await orBlocked(ensure({ stateDir, quiet: true, components: ['minio'] }), 60_000);
    if (r === 'blocked') assert.fail('up() waited on a lock whose holder is dead');
    assert.equal(r.actions.minio, 'restarted');
    assert.equal(existsSync(lockFile(stateDir)), false, 'the lock is released afterwards');
  });

  it('stopTemporal/startTemporal restart on the same address with the same SQLite data', async () => {
    const first = await serversUp();
    const { address, namespace } = first.endpoints.temporal;
    const workflowId = `infra-test-${process.pid}`;
    let conn = await Connection.connect({ address });
    try {
      // No worker polls this queue: the workflow simply stays open, recorded in SQLite.
      await new Client({ connection: conn, namespace }).workflow.start('InfraTestNoop', { taskQueue: 'infra-test-no-worker', workflowId });
    } finally {
      await conn.close();
    }
    const pid = (await status({ stateDir })).temporal.pid as number;
    await stopTemporal({ stateDir, quiet: true });
    assert.equal(alive(pid), false);
    assert.equal(await isPortFree(Number(address.split(':')[1])), true, 'the gRPC port is released');
    assert.equal((await status({ stateDir })).temporal.state, 'stopped');

    const e = await startTemporal({ stateDir, quiet: true });
    assert.equal(e.address, address);
    assert.equal(e.uiUrl, first.endpoints.temporal.uiUrl);
    conn = await Connection.connect({ address });
    try {
      const d = await new Client({ connection: conn, namespace }).workflow.getHandle(workflowId).describe();
      assert.equal(d.status.name, 'RUNNING');
      assert.equal(d.type, 'InfraTestNoop');
    } finally {
      await conn.close();
    }
  });

  it('avoids a port taken by another process (startMinio refuses, up moves)', async () => {
    await serversUp();
    const oldPort = Number(new URL((await status({ stateDir })).minio.endpoint).port);
    await stopMinio({ stateDir, quiet: true });
    const squatter: Server = createServer();
    await new Promise<void>((res) => squatter.listen(oldPort, '127.0.0.1', res));
    try {
      await assert.rejects(startMinio({ stateDir, quiet: true }), new RegExp(`api port ${oldPort} is in use`));
      const r = await ensure({ stateDir, quiet: true });
      assert.equal(r.actions.minio, 'restarted');
      assert.notEqual(Number(new URL(r.endpoints.minio.endpoint).port), oldPort);
      const client = s3(r.endpoints);
      try {
        await client.send(new HeadBucketCommand({ Bucket: r.endpoints.minio.bucket }));
      } finally {
        client.destroy();
      }
    } finally {
      await new Promise((res) => squatter.close(res));
    }
  });

  it('uses externally provided servers instead of starting its own', async () => {
    const cur = (await serversUp()).endpoints;
    const otherDir = join(scratch, 'external-state');
    const env = { ...process.env, ...endpointsEnv(cur) };
    const r = await ensure({ stateDir: otherDir, env, quiet: true });
    assert.deepEqual(r.actions, { temporal: 'external', minio: 'external' });
    assert.deepEqual(r.endpoints, cur);
    assert.equal(existsSync(otherDir), false, 'no state dir, no servers');
    assert.deepEqual(externalTemporal(env), cur.temporal);
    assert.deepEqual(externalS3(env), cur.minio);
    assert.throws(() => externalS3({ DURABLE_RL_S3_ENDPOINT: 'not a url' }), /DURABLE_RL_S3_ENDPOINT/);
    assert.throws(
      () => externalS3({ DURABLE_RL_S3_ENDPOINT: 'http://x:9000', DURABLE_RL_S3_ACCESS_KEY_ID: 'k' }),
      /DURABLE_RL_S3_SECRET_ACCESS_KEY/,
    );
  });

  it('without Go or a binary, says how to install Go or where to point instead', async () => {
    const env = { PATH: join(scratch, 'empty-path'), HOME: scratch, DURABLE_RL_CACHE_DIR: join(scratch, 'cache') };
    await assert.rejects(resolveBinary(TEMPORAL_BINARY, { env }), (e: Error) => {
      assert.ok(e instanceof GoMissingError);
      assert.match(e.message, /go\.dev/);
      assert.match(e.message, /TEMPORAL_CLI_PATH/);
      assert.match(e.message, /DURABLE_RL_TEMPORAL_ADDRESS/);
      return true;
    });
    await assert.rejects(
      resolveBinary(TEMPORAL_BINARY, { env: { ...env, TEMPORAL_CLI_PATH: join(scratch, 'nope') } }),
      /TEMPORAL_CLI_PATH=.*not an executable/,
    );
  });

  it('builds a missing binary once, even when asked concurrently, and reports a failed build', async () => {
    // A stand-in Go toolchain (the real builds take minutes): it logs each `go install` and
    // writes an executable into $GOBIN, or fails for minio.
    const fakeBin = join(scratch, 'fake-go-bin');
    const calls = join(scratch, 'go-install-calls.log');
    mkdirSync(fakeBin, { recursive: true });
    writeFileSync(
      join(fakeBin, 'go'),
      [
        '#!/bin/sh',
        'if [ "$1" = version ]; then echo "go version go0.0-fake"; exit 0; fi',
        'echo "$2" >> "$FAKE_GO_CALLS"',
        'case "$2" in *minio*) echo "boom: cannot build minio" >&2; exit 3;; esac',
        'sleep 1',
        'printf "#!/bin/sh\\necho fake temporal\\n" > "$GOBIN/temporal" && chmod +x "$GOBIN/temporal"',
        '',
      ].join('\n'),
      { mode: 0o755 },
    );
    const cache = join(scratch, 'build-cache');
    const env = { PATH: `${fakeBin}:/usr/bin:/bin`, HOME: scratch, DURABLE_RL_CACHE_DIR: cache, FAKE_GO_CALLS: calls };
    const progress: string[] = [];
    const [a, b] = await Promise.all([
      resolveBinary(TEMPORAL_BINARY, { env, progress: (m) => progress.push(m) }),
      resolveBinary(TEMPORAL_BINARY, { env, progress: (m) => progress.push(m) }),
    ]);
    assert.equal(readFileSync(calls, 'utf8'), `${TEMPORAL_BINARY.module}@${TEMPORAL_BINARY.version}\n`, 'exactly one go install');
    assert.equal(a.path, join(cache, 'bin', `temporal-${TEMPORAL_BINARY.version}`));
    assert.equal(b.path, a.path);
    assert.deepEqual([a.source, b.source].sort(), ['built', 'cache']);
    assert.equal(spawnSync(a.path, { encoding: 'utf8' }).stdout.trim(), 'fake temporal');
    assert.ok(
      progress.some((m) => m.startsWith('building temporal v1.5.1')),
      progress.join('\n'),
    );
    assert.equal((await resolveBinary(TEMPORAL_BINARY, { env })).source, 'cache');
    assert.deepEqual(
      readdirSync(join(cache, 'bin')).filter((n) => n.startsWith('.build-')),
      [],
      'no temporary GOBIN left behind',
    );

    await assert.rejects(
      resolveBinary(MINIO_BINARY, { env }),
      /go install github\.com\/minio\/minio@.*failed \(exit 3\)[\s\S]*boom: cannot build minio/,
    );
  });

  it('down stops both servers and frees their ports', async () => {
    await serversUp();
    const st = await status({ stateDir });
    const pids = [st.temporal.pid, st.minio.pid] as number[];
    const ports = [...Object.values(st.temporal.ports), ...Object.values(st.minio.ports)];
    const r = await cli(['down', '--state-dir', stateDir]);
    assert.equal(r.code, 0, r.stderr);
    for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} still running`);
    assert.deepEqual(serverProcesses(stateDir), []);
    for (const p of ports) assert.equal(await isPortFree(p), true, `port ${p} still bound`);
    const after = await status({ stateDir });
    assert.equal(after.temporal.state, 'stopped');
    assert.equal(after.minio.state, 'stopped');
  });
});
