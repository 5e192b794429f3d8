/**
 * `evaluate` (rollout queue): greedy accuracy, pass@k and mean reward of a checkpoint on the task's
 * eval split, committed as `eval.json` under `evalPrefix(run, v)` (store/keys.ts). An evaluation
 * already committed is returned as stored. It decodes with the checkpoint's float32 parameters
 * whatever the run's `rollout.weights`: an evaluation measures the trained policy, not its bf16
 * rounding.
 */
import { CounterRng } from '../common/rng.js';
import type { RewardFn, RewardSample } from '../reward/types.js';
import { anyVerifiable } from '../reward/functions.js';
import { scoreSamples, type RewardRow } from '../reward/run.js';
import { stage } from '../run/stage.js';
import { PreferenceDatasetError, rewardModelRows, scorePreferencePairs } from '../run/reward-model-data.js';
import type { ObjectStore } from '../store/object-store.js';
import { loadRun, type ResolvedRun } from '../run/resolve.js';
import type { EvalRecord, EvaluateInput, EvaluateResult } from '../run/types.js';
import { EVAL_NAME, evalPrefix } from '../store/keys.js';
import { canonicalJson, commit, manifestKey, readEntry, readManifest, type Manifest } from '../store/manifest.js';
import { parseSamplingParams, sampleAt } from './sampling.js';
import {
  argmax,
  committedEntry,
  episodeOptions,
  episodeStarts,
  finishCompletion,
  generateAll,
  withPolicy,
  type SequenceJob,
} from './policy.js';
import { episodeColumns, runEpisodes, type EpisodeRecord, type EpisodeStart } from './episode.js';
import { episodeSample } from '../reward/reward-shard.js';
import type { RolloutsRow } from '../store/schemas.js';
import type { EnvRow } from '../env/types.js';
import { badInput } from '../common/failures.js';

/** Whether a scored row counts as correct: its `correct` component is 1, else (no such component) reward >= 1. */
export function isCorrect(row: Pick<RewardRow, 'reward' | 'components'> | undefined): boolean {
  if (!row || row.reward === null) return false;
  const c = row.components?.correct;
  return c !== undefined ? c === 1 : row.reward >= 1;
}

/** Scores completions with the run's reward; a failing reward counts as wrong (never throws for it). */
async function scoreEval(run: ResolvedRun, reward: RewardFn, samples: RewardSample[], step: number): Promise<RewardRow[]> {
  if (samples.length === 0) return [];
  const { onError: _onError, defaultReward: _defaultReward, ...rest } = run.config.reward.errorPolicy;
  const { rows } = await scoreSamples(reward, samples, { ...rest, onError: 'drop' }, { step });
  return rows;
}

/**
 * A reward-model run's evaluation of checkpoint v (`EvalRecord.preference`): the Bradley-Terry
 * metrics of the first `eval.maxPairs` evaluation pairs of the phase that made v (the first phase
 * for v = 0) — its held-out rows, or its first training rows (split "train") when it holds none
 * out (activities/run/reward-model-data.ts). `greedy_accuracy` holds the preference accuracy.
 */
async function evaluateRewardModel(store: ObjectStore, input: EvaluateInput, run: ResolvedRun): Promise<EvalRecord> {
  const v = input.policyVersion;
  let end = 0;
  const phase =
    run.config.phases.find((p) => {
      end += p.steps;
      return v - 1 < end;
    }) ?? run.config.phases[0]!;
  if (phase.kind !== 'reward_model')
    throw badInput(`a reward-model run (model.classifier) has only reward_model phases, got ${phase.kind}`);
  let rows;
  try {
    rows = rewardModelRows(run, phase);
  } catch (err) {
    if (err instanceof PreferenceDatasetError) throw badInput(`reward-model evaluation: ${err.message}`);
    throw err;
  }
  const split = rows.heldOut.length > 0 ? 'held_out' : 'train';
  const pairs = (split === 'held_out' ? rows.heldOut : rows.train).slice(0, phase.eval.maxPairs);
  const s = await withPolicy(store, input.runId, run, v, 'float32', (engine) => scorePreferencePairs(engine, run, pairs));
  return {
    run_id: input.runId,
    policy_version: v,
    step: v,
    phase: input.phase,
    greedy_accuracy: s.accuracy,
    pass_at_k: null,
    mean_reward: s.meanScore,
    num_prompts: s.pairs,
    samples: [],
    preference: { split, pairs: s.pairs, accuracy: s.accuracy, margin: s.margin, loss: s.loss },
  };
}

