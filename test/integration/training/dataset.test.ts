/**
 * A run on a dataset of the user's own (the run config's `data`), against the real servers, with
 * the data cursor counted: sft step 0's learner call (read from the history) trains on items 0..7,
 * every rl step's committed rollouts name the train items the run plan gives the step, and each
 * item reads the row the seed's epoch order says — across a worker SIGKILLed mid-step (supervised
 * child workers), continue-as-new every 2 steps (the execution chain checked), and a resume-from
 * of a terminated run. Parquet files, local and on MinIO, scored by a TypeScript reward module of
 * the user's own: they train, evaluate by the module's verdict, report, and resume (after a
 * terminate, and from a step) to the uninterrupted run's weights; a file changed under its URI is
 * refused, naming both hashes.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { epochOrder } from '../../../activities/data/order.js';
import { splitHeldOut } from '../../../activities/data/reward-model-split.js';
import { parseRunConfig, type RunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { readRunRecord } from '../../../activities/run/resolve.js';
import { EVAL_NAME, evalPrefix, rewardsName, rolloutsName, stepPrefix } from '../../../activities/store/keys.js';
import type { EvalRecord, LearnerInput } from '../../../activities/run/types.js';
import { readArtifact } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { decodeRewards, decodeRollouts } from '../../../activities/store/schemas.js';
import { fetchExecutions } from '../../../workers/cli-replay.js';
import { resumeFromRun, startTrainingRun } from '../../../workers/train-client.js';
import { planStep, totalSteps } from '../../../workflows/run-plan.js';
import { runCli } from '../../support/cli.js';
import { activityCalls } from '../../support/history.js';
import { servers } from '../../support/servers.js';
import { startWorkers, testTemporal, type TestTemporal } from '../../support/temporal.js';
import { assertCommittedRun, superviseWorker, terminateBefore, weightsSha, type SupervisedWorker } from '../../support/training.js';

const dir = mkdtempSync(join(tmpdir(), 'dataset-run-'));
const storeUri = pathToFileURL(join(dir, 'store')).href;
/** 20 one-digit additions (prompt "a+b=", completion the sum), an unmapped column, and 4 held-out ones. */
const rows = Array.from({ length: 20 }, (_, i) => ({
  prompt: `${i % 4}+${Math.floor(i / 4)}=`,
  completion: String((i % 4) + Math.floor(i / 4)),
  id: i,
}));
const evalRows = [5, 6, 7, 8].map((a) => ({ prompt: `${a}+1=`, completion: String(a + 1), id: 100 + a }));
const jsonl = (xs: unknown[]) => xs.map((x) => JSON.stringify(x)).join('\n') + '\n';
writeFileSync(join(dir, 'train.jsonl'), jsonl(rows));
writeFileSync(join(dir, 'eval.jsonl'), jsonl(evalRows));
/** The user's reward module (TypeScript): a verifiable exact-match verdict and a brevity term. */
const rewardModule = join(dir, 'rewards', 'mine.ts');
mkdirSync(join(dir, 'rewards'));
writeFileSync(
  rewardModule,
  `interface Sample { completion: string; reference?: string | string[] }
/** 1 when the completion is the reference answer, else 0. */
export function correctness(sample: Sample): number {
  return sample.completion.trim() === sample.reference ? 1 : 0;
}
/** Shorter is better: minus the completion's length in characters, over 10. */
export const brevity = (sample: Sample): number => -sample.completion.length / 10;
`,
);

let t: TestTemporal;
let control: { stop(): Promise<void> };
let store: ObjectStore;

before(async () => {
  t = await testTemporal();
  control = await startWorkers(t, ['control']);
  store = openStore(storeUri);
});

