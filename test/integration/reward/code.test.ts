/**
 * The code-execution reward against real child processes: correct and wrong programs, an infinite
 * loop, memory exhaustion, a network attempt against a live loopback server, a write outside the
 * sandbox directory. No Temporal needed.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultRegistry } from '../../../activities/reward/registry.js';
import { runSandboxed } from '../../../activities/reward/code.js';
import { sandboxHost } from '../../../activities/sandbox/sandbox.js';
import type { RewardResult, RewardSample } from '../../../activities/reward/types.js';
import { logger } from '../../../activities/common/log.js';

const reg = defaultRegistry();
const ctx = { step: 0, signal: new AbortController().signal, log: logger('test') };
// Generous limits: the CI machine is shared; only the infinite loop is meant to hit its limit.
const base = { timeoutMs: 20_000 };
const score = (completion: string, metadata: Record<string, unknown>, options: Record<string, unknown> = {}): Promise<RewardResult> =>
  Promise.resolve(
    reg.create({ name: 'code_execution', options: { ...base, ...options } }).score!(
      { promptId: 'p', sampleId: 0, prompt: '', completion, metadata } satisfies RewardSample,
      ctx,
    ),
  );

const doubling = {
  tests: [
    { input: '2\n', output: '4\n' },
    { input: '21\n', output: '42' },
    { input: '-5', output: '-10' },
  ],
};

let server: Server;
let port = 0;
let connections = 0;
before(async () => {
  server = createServer((s) => {
    connections++;
    s.end('hello');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
after(() => new Promise<void>((r) => server.close(() => r())));

test('python: a correct program passes every test, a wrong one fails, partly wrong scores the fraction', async () => {
  const good = 'Here it is:\n```python\nn = int(input())\nprint(n * 2)\n```';
  assert.deepEqual(await score(good, { ...doubling, language: 'python' }), {
    reward: 1,
    components: { pass_rate: 1, timeouts: 0, runs: 3 },
  });
  const wrong = '```python\nprint(int(input()) + 2)\n```';
  assert.equal((await score(wrong, doubling)).reward, 1 / 3); // 2 + 2 = 4 passes by accident
  assert.equal((await score(wrong, doubling, { scoring: 'all' })).reward, 0);
  const crash = '```python\nraise SystemExit(3)\n```';
  assert.equal((await score(crash, doubling)).reward, 0);
});

test('javascript: stdin/stdout tests and appended test code', async () => {
  const good = '```javascript\nimport fs from "node:fs";\nconsole.log(Number(fs.readFileSync(0, "utf8")) * 2);\n```';
  assert.equal((await score(good, doubling)).reward, 1);
  const fn = '```js\nfunction add(a, b) { return a + b; }\n```';
  assert.equal((await score(fn, { testCode: 'if (add(2, 3) !== 5) throw new Error("add");' })).reward, 1);
  assert.equal((await score(fn.replace('a + b', 'a - b'), { testCode: 'if (add(2, 3) !== 5) throw new Error("add");' })).reward, 0);
});

test('python assert-style test code; unicode output', async () => {
  const prog = '```python\ndef greet(n):\n    return "héllo " + n + " 😀"\n```';
  assert.equal((await score(prog, { testCode: 'assert greet("Zoë") == "héllo Zoë 😀"' })).reward, 1);
  assert.equal((await score(prog, { tests: [{ input: '', output: 'héllo 😀' }], testCode: 'print(greet(""))' })).reward, 0.5);
});

test('an infinite loop is killed at the timeout', async () => {
  const t0 = Date.now();
  const r = await score('```python\nwhile True:\n    pass\n```', { tests: [{ input: '', output: '' }] }, { timeoutMs: 1_500 });
  assert.deepEqual(r, { reward: 0, components: { pass_rate: 0, timeouts: 1, runs: 1 } });
  assert.ok(Date.now() - t0 < 15_000, 'the process group was killed, not waited for');
  const js = await score('```js\nwhile (true) {}\n```', { tests: [{ input: '', output: '' }] }, { timeoutMs: 1_500 });
  assert.equal(js.components!.timeouts, 1);
});

test('memory beyond the limit fails the test', async () => {
  const r = await runSandboxed('x = bytearray(2 * 1024**3)\nprint("allocated")', '', {
    language: 'python',
    timeoutMs: 20_000,
    memoryMb: 256,
    maxOutputBytes: 1 << 20,
    network: 'prefer',
    pythonCommand: 'python3',
  });
  assert.equal(r.status, 'exit');
  assert.match(r.stderr, /MemoryError/);
  assert.equal(r.stdout, '');
});

test('a network attempt to a live loopback server fails (python and javascript)', async () => {
  const before = connections;
  const py = await runSandboxed(`import socket\ns = socket.create_connection(("127.0.0.1", ${port}), timeout=5)\nprint(s.recv(5))`, '', {
    language: 'python',
    timeoutMs: 20_000,
    memoryMb: 256,
    maxOutputBytes: 1 << 20,
    network: 'prefer',
    pythonCommand: 'python3',
  });
  assert.equal(py.status, 'exit');
  assert.doesNotMatch(py.stdout, /hello/);
  const js = await runSandboxed(`const r = await fetch("http://127.0.0.1:${port}/"); console.log(await r.text());`, '', {
    language: 'javascript',
    timeoutMs: 20_000,
    memoryMb: 256,
    maxOutputBytes: 1 << 20,
    network: 'prefer',
    pythonCommand: 'python3',
  });
  assert.equal(js.status, 'exit');
  const jsNet = await runSandboxed(
    `import net from "node:net"; const s = net.connect(${port}, "127.0.0.1"); s.on("data", (d) => console.log(String(d)));`,
    '',
    { language: 'javascript', timeoutMs: 20_000, memoryMb: 256, maxOutputBytes: 1 << 20, network: 'prefer', pythonCommand: 'python3' },
  );
  assert.equal(jsNet.status, 'exit');
  assert.equal(connections, before, 'the server saw no connection');
  // The reward sees a failed test, not an error.
  const r = await score(`\`\`\`python\nimport urllib.request\nprint(urllib.request.urlopen("http://127.0.0.1:${port}/").read())\n\`\`\``, {
    tests: [{ input: '', output: "b'hello'" }],
  });
  assert.equal(r.reward, 0);
  assert.equal(connections, before);
});

// The in-process guards, in the layers that rely on them (without bubblewrap); test/integration/sandbox/ holds bubblewrap's escape suite.
test('fallback layers: a write outside the sandbox directory fails; inside it works', async () => {
  const outside = join(tmpdir(), `durable-rl-escape-${process.pid}.txt`);
  rmSync(outside, { force: true });
  const opts = {
    timeoutMs: 20_000,
    memoryMb: 256,
    maxOutputBytes: 1 << 20,
    network: 'prefer' as const,
    sandbox: 'fallback' as const,
    pythonCommand: 'python3',
  };
  const py = await runSandboxed(`open(${JSON.stringify(outside)}, "w").write("x")`, '', { ...opts, language: 'python' });
  assert.equal(py.status, 'exit');
  assert.match(py.stderr, /PermissionError: sandbox: writing outside/);
  const pyRemove = await runSandboxed(`import os\nos.remove("/etc/hostname")`, '', { ...opts, language: 'python' });
  assert.match(pyRemove.stderr, /os\.remove outside the sandbox/);
  const js = await runSandboxed(`import fs from "node:fs"; fs.writeFileSync(${JSON.stringify(outside)}, "x");`, '', {
    ...opts,
    language: 'javascript',
  });
  assert.equal(js.status, 'exit');
  assert.match(js.stderr, /ERR_ACCESS_DENIED/);
  assert.equal(existsSync(outside), false);
  const inside = await runSandboxed('open("scratch.txt", "w").write("ok")\nprint(open("scratch.txt").read())', '', {
    ...opts,
    language: 'python',
  });
  assert.equal(inside.stdout, 'ok\n');
});

test('fallback layers: subprocesses are refused', async () => {
  const opts = {
    timeoutMs: 20_000,
    memoryMb: 256,
    maxOutputBytes: 1 << 20,
    network: 'prefer' as const,
    sandbox: 'fallback' as const,
    pythonCommand: 'python3',
  };
  const py = await runSandboxed('import subprocess\nsubprocess.run(["echo", "hi"])', '', { ...opts, language: 'python' });
  assert.match(py.stderr, /subprocess\.Popen is not allowed/);
  const js = await runSandboxed('import cp from "node:child_process"; cp.execSync("echo hi");', '', { ...opts, language: 'javascript' });
  assert.match(js.stderr, /ERR_ACCESS_DENIED/);
});

test('bad data is an error naming what to fix; an empty completion scores 0', async () => {
  await assert.rejects(() => score('```python\nprint(1)\n```', {}), /needs tests for prompt p: set metadata\.tests/);
  await assert.rejects(
    () => score('```python\nprint(1)\n```', { tests: [{ input: 1 }] }),
    /metadata\.tests of prompt p must be .*0\.input/,
  );
  await assert.rejects(() => score('print(1)', { tests: [{ output: '1' }] }), /cannot tell the language/);
  await assert.rejects(() => score('print(1)', { tests: [{ output: '1' }], language: 'cobol' }), /metadata\.language "cobol"/);
  assert.equal((await score('', { tests: [{ output: '1' }], language: 'python' })).reward, 0);
});

test('network: "require" runs in a network namespace where the host allows one (bubblewrap or unshare), else refuses to run', async () => {
  const opts = {
    language: 'python' as const,
    timeoutMs: 20_000,
    memoryMb: 256,
    maxOutputBytes: 1 << 20,
    network: 'require' as const,
    pythonCommand: 'python3',
  };
  if (sandboxHost().layers.some((l) => l !== 'process')) {
    // Inside a new network namespace the interface list has only its own "lo".
    const r = await runSandboxed('print(open("/proc/net/dev").read().count(":"))', '', opts);
    assert.equal(r.stdout.trim(), '1');
  } else {
    await assert.rejects(() => runSandboxed('print(1)', '', opts), /network isolation is required but neither bubblewrap nor `unshare/);
  }
});

test('a sandbox that cannot start the program is an error for the error policy, never a score of 0', async () => {
  // an interpreter that answers the sandbox's probe but dies before the program's prelude runs
  const dir = mkdtempSync(join(tmpdir(), 'fake-python-'));
  const fake = join(dir, 'python3');
  writeFileSync(
    fake,
    `#!/bin/sh\nif [ "$1" = "-c" ]; then echo ${fake}; echo ${dir}; echo ${dir}; exit 0; fi\necho "fake interpreter: cannot start" >&2\nexit 1\n`,
  );
  chmodSync(fake, 0o755);
  try {
    await assert.rejects(
      () => score('```python\nprint(4)\n```', { tests: [{ input: '2\n', output: '4\n' }] }, { pythonCommand: fake, sandbox: 'fallback' }),
      /^Error: code_execution: the sandbox could not start the python program of prompt p \(fake interpreter: cannot start\); check the interpreter and memoryMb$/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(
    (await score('```python\nprint(int(input()) * 2)\n```', doubling)).reward,
    1,
    'the same program runs with the real interpreter',
  );
});

test('an interpreter that prints a warning to stderr before the program starts still runs it: scored, not taken for a sandbox that could not start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'warning-python-'));
  const wrapper = join(dir, 'python3');
  writeFileSync(
    wrapper,
    `#!/bin/sh\nif [ "$1" = "-c" ]; then echo ${wrapper}; python3 -c 'import sys; print(sys.prefix); print(sys.base_prefix)'; exit 0; fi\necho "warning: startup notice" >&2\nexec python3 "$@"\n`,
  );
  chmodSync(wrapper, 0o755);
  try {
    const r = await score('```python\nprint(int(input()) * 2)\n```', doubling, { pythonCommand: wrapper, sandbox: 'fallback' });
    assert.equal(r.reward, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
