/**
 * `rolloutShard` (rollout queue): samples `groupSize` completions for each prompt of one shard of
 * an RL step with the policy of checkpoint `policyVersion`, and writes `rolloutsName(shard)` under
 * the step prefix (uncommitted; the workflow commits it with the step). A shard of a committed
 * step returns the committed artifact at once without generating. With the phase's `tree` option
 * each prompt's groupSize completions form a tree (V-STAR; tree-rollout.ts) and the rows carry
 * node_id, parent_node_id and branch_position. With its `retry` option (R^3L; retry-rollout.ts)
 * the groupSize samples are scored and each failed one gets a retry from its failure point, an
 * extra row of the group with the same tree fields (parent = the failed sample). With the run's
 * `environment` each row is a multi-turn episode (episode.ts), every completed turn recorded under
 * `episodePartKey` so that a retried shard resumes after the last one and writes the same bytes
 * (the records stay until the step commits: commitStep deletes them).
 */
import { stage } from '../run/stage.js';
import type { OnlineDpoPhase, RlPhase, SamplingPhase } from '../run/config.js';
import { crashPoint, slowPoint } from '../run/faults.js';
import { loadRun, type ResolvedRun } from '../run/resolve.js';
import type { RolloutShardInput, RolloutShardResult } from '../run/types.js';
import { episodePartKey, episodePartsPrefix, rolloutsName, stepPrefix } from '../store/keys.js';
import { readEntry, readManifest, writeArtifact } from '../store/manifest.js';
import { ROLLOUTS, decodeRollouts, encodeRollouts, type RolloutsInput, type RolloutsRow } from '../store/schemas.js';
import { parseSamplingParams, sampleAt, sampleStream, type SamplingParams } from './sampling.js';
import { committedEntry, episodeOptions, episodeStarts, finishCompletion, generateAll, withPolicy, type SequenceJob } from './policy.js';
import { rolloutTrees, type TreeCompletion, type TreeRolloutNode } from './tree-rollout.js';
import { episodeColumns, runEpisodes, type EpisodesCheckpoint } from './episode.js';
import { rolloutRetries, type RetryRolloutNode, type RetryRolloutOptions } from './retry-rollout.js';
import { scoreSamples } from '../reward/run.js';
import type { RewardSample } from '../reward/types.js';
import type { ObjectStore } from '../store/object-store.js';
import type { ModelEngine } from '../model/engine.js';
import { badInput } from '../common/failures.js';

/** The phase that samples: an rl phase, or an online_dpo phase (groupSize independent samples per prompt: no tree option). */
function rlPhase(run: ResolvedRun, phaseIndex: number): RlPhase | (OnlineDpoPhase & { tree: null }) {
  const phase = run.config.phases[phaseIndex];
  if (!phase) throw badInput(`phaseIndex ${phaseIndex} is out of range: the run has ${run.config.phases.length} phases`);
  if (phase.kind === 'online_dpo') return { ...phase, tree: null };
  if (phase.kind !== 'rl')
    throw badInput(`phase ${phaseIndex} is a "${phase.kind}" phase; rollouts are generated for "rl" and "online_dpo" phases only`);
  return phase;
}

/** Sampling params of an rl (or online_dpo) phase's rollouts, max_tokens filled with the run's budget. */
export function rolloutSampling(run: ResolvedRun, phase: SamplingPhase): SamplingParams {
  return parseSamplingParams({ ...phase.sampling, max_tokens: run.maxNewTokens(phase) }, 'phase sampling');
}

function shardSummary(rows: readonly RolloutsRow[] | readonly RolloutsInput[]) {
  let completionTokens = 0;
  let promptTokens = 0;
  let truncated = 0;
  let maxCompletionTokens = 0;
  const episodes = { turns: 0, toolCalls: 0, malformedTurns: 0, toolFailures: 0 };
  let isEpisodes = false;
  for (const r of rows) {
    completionTokens += r.completion_token_ids.length;
    maxCompletionTokens = Math.max(maxCompletionTokens, r.completion_token_ids.length);
    promptTokens += r.prompt_token_ids.length;
    if (r.finish_reason === 'length') truncated++;
    if (r.turns != null) {
      isEpisodes = true;
      episodes.turns += r.turns;
      episodes.toolCalls += r.tool_calls?.length ?? 0;
      episodes.malformedTurns += r.malformed_turns ?? 0;
      if (r.finish_reason === 'tool_failure') episodes.toolFailures++;
    }
  }
  return { samples: rows.length, completionTokens, maxCompletionTokens, promptTokens, truncated, ...(isEpisodes ? { episodes } : {}) };
}

