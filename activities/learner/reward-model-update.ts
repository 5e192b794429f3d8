/**
 * The learner's `reward_model` phase (activities/learner/learner-update.ts dispatches here): one
 * AdamW update of a sequence classifier (the run's model with `model.classifier`) with the
 * Bradley-Terry loss −mean log σ(r(chosen) − r(rejected) − m) (Bradley & Terry 1952; Ouyang et al.
 * 2022, InstructGPT; TRL's RewardTrainer; the loss: activities/model/losses-reward.ts).
 *
 * Pairs: training rows [promptOffset, promptOffset + batchSize) of the phase's dataset, wrapping
 * around (the held-out rows of `eval.fraction` left out; activities/run/reward-model-data.ts), each
 * side BOS + prompt + completion + EOS, right-padded to the batch's longest. Rows 2i / 2i+1 are pair
 * i's chosen / rejected sequence; micro-batches hold whole pairs (⌊microBatchSize / 2⌋ pairs, at
 * least 1, sizes differing by at most one pair; the engine averages micro-batch gradients).
 *
 * Metrics (of the forward pass, before the update; means over micro-batches): `loss`,
 * `accuracy` (fraction of pairs with r(chosen) > r(rejected)), `margin` (mean r(chosen) −
 * r(rejected)), `chosen_reward`, `rejected_reward`, `grad_norm`, and `pairs` (pairs trained on).
 */
import { ApplicationFailure } from '@temporalio/common';
import type { ModelEngine } from '../model/engine.js';
import type { TrainState } from '../model/engine-types.js';
import type { OptimizerOptions } from '../model/graphs/train.js';
import { bradleyTerryLoss, preferenceBatch as pairLayout } from '../model/losses-reward.js';
import { preferenceBatch, PreferenceDatasetError } from '../data/preference-dataset.js';
import type { RewardModelPhase } from '../run/config.js';
import type { ResolvedRun } from '../run/resolve.js';
import { encodePairs, rewardModelRows } from '../run/reward-model-data.js';
import type { StageContext } from '../run/stage.js';
import type { LearnerInput } from '../run/types.js';

const bad = (message: string) => ApplicationFailure.nonRetryable(message, 'BadLearnerInput');

export interface RewardModelUpdateInput {
  run: ResolvedRun;
  input: LearnerInput;
  phase: RewardModelPhase;
  engine: ModelEngine;
  /** Checkpoint `step`'s train state. */
  state: TrainState;
  optimizer: OptimizerOptions;
  microBatchSize: number;
  progress: StageContext['progress'];
}

export interface RewardModelUpdateResult {
  state: TrainState;
  metrics: Record<string, number>;
  sequences: number;
  tokens: number;
  microBatches: number;
}

/** One Bradley-Terry update of a reward_model step (see the file comment). */
export async function rewardModelUpdate(u: RewardModelUpdateInput): Promise<RewardModelUpdateResult> {
  const { input, phase, run, progress } = u;
  const { step } = input;
  if (!run.model.classifier) {
    throw bad(
      `learnerUpdate step ${step}: phases.${input.phaseIndex} is a reward_model phase but the run's model is not a classifier (model.classifier)`,
    );
  }
  if (
    !Number.isSafeInteger(input.batchSize) ||
    input.batchSize < 1 ||
    !Number.isSafeInteger(input.promptOffset) ||
    input.promptOffset < 0
  ) {
    throw bad(
      `learnerUpdate step ${step} (reward_model): give promptOffset >= 0 and batchSize >= 1, got ${input.promptOffset} and ${input.batchSize}`,
    );
  }
  progress({ phase: 'read' });
  let train;
  try {
    train = rewardModelRows(run, phase).train;
  } catch (err) {
    if (err instanceof PreferenceDatasetError) throw bad(`phases.${input.phaseIndex}.dataset: ${err.message}`);
    throw err;
  }
  const pairs = encodePairs(run, preferenceBatch(train, input.promptOffset, input.batchSize));
  const longest = Math.max(...pairs.flatMap((p) => [p.chosen.length, p.rejected.length]));
  if (longest > run.model.maxPositions) {
    throw bad(
      `learnerUpdate step ${step} (reward_model): a pair side has ${longest} tokens, more than the model's ${run.model.maxPositions} positions (model.maxPositions)`,
    );
  }

  // micro-batches of whole pairs, of near-equal sizes
  const perMicro = Math.max(1, Math.floor(u.microBatchSize / 2));
  const n = Math.ceil(pairs.length / perMicro);
  const batches = [];
  let at = 0;
  for (let k = 0; k < n; k++) {
    const take = Math.floor(pairs.length / n) + (k < pairs.length % n ? 1 : 0);
    batches.push(pairLayout(pairs.slice(at, at + take), { padId: run.tokenizer.padId ?? 0 }));
    at += take;
  }
  const tokens = pairs.reduce((a, p) => a + p.chosen.length + p.rejected.length, 0);
  progress({ phase: 'train', pairs: pairs.length, microBatches: n, tokens });
  const r = await u.engine.trainStep(u.state, batches, { loss: bradleyTerryLoss(phase.loss), lr: input.lr, optimizer: u.optimizer });
  return { state: r.state, metrics: { ...r.metrics, pairs: pairs.length }, sequences: 2 * pairs.length, tokens, microBatches: n };
}
