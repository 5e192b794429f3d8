/**
 * Bad data and bad reward modules are refused by `checkRunConfig` — what `durable-rl train` and
 * `startTrainingRun` call before they start the workflow — with one line naming the field, the
 * file and the row, column or export: a missing column, an empty split, a file that cannot be read
 * (missing, no read permission, a directory), a module that does not exist, throws at import or
 * exports no reward.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../../../activities/common/config.js';
import { parseRunConfig } from '../../../activities/run/config.js';
import { checkRunConfig } from '../../../activities/run/resolve.js';

const dir = mkdtempSync(join(tmpdir(), 'bad-input-'));
chmodSync(dir, 0o755); // mkdtemp's 0700 would refuse the unprivileged reader of the permission test for the directory's sake
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const good = file('train.jsonl', ['{"prompt":"1+1=","completion":"2"}', '{"prompt":"2+2=","completion":"4"}'].join('\n') + '\n');
const uri = (p: string) => pathToFileURL(p).href;

/** A run on `data` (rl only, so no completion is needed) with optional reward functions. */
const config = (data: Record<string, unknown>, functions?: unknown[]) =>
  parseRunConfig({ data, phases: [{ kind: 'rl', steps: 1 }], ...(functions ? { reward: { functions } } : {}) }, 'run config', {
    baseDir: dir,
  });

/** The error checkRunConfig refuses `config` with: a ConfigError of one issue, its message one line. */
async function refusal(c: ReturnType<typeof config>): Promise<string> {
  try {
    await checkRunConfig(c);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `a ConfigError, got ${String(err)}`);
    assert.equal(err.issues.length, 1, err.message);
    assert.ok(!err.message.includes('\n'), `one line: ${JSON.stringify(err.message)}`);
    return err.message;
  }
  assert.fail('checkRunConfig accepted the config');
}

const quoted = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('the good dataset passes (the refusals below are the bad inputs, not the setup)', async () => {
  await checkRunConfig(config({ train: good }));
});

test('a missing prompt column: the file, row 3 (line 3) and the column', async () => {
  const p = file('no-column.jsonl', ['{"prompt":"1+1="}', '{"prompt":"2+2="}', '{"question":"3+3="}'].join('\n') + '\n');
  assert.match(
    await refusal(config({ train: p })),
    new RegExp(`^invalid run config: data\\.promptColumn: ${quoted(uri(p))} row 3 \\(line 3\\) has no "prompt" column`),
  );
});

test('an empty split: the file and the split (an empty train file; an eval file of blank lines)', async () => {
  const empty = file('empty.jsonl', '');
  assert.match(
    await refusal(config({ train: empty })),
    new RegExp(`^invalid run config: data\\.train: ${quoted(uri(empty))} has no rows: the train split is empty$`),
  );
  const blank = file('blank.jsonl', '\n\n');
  assert.match(
    await refusal(config({ train: good, eval: blank })),
    new RegExp(`^invalid run config: data\\.eval: ${quoted(uri(blank))} has no rows: the eval split is empty$`),
  );
});

test('an unreadable file: one that does not exist, one without read permission (chmod 000), a directory named as the file', async () => {
  const missing = join(dir, 'missing.jsonl');
  assert.match(
    await refusal(config({ train: missing })),
    new RegExp(`^invalid run config: data\\.train: cannot read ${quoted(uri(missing))}: ENOENT`),
  );

  const locked = file('locked.jsonl', '{"prompt":"1+1="}\n');
  chmodSync(locked, 0o000);
  // root reads a file whatever its mode, and these tests may run as root (a container): then the
  // check runs with the effective uid of `nobody` (65534), for whom mode 000 denies the read
  const root = process.getuid?.() === 0;
  if (root) process.seteuid!(65534);
  let message: string;
  try {
    message = await refusal(config({ train: locked }));
  } finally {
    if (root) process.seteuid!(0);
  }
  assert.match(message, new RegExp(`^invalid run config: data\\.train: cannot read ${quoted(uri(locked))}: EACCES: permission denied`));

  const folder = join(dir, 'folder.jsonl');
  mkdirSync(folder);
  assert.match(
    await refusal(config({ train: folder })),
    new RegExp(`^invalid run config: data\\.train: cannot read ${quoted(uri(folder))}: EISDIR`),
  );
});

test('reward modules: one that does not exist, one that throws at import, one that imports a missing package, one whose export is no function', async () => {
  const absent = join(dir, 'absent.ts');
  assert.match(
    await refusal(config({ train: good }, [{ module: './absent.ts' }])),
    new RegExp(`^invalid run config: reward\\.functions\\.0\\.module: ${quoted(absent)} does not exist: check the path`),
  );

  const throws = file('throws.ts', `throw new Error('no API key in the environment');\nexport const score = () => 1;\n`);
  assert.match(
    await refusal(config({ train: good }, [{ module: './throws.ts', export: 'score' }])),
    new RegExp(`^invalid run config: reward\\.functions\\.0\\.module: ${quoted(throws)} throws at import: no API key in the environment$`),
  );

  // the module exists: the missing package is its failure, not a wrong path
  const needs = file('needs-package.ts', `import 'durable-rl-no-such-package';\nexport default () => 1;\n`);
  assert.match(
    await refusal(config({ train: good }, [{ module: './needs-package.ts' }])),
    new RegExp(`^invalid run config: reward\\.functions\\.0\\.module: ${quoted(needs)} throws at import: .*durable-rl-no-such-package`),
  );

  const notFn = file('not-a-function.ts', `export const threshold = 0.5;\n`);
  assert.match(
    await refusal(config({ train: good }, [{ module: './not-a-function.ts', export: 'threshold' }])),
    new RegExp(`^invalid run config: reward\\.functions\\.0\\.module: export "threshold" of ${quoted(notFn)} is number: export a function`),
  );
  assert.match(
    await refusal(config({ train: good }, [{ module: './not-a-function.ts', export: 'score' }])),
    new RegExp(
      `^invalid run config: reward\\.functions\\.0\\.export: ${quoted(notFn)} has no export "score" \\(it exports "threshold"\\)$`,
    ),
  );
});
