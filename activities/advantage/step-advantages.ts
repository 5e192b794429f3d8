/**
 * The advantage activity of a training step (workflows/training-run.ts, reward queue):
 * `computeStepAdvantages` joins the step's rollouts and rewards by (prompt_id, sample_id), runs the
 * rl phase's estimator (activities/advantage) over the samples that have a reward, and writes
 * `ADVANTAGES_NAME` under the step prefix: one row per rollout row, in shard order. A sample
 * without a reward (dropped by the reward error policy) or one the estimator does not keep gets
 * advantage 0 and an all-false loss mask, so the learner trains on exactly the kept samples.
 *
 * With the phase's `dynamicSampling` on (DAPO, Yu et al. 2025), the estimator runs on the first
 * `promptsPerStep` groups with reward variance, in rollout order (`selectGroups`); the result's
 * `dynamic` says how many were found and, for `refill`, how many more prompts the workflow should
 * roll out (it then calls again with every shard so far and `round + 1`).
 *
 * With the r3l estimator the failed/retry pairs of the phase's `retry` option (R^3L) are read from
 * the rows' tree fields (`retryPairs`: a retry's parent is its failed sample, its branch_position
 * the pivot) and passed to the estimator, whose Pivotal Credit masks their shared prefix.
 *
 * With the loss's `kl.inReward` (REINFORCE++) the step's reference logprobs (the
 * reference_logprobs artifact of scoreReferenceLogprobs, `input.referenceLogprobs`) are charged in
 * the rewards before the estimator runs: `token_rewards` −= β·kl_t and `reward` −= β Σ_t kl_t
 * (`klPenalisedRewardRows`, step-kl-reward.ts). Dynamic sampling selects its groups on the task's
 * rewards (DAPO's filter is on the outcome, not the KL), then the estimator sees the penalised ones;
 * `zeroVarianceGroups` counts the groups whose task rewards all tie.
 *
 * Idempotent: on a committed step the committed advantages are returned without computing.
 */
import { stage } from '../run/stage.js';
import { crashPoint } from '../run/faults.js';
import { loadRun } from '../run/resolve.js';
import type { RunConfig } from '../run/config.js';
import type { AdvantagesInput, AdvantagesResult, DynamicSamplingResult, KlRewardStats } from '../run/types.js';
import {
  ADVANTAGES_NAME,
  PREFERENCE_PAIRS_NAME,
  REFERENCE_LOGPROBS_NAME,
  parseShardName,
  stepPrefix,
  type ShardArtifact,
} from '../store/keys.js';
import { manifestKey, readEntry, readManifest, writeArtifact, type ManifestEntry } from '../store/manifest.js';
import type { ObjectStore } from '../store/object-store.js';
import {
  ADVANTAGES,
  decodeAdvantages,
  decodeReferenceLogprobs,
  decodeRewards,
  decodeRollouts,
  encodeAdvantages,
  encodePreferencePairs,
  PREFERENCE_PAIRS,
  type AdvantagesInput as AdvantagesRowInput,
  type AdvantagesRow,
  type PreferencePairsInput,
  type RewardsRow,
  type RolloutsRow,
} from '../store/schemas.js';
import { preferencePairs, type PreferenceSample } from './preference-pairs.js';
import { computeAdvantages, AdvantageInputError, type AdvantageConfig, type AdvantageSample, type RetryPair } from './index.js';
import { groupSamples, isFlat, groupRewards, mean, std } from './batch.js';
import { selectGroups, selectedSamples, selectionOptions, type DynamicSamplingSettings } from './dynamic-sampling.js';
import { klPenalisedRewardRows, referenceByKey, type KlInReward } from './step-kl-reward.js';
import { tokenTurns, turnAdvantages } from './turn-advantages.js';
import { badInput } from '../common/failures.js';

const rowKey = (promptId: string, sampleId: number) => `${promptId}#${sampleId}`;

/** What the estimator made of a step: the table rows and the result's statistics. */
export interface StepAdvantages {
  rows: AdvantagesRowInput[];
  keptSamples: number;
  droppedSamples: number;
  zeroVarianceGroups: number;
  advantageMean: number;
  advantageStd: number;
  /** With dynamic sampling: the selection (round as given). */
  dynamic?: DynamicSamplingResult;
  /** With the KL in the reward: what it charged. */
  klReward?: KlRewardStats;
}

