/**
 * The whole GRPO step side by side with TRL (issue 16 item 4), numbers only:
 *
 *   DURABLE_RL_STATE_DIR=/tmp/grpo-bench npx tsx bench/grpo-step.ts --with-trl /tmp/pyfx/bin/python
 *   npx tsx bench/grpo-step.ts --steps 4 --prompts 8 --group 4 --with-trl python   # a smoke run
 *   npx tsx bench/grpo-step.ts                                  # durable-rl alone
 *
 * durable-rl runs the way a user runs it: a training run started through Temporal (the dev server
 * of the state dir, `DURABLE_RL_STATE_DIR`: give the benchmark one of its own so no other worker
 * takes its activities) on one all-in-one worker process (`durable-rl worker`, every queue, the
 * entrypoints' concurrency), a fresh file:// store. Through Temporal rather than the activities
 * in-process, because that is what a user's RL step costs: the step time read from the committed
 * metrics includes the activity scheduling, the store writes and the commit the durability needs.
 * The run is the main job's rl phase alone (the embedded defaults: addition with 1-3 digit
 * operands, reversed, padded; a char-level llama of hidden 128 × 2 layers × 4 heads from scratch;
 * 32 prompts × 8 samples per step, temperature 0.7, the completion budget (task's longest answer
 * + 4 = 8 tokens), clipped surrogate 0.2/0.28, no KL (the main job's β = 0 KL metric, a reference
 * forward each step, is left out: TRL at β = 0 scores no reference), learner micro-batches of 64, AdamW
 * 0.9/0.99, lr 2e-4 cosine to 0.1x; engine threads 2), `--steps` steps.
 *
 * Then, in the same invocation, `bench/trl-companion.py` runs TRL's GRPOTrainer on the same
 * settings: checkpoint 0 of that run (its initial weights) exported with the project's export
 * (`exportRun`, what `durable-rl export` writes: HF config, safetensors, char tokenizer), the same
 * prompts in the same order (the task's train items of each step, written to a JSONL file: prompt
 * and reference), group size, completion budget, temperature, loss clipping, micro-batch and
 * optimizer, the same exact-match reward re-implemented, transformers `generate` (no vLLM), CPU,
 * the same threads. Both start from identical weights and tokenizer.
 *
 * Prints, per side: seconds per rl step (durable-rl: `step_seconds` of the committed metrics, from
 * the start of the rollout to the commit; TRL: on_step_begin → on_step_end of the trainer, the
 * generation included), as the mean of the steps after the first (the first builds sessions /
 * warms up on both sides, printed apart), steps per hour, mean completion length and reward (the
 * work done must match), and the ratio durable-rl / TRL in steps per hour (issue 16's goal: 3x).
 * Also the wall time of each side's whole run for reference, and the load average.
 *
 * Options: `--steps N` (default 10), `--prompts N` per step (32), `--group N` (8), `--hidden`,
 * `--layers`, `--heads` (128, 2, 4), `--threads N` (2: engine and torch), `--micro N` learner
 * micro-batch (64), `--rounds N` (1): N runs of each side, alternated (durable-rl, TRL, durable-rl,
 * …) so the load of other processes falls on both alike, the steps/hour over all of them;
 * `--with-trl PYTHON` (the interpreter with trl; without it durable-rl alone).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { exportRun } from '../activities/checkpoint/export.js';
import { completionBudget, parseRunConfig, type RunConfig } from '../activities/run/config.js';
import { METRICS_NAME, rolloutsName, stepPrefix } from '../activities/store/keys.js';
import { committedSteps, readArtifact } from '../activities/store/manifest.js';
import { openStore } from '../activities/store/open.js';
import { decodeMetrics, decodeRollouts, type MetricsRow } from '../activities/store/schemas.js';
import { getTask } from '../activities/tasks/tasks.js';
import { endpointsEnv, up } from '../infra/index.js';
import { connectClient, temporalConfig } from '../workers/temporal.js';
import { startTrainingRun } from '../workers/train-client.js';
import { spawnWorker } from './workers.js';

const { values: opts } = parseArgs({
  options: {
    steps: { type: 'string', default: '10' },
    prompts: { type: 'string', default: '32' },
    group: { type: 'string', default: '8' },
    hidden: { type: 'string', default: '128' },
    layers: { type: 'string', default: '2' },
    heads: { type: 'string', default: '4' },
    threads: { type: 'string', default: '2' },
    micro: { type: 'string', default: '64' },
    rounds: { type: 'string', default: '1' },
    'with-trl': { type: 'string' },
  },
});
const steps = Number(opts.steps);
const threads = Number(opts.threads);
const rounds = Number(opts.rounds);
const python = opts['with-trl'];
const defaults = parseRunConfig({});
const defaultRl = defaults.phases.find((p): p is Extract<RunConfig['phases'][number], { kind: 'rl' }> => p.kind === 'rl')!;

/** The main job's rl phase alone, at the sizes asked for. */
const configFor = (store: string): RunConfig =>
  parseRunConfig({
    name: 'grpo-step-bench',
    seed: defaults.seed,
    store,
    task: defaults.task,
    model: { hidden: Number(opts.hidden), layers: Number(opts.layers), heads: Number(opts.heads) },
    // the main job measures the KL to its warm-up model at β = 0 (a reference forward pass every
    // step, for its chart); TRL at β = 0 loads no reference model, so here neither side scores one
    phases: [
      {
        ...defaultRl,
        steps,
        promptsPerStep: Number(opts.prompts),
        groupSize: Number(opts.group),
        loss: { ...defaultRl.loss, options: { ...defaultRl.loss.options, kl: null } },
      },
    ],
    learner: { microBatchSize: Number(opts.micro) },
    eval: { prompts: 8, passK: 0 },
    engine: { threads },
  });

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
const fmt = (x: number, digits = 2) => x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

