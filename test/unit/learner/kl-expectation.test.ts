/**
 * What each KL option of the clipped-surrogate loss optimises in expectation (the table
 * "What each KL option optimises" in activities/learner/README.md), computed exactly on a small
 * discrete distribution: π = softmax(θ) over 5 tokens, a fixed reference q, every token y
 * enumerated and weighted by π(y) (the tokens are sampled from π and held fixed, as in training).
 *
 * Value: E_π[kl(y)] from `klValue`. Expected gradient with respect to the logits θ:
 *   Σ_y π(y) · ∂kl/∂log π(y) · (e_y − π),
 * with ∂kl/∂log π(y) the autodiff gradient of the loss graph itself (clipped_surrogate with only its
 * KL term: zero advantages, one row per token, constant aggregation C = 1, β = 1), and the softmax
 * Jacobian ∂log π(y)/∂θ = e_y − π. The KLs and their gradients are computed independently in
 * float64 (central finite differences of KL(π_θ‖q) and KL(q‖π_θ) in θ).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clippedSurrogateLoss, klValue, type KlDirection, type KlEstimator } from '../../../activities/learner/index.js';
import { runLoss64 } from './harness.js';

const theta = [0.3, -1.1, 0.8, 0.05, -0.4];
const q = [0.1, 0.25, 0.15, 0.3, 0.2];
const V = theta.length;

function softmax(t: readonly number[]): number[] {
  const m = Math.max(...t);
  const e = t.map((v) => Math.exp(v - m));
  const z = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / z);
}
const pi = softmax(theta);
const reverseKl = (t: readonly number[]) => softmax(t).reduce((s, p, y) => s + p * Math.log(p / q[y]!), 0);
const forwardKl = (t: readonly number[]) => softmax(t).reduce((s, p, y) => s + q[y]! * Math.log(q[y]! / p), 0);

/** Central finite difference of f at θ, per logit (float64, h 1e-6). */
function fdGrad(f: (t: readonly number[]) => number): number[] {
  const h = 1e-6;
  return theta.map((_, j) => {
    const up = theta.slice();
    const dn = theta.slice();
    up[j]! += h;
    dn[j]! -= h;
    return (f(up) - f(dn)) / (2 * h);
  });
}
const gradReverse = fdGrad(reverseKl);
const gradForward = fdGrad(forwardKl);
const zero = theta.map(() => 0);

/** Σ_y w(y)·c(y)·(e_y − π): an expectation of c(y)·∇_θ log π(y) under weights w. */
function scoreExpectation(w: readonly number[], c: (y: number) => number): number[] {
  const g = theta.map(() => 0);
  for (let y = 0; y < V; y++) for (let j = 0; j < V; j++) g[j]! += w[y]! * c(y) * ((y === j ? 1 : 0) - pi[j]!);
  return g;
}
/** x(y) = log π(y) − log q(y). */
const x = (y: number) => Math.log(pi[y]! / q[y]!);

/** E_π[kl] and E_π[∇_θ kl] of one KL option, through the loss graph. */
async function expectation(estimator: KlEstimator, direction: KlDirection): Promise<{ value: number; grad: number[] }> {
  const loss = clippedSurrogateLoss({
    kl: { beta: 1, estimator, direction },
    aggregation: 'constant',
    constantNormaliser: 1,
    entropyMetric: false,
  });
  const lp = pi.map((p) => [Math.log(p)]);
  const r = await runLoss64(loss, {
    logprobs: lp,
    lossMask: lp.map(() => [1]),
    extra: { old_logprobs: lp, advantages: lp.map(() => 0), ref_logprobs: q.map((v) => [Math.log(v)]) },
  });
  // loss = (1/V) Σ_y kl(y): its gradient per row is ∂kl/∂log π(y) / V
  const perToken = Array.from(r.dLogprobs!, (d) => d * V);
  assert.ok(
    Math.abs(r.loss - pi.reduce((s, _, y) => s + klValue(x(y), estimator, direction), 0) / V) < 1e-12,
    `${estimator} ${direction}: graph value = klValue`,
  );
  return {
    value: pi.reduce((s, p, y) => s + p * klValue(x(y), estimator, direction), 0),
    grad: scoreExpectation(pi, (y) => perToken[y]!),
  };
}

function close(a: readonly number[], b: readonly number[], what: string, tol = 1e-8): void {
  a.forEach((v, j) => assert.ok(Math.abs(v - b[j]!) <= tol, `${what}[${j}]: ${v} vs ${b[j]}`));
}
/** Not equal to b: some component differs by more than 1e-3. */
function differs(a: readonly number[], b: readonly number[], what: string): void {
  assert.ok(
    a.some((v, j) => Math.abs(v - b[j]!) > 1e-3),
    `${what}: ${a} equals ${b}`,
  );
}

test('the distribution is far enough from the reference for the rows to differ: KL(π‖q) ≈ 0.3572, KL(q‖π) ≈ 0.3736, and the two gradients differ', () => {
  assert.ok(Math.abs(reverseKl(theta) - 0.3572) < 1e-4, String(reverseKl(theta)));
  assert.ok(Math.abs(forwardKl(theta) - 0.3736) < 1e-4, String(forwardKl(theta)));
  differs(gradReverse, gradForward, '∇KL(π‖q) vs ∇KL(q‖π)');
});

