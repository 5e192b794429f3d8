/**
 * The `durable-rl` command line.
 *
 *   durable-rl train [config.yaml|json]   start a training run (the embedded defaults without a file)
 *   durable-rl status <run|job>           state and progress of a training run or an annotation job
 *   durable-rl pause|resume|stop|retry <run>  control a running training run (answers the step it takes effect at)
 *   durable-rl resume-from <run>          a new run from another run's committed checkpoint
 *   durable-rl replay <run>               replay every execution's history against the current code
 *   durable-rl report <run>               the run's HTML report
 *   durable-rl export <run>               a checkpoint as a Hugging Face-style model directory
 *   durable-rl gc <run>                   remove the checkpoints (and optimizer state) the run's retention policy no longer keeps
 *   durable-rl runs                       recent training runs
 *   durable-rl demo                       the reward-annotation demo
 *   durable-rl annotate <key>             start reward annotation of an Arrow file in the store
 *   durable-rl make-sample                write a sample annotation input to the store
 *   durable-rl make-dataset gsm8k-style   write the example dataset: GSM8K-style word problems as JSONL
 *   durable-rl worker                     run workers (all queues, or --queues a,b)
 *
 * `npm start` is `train --follow --with-workers`: the main job. Temporal from DURABLE_RL_TEMPORAL_*
 * (see workers/temporal.ts), else the local dev server that `infra` starts. Errors print one line
 * and exit non-zero: 2 for a bad command line, config or unknown run, 1 for anything else.
 */
import './cli-env.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError } from '../activities/common/config.js';
import { wordProblemsJsonl } from '../activities/data/gsm8k-style.js';
import type { AnnotateRewardsResult } from '../activities/reward/annotate-types.js';
import type { writeSampleInputs as WriteSampleInputs } from '../activities/reward/annotate-activities.js';
import { QUEUE_NAMES, TASK_QUEUES } from '../workflows/task-queues.js';
import { annotateProgress, startAnnotateRewards } from './client.js';
import { int, resolveTemporal, say, UsageError } from './cli-common.js';
import { replayCommand } from './cli-replay.js';
import {
  controlCommand,
  describeJob,
  exportCommand,
  gcCommand,
  reportCommand,
  resumeFromCommand,
  runsCommand,
  runStatus,
  trainCommand,
} from './cli-run.js';
import { workerCommand } from './cli-worker.js';
import { connectClient, workflowUrl } from './temporal.js';
import { absoluteStoreUri, RunError } from './train-client.js';

