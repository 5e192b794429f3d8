/**
 * The escape suite of activities/sandbox/'s bubblewrap layer: untrusted commands try to reach the
 * network, read and write the host's files, exhaust processes, memory and disk, run forever and
 * kill their parent. Each attempt fails inside the sandbox, and the host is checked afterwards:
 * no connection reached the test's server, no file appeared, no sandbox process survives, the
 * host's processes live. bubblewrap is installed first when missing and this process is root
 * (infra/bubblewrap.ts, as in CI); elsewhere a missing bwrap fails the suite with the command
 * that installs it. No Temporal needed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInSandbox, sandboxHost, type SandboxRequest, type SandboxResult } from '../../../activities/sandbox/sandbox.js';
import { BubblewrapMissingError, ensureBubblewrap } from '../../../infra/bubblewrap.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
// Generous limits: the machine is shared; only the attempts aim at them.
const limits = { timeoutMs: 30_000, memoryMb: 256, maxProcesses: 16, tmpMb: 8 };
const run = (command: string[], more: Partial<SandboxRequest> = {}): Promise<SandboxResult> =>
  runInSandbox({ ...limits, layers: ['bubblewrap'], command: () => command, ...more });
const sh = (script: string, more: Partial<SandboxRequest> = {}) => run(['sh', '-c', script], more);
const py = (script: string, more: Partial<SandboxRequest> = {}) => run(['python3', '-c', script], more);

/** Host processes whose command line holds `marker` (the sandbox's processes carry it in their script). */
function processesWith(marker: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(marker)) pids.push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

let server: Server;
let port = 0;
let connections = 0;
let outsideAddress = '';
before(async () => {
  ensureBubblewrap({ progress: (m) => process.stderr.write(`${m}\n`) });
  const host = sandboxHost();
  assert.ok(host.layers.includes('bubblewrap'), `bubblewrap does not run on this host: ${host.why.bubblewrap}`);
  server = createServer((s) => {
    connections++;
    s.end('hello');
  });
  await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
  port = (server.address() as { port: number }).port;
  outsideAddress =
    Object.values(networkInterfaces())
      .flat()
      .find((a) => a && a.family === 'IPv4' && !a.internal)?.address ?? '';
});
after(() => new Promise<void>((r) => server.close(() => r())));

test('network: connecting to a host server on 127.0.0.1 and on the host outside address fails, the server sees 0 connections; only a private lo exists', async () => {
  const targets = ['127.0.0.1', ...(outsideAddress ? [outsideAddress] : [])];
  const script = `
import socket
for host in ${JSON.stringify(targets)}:
    try:
        socket.create_connection((host, ${port}), timeout=5).recv(5)
        print(host, "connected")
    except OSError as e:
        print(host, "failed", type(e).__name__)
try:
    socket.getaddrinfo("example.com", 80)
    print("dns resolved")
except OSError:
    print("dns failed")
print(sorted(l.split(":")[0].strip() for l in open("/proc/net/dev") if ":" in l))
`;
  const r = await py(script);
  assert.equal(r.layer, 'bubblewrap');
  assert.equal(r.status, 'ok', r.stderr);
  const lines = r.stdout.trim().split('\n');
  for (const [i, host] of targets.entries()) assert.match(lines[i]!, new RegExp(`^${host.replace(/\./g, '\\.')} failed `));
  assert.equal(lines[targets.length], 'dns failed');
  assert.equal(lines[targets.length + 1], "['lo']");
  assert.equal(connections, 0, 'the host server saw no connection');
});

test('files: /etc/shadow, the repository and /root do not exist inside the sandbox', async () => {
  const r = await sh(`cat /etc/shadow; cat ${repo}package.json; ls /root/.cache; ls ${repo}`);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /\/etc\/shadow: No such file/);
  assert.match(r.stderr, /package\.json: No such file/);
  assert.match(r.stderr, /\/root\/\.cache.*No such file/);
});

test('writes: system directories are read-only, the repository is absent, /tmp is private to one run', async () => {
  const marker = `durable-rl-escape-${process.pid}`;
  const hostTmp = join(tmpdir(), marker);
  rmSync(hostTmp, { force: true });
  const r = await sh(
    `echo x > /usr/${marker} || echo usr-refused; echo x > ${repo}${marker} || echo repo-refused; echo x > /tmp/${marker} && echo tmp-written`,
  );
  assert.deepEqual(r.stdout.trim().split('\n'), ['usr-refused', 'repo-refused', 'tmp-written']);
  assert.match(r.stderr, /Read-only file system/);
  assert.equal(existsSync(hostTmp), false, "the sandbox's /tmp is not the host's");
  assert.equal(existsSync(join(repo, marker)), false);
  const next = await sh(`ls /tmp`);
  assert.equal(next.stdout, '', 'a second run starts with an empty /tmp');
});