interface Side {
  /** Seconds of each rl step, in order. */
  stepS: number[];
  /** Wall time of the whole run (durable-rl: start to result, evaluations and initRun included; TRL: trainer.train()). */
  wallS: number;
  completionLengthMean: number;
  rewardMean: number;
  /** Mean seconds of each stage over the steps after the first (durable-rl: the metrics' stage times; TRL: time inside its trainer's methods). */
  stages?: Record<string, number>;
}

const load0 = loadavg()[0]!;
const dir = mkdtempSync(join(tmpdir(), 'bench-grpo-step-'));
const template = configFor(pathToFileURL(join(dir, 'store-0')).href);
const first = template.phases[0]!;
if (first.kind !== 'rl') throw new Error('the bench run is one rl phase');
const phase = first;
const task = getTask(template.task.name, template.task.options);
const budget = completionBudget(phase, task);
const surrogate = phase.loss.options;
if (phase.loss.name !== 'clipped_surrogate' || !('clipLow' in surrogate)) throw new Error('the bench run uses the clipped surrogate');
const loss = surrogate;
console.log(
  `GRPO step: ${task.name}, ${phase.promptsPerStep} prompts x ${phase.groupSize} samples, completion budget ${budget} tokens, temperature ${phase.sampling.temperature}, ` +
    `llama ${template.model.hidden} x ${template.model.layers} layers, learner micro-batch ${template.learner.microBatchSize}, threads ${threads}, ${cpus().length} CPUs; ` +
    `${rounds} round(s) of durable-rl then TRL; load average ${fmt(load0)}`,
);

const e = await up({ quiet: true, components: ['temporal'] });
const worker = await spawnWorker(endpointsEnv(e));
const client = await connectClient(temporalConfig({ address: e.temporal.address, namespace: e.temporal.namespace }));

