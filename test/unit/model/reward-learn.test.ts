/**
 * Proof of learning for reward models: a tiny llama sequence classifier trained from scratch with
 * the Bradley-Terry loss (`reward-fixture.ts`: prefer the string with more "a"s) ranks >= 90% of
 * 300 held-out pairs correctly, scored by the `reward` graph with right padding and with left
 * padding alike.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelEngine } from '../../../activities/model/engine.js';
import { CounterRng } from '../../../activities/common/rng.js';
import { rmConfig, tokenPairs, tokenizer, trainCountingRewardModel } from './reward-fixture.js';

test('a tiny reward model trained with the Bradley-Terry loss ranks >= 90% of held-out preference pairs', async (t) => {
  const trained = await trainCountingRewardModel(150);
  assert.ok(trained.lastLoss < trained.firstLoss / 5, `loss fell from ${trained.firstLoss} to ${trained.lastLoss}`);
  const engine = new ModelEngine(rmConfig, { threads: 1 });
  engine.setWeights(trained.weights, 'trained');
  const held = tokenPairs(new CounterRng(99, 'rm-eval'), 0, 300);
  const rows = held.flatMap((p) => [p.chosen, p.rejected]);
  const len = Math.max(...rows.map((r) => r.length));
  const pad = (r: readonly number[], left: boolean) => {
    const fill = Array<number>(len - r.length).fill(tokenizer.padId);
    const ones = r.map(() => 1);
    const zeros = fill.map(() => 0);
    return left ? { ids: [...fill, ...r], mask: [...zeros, ...ones] } : { ids: [...r, ...fill], mask: [...ones, ...zeros] };
  };
  for (const left of [false, true]) {
    const padded = rows.map((r) => pad(r, left));
    const r = await engine.reward({ ids: padded.map((p) => p.ids), attentionMask: padded.map((p) => p.mask) });
    let correct = 0;
    for (let i = 0; i < held.length; i++) if (r[2 * i]! > r[2 * i + 1]!) correct++;
    t.diagnostic(
      `${left ? 'left' : 'right'} padding: ${correct}/${held.length} held-out pairs ranked correctly (loss ${trained.firstLoss.toFixed(3)} -> ${trained.lastLoss.toFixed(3)})`,
    );
    assert.ok(correct / held.length >= 0.9, `${left ? 'left' : 'right'} padding: held-out pairwise accuracy ${correct}/${held.length}`);
  }
  await engine.close();
});
