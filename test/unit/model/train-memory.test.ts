/**
 * The memory-saving forms of the training graph: the fused token-logprob op (its gradient by
 * finite differences) and selective activation recomputation (same gradients as without it; the
 * recomputed copies survive onnxruntime's graph optimisation in a training session).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';
import { parseModelConfig, parameterShapes } from '../../../activities/model/config.js';
import { Graph } from '../../../activities/model/graph.js';
import { TRAIN_SESSION_CONFIG, buildTrainGraph, fusedTokenLogprobs } from '../../../activities/model/graphs/train.js';
import { initWeights } from '../../../activities/model/init.js';
import { sftLoss } from '../../../activities/model/losses.js';
import { checkGrad } from './gradcheck.js';

test('fused token logprobs: value and gradient match finite differences (targets repeat, vocab 5)', () =>
  checkGrad({
    name: 'fused-token-logprobs',
    inputs: [
      { name: 'logits', shape: [2, 3, 5] },
      { name: 'ids', shape: [2, 4], kind: 'int', high: 5, values: [0, 4, 4, 1, 2, 2, 0, 2] },
    ],
    build: (logits, ids) => fusedTokenLogprobs(logits!, ids!),
  }));

test('fused token logprobs stay finite and exact for logits in the hundreds (log-sum-exp is max-shifted)', async () => {
  const g = new Graph({ name: 'lse', tape: true });
  const logits = g.input('logits', 'float32', [1, 2, 3]);
  const ids = g.input('ids', 'int64', [1, 3]);
  g.output(fusedTokenLogprobs(logits, ids), 'logprobs');
  const s = await ort.InferenceSession.create(g.toBytes(), { intraOpNumThreads: 1 });
  const r = await s.run({
    logits: new ort.Tensor('float32', Float32Array.from([1000, 0, -5, -1000, 200, 199]), [1, 2, 3]),
    ids: new ort.Tensor('int64', BigInt64Array.from([1n, 0n, 2n]), [1, 3]),
  });
  const lp = r.logprobs!.data as Float32Array;
  assert.equal(lp[0], 0, 'entry 0 has no prediction');
  assert.equal(lp[1], 0, 'log p of the token with logit 1000 against 0 and -5');
  assert.ok(Math.abs(lp[2]! - (-1 - Math.log1p(Math.exp(-1)))) < 1e-5, `199 against 200: ${lp[2]}`);
});

const cfg = parseModelConfig({
  model_type: 'llama',
  vocab_size: 32,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 24,
});
const B = 3;
const T = 6;

function feeds(): Record<string, ort.Tensor> {
  const w = initWeights(cfg, 3, { std: 0.2 });
  const f: Record<string, ort.Tensor> = {};
  for (const s of parameterShapes(cfg)) {
    f[s.name] = new ort.Tensor('float32', w.get(s.name)!.data, s.shape);
    f[`acc.${s.name}`] = new ort.Tensor('float32', new Float32Array(s.shape.reduce((a, b) => a * b, 1)), s.shape);
  }
  f.input_ids = new ort.Tensor(
    'int64',
    BigInt64Array.from({ length: B * T }, (_, i) => BigInt((i * 7 + 3) % 32)),
    [B, T],
  );
  // row 2 is left-padded by two tokens
  f.attention_mask = new ort.Tensor(
    'int64',
    BigInt64Array.from({ length: B * T }, (_, i) => (i >= 2 * T && i < 2 * T + 2 ? 0n : 1n)),
    [B, T],
  );
  f.loss_mask = new ort.Tensor(
    'float32',
    Float32Array.from({ length: B * T }, (_, i) => (i % T === 0 || (i >= 2 * T && i < 2 * T + 3) ? 0 : 1)),
    [B, T],
  );
  // a sampling temperature other than 1: its Div sits between the head and the logprobs
  f.temperature = new ort.Tensor('float32', Float32Array.of(0.7), []);
  return f;
}

test('activation recomputation: clones the cheap values the backward reads, gradients unchanged', async () => {
  const plain = buildTrainGraph(cfg, 'grad', sftLoss(), {}, { recompute: false }).graph;
  const remat = buildTrainGraph(cfg, 'grad', sftLoss(), {}, { recompute: true }).graph;
  const clones = remat.nodes.filter((n) => n.name.startsWith('remat/'));
  const types = new Set(clones.map((n) => n.opType));
  for (const t of ['Sigmoid', 'Mul', 'Div', 'Softmax', 'MatMul'])
    assert.ok(types.has(t), `a ${t} is recomputed (SwiGLU, RMSNorm, attention scores and probabilities)`);
  assert.equal(remat.nodes.length, plain.nodes.length + clones.length, 'recomputation only adds clones');
  const so = { intraOpNumThreads: 1, extra: TRAIN_SESSION_CONFIG };
  const f = feeds();
  const a = await (await ort.InferenceSession.create(plain.toBytes(), so)).run(f);
  const b = await (await ort.InferenceSession.create(remat.toBytes(), so)).run(f);
  assert.equal(b.loss!.data[0], a.loss!.data[0]);
  for (const s of parameterShapes(cfg)) {
    const x = a[`new.acc.${s.name}`]!.data as Float32Array;
    const y = b[`new.acc.${s.name}`]!.data as Float32Array;
    const scale = Math.max(...x.map(Math.abs));
    assert.ok(scale > 0, `${s.name} has a non-zero gradient`);
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i]! - y[i]!) <= 1e-5 * scale, `${s.name}[${i}]: ${y[i]} vs ${x[i]}`);
  }
});

test('activation recomputation: the clones survive onnxruntime optimisation only with CSE disabled (TRAIN_SESSION_CONFIG)', async () => {
  const graph = buildTrainGraph(cfg, 'trainStep', sftLoss()).graph;
  const clones = graph.nodes.filter((n) => n.name.startsWith('remat/')).length;
  const dir = mkdtempSync(join(tmpdir(), 'remat-'));
  try {
    const kept = async (extra: Record<string, unknown> | undefined): Promise<number> => {
      const path = join(dir, `opt-${extra ? 'train' : 'default'}.onnx`);
      const s = await ort.InferenceSession.create(graph.toBytes(), {
        intraOpNumThreads: 1,
        optimizedModelFilePath: path,
        ...(extra ? { extra } : {}),
      });
      await s.release();
      return onnxProto.onnx.ModelProto.decode(readFileSync(path)).graph!.node!.filter((n) => n.name?.startsWith('remat/')).length;
    };
    const withConfig = await kept(TRAIN_SESSION_CONFIG);
    const withoutConfig = await kept(undefined);
    assert.ok(withConfig >= 0.8 * clones, `most of the ${clones} recomputed nodes stay in the optimised graph (${withConfig})`);
    assert.ok(withoutConfig < withConfig / 2, `default CSE merges them back (${withoutConfig} left)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
