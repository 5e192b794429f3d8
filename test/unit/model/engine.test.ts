/**
 * Engine behaviour: seeded initialisation is bit-reproducible and scaled as documented; sessions
 * are cached per (graph kind, options, weights version) and replaced when weights change; the
 * decode graph can return log-softmax instead of logits.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelConfig, parameterShapes } from '../../../activities/model/config.js';
import { ModelEngine } from '../../../activities/model/engine.js';
import { initWeights } from '../../../activities/model/init.js';
import { generate } from '../../../activities/model/generate.js';
import ort from 'onnxruntime-node';

const cfg = parseModelConfig({ model_type: 'gpt2', vocab_size: 16, n_embd: 16, n_layer: 2, n_head: 2, n_positions: 16 });

test('initWeights is bit-reproducible per seed and follows the GPT-2 scheme', () => {
  const a = initWeights(cfg, 42);
  const b = initWeights(cfg, 42);
  const c = initWeights(cfg, 43);
  assert.deepEqual(
    [...a.keys()],
    parameterShapes(cfg).map((s) => s.name),
  );
  for (const [name, t] of a) {
    assert.deepEqual(Buffer.from(t.data.buffer), Buffer.from(b.get(name)!.data.buffer), `${name} is identical for the same seed`);
  }
  assert.notDeepEqual(a.get('transformer.wte.weight')!.data, c.get('transformer.wte.weight')!.data);
  assert.ok(
    a.get('transformer.h.0.ln_1.weight')!.data.every((v) => v === 1),
    'norm gains are 1',
  );
  assert.ok(
    a.get('transformer.h.0.attn.c_attn.bias')!.data.every((v) => v === 0),
    'biases are 0',
  );
  const std = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
  const wte = std(a.get('transformer.wte.weight')!.data);
  const proj = std(a.get('transformer.h.0.mlp.c_proj.weight')!.data);
  assert.ok(Math.abs(wte - 0.02) < 0.003, `weight std ${wte}`);
  assert.ok(Math.abs(proj - 0.02 / Math.sqrt(4)) < 0.002, `residual projection std ${proj} (0.02 / sqrt(2 * layers))`);
});

test('sessions are cached per kind and weights version, and replaced when the weights change', async () => {
  const engine = new ModelEngine(cfg, { threads: 1 });
  const w1 = initWeights(cfg, 1);
  engine.setWeights(w1, 'v1');
  const batch = { ids: [[1, 2, 3, 4]] };
  const first = await engine.score(batch);
  await engine.score(batch);
  await engine.decodeSession();
  assert.deepEqual(engine.cachedSessions(), ['score:true@v1', 'decode:logits@v1']);
  engine.setWeights(w1, 'v1'); // same tensors, same version: nothing to do
  assert.equal(engine.cachedSessions().length, 2);
  engine.setWeights(initWeights(cfg, 2), 'v2');
  assert.deepEqual(engine.cachedSessions(), [], 'sessions of v1 are released');
  const second = await engine.score(batch);
  assert.notDeepEqual(first.logprobs, second.logprobs, 'the new weights are used');
  assert.deepEqual(engine.cachedSessions(), ['score:true@v2']);
  await engine.close();
});

test('with bakeWeights false one session serves every weights version', async () => {
  const engine = new ModelEngine(cfg, { threads: 1, bakeWeights: false });
  const batch = { ids: [[1, 2, 3, 4]] };
  engine.setWeights(initWeights(cfg, 1), 'v1');
  const first = await engine.score(batch);
  engine.setWeights(initWeights(cfg, 2), 'v2');
  const second = await engine.score(batch);
  assert.deepEqual(engine.cachedSessions(), ['score:true']);
  assert.notDeepEqual(first.logprobs, second.logprobs, 'the new weights are fed');
  await engine.close();
});

test('the decode graph can output next-token logprobs (log-softmax of the logits)', async () => {
  const engine = new ModelEngine(cfg, { threads: 1 });
  engine.setWeights(initWeights(cfg, 3, { std: 0.3 }), 'v');
  const logitsSession = await engine.decodeSession();
  const logprobSession = await engine.decodeSession({ output: 'logprobs' });
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.of(1n, 2n, 3n), [1, 3]),
    attention_mask: new ort.Tensor('int64', BigInt64Array.of(1n, 1n, 1n), [1, 3]),
  };
  for (let l = 0; l < cfg.layers; l++) {
    for (const kv of ['key', 'value'])
      feeds[`past.${l}.${kv}`] = new ort.Tensor('float32', new Float32Array(0), [1, cfg.kvHeads, 0, cfg.headDim]);
  }
  const logits = (await logitsSession.run(feeds)).logits!.data as Float32Array;
  const logprobs = (await logprobSession.run(feeds)).logprobs!.data as Float32Array;
  const max = Math.max(...logits);
  const lse = max + Math.log(logits.reduce((s, v) => s + Math.exp(v - max), 0));
  logits.forEach((v, i) => assert.ok(Math.abs(v - lse - logprobs[i]!) < 1e-5));
  // and generate() reports the same logprob for its first token
  const [gen] = await generate(engine, [[1, 2, 3]], { maxNewTokens: 1, pickToken: () => 7, stopTokenIds: [] });
  assert.ok(Math.abs(gen!.logprobs[0]! - logprobs[7]!) < 1e-5);
  await engine.close();
});