/** The KL in the reward of a step (the loss's `kl.inReward`): the reference logprobs by sample and the KL term. */
export interface StepKlReward {
  /** `${prompt_id}#${sample_id}` → log π_ref of its completion tokens (`referenceByKey`). */
  reference: ReadonlyMap<string, ArrayLike<number>>;
  kl: KlInReward;
}

/** The KL term an rl phase charges in the rewards (its loss's `kl` with `inReward`), or null. */
export function klInRewardOf(phase: RunConfig['phases'][number] | undefined): KlInReward | null {
  if (phase?.kind !== 'rl' || phase.loss.name !== 'clipped_surrogate') return null;
  const kl = phase.loss.options.kl;
  return kl?.inReward ? { beta: kl.beta, estimator: kl.estimator, direction: kl.direction } : null;
}

/** Groups of more than one scored sample whose rewards all tie. */
function flatGroups(samples: readonly AdvantageSample[]): number {
  return groupSamples(samples).filter((g) => g.indices.length > 1 && isFlat(groupRewards(samples, g))).length;
}

/** Dynamic sampling of a step (the rl phase's `dynamicSampling`, on): the batch's target and the refill rounds done. */
export interface StepSelection {
  settings: DynamicSamplingSettings;
  /** Groups the batch needs: the phase's promptsPerStep. */
  targetGroups: number;
  /** Refill rounds already rolled out into the rollouts given. */
  round: number;
}

/**
 * R^3L's failed/retry pairs of a step's rows (the rl phase's `retry` option,
 * activities/rollout/retry-rollout.ts): a row with a parent node is a retry of the row of its group
 * with that node id, restarted at its branch_position (the pivot). Pairs whose two samples are not
 * both among `estimated` (a reward dropped, a group not selected) are left out.
 */
function retryPairs(rollouts: readonly RolloutsRow[], estimated: ReadonlySet<string>): RetryPair[] {
  const byNode = new Map<string, RolloutsRow>();
  for (const r of rollouts) if (r.node_id != null) byNode.set(`${r.group_id}\u0000${r.node_id}`, r);
  const pairs: RetryPair[] = [];
  for (const r of rollouts) {
    if (r.parent_node_id == null) continue;
    const parent = byNode.get(`${r.group_id}\u0000${r.parent_node_id}`);
    if (!parent)
      throw new AdvantageInputError(
        `sample ${r.prompt_id}/${r.sample_id} is a retry of node "${r.parent_node_id}", which is not a row of its group`,
      );
    const failedSampleId = rowKey(parent.prompt_id, parent.sample_id);
    const retrySampleId = rowKey(r.prompt_id, r.sample_id);
    if (estimated.has(failedSampleId) && estimated.has(retrySampleId))
      pairs.push({ failedSampleId, retrySampleId, pivot: r.branch_position ?? 0 });
  }
  return pairs;
}

/**
 * The advantages of a step from its rollouts and rewards (pure). Every rollout row needs exactly
 * one rewards row with the same (prompt_id, sample_id); rewards rows of no rollout are an error.
 * With `klReward` the estimator sees the rewards less the KL penalty (selection: the task rewards).
 */