/**
 * The evaluation of a run with an `environment`: each eval prompt's greedy episode (temperature 0)
 * and, for pass@k, `eval.passK` episodes at `eval.temperature` (streams of `eval@v`), scored by the
 * run's reward on their trajectories; `episodes` says what the greedy ones did (turns, tool calls,
 * malformed turns, finish reasons). An episode whose tool infrastructure failed is not scored
 * (it counts as not correct and stays out of the mean reward).
 */
async function evaluateEpisodes(
  store: ObjectStore,
  input: EvaluateInput,
  run: ResolvedRun,
  items: readonly EnvRow[],
  progress: (p: Record<string, number | string>) => void,
  signal: AbortSignal,
): Promise<EvalRecord> {
  const { config, tokenizer } = run;
  const v = input.policyVersion;
  const judged = config.reward.functions === null || anyVerifiable(config.reward.functions);
  const k = judged ? config.eval.passK : 0;
  const maxNew = run.maxNewTokens();
  const stopSet = new Set(run.stopIds);
  const decode = (ids: readonly number[]) => tokenizer.decode([...ids]);
  const run1 = async (samples: number, temperature: number, tag: string) => {
    const { starts, chat } = episodeStarts(run, items, samples);
    if (starts.length === 0) return { starts, episodes: [] };
    const params = parseSamplingParams({ temperature, max_tokens: maxNew });
    const episodes = await withPolicy(store, input.runId, run, v, 'float32', (engine) =>
      runEpisodes(starts, {
        ...episodeOptions(run, engine, { step: v, params, stopIds: run.stopIds, chat, signal }),
        streamTag: tag,
        onProgress: ({ turn, live }) => progress({ turn, liveEpisodes: live, of: starts.length }),
      }),
    );
    return { starts, episodes };
  };
  const greedy = await run1(1, 0, `eval@${v}/greedy`);
  const pass = await run1(k, config.eval.temperature, `eval@${v}`);
  const toSample = (start: EpisodeStart, e: EpisodeRecord, sampleId: string | number): RewardSample => {
    const item = start.row;
    const cols = episodeColumns(e, decode, stopSet);
    const row = {
      ...cols,
      completion_token_ids: Int32Array.from(e.tokens),
      segment_ends: Int32Array.from(e.segmentEnds),
      segment_turns: Int32Array.from(e.segmentTurns),
    } as unknown as RolloutsRow;
    return {
      promptId: item.promptId,
      sampleId,
      prompt: item.prompt,
      completion: cols.completion_text,
      reference: item.reference,
      metadata: item.metadata,
      promptTokens: start.promptTokens.length,
      completionTokens: e.tokens.length,
      ...episodeSample(row, decode, stopSet),
    };
  };
  const scoreable = (set: { starts: EpisodeStart[]; episodes: EpisodeRecord[] }, id: (i: number) => string | number) =>
    set.episodes.map((e, i) => (e.finishReason === 'tool_failure' ? null : toSample(set.starts[i]!, e, id(i))));
  const greedySamples = scoreable(greedy, () => 'greedy');
  const passSamples = scoreable(pass, (i) => i % Math.max(k, 1));
  const reward = run.createReward({ faults: false });
  const score = async (xs: (RewardSample | null)[]) => {
    const rows = await scoreEval(
      run,
      reward,
      xs.filter((x): x is RewardSample => x !== null),
      v,
    );
    let j = 0;
    return xs.map((x) => (x === null ? undefined : rows[j++]));
  };
  let greedyRows: (RewardRow | undefined)[];
  let passRows: (RewardRow | undefined)[];
  try {
    greedyRows = await score(greedySamples);
    passRows = await score(passSamples);
  } finally {
    await reward.close?.();
  }
  const n = items.length;
  const correct = greedyRows.filter((r) => isCorrect(r)).length;
  const rewarded = greedyRows.filter((r): r is RewardRow => r !== undefined && r.reward !== null);
  let passed = 0;
  for (let i = 0; i < n; i++) if (passRows.slice(i * k, (i + 1) * k).some((r) => isCorrect(r))) passed++;
  const mean = (f: (e: EpisodeRecord) => number) => (n > 0 ? greedy.episodes.reduce((a, e) => a + f(e), 0) / n : 0);
  const finish: Record<string, number> = {};
  for (const e of greedy.episodes) finish[e.finishReason ?? 'length'] = (finish[e.finishReason ?? 'length'] ?? 0) + 1 / n;
  return {
    run_id: input.runId,
    policy_version: v,
    step: v,
    phase: input.phase,
    greedy_accuracy: !judged ? null : n > 0 ? correct / n : 0,
    pass_at_k: k > 0 ? { k, value: n > 0 ? passed / n : 0 } : null,
    mean_reward: rewarded.length > 0 ? rewarded.reduce((a, r) => a + r.reward!, 0) / rewarded.length : 0,
    num_prompts: n,
    episodes: {
      turns_mean: mean((e) => e.turns),
      tool_calls_mean: mean((e) => e.toolCalls.length),
      malformed_turns_mean: mean((e) => e.malformedTurns),
      finish_reasons: finish,
    },
    samples: greedy.episodes.slice(0, 16).map((e, i) => ({
      prompt_id: items[i]!.promptId,
      prompt: items[i]!.prompt,
      completion: episodeColumns(e, decode, stopSet).completion_text,
      reward: greedyRows[i]?.reward ?? null,
      reference: items[i]!.reference,
    })),
  };
}

