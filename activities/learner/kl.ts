/**
 * KL divergence to a reference policy, estimated per sampled token — in the graph (a loss term)
 * and in plain TypeScript (a reward penalty applied before the advantage estimator).
 *
 * Notation at a sampled token y_t: log r = log π(y_t) − log π_ref(y_t), ρ = π_ref / π = e^{−log r}.
 *
 * Reverse KL(π ‖ π_ref) = E_π[log π/π_ref] (the usual RLHF/GRPO regulariser; mode-seeking). The
 * estimators of Schulman, "Approximating KL Divergence" (2020):
 *   k1 = log r                       unbiased, high variance, can be negative
 *   k2 = ½ (log r)²                  biased, low variance, ≥ 0
 *   k3 = ρ − 1 − log ρ = ρ − 1 + log r   unbiased (E_π[ρ] = 1), low variance, ≥ 0 (GRPO's choice)
 *
 * Forward KL(π_ref ‖ π) = E_ref[log π_ref/π] (mass-covering: RAPO, "Unlocking Reasoning
 * Capabilities in LLMs via Reinforcement Learning Exploration" replaces the reverse penalty by the
 * forward one so the policy can leave the reference's support). The tokens were sampled from π,
 * not π_ref, so each estimator is the same estimator written for samples of π_ref, importance-
 * weighted by ρ = π_ref/π (E_π[ρ f] = E_ref[f]):
 *   k1 = ρ · log ρ                   unbiased
 *   k2 = ρ · ½ (log ρ)²              biased like reverse k2
 *   k3 = ρ · (1/ρ − 1 + log ρ) = 1 − ρ + ρ log ρ   unbiased, ≥ 0 (convex in ρ, zero at ρ = 1)
 * The weight ρ is large where the reference likes a token the policy does not: that is exactly
 * where the forward KL pushes π back, but it also makes these estimators heavy-tailed; prefer k3.
 *
 * Both are evaluated at the sampled tokens only (a one-sample estimate of the sum over the
 * vocabulary); as a loss term the gradient is the pathwise gradient of the estimate with respect
 * to log π, as GRPO and verl use it. That gradient is not always the gradient of the KL the value
 * estimates (README.md, "What each KL option optimises"; test/unit/learner/kl-expectation.test.ts):
 * with y ~ π fixed, E_π[f'(log r)·∇log π] is 0 for k1, ∇KL(π‖π_ref) for k2, ∇KL(π_ref‖π) (the
 * forward KL) for reverse k3, and neither KL for the forward estimators.
 *
 * 'k3+' is k3's value with k2's gradient, sg(k3) + k2 − sg(k2) (sg = stop-gradient), so the logged value is the unbiased, non-negative k3
 * and, as a loss, its expected gradient is k2's: the gradient of the KL in the chosen direction's
 * k2 (reverse: exactly ∇KL(π‖π_ref)). In plain numbers (`klValue`) it is k3.
 */
import { z } from '../common/config.js';
import type { Tensor } from '../model/graph.js';
import * as F from '../model/ops.js';

/** The per-token KL estimators by config name (see above). */
export const klEstimatorSchema = z.enum(['k1', 'k2', 'k3', 'k3+']);
export type KlEstimator = z.output<typeof klEstimatorSchema>;
export type KlDirection = 'reverse' | 'forward';

/** Per-token KL estimate (graph) from logr = log π − log π_ref (any shape). */
export function klTensor(logr: Tensor, estimator: KlEstimator, direction: KlDirection): Tensor {
  if (estimator === 'k3+') {
    // value k3, gradient k2: sg(k3) + k2 − sg(k2)
    const k2 = klTensor(logr, 'k2', direction);
    return F.add(F.stopGradient(klTensor(logr, 'k3', direction)), F.sub(k2, F.stopGradient(k2)));
  }
  if (direction === 'reverse') {
    switch (estimator) {
      case 'k1':
        return F.identity(logr);
      case 'k2':
        return F.mul(F.mul(logr, logr), 0.5);
      case 'k3':
        return F.add(F.sub(F.exp(F.neg(logr)), 1), logr);
    }
  }
  const rho = F.exp(F.neg(logr)); // π_ref / π; log ρ = −log r
  switch (estimator) {
    case 'k1':
      return F.neg(F.mul(rho, logr));
    case 'k2':
      return F.mul(F.mul(rho, F.mul(logr, logr)), 0.5);
    case 'k3':
      return F.sub(F.sub(1, rho), F.mul(rho, logr));
  }
}

/** The same per-token estimate in plain numbers (logr = log π − log π_ref at the sampled token). */
export function klValue(logr: number, estimator: KlEstimator, direction: KlDirection): number {
  if (estimator === 'k3+') return klValue(logr, 'k3', direction);
  if (direction === 'reverse') {
    switch (estimator) {
      case 'k1':
        return logr;
      case 'k2':
        return 0.5 * logr * logr;
      case 'k3':
        return Math.exp(-logr) - 1 + logr;
    }
  }
  const rho = Math.exp(-logr);
  switch (estimator) {
    case 'k1':
      return -rho * logr;
    case 'k2':
      return 0.5 * rho * logr * logr;
    case 'k3':
      return 1 - rho - rho * logr;
  }
}
