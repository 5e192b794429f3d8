/**
 * The chaos soak (issue 14 §7), on private servers on loopback (a temporary state dir, so no other
 * test is disturbed): a run on the S3 store (MinIO) with every worker a separate, supervised
 * process (control, two rollout, reward, learner; restarted whenever it dies), through
 *
 * - SIGKILLs of random workers every 4-10 s, seeded (which worker and when; what each kill hits
 *   depends on the machine's speed), for the whole run;
 * - MinIO SIGKILLed and started again 3 s later;
 * - the Temporal dev server SIGKILLed and started again 3 s later (SQLite persistence: the run's
 *   history survives);
 * - an object-store outage longer than the old retry budget: MinIO down until one stage call has
 *   failed 20 attempts — the old policy's whole budget (maximumAttempts 20, backoff capped at
 *   20 s: ~6 min). The run's retry settings are shrunk so that this is about a minute:
 *   retryIntervalCapSeconds 2 and blockedAfterMinutes 0.1 (6 s).
 *
 * It asserts that every step is committed exactly once (one completed commit per step in the
 * history, one manifest and metrics row each), that the final weights are bitwise equal to the
 * same run without chaos, and that the run showed `blocked` (DurableRlStatus) during the long
 * outage and came back by itself (no signal or Update in its history), and prints the counts.
 * No timing assertions: the outage lasts a number of failed attempts, not seconds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { CounterRng } from '../../../activities/common/rng.js';
import { committedSteps } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';
import { crashServer, down, endpointsEnv, startMinio, startTemporal, up } from '../../../infra/index.js';
import { connectClient, temporalConfig } from '../../../workers/temporal.js';
import { runProgress, startTrainingRun } from '../../../workers/train-client.js';
import { totalSteps } from '../../../workflows/run-plan.js';
import type { QueueName } from '../../../workflows/task-queues.js';
import { activityCalls, userActions, type ActivityCall } from '../../support/history.js';
import { assertCommittedRun, superviseWorker, tinyRunConfig, waitFor, weightsSha, type SupervisedWorker } from '../../support/training.js';

/** Seed of the kill schedule. */
const SEED = 14;
/** The old retry budget: a call failed for good after this many attempts. */
const OLD_MAX_ATTEMPTS = 20;
const FLEET: Record<string, QueueName> = {
  control: 'control',
  rollout1: 'rollout',
  rollout2: 'rollout',
  reward: 'reward',
  learner: 'learner',
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** DurableRlStatus, sampled: the moments it changed. */
function watchStatus(client: Client, runId: string) {
  const changes: { status: string; at: number }[] = [];
  let on = true;
  const done = (async () => {
    while (on) {
      const d = await client.workflow
        .getHandle(runId)
        .describe()
        .catch(() => undefined);
      const s = d?.typedSearchAttributes.get({ name: 'DurableRlStatus', type: 'KEYWORD' } as never) as unknown as string | undefined;
      if (s && s !== changes.at(-1)?.status) changes.push({ status: s, at: Date.now() });
      await sleep(500);
    }
  })();
  return {
    changes,
    /** Milliseconds shown blocked within [from, to]. */
    blockedMs(from: number, to: number) {
      let ms = 0;
      changes.forEach((c, i) => {
        if (c.status !== 'blocked') return;
        const end = changes[i + 1]?.at ?? Date.now();
        ms += Math.max(0, Math.min(end, to) - Math.max(c.at, from));
      });
      return ms;
    },
    async stop() {
      on = false;
      await done;
    },
  };
}

/**
 * The most attempts that failed in one chain of calls (calls of the same stage of the same step,
 * by summary) since `base` was taken: closed calls that gave up count all their attempts, the open
 * call those before its current one; attempts that had failed before (`base`, by activity id) are
 * left out.
 */
async function failedAttemptsInOneChain(handle: WorkflowHandle, since: number, base: Map<string, number>): Promise<number> {
  const calls = activityCalls((await handle.fetchHistory()).events ?? []);
  const pending = (await handle.describe()).raw.pendingActivities ?? [];
  const chains = new Map<string, number>();
  const add = (c: ActivityCall, failed: number) =>
    chains.set(c.summary, (chains.get(c.summary) ?? 0) + Math.max(0, failed - (base.get(c.activityId) ?? 0)));
  for (const c of calls) {
    if ((c.outcome === 'failed' || c.outcome === 'timed-out') && (c.closedAt ?? 0) >= since) add(c, c.attempt);
    if (c.outcome === 'open') {
      const p = pending.find((x) => x.activityId === c.activityId);
      if (p) add(c, Number(p.attempt ?? 1) - 1);
    }
  }
  return Math.max(0, ...chains.values());
}

test(
  'chaos soak: random worker SIGKILLs, MinIO and Temporal killed and restarted, a store outage past the old retry budget: every step committed once, weights bitwise equal, blocked and back by itself',
  { timeout: 20 * 60_000 },
  async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'chaos-soak-'));
    // Without the shared servers' DURABLE_RL_* variables, which infra would take for external servers.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^DURABLE_RL_(TEMPORAL|S3)_/.test(k)));
    const fleet: Record<string, SupervisedWorker> = {};
    let client: Client | undefined;
    let store: ReturnType<typeof openStore> | undefined;
    try {
      const e = await up({ stateDir, quiet: true, env });
      const serverEnv = endpointsEnv(e);
      client = await connectClient(temporalConfig({ address: e.temporal.address, namespace: e.temporal.namespace }));
      const s3Uri = `s3://${e.minio.bucket}/chaos-${Date.now()}`;
      const s3 = {
        endpoint: e.minio.endpoint,
        accessKeyId: e.minio.accessKeyId,
        secretAccessKey: e.minio.secretAccessKey,
        region: e.minio.region,
      };
      store = openStore(s3Uri, { s3 });
      await Promise.all(Object.entries(FLEET).map(async ([name, q]) => (fleet[name] = await superviseWorker([q], serverEnv))));

      const config = tinyRunConfig(s3Uri, {
        phases: [
          { kind: 'sft', steps: 2, batchSize: 16, lr: 3e-3 },
          { kind: 'rl', steps: 10, promptsPerStep: 8, groupSize: 4, lr: 1e-3 },
        ],
        rollout: { promptsPerShard: 2, maxConcurrentShards: 4 },
        workflow: { heartbeatTimeoutSeconds: 3, blockedAfterMinutes: 0.1, retryIntervalCapSeconds: 2 },
      });
      const steps = totalSteps(config);

      // The same run without chaos, on the same workers: the weights every chaotic run must end with.
      const calm = await startTrainingRun(client, config);
      assert.equal((await calm.result()).status, 'completed');
      const reference = await weightsSha(store, calm.runId, steps);

      const t0 = Date.now();
      const run = await startTrainingRun(client, config);
      const handle = client.workflow.getHandle(run.runId);
      const status = watchStatus(client, run.runId);
      const committed = (n: number) =>
        waitFor(`step ${n} committed`, async () => ((await committedSteps(store!, run.runId)).includes(n) ? true : undefined), 600_000);

      // The monkey: every 4-10 s a random worker (seeded) is SIGKILLed, unless it is still starting.
      const rng = new CounterRng(SEED, 'chaos');
      let draw = 0;
      let monkeyOn = true;
      let holdMonkey = false;
      const kills: Record<string, number> = {};
      const starting = new Set<string>();
      const monkey = (async () => {
        while (monkeyOn) {
          await sleep(4000 + 6000 * rng.uniform(draw++));
          const names = Object.keys(FLEET);
          const name = names[Math.floor(rng.uniform(draw++) * names.length)]!;
          if (!monkeyOn || holdMonkey || starting.has(name)) continue;
          kills[name] = (kills[name] ?? 0) + 1;
          starting.add(name);
          void fleet[name]!.kill().finally(() => starting.delete(name));
        }
      })();

      // MinIO crashes and comes back 3 s later.
      await committed(1);
      assert.ok(await crashServer('minio', { stateDir, env }));
      await sleep(3000);
      await startMinio({ stateDir, quiet: true, env });

      // The Temporal server crashes and comes back 3 s later (the monkey holds meanwhile: a worker
      // started while no server answers only exits again).
      await committed(3);
      holdMonkey = true;
      assert.ok(await crashServer('temporal', { stateDir, env }));
      await sleep(3000);
      await startTemporal({ stateDir, quiet: true, env });
      holdMonkey = false;

      // The long outage: MinIO down until one stage call has failed the old policy's 20 attempts.
      await committed(5);
      assert.ok((await committedSteps(store, run.runId)).length < steps, 'steps are left for the outage');
      const base = new Map(
        ((await handle.describe()).raw.pendingActivities ?? []).map((p) => [p.activityId ?? '', Number(p.attempt ?? 1) - 1] as const),
      );
      assert.ok(await crashServer('minio', { stateDir, env }));
      const down0 = Date.now();
      let blockedDuring: Awaited<ReturnType<typeof runProgress>> | undefined;
      const failed = await waitFor(
        `${OLD_MAX_ATTEMPTS} failed attempts of one call chain, and the run shown blocked`,
        async () => {
          if (!blockedDuring && status.blockedMs(down0, Date.now()) > 0) {
            const p = await runProgress(client!, run.runId);
            if (p?.blocked?.length) blockedDuring = p;
          }
          const n = await failedAttemptsInOneChain(handle, down0, base);
          return n >= OLD_MAX_ATTEMPTS && blockedDuring ? n : undefined;
        },
        600_000,
      );
      await startMinio({ stateDir, quiet: true, env });
      const back = Date.now();

      // The run ends by itself; an error that needs the user would hold it forever: fail at once then.
      let stuck: string | undefined;
      await waitFor(
        'the run to end',
        async () => {
          const p = await runProgress(client!, run.runId);
          const needsUser = p?.blocked?.find((b) => b.kind === 'needs-user');
          if (needsUser) stuck = JSON.stringify(needsUser);
          return stuck || (await handle.describe()).status.name !== 'RUNNING' ? true : undefined;
        },
        600_000,
      );
      assert.equal(stuck, undefined, 'no error that waits for the user');
      const result = (await handle.result()) as { status: string; steps: number };
      await waitFor(
        'DurableRlStatus completed seen',
        async () => (status.changes.at(-1)?.status === 'completed' ? true : undefined),
        60_000,
      );
      const runSeconds = (Date.now() - t0) / 1000;
      monkeyOn = false;
      await monkey;
      await status.stop();

      assert.equal(result.status, 'completed');
      await assertCommittedRun(store, run.runId, steps);
      const events = (await handle.fetchHistory()).events ?? [];
      const calls = activityCalls(events);
      const commits = calls.filter((c) => c.type === 'commitStep' && c.outcome === 'completed').map((c) => c.summary);
      assert.equal(commits.length, steps, 'one completed commit per step');
      assert.equal(new Set(commits).size, steps, 'no step committed twice');
      assert.equal(await weightsSha(store, run.runId, steps), reference, "final weights equal the calm run's");

      const blocked = blockedDuring!.blocked![0]!;
      assert.equal(blocked.kind, 'retrying', 'blocked by the outage, retrying by itself');
      const blockedMs = status.blockedMs(down0, Date.now());
      assert.ok(blockedMs > 0, 'shown blocked during the outage');
      assert.equal(status.changes.at(-1)?.status, 'completed');
      assert.equal(userActions(events), 0, 'came back by itself: no signal or Update reached the run');

      const killCount = Object.values(kills).reduce((a, b) => a + b, 0);
      const restarts = Object.values(fleet).reduce((n, w) => n + w.restarts, 0);
      assert.ok(killCount > 0 && restarts >= killCount, `every kill was followed by a restart (${killCount} kills, ${restarts} restarts)`);
      const failedAttempts = calls.reduce((n, c) => n + (c.outcome === 'completed' ? c.attempt - 1 : c.attempt), 0);
      const gaveUp = calls.filter((c) => c.outcome === 'failed' || c.outcome === 'timed-out').length;
      const firstBlocked = status.changes.find((c) => c.status === 'blocked' && c.at >= down0);
      process.stdout.write(
        `# chaos soak: ${steps} steps in ${runSeconds.toFixed(0)} s; ${killCount} worker SIGKILLs (${Object.entries(kills)
          .map(([k, v]) => `${k} ${v}`)
          .join(', ')}), ${restarts} worker restarts; MinIO killed and restarted twice, Temporal once; ` +
          `${failedAttempts} failed activity attempts retried over ${calls.length} calls, ${gaveUp} calls gave up to the workflow; ` +
          `store outage ${((back - down0) / 1000).toFixed(0)} s (${failed} failed attempts in one call chain, the old budget ${OLD_MAX_ATTEMPTS}), ` +
          `blocked ${(blockedMs / 1000).toFixed(0)} s (shown ${firstBlocked ? ((firstBlocked.at - down0) / 1000).toFixed(0) : '?'} s into the outage, in ${blocked.stage}: ${blocked.type}), ` +
          `running again by itself after MinIO was back\n`,
      );
    } finally {
      await Promise.all(Object.values(fleet).map((w) => w.stop()));
      await client?.connection.close();
      await store?.close();
      await down({ stateDir, purge: true, env }).catch(() => undefined);
      rmSync(stateDir, { recursive: true, force: true });
    }
  },
);