type PromptItem = ReturnType<ResolvedRun['task']['prompts']>[number];

/** A completion to decode from a context (the prompt, perhaps more) + a copied prefix: a tree child or a reflect-then-retry retry. */
interface ContinuationJob {
  promptId: string;
  /** Tokens before the completion: the prompt's (a retry's reflection appended). */
  context: readonly number[];
  /** The sample id of the job's random stream (a root's index, a child's or a retry's node id). */
  streamKey: number | string;
  /** The copied part of the completion, decoded from position prefix.tokens.length on. */
  prefix: { tokens: readonly number[]; logprobs: readonly number[]; entropy?: readonly number[] };
}

/**
 * Decodes continuations with the policy (tree children, retries): each job's tokens are drawn
 * from the stream of (seed, step, prompt_id, streamKey) at their absolute completion position,
 * one generate call per start position (a continuation from position p has p tokens less budget).
 * Results in job order, each the WHOLE completion (the prefix unchanged, then the sampled tokens,
 * after the stop conditions) with the entropy of every position's sampling distribution.
 */
async function decodeContinuations(
  engine: ModelEngine,
  run: ResolvedRun,
  step: number,
  params: SamplingParams,
  stopIds: readonly number[],
  jobs: readonly ContinuationJob[],
  signal: AbortSignal,
): Promise<TreeCompletion[]> {
  const V = run.tokenizer.vocabSize;
  const stopSet = new Set(stopIds);
  const decodeText = (ids: number[]) => run.tokenizer.decode(ids);
  const out: TreeCompletion[] = new Array(jobs.length);
  const byStart = new Map<number, number[]>();
  jobs.forEach((j, i) => byStart.set(j.prefix.tokens.length, [...(byStart.get(j.prefix.tokens.length) ?? []), i]));
  for (const [start, idx] of [...byStart].sort((a, b) => a[0] - b[0])) {
    const entropies = idx.map(() => [] as number[]);
    const seqJobs: SequenceJob[] = idx.map((i, k) => {
      const j = jobs[i]!;
      const stream = sampleStream({ seed: run.config.seed, step, promptId: j.promptId, sampleId: j.streamKey });
      return {
        prompt: [...j.context, ...j.prefix.tokens],
        pick: (logits, pos) => {
          const r = sampleAt(logits.subarray(0, V), params, stream, start + pos);
          entropies[k]!.push(r.entropy);
          return r.token;
        },
      };
    });
    const gens = await generateAll(
      engine,
      seqJobs,
      {
        maxNewTokens: params.max_tokens - start,
        stopTokenIds: stopIds,
        temperature: params.temperature,
        signal,
        maxBatch: run.config.rollout.maxBatchSequences,
        quantize: run.config.rollout.quantize,
      },
      () => undefined,
    );
    idx.forEach((i, k) => {
      const j = jobs[i]!;
      const gen = gens[k]!;
      const whole = {
        tokens: [...j.prefix.tokens, ...gen.tokens],
        logprobs: [...j.prefix.logprobs, ...gen.logprobs],
        finishReason: gen.finishReason,
      };
      const c = finishCompletion(whole, params, stopSet, decodeText);
      const prefixEntropy = j.prefix.entropy ?? new Array<number>(j.prefix.tokens.length).fill(Number.NaN);
      out[i] = { ...c, entropy: [...prefixEntropy, ...entropies[k]!].slice(0, c.tokens.length) };
    });
  }
  return out;
}

/**
 * The run's reward inside the rollout activity (tree values, retry failures): scores complete
 * samples of the shard's prompts; a sample whose reward fails gets null (the reward stage scores
 * the rows again under the run's error policy). Close it when done.
 */
