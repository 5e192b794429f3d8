/**
 * The reward activity of a training step (workflows/training-run.ts, reward queue):
 * `rewardShard` scores one rollout shard with the run's reward under the run's error policy
 * (a failing reward is recorded with its message and then failed, dropped or defaulted — never a
 * silent zero; see run.ts) and writes `rewardsName(shard)` under the step prefix.
 *
 * The rollouts table carries no reference answers, so the task items are made again from their
 * prompt ids (`taskItemsById`): item `i` of a split is a pure function of (seed, split, i), and the
 * id `{task}-{split}-{i:06d}` names i.
 *
 * Idempotent: a shard of a committed step returns the committed rewards without scoring again.
 */
import { crashPoint } from '../run/faults.js';
import { stage } from '../run/stage.js';
import { loadRun } from '../run/resolve.js';
import type { RewardShardInput, RewardShardResult } from '../run/types.js';
import { rewardsName, stepPrefix } from '../store/keys.js';
import { manifestKey, readEntry, readManifest, writeArtifact } from '../store/manifest.js';
import {
  REWARDS,
  decodeRewards,
  decodeRollouts,
  encodeRewards,
  type RewardsInput,
  type RewardsRow,
  type RolloutsRow,
} from '../store/schemas.js';
import type { Split, Task, TaskItem } from '../tasks/types.js';
import { scoreSamples } from './run.js';
import type { RewardSample, RewardTurn, ToolCall } from './types.js';
import { badInput } from '../common/failures.js';

const PROMPT_ID = /^(.+)-(train|eval)-(\d+)$/;

/**
 * The task items named by `promptIds` (`{task}-{split}-{index:06d}`, as `splitItems` makes them),
 * regenerated from the seed; consecutive indices are made in one call. Throws (naming the id) on an
 * id of another task or not of that form.
 */
export function taskItemsById(task: Pick<Task, 'name' | 'prompts'>, seed: number, promptIds: Iterable<string>): Map<string, TaskItem> {
  const wanted = new Map<Split, Set<number>>();
  for (const id of promptIds) {
    const m = PROMPT_ID.exec(id);
    if (!m || m[1] !== task.name) {
      throw new Error(
        `prompt id ${JSON.stringify(id)} is not an item of task "${task.name}": expected "${task.name}-train-NNNNNN" or "${task.name}-eval-NNNNNN"`,
      );
    }
    const split = m[2] as Split;
    const index = Number(m[3]);
    if (!Number.isSafeInteger(index)) throw new Error(`prompt id ${JSON.stringify(id)}: index ${m[3]} is not a safe integer`);
    let set = wanted.get(split);
    if (!set) wanted.set(split, (set = new Set()));
    set.add(index);
  }
  const out = new Map<string, TaskItem>();
  for (const [split, set] of wanted) {
    const indices = [...set].sort((a, b) => a - b);
    for (let a = 0; a < indices.length;) {
      let b = a;
      while (b + 1 < indices.length && indices[b + 1] === indices[b]! + 1) b++;
      for (const item of task.prompts(seed, split, b - a + 1, indices[a]!)) out.set(item.promptId, item);
      a = b + 1;
    }
  }
  return out;
}

/** The `error` of an episode whose tool infrastructure failed for good: not scored (never a 0), left out of the advantages. */
export const TOOL_FAILURE_ERROR = 'not scored: the episode\'s tool infrastructure failed (finish_reason "tool_failure")';

/**
 * What a reward sees of a multi-turn episode row (rollouts v3 episode columns): its tool calls and
 * its turns — each policy turn's text (decoded from its tokens as sampled, a final stop token left
 * out) with the calls it made, each observation's text; a turn answered by an observation without
 * having made a call was malformed, and its observation says what was wrong. {} for a single
 * completion.
 */
export function episodeSample(
  r: RolloutsRow,
  decode: (ids: number[]) => string,
  stopIds: ReadonlySet<number>,
): Pick<RewardSample, 'toolCalls' | 'turns'> {
  if (r.segment_ends === null || r.segment_roles === null || r.segment_turns === null) return {};
  const calls = (r.tool_calls ?? []).map((c) => JSON.parse(c) as ToolCall & { turn: number });
  const turns: RewardTurn[] = [];
  let start = 0;
  let obs = 0;
  r.segment_ends.forEach((end, k) => {
    const ids = Array.from(r.completion_token_ids.subarray(start, end));
    const turn = r.segment_turns![k]!;
    if (r.segment_roles![k] === 'policy') {
      const text = decode(stopIds.has(ids[ids.length - 1]!) ? ids.slice(0, -1) : ids);
      const made = calls.filter((c) => c.turn === turn).map(({ name, arguments: args }) => ({ name, arguments: args }));
      turns.push({ role: 'assistant', text, toolCalls: made, tokens: ids.length });
    } else if (r.segment_roles![k] === 'observation') {
      const text = r.observations?.[obs++] ?? '';
      const asked = turns[turns.length - 1];
      if (asked?.role === 'assistant' && asked.toolCalls?.length === 0) asked.malformed = text;
      turns.push({ role: 'tool', text, tokens: ids.length });
    }
    start = end;
  });
  return { toolCalls: calls.map(({ name, arguments: args }) => ({ name, arguments: args })), turns };
}

