/**
 * `durable-rl replay <run>`: fetches the history of every execution of a workflow (the whole
 * continue-as-new chain) and replays each against the current workflow code, so a change that
 * would break runs in flight shows up before it is deployed (the replay test does the same for
 * the kept fixtures). `--save DIR` writes each history as JSON in the format of
 * test/fixtures/histories/ (what `JSON.stringify(await handle.fetchHistory())` writes), to keep
 * as a replay fixture.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { say, UsageError } from './cli-common.js';

type History = temporal.api.history.v1.IHistory;

export interface Execution {
  runId: string;
  history: History;
}

/**
 * Every execution of `workflowId`, oldest first: from the latest, back through each execution's
 * `continuedExecutionRunId` (read from its own history, so no visibility lag can drop one).
 */
export async function fetchExecutions(client: Client, workflowId: string): Promise<Execution[]> {
  const latest = await client.workflow.getHandle(workflowId).describe();
  const out: Execution[] = [];
  const seen = new Set<string>();
  let runId: string | undefined = latest.runId;
  while (runId && !seen.has(runId)) {
    seen.add(runId);
    const history: History = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    out.unshift({ runId, history });
    const started: temporal.api.history.v1.IWorkflowExecutionStartedEventAttributes | null | undefined =
      history.events?.[0]?.workflowExecutionStartedEventAttributes;
    runId = started?.continuedExecutionRunId || undefined;
  }
  return out;
}

export async function replayCommand(client: Client, workflowId: string, opts: { save?: string }): Promise<number> {
  const executions = await fetchExecutions(client, workflowId);
  if (executions.length === 0) throw new UsageError(`"${workflowId}" has no history to replay`);
  say(`replaying ${executions.length} execution${executions.length === 1 ? '' : 's'} of ${workflowId} against the current workflow code`);
  if (opts.save) {
    const dir = resolve(opts.save);
    await mkdir(dir, { recursive: true });
    for (const [i, e] of executions.entries()) {
      const file = join(dir, `${workflowId}-${String(i + 1).padStart(2, '0')}.json`);
      await writeFile(file, `${JSON.stringify(e.history, null, 1)}\n`);
      say(`  saved ${file}`);
    }
  }
  const [{ Worker }, { bundleWorkflows }, { installRuntime }] = await Promise.all([
    import('@temporalio/worker'),
    import('./worker.js'),
    import('./runtime.js'),
  ]);
  installRuntime();
  const workflowBundle = await bundleWorkflows();
  const byRun = new Map(executions.map((e, i) => [e.runId, i + 1]));
  let failed = 0;
  let i = 0;
  for await (const r of Worker.runReplayHistories(
    { workflowBundle, replayName: 'durable-rl-replay' },
    executions.map((e) => ({ workflowId, history: e.history })),
  )) {
    i++;
    const n = byRun.get(r.runId) ?? i;
    const e = executions[n - 1];
    const label = `execution ${n}/${executions.length} ${e?.runId ?? r.runId} (${e?.history.events?.length ?? 0} events)`;
    if (r.error) {
      failed++;
      say(`  ${label}: FAILED ${r.error.name}: ${r.error.message.split('\n')[0]}`);
    } else {
      say(`  ${label}: OK`);
    }
  }
  say(
    failed === 0
      ? `replay OK: every execution of ${workflowId} replays against the current code`
      : `replay FAILED: ${failed} of ${executions.length} executions are non-deterministic against the current code`,
  );
  return failed === 0 ? 0 : 1;
}
