import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CounterRng } from '../../../activities/common/rng.js';
import { parameterShapes, parseModelConfig, type ModelConfig } from '../../../activities/model/config.js';
import { checkParameters, loadHfModel, saveHfModel, ModelDirError } from '../../../activities/model/hf.js';
import { serializeSafetensors, writeSafetensorsFile, type Tensor, type TensorMap } from '../../../activities/model/safetensors.js';
import { CharTokenizer } from '../../../activities/model/tokenizer.js';

const tiny = {
  llama: {
    model_type: 'llama',
    vocab_size: 20,
    hidden_size: 8,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    intermediate_size: 12,
    bos_token_id: 1,
    eos_token_id: 2,
    custom_field: 'kept',
  },
  qwen2: {
    model_type: 'qwen2',
    vocab_size: 20,
    hidden_size: 8,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    intermediate_size: 12,
    tie_word_embeddings: true,
    eos_token_id: [2, 5],
  },
  gpt2: { model_type: 'gpt2', vocab_size: 20, n_embd: 8, n_layer: 2, n_head: 2, n_positions: 16, bos_token_id: 1, eos_token_id: 2 },
};

/** Seeded random weights for every parameter of a config. */
function randomWeights(config: ModelConfig, seed = 7): TensorMap {
  const out: TensorMap = new Map();
  for (const { name, shape } of parameterShapes(config)) {
    const rng = new CounterRng(seed, name);
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    for (let i = 0; i < data.length; i++) data[i] = 0.02 * rng.normal(i);
    out.set(name, { dtype: 'F32', shape, data });
  }
  return out;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'durable-rl-hf-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function digests(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const f of (await readdir(dir)).sort())
    out[f] = createHash('sha256')
      .update(await readFile(path.join(dir, f)))
      .digest('hex');
  return out;
}

function toBf16(t: Tensor): Uint8Array {
  const bits = new Uint32Array((t.data as Float32Array).buffer.slice(0));
  const out = new Uint16Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i]! >>> 16; // truncation: exact for the test's values
  return new Uint8Array(out.buffer);
}

test('save → load round-trips config, weights and tokenizer; re-saving gives identical bytes', async () => {
  for (const [kind, raw] of Object.entries(tiny)) {
    await withDir(async (dir) => {
      const config = parseModelConfig(raw);
      const tensors = randomWeights(config);
      const tokenizer = CharTokenizer.fromAlphabet('abcdefghijklm');
      const files = await saveHfModel(path.join(dir, 'a'), { config, tensors, tokenizer, rawConfig: raw });
      assert.deepEqual(
        files.sort(),
        ['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'],
        kind,
      );
      const loaded = await loadHfModel(path.join(dir, 'a'));
      assert.deepEqual(loaded.config, config, kind);
      assert.equal(loaded.rawConfig.model_type, kind);
      assert.deepEqual(
        [...loaded.tensors.keys()],
        parameterShapes(config).map((p) => p.name),
      );
      for (const [name, t] of tensors) assert.deepEqual(loaded.tensors.get(name), t, `${kind} ${name}`);
      assert.equal(loaded.tokenizer?.kind, 'char');
      assert.deepEqual(loaded.tokenizer!.encode('abc<eos>'), tokenizer.encode('abc<eos>'));
      assert.deepEqual(loaded.tokenizer!.eosIds, [...new Set([2, ...config.eosTokenIds])]);
      await saveHfModel(path.join(dir, 'b'), loaded);
      assert.deepEqual(await digests(path.join(dir, 'b')), await digests(path.join(dir, 'a')), kind);
    });
  }
  // Unknown config.json fields survive the round trip.
  await withDir(async (dir) => {
    const config = parseModelConfig(tiny.llama);
    await saveHfModel(dir, { config, tensors: randomWeights(config), rawConfig: { ...tiny.llama, torch_dtype: 'bfloat16' } });
    const back = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8'));
    assert.equal(back.custom_field, 'kept');
    assert.equal(back.torch_dtype, 'float32'); // the weights written are float32
    assert.deepEqual(back.architectures, ['LlamaForCausalLM']);
  });
});

test('sharded export loads back', async () => {
  await withDir(async (dir) => {
    const config = parseModelConfig(tiny.llama);
    const tensors = randomWeights(config);
    const files = await saveHfModel(dir, { config, tensors }, { maxShardBytes: 600 });
    assert.ok(files.includes('model.safetensors.index.json'));
    assert.ok(files.filter((f) => f.startsWith('model-')).length > 1);
    const loaded = await loadHfModel(dir);
    assert.equal(loaded.tokenizer, null);
    for (const [name, t] of tensors) assert.deepEqual(loaded.tensors.get(name)!.data, t.data);
  });
});

