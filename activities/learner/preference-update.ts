/**
 * The learner's preference phases (activities/learner/learner-update.ts dispatches here): one DPO
 * update (activities/learner/dpo.ts) of an `online_dpo` or `dpo` step on (chosen, rejected) pairs,
 * against the reference policy `referenceVersion` (the checkpoint where the phase started).
 *
 * Pairs. online_dpo: the step's `PREFERENCE_PAIRS_NAME` (the advantage stage's pair selection,
 * activities/advantage/preference-pairs.ts), each side a rollout row: sequence = prompt_token_ids +
 * completion_token_ids, the loss on every completion token. dpo: rows [promptOffset, promptOffset +
 * batchSize) of the phase's dataset (activities/data/preference-dataset.ts, wrapping around), each
 * side tokenised like an sft example: BOS + prompt, then the completion's characters and EOS, the
 * loss on the completion and EOS.
 *
 * The update. Every row is right-padded to the batch's longest; rows go in pair order (chosen,
 * rejected, … — `dpoPairRows`). The reference's sequence logprob S_ref (sum over loss tokens) of
 * every row is scored once under the reference weights; then one AdamW update over micro-batches of
 * whole pairs (⌊microBatchSize / 2⌋ pairs, at least 1; the engine averages micro-batch gradients,
 * so the update is the mean over pairs when the micro-batches hold equal numbers of pairs).
 * Logprobs, policy and reference, are of softmax(logits / T): T the phase's sampling temperature
 * for online_dpo (the distribution the pairs were sampled from), 1 for dpo.
 *
 * Metrics: the DPO loss's (`loss`, `reward_accuracy`, `reward_margin`, `chosen_reward`,
 * `rejected_reward`: means over micro-batches), `pairs` (pairs trained on), `grad_norm`. A step
 * without a pair (every group tied) makes no update: `{ skipped: 1, pairs: 0 }`, the checkpoint
 * carried over unchanged.
 */
import { ApplicationFailure } from '@temporalio/common';
import type { ModelEngine } from '../model/engine.js';
import type { TrainBatch, TrainState } from '../model/engine-types.js';
import type { WeightMap } from '../model/graphs/common.js';
import type { OptimizerOptions } from '../model/graphs/train.js';
import { PREFERENCE_PAIRS_NAME, stepPrefix } from '../store/keys.js';
import { readEntry } from '../store/manifest.js';
import type { ObjectStore } from '../store/object-store.js';
import { decodePreferencePairs, decodeRollouts, type RolloutsRow } from '../store/schemas.js';
import type { DpoPhase, OnlineDpoPhase } from '../run/config.js';
import type { ResolvedRun } from '../run/resolve.js';
import type { StageContext } from '../run/stage.js';
import type { LearnerInput } from '../run/types.js';
import { loadPreferenceDataset, preferenceBatch, PreferenceDatasetError } from '../data/preference-dataset.js';
import { dpoLoss, dpoPairRows } from './dpo.js';

const bad = (message: string) => ApplicationFailure.nonRetryable(message, 'BadLearnerInput');

/** One side of a pair before padding. */
interface PairRow {
  ids: number[];
  lossMask: number[];
}

export interface PreferenceUpdateInput {
  store: ObjectStore;
  run: ResolvedRun;
  input: LearnerInput;
  phase: OnlineDpoPhase | DpoPhase;
  engine: ModelEngine;
  /** Checkpoint `step`'s train state. */
  state: TrainState;
  /** The weights of checkpoint `version` (the learner caches the reference). */
  referenceWeights: (version: number) => Promise<WeightMap>;
  optimizer: OptimizerOptions;
  microBatchSize: number;
  progress: StageContext['progress'];
}

export interface PreferenceUpdateResult {
  state: TrainState;
  metrics: Record<string, number>;
  sequences: number;
  tokens: number;
  microBatches: number;
}