function rolloutScorer(run: ResolvedRun, items: readonly PromptItem[], promptIds: readonly number[][], step: number) {
  const reward = run.createReward({ faults: false });
  const { onError: _onError, defaultReward: _defaultReward, ...policy } = run.config.reward.errorPolicy;
  return {
    async score(
      samples: readonly { group: number; completion: { text: string; tokens: readonly number[] } }[],
    ): Promise<(number | null)[]> {
      if (samples.length === 0) return [];
      const rewardSamples: RewardSample[] = samples.map((s, i) => ({
        promptId: items[s.group]!.promptId,
        sampleId: i,
        prompt: items[s.group]!.prompt,
        completion: s.completion.text,
        reference: items[s.group]!.reference,
        metadata: items[s.group]!.metadata,
        promptTokens: promptIds[s.group]!.length,
        completionTokens: s.completion.tokens.length,
      }));
      const { rows } = await scoreSamples(reward, rewardSamples, { ...policy, onError: 'drop' }, { step });
      return rows.map((r) => r.reward);
    },
    close: async () => {
      await reward.close?.();
    },
  };
}

/** Rollout rows of tree nodes and retries: node ids, parent and branch position as the data contract has them. */
function nodeRows(
  input: RolloutShardInput,
  items: readonly PromptItem[],
  promptIds: readonly number[][],
  nodes: readonly (TreeRolloutNode | RetryRolloutNode)[],
): RolloutsInput[] {
  return nodes.map((n) => ({
    run_id: input.runId,
    step: input.step,
    prompt_id: items[n.group]!.promptId,
    sample_id: n.sampleId,
    group_id: items[n.group]!.promptId,
    node_id: n.nodeId,
    parent_node_id: n.parentNodeId,
    branch_position: n.branchPosition,
    policy_version: input.policyVersion,
    prompt_text: items[n.group]!.prompt,
    prompt_token_ids: promptIds[n.group]!,
    completion_text: n.completion.text,
    completion_token_ids: n.completion.tokens,
    behaviour_logprobs: n.completion.logprobs,
    finish_reason: n.completion.finishReason,
  }));
}

/**
 * The rows of a shard with tree-structured rollouts (the phase's `tree` option; tree-rollout.ts):
 * each prompt's tree of groupSize nodes, decoded round by round with the policy and, with the
 * value criterion, scored with the run's reward between rounds (a failed reward leaves the sample
 * out of the prefix values; the reward stage scores the rows again under the run's error policy).
 * Row i of a prompt is node sample_id i; a child's completion starts with its parent's tokens
 * [0, branch_position) and their behaviour logprobs.
 */
async function treeRows(
  store: ObjectStore,
  run: ResolvedRun,
  phase: RlPhase,
  input: RolloutShardInput,
  items: readonly PromptItem[],
  promptIds: readonly number[][],
  params: SamplingParams,
  stopIds: readonly number[],
  signal: AbortSignal,
): Promise<RolloutsInput[]> {
  const { config } = run;
  const scorer = phase.tree!.criterion === 'value' ? rolloutScorer(run, items, promptIds, input.step) : null;
  try {
    const result = await withPolicy(store, input.runId, run, input.policyVersion, run.config.rollout.weights, (engine) =>
      rolloutTrees(
        items.map((it) => it.promptId),
        phase.tree!,
        phase.groupSize,
        { seed: config.seed, step: input.step },
        {
          decode: (jobs) =>
            decodeContinuations(
              engine,
              run,
              input.step,
              params,
              stopIds,
              jobs.map((j) => ({
                promptId: items[j.group]!.promptId,
                context: promptIds[j.group]!,
                streamKey: j.streamKey,
                prefix: j.prefix,
              })),
              signal,
            ),
          score: async (samples) => (scorer ? scorer.score(samples) : samples.map(() => null)),
        },
      ),
    );
    return nodeRows(input, items, promptIds, result.nodes);
  } finally {
    await scorer?.close();
  }
}