test('disk bomb: four files of 4 MiB fill /tmp at tmpMb (8 MiB), one file of 64 MiB stops at the file size limit', async () => {
  const r = await sh('for i in 1 2 3 4; do head -c 4194304 /dev/zero > /tmp/f$i; done; cat /tmp/f* | wc -c');
  const total = Number(r.stdout.trim());
  assert.ok(total > 4 * 1024 * 1024 && total <= 8 * 1024 * 1024, `wrote ${total} bytes`);
  assert.match(r.stderr, /No space left on device/);
  const big = await sh('head -c 67108864 /dev/zero > /tmp/big');
  assert.equal(big.signal, 'SIGXFSZ');
});

test('fork bomb: forks stop below maxProcesses (16), the run ends, no sandbox process survives and the host still forks', async () => {
  const marker = `forkbomb-${process.pid}`;
  const script = `
import os, time
# ${marker}
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
        n += 1
except OSError as e:
    print(n, e.errno)
`;
  const r = await py(script);
  assert.equal(r.status, 'ok', r.stderr);
  const [forks, errno] = r.stdout.trim().split(' ').map(Number);
  assert.ok(forks! >= 1 && forks! < 16, `forked ${forks} times`);
  assert.equal(errno, 11, 'EAGAIN: the process limit');
  assert.deepEqual(processesWith(marker), [], "the sleeping children died with the sandbox's pid namespace");
  // A shell fork bomb, stopped by the limit and the timeout.
  const shellMarker = `shellbomb-${process.pid}`;
  const bomb = await sh(`: ${shellMarker}; b() { b | b & }; b; sleep 600`, { timeoutMs: 3_000 });
  assert.notEqual(bomb.status, 'ok');
  assert.deepEqual(processesWith(shellMarker), []);
  assert.equal(spawnSync('true').status, 0, 'the host still forks');
});

test('memory bomb: a 2 GiB allocation fails at memoryMb 256, and so does a 4 GiB shared anonymous mapping', async () => {
  const r = await py('x = bytearray(2 * 1024**3)\nprint("allocated")');
  assert.equal(r.status, 'exit');
  assert.match(r.stderr, /MemoryError/);
  assert.equal(r.stdout, '');
  const shared = await py(
    'import mmap\nm = mmap.mmap(-1, 4 * 1024**3, flags=mmap.MAP_SHARED)\nm[::4096] = b"x" * (4 * 1024**3 // 4096)\nprint("mapped")',
  );
  assert.notEqual(shared.status, 'ok');
  assert.doesNotMatch(shared.stdout, /mapped/);
  assert.match(shared.stderr, /Cannot allocate memory|MemoryError/);
});

test('an infinite loop is killed at the timeout (1.5 s) and leaves no process behind', async () => {
  const marker = `loop-${process.pid}`;
  const r = await sh(`: ${marker}; while :; do :; done`, { timeoutMs: 1_500 });
  assert.equal(r.status, 'timeout');
  assert.deepEqual(processesWith(marker), []);
});

test('killing the parent: kill -9 of the worker, of a host process and of every visible process (-1) leaves the host processes alive', async () => {
  const victim: ChildProcess = spawn('sleep', ['300'], { stdio: 'ignore' });
  try {
    const r = await sh(`kill -9 ${process.pid} ${victim.pid} ${process.ppid}; echo ppid $PPID; kill -9 -1; echo survived`);
    assert.doesNotThrow(() => process.kill(victim.pid!, 0), 'the host process is alive');
    assert.equal(victim.exitCode, null);
    assert.match(r.stderr, /No such process/);
    assert.match(r.stdout, /^ppid 1\n/, "the sandbox's parent is its own pid 1, not the worker");
  } finally {
    victim.kill('SIGKILL');
  }
});

test('the command runs without privileges: a non-zero uid, no capabilities, no setuid gain', async () => {
  const r = await sh('id -u; grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status');
  const [uid, capEff, nnp] = r.stdout.trim().split('\n');
  assert.notEqual(uid, '0');
  assert.match(capEff!, /CapEff:\s+0+$/);
  if (sandboxHost().root) assert.match(nnp!, /NoNewPrivs:\s+1/);
});

test('stdin in, stdout out, input files in /tmp, an interpreter outside /usr readable through readOnly', async () => {
  const node = process.execPath;
  const r = await run(
    [
      node,
      '-e',
      'process.stdin.on("data", (d) => console.log(String(d).toUpperCase() + require("fs").readFileSync("/tmp/in.txt", "utf8")))',
    ],
    {
      stdin: 'abc',
      files: { 'in.txt': 'def' },
      readOnly: [dirname(dirname(node))],
      memoryMb: 512,
    },
  );
  assert.equal(r.status, 'ok', r.stderr);
  assert.equal(r.stdout, 'ABCdef\n');
});

test('without bwrap on PATH and no apt-get, ensureBubblewrap says how to install it', () => {
  const empty = mkdtempSync(join(tmpdir(), 'no-bwrap-'));
  try {
    assert.throws(
      () => ensureBubblewrap({ env: { PATH: empty } }),
      (e: Error) => {
        assert.ok(e instanceof BubblewrapMissingError);
        assert.match(e.message, /apt-get install -y bubblewrap/);
        return true;
      },
    );
  } finally {
    rmSync(empty, { recursive: true });
  }
});