const USAGE = `usage: durable-rl <command> [options]

training runs:
  train [config.yaml|json]  validate a run config (default: the embedded one), start the run, print its id
                            and Web UI link; --follow shows progress until it ends, then the eval accuracy
                            before and after RL and the report's path
  status <run>              status and progress of a training run (or of an annotation job)
  pause <run>               pause after the current step (--step N: before step N)
  resume <run>              continue a paused run
  stop <run>                finish the current step, then end as stopped (a paused or blocked run: at once)
  retry <run>               a run blocked on an error retrying cannot fix (after you fixed the cause): call the
                            blocked stage again
  resume-from <run>         start a new run from <run>'s last committed checkpoint (or --step N's)
  replay <run>              replay every execution of the run against the current workflow code (exit 1
                            if any is non-deterministic)
  report <run>              write the run's HTML report
  export <run>              export a checkpoint (model.safetensors, config.json, ONNX graphs) to a directory
  gc <run>                  remove the checkpoints (and AdamW moments) the run's retention policy no longer keeps;
                            prints each removal and the bytes freed (step metrics and evaluations are never removed)
  runs                      recent training runs with their search attributes

datasets:
  make-dataset gsm8k-style  write GSM8K-style arithmetic word problems (templated, seeded) as JSONL with the
                            columns question, prompt, completion, answer (docs/configs/gsm8k-style.yaml)

reward annotation:
  demo                      score a generated sample with the annotateRewards workflow
  annotate <input-key>      start annotateRewards on an Arrow file (schema annotation_inputs) in the store
  make-sample               write a generated annotation_inputs file to the store
  worker                    run workers until SIGINT/SIGTERM

options:
  --store URI               object store: file:///dir or s3://bucket/prefix. train: overrides the config's
                            store (default file://./durable-rl-data); report/export: read the run from it
                            without asking Temporal; annotation: default file://./out/store or DURABLE_RL_STORE
  --follow                  train, resume-from: live progress until the run ends (redrawn on a terminal,
                            one line per change otherwise), then the result and the report
  --with-workers            train, resume-from: run the all-in-one workers in this process until the run ends
  --name NAME               train: the run's name (prefix of its id)
  --seed N                  train: the run's seed; make-dataset: the problems' seed (default 1)
  --step N                  resume-from, export: the checkpoint after step N (default: the latest);
                            pause: pause before step N instead of after the current step
  --out PATH                report: the HTML file (default ./durable-rl-reports/<run>.html);
                            export: the directory (default ./durable-rl-exports/<run>[-step-N]);
                            make-dataset: the JSONL file (default ./data/gsm8k-style.jsonl)
  --dry-run                 gc: print what would be removed, remove nothing
  --keep-last N             gc: keep the N latest checkpoints (overrides the run's retention.keepLast)
  --keep-every M            gc: also keep every M-th checkpoint (retention.keepEvery)
  --optimizer-state S       gc: last (AdamW moments on the latest checkpoint only) or all (retention.optimizerState)
  --rows N                  make-dataset: rows to write (default 5000)
  --save DIR                replay: also write each execution's history as JSON (replay test fixtures)
  --limit N                 runs: how many (default 20)
  --job ID                  job id / workflow id (annotate, demo)
  --records N               records to generate (make-sample, demo; default 2000)
  --key KEY                 key of the generated file (make-sample; default inputs/sample.arrow)
  --shard-size N            records per shard (default 1000; demo 250)
  --reward NAME             reward registry name (default math_equivalence)
  --wait                    annotate: wait for the result and print it
  --queues a,b              worker: queues to poll (${QUEUE_NAMES.join(', ')}; default all)
  --QUEUE-concurrency N     worker: tasks at once on that queue, e.g. --reward-concurrency 8 (env
                            DURABLE_RL_<QUEUE>_CONCURRENCY; default rollout 1, learner 1, reward 4,
                            control the Temporal SDK's), as the per-queue worker entrypoints
  --shutdown-grace S        worker: seconds in-flight activities get to finish on SIGINT/SIGTERM, then
                            they are cancelled (env DURABLE_RL_SHUTDOWN_GRACE_SECONDS; default 30)
  --metrics PORT|HOST:PORT  worker: the Temporal SDK's worker metrics for Prometheus at
                            http://HOST:PORT/metrics (env DURABLE_RL_METRICS_ADDRESS; default none)
  -h, --help                this text`;

const workerModule = () => import('./worker.js');
const sampleInputs = async (...args: Parameters<typeof WriteSampleInputs>) =>
  (await import('../activities/reward/annotate-activities.js')).writeSampleInputs(...args);

function defaultStore(): string {
  return process.env.DURABLE_RL_STORE ?? pathToFileURL(resolve('out/store')).href;
}