export function stepAdvantages(
  config: AdvantageConfig,
  rollouts: readonly RolloutsRow[],
  rewards: readonly RewardsRow[],
  selection?: StepSelection,
  klReward?: StepKlReward,
  /** Episodes (the run's `environment.advantage: turn`): per-turn advantages over the samples the estimator kept (turn-advantages.ts). */
  perTurn = false,
): StepAdvantages {
  const byKey = new Map<string, RewardsRow>();
  for (const r of rewards) {
    const k = rowKey(r.prompt_id, r.sample_id);
    if (byKey.has(k))
      throw new AdvantageInputError(`sample ${r.prompt_id}/${r.sample_id} has two rewards rows: each rollout is scored once`);
    byKey.set(k, r);
  }
  // A tree one of whose nodes has no reward (dropped by the error policy) is left out whole, like a
  // dropped sample: Sibling-GRPO would meet children of a node it does not have. (R^3L's retry rows
  // carry node ids too; there a sample without a reward only loses its pair.)
  const brokenTrees = new Set(
    config.estimator === 'r3l'
      ? []
      : rollouts.filter((r) => r.node_id != null && byKey.get(rowKey(r.prompt_id, r.sample_id))?.reward === null).map((r) => r.group_id),
  );
  const samples: AdvantageSample[] = [];
  const sampleOf: (number | null)[] = [];
  const seen = new Set<string>();
  for (const r of rollouts) {
    const k = rowKey(r.prompt_id, r.sample_id);
    if (seen.has(k)) throw new AdvantageInputError(`sample ${r.prompt_id}/${r.sample_id} appears twice in the rollouts`);
    seen.add(k);
    const w = byKey.get(k);
    if (!w)
      throw new AdvantageInputError(
        `sample ${r.prompt_id}/${r.sample_id} has no rewards row: score every rollout shard before computing advantages`,
      );
    // a sample without a reward, and an episode whose tool infrastructure failed (never scored as 0), are left out
    if (w.reward === null || r.finish_reason === 'tool_failure' || brokenTrees.has(r.group_id)) {
      sampleOf.push(null);
      continue;
    }
    sampleOf.push(samples.length);
    samples.push({
      sampleId: k,
      groupId: r.group_id,
      reward: w.reward,
      completionLength: r.completion_token_ids.length,
      ...(w.token_rewards ? { processRewards: w.token_rewards } : {}),
      tokenIds: r.completion_token_ids,
      ...(r.node_id != null ? { nodeId: r.node_id, parentNodeId: r.parent_node_id, branchPosition: r.branch_position ?? 0 } : {}),
    });
  }
  if (seen.size !== byKey.size) {
    const extra = [...byKey.keys()].find((k) => !seen.has(k))!;
    throw new AdvantageInputError(
      `rewards row ${extra.replace('#', '/')} belongs to no rollout row: pass the rewards of this step's shards only`,
    );
  }

  // Dynamic sampling: the estimator sees only the selected groups (the first targetGroups with
  // reward variance, in rollout order); every other sample gets advantage 0 and no loss tokens.
  let estimated = samples;
  let dynamic: DynamicSamplingResult | undefined;
  let dropped = 0;
  if (selection && selection.settings.mode !== 'off') {
    const sel = selectGroups(samples, selection.targetGroups, selectionOptions(selection.settings), selection.round);
    estimated = selectedSamples(samples, sel);
    const groups = sel.selected.length + sel.surplus.length + sel.dropped.length;
    dynamic = {
      round: selection.round,
      groups,
      informativeGroups: sel.selected.length + sel.surplus.length,
      selectedGroups: sel.selected.length,
      droppedGroups: sel.dropped.length,
      morePrompts: sel.morePrompts,
    };
    dropped = sel.dropped.filter((g) => g.reason === 'zero-variance').length;
  }
  const index = new Map(estimated.map((s, k) => [s, k]));
  const pairs = config.estimator === 'r3l' ? retryPairs(rollouts, new Set(estimated.map((s) => s.sampleId))) : undefined;
  // KL in the reward: the estimator sees each sample's reward and per-token rewards less β·kl (same order)
  let penalised = estimated;
  let klStats: KlRewardStats | undefined;
  if (klReward) {
    const pen = klPenalisedRewardRows(rollouts, rewards, klReward.reference, klReward.kl);
    const byKey = new Map(pen.rewards.map((w) => [rowKey(w.prompt_id, w.sample_id), w]));
    penalised = estimated.map((s) => {
      const w = byKey.get(s.sampleId)!;
      return { ...s, reward: w.reward!, processRewards: w.token_rewards! };
    });
    klStats = { klSumMean: pen.klMean, penaltyMean: pen.penaltyMean };
  }
  const result = penalised.length > 0 ? computeAdvantages(config, { samples: penalised, ...(pairs ? { pairs } : {}) }) : null;
  const rows = rollouts.map((r, i): AdvantagesRowInput => {
    const j = sampleOf[i]!;
    const k = j === null ? undefined : index.get(samples[j]!);
    const out = k === undefined ? null : result!.samples[k]!;
    const n = r.completion_token_ids.length;
    const keep = out?.keep === true;
    const estimated = keep && out!.lossMask ? Array.from(out!.lossMask, (m) => m === 1) : new Array<boolean>(n).fill(keep);
    // an episode's observation and glue tokens are never trained on, whatever the estimator kept
    const policy = r.loss_mask;
    const mask = policy ? estimated.map((m, t) => m && policy[t] === true) : estimated;
    return {
      run_id: r.run_id,
      step: r.step,
      prompt_id: r.prompt_id,
      sample_id: r.sample_id,
      node_id: r.node_id,
      advantage: keep ? out!.advantage : 0,
      token_advantages: keep && out!.tokenAdvantages ? Float32Array.from(out!.tokenAdvantages) : null,
      loss_mask: mask,
    };
  });
  if (perTurn) {
    const trained = rows.flatMap((row, i) => (Array.from(row.loss_mask as boolean[]).some(Boolean) ? [i] : []));
    const adv = turnAdvantages(
      trained.map((i) => {
        const w = byKey.get(rowKey(rollouts[i]!.prompt_id, rollouts[i]!.sample_id))!;
        return { groupId: rollouts[i]!.group_id, reward: w.reward!, tokenTurns: tokenTurns(rollouts[i]!), tokenRewards: w.token_rewards };
      }),
    );
    trained.forEach((i, k) => (rows[i]!.token_advantages = Float32Array.from(adv[k]!)));
  }
  const kept = result?.stats.keptSamples ?? 0;
  return {
    rows,
    keptSamples: kept,
    droppedSamples: rollouts.length - kept,
    zeroVarianceGroups: dynamic ? dropped : klStats ? flatGroups(samples) : (result?.stats.zeroVarianceGroups ?? 0),
    advantageMean: result?.stats.advantageMean ?? 0,
    advantageStd: result?.stats.advantageStd ?? 0,
    ...(dynamic ? { dynamic } : {}),
    ...(klStats ? { klReward: klStats } : {}),
  };
}

