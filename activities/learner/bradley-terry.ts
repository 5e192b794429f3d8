/**
 * Bradley-Terry loss for a scalar-head reward model (Bradley & Terry 1952; as used for RLHF reward
 * models by Stiennon et al. 2020 and Ouyang et al. 2022, InstructGPT): rows come in pairs (chosen,
 * rejected); the reward of a row is a linear head on the final hidden state of its last real token,
 *   r_i = w · h_{i, last(i)},    loss = −mean_k log σ(r_chosen,k − r_rejected,k)
 *          + c · mean_k (r_chosen,k + r_rejected,k)²      (optional reward centering)
 * Reward centering is the auxiliary term of Eisenstein et al. 2023, "Helping or Herding? Reward
 * Model Ensembles Mitigate but do not Eliminate Reward Hacking" (it pins the reward scale's
 * free offset near 0).
 *
 * ───────────────────────────────────────────────────────────────────────────────────────────────
 * PROPOSED ENGINE EXTENSION — the engine's `LossContext` does not provide `hidden()` or
 * `parameter()` yet, so `ModelEngine.trainStep` cannot run this builder today. It is written against
 * `RewardModelLossContext` below and tested through onnxruntime with the real architecture code in a
 * test harness that provides exactly this interface (test/unit/learner/bradley-terry.test.ts). It is
 * not in the `buildLoss` registry until the engine implements the extension.
 * ───────────────────────────────────────────────────────────────────────────────────────────────
 */
import { parseConfig, z } from '../common/config.js';
import type { Tensor } from '../model/graph.js';
import type { LossContext, LossResult } from '../model/losses.js';
import * as F from '../model/ops.js';
import { logSigmoid } from './dpo.js';

/** PROPOSED: what a reward-model loss needs beyond `LossContext` (see the file comment). */
export interface RewardModelLossContext extends LossContext {
  /**
   * float32 [B, T, D]: the final hidden state (after the last norm) at every position — the tensor
   * `arch.body` returns, before the LM head; differentiable with respect to the model's parameters.
   */
  hidden(): Tensor;
  /**
   * Declares a trainable parameter owned by the loss: a float32 graph input named `name` that the
   * trainStep graph differentiates, clips and updates with AdamW exactly like the model's own
   * (inputs `adam_m.<name>` / `adam_v.<name>`, outputs `new.<name>`, ...).
   */
  parameter(name: string, shape: number[]): Tensor;
}

/** PROPOSED: a loss builder that needs the extended context and declares extra parameters. */
export interface RewardModelLossBuilder {
  readonly key: string;
  /** The loss's own parameters (names and shapes) for a model of hidden size `hidden`, so the
   *  caller can initialise them in the train state before the first step. */
  parameters(hidden: number): { name: string; shape: number[]; init: 'zeros' | { normalStd: number } }[];
  build(ctx: RewardModelLossContext): LossResult;
}

export const bradleyTerrySchema = z.strictObject({
  /**
   * Name of the scalar head's weight [1, D]. `score.weight` is the Hugging Face
   * `*ForSequenceClassification` name (no bias), so exported weights load there.
   */
  headName: z.string().min(1).default('score.weight'),
  /** Coefficient c of the reward-centering term (Eisenstein et al. 2023: 0.01); 0 disables it. */
  centerCoef: z.number().min(0).default(0),
  /** Std of the head's normal initialisation (HF: the model's initializer_range, 0.02). */
  initStd: z.number().min(0).default(0.02),
});
export type BradleyTerryOptions = z.output<typeof bradleyTerrySchema>;

/**
 * float32 [B, T]: 1 at the last real token of each row (a real token followed by padding or by the
 * end of the row), for right, left or no padding.
 */
export function lastTokenMask(attentionMask: Tensor): Tensor {
  return attentionMask.g.noTape(() => {
    const next = F.pad(F.slice(attentionMask, [1], [2 ** 62], [1]), [0, 1], [1]);
    return F.mul(attentionMask, F.sub(1, next));
  });
}

/** The scalar reward of each row [B]: the head applied to the last real token's hidden state. */
export function lastTokenReward(hidden: Tensor, head: Tensor, attentionMask: Tensor): Tensor {
  const perPosition = F.squeeze(F.linear(hidden, head, null, 'out_in'), [-1]); // [B, T]
  return F.reduceSum(F.mul(perPosition, lastTokenMask(attentionMask)), [1]);
}

export function bradleyTerryLoss(input: z.input<typeof bradleyTerrySchema> = {}): RewardModelLossBuilder {
  const o = parseConfig(bradleyTerrySchema, input, 'bradley_terry options');
  return {
    key: `bradley_terry:${JSON.stringify(o)}`,
    parameters(hidden) {
      return [{ name: o.headName, shape: [1, hidden], init: o.initStd > 0 ? { normalStd: o.initStd } : 'zeros' }];
    },
    build(ctx) {
      const hidden = ctx.hidden();
      const d = hidden.shape[2];
      if (typeof d !== 'number') throw new Error('bradley_terry: the hidden size must be static');
      const w = ctx.parameter(o.headName, [1, d]);
      const rewards = lastTokenReward(hidden, w, ctx.attentionMask); // [B]
      const [c, r] = F.split(F.reshape(rewards, [-1, 2], [null, 2]), [1, 1], 1);
      const chosen = F.squeeze(c!, [1]);
      const rejected = F.squeeze(r!, [1]);
      const margin = F.sub(chosen, rejected);
      let loss = F.neg(F.reduceMean(logSigmoid(margin)));
      if (o.centerCoef > 0) {
        const s = F.add(chosen, rejected);
        loss = F.add(loss, F.mul(F.reduceMean(F.mul(s, s)), o.centerCoef));
      }
      const metrics = ctx.g.noTape(() => ({
        accuracy: F.reduceMean(F.cast(F.greater(margin, 0), margin.dtype)),
        reward_margin: F.reduceMean(margin),
        chosen_reward: F.reduceMean(chosen),
        rejected_reward: F.reduceMean(rejected),
      }));
      return { loss, metrics };
    },
  };
}
