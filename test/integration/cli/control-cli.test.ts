/**
 * `durable-rl pause | resume | stop | retry | runs | resume-from` as child processes against a real run on the
 * Temporal dev server, with in-process workers: a long tiny SFT run is paused (status shows it, and
 * nothing is committed while paused), resumed (steps advance), paused before a later step it names
 * (`pause --step N`) and resumed again, listed by `runs`, stopped (it ends as
 * stopped with contiguous steps from 0), and continued by `resume-from`, whose new run starts at the
 * checkpoint it prints.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { committedSteps } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';
import { temporalWithWorkers } from '../../support/temporal.js';
import { tinyRunConfig, waitFor } from '../../support/training.js';
import { runProgress, startTrainingRun, stopRun } from '../../../workers/train-client.js';
import type { trainingRun } from '../../../workflows/training-run.js';
import { runCli } from '../../support/cli.js';

const t = temporalWithWorkers(['control', 'rollout', 'reward', 'learner']);
const dir = mkdtempSync(join(tmpdir(), 'drl-control-cli-'));
const storeUri = pathToFileURL(join(dir, 'store')).href;
const name = `ctl-${Date.now().toString(36)}`;
const cli = (args: string[]) => runCli(args, t().env);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('pause, status, resume, runs, stop and resume-from control a live run from the command line', async () => {
  const store = openStore(storeUri);
  const steps = (runId: string) => committedSteps(store, runId, 'steps');
  const { client } = t();
  // 3000 SFT steps (about 0.1 s each here): far more than the test lets it train, so it is running
  // whenever a command reaches it, however slow the machine.
  const total = 3000;
  const config = tinyRunConfig(storeUri, { name, phases: [{ kind: 'sft', steps: total, batchSize: 8 }], eval: { prompts: 4, passK: 1 } });
  const started = await startTrainingRun(client, config);
  const runId = started.runId;
  const live = [runId];
  try {
    await waitFor('the first committed step', async () => ((await steps(runId)).length >= 1 ? true : undefined), 60_000);

    const pause = await cli(['pause', runId]);
    assert.equal(pause.code, 0, pause.stdout + pause.stderr);
    // the Update's answer: the step the run pauses before
    const pausedAt = Number(pause.stdout.match(new RegExp(`^pause: ${runId} pauses before step (\\d+)`))?.[1]);
    assert.ok(Number.isInteger(pausedAt), pause.stdout);
    await waitFor(
      'the run to report paused',
      async () => ((await runProgress(client, runId))?.status === 'paused' ? true : undefined),
      30_000,
    );
    const status = await cli(['status', runId]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`^${runId}: RUNNING · training run "${name}"`));
    assert.match(status.stdout, new RegExp(`^ {2}run ${runId} · paused`, 'm'), status.stdout);
    const atPause = await steps(runId);
    assert.equal(atPause.length, pausedAt, 'paused with the steps before the printed one committed');
    await sleep(2000);
    assert.deepEqual(await steps(runId), atPause, 'a step was committed while the run was paused');

    const resume = await cli(['resume', runId]);
    assert.equal(resume.code, 0, resume.stdout + resume.stderr);
    assert.match(resume.stdout, new RegExp(`^resume: ${runId} goes on with step ${pausedAt} \\[step ${pausedAt}\\]`));
    const again = await cli(['resume', runId]);
    assert.equal(again.code, 2, 'a refused control exits 2');
    assert.match(again.stderr, /cannot resume: the run is not paused/);
    const retry = await cli(['retry', runId]);
    assert.equal(retry.code, 2);
    assert.match(retry.stderr, /cannot retry: the run is not blocked/);
    await waitFor('a step after the resume', async () => ((await steps(runId)).length > atPause.length ? true : undefined), 60_000);

    // pause --step N: the run trains on and pauses before step N; a committed step is refused.
    // (80 steps ahead: several seconds of training, far more than the command takes to start.)
    const early = await cli(['pause', runId, '--step', '0']);
    assert.equal(early.code, 2, early.stdout + early.stderr);
    assert.match(early.stderr, /cannot pause: step 0 is committed: the earliest step a pause can precede is \d+/);
    const target = (await steps(runId)).length + 80;
    const ahead = await cli(['pause', runId, '--step', String(target)]);
    assert.equal(ahead.code, 0, ahead.stdout + ahead.stderr);
    assert.match(
      ahead.stdout,
      new RegExp(`^pause: ${runId} pauses before step ${target}: steps \\d+\\.\\.${target - 1} run first \\[step ${target}\\]`),
    );
    await waitFor(
      `the run to pause before step ${target}`,
      async () => ((await runProgress(client, runId))?.status === 'paused' ? true : undefined),
      120_000,
    );
    assert.equal((await steps(runId)).length, target, 'paused with exactly the steps before the asked one committed');
    const resumeAgain = await cli(['resume', runId]);
    assert.equal(resumeAgain.code, 0, resumeAgain.stdout + resumeAgain.stderr);
    assert.match(resumeAgain.stdout, new RegExp(`^resume: ${runId} goes on with step ${target}`));

    // `runs` lists the run with its name and the status search attribute (visibility lags a little).
    const header = /^RUN\s+TEMPORAL\s+STATUS\s+NAME\s+STEP\s+PHASE\s+MEAN REWARD\s+STARTED$/m;
    const row = new RegExp(`^${runId}\\s+RUNNING\\s+running\\s+${name}\\s+\\d+\\s+sft\\s`, 'm');
    let runs = await cli(['runs', '--limit', '100']);
    for (let i = 0; i < 5 && runs.code === 0 && !row.test(runs.stdout); i++) {
      await sleep(1000);
      runs = await cli(['runs', '--limit', '100']);
    }
    assert.equal(runs.code, 0, runs.stderr);
    assert.match(runs.stdout, header);
    assert.match(runs.stdout, row, runs.stdout);

    const stop = await cli(['stop', runId]);
    assert.equal(stop.code, 0, stop.stdout + stop.stderr);
    const stopAt = Number(
      stop.stdout.match(new RegExp(`^stop: ${runId} ends after step \\d+ is committed \\((\\d+) steps committed\\)`))?.[1],
    );
    assert.ok(Number.isInteger(stopAt), stop.stdout);
    const result = await started.result();
    live.shift();
    assert.equal(result.status, 'stopped');
    assert.equal(result.steps, stopAt, 'the run ended with the printed number of steps');
    assert.ok(result.steps > atPause.length && result.steps < total, `steps ${result.steps}`);
    assert.deepEqual(
      await steps(runId),
      Array.from({ length: result.steps }, (_, i) => i),
      'committed steps contiguous from 0',
    );

    const from = await cli(['resume-from', runId]);
    assert.equal(from.code, 0, from.stdout + from.stderr);
    const newId = from.stdout.match(/^started training run (\S+)$/m)?.[1];
    const checkpoint = Number(from.stdout.match(new RegExp(`^ {2}resumes ${runId} from checkpoint (\\d+) `, 'm'))?.[1]);
    assert.ok(newId && newId !== runId, from.stdout);
    live.push(newId);
    assert.equal(checkpoint, result.steps, `the last committed checkpoint of the stopped run: ${from.stdout}`);
    const first = await waitFor('the new run to commit a step', async () => (await steps(newId))[0], 60_000);
    assert.equal(first, checkpoint, 'the new run trains from the checkpoint it printed');

    await stopRun(client, newId, 'end of test');
    const r2 = await client.workflow.getHandle<typeof trainingRun>(newId).result();
    live.pop();
    assert.equal(r2.status, 'stopped');
    const own = await steps(newId);
    assert.deepEqual(
      own,
      Array.from({ length: own.length }, (_, i) => checkpoint + i),
      'the new run commits contiguous steps from the checkpoint',
    );
  } finally {
    // A failed assertion must not leave a long run behind on the shared dev server.
    for (const id of live)
      await client.workflow
        .getHandle(id)
        .terminate('control-cli test ended')
        .catch(() => undefined);
    await store.close();
  }
});
