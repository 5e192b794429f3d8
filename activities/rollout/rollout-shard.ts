/**
 * `rolloutShard` (rollout queue): samples `groupSize` completions for each prompt of one shard of
 * an RL step with the policy of checkpoint `policyVersion`, and writes `rolloutsName(shard)` under
 * the step prefix (uncommitted; the workflow commits it with the step). A shard of a committed
 * step returns the committed artifact at once without generating.
 */
import { stage } from '../run/stage.js';
import type { RlPhase } from '../run/config.js';
import { crashPoint } from '../run/faults.js';
import { loadRun,type ResolvedRun } from '../run/resolve.js';
import type { RolloutShardInput,RolloutShardResult } from '../run/types.js';
import { rolloutsName,stepPrefix } from '../store/keys.js';
import { readEntry,readManifest,writeArtifact } from '../store/manifest.js';
import { ROLLOUTS,decodeRollouts,encodeRollouts,type RolloutsInput,type RolloutsRow } from '../store/schemas.js';
import { parseSamplingParams,sampleAt,sampleStream,type SamplingParams } from './sampling.js';
import { badInput,committedEntry,finishCompletion,generateAll,withPolicy,type SequenceJob } from './policy.js';

function rlPhase(run: ResolvedRun, phaseIndex: number): RlPhase {
  const phase = run.config.phases[phaseIndex];
  if (!phase) throw badInput(`phaseIndex ${phaseIndex} is out of range: the run has ${run.config.phases.length} phases`);
  if (phase.kind !== 'rl') throw badInput(`phase ${phaseIndex} is a "${phase.kind}" phase; rollouts are generated for "rl" phases only`);
  return phase;
}

/** Sampling params of an rl phase's rollouts, max_tokens filled with the run's budget. */
export function rolloutSampling(run: ResolvedRun, phase: RlPhase): SamplingParams {
  return parseSamplingParams({ ...phase.sampling, max_tokens: run.maxNewTokens(phase) }, 'phase sampling');
}

function shardSummary(rows: readonly RolloutsRow[] | readonly RolloutsInput[]) {
  let completionTokens = 0;
  let promptTokens = 0;
  let truncated = 0;
  let maxCompletionTokens = 0;
  for (const r of rows) {
    completionTokens += r.completion_token_ids.length;
    maxCompletionTokens = Math.max(maxCompletionTokens, r.completion_token_ids.length);
    promptTokens += r.prompt_token_ids.length;
    if (r.finish_reason === 'length') truncated++;
  }
  return { samples: rows.length, completionTokens, maxCompletionTokens, promptTokens, truncated };
}

/** Generates one rollout shard of an RL step and writes `rolloutsName(shard)` (uncommitted). */
export async function rolloutShard(input: RolloutShardInput): Promise<RolloutShardResult> {
  return stage('rollout', input.storeUri, async ({ store, progress }) => {
    const t0 = performance.now();
    const { runId, step, shard } = input;
    if (!Number.isInteger(shard) || shard < 0 || !Number.isInteger(input.shards) || shard >= input.shards) {
      throw badInput(`shard ${shard} of ${input.shards}: give 0 <= shard < shards`);
    }
    if (!Number.isInteger(input.promptCount) || input.promptCount < 1) throw badInput(`promptCount must be a positive integer, got ${input.promptCount}`);
    if (!Number.isInteger(input.promptOffset) || input.promptOffset < 0) throw badInput(`promptOffset must be a non-negative integer, got ${input.promptOffset}`);
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
    const stopIds = [...new Set([...(params.ignore_eos ? [] : tokenizer.eosIds), ...params.stop_token_ids])];
    const V = tokenizer.vocabSize;
    const jobs: SequenceJob[] = [];
    const promptIds = items.map((it) => tokenizer.encode(it.prompt));
    items.forEach((item, p) => {
      for (let s = 0; s < G; s++) {
        const stream = sampleStream({ seed: config.seed, step, promptId: item.promptId, sampleId: s });
        jobs.push({ prompt: promptIds[p]!, pick: (logits, pos) => sampleAt(logits.subarray(0, V), params, stream, pos).token });
      }
    });
    progress({ done: 0, of: items.length });
    const gens = await withPolicy(store, runId, run, input.policyVersion, (engine) =>
      generateAll(engine, jobs, { maxNewTokens: params.max_tokens, stopTokenIds: stopIds, temperature: params.temperature }, (done) => progress({ done: Math.floor(done / G), of: items.length })));
    crashPoint('rollout', step);

    const stopSet = new Set(stopIds);
    const decode = (ids: number[]) => tokenizer.decode(ids);
    const rows: RolloutsInput[] = gens.map((gen, i) => {
      const item = items[Math.floor(i / G)]!;
      const c = finishCompletion(gen, params, stopSet, decode);
      return {
        run_id: runId, step, prompt_id: item.promptId, sample_id: i % G, group_id: item.promptId,
        node_id: null, parent_node_id: null, policy_version: input.policyVersion,
        prompt_text: item.prompt, prompt_token_ids: promptIds[Math.floor(i / G)]!,
        completion_text: c.text, completion_token_ids: c.tokens, behaviour_logprobs: c.logprobs,
        finish_reason: c.finishReason,
      };
    });
    const entry = await writeArtifact(store, prefix, { name, bytes: encodeRollouts(rows), schema: ROLLOUTS });
    progress({ done: items.length, of: items.length });
    return { rollouts: entry, ...shardSummary(rows), seconds: seconds() };
  });
}