after(async () => {
  await control?.stop();
  await t?.client.connection.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** 1 sft step of 8 examples, then 5 rl steps of 8 prompts (2 shards each): items 0..47 of a 20-row train split, into its third epoch. */
function dataConfig(over: Partial<RunConfigInput> = {}): RunConfig {
  return parseRunConfig({
    name: 'data-run',
    seed: 5,
    store: storeUri,
    data: { train: join(dir, 'train.jsonl'), eval: join(dir, 'eval.jsonl') },
    model: { hidden: 32, layers: 1, heads: 2 },
    phases: [
      { kind: 'sft', steps: 1, batchSize: 8, lr: 3e-3 },
      { kind: 'rl', steps: 5, promptsPerStep: 8, groupSize: 2, lr: 1e-3 },
    ],
    rollout: { promptsPerShard: 4, maxConcurrentShards: 2 },
    learner: { microBatchSize: 16 },
    eval: { prompts: 16, passK: 2 },
    engine: { threads: 1 },
    workflow: { heartbeatTimeoutSeconds: 3, continueAsNewEvery: 2 },
    ...over,
  });
}

async function withActivityWorkers<T>(env: Record<string, string>, fn: (w: SupervisedWorker[]) => Promise<T>): Promise<T> {
  const workers = await Promise.all((['rollout', 'reward', 'learner'] as const).map((q) => superviseWorker([q], { ...t.env, ...env })));
  try {
    return await fn(workers);
  } finally {
    await Promise.all(workers.map((w) => w.stop()));
  }
}

/** The prompts (id, text) a committed rl step rolled out, one per prompt, in shard order. */
async function stepPrompts(s: ObjectStore, runId: string, step: number, shards: number): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for (let k = 0; k < shards; k++) {
    for (const r of decodeRollouts(await readArtifact(s, stepPrefix(runId, step), rolloutsName(k)))) {
      if (out.at(-1)?.[0] !== r.prompt_id) out.push([r.prompt_id, r.prompt_text]);
    }
  }
  return out;
}

/** What the seed's order says step `step` reads: items [offset, offset + count), item i = row epochOrder(seed, ⌊i/n⌋)[i mod n]. */
function expectedPrompts(config: RunConfig, step: number, train: readonly { prompt: string }[]): [string, string][] {
  const p = planStep(config, step);
  return Array.from({ length: p.count }, (_, k) => {
    const i = p.promptOffset + k;
    const row = epochOrder(config.seed, Math.floor(i / train.length), train.length)[i % train.length]!;
    return [`data-train-${String(i).padStart(6, '0')}`, train[row]!.prompt];
  });
}

/** Every train item of the rl steps [from, to) of `runId`, counted: [item index, row] in the order used. */
async function assertStepsFollowTheOrder(s: ObjectStore, runId: string, config: RunConfig, from: number, to: number): Promise<number[]> {
  const items: number[] = [];
  for (let step = from; step < to; step++) {
    const got = await stepPrompts(s, runId, step, 2);
    assert.deepEqual(got, expectedPrompts(config, step, rows), `step ${step} reads the items the seed's order gives it`);
    for (const [id] of got) items.push(Number(id.slice('data-train-'.length)));
  }
  return items;
}

/** sha256 of the uninterrupted-equivalent final weights: set by the first test, compared by the resume-from test. */
let killedRunWeights: string | undefined;

test('a JSONL dataset run across SIGKILLs and continue-as-new (a chain of executions): sft step 0 and each rl step read exactly the items the seed orders, none twice or skipped', async () => {
  const onceDir = mkdtempSync(join(tmpdir(), 'crash-once-'));
  const points = ['rollout@2', 'reward@3', 'learner@4', 'commit@5'];
  const config = dataConfig();
  const total = totalSteps(config);
  await withActivityWorkers({ DURABLE_RL_CRASH_AT: points.join(','), DURABLE_RL_CRASH_ONCE: onceDir }, async (workers) => {
    const run = await startTrainingRun(t.client, config);
    const result = await run.result();
    assert.equal(result.status, 'completed');
    // Each point left its marker and killed its worker once. (A point is missed only when a worker
    // outside this test took the activity: another process polling the same task queues on a
    // shared server — run the integration tests on servers of their own, DURABLE_RL_STATE_DIR.)
    assert.deepEqual(readdirSync(onceDir).sort(), [...points].sort(), 'every crash point was reached');
    assert.deepEqual(
      workers.map((w) => w.restarts),
      [1, 1, 2],
      'the rollout worker died once, the reward worker once, the learner twice (learner@4, commit@5)',
    );
    await assertCommittedRun(store, run.runId, total);
    const items = await assertStepsFollowTheOrder(store, run.runId, config, 1, total);
    // 40 rl prompts: items 8..47, each once — the rest of epoch 0, all of epoch 1, 8 of epoch 2
    assert.deepEqual(
      items,
      Array.from({ length: 40 }, (_, k) => 8 + k),
    );
    // continue-as-new every 2 steps did happen: a chain of at least ⌈6 / 2⌉ executions, each before the last closed by ContinueAsNew
    const executions = await fetchExecutions(t.client, run.runId);
    assert.ok(executions.length >= Math.ceil(total / 2), `${executions.length} executions`);
    for (const e of executions.slice(0, -1))
      assert.ok(e.history.events?.at(-1)?.workflowExecutionContinuedAsNewEventAttributes, `execution ${e.runId} continued as new`);
    // step 0 (sft): one learner call, whose updates trained on items 0..7 — so the whole run read items 0..47 once each
    const sftCalls = executions
      .flatMap((e) => activityCalls(e.history.events ?? []))
      .filter((c) => c.type === 'learnerUpdate' && (c.input as LearnerInput).step === 0);
    assert.equal(sftCalls.length, 1, 'step 0 was scheduled once (a retried attempt reads the same items)');
    const sft = sftCalls[0]!.input as LearnerInput;
    const sftItems = (sft.lrs ?? [sft.lr]).flatMap((_, u) =>
      Array.from({ length: sft.batchSize }, (_, k) => sft.promptOffset + u * sft.batchSize + k),
    );
    assert.deepEqual(sftItems, [0, 1, 2, 3, 4, 5, 6, 7], 'step 0 trains on items 0..7');
    assert.deepEqual(
      [...sftItems, ...items],
      Array.from({ length: 48 }, (_, k) => k),
      'sft step 0 and the rl steps together read items 0..47, none twice or skipped',
    );
    const epoch1 = items.filter((i) => i >= 20 && i < 40).map((i) => epochOrder(5, 1, 20)[i - 20]!);
    assert.deepEqual(
      [...epoch1].sort((a, b) => a - b),
      Array.from({ length: 20 }, (_, r) => r),
      'epoch 1 reads every row exactly once',
    );
    // run.json records the data's identity and alphabet; the evaluations ran on the 4 eval rows
    const record = await readRunRecord(store, run.runId);
    assert.equal(record.data?.train.uri, pathToFileURL(join(dir, 'train.jsonl')).href);
    assert.equal(record.data?.train.size, Buffer.byteLength(jsonl(rows)));
    assert.match(record.data?.train.sha256 ?? '', /^[0-9a-f]{64}$/);
    assert.equal(record.data?.alphabet, '+0123456789='.split('').sort().join(''));
    assert.ok(result.evals.length >= 2);
    const ev = JSON.parse(new TextDecoder().decode(await readArtifact(store, evalPrefix(run.runId, total), EVAL_NAME))) as EvalRecord;
    assert.equal(ev.num_prompts, 4, 'the final evaluation scored the 4 eval rows (eval.prompts 16 capped)');
    assert.deepEqual(
      ev.samples.map((x) => x.prompt),
      evalRows.map((r) => r.prompt),
    );
    killedRunWeights = await weightsSha(store, run.runId, total);
  });
  rmSync(onceDir, { recursive: true, force: true });
});

test('resume-from a terminated dataset run continues the data order where the source stopped, with the same final weights', async () => {
  const config = dataConfig();
  const total = totalSteps(config);
  await withActivityWorkers({}, async () => {
    const b = await startTrainingRun(t.client, config);
    await terminateBefore(t.client, b, 4);
    const c = await resumeFromRun(t.client, b.runId);
    assert.equal(c.checkpoint, 4, 'resumes inside the rl phase, from the checkpoint after step 3');
    assert.equal((await c.result()).status, 'completed');
    await assertCommittedRun(store, c.runId, total, c.checkpoint);
    const before = await assertStepsFollowTheOrder(store, b.runId, config, 1, c.checkpoint);
    const afterResume = await assertStepsFollowTheOrder(store, c.runId, config, c.checkpoint, total);
    assert.deepEqual(
      [...before, ...afterResume],
      Array.from({ length: 40 }, (_, k) => 8 + k),
      'the two runs together read items 8..47 once each',
    );
    if (killedRunWeights) assert.equal(await weightsSha(store, c.runId, total), killedRunWeights, 'the same weights as the killed run');
  });
});

/** The 20 rows as Parquet, as a user's export would hold them: a question column and an integer answer. */
function parquet(xs: typeof rows): Uint8Array {
  return new Uint8Array(
    parquetWriteBuffer({
      columnData: [
        { name: 'question', data: xs.map((r) => r.prompt), type: 'STRING' },
        { name: 'answer', data: xs.map((r) => Number(r.completion)), type: 'INT32' },
      ],
    }),
  );
}

/** A Parquet run's config: the question column as the prompt, the answer as the gold completion, 20% held out, scored by `rewards/mine.ts`. */
function parquetConfig(name: string, train: string): RunConfig {
  return dataConfig({
    name,
    data: { train, evalFraction: 0.2, template: '{question}', completionColumn: 'answer' },
    reward: {
      functions: [
        { module: rewardModule, export: 'correctness', weight: 1, verifiable: true },
        { module: rewardModule, export: 'brevity', weight: 0.1 },
      ],
    },
    phases: [
      { kind: 'sft', steps: 1, batchSize: 8, lr: 3e-3 },
      { kind: 'rl', steps: 3, promptsPerStep: 8, groupSize: 2, lr: 1e-3 },
    ],
  });
}

/**
 * Every scored sample of a committed rl step: the module's functions' values recomputed from the
 * completion text and the reference (the integer answer column, as text) are the committed
 * components, and the reward is correctness + 0.1 · brevity.
 */
async function assertScoredByTheModule(runId: string, step: number): Promise<void> {
  for (let k = 0; k < 2; k++) {
    const rollouts = decodeRollouts(await readArtifact(store, stepPrefix(runId, step), rolloutsName(k)));
    const rewards = decodeRewards(await readArtifact(store, stepPrefix(runId, step), rewardsName(k)));
    assert.equal(rewards.length, rollouts.length);
    rollouts.forEach((r, i) => {
      const [a, b] = r.prompt_text.slice(0, -1).split('+').map(Number);
      const correct = r.completion_text.trim() === String(a! + b!) ? 1 : 0;
      const got = rewards[i]!;
      assert.equal(got.components.correctness, correct, `correctness of ${r.prompt_text}${JSON.stringify(r.completion_text)}`);
      assert.equal(got.components.brevity, -r.completion_text.length / 10);
      assert.equal(Math.round(got.reward! * 1e6), Math.round((correct - r.completion_text.length / 100) * 1e6));
    });
  }
}

/**
 * The Parquet run evaluated by the user's module and reported: every evaluation of the run's result
 * has its record, scoring the 4 held-out rows, accuracy the module's verdict on the greedy answers;
 * `durable-rl report` renders the run and charts the module's functions.
 */
async function assertEvaluatedAndReported(runId: string, evals: readonly { policyVersion: number }[], heldOut: typeof rows): Promise<void> {
  assert.ok(evals.length >= 2, `${evals.length} evaluations`);
  for (const e of evals) {
    const ev = JSON.parse(new TextDecoder().decode(await readArtifact(store, evalPrefix(runId, e.policyVersion), EVAL_NAME))) as EvalRecord;
    assert.equal(ev.num_prompts, 4, `evaluation at ${e.policyVersion}`);
    assert.deepEqual(
      ev.samples.map((x) => x.prompt),
      heldOut.map((r) => r.prompt),
    );
    assert.equal(ev.greedy_accuracy, ev.samples.filter((x) => x.completion.trim() === x.reference).length / 4);
    assert.equal(ev.pass_at_k?.k, 2);
  }
  const out = join(dir, `${runId}-report.html`);
  const r = await runCli(['report', runId, '--store', storeUri, '--out', out], t.env);
  assert.equal(r.code, 0, r.stderr);
  const chart = /<svg data-chart="reward_components"[\s\S]*?<\/svg>/.exec(readFileSync(out, 'utf8'))?.[0] ?? '';
  assert.deepEqual([...chart.matchAll(/data-series="([^"]*)"/g)].map((m) => m[1]).sort(), [
    'reward/brevity',
    'reward/correct',
    'reward/correctness',
  ]);
}