test('reverse k1 = log r: value E_π = KL(π‖q), expected gradient 0 (as a loss it does nothing on average)', async () => {
  const r = await expectation('k1', 'reverse');
  assert.ok(Math.abs(r.value - reverseKl(theta)) < 1e-12);
  close(r.grad, zero, 'k1 gradient');
});

test('reverse k2 = ½(log r)²: value biased (≠ KL(π‖q)), expected gradient = ∇KL(π‖q) exactly', async () => {
  const r = await expectation('k2', 'reverse');
  assert.ok(Math.abs(r.value - reverseKl(theta)) > 1e-2, `k2 value ${r.value}`);
  close(r.grad, gradReverse, 'k2 gradient vs ∇KL(π‖q)');
});

test("reverse k3 = ρ − 1 + log r (GRPO): value E_π = KL(π‖q), expected gradient = ∇KL(q‖π), the FORWARD KL's", async () => {
  const r = await expectation('k3', 'reverse');
  assert.ok(Math.abs(r.value - reverseKl(theta)) < 1e-12);
  close(r.grad, gradForward, 'k3 gradient vs ∇KL(q‖π)');
  differs(r.grad, gradReverse, 'k3 gradient vs ∇KL(π‖q)');
});

test('reverse k3+ (k3 value, k2 gradient): value E_π = KL(π‖q), expected gradient = ∇KL(π‖q)', async () => {
  const r = await expectation('k3+', 'reverse');
  assert.ok(Math.abs(r.value - reverseKl(theta)) < 1e-12);
  close(r.grad, gradReverse, 'k3+ gradient vs ∇KL(π‖q)');
});

test('forward k1 = −ρ log r: value E_π = KL(q‖π), gradient ∇KL(q‖π) + E_q[log(π/q)·∇log π]: neither KL', async () => {
  const r = await expectation('k1', 'forward');
  assert.ok(Math.abs(r.value - forwardKl(theta)) < 1e-12);
  const extra = scoreExpectation(q, x);
  close(
    r.grad,
    gradForward.map((g, j) => g + extra[j]!),
    'forward k1 gradient',
  );
  differs(r.grad, gradForward, 'forward k1 vs ∇KL(q‖π)');
  differs(r.grad, gradReverse, 'forward k1 vs ∇KL(π‖q)');
});

test('forward k2 = ½ρ(log r)²: value biased, gradient E_q[(log(π/q) − ½log²(π/q))·∇log π]: neither KL', async () => {
  const r = await expectation('k2', 'forward');
  assert.ok(Math.abs(r.value - forwardKl(theta)) > 1e-2, `forward k2 value ${r.value}`);
  close(
    r.grad,
    scoreExpectation(q, (y) => x(y) - 0.5 * x(y) ** 2),
    'forward k2 gradient',
  );
  differs(r.grad, gradForward, 'forward k2 vs ∇KL(q‖π)');
  differs(r.grad, gradReverse, 'forward k2 vs ∇KL(π‖q)');
});

test('forward k3 = 1 − ρ − ρ log r: value E_π = KL(q‖π), gradient E_q[log(π/q)·∇log π]: neither KL', async () => {
  const r = await expectation('k3', 'forward');
  assert.ok(Math.abs(r.value - forwardKl(theta)) < 1e-12);
  close(r.grad, scoreExpectation(q, x), 'forward k3 gradient');
  differs(r.grad, gradForward, 'forward k3 vs ∇KL(q‖π)');
  differs(r.grad, gradReverse, 'forward k3 vs ∇KL(π‖q)');
});

test("forward k3+: value E_π = KL(q‖π) (k3), gradient forward k2's: neither KL", async () => {
  const r = await expectation('k3+', 'forward');
  const k2 = await expectation('k2', 'forward');
  assert.ok(Math.abs(r.value - forwardKl(theta)) < 1e-12);
  close(r.grad, k2.grad, 'forward k3+ gradient vs forward k2');
});

test('kl.inReward: the loss has no KL term (value and gradient 0 here) but still reports the kl metric, the same as β·KL in the loss would', async () => {
  const lp = pi.map((p) => [Math.log(p)]);
  const data = {
    logprobs: lp,
    lossMask: lp.map(() => [1]),
    extra: { old_logprobs: lp, advantages: lp.map(() => 0), ref_logprobs: q.map((v) => [Math.log(v)]) },
  };
  const opts = { aggregation: 'constant' as const, constantNormaliser: 1, entropyMetric: false };
  const inLoss = await runLoss64(clippedSurrogateLoss({ ...opts, kl: { beta: 1, estimator: 'k1' } }), data);
  const inReward = await runLoss64(clippedSurrogateLoss({ ...opts, kl: { beta: 1, estimator: 'k1', inReward: true } }), data);
  assert.ok(Math.abs(inLoss.loss) > 1e-3);
  assert.equal(Math.abs(inReward.loss), 0);
  assert.ok(Array.from(inReward.dLogprobs ?? []).every((d) => Math.abs(d) === 0));
  assert.equal(inReward.metrics.kl, inLoss.metrics.kl);
});