/**
 * Statistics of committed advantages (kept = any token in the loss), with the zero-variance groups
 * from the rewards; with dynamic sampling (`round` given) also the selection, which is final
 * (morePrompts 0): a committed step is never rolled out further.
 */
function committedStats(
  adv: readonly AdvantagesRow[],
  rollouts: readonly RolloutsRow[],
  rewards: readonly RewardsRow[],
  round?: number,
): Omit<StepAdvantages, 'rows'> {
  const kept = adv.filter((r) => r.loss_mask === null || r.loss_mask.some(Boolean)).map((r) => r.advantage ?? 0);
  const reward = new Map(rewards.map((r) => [rowKey(r.prompt_id, r.sample_id), r.reward]));
  const samples: AdvantageSample[] = [];
  for (const r of rollouts) {
    const w = reward.get(rowKey(r.prompt_id, r.sample_id));
    if (w != null) samples.push({ sampleId: rowKey(r.prompt_id, r.sample_id), groupId: r.group_id, reward: w });
  }
  const groups = groupSamples(samples);
  const zeroVarianceGroups = groups.filter((g) => g.indices.length > 1 && isFlat(groupRewards(samples, g))).length;
  let dynamic: DynamicSamplingResult | undefined;
  if (round !== undefined) {
    const keptGroups = new Set<string>();
    const groupOf = new Map(rollouts.map((r) => [rowKey(r.prompt_id, r.sample_id), r.group_id]));
    for (const a of adv)
      if (a.loss_mask === null || a.loss_mask.some(Boolean)) keptGroups.add(groupOf.get(rowKey(a.prompt_id, a.sample_id)) ?? '');
    const informative = groups.filter((g) => !isFlat(groupRewards(samples, g))).length;
    dynamic = {
      round,
      groups: groups.length,
      informativeGroups: informative,
      selectedGroups: keptGroups.size,
      droppedGroups: groups.length - informative,
      morePrompts: 0,
    };
  }
  return {
    keptSamples: kept.length,
    droppedSamples: adv.length - kept.length,
    zeroVarianceGroups,
    advantageMean: mean(kept),
    advantageStd: std(kept, 'population'),
    ...(dynamic ? { dynamic } : {}),
  };
}

async function readAll<T>(
  store: ObjectStore,
  prefix: string,
  entries: readonly ManifestEntry[],
  decode: (b: Uint8Array, source: string) => T[],
): Promise<T[]> {
  const out: T[] = [];
  for (const e of entries) out.push(...decode(await readEntry(store, prefix, e), store.uri(prefix)));
  return out;
}

/**
 * The preference pairs of an online_dpo step (pure): every rollout row joined with its one rewards
 * row (the same checks as `stepAdvantages`), then `preferencePairs` per group. The result's counts
 * in the advantage stage's terms: kept = the pairs' samples, dropped = the rest, zero-variance
 * groups = the tied ones; advantage mean and std 0 (there are none).
 */