/** online_dpo: the step's pairs as rollout rows (prompt + completion, the loss on the completion). */
async function onlinePairs(store: ObjectStore, input: LearnerInput): Promise<{ chosen: PairRow; rejected: PairRow }[]> {
  const prefix = stepPrefix(input.runId, input.step);
  const entry = input.advantages;
  if (!entry || entry.name !== PREFERENCE_PAIRS_NAME) {
    throw bad(
      `learnerUpdate step ${input.step} (online_dpo): give the step's ${PREFERENCE_PAIRS_NAME} entry (as advantages), got ${entry ? `"${entry.name}"` : 'none'}`,
    );
  }
  if (input.rollouts.length === 0) throw bad(`learnerUpdate step ${input.step} (online_dpo): no rollouts entries given`);
  const source = store.uri(`${prefix}/${entry.key}`);
  const pairs = decodePreferencePairs(await readEntry(store, prefix, entry), source);
  const rows = new Map<string, RolloutsRow>();
  for (const e of input.rollouts) {
    for (const r of decodeRollouts(await readEntry(store, prefix, e), store.uri(`${prefix}/${e.key}`)))
      rows.set(`${r.prompt_id}\u0000${r.sample_id}`, r);
  }
  const side = (promptId: string, sampleId: number): PairRow => {
    const r = rows.get(`${promptId}\u0000${sampleId}`);
    if (!r) throw bad(`${source}: pair of prompt ${promptId} names sample ${sampleId}, which is in none of the rollouts given`);
    return {
      ids: [...r.prompt_token_ids, ...r.completion_token_ids],
      lossMask: [...r.prompt_token_ids.map(() => 0), ...r.completion_token_ids.map(() => 1)],
    };
  };
  return pairs.map((p) => ({ chosen: side(p.prompt_id, p.chosen_sample_id), rejected: side(p.prompt_id, p.rejected_sample_id) }));
}

/** dpo: the step's rows of the preference dataset, tokenised like sft examples. */
function datasetPairs(run: ResolvedRun, phase: DpoPhase, input: LearnerInput): { chosen: PairRow; rejected: PairRow }[] {
  if (
    !Number.isSafeInteger(input.batchSize) ||
    input.batchSize < 1 ||
    !Number.isSafeInteger(input.promptOffset) ||
    input.promptOffset < 0
  ) {
    throw bad(
      `learnerUpdate step ${input.step} (dpo): give promptOffset >= 0 and batchSize >= 1, got ${input.promptOffset} and ${input.batchSize}`,
    );
  }
  let rows;
  try {
    // a char model must be able to spell every row; a pretrained tokenizer encodes any text
    rows = loadPreferenceDataset(phase.dataset, run.tokenizer.kind === 'char' ? { alphabet: run.task.alphabet } : {});
  } catch (err) {
    if (err instanceof PreferenceDatasetError) throw bad(`phases.${input.phaseIndex}.dataset: ${err.message}`);
    throw err;
  }
  return preferenceBatch(rows, input.promptOffset, input.batchSize).map((r) => {
    const prompt = run.encodePrompt(r.prompt);
    const side = (text: string): PairRow => {
      const completion = run.encodeCompletion(text);
      return { ids: [...prompt, ...completion], lossMask: [...prompt.map(() => 0), ...completion.map(() => 1)] };
    };
    return { chosen: side(r.chosen), rejected: side(r.rejected) };
  });
}

const pad = (xs: readonly number[], t: number) => [...xs, ...new Array<number>(t - xs.length).fill(0)];

function toBatch(rows: readonly PairRow[], t: number): TrainBatch {
  return {
    ids: rows.map((r) => pad(r.ids, t)),
    attentionMask: rows.map((r) =>
      pad(
        r.ids.map(() => 1),
        t,
      ),
    ),
    lossMask: rows.map((r) => pad(r.lossMask, t)),
  };
}

