/**
 * Export for serving: the decode graph as a standalone .onnx file (self-contained or with
 * external data) that a fresh, plain onnxruntime session loads by path and that computes the same
 * logits and KV-cache chunks as the engine's decode session, prefill and a cached step; the JSON
 * sidecar names exactly the session's inputs and outputs; `exportModel` writes a loadable HF
 * directory beside it; bad weights are rejected by name.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { parseModelConfig, type ModelConfig } from '../../../activities/model/config.js';
import { ModelEngine } from '../../../activities/model/engine.js';
import { exportDecodeOnnx, exportModel, type DecodeSidecar } from '../../../activities/model/export.js';
import { loadHfModel } from '../../../activities/model/hf.js';
import { initWeights } from '../../../activities/model/init.js';
import { CharTokenizer } from '../../../activities/model/tokenizer.js';

const cfg = parseModelConfig({
  model_type: 'llama',
  vocab_size: 24,
  hidden_size: 16,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 32,
  eos_token_id: [2, 5],
  bos_token_id: 1,
});
const weights = initWeights(cfg, 11, { std: 0.3 });
const hd = cfg.headDim;
type Weights = typeof weights;

function i64(rows: number[][]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0]!.length]);
}

/** Runs prefill (row 1 left-padded) and one cached step on two sessions; checks every output agrees. */
async function sameAsEngine(exported: ort.InferenceSession, c: ModelConfig = cfg, w: Weights = weights): Promise<void> {
  const engine = new ModelEngine(c, { threads: 1 });
  engine.setWeights(w, 'v1');
  const reference = await engine.decodeSession();
  const empty = new ort.Tensor('float32', new Float32Array(0), [2, c.kvHeads, 0, c.headDim]);
  const prefill: Record<string, ort.Tensor> = {
    input_ids: i64([
      [1, 7, 9, 3],
      [0, 0, 1, 4],
    ]),
    attention_mask: i64([
      [1, 1, 1, 1],
      [0, 0, 1, 1],
    ]),
  };
  for (let l = 0; l < c.layers; l++) prefill[`past.${l}.key`] = prefill[`past.${l}.value`] = empty;
  const check = (a: ort.InferenceSession.OnnxValueMapType, b: ort.InferenceSession.OnnxValueMapType, what: string) => {
    for (const name of reference.outputNames) {
      const x = a[name]!.data as Float32Array;
      const y = b[name]!.data as Float32Array;
      assert.deepEqual(b[name]!.dims, a[name]!.dims, `${what} ${name} dims`);
      for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i]! - y[i]!) <= 1e-6, `${what} ${name}[${i}]: ${y[i]} vs ${x[i]}`);
    }
  };
  const r1 = await reference.run(prefill);
  const e1 = await exported.run(prefill);
  check(r1, e1, 'prefill');
  const step: Record<string, ort.Tensor> = {
    input_ids: i64([[11], [12]]),
    attention_mask: i64([
      [1, 1, 1, 1, 1],
      [0, 0, 1, 1, 1],
    ]),
  };
  for (let l = 0; l < c.layers; l++) {
    step[`past.${l}.key`] = r1[`fresh.${l}.key`]!;
    step[`past.${l}.value`] = r1[`fresh.${l}.value`]!;
  }
  check(await reference.run(step), await exported.run(step), 'decode step');
  await engine.close();
}