/** durable-rl's run through Temporal on the all-in-one worker, in a fresh store (same config and seed each round: same weights). */
async function durableRl(round: number): Promise<Side & { storeUri: string; runId: string; firstPromptIds: number[] }> {
  const storeUri = pathToFileURL(join(dir, `store-${round}`)).href;
  const config = configFor(storeUri);
  const t0 = performance.now();
  const run = await startTrainingRun(client, config);
  const result = await run.result();
  const wallS = (performance.now() - t0) / 1000;
  if (result.status !== 'completed') throw new Error(`run ${run.runId} ended ${result.status}`);
  const store = openStore(storeUri);
  const rows: MetricsRow[] = [];
  for (const s of await committedSteps(store, run.runId))
    rows.push(decodeMetrics(await readArtifact(store, stepPrefix(run.runId, s), METRICS_NAME))[0]!);
  // the first prompt as durable-rl encoded it, to check the TRL side sees the same ids
  const rollouts = decodeRollouts(await readArtifact(store, stepPrefix(run.runId, 0), rolloutsName(0)));
  await store.close();
  const later = rows.slice(1);
  return {
    storeUri,
    runId: run.runId,
    firstPromptIds: [...rollouts[0]!.prompt_token_ids],
    stepS: rows.map((r) => r.step_seconds!),
    wallS,
    completionLengthMean: mean(rows.map((r) => r.completion_length_mean!)),
    rewardMean: mean(rows.map((r) => r.reward_mean!)),
    stages: {
      rollout: mean(later.map((r) => r.rollout_seconds!)),
      reward: mean(later.map((r) => r.reward_seconds!)),
      advantages: mean(later.map((r) => r.advantage_seconds!)),
      learner: mean(later.map((r) => r.learner_seconds!)),
    },
  };
}

/** TRL's GRPOTrainer on `modelDir` and the prompts file, through bench/trl-companion.py; null when it failed. */
function trl(modelDir: string, data: string): (Side & { versions: Record<string, string>; promptIds0: number[] }) | null {
  const reversed = (task.reward.options as { reversed?: boolean }).reversed === true;
  const argv = [
    fileURLToPath(new URL('trl-companion.py', import.meta.url)),
    ...['--model', modelDir, '--data', data, '--steps', String(steps), '--prompts', String(phase.promptsPerStep)],
    ...['--group', String(phase.groupSize), '--max-new', String(budget), '--temperature', String(phase.sampling.temperature)],
    ...['--lr', String(phase.lr), '--min-lr-ratio', String(phase.minLrRatio), '--micro', String(template.learner.microBatchSize)],
    ...['--beta1', String(template.optimizer.beta1), '--beta2', String(template.optimizer.beta2)],
    ...[
      '--max-grad-norm',
      String(template.optimizer.maxGradNorm),
      '--clip-low',
      String(loss.clipLow),
      '--clip-high',
      String(loss.clipHigh),
    ],
    ...['--threads', String(threads), '--seed', String(template.seed), ...(reversed ? ['--reversed'] : [])],
  ];
  const t0 = performance.now();
  const r = spawnSync(python!, argv, { encoding: 'utf8', maxBuffer: 1 << 26 });
  const out = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (out) return JSON.parse(out.slice(7)) as Side & { versions: Record<string, string>; promptIds0: number[] };
  console.log(
    `TRL failed (exit ${r.status}, signal ${r.signal}) after ${fmt((performance.now() - t0) / 1000, 0)} s:\n${r.stderr.slice(-3000)}`,
  );
  return null;
}

const line = (name: string, s: Side) => {
  const later = s.stepS.slice(1);
  return (
    `${name}: ${s.stepS.length} rl steps, first ${fmt(s.stepS[0]!)} s, then ${fmt(mean(later))} s/step (${later.map((x) => fmt(x)).join(', ')}) = ` +
    `${fmt(3600 / mean(later), 0)} steps/hour; whole run ${fmt(s.wallS, 1)} s wall; mean completion ${fmt(s.completionLengthMean)} tokens, mean reward ${fmt(s.rewardMean, 3)}`
  );
};

