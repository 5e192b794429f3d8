/**
 * LoRA held to PEFT itself (issue 12 §1). For each llama-family fixture of test/fixtures/hf, PEFT
 * 0.21.2 wrote `lora/`: an adapter of rank 4, alpha 8 on all seven linear modules of every block,
 * with seeded nonzero A and B, and what PEFT computes with it on the fixture's batch in float64
 * (bench/hf-fixtures/make_fixtures.py). The engine, given the base weights and the adapter read
 * from PEFT's own files, must match it through score, decode and trainStep: logprobs within 1e-5,
 * loss within 1e-5 relative, the adapter's gradient norms within 1e-4 relative — with AdamW state
 * for the adapter alone and the base weights untouched. With B = 0 (the adapter switched off, as
 * PEFT initialises it) the model is the base model.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parameterShapes, parseModelConfig, trainableNames, withLora, type ModelConfig } from '../../../activities/model/config.js';
import { checkParameters } from '../../../activities/model/hf.js';
import { readPeftAdapter, writePeftAdapter } from '../../../activities/model/peft.js';
import { PEFT_PREFIX } from '../../../activities/model/lora.js';
import { readCheckpointDir } from '../../../activities/model/safetensors.js';
import { ModelEngine, initTrainState } from '../../../activities/model/engine.js';
import { generate } from '../../../activities/model/generate.js';
import { sftLoss } from '../../../activities/model/losses.js';
import type { WeightTensor } from '../../../activities/model/graphs/common.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/hf');
const LORA_FIXTURES = ['llama', 'mistral', 'qwen2', 'qwen3'];

interface Batch {
  input_ids: number[][];
  attention_mask: number[][];
  loss_mask: number[][];
}
interface Expected {
  logprobs: number[][];
  loss: number;
  grad_norm: number;
  grad_norms: Record<string, number>;
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-30);
const norm = (x: Float32Array) => Math.sqrt(x.reduce((s, v) => s + v * v, 0));
const f32 = (m: Map<string, { shape: number[]; data: unknown }>) =>
  new Map([...m].map(([k, t]) => [k, { shape: t.shape, data: t.data as Float32Array }] as [string, WeightTensor]));

async function loraFixture(
  name: string,
): Promise<{ cfg: ModelConfig; weights: Map<string, WeightTensor>; batch: Batch; exp: Expected; base: Expected }> {
  const dir = path.join(FIXTURES, name);
  const base = parseModelConfig(JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')));
  const adapter = await readPeftAdapter(path.join(dir, 'lora'));
  const cfg = withLora(base, adapter.lora);
  const contents = await readCheckpointDir(dir);
  const tensors = new Map([...contents.tensors, ...adapter.tensors]);
  const weights = f32(checkParameters(cfg, tensors, dir, contents.sourceDtypes));
  const baseExp = JSON.parse(readFileSync(path.join(dir, 'expected.json'), 'utf8')) as Expected & { batch: Batch };
  const peft = JSON.parse(readFileSync(path.join(dir, 'lora', 'expected.json'), 'utf8')) as Expected;
  // PEFT names the adapter tensors under its base_model.model. prefix, as in adapter_model.safetensors
  const exp = {
    ...peft,
    grad_norms: Object.fromEntries(Object.entries(peft.grad_norms).map(([n, v]) => [n.slice(PEFT_PREFIX.length), v])),
  };
  return { cfg, weights, batch: baseExp.batch, exp, base: baseExp };
}

function maxDiff(logprobs: Float32Array, want: number[][], T: number): number {
  let worst = 0;
  want.forEach((row, b) => row.forEach((v, t) => (worst = Math.max(worst, Math.abs(logprobs[b * T + t]! - v)))));
  return worst;
}

test('a PEFT adapter_config.json reads as the LoRA it describes, and what PEFT cannot mean here is refused by field', async () => {
  const { lora } = await readPeftAdapter(path.join(FIXTURES, 'qwen3', 'lora'));
  assert.deepEqual(lora, { rank: 4, alpha: 8, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] });
  const cfg = withLora(parseModelConfig(JSON.parse(readFileSync(path.join(FIXTURES, 'qwen3', 'config.json'), 'utf8'))), lora);
  const adapters = parameterShapes(cfg).filter((s) => /lora_/.test(s.name));
  assert.equal(adapters.length, 2 * 7 * cfg.layers);
  assert.deepEqual(
    adapters.find((s) => s.name === 'model.layers.0.self_attn.q_proj.lora_A.weight')?.shape,
    [4, cfg.hidden],
    'A is [r, in]',
  );
  assert.deepEqual(adapters.find((s) => s.name === 'model.layers.0.mlp.down_proj.lora_B.weight')?.shape, [cfg.hidden, 4], 'B is [out, r]');
  assert.deepEqual([...trainableNames(cfg)].sort(), adapters.map((s) => s.name).sort(), 'only the adapters train');
  assert.throws(
    () => withLora(parseModelConfig(JSON.parse(readFileSync(path.join(FIXTURES, 'gpt2', 'config.json'), 'utf8'))), { rank: 4 }),
    /lora: LoRA is supported for the llama family/,
  );
});

for (const name of LORA_FIXTURES) {
  test(`${name} with PEFT's LoRA: score, decode and trainStep match PEFT — logprobs 1e-5, loss 1e-5, adapter gradient norms 1e-4`, async () => {
    const { cfg, weights, batch, exp } = await loraFixture(name);
    const engine = new ModelEngine(cfg, { threads: 1 });
    try {
      engine.setWeights(weights, 'lora');
      const T = batch.input_ids[0]!.length;
      const scored = await engine.score({ ids: batch.input_ids, attentionMask: batch.attention_mask });
      const dScore = maxDiff(scored.logprobs, exp.logprobs, T);
      assert.ok(dScore <= 1e-5, `score: max |Δlogprob| ${dScore.toExponential(2)}`);

      // decode: the first three real tokens as the prompt, then forced to the fixture's tokens
      const rows = batch.input_ids.map((ids, b) => ids.filter((_, t) => batch.attention_mask[b]![t] === 1));
      const gens = await generate(
        engine,
        rows.map((r) => r.slice(0, 3)),
        {
          maxNewTokens: Math.max(...rows.map((r) => r.length)) - 3,
          pickToken: (_l, seq, pos) => rows[seq]![Math.min(3 + pos, rows[seq]!.length - 1)]!,
          stopTokenIds: [],
        },
      );
      let dDecode = 0;
      gens.forEach((g, b) => {
        const pad = T - rows[b]!.length;
        for (let pos = 0; 3 + pos < rows[b]!.length; pos++)
          dDecode = Math.max(dDecode, Math.abs(g.logprobs[pos]! - exp.logprobs[b]![pad + 3 + pos]!));
      });
      assert.ok(dDecode <= 1e-5, `decode: max |Δlogprob| ${dDecode.toExponential(2)}`);

      // trainStep: beta1 0 and lr 0 make the new first moment the gradient; only the adapters have one
      const state = initTrainState(cfg, weights);
      assert.deepEqual(
        [...state.adamM.keys()].sort(),
        Object.keys(exp.grad_norms).sort(),
        'AdamW state for exactly the adapter tensors PEFT trains',
      );
      const r = await engine.trainStep(
        state,
        { ids: batch.input_ids, attentionMask: batch.attention_mask, lossMask: batch.loss_mask },
        { loss: sftLoss(), lr: 0, optimizer: { beta1: 0, maxGradNorm: 0, weightDecay: 0 } },
      );
      assert.ok(rel(r.metrics.loss!, exp.loss) <= 1e-5, `loss ${r.metrics.loss} vs PEFT ${exp.loss}`);
      assert.ok(rel(r.metrics.grad_norm!, exp.grad_norm) <= 1e-4, `grad_norm ${r.metrics.grad_norm} vs PEFT ${exp.grad_norm}`);
      for (const [n, want] of Object.entries(exp.grad_norms)) {
        const got = norm(r.state.adamM.get(n)!.data);
        assert.ok(rel(got, want) <= 1e-4, `‖∇${n}‖ ${got} vs PEFT ${want}`);
      }
      for (const [n, w] of weights)
        if (!trainableNames(cfg).has(n)) assert.equal(r.state.params.get(n)!.data, w.data, `${n} is frozen (the same buffer)`);
    } finally {
      await engine.close();
    }
  });
}

test('with B = 0 (the adapter switched off, as PEFT initialises it) the model is the base model, and the adapter round-trips through PEFT files', async () => {
  const { cfg, weights, batch, base } = await loraFixture('qwen3');
  const off = new Map(weights);
  for (const [n, w] of weights) if (n.endsWith('lora_B.weight')) off.set(n, { shape: w.shape, data: new Float32Array(w.data.length) });
  const engine = new ModelEngine(cfg, { threads: 1 });
  try {
    engine.setWeights(off, 'off');
    const { logprobs } = await engine.score({ ids: batch.input_ids, attentionMask: batch.attention_mask });
    assert.ok(maxDiff(logprobs, base.logprobs, batch.input_ids[0]!.length) <= 1e-5, 'the base model');
  } finally {
    await engine.close();
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'peft-'));
  try {
    const adapters = new Map(
      [...weights].filter(([n]) => n.includes('lora_')).map(([n, w]) => [n, { dtype: 'F32' as const, shape: w.shape, data: w.data }]),
    );
    await writePeftAdapter(dir, cfg.lora!, adapters, { nameOrPath: 'test/fixtures/hf/qwen3', hfClass: 'Qwen3ForCausalLM' });
    const back = await readPeftAdapter(dir);
    assert.deepEqual(back.lora, cfg.lora);
    for (const [n, t] of adapters) assert.deepEqual(back.tensors.get(n)!.data, t.data, n);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