test('exportModel: a plain InferenceSession.create(path) runs the decode graph with the engine decode logits; sidecar and HF files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'export-'));
  try {
    const tokenizer = new CharTokenizer({
      chars: [...'abcdefghijklmnopqrst'],
      pad: '<pad>',
      bos: '<s>',
      eos: '</s>',
      unk: null,
      addBos: true,
    });
    const files = await exportModel(dir, { config: cfg, weights, tokenizer });
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'decode.onnx', 'decode.json'])
      assert.ok(files.includes(f), `${f} written`);
    assert.ok(!files.includes('decode.onnx.data'), 'a small model is one self-contained file');
    const session = await ort.InferenceSession.create(join(dir, 'decode.onnx'));
    await sameAsEngine(session);

    const sidecar = JSON.parse(readFileSync(join(dir, 'decode.json'), 'utf8')) as DecodeSidecar;
    assert.deepEqual(sidecar.inputs.map((i) => i.name).sort(), [...session.inputNames].sort());
    assert.deepEqual(sidecar.outputs.map((o) => o.name).sort(), [...session.outputNames].sort());
    assert.equal(sidecar.outputs[0]!.name, 'logits');
    assert.deepEqual(sidecar.inputs.find((i) => i.name === 'past.1.value')!.shape, ['batch', cfg.kvHeads, 'past', hd]);
    assert.deepEqual(sidecar.inputs.find((i) => i.name === 'attention_mask')!.shape, ['batch', 'total']);
    assert.deepEqual(
      { layers: sidecar.kvCache.layers, kvHeads: sidecar.kvCache.kvHeads, headDim: sidecar.kvCache.headDim },
      { layers: 2, kvHeads: 2, headDim: hd },
    );
    assert.deepEqual(
      [...sidecar.eosTokenIds].sort((a, b) => a - b),
      [...new Set([2, 5, tokenizer.eosId])].sort((a, b) => a - b),
      'config and tokenizer eos ids',
    );
    assert.equal(sidecar.bosTokenId, 1);
    assert.equal(sidecar.externalData, null);

    const hf = await loadHfModel(dir);
    for (const [name, w] of weights) assert.deepEqual(hf.tensors.get(name)!.data, w.data, `${name} round-trips through the HF directory`);
    assert.equal(hf.tokenizer?.vocabSize, tokenizer.vocabSize);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('exportDecodeOnnx with external data: weights in decode.onnx.data, same logits from a fresh session', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'export-ext-'));
  try {
    const { files, sidecar } = await exportDecodeOnnx(dir, { config: cfg, weights }, { externalDataBytes: 0 });
    assert.deepEqual(files, ['decode.onnx', 'decode.onnx.data', 'decode.json']);
    assert.equal(sidecar.externalData, 'decode.onnx.data');
    const weightBytes = [...weights.values()].reduce((a, w) => a + w.data.byteLength, 0);
    assert.ok(statSync(join(dir, 'decode.onnx.data')).size >= weightBytes, 'every weight is in the data file');
    await exportDecodeOnnx(join(dir, 'inline'), { config: cfg, weights });
    const moved = statSync(join(dir, 'inline', 'decode.onnx')).size - statSync(join(dir, 'decode.onnx')).size;
    assert.ok(moved >= 0.9 * weightBytes, `the weights left the model file (${moved} of ${weightBytes} bytes)`);
    await sameAsEngine(await ort.InferenceSession.create(join(dir, 'decode.onnx')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('GPT-2 (learned positions, tied head): the exported decode graph matches the engine too', async () => {
  const gpt2 = parseModelConfig({ model_type: 'gpt2', vocab_size: 24, n_embd: 16, n_layer: 2, n_head: 4, n_positions: 32 });
  const w = initWeights(gpt2, 12, { std: 0.3 });
  const dir = mkdtempSync(join(tmpdir(), 'export-gpt2-'));
  try {
    await exportDecodeOnnx(dir, { config: gpt2, weights: w });
    await sameAsEngine(await ort.InferenceSession.create(join(dir, 'decode.onnx')), gpt2, w);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('export rejects weights that do not fit the config, naming the tensor', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'export-bad-'));
  try {
    const missing = new Map(weights);
    missing.delete('model.layers.1.mlp.up_proj.weight');
    await assert.rejects(exportDecodeOnnx(dir, { config: cfg, weights: missing }), /model\.layers\.1\.mlp\.up_proj\.weight/);
    await assert.rejects(exportDecodeOnnx(dir, { config: cfg, weights }, { fileName: '../x.onnx' }), /fileName/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
