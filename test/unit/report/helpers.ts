/** Synthetic training runs for the report tests: real commits of real Arrow tables in a temp file:// store. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openStore } from '../../../activities/store/open.js';
import {
  ADVANTAGES_NAME,
  EVAL_NAME,
  METRICS_NAME,
  evalPrefix,
  rewardsName,
  rolloutsName,
  runRecordKey,
  stepPrefix,
} from '../../../activities/store/keys.js';
import { commit, type ArtifactInput } from '../../../activities/store/manifest.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import {
  ADVANTAGES,
  METRICS,
  REWARDS,
  ROLLOUTS,
  encodeAdvantages,
  encodeMetrics,
  encodeRewards,
  encodeRollouts,
  type MetricsInput,
  type MetricsRow,
  type RolloutsInput,
} from '../../../activities/store/schemas.js';
import type { EvalRow, RunReportData } from '../../../activities/report/load.js';

export async function tempStore(): Promise<{ store: ObjectStore; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'durable-rl-report-'));
  const store = openStore(pathToFileURL(dir).href);
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A metrics row with distinct, step-derived values (so a test can tell steps apart). */
export function metricsRow(runId: string, step: number, phase: 'sft' | 'rl', over: Partial<MetricsInput> = {}): MetricsInput {
  const rl = phase === 'rl';
  return {
    run_id: runId,
    step,
    phase,
    policy_version: step,
    num_prompts: 2,
    num_samples: 4,
    reward_mean: rl ? 0.1 * step : null,
    reward_std: rl ? 0.05 : null,
    loss: 1 / (step + 1),
    kl: rl ? 0.01 * step : null,
    entropy: 2 - 0.1 * step,
    clip_fraction: rl ? 0.02 : null,
    completion_length_mean: 10 + step,
    tokens_per_second: 100 + step,
    grad_norm: 0.5,
    learning_rate: 1e-5,
    step_seconds: 3,
    reward_errors: 0,
    dropped_samples: 0,
    truncated_samples: 0,
    extra: {},
    ...over,
  };
}

/** Commits an SFT step (metrics only). */
export async function commitSftStep(store: ObjectStore, runId: string, step: number, over: Partial<MetricsInput> = {}): Promise<void> {
  await commit(store, stepPrefix(runId, step), [
    { name: METRICS_NAME, bytes: encodeMetrics([metricsRow(runId, step, 'sft', over)]), schema: METRICS },
  ]);
}

export interface RlSample {
  prompt_id: string;
  sample_id: number;
  prompt: string;
  completion: string;
  reward: number | null;
  error?: string;
  advantage: number;
  finish_reason: 'stop' | 'length';
}

/** Commits an RL step: metrics, rollouts and rewards in shards of `shardSize`, advantages. */
export async function commitRlStep(
  store: ObjectStore,
  runId: string,
  step: number,
  samples: readonly RlSample[],
  shardSize = 2,
  over: Partial<MetricsInput> = {},
): Promise<void> {
  const artifacts: ArtifactInput[] = [{ name: METRICS_NAME, bytes: encodeMetrics([metricsRow(runId, step, 'rl', over)]), schema: METRICS }];
  for (let shard = 0; shard * shardSize < samples.length; shard++) {
    const part = samples.slice(shard * shardSize, (shard + 1) * shardSize);
    const rollouts: RolloutsInput[] = part.map((s) => {
      const n = s.completion.length;
      return {
        run_id: runId,
        step,
        prompt_id: s.prompt_id,
        sample_id: s.sample_id,
        group_id: s.prompt_id,
        policy_version: step,
        prompt_text: s.prompt,
        prompt_token_ids: [1, 2],
        completion_text: s.completion,
        completion_token_ids: Array.from({ length: n }, (_, i) => i),
        behaviour_logprobs: Array.from({ length: n }, () => -1),
        finish_reason: s.finish_reason,
      };
    });
    const rewards = part.map((s) => ({
      run_id: runId,
      step,
      prompt_id: s.prompt_id,
      sample_id: s.sample_id,
      reward: s.reward,
      components: {},
      error: s.error ?? null,
    }));
    artifacts.push({ name: rolloutsName(shard), bytes: encodeRollouts(rollouts), schema: ROLLOUTS });
    artifacts.push({ name: rewardsName(shard), bytes: encodeRewards(rewards), schema: REWARDS });
  }
  const advantages = samples.map((s) => ({ run_id: runId, step, prompt_id: s.prompt_id, sample_id: s.sample_id, advantage: s.advantage }));
  artifacts.push({ name: ADVANTAGES_NAME, bytes: encodeAdvantages(advantages), schema: ADVANTAGES });
  await commit(store, stepPrefix(runId, step), artifacts);
}

/** Commits the evaluation of checkpoint `e.policy_version` (its `eval.json`). */
export async function commitEval(store: ObjectStore, runId: string, e: Omit<EvalRow, 'run_id'> & Record<string, unknown>): Promise<void> {
  const prefix = evalPrefix(runId, e.policy_version);
  await commit(store, prefix, [{ name: EVAL_NAME, bytes: new TextEncoder().encode(JSON.stringify({ run_id: runId, ...e })) }]);
}

export async function writeRunJson(store: ObjectStore, runId: string, json: unknown): Promise<void> {
  await store.put(runRecordKey(runId), new TextEncoder().encode(JSON.stringify(json)));
}

export function samples(step: number, n: number): RlSample[] {
  return Array.from({ length: n }, (_, i) => ({
    prompt_id: `p${Math.floor(i / 2)}`,
    sample_id: i % 2,
    prompt: `What is ${step}+${i}?`,
    completion: `It is ${step + i}.`,
    reward: i % 2,
    advantage: i % 2 ? 1 : -1,
    finish_reason: 'stop' as const,
  }));
}

/** Report data built in memory (no store), for render tests. */
export function reportData(steps: Partial<MetricsRow>[], over: Partial<RunReportData> = {}): RunReportData {
  const rows = steps.map((s, i) => ({ ...(metricsRow('run-1', i, 'rl') as MetricsRow), ...s }) as MetricsRow);
  return {
    run_id: 'run-1',
    name: 'synthetic',
    store_uri: 'file:///tmp/store',
    config: null,
    lineage: [{ run_id: 'run-1', name: 'synthetic', resumed_from: null, steps: rows.length }],
    steps: rows,
    evals: [],
    samples: null,
    eval_samples: null,
    warnings: [],
    ...over,
  };
}