/** The counts of RewardShardResult, from the rows of a rewards table. */
export function rewardSummary(rows: readonly (RewardsRow | RewardsInput)[]): Omit<RewardShardResult, 'rewards' | 'seconds'> {
  let scored = 0;
  let sum = 0;
  let sumSquares = 0;
  let min: number | null = null;
  let max: number | null = null;
  let errors = 0;
  let dropped = 0;
  const components: Record<string, number> = {};
  for (const r of rows) {
    if (r.error != null && r.error !== '') errors++;
    const reward = r.reward ?? null;
    if (reward === null) {
      dropped++;
      continue;
    }
    scored++;
    sum += reward;
    sumSquares += reward * reward;
    min = min === null ? reward : Math.min(min, reward);
    max = max === null ? reward : Math.max(max, reward);
    const comps = r.components instanceof Map ? Object.fromEntries(r.components) : (r.components as Record<string, number>);
    for (const k of Object.keys(comps).sort()) components[k] = (components[k] ?? 0) + comps[k]!;
  }
  return { samples: rows.length, scored, sum, sumSquares, min, max, errors, dropped, components };
}

/** Scores one rollout shard and writes `rewardsName(shard)` (uncommitted) under the step prefix. */
export async function rewardShard(input: RewardShardInput): Promise<RewardShardResult> {
  return stage('reward', input.storeUri, async ({ store, progress }) => {
    const t0 = performance.now();
    const { runId, step, shard } = input;
    if (!Number.isInteger(shard) || shard < 0 || !Number.isInteger(input.shards) || shard >= input.shards) {
      throw badInput(`shard ${shard} of ${input.shards}: give 0 <= shard < shards`);
    }
    const prefix = stepPrefix(runId, step);
    const name = rewardsName(shard);
    const seconds = () => (performance.now() - t0) / 1000;

    const committed = await readManifest(store, prefix);
    if (committed) {
      const entry = committed.artifacts.find((e) => e.name === name);
      if (!entry)
        throw badInput(
          `${store.uri(manifestKey(prefix))} is committed without "${name}"; a committed step is never changed — check the shard number`,
        );
      const rows = decodeRewards(await readEntry(store, prefix, entry), store.uri(prefix));
      return { rewards: entry, ...rewardSummary(rows), seconds: seconds() };
    }

    const { run } = await loadRun(store, runId);
    const rollouts = decodeRollouts(await readEntry(store, prefix, input.rollouts), store.uri(prefix));
    let items: Map<string, TaskItem>;
    try {
      items = taskItemsById(
        run.task,
        run.config.seed,
        rollouts.map((r) => r.prompt_id),
      );
    } catch (err) {
      throw badInput(`${store.uri(prefix)}/${input.rollouts.key}: ${(err as Error).message}`);
    }
    const stopIds = new Set(run.stopIds);
    const decode = (ids: number[]) => run.tokenizer.decode(ids);
    const samples: RewardSample[] = rollouts.map((r) => {
      const item = items.get(r.prompt_id)!;
      if (item.prompt !== r.prompt_text) {
        throw badInput(
          `rollout ${r.prompt_id}/${r.sample_id} has prompt ${JSON.stringify(r.prompt_text)} but the task's item is ${JSON.stringify(item.prompt)}: the rollouts were made with another seed or task options`,
        );
      }
      return {
        promptId: r.prompt_id,
        sampleId: r.sample_id,
        prompt: r.prompt_text,
        completion: r.completion_text,
        reference: item.reference,
        metadata: item.metadata,
        promptTokens: r.prompt_token_ids.length,
        completionTokens: r.completion_token_ids.length,
        ...episodeSample(r, decode, stopIds),
      };
    });
    // an episode whose tool infrastructure failed is not the policy's doing: it is not scored at all
    const scoredIdx = rollouts.flatMap((r, i) => (r.finish_reason === 'tool_failure' ? [] : [i]));
    progress({ done: 0, of: scoredIdx.length });
    const reward = run.createReward();
    let outcome;
    try {
      outcome = await scoreSamples(
        reward,
        scoredIdx.map((i) => samples[i]!),
        run.config.reward.errorPolicy,
        {
          step,
          onProgress: (done, of) => progress({ done, of }),
        },
      );
    } finally {
      await reward.close?.();
    }
    const scoredRows = new Map(scoredIdx.map((i, k) => [i, outcome.rows[k]!]));
    const rows: RewardsInput[] = rollouts.map((ro, i) => {
      const r = scoredRows.get(i) ?? { reward: null, components: {}, processRewards: null, error: TOOL_FAILURE_ERROR };
      return {
        run_id: runId,
        step,
        prompt_id: ro.prompt_id,
        sample_id: ro.sample_id,
        node_id: ro.node_id,
        reward: r.reward,
        components: r.components ?? {},
        token_rewards: r.processRewards,
        error: r.error,
      };
    });
    crashPoint('reward', step);
    const entry = await writeArtifact(store, prefix, { name, bytes: encodeRewards(rows), schema: REWARDS });
    return { rewards: entry, ...rewardSummary(rows), seconds: seconds() };
  });
}
