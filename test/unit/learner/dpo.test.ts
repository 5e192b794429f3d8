/**
 * DPO / cDPO on (chosen, rejected) row pairs: value and metrics against a TypeScript reference,
 * gradient against finite differences (float64 graph), log σ exact and finite at 0 and at large
 * |x|, and the loss inside the engine's trainStep (value from score logprobs, parameter gradient
 * by directional finite differences); pair batching checks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { dpoLoss, dpoPairRows, logSigmoid } from '../../../activities/learner/dpo.js';
import { Graph } from '../../../activities/model/graph.js';
import { grad } from '../../../activities/model/autodiff.js';
import { CounterRng } from '../../../activities/common/rng.js';
import { checkLossGrad, engineDirectionalCheck, engineLoss, engineSetup, runLoss64 } from './harness.js';
import { dpoRef } from './reference.js';

const rng = new CounterRng(33, 'dpo-test');
let pos = 0;
const u = () => rng.uniform(pos++);
const mask = [
  [0, 0, 1, 1, 1],
  [0, 0, 1, 1, 0],
  [0, 1, 1, 1, 1],
  [0, 1, 1, 0, 0],
  [0, 0, 0, 1, 1],
  [0, 0, 1, 1, 1],
];
const logprobs = mask.map((r) => r.map(() => -(0.1 + 2.5 * u())));
const refSums = logprobs.map((r, i) => r.reduce((a, lp, t) => a + lp * mask[i]![t]!, 0) + 1.5 * (2 * u() - 1));

function close(actual: number, expected: number, what: string, tol = 1e-9): void {
  assert.ok(Math.abs(actual - expected) <= tol * (1 + Math.abs(expected)), `${what}: ${actual} vs reference ${expected}`);
}

for (const o of [
  { beta: 0.1, labelSmoothing: 0 },
  { beta: 0.5, labelSmoothing: 0.2 },
]) {
  test(`DPO beta ${o.beta}, label smoothing ${o.labelSmoothing}: value, metrics, gradient`, async () => {
    const got = await checkLossGrad(dpoLoss(o), { logprobs, lossMask: mask, extra: { ref_sequence_logprobs: refSums } });
    const want = dpoRef(o, logprobs, mask, refSums);
    close(got.loss, want.loss, 'loss');
    for (const [k, v] of Object.entries(want.metrics)) close(got.metrics[k]!, v, `metric ${k}`);
    assert.ok(want.metrics.reward_accuracy! > 0 && want.metrics.reward_accuracy! < 1, 'the pairs disagree in sign');
    // masked tokens get no gradient; without smoothing chosen tokens are pushed up, rejected ones down
    const T = mask[0]!.length;
    for (let i = 0; i < mask.length; i++)
      for (let t = 0; t < T; t++) {
        const gi = got.dLogprobs![i * T + t]!;
        if (!mask[i]![t]) assert.ok(gi === 0, `masked token [${i}][${t}] has gradient ${gi}`);
        else if (o.labelSmoothing === 0) assert.ok(i % 2 === 0 ? gi < 0 : gi > 0, `row ${i} token ${t}: gradient sign ${gi}`);
      }
  });
}

test('policy equal to the reference: loss log 2 and the gradient ±β/2 per token (log σ exact at 0)', async () => {
  const sums = logprobs.map((r, i) => r.reduce((a, lp, t) => a + lp * mask[i]![t]!, 0));
  const got = await runLoss64(dpoLoss({ beta: 0.2 }), { logprobs, lossMask: mask, extra: { ref_sequence_logprobs: sums } });
  close(got.loss, Math.LN2, 'loss');
  const T = mask[0]!.length;
  const P = mask.length / 2;
  for (let i = 0; i < mask.length; i++)
    for (let t = 0; t < T; t++) {
      const want = mask[i]![t] ? ((i % 2 === 0 ? -1 : 1) * 0.2 * 0.5) / P : 0;
      close(got.dLogprobs![i * T + t]!, want, `gradient [${i}][${t}]`);
    }
});

test('log σ is finite with the right value and gradient at large |x| (float32)', async () => {
  const g = new Graph({ name: 'logsigmoid', tape: true });
  const x = g.input('x', 'float32', [6]);
  const y = logSigmoid(x);
  g.output(y, 'y');
  g.output(grad(y, [x])[0]!, 'dx');
  const s = await ort.InferenceSession.create(g.toBytes());
  const xs = [-200, -30, -1, 0, 1, 200];
  const out = await s.run({ x: new ort.Tensor('float32', Float32Array.from(xs), [6]) });
  const ys = out.y!.data as Float32Array;
  const ds = out.dx!.data as Float32Array;
  xs.forEach((v, k) => {
    const want = v < 0 ? v - Math.log1p(Math.exp(v)) : -Math.log1p(Math.exp(-v));
    const dwant = 1 / (1 + Math.exp(v));
    assert.ok(Number.isFinite(ys[k]!) && Math.abs(ys[k]! - want) <= 1e-6 * (1 + Math.abs(want)), `log σ(${v}) = ${ys[k]} vs ${want}`);
    assert.ok(Math.abs(ds[k]! - dwant) <= 1e-6, `d log σ(${v}) = ${ds[k]} vs ${dwant}`);
  });
  await s.release();
});

test('dpoPairRows interleaves chosen and rejected rows and names a bad pair', () => {
  const row = (n: number, m: number[]) => ({ ids: Array(n).fill(1) as number[], lossMask: m });
  const rows = dpoPairRows([
    { chosen: row(3, [0, 1, 1]), rejected: row(3, [0, 0, 1]) },
    { chosen: row(3, [0, 1, 0]), rejected: row(3, [0, 1, 1]) },
  ]);
  assert.deepEqual(
    rows.map((r) => r.lossMask.join('')),
    ['011', '001', '010', '011'],
  );
  assert.throws(() => dpoPairRows([]), /no preference pairs/);
  assert.throws(
    () => dpoPairRows([{ chosen: row(3, [0, 1, 1]), rejected: row(4, [0, 0, 1, 1]) }]),
    /pair 0: chosen has 3 tokens, rejected 4/,
  );
  assert.throws(() => dpoPairRows([{ chosen: row(3, [0, 1, 1]), rejected: row(3, [0, 0, 0]) }]), /pair 0: rejected has no loss tokens/);
});

test('engine: DPO value from the score logprobs and parameter gradient by finite differences', async () => {
  const ids = [
    [1, 5, 7, 3, 2, 9],
    [1, 5, 4, 12, 19, 23],
    [3, 1, 2, 6, 8, 0],
    [3, 1, 13, 17, 5, 21],
  ];
  const lossMask = [
    [0, 0, 1, 1, 1, 1],
    [0, 0, 1, 1, 1, 1],
    [0, 0, 0, 1, 1, 1],
    [0, 0, 0, 1, 1, 0],
  ];
  const s = await engineSetup(ids, 7);
  try {
    const sums = s.logprobs.map((r, i) => r.reduce((a, lp, t) => a + lp * lossMask[i]![t]!, 0));
    const refSeq = sums.map((x, i) => x + [0.8, -0.5, -1.1, 0.3][i]!);
    const o = { beta: 0.3, labelSmoothing: 0.1 };
    const loss = dpoLoss(o);
    const batch = { ids, lossMask, extra: { ref_sequence_logprobs: refSeq } };
    const got = await engineLoss(s, batch, loss);
    const want = dpoRef(o, s.logprobs, lossMask, refSeq);
    close(got.loss!, want.loss, 'engine loss', 1e-4);
    for (const [k, v] of Object.entries(want.metrics)) close(got[k]!, v, `engine metric ${k}`, 1e-4);
    await engineDirectionalCheck(s, batch, loss, { seed: 3 });
  } finally {
    await s.engine.close();
  }
});