/**
 * Evaluates checkpoint `policyVersion` on the first `eval.prompts` items of the eval split (all of
 * a dataset's eval rows when it has fewer):
 * greedy accuracy, mean reward of the greedy completions, and pass@k over `eval.passK` samples per
 * prompt at `eval.temperature` (the unbiased estimator of Chen et al. 2021 with n = k, i.e. the
 * fraction of prompts with at least one correct sample). Accuracy and pass@k need a reward that says
 * what is correct: a built-in task's, a registry spec, or `reward.functions` with a `verifiable`
 * one; with functions none of which is verifiable both are null, no pass@k samples are drawn, and
 * the mean reward is the measure. Commits `eval.json` under `evalPrefix(run, v)`; an evaluation
 * already committed is returned as stored. It decodes with the checkpoint's float32 parameters
 * whatever the run's `rollout.weights`: an evaluation measures the trained policy, not its bf16
 * rounding.
 */
export async function evaluate(input: EvaluateInput): Promise<EvaluateResult> {
  return stage('eval', input.storeUri, async ({ store, progress, signal }) => {
    const t0 = performance.now();
    const { runId, policyVersion: v } = input;
    if (!Number.isInteger(v) || v < 0) throw badInput(`policyVersion must be a non-negative integer, got ${v}`);
    const prefix = evalPrefix(runId, v);
    const uri = store.uri(manifestKey(prefix));
    const stored = async (m: Manifest): Promise<EvaluateResult> => {
      const bytes = await readEntry(store, prefix, committedEntry(store, prefix, m, EVAL_NAME));
      const record = JSON.parse(new TextDecoder().decode(bytes)) as EvalRecord;
      return { ...record, uri, seconds: (performance.now() - t0) / 1000 };
    };
    // commits the record as eval.json; a concurrent attempt that committed first wins, and its record is returned
    const committed = async (record: EvalRecord): Promise<EvaluateResult> => {
      const { manifest, created } = await commit(
        store,
        prefix,
        [{ name: EVAL_NAME, bytes: new TextEncoder().encode(canonicalJson(record)) }],
        { run_id: runId, step: v },
      );
      if (!created) return stored(manifest);
      return { ...record, uri, seconds: (performance.now() - t0) / 1000 };
    };
    const existing = await readManifest(store, prefix);
    if (existing) return stored(existing);

    const { run } = await loadRun(store, runId);
    const { config, tokenizer } = run;
    if (run.model.classifier) {
      // a reward-model run: preference accuracy of checkpoint v on the phase's evaluation pairs
      const record = await evaluateRewardModel(store, input, run);
      return committed(record);
    }
    // a dataset's eval split is finite: at most its rows
    const items = run.task.prompts(config.seed, 'eval', Math.min(config.eval.prompts, run.task.evalItems ?? Infinity), 0);
    if (run.environment) {
      const record = await evaluateEpisodes(store, input, run, items, progress, signal);
      return committed(record);
    }
    // accuracy and pass@k only where the reward judges correctness (see the function comment)
    const judged = config.reward.functions === null || anyVerifiable(config.reward.functions);
    const k = judged ? config.eval.passK : 0;
    const maxNew = run.maxNewTokens();
    const V = tokenizer.vocabSize;
    const stopIds = run.stopIds;
    const stopSet = new Set(stopIds);
    const greedyParams = parseSamplingParams({ temperature: 0, max_tokens: maxNew });
    const passParams = parseSamplingParams({ temperature: config.eval.temperature, max_tokens: maxNew });
    const prompts = items.map((it) => run.encodePrompt(it.prompt, it.messages));
    const jobs: SequenceJob[] = items.map((_, i) => ({ prompt: prompts[i]!, pick: (logits) => argmax(logits.subarray(0, V)) }));
    items.forEach((item, i) => {
      for (let s = 0; s < k; s++) {
        const stream = new CounterRng(config.seed, `eval@${v}`, item.promptId, s);
        jobs.push({ prompt: prompts[i]!, pick: (logits, pos) => sampleAt(logits.subarray(0, V), passParams, stream, pos).token });
      }
    });
    const total = jobs.length;
    progress({ done: 0, of: total });
    const gens = await withPolicy(store, runId, run, v, 'float32', (engine) =>
      // evaluations keep no logprobs: the temperature they are recorded at does not matter
      generateAll(
        engine,
        jobs,
        { maxNewTokens: maxNew, stopTokenIds: stopIds, temperature: 1, maxBatch: config.rollout.maxBatchSequences, signal },
        (done) => progress({ done, of: total }),
      ),
    );
    const decode = (ids: number[]) => tokenizer.decode(ids);
    const sample = (i: number, sampleId: number): RewardSample => {
      const item = items[i]!;
      const gen = gens[sampleId === -1 ? i : items.length + i * k + sampleId]!;
      const c = finishCompletion(gen, sampleId === -1 ? greedyParams : passParams, stopSet, decode);
      return {
        promptId: item.promptId,
        sampleId: sampleId === -1 ? 'greedy' : sampleId,
        prompt: item.prompt,
        completion: c.text,
        reference: item.reference,
        metadata: item.metadata,
        promptTokens: prompts[i]!.length,
        completionTokens: c.tokens.length,
      };
    };
    const greedySamples = items.map((_, i) => sample(i, -1));
    const passSamples = items.flatMap((_, i) => Array.from({ length: k }, (_x, s) => sample(i, s)));
    const reward = run.createReward({ faults: false }); // a fault drill tests training, not the yardstick
    let greedyRows: RewardRow[];
    let passRows: RewardRow[];
    try {
      greedyRows = await scoreEval(run, reward, greedySamples, v);
      passRows = await scoreEval(run, reward, passSamples, v);
    } finally {
      await reward.close?.();
    }
    const n = items.length;
    const correct = greedyRows.filter((r) => isCorrect(r)).length;
    const rewarded = greedyRows.filter((r) => r.reward !== null);
    let passed = 0;
    for (let i = 0; i < n; i++) if (passRows.slice(i * k, (i + 1) * k).some((r) => isCorrect(r))) passed++;
    const record: EvalRecord = {
      run_id: runId,
      policy_version: v,
      step: v,
      phase: input.phase,
      greedy_accuracy: !judged ? null : n > 0 ? correct / n : 0,
      pass_at_k: k > 0 ? { k, value: n > 0 ? passed / n : 0 } : null,
      mean_reward: rewarded.length > 0 ? rewarded.reduce((a, r) => a + r.reward!, 0) / rewarded.length : 0,
      num_prompts: n,
      samples: greedySamples.slice(0, 16).map((s, i) => ({
        prompt_id: s.promptId,
        prompt: s.prompt,
        completion: s.completion,
        reward: greedyRows[i]!.reward,
        reference: items[i]!.reference,
      })),
    };
    progress({ done: total, of: total });
    return committed(record);
  });
}
