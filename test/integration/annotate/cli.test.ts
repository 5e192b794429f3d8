/**
 * The `durable-rl` command line against the real Temporal dev server: `make-sample`, `annotate`
 * (prints the workflow id and the Web UI link, `--wait` prints the result) and `status`, run as a
 * child process the way a person runs it. Workflows and activities run in this process's workers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { annotationPrefix } from '../../../activities/store/keys.js';
import { manifestKey } from '../../../activities/store/manifest.js';
import { runCli } from '../../support/cli.js';
import { temporalWithWorkers } from '../../support/temporal.js';

const tag = Date.now().toString(36);

const temporal = temporalWithWorkers(['control', 'reward']);

const cli = (args: string[]) => runCli(args, temporal().env);

test('annotate prints the workflow id and its Web UI link, --wait the result; status follows the job', async () => {
  const store = pathToFileURL(mkdtempSync(join(tmpdir(), 'drl-cli-'))).href;
  const made = await cli(['make-sample', '--store', store, '--records', '40', '--key', 'inputs/cli.arrow']);
  assert.equal(made.code, 0, made.stderr);
  assert.match(made.stdout, /wrote 40 records to .*inputs\/cli\.arrow/);

  const jobId = `it-cli-${tag}`;
  const run = await cli(['annotate', 'inputs/cli.arrow', '--store', store, '--job', jobId, '--shard-size', '15', '--wait']);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, new RegExp(`workflow id: ${jobId}\\n`));
  const ui = temporal().config.uiUrl!.replace(/\/$/, '');
  assert.ok(run.stdout.includes(`Web UI: ${ui}/namespaces/${temporal().config.namespace}/workflows/${jobId}\n`), run.stdout);
  assert.match(run.stdout, /records: 40 {3}accuracy: \d+\.\d%/);
  assert.ok(run.stdout.includes(`manifest: ${store}/${manifestKey(annotationPrefix(jobId))}`), run.stdout);

  const status = await cli(['status', jobId]);
  assert.equal(status.code, 0, status.stderr);
  assert.match(status.stdout, new RegExp(`${jobId}: COMPLETED\\n {2}done: shards 3/3, records 40/40`));

  const missing = await cli(['status', `no-such-job-${tag}`]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, new RegExp(`no job "no-such-job-${tag}" on Temporal namespace ${temporal().config.namespace}`));
});