test('a Hub-style GPT-2 checkpoint (bare names, mask buffers, BF16, stored tied head) loads', async () => {
  await withDir(async (dir) => {
    const config = parseModelConfig(tiny.gpt2);
    const weights = randomWeights(config);
    // Bare GPT2Model names, causal-mask buffers and a stored copy of the tied head, as old checkpoints have.
    const header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> = {};
    const chunks: Uint8Array[] = [];
    let offset = 0;
    const add = (name: string, shape: number[], bytes: Uint8Array, dtype: string) => {
      header[name] = { dtype, shape, data_offsets: [offset, offset + bytes.length] };
      chunks.push(bytes);
      offset += bytes.length;
    };
    for (const [name, t] of weights) add(name.replace(/^transformer\./, ''), t.shape, toBf16(t), 'BF16');
    add('h.0.attn.bias', [1, 1, 16, 16], new Uint8Array(16 * 16 * 4), 'F32');
    add('h.1.attn.masked_bias', [], new Uint8Array(4), 'F32');
    add('lm_head.weight', [20, 8], toBf16(weights.get('transformer.wte.weight')!), 'BF16');
    const json = new TextEncoder().encode(JSON.stringify(header));
    const file = new Uint8Array(8 + json.length + offset);
    new DataView(file.buffer).setBigUint64(0, BigInt(json.length), true);
    file.set(json, 8);
    let pos = 8 + json.length;
    for (const c of chunks) {
      file.set(c, pos);
      pos += c.length;
    }
    await writeFile(path.join(dir, 'model.safetensors'), file);
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(tiny.gpt2));
    const loaded = await loadHfModel(dir);
    assert.deepEqual(
      [...loaded.tensors.keys()],
      parameterShapes(config).map((p) => p.name),
    );
    const wte = loaded.tensors.get('transformer.wte.weight')!.data as Float32Array;
    const orig = weights.get('transformer.wte.weight')!.data as Float32Array;
    for (let i = 0; i < wte.length; i++) assert.ok(Math.abs(wte[i]! - orig[i]!) <= Math.abs(orig[i]!) * 2 ** -7, `bf16 value ${i}`);
  });
});

test('weights that do not fit the config are named: missing, unexpected, wrong shape, wrong dtype', async () => {
  const config = parseModelConfig(tiny.llama);
  const tensors = randomWeights(config);
  tensors.delete('model.layers.1.mlp.up_proj.weight');
  tensors.set('model.layers.2.mlp.up_proj.weight', { dtype: 'F32', shape: [12, 8], data: new Float32Array(96) });
  tensors.set('model.norm.weight', { dtype: 'F32', shape: [9], data: new Float32Array(9) });
  tensors.set('lm_head.weight', { dtype: 'I64', shape: [20, 8], data: new BigInt64Array(160) });
  await withDir(async (dir) => {
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(tiny.llama));
    await writeSafetensorsFile(path.join(dir, 'model.safetensors'), tensors);
    await assert.rejects(loadHfModel(dir), (e: unknown) => {
      assert.ok(e instanceof ModelDirError);
      assert.match(e.message, new RegExp(`^${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: weights do not match config.json`));
      assert.match(e.message, /missing tensor "model.layers.1.mlp.up_proj.weight" \(expected shape \[12,8\]\)/);
      assert.match(e.message, /unexpected tensor "model.layers.2.mlp.up_proj.weight"/);
      assert.match(e.message, /tensor "model.norm.weight" has shape \[9\], expected \[8\]/);
      assert.match(e.message, /tensor "lm_head.weight" has dtype I64, expected a float tensor/);
      return true;
    });
  });
  // Tied heads may omit lm_head; untied ones may not.
  const tied = parseModelConfig(tiny.qwen2);
  assert.equal(checkParameters(tied, randomWeights(tied), 'x').has('lm_head.weight'), false);
  const untied = randomWeights(config);
  untied.delete('lm_head.weight');
  assert.throws(() => checkParameters(config, untied, 'x'), /missing tensor "lm_head.weight"/);
  // Export refuses to write a directory that would not load.
  await withDir(async (dir) => {
    await assert.rejects(saveHfModel(dir, { config, tensors: untied }), /export to .*missing tensor "lm_head.weight"/);
    assert.deepEqual(await readdir(dir), []);
  });
});

test('directory-level problems are named', async () => {
  await withDir(async (dir) => {
    await assert.rejects(loadHfModel(dir), /config.json does not exist/);
    await writeFile(path.join(dir, 'config.json'), '{"model_type": "llama",');
    await assert.rejects(loadHfModel(dir), /config.json: not valid JSON/);
    await writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...tiny.llama, model_type: 't5' }));
    await assert.rejects(loadHfModel(dir), /model_type: unsupported model_type "t5"/);
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(tiny.llama));
    await assert.rejects(loadHfModel(dir), /no model.safetensors and no model.safetensors.index.json/);
    const config = parseModelConfig(tiny.llama);
    await writeFile(path.join(dir, 'model.safetensors'), serializeSafetensors(randomWeights(config)));
    await assert.rejects(loadHfModel(dir, { requireTokenizer: true }), /tokenizer.json does not exist/);
    const big = CharTokenizer.fromAlphabet('abcdefghijklmnopqrstuvwxyz');
    await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(big.toTokenizerJson()));
    await assert.rejects(loadHfModel(dir), /tokenizer has 29 ids but config.json vocab_size is 20/);
  });
});
