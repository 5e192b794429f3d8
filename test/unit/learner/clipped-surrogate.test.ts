/**
 * The clipped surrogate (PPO/GRPO/DAPO/GSPO/Dr.GRPO) with KL and entropy terms: every option's
 * value and metrics against a loop-by-loop TypeScript reference, its gradient against finite
 * differences (float64 graph; GSPO-token against its defining formula), and the whole loss inside
 * the engine's trainStep on a tiny llama (value from the score graph's logprobs, gradient with
 * respect to the model parameters by directional finite differences).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { clippedSurrogateLoss, type ClippedSurrogateOptions } from '../../../activities/learner/clipped-surrogate.js';
import { CounterRng } from '../../../activities/common/rng.js';
import { checkLossGrad, engineDirectionalCheck, engineLoss, engineSetup, runLoss64, type LossData } from './harness.js';
import { aggregateRef, clippedSurrogateRef, type SurrogateRefOptions } from './reference.js';

const B = 4;
const T = 6;
const rng = new CounterRng(21, 'clipped-surrogate-test');
let pos = 0;
const u = () => rng.uniform(pos++);
const grid = (f: () => number) => Array.from({ length: B }, () => Array.from({ length: T }, f));

const mask = [
  [0, 0, 1, 1, 1, 1],
  [0, 1, 1, 1, 0, 0],
  [0, 0, 0, 1, 1, 0],
  [0, 0, 0, 0, 0, 0], // a dropped sample: no loss tokens
];
const logprobs = grid(() => -(0.2 + 2 * u()));
const old = logprobs.map((r) => r.map((lp) => lp - 0.7 * (2 * u() - 1))); // ratios in e^±0.7
const ref = logprobs.map((r) => r.map((lp) => lp - 0.6 * (2 * u() - 1)));
const entropy = grid(() => 0.5 + 2 * u());
const seqAdv = [1.2, -0.7, -0.4, 0.9];
const tokAdv = grid(() => 2 * u() - 1);

function data(extra: Record<string, number | number[] | number[][]> = {}, advantages: number[] | number[][] = seqAdv): LossData {
  return { logprobs, lossMask: mask, entropy, extra: { old_logprobs: old, advantages, ref_logprobs: ref, ...extra } };
}

function close(actual: number, expected: number, what: string, tol = 1e-9): void {
  assert.ok(Math.abs(actual - expected) <= tol * (1 + Math.abs(expected)), `${what}: ${actual} vs reference ${expected}`);
}

function refOpts(o: ClippedSurrogateOptions, extra: Partial<SurrogateRefOptions> = {}): SurrogateRefOptions {
  // unset aggregation is token_mean for a loss built on its own; 'k3+' has no loop reference (kl-expectation.test.ts covers it)
  return { ...o, aggregation: o.aggregation ?? 'token_mean', ...extra } as SurrogateRefOptions;
}

async function checkCase(
  input: Parameters<typeof clippedSurrogateLoss>[0],
  advantages: number[] | number[][] = seqAdv,
  extra: Record<string, number> = {},
  refExtra: Partial<SurrogateRefOptions> = {},
) {
  const loss = clippedSurrogateLoss(input);
  const o = JSON.parse(loss.key.slice('clipped_surrogate:'.length)) as ClippedSurrogateOptions;
  const got = await checkLossGrad(loss, data(extra, advantages));
  const want = clippedSurrogateRef(refOpts(o, refExtra), {
    logprobs,
    old,
    advantages,
    mask,
    ref,
    entropy: o.entropyMetric || o.entropyCoef > 0 ? entropy : undefined,
  });
  close(got.loss, want.loss, `${loss.key} loss`);
  for (const [k, v] of Object.entries(want.metrics)) close(got.metrics[k]!, v, `${loss.key} metric ${k}`);
  assert.deepEqual(Object.keys(got.metrics).sort(), Object.keys(want.metrics).sort(), 'metric names');
  return { got, want };
}

test('token ratio with clip-higher and token-mean aggregation: value, clip fractions and gradient', async () => {
  const { got } = await checkCase({ clipLow: 0.2, clipHigh: 0.28, aggregation: 'token_mean' });
  assert.ok(got.metrics.clip_frac_low! > 0 && got.metrics.clip_frac_high! > 0, 'the batch exercises both clip bounds');
  // clipped tokens carry no gradient: at least one masked token has a zero gradient, others not
  const g = [...got.dLogprobs!].filter((_, k) => mask[Math.floor(k / T)]![k % T]);
  assert.ok(g.some((x) => x === 0) && g.some((x) => x !== 0));
});

test('a wider upper clip (clip-higher) lets more positive-advantage tokens through', async () => {
  const sym = await runLoss64(clippedSurrogateLoss({ clipLow: 0.2, clipHigh: 0.2 }), data());
  const higher = await runLoss64(clippedSurrogateLoss({ clipLow: 0.2, clipHigh: 0.6 }), data());
  assert.ok(higher.metrics.clip_frac_high! < sym.metrics.clip_frac_high!);
  assert.equal(higher.metrics.clip_frac_low, sym.metrics.clip_frac_low);
});

test('dual clip bounds the loss of negative advantages at -A·c', async () => {
  const { got } = await checkCase({ clipLow: 0.2, clipHigh: 0.28, dualClip: 1.3, aggregation: 'token_mean' });
  assert.ok(got.metrics.dual_clip_frac! > 0, 'some negative-advantage tokens exceed the dual-clip ratio');
  const without = await runLoss64(clippedSurrogateLoss({ clipLow: 0.2, clipHigh: 0.28 }), data());
  assert.ok(got.loss < without.loss, 'bounding the negative-advantage terms lowers the loss');
});

test('aggregations: sequence mean (GRPO), constant normaliser (Dr.GRPO), token mean over the whole batch', async () => {
  await checkCase({ aggregation: 'sequence_mean' });
  await checkCase({ aggregation: 'constant', constantNormaliser: 8 });
  await checkCase({ aggregation: 'token_mean', globalTokenCount: true }, seqAdv, { loss_token_count: 13 }, { tokenCount: 13 });
  // the three differ on this batch (rows of different lengths)
  const vals = await Promise.all([
    runLoss64(clippedSurrogateLoss({ aggregation: 'sequence_mean' }), data()),
    runLoss64(clippedSurrogateLoss({ aggregation: 'token_mean' }), data()),
    runLoss64(clippedSurrogateLoss({ aggregation: 'constant', constantNormaliser: 8 }), data()),
  ]);
  assert.equal(new Set(vals.map((v) => v.loss.toFixed(9))).size, 3);
});

test('KL to the reference: k1, k2, k3 in reverse and forward direction, as a loss term', async () => {
  const seen = new Set<string>();
  for (const estimator of ['k1', 'k2', 'k3'] as const) {
    for (const direction of ['reverse', 'forward'] as const) {
      const { got } = await checkCase({ aggregation: 'sequence_mean', kl: { beta: 0.1, estimator, direction }, entropyMetric: false });
      seen.add(got.metrics.kl!.toFixed(9));
      if (estimator !== 'k1') assert.ok(got.metrics.kl! >= 0, `${estimator} ${direction} is non-negative`);
    }
  }
  assert.equal(seen.size, 6, 'the six estimators give six different values');
});

test('KL with beta 0 is reported but does not change the loss', async () => {
  const a = await runLoss64(clippedSurrogateLoss({ kl: { beta: 0 } }), data());
  const b = await runLoss64(clippedSurrogateLoss({}), data());
  assert.equal(a.loss, b.loss);
  assert.ok(a.metrics.kl! > 0);
});

test('entropy bonus: the loss falls by coef·agg(H) and its gradient reaches the entropy', async () => {
  const { got } = await checkCase({ aggregation: 'token_mean', entropyCoef: 0.05 });
  assert.ok(got.dEntropy, 'gradient flows into the entropy');
  const plain = await runLoss64(clippedSurrogateLoss({ aggregation: 'token_mean' }), data());
  close(plain.loss - got.loss, 0.05 * aggregateRef(entropy, mask, { aggregation: 'token_mean' }), 'entropy bonus');
});

test('per-token advantages', async () => {
  await checkCase({ advantages: 'token', aggregation: 'token_mean', dualClip: 2 }, tokAdv);
});

test('GSPO sequence ratio: the length-normalised sequence ratio is clipped per sequence', async () => {
  const { got } = await checkCase({ ratioLevel: 'sequence', clipLow: 0.01, clipHigh: 0.02, aggregation: 'sequence_mean' });
  assert.ok(got.metrics.clip_frac! > 0, 'some sequences are clipped');
});

test('GSPO-token: value of the sequence ratio, gradient s_i·∇log π per token', async () => {
  const o = {
    ratioLevel: 'sequence_token' as const,
    advantages: 'token' as const,
    clipLow: 0.01,
    clipHigh: 0.02,
    aggregation: 'constant' as const,
    constantNormaliser: 5,
    entropyMetric: false,
  };
  const got = await runLoss64(clippedSurrogateLoss(o), data({}, tokAdv));
  const seq = await runLoss64(clippedSurrogateLoss({ ...o, ratioLevel: 'sequence' }), data({}, tokAdv));
  close(got.loss, seq.loss, 'same value as the sequence ratio');
  const want = clippedSurrogateRef({ ...o, dualClip: null }, { logprobs, old, advantages: tokAdv, mask });
  close(got.loss, want.loss, 'loss');
  // d loss / d log π_{i,t} = m/(C·B) · (−A_{i,t}) · s_i where the unclipped term is active, else 0
  let nonzero = 0;
  for (let i = 0; i < B; i++)
    for (let t = 0; t < T; t++) {
      const expected = mask[i]![t] && want.active[i]![t] ? (-tokAdv[i]![t]! * want.ratio[i]![t]!) / (5 * B) : 0;
      if (expected !== 0) nonzero++;
      close(got.dLogprobs![i * T + t]!, expected, `gradient [${i}][${t}]`);
    }
  assert.ok(nonzero > 3);
});

// ---------------------------------------------------------------------------------------------
// Inside the engine's trainStep
// ---------------------------------------------------------------------------------------------

const ids = [
  [1, 5, 7, 3, 2, 9],
  [4, 4, 9, 12, 19, 23],
  [3, 1, 2, 6, 8, 0],
  [0, 11, 13, 17, 5, 21],
];
const engineMask = [
  [0, 0, 1, 1, 1, 1],
  [0, 0, 0, 1, 1, 1],
  [0, 1, 1, 1, 1, 0],
  [0, 0, 1, 1, 0, 0],
];
// offsets keep every ratio far (>= 3%) from the clip and dual-clip bounds: no kink within reach
const deltas = [-0.6, -0.1, 0.05, 0.45, 0, 0.3];
const refDeltas = [0.4, -0.3, 0.2, -0.5, 0.1, 0];

test("truncated importance sampling (C = 1.25): each token's surrogate times min(π_old/π_rollout, C), a constant — value, tis metrics and gradient", async () => {
  const cap = 1.25;
  // the rollout engine's logprobs differ from the learner's old ones by up to ±0.5 (weights e^±0.5, some above C)
  const rollout = old.map((r) => r.map((lp) => lp - 0.5 * (2 * u() - 1)));
  const o = { clipLow: 0.2, clipHigh: 0.28, dualClip: 3, tis: { cap }, entropyMetric: false };
  const loss = clippedSurrogateLoss(o);
  const got = await checkLossGrad(loss, data({ rollout_logprobs: rollout }));
  const want = clippedSurrogateRef({ ...o, aggregation: 'token_mean' }, { logprobs, old, advantages: seqAdv, mask, ref, rollout });
  close(got.loss, want.loss, 'loss');
  for (const [k, v] of Object.entries(want.metrics)) close(got.metrics[k]!, v, `metric ${k}`);
  assert.ok(got.metrics.tis_clip_frac! > 0 && got.metrics.tis_clip_frac! < 1, `some weights capped: ${got.metrics.tis_clip_frac}`);
  assert.ok(got.metrics.tis_weight_mean! < cap);
  // the weights change the loss; a rollout equal to old gives weight 1 everywhere: the plain loss
  const plain = await runLoss64(clippedSurrogateLoss({ ...o, tis: null }), data());
  assert.ok(Math.abs(got.loss - plain.loss) > 1e-3);
  const same = await runLoss64(loss, data({ rollout_logprobs: old }));
  close(same.loss, plain.loss, 'rollout = old: weight 1');
  assert.equal(same.metrics.tis_weight_mean, 1);
});

test('guards: token log-ratios of ±800 are clamped to ±20 before exp — finite loss and gradient, no gradient at those tokens, log_ratio_clamped counts them', async () => {
  // row 0, token 2: log π_θ − log π_old = +800 (A > 0); row 1, token 1: +800 (A < 0, the unbounded side); row 2, token 3: −800
  const wild = old.map((r) => [...r]);
  wild[0]![2] = logprobs[0]![2]! - 800;
  wild[1]![1] = logprobs[1]![1]! - 800;
  wild[2]![3] = logprobs[2]![3]! + 800;
  const o = {
    clipLow: 0.2,
    clipHigh: 0.28,
    kl: { beta: 0.1, estimator: 'k3' as const, direction: 'reverse' as const },
    entropyMetric: false,
  };
  const got = await runLoss64(clippedSurrogateLoss(o), {
    logprobs,
    lossMask: mask,
    extra: { old_logprobs: wild, advantages: seqAdv, ref_logprobs: ref },
  });
  assert.ok(Number.isFinite(got.loss) && [...got.dLogprobs!].every(Number.isFinite), `loss ${got.loss}`);
  const want = clippedSurrogateRef({ ...o, aggregation: 'token_mean' }, { logprobs, old: wild, advantages: seqAdv, mask, ref });
  close(got.loss, want.loss, 'loss (the reference clamps the same way)');
  close(got.metrics.log_ratio_clamped!, 3 / 9, 'log_ratio_clamped: 3 of the 9 loss tokens');
  assert.ok(got.loss > 1e7, 'row 1 (A < 0) pays −A·e^20 / 9 tokens: large, finite');
  const at = (i: number, t: number) => got.dLogprobs![i * T + t]!;
  // the KL term still has its gradient there; the surrogate has none: compare with the KL term's alone
  const klOnly = await runLoss64(clippedSurrogateLoss({ ...o, clipLow: 0, clipHigh: 0 }), {
    logprobs,
    lossMask: mask,
    extra: { old_logprobs: logprobs, advantages: [0, 0, 0, 0], ref_logprobs: ref },
  });
  for (const [i, t] of [
    [0, 2],
    [1, 1],
    [2, 3],
  ] as const)
    close(at(i, t), klOnly.dLogprobs![i * T + t]!, `gradient at clamped token (${i}, ${t}) is the KL term's alone`);
});

test('guards: a GSPO sequence log-ratio of 15 is clamped to 10, and a k3 KL whose log π/π_ref is −30 to 10 (kl_clamped)', async () => {
  const wild = old.map((r, i) => (i === 0 ? r.map((lp, t) => logprobs[0]![t]! - 15) : [...r])); // row 0: mean log-ratio 15
  const farRef = ref.map((r, i) => (i === 1 ? r.map((x, t) => logprobs[1]![t]! + 30) : [...r])); // row 1: log π/π_ref = −30, k3 ≈ e^30
  const o = {
    ratioLevel: 'sequence' as const,
    clipLow: 0.01,
    clipHigh: 0.02,
    aggregation: 'sequence_mean' as const,
    kl: { beta: 0.1, estimator: 'k3' as const, direction: 'reverse' as const },
    entropyMetric: false,
  };
  const got = await checkLossGrad(clippedSurrogateLoss(o), {
    logprobs,
    lossMask: mask,
    extra: { old_logprobs: wild, advantages: seqAdv, ref_logprobs: farRef },
  });
  const want = clippedSurrogateRef(o, { logprobs, old: wild, advantages: seqAdv, mask, ref: farRef });
  close(got.loss, want.loss, 'loss');
  close(got.metrics.log_ratio_clamped!, 4 / 9, "log_ratio_clamped: row 0's 4 tokens");
  close(got.metrics.kl_clamped!, 3 / 9, "kl_clamped: row 1's 3 tokens");
  close(got.metrics.kl!, want.metrics.kl!, 'kl');
  assert.ok(got.metrics.kl! <= 10);
});

test('engine: DAPO-style loss (clip-higher, dual clip, k3 KL, entropy bonus) — value from score logprobs, gradient by finite differences', async () => {
  const s = await engineSetup(ids);
  try {
    const oldLp = s.logprobs.map((r, i) => r.map((lp, t) => lp - deltas[(i + t) % deltas.length]!));
    const refLp = s.logprobs.map((r, i) => r.map((lp, t) => lp - refDeltas[(2 * i + t) % refDeltas.length]!));
    const adv = [1.1, -0.8, 0.5, -1.3];
    const input = {
      clipLow: 0.2,
      clipHigh: 0.28,
      dualClip: 1.3,
      aggregation: 'token_mean' as const,
      kl: { beta: 0.05, estimator: 'k3' as const, direction: 'reverse' as const },
      entropyCoef: 0.01,
    };
    const loss = clippedSurrogateLoss(input);
    const batch = { ids, lossMask: engineMask, extra: { old_logprobs: oldLp, advantages: adv, ref_logprobs: refLp } };
    const got = await engineLoss(s, batch, loss);
    const want = clippedSurrogateRef(
      { ...input },
      { logprobs: s.logprobs, old: oldLp, advantages: adv, mask: engineMask, ref: refLp, entropy: s.entropy },
    );
    close(got.loss!, want.loss, 'engine loss', 1e-4);
    for (const [k, v] of Object.entries(want.metrics)) close(got[k]!, v, `engine metric ${k}`, 1e-4);
    assert.ok(got.clip_frac_low! > 0 && got.clip_frac_high! > 0 && got.dual_clip_frac! > 0);
    await engineDirectionalCheck(s, batch, loss);
  } finally {
    await s.engine.close();
  }
});

test('engine: GSPO sequence ratio with forward-KL (RAPO) and Dr.GRPO constant aggregation', async () => {
  const s = await engineSetup(ids, 5);
  try {
    const oldLp = s.logprobs.map((r, i) => r.map((lp, t) => lp - deltas[(i + 2 * t) % deltas.length]! / 4));
    const refLp = s.logprobs.map((r, i) => r.map((lp, t) => lp - refDeltas[(i + t) % refDeltas.length]!));
    const adv = [0.7, -1.2, 1.4, -0.3];
    const input = {
      ratioLevel: 'sequence' as const,
      clipLow: 0.003,
      clipHigh: 0.004,
      aggregation: 'constant' as const,
      constantNormaliser: 5,
      kl: { beta: 0.2, estimator: 'k3' as const, direction: 'forward' as const },
      entropyMetric: false,
    };
    const loss = clippedSurrogateLoss(input);
    const batch = { ids, lossMask: engineMask, extra: { old_logprobs: oldLp, advantages: adv, ref_logprobs: refLp } };
    const got = await engineLoss(s, batch, loss);
    const want = clippedSurrogateRef({ ...input }, { logprobs: s.logprobs, old: oldLp, advantages: adv, mask: engineMask, ref: refLp });
    close(got.loss!, want.loss, 'engine loss', 1e-4);
    for (const [k, v] of Object.entries(want.metrics)) close(got[k]!, v, `engine metric ${k}`, 1e-4);
    await engineDirectionalCheck(s, batch, loss, { seed: 2 });
  } finally {
    await s.engine.close();
  }
});

test('engine: GRPO sequence mean with per-token advantages, k1 KL and entropy bonus', async () => {
  const s = await engineSetup(ids, 9);
  try {
    const oldLp = s.logprobs.map((r, i) => r.map((lp, t) => lp - deltas[(3 * i + t) % deltas.length]!));
    const refLp = s.logprobs.map((r, i) => r.map((lp, t) => lp - refDeltas[(i + 2 * t) % refDeltas.length]!));
    const adv = ids.map((r, i) => r.map((_, t) => [0.9, -0.4, 1.3, -1.1, 0.2][(i + t) % 5]!));
    const input = {
      advantages: 'token' as const,
      aggregation: 'sequence_mean' as const,
      kl: { beta: 0.1, estimator: 'k1' as const, direction: 'reverse' as const },
      entropyCoef: 0.02,
    };
    const loss = clippedSurrogateLoss(input);
    const batch = { ids, lossMask: engineMask, extra: { old_logprobs: oldLp, advantages: adv, ref_logprobs: refLp } };
    const got = await engineLoss(s, batch, loss);
    const want = clippedSurrogateRef(
      { clipLow: 0.2, clipHigh: 0.2, ...input },
      { logprobs: s.logprobs, old: oldLp, advantages: adv, mask: engineMask, ref: refLp, entropy: s.entropy },
    );
    close(got.loss!, want.loss, 'engine loss', 1e-4);
    for (const [k, v] of Object.entries(want.metrics)) close(got[k]!, v, `engine metric ${k}`, 1e-4);
    await engineDirectionalCheck(s, batch, loss, { seed: 4 });
  } finally {
    await s.engine.close();
  }
});

test('engine: a whole-batch token mean over two micro-batches (loss_token_count) gives the one-batch update', async () => {
  const s = await engineSetup(ids, 11);
  try {
    const oldLp = s.logprobs.map((r, i) => r.map((lp, t) => lp - deltas[(i + t) % deltas.length]! / 2));
    const adv = [0.6, -0.9, 1.4, -0.2];
    const rows = (r: number[]) => ({
      ids: r.map((i) => ids[i]!),
      lossMask: r.map((i) => engineMask[i]!),
      extra: { old_logprobs: r.map((i) => oldLp[i]!), advantages: r.map((i) => adv[i]!) },
    });
    const tokens = engineMask.flat().reduce((a, b) => a + b, 0);
    // rows 0 and 1 hold 7 loss tokens, rows 2 and 3 hold 6: per-micro-batch means would weigh them differently
    const whole = await s.engine.trainStep(s.state, rows([0, 1, 2, 3]), { loss: clippedSurrogateLoss({ entropyMetric: false }), lr: 1e-2 });
    const global = clippedSurrogateLoss({ globalTokenCount: true, entropyMetric: false });
    const micro = [0, 1].map((k) => {
      const b = rows(k === 0 ? [0, 1] : [2, 3]);
      return { ...b, extra: { ...b.extra, loss_token_count: tokens / 2 } };
    });
    const acc = await s.engine.trainStep(s.state, micro, { loss: global, lr: 1e-2 });
    close(acc.metrics.loss!, whole.metrics.loss!, 'loss', 1e-5);
    close(acc.metrics.grad_norm!, whole.metrics.grad_norm!, 'grad norm', 1e-4);
    for (const [name, w] of whole.state.params) {
      const a = acc.state.params.get(name)!.data;
      w.data.forEach((x, i) => assert.ok(Math.abs(x - a[i]!) < 2e-6, `${name}[${i}]: ${x} (one batch) vs ${a[i]} (accumulated)`));
    }
    // without the global count the two micro-batch means are weighted equally: a different update
    const local = await s.engine.trainStep(
      s.state,
      micro.map((m) => ({ ...m, extra: { old_logprobs: m.extra.old_logprobs, advantages: m.extra.advantages } })),
      { loss: clippedSurrogateLoss({ entropyMetric: false }), lr: 1e-2 },
    );
    assert.ok(
      Math.abs(local.metrics.loss! - whole.metrics.loss!) > 1e-4,
      'per-micro-batch token means differ from the whole-batch mean here',
    );
  } finally {
    await s.engine.close();
  }
});
