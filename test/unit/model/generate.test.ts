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

/** A llama of the given size with seeded weights (std `std`), STOP its end of sequence unless `eos` is false. */
function tinyEngine(o: {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  std: number;
  eos?: false;
}): ModelEngine {
  const cfg = parseModelConfig({
    model_type: 'llama',
    vocab_size: o.vocab,
    hidden_size: o.hidden,
    num_hidden_layers: o.layers,
    num_attention_heads: o.heads,
    num_key_value_heads: o.kvHeads,
    intermediate_size: o.intermediate,
    ...(o.eos === false ? {} : { eos_token_id: STOP }),
  });
  const engine = new ModelEngine(cfg, { threads: 1 });
  engine.setWeights(initWeights(cfg, 'gen', { std: o.std }), 'v1');
  return engine;
}

test('sequences finish independently and are unaffected by their batch-mates', async () => {
  const engine = tinyEngine({ vocab: 30, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 40, std: 0.2 });
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

test('continuous batching: with maxBatch below the prompt count, queued prompts join as slots free, and every sequence generates what it generates in one batch', async () => {
  const engine = tinyEngine({ vocab: 30, hidden: 32, layers: 2, heads: 4, kvHeads: 2, intermediate: 40, std: 0.2 });
  // 10 prompts of 1-6 tokens; sequence i stops after lengths[i] tokens (1 to 9 of a budget of 9)
  const prompts = Array.from({ length: 10 }, (_, i) => Array.from({ length: 1 + ((i * 7) % 6) }, (_, t) => 4 + ((i * 5 + t * 3) % 25)));
  const lengths = [2, 9, 1, 5, 3, 9, 7, 2, 4, 6];
  const endSequence = (seq: number, _tok: number, pos: number) => pos + 1 >= lengths[seq]!;
  const together = await generate(engine, prompts, { maxNewTokens: 9, pickToken: (l) => greedy(l), endSequence });
  let runs = 0;
  const joined: number[] = []; // the order in which sequences got their first token
  const queued = await generate(engine, prompts, {
    maxNewTokens: 9,
    maxBatch: 3,
    endSequence,
    onStep: (n) => (runs = n),
    pickToken: (l, seq, pos) => {
      if (pos === 0) joined.push(seq);
      return greedy(l);
    },
  });
  assert.deepEqual(
    joined,
    [...joined].sort((a, b) => a - b),
    'prompts join in queue order',
  );
  prompts.forEach((_, i) => {
    assert.deepEqual(queued[i]!.tokens, together[i]!.tokens, `sequence ${i}: tokens`);
    assert.equal(queued[i]!.tokens.length, lengths[i], `sequence ${i}: length`);
    assert.equal(queued[i]!.finishReason, together[i]!.finishReason);
    queued[i]!.logprobs.forEach((lp, j) =>
      assert.ok(Math.abs(lp - together[i]!.logprobs[j]!) <= 1e-4, `sequence ${i} token ${j}: ${lp} vs ${together[i]!.logprobs[j]}`),
    );
  });
  // batches of 3 one after another would take sum(max length of each batch) decode steps
  // plus 4 prefills; refilling freed slots finishes in fewer session runs
  const sequential = [0, 3, 6, 9].reduce((n, s) => n + 1 + Math.max(...lengths.slice(s, s + 3)) - 1, 0);
  assert.ok(runs < sequential, `${runs} session runs with refills, ${sequential} in batches of 3`);
  await engine.close();
});

test('continuous batching: at most maxBatch sequences decode at once', async () => {
  const engine = tinyEngine({ vocab: 20, hidden: 16, layers: 1, heads: 2, kvHeads: 2, intermediate: 24, std: 0.2, eos: false });
  const prompts = Array.from({ length: 7 }, (_, i) => [1 + i, 2 + i]);
  let step = -1;
  const perStep = new Map<number, number>();
  const gens = await generate(engine, prompts, {
    maxNewTokens: 5,
    maxBatch: 2,
    stopTokenIds: [],
    endSequence: (seq, _t, pos) => pos + 1 >= 1 + (seq % 5),
    onStep: (n) => (step = n),
    pickToken: () => {
      perStep.set(step, (perStep.get(step) ?? 0) + 1);
      return 5;
    },
  });
  assert.deepEqual(
    gens.map((g) => g.tokens.length),
    prompts.map((_, i) => 1 + (i % 5)),
  );
  assert.ok(Math.max(...perStep.values()) <= 2, `rows picked per session run: ${[...perStep.values()]}`);
  await engine.close();
});

test('continuous batching over 60 seeded shapes (prompt count, maxBatch, budget, prompt lengths, sequences ending at the prefill): every sequence as in one batch', async () => {
  const engine = tinyEngine({ vocab: 20, hidden: 16, layers: 1, heads: 2, kvHeads: 2, intermediate: 24, std: 0.5 });
  let seed = 1;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (let trial = 0; trial < 60; trial++) {
    const n = 1 + rnd(30);
    const maxBatch = 1 + rnd(10);
    const maxNewTokens = 1 + rnd(6);
    const prompts = Array.from({ length: n }, () => Array.from({ length: 1 + rnd(7) }, () => 4 + rnd(16)));
    const lengths = prompts.map(() => 1 + rnd(maxNewTokens));
    // greedy (the tokens follow the logits, so they test the cache too); no onStep: the batching must not
    // depend on the caller's callbacks; every fifth sequence stops at its first token
    const opts = {
      maxNewTokens,
      pickToken: (l: Float32Array, s: number, pos: number) => (pos === 0 && s % 5 === 0 ? STOP : greedy(l)),
      endSequence: (s: number, _t: number, pos: number) => pos + 1 >= lengths[s]!,
    };
    const together = await generate(engine, prompts, opts);
    const queued = await generate(engine, prompts, { ...opts, maxBatch });
    const shape = `trial ${trial}: ${n} prompts, maxBatch ${maxBatch}, maxNewTokens ${maxNewTokens}`;
    queued.forEach((g, i) => {
      assert.deepEqual(g.tokens, together[i]!.tokens, `${shape}, sequence ${i}`);
      g.logprobs.forEach((lp, j) => assert.ok(Math.abs(lp - together[i]!.logprobs[j]!) <= 1e-4, `${shape}, sequence ${i} token ${j}`));
    });
  }
  await engine.close();
});