/** The one positional argument a command needs. */
function arg(rest: string[], command: string, what: string): string {
  const [v, ...extra] = rest;
  if (!v) throw new UsageError(`${command} needs ${what}`);
  if (extra.length > 0) throw new UsageError(`${command} takes one argument (${what}); unexpected: ${extra.join(' ')}`);
  return v;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        store: { type: 'string' },
        follow: { type: 'boolean' },
        'with-workers': { type: 'boolean' },
        name: { type: 'string' },
        seed: { type: 'string' },
        step: { type: 'string' },
        out: { type: 'string' },
        save: { type: 'string' },
        limit: { type: 'string' },
        job: { type: 'string' },
        records: { type: 'string' },
        rows: { type: 'string' },
        key: { type: 'string' },
        'shard-size': { type: 'string' },
        reward: { type: 'string' },
        wait: { type: 'boolean' },
        queues: { type: 'string' },
        ...Object.fromEntries(QUEUE_NAMES.map((q) => [`${q}-concurrency`, { type: 'string' as const }])),
        'shutdown-grace': { type: 'string' },
        metrics: { type: 'string' },
        'dry-run': { type: 'boolean' },
        'keep-last': { type: 'string' },
        'keep-every': { type: 'string' },
        'optimizer-state': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw new UsageError(`${(err as Error).message} (try --help)`);
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    say(USAGE);
    return values.help ? 0 : 2;
  }
  const store = absoluteStoreUri(values.store ?? defaultStore());
  const reward = values.reward ? { name: values.reward } : undefined;

  switch (command) {
    case 'train': {
      if (rest.length > 1) throw new UsageError(`train takes at most one config file; unexpected: ${rest.slice(1).join(' ')}`);
      return trainCommand(rest[0], {
        store: values.store,
        name: values.name,
        seed: values.seed,
        follow: values.follow,
        withWorkers: values['with-workers'],
        reportOut: values.out,
      });
    }
    case 'resume-from':
      return resumeFromCommand(arg(rest, command, 'the id of the run to continue'), {
        step: values.step,
        follow: values.follow,
        withWorkers: values['with-workers'],
        reportOut: values.out,
      });
    case 'pause':
    case 'resume':
    case 'stop':
    case 'retry':
      return controlCommand(command, arg(rest, command, 'a run id'), { step: values.step });
    case 'report':
      return reportCommand(arg(rest, command, 'a run id'), { out: values.out, store: values.store });
    case 'export':
      return exportCommand(arg(rest, command, 'a run id'), { step: values.step, out: values.out, store: values.store });
    case 'gc':
      return gcCommand(arg(rest, command, 'a run id'), {
        store: values.store,
        dryRun: values['dry-run'],
        keepLast: values['keep-last'] === undefined ? undefined : int(values['keep-last'], 'keep-last', 1),
        keepEvery: values['keep-every'] === undefined ? undefined : int(values['keep-every'], 'keep-every', 1),
        optimizerState: values['optimizer-state'],
      });
    case 'replay': {
      const id = arg(rest, command, 'a run id (workflow id)');
      const client = await connectClient(await resolveTemporal());
      await describeJob(client, id);
      return replayCommand(client, id, { save: values.save });
    }
    case 'runs':
      return runsCommand(int(values.limit, 'limit', 20));
    case 'make-dataset': {
      const kind = arg(rest, command, 'the kind of dataset (gsm8k-style)');
      if (kind !== 'gsm8k-style') throw new UsageError(`unknown dataset kind "${kind}"; make-dataset writes gsm8k-style`);
      const out = resolve(values.out ?? 'data/gsm8k-style.jsonl');
      const rows = int(values.rows, 'rows', 5000);
      const seed = int(values.seed, 'seed', 1);
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, wordProblemsJsonl(seed, rows));
      say(`wrote ${rows} GSM8K-style word problems (seed ${seed}) to ${out}`);
      return 0;
    }
    case 'make-sample': {
      const key = values.key ?? 'inputs/sample.arrow';
      const n = await sampleInputs(store, key, int(values.records, 'records', 2000), 1);
      say(`wrote ${n} records to ${store.replace(/\/$/, '')}/${key}`);
      return 0;
    }
    case 'annotate': {
      const inputKey = rest[0];
      if (!inputKey) throw new UsageError('annotate needs the key of the input file in the store, e.g. inputs/sample.arrow');
      const temporal = await resolveTemporal();
      const client = await connectClient(temporal);
      const jobId = values.job ?? `annotate-${Date.now().toString(36)}`;
      const started = await startAnnotateRewards(client, {
        jobId,
        storeUri: store,
        inputKey,
        reward,
        shardSize: values['shard-size'] ? int(values['shard-size'], 'shard-size', 1000) : undefined,
      });
      say(`started annotateRewards  workflow id: ${started.workflowId}`);
      const url = workflowUrl(temporal, started.workflowId);
      if (url) say(`Web UI: ${url}`);
      say(`workers must poll ${TASK_QUEUES.control} and ${TASK_QUEUES.reward}: run \`durable-rl worker\` if none is running`);
      if (values.wait) printResult(await started.result());
      return 0;
    }
    case 'status': {
      const jobId = arg(rest, command, 'a run or job id');
      const client = await connectClient(await resolveTemporal());
      const desc = await describeJob(client, jobId);
      if (desc.type === 'trainingRun') return runStatus(client, jobId, desc);
      say(`${jobId}: ${desc.status.name}`);
      const p = await annotateProgress(client, jobId);
      if (p) say(`  ${p.phase}: shards ${p.shardsDone}/${p.shards}, records ${p.recordsScored}/${p.records}, reward errors ${p.errors}`);
      return 0;
    }
    case 'worker': {
      if (rest.length > 0) throw new UsageError(`worker takes no arguments; unexpected: ${rest.join(' ')} (queues go in --queues a,b)`);
      const flagValue = (name: string) => (values as Record<string, string | boolean | undefined>)[name] as string | undefined;
      return workerCommand({
        queues: values.queues,
        shutdownGrace: values['shutdown-grace'],
        metrics: values.metrics,
        concurrency: Object.fromEntries(QUEUE_NAMES.map((q) => [q, flagValue(`${q}-concurrency`)])),
      });
    }
    case 'demo':
      return demo(store, values);
    default:
      throw new UsageError(`unknown command "${command}" (try --help)`);
  }
}