test('a local Parquet dataset with a reward module of the user’s own trains, evaluates by its verdict and reports; terminated mid-run, resume-from ends with the uninterrupted run’s weights', async () => {
  writeFileSync(join(dir, 'train.parquet'), parquet(rows));
  const config = parquetConfig('parquet-local', join(dir, 'train.parquet'));
  const total = totalSteps(config);
  // evalFraction 0.2 holds out 4 of the 20 rows, drawn by the seed; the train split keeps file order
  const { train: trainRows, heldOut } = splitHeldOut(rows, 0.2, config.seed);
  await withActivityWorkers({}, async () => {
    const a = await startTrainingRun(t.client, config);
    const result = await a.result();
    assert.equal(result.status, 'completed');
    await assertCommittedRun(store, a.runId, total);
    for (let step = 1; step < total; step++) {
      assert.deepEqual(await stepPrompts(store, a.runId, step, 2), expectedPrompts(config, step, trainRows), `step ${step} of the run`);
      await assertScoredByTheModule(a.runId, step);
    }
    await assertEvaluatedAndReported(a.runId, result.evals, heldOut);

    // the same run, terminated after its second rl step and resumed from its last checkpoint
    const b = await startTrainingRun(t.client, config);
    await terminateBefore(t.client, b, 3);
    const c = await resumeFromRun(t.client, b.runId);
    assert.equal(c.checkpoint, 3, 'resumes inside the rl phase, from the checkpoint after step 2');
    assert.equal((await c.result()).status, 'completed');
    await assertCommittedRun(store, c.runId, total, c.checkpoint);
    for (let step = c.checkpoint; step < total; step++) {
      assert.deepEqual(
        await stepPrompts(store, c.runId, step, 2),
        expectedPrompts(config, step, trainRows),
        `step ${step} after the resume`,
      );
      await assertScoredByTheModule(c.runId, step);
    }
    assert.equal(await weightsSha(store, c.runId, total), await weightsSha(store, a.runId, total), 'the uninterrupted run’s final weights');
  });
});