/**
 * The rows of a shard with reflect-then-retry (the rl phase's `retry` option, R^3L;
 * retry-rollout.ts): the flat rows of each prompt (sample ids 0..groupSize-1), scored with the
 * run's reward, then one retry per failed sample (reward below the r3l estimator's
 * successThreshold), decoded from prompt (+ reflection) + the failed sample's tokens [0, p) at its
 * failure point p. Every row gets node_id `{prompt_id}/{sample_id}`; a retry's parent is its
 * failed sample, its branch_position p.
 */
async function retryRows(
  store: ObjectStore,
  run: ResolvedRun,
  phase: RlPhase,
  input: RolloutShardInput,
  items: readonly PromptItem[],
  promptIds: readonly number[][],
  params: SamplingParams,
  stopIds: readonly number[],
  flat: readonly RolloutsInput[],
  signal: AbortSignal,
): Promise<RolloutsInput[]> {
  const options = phase.retry as RetryRolloutOptions;
  const estimator = phase.advantage;
  if (estimator.estimator !== 'r3l')
    throw badInput(`phase ${input.phaseIndex}: the retry option needs advantage.estimator "r3l", got "${estimator.estimator}"`);
  const { tokenizer, task } = run;
  const stopSet = new Set(stopIds);
  const G = phase.groupSize;
  const groups = items.map((_, g) =>
    flat.slice(g * G, (g + 1) * G).map((r) => ({
      completion: {
        tokens: Array.from(r.completion_token_ids),
        logprobs: Array.from(r.behaviour_logprobs),
        text: r.completion_text,
        finishReason: r.finish_reason as 'stop' | 'length',
      },
    })),
  );
  const reflectionIds = (text: string) => {
    try {
      return tokenizer.encode(text, { addSpecialTokens: false });
    } catch (err) {
      throw badInput(`phases.${input.phaseIndex}.retry.reflection: the filled template cannot be tokenised (${(err as Error).message})`);
    }
  };
  const scorer = rolloutScorer(run, items, promptIds, input.step);
  try {
    const result = await withPolicy(store, input.runId, run, input.policyVersion, run.config.rollout.weights, (engine) =>
      rolloutRetries(
        items.map((it) => it.promptId),
        groups,
        options,
        estimator.successThreshold,
        {
          async score(gs) {
            const flatScores = await scorer.score(gs.flatMap((samples, g) => samples.map((s) => ({ group: g, completion: s.completion }))));
            return gs.map((samples, g) => flatScores.slice(g * G, g * G + samples.length));
          },
          ...(task.firstError ? { firstError: (g: number, text: string) => task.firstError!(items[g]!, text) } : {}),
          text: (tokens) => tokenizer.decode(tokens.filter((t) => !stopSet.has(t))),
          isStop: (t) => stopSet.has(t),
          decode: (jobs) =>
            decodeContinuations(
              engine,
              run,
              input.step,
              params,
              stopIds,
              jobs.map((j) => ({
                promptId: items[j.group]!.promptId,
                streamKey: j.streamKey,
                prefix: j.prefix,
                context: j.reflection === null ? promptIds[j.group]! : [...promptIds[j.group]!, ...reflectionIds(j.reflection)],
              })),
              signal,
            ),
        },
      ),
    );
    return nodeRows(input, items, promptIds, result.nodes);
  } finally {
    await scorer.close();
  }
}

/** What a recorded turn of a shard's episodes belongs to: a record of another input is never resumed from. */
function episodeInputKey(input: RolloutShardInput) {
  const { runId, step, shard, policyVersion, phaseIndex, promptOffset, promptCount } = input;
  return { runId, step, shard, policyVersion, phaseIndex, promptOffset, promptCount };
}

/** The state recorded after the shard's last completed turn by an earlier attempt (`episodePartKey`), or null. */
async function recordedTurns(store: ObjectStore, input: RolloutShardInput): Promise<EpisodesCheckpoint | null> {
  const prefix = episodePartsPrefix(input.runId, input.step, input.shard);
  const keys: string[] = [];
  for await (const o of store.list(`${prefix}/`)) keys.push(o.key);
  const want = JSON.stringify(episodeInputKey(input));
  for (const key of keys.reverse()) {
    const part = JSON.parse(new TextDecoder().decode(await store.get(key))) as { input: unknown; checkpoint: EpisodesCheckpoint };
    if (JSON.stringify(part.input) === want) return part.checkpoint;
  }
  return null;
}

