/**
 * Peak RSS of one trainStep graph variant (numbers only), for the memory table in bench/README.md:
 *
 *   npx tsx bench/train-memory.ts [--no-recompute] [--cse] [--layers 8] [--batch 8] [--seq 512] [--steps 2] [--session '{"enableMemPattern":false}']
 *
 * Builds the trainStep graph of the bench model (bench/engine.ts) with the SFT loss, runs it
 * `--steps` times in a plain onnxruntime session (memory arena off, as the engine's training
 * sessions) and prints one JSON line: step times, loss, node count and peak RSS in MiB.
 * `--no-recompute` builds without activation recomputation; `--cse` leaves onnxruntime's
 * common-subexpression elimination on (it merges the recomputed copies back); `--session` adds
 * onnxruntime session options. Run one variant per process: peak RSS is per process.
 */
import ort from 'onnxruntime-node';
import { parseModelConfig, parameterShapes } from '../activities/model/config.js';
import { TRAIN_SESSION_CONFIG, buildTrainGraph } from '../activities/model/graphs/train.js';
import { initWeights } from '../activities/model/init.js';
import { sftLoss } from '../activities/model/losses.js';
import { CounterRng } from '../activities/common/rng.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => (args.includes(name) ? args[args.indexOf(name) + 1]! : def);
const recompute = !args.includes('--no-recompute');
const cse = args.includes('--cse');
const layers = Number(arg('--layers', '8'));
const B = Number(arg('--batch', '8'));
const T = Number(arg('--seq', '512'));
const steps = Number(arg('--steps', '2'));
const extraSession = JSON.parse(arg('--session', '{}')) as ort.InferenceSession.SessionOptions;

const cfg = parseModelConfig({
  model_type: 'llama',
  vocab_size: 8192,
  hidden_size: 512,
  num_hidden_layers: layers,
  num_attention_heads: 8,
  num_key_value_heads: 2,
  intermediate_size: 1408,
  max_position_embeddings: Math.max(1024, T),
});
const weights = initWeights(cfg, 1);
const tg = buildTrainGraph(cfg, 'trainStep', sftLoss(), {}, { recompute });
const session = await ort.InferenceSession.create(tg.graph.toBytes(), {
  enableCpuMemArena: false,
  ...(cse ? {} : { extra: TRAIN_SESSION_CONFIG }),
  ...extraSession,
});
const feeds: Record<string, ort.Tensor> = {};
for (const s of parameterShapes(cfg)) {
  const n = s.shape.reduce((a, b) => a * b, 1);
  feeds[s.name] = new ort.Tensor('float32', weights.get(s.name)!.data, s.shape);
  feeds[`adam_m.${s.name}`] = new ort.Tensor('float32', new Float32Array(n), s.shape);
  feeds[`adam_v.${s.name}`] = new ort.Tensor('float32', new Float32Array(n), s.shape);
}
const rng = new CounterRng(2, 'train-memory');
feeds.input_ids = new ort.Tensor(
  'int64',
  BigInt64Array.from({ length: B * T }, (_, i) => BigInt(rng.int(i, cfg.vocabSize))),
  [B, T],
);
feeds.attention_mask = new ort.Tensor('int64', new BigInt64Array(B * T).fill(1n), [B, T]);
feeds.loss_mask = new ort.Tensor(
  'float32',
  Float32Array.from({ length: B * T }, (_, i) => (i % T === 0 ? 0 : 1)),
  [B, T],
);
feeds.step = new ort.Tensor('int64', BigInt64Array.of(0n), []);
feeds.lr = new ort.Tensor('float32', Float32Array.of(1e-4), []);
feeds.temperature = new ort.Tensor('float32', Float32Array.of(1), []);
const times: number[] = [];
let loss = 0;
for (let i = 0; i < steps; i++) {
  const t0 = performance.now();
  const r = await session.run(feeds);
  times.push(+((performance.now() - t0) / 1000).toFixed(2));
  loss = Number(r.loss!.data[0]);
}
await session.release();
process.stdout.write(
  JSON.stringify({
    recompute,
    cse,
    layers,
    batch: B,
    seq: T,
    session: extraSession,
    nodes: tg.graph.nodes.length,
    stepS: times,
    loss,
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
  }) + '\n',
);
