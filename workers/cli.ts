/**
 * The `durable-rl` command line.
 *
 *   durable-rl demo                 the main job on the embedded defaults (see README)
 *   durable-rl annotate <key>       start reward annotation of an Arrow file in the store
 *   durable-rl make-sample          write a sample annotation input to the store
 *   durable-rl status <job>         progress of an annotation job
 *   durable-rl worker               run workers (all queues, or --queues a,b)
 *
 * Common options: --store URI (default file://./out/store, or DURABLE_RL_STORE); Temporal from
 * DURABLE_RL_TEMPORAL_* (see workers/temporal.ts), else the local dev server that `infra` starts.
 * Errors print one line and exit non-zero.
 */
import './cli-env.js';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { WorkflowNotFoundError } from '@temporalio/client';
import { ConfigError } from '../activities/common/config.js';
import type { AnnotateRewardsResult } from '../activities/reward/annotate-types.js';
import { writeSampleInputs } from '../activities/reward/annotate-activities.js';
import { up } from '../infra/index.js';
import { TASK_QUEUES, type QueueName } from '../workflows/task-queues.js';
import { annotateProgress, startAnnotateRewards } from './client.js';
import { connectClient, temporalConfig, temporalEnv, workflowUrl, type TemporalConfig } from './temporal.js';
import { ALL_QUEUES, createWorkers } from './worker.js';

const USAGE = `usage: durable-rl <command> [options]

commands:
  demo                      score a generated sample with the annotateRewards workflow (the main job)
  annotate <input-key>      start annotateRewards on an Arrow file (schema annotation_inputs) in the store
  make-sample               write a generated annotation_inputs file to the store
  status <job-id>           show the progress of an annotation job
  worker                    run workers until SIGINT/SIGTERM

options:
  --store URI               object store: file:///dir or s3://bucket/prefix (default: file://./out/store)
  --job ID                  job id / workflow id (annotate, demo)
  --records N               records to generate (make-sample, demo; default 2000)
  --key KEY                 key of the generated file (make-sample; default inputs/sample.arrow)
  --shard-size N            records per shard (default 1000; demo 250)
  --reward NAME             reward registry name (default math_equivalence)
  --wait                    annotate: wait for the result and print it
  --queues a,b              worker: queues to poll (${ALL_QUEUES.join(', ')}; default all)
  -h, --help                this text`;

class UsageError extends Error {}

function defaultStore(): string {
  return process.env.DURABLE_RL_STORE ?? pathToFileURL(resolve('out/store')).href;
}

/**
 * A relative `file://dir` is made absolute here, against the CLI's working directory: workflows
 * pass the store URI to workers, which may run elsewhere (jobs reject relative file stores).
 */
function absoluteStore(uri: string): string {
  if (!uri.startsWith('file://') || uri.startsWith('file:///') || uri.startsWith('file://localhost/')) return uri;
  return pathToFileURL(resolve(decodeURIComponent(uri.slice('file://'.length)))).href;
}

/** Temporal from the environment, else the local dev server (started if needed). */
async function resolveTemporal(): Promise<TemporalConfig> {
  const env = temporalEnv();
  if (env.address) return temporalConfig(env);
  const e = await up({ components: ['temporal'] });
  return temporalConfig({ address: e.temporal.address, namespace: e.temporal.namespace, uiUrl: e.temporal.uiUrl });
}

function int(v: string | undefined, name: string, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${name} must be a positive integer, got "${v}"`);
  return n;
}

const say = (line: string) => process.stdout.write(`${line}\n`);

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      store: { type: 'string' },
      job: { type: 'string' },
      records: { type: 'string' },
      key: { type: 'string' },
      'shard-size': { type: 'string' },
      reward: { type: 'string' },
      wait: { type: 'boolean' },
      queues: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    say(USAGE);
    return values.help ? 0 : 2;
  }
  const store = absoluteStore(values.store ?? defaultStore());
  const reward = values.reward ? { name: values.reward } : undefined;

  switch (command) {
    case 'make-sample': {
      const key = values.key ?? 'inputs/sample.arrow';
      const n = await writeSampleInputs(store, key, int(values.records, 'records', 2000), 1);
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
        jobId, storeUri: store, inputKey, reward,
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
      const jobId = rest[0];
      if (!jobId) throw new UsageError('status needs a job id');
      const client = await connectClient(await resolveTemporal());
      const desc = await client.workflow.getHandle(jobId).describe().catch((err: unknown) => {
        // Only "not found" means there is no such job; anything else (unreachable server, denied) is reported as is.
        if (err instanceof WorkflowNotFoundError) throw new UsageError(`no job "${jobId}" on Temporal namespace ${client.options.namespace}`);
        throw err;
      });
      say(`${jobId}: ${desc.status.name}`);
      const p = await annotateProgress(client, jobId);
      if (p) say(`  ${p.phase}: shards ${p.shardsDone}/${p.shards}, records ${p.recordsScored}/${p.records}, reward errors ${p.errors}`);
      return 0;
    }
    case 'worker': {
      const queues = (values.queues?.split(',') ?? ALL_QUEUES) as QueueName[];
      for (const q of queues) if (!ALL_QUEUES.includes(q)) throw new UsageError(`unknown queue "${q}": use ${ALL_QUEUES.join(', ')}`);
      const temporal = await resolveTemporal();
      const group = await createWorkers({ temporal, queues });
      say(`workers polling ${queues.map((q) => TASK_QUEUES[q]).join(', ')} on ${temporal.address}; Ctrl-C to stop`);
      await group.run();
      return 0;
    }
    case 'demo':
      return demo(store, values);
    default:
      throw new UsageError(`unknown command "${command}" (try --help)`);
  }
}

function printResult(r: AnnotateRewardsResult): void {
  say(`records: ${r.records}   accuracy: ${(100 * r.accuracy).toFixed(1)}%   mean reward: ${r.meanReward.toFixed(4)}   reward errors: ${r.errors}   dropped: ${r.dropped}`);
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
  await writeSampleInputs(store, inputKey, records, 1);
  say(`2/4 wrote ${records} (prompt, completion, reference) records to ${store}/${inputKey}`);
  const group = await createWorkers({ temporal, queues: ['control', 'reward'] });
  const running = group.run();
  try {
    const client = await connectClient(temporal);
    const jobId = values.job ?? `demo-${new Date().toISOString().replace(/[-:.TZ]/g, '').slice(0, 14)}`;
    const started = await startAnnotateRewards(client, {
      jobId, storeUri: store, inputKey,
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
    const msg = err instanceof UsageError || err instanceof ConfigError || err instanceof Error ? err.message : String(err);
    process.stderr.write(`durable-rl: ${msg}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  },
);