/**
 * The rows of a shard of multi-turn episodes (the run's `environment`; episode.ts): groupSize
 * episodes per prompt, every live episode's turn in one batched generation, each completed turn
 * recorded under `episodePartKey` so that a retried activity resumes after the last one (and
 * writes the same bytes). Heartbeats name the turn and the live episodes.
 */
async function episodeRows(
  store: ObjectStore,
  run: ResolvedRun,
  phase: SamplingPhase & { groupSize: number },
  input: RolloutShardInput,
  items: readonly PromptItem[],
  params: SamplingParams,
  stopIds: readonly number[],
  progress: (p: Record<string, string | number | boolean | null>) => void,
  signal: AbortSignal,
): Promise<{ rows: RolloutsInput[]; resumedTurns: number }> {
  const { tokenizer } = run;
  const { starts, promptTokens, chat } = episodeStarts(run, items, phase.groupSize);
  const resume = await recordedTurns(store, input);
  const episodes = await withPolicy(store, input.runId, run, input.policyVersion, run.config.rollout.weights, (engine) =>
    runEpisodes(starts, {
      ...episodeOptions(run, engine, { step: input.step, params, stopIds, chat, signal }),
      resume,
      onProgress: ({ turn, live, episodes: n, liveEpisodes }) =>
        progress({
          turn,
          liveEpisodes: live,
          episodes: n,
          episode: liveEpisodes.length > 3 ? `${liveEpisodes.slice(0, 3).join(', ')}, … (${live})` : liveEpisodes.join(', '),
        }),
      async onTurn(checkpoint) {
        const bytes = new TextEncoder().encode(JSON.stringify({ input: episodeInputKey(input), checkpoint }));
        await store.put(episodePartKey(input.runId, input.step, input.shard, checkpoint.turnsCompleted), bytes);
        // a crash drill mid-episode: after a recorded turn, with turns still to go
        if (checkpoint.episodes.some((e) => e.finishReason === null)) crashPoint('episode', input.step);
      },
    }),
  );
  const stopSet = new Set(stopIds);
  const decode = (ids: readonly number[]) => tokenizer.decode([...ids]);
  const rows = episodes.map((e, i): RolloutsInput => {
    const s = starts[i]!;
    const item = items[Math.floor(i / phase.groupSize)]!;
    return {
      run_id: input.runId,
      step: input.step,
      prompt_id: s.promptId,
      sample_id: s.sampleId,
      group_id: s.promptId,
      node_id: null,
      parent_node_id: null,
      policy_version: input.policyVersion,
      prompt_text: item.prompt,
      prompt_token_ids: promptTokens[Math.floor(i / phase.groupSize)]!,
      ...episodeColumns(e, decode, stopSet),
    };
  });
  return { rows, resumedTurns: resume?.turnsCompleted ?? 0 };
}