function printResult(r: AnnotateRewardsResult): void {
  say(
    `records: ${r.records}   accuracy: ${(100 * r.accuracy).toFixed(1)}%   mean reward: ${r.meanReward.toFixed(4)}   reward errors: ${r.errors}   dropped: ${r.dropped}`,
  );
  say(`rewards: ${r.rewardsUri}`);
  say(`manifest: ${r.manifestUri}`);
}

async function demo(store: string, values: { records?: string; job?: string; 'shard-size'?: string; reward?: string }): Promise<number> {
  const t0 = Date.now();
  const records = int(values.records, 'records', 2000);
  say('durable-rl demo: offline reward annotation of generated addition problems');
  say('1/4 Temporal dev server (first run builds it with Go: several minutes)');
  const temporal = await resolveTemporal();
  say(`    Temporal at ${temporal.address}${temporal.uiUrl ? `, Web UI ${temporal.uiUrl}` : ''}`);
  const inputKey = `inputs/addition-${records}.arrow`;
  await sampleInputs(store, inputKey, records, 1);
  say(`2/4 wrote ${records} (prompt, completion, reference) records to ${store}/${inputKey}`);
  const group = await (await workerModule()).createWorkers({ temporal, queues: ['control', 'reward'] });
  const running = group.run();
  try {
    const client = await connectClient(temporal);
    const jobId =
      values.job ??
      `demo-${new Date()
        .toISOString()
        .replace(/[-:.TZ]/g, '')
        .slice(0, 14)}`;
    const started = await startAnnotateRewards(client, {
      jobId,
      storeUri: store,
      inputKey,
      shardSize: int(values['shard-size'], 'shard-size', 250),
      reward: values.reward ? { name: values.reward } : undefined,
    });
    say(`3/4 started workflow ${started.workflowId}`);
    const url = workflowUrl(temporal, started.workflowId);
    if (url) say(`    watch it in the Web UI: ${url}`);
    const result = started.result();
    let last = '';
    const tick = setInterval(() => {
      void annotateProgress(client, jobId).then((p) => {
        if (!p) return;
        const line = `    ${p.phase}: shards ${p.shardsDone}/${p.shards}, records ${p.recordsScored}/${p.records}`;
        if (line !== last) say((last = line));
      });
    }, 500);
    const r = await result.finally(() => clearInterval(tick));
    say(`4/4 done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    printResult(r);
    return 0;
  } finally {
    group.shutdown();
    await running;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const msg = err instanceof Error ? err.message : String(err);
    process.stderr.write(`durable-rl: ${msg.split('\n')[0]}\n`);
    process.exit(err instanceof UsageError || err instanceof ConfigError || err instanceof RunError ? 2 : 1);
  },
);
