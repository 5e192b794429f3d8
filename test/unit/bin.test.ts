/**
 * The `durable-rl` executable of package.json's `bin` (workers/bin.js): it exists, runs the CLI
 * through tsx's loader with plain `node`, and runs as npm installs it — a symlink executed by its
 * shebang, from another directory. Commands that need no server: `--help` and `make-dataset`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { root } from '../support/cli.js';

/** package.json's `bin.durable-rl`, as an absolute path. */
const bin = join(
  root,
  (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { bin: Record<string, string> }).bin['durable-rl']!,
);

test('node <bin> --help prints the usage and exits 0, from a directory outside the project', () => {
  const cwd = mkdtempSync(join(tmpdir(), 'bin-help-'));
  try {
    // no --import: the executable registers tsx itself
    const r = spawnSync(process.execPath, [bin, '--help'], { cwd, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^usage: durable-rl <command> \[options\]/);
    assert.match(r.stdout, /\n {2}train \[config\.yaml\|json\] /);
    assert.match(r.stdout, /\n {2}make-dataset /);
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
});

test('the bin as npm links it (a symlink run by its shebang) runs a command: make-dataset writes 3 rows', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bin-link-'));
  try {
    const link = join(dir, 'durable-rl');
    symlinkSync(bin, link);
    const out = join(dir, 'problems.jsonl');
    const r = spawnSync(link, ['make-dataset', 'gsm8k-style', '--out', out, '--rows', '3'], { cwd: dir, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr || String(r.error));
    assert.match(r.stdout, /wrote 3 GSM8K-style word problems/);
    const rows = readFileSync(out, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(rows.length, 3);
    for (const row of rows) assert.deepEqual(Object.keys(row).sort(), ['answer', 'completion', 'prompt', 'question']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
