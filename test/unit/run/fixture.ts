/**
 * A training run's data for activity tests: a temp file:// store holding run.json of a config and,
 * when asked, committed checkpoint 0 (the seeded initial weights) — what `initRun` would leave.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeCheckpoint } from '../../../activities/checkpoint/checkpoint.js';
import { initTrainState } from '../../../activities/model/engine.js';
import type { TrainState } from '../../../activities/model/engine-types.js';
import { initWeights } from '../../../activities/model/init.js';
import { ModelEngine } from '../../../activities/model/engine.js';
import type { ModelConfig } from '../../../activities/model/config.js';
import type { WeightMap } from '../../../activities/model/graphs/common.js';
import type { RolloutsRow } from '../../../activities/store/schemas.js';
import { sftLoss } from '../../../activities/model/losses.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { resolveRun, writeRunRecord, type ResolvedRun } from '../../../activities/run/resolve.js';
import type { RolloutShardInput } from '../../../activities/run/types.js';
import { checkpointPrefix } from '../../../activities/store/keys.js';
import { commit } from '../../../activities/store/manifest.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { openStore } from '../../../activities/store/open.js';

export interface RunFixture {
  dir: string;
  storeUri: string;
  store: ObjectStore;
  run: ResolvedRun;
  /** Checkpoint 0's state, when it was committed. */
  state: TrainState | null;
  /** Closes the store and deletes the temp dir. */
  teardown(): Promise<void>;
}

/** The input of step 0's one rollout shard: its first `promptCount` prompts, sampled by checkpoint 0. */
export function firstShardInput(storeUri: string, runId: string, promptCount: number): RolloutShardInput {
  return { storeUri, runId, step: 0, policyVersion: 0, phaseIndex: 0, shard: 0, shards: 1, promptOffset: 0, promptCount };
}

export async function runFixture(runId: string, config: RunConfigInput, opts: { checkpoint0?: boolean } = {}): Promise<RunFixture> {
  const dir = await mkdtemp(join(tmpdir(), `${runId}-`));
  const storeUri = `file://${dir}`;
  const store = openStore(storeUri);
  const cfg = parseRunConfig({ ...config, store: storeUri });
  await writeRunRecord(store, { run_id: runId, name: cfg.name, resumed_from: null, config: cfg });
  const run = resolveRun(cfg);
  let state: TrainState | null = null;
  if (opts.checkpoint0) {
    state = initTrainState(run.model, initWeights(run.model, cfg.seed));
    await commit(store, checkpointPrefix(runId, 0), await writeCheckpoint(store, runId, 0, state, { rolloutWeights: cfg.rollout.weights }));
  }
  return {
    dir,
    storeUri,
    store,
    run,
    state,
    async teardown() {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Commits checkpoint 0 of `f`'s run as the seeded model after `updates` supervised updates (lr
 * `lr`) on the gold completions of the first `items` train prompts of its task: a policy that
 * answers some prompts, not all.
 */
export async function warmCheckpoint0(f: RunFixture, runId: string, opts: { items: number; updates: number; lr?: number }): Promise<void> {
  const { run } = f;
  const { tokenizer, task } = run;
  const items = task.prompts(run.config.seed, 'train', opts.items);
  const seqs = items.map((it) => [...run.encodePrompt(it.prompt), ...run.encodeCompletion(task.sftTarget(it))]);
  const promptLen = items.map((it) => run.encodePrompt(it.prompt).length);
  const T = Math.max(...seqs.map((s) => s.length));
  const batch = {
    ids: seqs.map((s) => [...s, ...Array<number>(T - s.length).fill(tokenizer.padId ?? 0)]),
    attentionMask: seqs.map((s) => [...s.map(() => 1), ...Array<number>(T - s.length).fill(0)]),
    lossMask: seqs.map((s, b) => [...s.map((_, j) => (j >= promptLen[b]! ? 1 : 0)), ...Array<number>(T - s.length).fill(0)]),
  };
  const engine = new ModelEngine(run.model, { threads: 1 });
  let state = initTrainState(run.model, initWeights(run.model, run.config.seed));
  try {
    for (let i = 0; i < opts.updates; i++) state = (await engine.trainStep(state, batch, { loss: sftLoss(), lr: opts.lr ?? 1e-2 })).state;
  } finally {
    await engine.close();
  }
  await commit(f.store, checkpointPrefix(runId, 0), await writeCheckpoint(f.store, runId, 0, state));
}

/**
 * Mean |behaviour logprob − score| over every completion token of rollout `rows`, scored by a
 * `model` engine holding `weights`: how far the policy that sampled them (quantised, bf16) is from
 * the one scored.
 */
export async function meanLogprobGap(
  model: ModelConfig,
  weights: WeightMap,
  rows: readonly Pick<RolloutsRow, 'prompt_token_ids' | 'completion_token_ids' | 'behaviour_logprobs'>[],
): Promise<{ mean: number; tokens: number }> {
  const engine = new ModelEngine(model, { threads: 1 });
  engine.setWeights(weights, 'scored');
  let sum = 0;
  let n = 0;
  try {
    for (const row of rows) {
      const ids = [...row.prompt_token_ids, ...row.completion_token_ids];
      const s = await engine.score({ ids: [ids], attentionMask: [ids.map(() => 1)] });
      row.completion_token_ids.forEach((_, j) => {
        sum += Math.abs(s.logprobs[row.prompt_token_ids.length + j]! - row.behaviour_logprobs[j]!);
        n++;
      });
    }
  } finally {
    await engine.close();
  }
  return { mean: sum / n, tokens: n };
}