test('a Parquet dataset on MinIO with the user’s TypeScript reward module trains, evaluates, reports and resumes from a step; the same URI with changed bytes is refused on resume-from, naming both hashes', async () => {
  const e = await servers();
  const prefix = `dataset-${Date.now()}`;
  const s3 = openStore(`s3://${e.minio.bucket}/${prefix}`);
  try {
    await s3.put('train.parquet', parquet(rows));
    const uri = `s3://${e.minio.bucket}/${prefix}/train.parquet`;
    const config = parquetConfig('parquet-run', uri);
    const total = totalSteps(config);
    const { train: trainRows, heldOut } = splitHeldOut(rows, 0.2, config.seed);
    const { run, result, resumed } = await withActivityWorkers({}, async () => {
      const r = await startTrainingRun(t.client, config);
      const done = await r.result();
      assert.equal(done.status, 'completed');
      // resume-from step 1 of the completed run re-reads the same bytes from MinIO and trains steps 2.. again
      const c = await resumeFromRun(t.client, r.runId, { step: 1 });
      assert.equal((await c.result()).status, 'completed');
      return { run: r, result: done, resumed: c };
    });
    await assertCommittedRun(store, run.runId, total);
    for (let step = 1; step < total; step++) {
      assert.deepEqual(await stepPrompts(store, run.runId, step, 2), expectedPrompts(config, step, trainRows), `step ${step}`);
      await assertScoredByTheModule(run.runId, step);
    }
    await assertEvaluatedAndReported(run.runId, result.evals, heldOut);
    await assertCommittedRun(store, resumed.runId, total, 2);
    assert.equal(
      await weightsSha(store, resumed.runId, total),
      await weightsSha(store, run.runId, total),
      'the resumed run ends where the source did',
    );
    const record = await readRunRecord(store, run.runId);
    assert.equal(record.data?.train.uri, uri);
    const old = record.data!.train.sha256;
    await s3.put('train.parquet', parquet(rows.map((r) => ({ ...r, prompt: r.prompt.replace('+', '+ ') }))));
    await assert.rejects(resumeFromRun(t.client, run.runId, { step: 0 }), (err: Error) => {
      assert.match(err.message, new RegExp(`train dataset ${uri} changed: run.json records sha256 ${old}`));
      assert.match(err.message, /the file now has sha256 [0-9a-f]{64}/);
      return true;
    });
  } finally {
    await s3.close();
  }
});