/** One DPO update of an online_dpo or dpo step (see the file comment). */
export async function preferenceUpdate(u: PreferenceUpdateInput): Promise<PreferenceUpdateResult> {
  const { input, phase, engine, progress } = u;
  const { step } = input;
  const ref = input.referenceVersion;
  if (ref === null || !Number.isSafeInteger(ref) || ref < 0 || ref > step) {
    throw bad(
      `learnerUpdate step ${step}: a ${phase.kind} phase trains against a reference policy but referenceVersion is ${JSON.stringify(ref)}; give the checkpoint where the phase started (0..${step})`,
    );
  }
  progress({ phase: 'read' });
  const pairs = phase.kind === 'online_dpo' ? await onlinePairs(u.store, input) : datasetPairs(u.run, phase, input);
  if (pairs.length === 0) return { state: u.state, metrics: { skipped: 1, pairs: 0 }, sequences: 0, tokens: 0, microBatches: 0 };

  const t = Math.max(...pairs.flatMap((p) => [p.chosen.ids.length, p.rejected.ids.length]));
  const maxPositions = u.run.model.maxPositions;
  if (t > maxPositions)
    throw bad(`learnerUpdate step ${step} (${phase.kind}): a pair has ${t} tokens, more than the model's ${maxPositions} positions`);
  const padded = (r: PairRow): PairRow => ({ ids: pad(r.ids, t), lossMask: pad(r.lossMask, t) });
  let rows: PairRow[];
  try {
    rows = dpoPairRows(pairs.map((p) => ({ chosen: padded(p.chosen), rejected: padded(p.rejected) })));
  } catch (err) {
    throw bad(`learnerUpdate step ${step} (${phase.kind}): ${(err as Error).message}`);
  }
  const temperature = phase.kind === 'online_dpo' ? phase.sampling.temperature : 1;
  // the real lengths (padding is attention 0, as in the rl learner)
  const lengths = pairs.flatMap((p) => [p.chosen.ids.length, p.rejected.ids.length]);
  const batchOf = (from: number, to: number) =>
    toBatch(
      rows.slice(from, to).map((r, i) => ({ ids: r.ids.slice(0, lengths[from + i]), lossMask: r.lossMask.slice(0, lengths[from + i]) })),
      t,
    );

  // micro-batches of whole pairs, of near-equal sizes
  const perMicro = Math.max(1, Math.floor(u.microBatchSize / 2));
  const n = Math.ceil(pairs.length / perMicro);
  const bounds: [number, number][] = [];
  let at = 0;
  for (let k = 0; k < n; k++) {
    const take = Math.floor(pairs.length / n) + (k < pairs.length % n ? 1 : 0);
    bounds.push([2 * at, 2 * (at + take)]);
    at += take;
  }

  // S_ref of every row under the reference weights, at the same temperature
  u.engine.setWeights(await u.referenceWeights(ref), `reference:${ref}`);
  const refSums: number[] = [];
  for (const [k, [from, to]] of bounds.entries()) {
    progress({ phase: 'reference logprobs', microBatch: k + 1, of: n });
    const b = batchOf(from, to);
    const sc = await engine.score({ ids: b.ids, attentionMask: b.attentionMask }, { entropy: false, temperature });
    for (let i = 0; i < to - from; i++) {
      let s = 0;
      for (let j = 0; j < t; j++) if (b.lossMask[i]![j]) s += sc.logprobs[i * t + j]!;
      refSums.push(s);
    }
  }

  const batches = bounds.map(([from, to]) => ({ ...batchOf(from, to), extra: { ref_sequence_logprobs: refSums.slice(from, to) } }));
  const tokens = rows.reduce((a, r) => a + r.lossMask.reduce((x, y) => x + y, 0), 0);
  progress({ phase: 'train', pairs: pairs.length, microBatches: n, tokens });
  const r = await engine.trainStep(u.state, batches, { loss: dpoLoss(phase.dpo), lr: input.lr, optimizer: u.optimizer, temperature });
  return { state: r.state, metrics: { ...r.metrics, pairs: pairs.length }, sequences: rows.length, tokens, microBatches: n };
}
