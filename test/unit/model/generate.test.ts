/**
 * generate(): sequences of a left-padded batch finish independently (a stop token ends one
 * sequence, the others go on, the finished one is never asked for another token), and what a
 * sequence generates does not depend on its batch-mates: the same tokens and logprobs (within
 * 1e-4) as when it is generated alone, before and after a batch-mate finishes and is dropped
 * from the KV cache.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelConfig } from '../../../activities/model/config.js';
import { ModelEngine } from '../../../activities/model/engine.js';
import { initWeights } from '../../../activities/model/init.js';
import { generate } from '../../../activities/model/generate.js';

const STOP = 3;

const greedy = (l: Float32Array): number => {
  let b = 0;
  for (let i = 1; i < l.length; i++) if (i !== STOP && l[i]! > l[b]!) b = i;
  return b;
};

test('sequences finish independently and are unaffected by their batch-mates', async () => {
  const cfg = parseModelConfig({
    model_type: 'llama',
    vocab_size: 30,
    hidden_size: 32,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    intermediate_size: 40,
    eos_token_id: STOP,
  });
  const engine = new ModelEngine(cfg, { threads: 1 });
  engine.setWeights(initWeights(cfg, 'gen', { std: 0.2 }), 'v1');
  const prompts = [
    [5, 6, 7, 8, 9],
    [10, 11],
    [12, 13, 14],
  ];
  const calls: [number, number][] = [];
  // sequence 1 emits the stop token at its third position; the greedy pick never chooses STOP otherwise
  const pick = (l: Float32Array, seq: number, pos: number) => {
    calls.push([seq, pos]);
    return seq === 1 && pos === 2 ? STOP : greedy(l);
  };
  const gens = await generate(engine, prompts, { maxNewTokens: 8, pickToken: pick });
  assert.equal(gens[1]!.finishReason, 'stop');
  assert.deepEqual(gens[1]!.tokens.length, 3);
  assert.equal(gens[1]!.tokens[2], STOP);
  for (const i of [0, 2]) {
    assert.equal(gens[i]!.finishReason, 'length');
    assert.equal(gens[i]!.tokens.length, 8);
  }
  assert.ok(!calls.some(([s, p]) => s === 1 && p > 2), 'a finished sequence is not stepped again');

  for (const i of [0, 2]) {
    const [alone] = await generate(engine, [prompts[i]!], { maxNewTokens: 8, pickToken: (l) => greedy(l) });
    assert.deepEqual(gens[i]!.tokens, alone!.tokens, `sequence ${i}: batched and solo tokens`);
    gens[i]!.logprobs.forEach((lp, j) =>
      assert.ok(Math.abs(lp - alone!.logprobs[j]!) <= 1e-4, `sequence ${i} token ${j}: ${lp} vs ${alone!.logprobs[j]}`),
    );
  }
  await engine.close();
});