export function stepPreferencePairs(
  rollouts: readonly RolloutsRow[],
  rewards: readonly RewardsRow[],
): Omit<AdvantagesResult, 'advantages' | 'seconds'> & { rows: PreferencePairsInput[] } {
  const byKey = new Map<string, RewardsRow>();
  for (const r of rewards) {
    const k = rowKey(r.prompt_id, r.sample_id);
    if (byKey.has(k))
      throw new AdvantageInputError(`sample ${r.prompt_id}/${r.sample_id} has two rewards rows: each rollout is scored once`);
    byKey.set(k, r);
  }
  const seen = new Set<string>();
  const samples: PreferenceSample[] = rollouts.map((r) => {
    const k = rowKey(r.prompt_id, r.sample_id);
    if (seen.has(k)) throw new AdvantageInputError(`sample ${r.prompt_id}/${r.sample_id} appears twice in the rollouts`);
    seen.add(k);
    const w = byKey.get(k);
    if (!w)
      throw new AdvantageInputError(
        `sample ${r.prompt_id}/${r.sample_id} has no rewards row: score every rollout shard before forming pairs`,
      );
    return {
      groupId: r.group_id,
      promptId: r.prompt_id,
      sampleId: r.sample_id,
      reward: w.reward,
      completionLength: r.completion_token_ids.length,
    };
  });
  if (seen.size !== byKey.size) {
    const extra = [...byKey.keys()].find((k) => !seen.has(k))!;
    throw new AdvantageInputError(
      `rewards row ${extra.replace('#', '/')} belongs to no rollout row: pass the rewards of this step's shards only`,
    );
  }
  const { pairs, tied, tooFew } = preferencePairs(samples);
  const runId = rollouts[0]?.run_id ?? '';
  const step = rollouts[0]?.step ?? 0;
  return {
    rows: pairs.map((p) => ({
      run_id: runId,
      step,
      prompt_id: p.promptId,
      group_id: p.groupId,
      chosen_sample_id: p.chosen.sampleId,
      rejected_sample_id: p.rejected.sampleId,
      chosen_reward: p.chosen.reward,
      rejected_reward: p.rejected.reward,
    })),
    keptSamples: 2 * pairs.length,
    droppedSamples: rollouts.length - 2 * pairs.length,
    zeroVarianceGroups: tied,
    advantageMean: 0,
    advantageStd: 0,
    preference: { pairs: pairs.length, tied, tooFew },
  };
}

/**
 * Computes the step's advantages and writes `ADVANTAGES_NAME` (uncommitted) under the step prefix;
 * for an online_dpo phase, its preference pairs instead (`PREFERENCE_PAIRS_NAME`; the result's
 * `advantages` is that entry, `preference` the counts).
 */