/** Generates one rollout shard of an RL step and writes `rolloutsName(shard)` (uncommitted). */
export async function rolloutShard(input: RolloutShardInput): Promise<RolloutShardResult> {
  return stage('rollout', input.storeUri, async ({ store, progress, signal }) => {
    const t0 = performance.now();
    const { runId, step, shard } = input;
    if (!Number.isInteger(shard) || shard < 0 || !Number.isInteger(input.shards) || shard >= input.shards) {
      throw badInput(`shard ${shard} of ${input.shards}: give 0 <= shard < shards`);
    }
    if (!Number.isInteger(input.promptCount) || input.promptCount < 1)
      throw badInput(`promptCount must be a positive integer, got ${input.promptCount}`);
    if (!Number.isInteger(input.promptOffset) || input.promptOffset < 0)
      throw badInput(`promptOffset must be a non-negative integer, got ${input.promptOffset}`);
    const prefix = stepPrefix(runId, step);
    const name = rolloutsName(shard);
    const seconds = () => (performance.now() - t0) / 1000;

    const committed = await readManifest(store, prefix);
    if (committed) {
      const entry = committedEntry(store, prefix, committed, name);
      const rows = decodeRollouts(await readEntry(store, prefix, entry), store.uri(prefix));
      return { rollouts: entry, ...shardSummary(rows), seconds: seconds() };
    }

    const { run } = await loadRun(store, runId);
    const phase = rlPhase(run, input.phaseIndex);
    const params = rolloutSampling(run, phase);
    const { config, tokenizer } = run;
    const items = run.task.prompts(config.seed, 'train', input.promptCount, input.promptOffset);
    const G = phase.groupSize;
    const stopIds = [...new Set([...(params.ignore_eos ? [] : run.stopIds), ...params.stop_token_ids])];
    const V = tokenizer.vocabSize;
    const jobs: SequenceJob[] = [];
    const promptIds = items.map((it) => run.encodePrompt(it.prompt, it.messages));
    if (run.environment || phase.tree) {
      progress({ done: 0, of: items.length });
      const { rows, resumedTurns } = run.environment
        ? await episodeRows(store, run, phase, input, items, params, stopIds, progress, signal)
        : { rows: await treeRows(store, run, phase as RlPhase, input, items, promptIds, params, stopIds, signal), resumedTurns: undefined };
      crashPoint('rollout', step);
      const entry = await writeArtifact(store, prefix, { name, bytes: encodeRollouts(rows), schema: ROLLOUTS });
      progress({ done: items.length, of: items.length });
      return { rollouts: entry, ...shardSummary(rows), seconds: seconds(), ...(resumedTurns !== undefined ? { resumedTurns } : {}) };
    }
    items.forEach((item, p) => {
      for (let s = 0; s < G; s++) {
        const stream = sampleStream({ seed: config.seed, step, promptId: item.promptId, sampleId: s });
        jobs.push({ prompt: promptIds[p]!, pick: (logits, pos) => sampleAt(logits.subarray(0, V), params, stream, pos).token });
      }
    });
    progress({ done: 0, of: items.length });
    let done = 0; // samples finished so far
    const gens = await withPolicy(store, runId, run, input.policyVersion, run.config.rollout.weights, (engine) =>
      generateAll(
        engine,
        jobs,
        {
          maxNewTokens: params.max_tokens,
          stopTokenIds: stopIds,
          temperature: params.temperature,
          signal,
          maxBatch: config.rollout.maxBatchSequences,
          quantize: config.rollout.quantize,
          // real progress during generation: its session runs (the engine runs off this thread, so
          // they go out meanwhile); the bound holds when the shard decodes in one batch
          onStep: (steps) =>
            progress({
              done: Math.floor(done / G),
              of: items.length,
              decodeSteps: steps,
              ...(jobs.length <= config.rollout.maxBatchSequences ? { maxSteps: params.max_tokens } : {}),
            }),
        },
        // finished samples (whole prompts' groups finish in any order once batching is continuous)
        (d) => progress({ done: Math.floor((done = d) / G), of: items.length }),
      ),
    );
    await slowPoint('rollout', step, signal);
    crashPoint('rollout', step);

    const stopSet = new Set(stopIds);
    const decode = (ids: number[]) => tokenizer.decode(ids);
    let rows: RolloutsInput[] = gens.map((gen, i) => {
      const item = items[Math.floor(i / G)]!;
      const c = finishCompletion(gen, params, stopSet, decode);
      return {
        run_id: runId,
        step,
        prompt_id: item.promptId,
        sample_id: i % G,
        group_id: item.promptId,
        node_id: null,
        parent_node_id: null,
        policy_version: input.policyVersion,
        prompt_text: item.prompt,
        prompt_token_ids: promptIds[Math.floor(i / G)]!,
        completion_text: c.text,
        completion_token_ids: c.tokens,
        behaviour_logprobs: c.logprobs,
        finish_reason: c.finishReason,
      };
    });
    if (phase.kind === 'rl' && phase.retry)
      rows = await retryRows(store, run, phase, input, items, promptIds, params, stopIds, rows, signal);
    const entry = await writeArtifact(store, prefix, { name, bytes: encodeRollouts(rows), schema: ROLLOUTS });
    progress({ done: items.length, of: items.length });
    return { rollouts: entry, ...shardSummary(rows), seconds: seconds() };
  });
}