const ours: Side[] = [];
const theirs: Side[] = [];
let data = '';
let modelDir = '';
try {
  for (let round = 0; round < rounds; round++) {
    const d = await durableRl(round);
    ours.push(d);
    console.log(line(`round ${round + 1} durable-rl (Temporal, all-in-one worker)`, d));
    const stages = Object.entries(d.stages!);
    console.log(
      `  stages, mean of steps 2..${steps}: ${stages.map(([k, v]) => `${k} ${fmt(v)} s`).join(', ')}; ` +
        `step minus these: ${fmt(mean(d.stepS.slice(1)) - stages.reduce((a, [, v]) => a + v, 0))} s (scheduling, store writes, the commit)`,
    );
    if (!python) continue;
    if (round === 0) {
      // checkpoint 0 (the initial weights, the same in every round) as an HF directory, and the steps' prompts in order
      modelDir = join(dir, 'model');
      await exportRun(d.storeUri, d.runId, 0, modelDir);
      const items = task.prompts(template.seed, 'train', steps * phase.promptsPerStep, 0); // one rl phase: step k takes items [kP, (k+1)P)
      data = join(dir, 'prompts.jsonl');
      writeFileSync(data, items.map((it) => JSON.stringify({ prompt: it.prompt, reference: it.reference })).join('\n') + '\n');
    }
    const t = trl(modelDir, data);
    if (!t) continue;
    theirs.push(t);
    if (round === 0) {
      const same = JSON.stringify(t.promptIds0) === JSON.stringify(d.firstPromptIds);
      console.log(
        `first prompt's ids: durable-rl [${d.firstPromptIds.join(',')}], TRL [${t.promptIds0.join(',')}]${same ? ' (equal)' : ' — DIFFERENT: the sides do not see the same prompts'}`,
      );
    }
    const versions = Object.entries(t.versions)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    console.log(line(`round ${round + 1} TRL GRPOTrainer (${versions})`, t));
    const ts = t.stages!;
    console.log(
      `  stages, mean of steps 2..${steps}: generate ${fmt(ts.generate!)} s, rewards ${fmt(ts.rewards!)} s, generate-and-score ${fmt(ts.generateAndScore!)} s ` +
        `(those two, tokenising, logprobs, advantages); step minus that: ${fmt(mean(t.stepS.slice(1)) - ts.generateAndScore!)} s (forward/backward passes, optimizer)`,
    );
  }
} finally {
  worker.kill('SIGTERM');
  await client.connection.close();
  rmSync(dir, { recursive: true, force: true });
}

/** Steps per hour over every round's steps after the first of its run. */
const perHour = (sides: Side[]) => 3600 / mean(sides.flatMap((s) => s.stepS.slice(1)));
const wallPerHour = (sides: Side[]) => (3600 * steps * sides.length) / sides.reduce((a, s) => a + s.wallS, 0);
const both = theirs.length > 0;
console.log(
  `\nsteps/hour (mean of steps 2..${steps} of ${ours.length} run(s)): durable-rl ${fmt(perHour(ours), 0)}` +
    (both ? `, TRL ${fmt(perHour(theirs), 0)}, ratio durable-rl / TRL ${fmt(perHour(ours) / perHour(theirs))}x (goal 3x)` : '') +
    `\nwhole runs (steps / wall, first step and start-up included; durable-rl also its initRun and two 8-prompt evaluations): durable-rl ${fmt(wallPerHour(ours), 0)}` +
    (both ? `, TRL ${fmt(wallPerHour(theirs), 0)}, ratio ${fmt(wallPerHour(ours) / wallPerHour(theirs))}x` : '') +
    `\nload average ${fmt(load0)} at start, ${fmt(loadavg()[0]!)} at end`,
);
if (Math.max(load0, loadavg()[0]!) > cpus().length && threads > 1)
  console.log(
    `note: load average ${fmt(Math.max(load0, loadavg()[0]!))} is above the ${cpus().length} CPUs: spinning thread pools (PyTorch's OpenMP, onnxruntime's intra-op pool) lose time to other processes, unequally; take these ratios on a quiet machine, or compare at --threads 1`,
  );