export async function computeStepAdvantages(input: AdvantagesInput): Promise<AdvantagesResult> {
  return stage('advantages', input.storeUri, async ({ store, progress }) => {
    const t0 = performance.now();
    const { runId, step } = input;
    const prefix = stepPrefix(runId, step);
    const seconds = () => (performance.now() - t0) / 1000;

    const committed = await readManifest(store, prefix);
    const pairsEntry = committed?.artifacts.find((e) => e.name === PREFERENCE_PAIRS_NAME);
    if (committed && pairsEntry) {
      // an online_dpo step: its pairs are a pure function of its committed rollouts and rewards
      const sorted = (kind: ShardArtifact) =>
        committed.artifacts
          .filter((e) => parseShardName(e.name)?.kind === kind)
          .sort((a, b) => parseShardName(a.name)!.shard - parseShardName(b.name)!.shard);
      const { rows: _rows, ...stats } = stepPreferencePairs(
        await readAll(store, prefix, sorted('rollouts'), decodeRollouts),
        await readAll(store, prefix, sorted('rewards'), decodeRewards),
      );
      return { advantages: pairsEntry, ...stats, seconds: seconds() };
    }
    if (committed) {
      const entry = committed.artifacts.find((e) => e.name === ADVANTAGES_NAME);
      if (!entry)
        throw badInput(
          `${store.uri(manifestKey(prefix))} is committed without "${ADVANTAGES_NAME}" (an sft step?); a committed step is never changed`,
        );
      const adv = decodeAdvantages(await readEntry(store, prefix, entry), store.uri(prefix));
      const sorted = (kind: ShardArtifact) =>
        committed.artifacts
          .filter((e) => parseShardName(e.name)?.kind === kind)
          .sort((a, b) => parseShardName(a.name)!.shard - parseShardName(b.name)!.shard);
      const rollouts = await readAll(store, prefix, sorted('rollouts'), decodeRollouts);
      const rewards = await readAll(store, prefix, sorted('rewards'), decodeRewards);
      // the KL the committed advantages charged, recomputed from the committed reference logprobs
      const refEntry = committed.artifacts.find((e) => e.name === REFERENCE_LOGPROBS_NAME);
      let klReward: KlRewardStats | undefined;
      if (refEntry) {
        const { run } = await loadRun(store, runId);
        const kl = klInRewardOf(run.config.phases[input.phaseIndex]);
        if (kl) {
          const reference = referenceByKey(decodeReferenceLogprobs(await readEntry(store, prefix, refEntry), store.uri(prefix)));
          const pen = klPenalisedRewardRows(rollouts, rewards, reference, kl);
          klReward = { klSumMean: pen.klMean, penaltyMean: pen.penaltyMean };
        }
      }
      return {
        advantages: entry,
        ...committedStats(adv, rollouts, rewards, input.round),
        ...(klReward ? { klReward } : {}),
        seconds: seconds(),
      };
    }

    if (input.rollouts.length === 0) throw badInput('no rollouts shards given: an rl step needs at least one');
    if (input.rollouts.length !== input.rewards.length) {
      throw badInput(
        `${input.rollouts.length} rollouts shards but ${input.rewards.length} rewards shards: give one rewards entry per rollouts entry, in shard order`,
      );
    }
    const { run } = await loadRun(store, runId);
    const phase = run.config.phases[input.phaseIndex];
    if (!phase) throw badInput(`phaseIndex ${input.phaseIndex} is out of range: the run has ${run.config.phases.length} phases`);
    if (phase.kind === 'online_dpo') {
      const rollouts = await readAll(store, prefix, input.rollouts, decodeRollouts);
      const rewards = await readAll(store, prefix, input.rewards, decodeRewards);
      let result: ReturnType<typeof stepPreferencePairs>;
      try {
        result = stepPreferencePairs(rollouts, rewards);
      } catch (err) {
        if (err instanceof AdvantageInputError) throw badInput(`preference pairs of step ${step}: ${err.message}`);
        throw err;
      }
      crashPoint('advantages', step);
      const entry = await writeArtifact(store, prefix, {
        name: PREFERENCE_PAIRS_NAME,
        bytes: encodePreferencePairs(result.rows),
        schema: PREFERENCE_PAIRS,
      });
      const { rows: _rows, ...stats } = result;
      return { advantages: entry, ...stats, seconds: seconds() };
    }
    if (phase.kind !== 'rl')
      throw badInput(`phase ${input.phaseIndex} is a "${phase.kind}" phase; advantages are computed for "rl" phases only`);

    // the KL in the reward (kl.inReward) needs the step's reference logprobs, and only it takes them
    const kl = klInRewardOf(phase);
    if (kl && !input.referenceLogprobs)
      throw badInput(
        `phases.${input.phaseIndex}.loss.options.kl.inReward is set but no referenceLogprobs entry was given: score the step's rollouts under the reference (scoreReferenceLogprobs) before its advantages`,
      );
    if (!kl && input.referenceLogprobs)
      throw badInput(
        `a referenceLogprobs entry was given but phases.${input.phaseIndex}.loss.options.kl.inReward is not set: the reference logprobs are charged in the rewards only with the KL in the reward`,
      );

    progress({ done: 0, of: input.rollouts.length });
    const rollouts = await readAll(store, prefix, input.rollouts, decodeRollouts);
    const rewards = await readAll(store, prefix, input.rewards, decodeRewards);
    const refRows = input.referenceLogprobs
      ? decodeReferenceLogprobs(
          await readEntry(store, prefix, input.referenceLogprobs),
          store.uri(`${prefix}/${input.referenceLogprobs.key}`),
        )
      : null;
    let result: StepAdvantages;
    try {
      const ds = phase.dynamicSampling as DynamicSamplingSettings | undefined; // absent in a run.json written before the option
      const selection = ds && ds.mode !== 'off' ? { settings: ds, targetGroups: phase.promptsPerStep, round: input.round ?? 0 } : undefined;
      const klReward = kl && refRows ? { reference: referenceByKey(refRows), kl } : undefined;
      result = stepAdvantages(phase.advantage, rollouts, rewards, selection, klReward, run.config.environment?.advantage === 'turn');
    } catch (err) {
      if (err instanceof AdvantageInputError) throw badInput(`advantages of step ${step} (${phase.advantage.estimator}): ${err.message}`);
      throw err;
    }
    crashPoint('advantages', step);
    const entry = await writeArtifact(store, prefix, { name: ADVANTAGES_NAME, bytes: encodeAdvantages(result.rows), schema: ADVANTAGES });
    progress({ done: input.rollouts.length, of: input.rollouts.length });
    const { rows: _rows, ...stats } = result;
    return { advantages: entry, ...stats, seconds: seconds() };
  });
}
