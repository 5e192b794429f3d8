/**
 * A long run's store, bounded by its retention policy (numbers only):
 *
 *   npx tsx bench/retention.ts                       # 1,000 steps, keepLast 3, keepEvery 250
 *   npx tsx bench/retention.ts --steps 200 --keep-last 2 --keep-every 50
 *
 * The main job's model (2-layer, 128-wide Llama, 398k parameters, the embedded defaults) trains an
 * sft phase of `--steps` steps of one AdamW update each (batch 8) through the very activities a
 * run's workflow calls — initRun, then learnerUpdate and commitStep per step (commitStep applies
 * the retention policy, `retention.apply: every_step`) — on a file:// store in a temp dir, outside
 * Temporal (the store's contents do not depend on who orchestrates the calls). Every 100 steps it
 * prints the committed checkpoints, the bytes under the run's checkpoints and steps folders, and
 * what the same run would hold without a policy (every checkpoint kept). At the end, resume-from is
 * tried from every kept checkpoint: a new run continues one step from it (initRun with resumeFrom,
 * learnerUpdate, commitStep), and its weights must equal the source's next checkpoint where the
 * source still has it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { commitStep } from '../activities/checkpoint/commit-step.js';
import { initRun } from '../activities/checkpoint/init-run.js';
import { learnerUpdate } from '../activities/learner/learner-update.js';
import { parameterCount } from '../activities/model/config.js';
import { parseRunConfig } from '../activities/run/config.js';
import { resolveRun } from '../activities/run/resolve.js';
import type { LearnerInput } from '../activities/run/types.js';
import { checkpointPrefix, MODEL_NAME, runFolder } from '../activities/store/keys.js';
import { committedSteps, readManifest } from '../activities/store/manifest.js';
import type { ObjectStore } from '../activities/store/object-store.js';
import { openStore } from '../activities/store/open.js';
import { emptyMetrics } from '../workflows/step-metrics.js';

const args = process.argv.slice(2);
const arg = (name: string, def: number): number => (args.includes(name) ? Number(args[args.indexOf(name) + 1]) : def);
const STEPS = arg('--steps', 1000);
const KEEP_LAST = arg('--keep-last', 3);
const KEEP_EVERY = arg('--keep-every', 250);
const BATCH = 8;

async function bytesUnder(store: ObjectStore, prefix: string): Promise<number> {
  let n = 0;
  for await (const o of store.list(`${prefix}/`)) n += o.size;
  return n;
}

const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;

function sftInput(storeUri: string, runId: string, step: number): LearnerInput {
  return {
    storeUri,
    runId,
    step,
    phaseIndex: 0,
    phase: 'sft',
    lr: 1e-3,
    referenceVersion: null,
    promptOffset: step * BATCH,
    batchSize: BATCH,
    rollouts: [],
    advantages: null,
  };
}

async function trainStep(storeUri: string, runId: string, step: number): Promise<string> {
  const r = await learnerUpdate(sftInput(storeUri, runId, step));
  await commitStep({ storeUri, runId, step, phase: 'sft', checkpoint: r.checkpoint, artifacts: [], metrics: emptyMetrics() });
  return r.checkpoint.find((e) => e.name === MODEL_NAME)!.sha256;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-retention-'));
  const storeUri = pathToFileURL(dir).href;
  const store = openStore(storeUri);
  const runId = 'long';
  const config = parseRunConfig({
    name: 'retention-bench',
    seed: 1,
    store: storeUri,
    phases: [{ kind: 'sft', steps: STEPS, batchSize: BATCH, lr: 1e-3 }],
    learner: { microBatchSize: BATCH },
    engine: { threads: 2 },
    retention: { keepLast: KEEP_LAST, keepEvery: KEEP_EVERY },
  });
  const params = parameterCount(resolveRun(config).model);
  process.stdout.write(
    `${STEPS} sft steps of a ${(params / 1e3).toFixed(0)}k-parameter model, retention keepLast ${KEEP_LAST}, keepEvery ${KEEP_EVERY} (applied by every commit)\n`,
  );
  const t0 = performance.now();
  await initRun({ storeUri, runId, config, resumeFrom: null });
  const perCheckpoint = await bytesUnder(store, checkpointPrefix(runId, 0));
  const sha: string[] = [];
  let peak = 0;
  for (let step = 0; step < STEPS; step++) {
    sha[step + 1] = await trainStep(storeUri, runId, step);
    const done = step + 1;
    if (done % 100 === 0 || done === STEPS) {
      const ckpt = await bytesUnder(store, runFolder(runId, 'checkpoints'));
      const steps = await bytesUnder(store, runFolder(runId, 'steps'));
      peak = Math.max(peak, ckpt + steps);
      const kept = await committedSteps(store, runId, 'checkpoints');
      process.stdout.write(
        `step ${String(done).padStart(5)}: ${kept.length} checkpoints kept [${kept.join(', ')}], checkpoints ${mb(ckpt)}, step data ${mb(steps)}; ` +
          `without retention ${mb((done + 1) * perCheckpoint + steps)}; ${((performance.now() - t0) / 1000).toFixed(0)} s\n`,
      );
    }
  }
  process.stdout.write(`peak store size ${mb(peak)} (one checkpoint ${mb(perCheckpoint)})\n`);

  // resume-from every kept checkpoint: one step further, equal to the source's next checkpoint where it is kept
  const kept = await committedSteps(store, runId, 'checkpoints');
  for (const v of kept) {
    if (v >= STEPS) {
      process.stdout.write(`checkpoint ${v}: the run's last, nothing left to resume\n`);
      continue;
    }
    const resumed = `resume-${v}`;
    await initRun({ storeUri, runId: resumed, config, resumeFrom: { runId, checkpoint: v } });
    const got = await trainStep(storeUri, resumed, v);
    const source = (await readManifest(store, checkpointPrefix(runId, v + 1)))?.artifacts.find((e) => e.name === MODEL_NAME)?.sha256;
    const verdict = got === sha[v + 1] ? 'bitwise equal to the source run’s' : 'DIFFERENT from the source run’s';
    process.stdout.write(
      `checkpoint ${v}: resume-from trains step ${v} to checkpoint ${v + 1}, ${verdict}${source ? '' : ' (the source no longer keeps it)'}\n`,
    );
  }
  await store.close();
  await rm(dir, { recursive: true, force: true });
}

await main();
