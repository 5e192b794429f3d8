/**
 * A tiny reward model trained from scratch on a synthetic preference, shared by the reward-model
 * tests of `model/` and `reward/`: over the alphabet "abcd" (char tokenizer: pad, bos, eos, a-d),
 * of two strings of the same length the one with more "a"s is preferred. A 2-layer llama sequence
 * classifier (hidden 32) learns it with the Bradley-Terry loss through `ModelEngine.trainStep`.
 */
import { parseModelConfig, type ModelConfig } from '../../../activities/model/config.js';
import { ModelEngine, initTrainState } from '../../../activities/model/engine.js';
import { initWeights } from '../../../activities/model/init.js';
import { bradleyTerryLoss, preferenceBatch, type PreferencePair } from '../../../activities/model/losses-reward.js';
import { CharTokenizer } from '../../../activities/model/tokenizer.js';
import type { WeightTensor } from '../../../activities/model/graphs/common.js';
import { CounterRng } from '../../../activities/common/rng.js';

export const tokenizer = CharTokenizer.fromAlphabet('abcd');

export const rmConfig: ModelConfig = parseModelConfig({
  architectures: ['LlamaForSequenceClassification'],
  model_type: 'llama',
  vocab_size: tokenizer.vocabSize,
  hidden_size: 32,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  intermediate_size: 64,
  max_position_embeddings: 32,
  bos_token_id: tokenizer.bosId,
  eos_token_id: tokenizer.eosId,
  pad_token_id: tokenizer.padId,
});

export const countA = (s: string): number => [...s].filter((c) => c === 'a').length;

/** Pair i of a stream: two random strings of one length (4-12) with different numbers of "a". */
export function textPair(rng: CounterRng, i: number): { chosen: string; rejected: string } {
  const len = 4 + rng.int(i * 64, 9);
  const draw = (offset: number) => Array.from({ length: len }, (_, j) => 'abcd'[rng.int(i * 64 + offset + j, 4)]!).join('');
  const x = draw(1);
  let y = draw(21);
  if (countA(x) === countA(y)) y = (y[0] === 'a' ? 'b' : 'a') + y.slice(1); // break the tie
  return countA(x) > countA(y) ? { chosen: x, rejected: y } : { chosen: y, rejected: x };
}

export function tokenPairs(rng: CounterRng, first: number, n: number): PreferencePair[] {
  return Array.from({ length: n }, (_, k) => {
    const p = textPair(rng, first + k);
    return { chosen: tokenizer.encode(p.chosen), rejected: tokenizer.encode(p.rejected) };
  });
}

export interface TrainedRewardModel {
  weights: Map<string, WeightTensor>;
  firstLoss: number;
  lastLoss: number;
}

/** Trains the reward model from a seeded init: `steps` AdamW steps of 16 pairs, lr 3e-3 with warm-up. */
export async function trainCountingRewardModel(steps: number, seed = 1): Promise<TrainedRewardModel> {
  const engine = new ModelEngine(rmConfig, { threads: 1 });
  let state = initTrainState(rmConfig, initWeights(rmConfig, seed));
  const rng = new CounterRng(seed, 'rm-train');
  const loss = bradleyTerryLoss();
  let firstLoss = NaN;
  let lastLoss = NaN;
  for (let s = 0; s < steps; s++) {
    const lr = 3e-3 * Math.min(1, (s + 1) / 20);
    const r = await engine.trainStep(state, preferenceBatch(tokenPairs(rng, s * 16, 16), { padId: tokenizer.padId }), { loss, lr });
    if (r.metrics.skipped) throw new Error(`reward-model training step ${s} skipped (non-finite gradient)`);
    state = r.state;
    if (s === 0) firstLoss = r.metrics.loss!;
    lastLoss = r.metrics.loss!;
  }
  await engine.close();
  return { weights: state.params, firstLoss, lastLoss };
}
