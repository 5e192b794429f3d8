/**
 * LoRA in a run (issue 12 §1): `model.lora` on a pretrained model (the tiny Qwen3 of
 * test/fixtures/hf). Checkpoint 0 holds the base weights and PEFT-initialised adapters (B = 0);
 * a later checkpoint holds only the adapters and their moments and reads back completed with
 * checkpoint 0's base (the same buffers); the KL reference is the base with the adapters off; the
 * export is the merged model plus a PEFT adapter directory, and the merged model scores what the
 * adapted one does.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { initRun } from '../../../activities/checkpoint/init-run.js';
import { loadReferenceWeights, loadTrainState, loadWeights, writeCheckpoint } from '../../../activities/checkpoint/checkpoint.js';
import { ADAPTER_DIR, exportRun } from '../../../activities/checkpoint/export.js';
import { trainableNames, withLora } from '../../../activities/model/config.js';
import { ModelEngine } from '../../../activities/model/engine.js';
import { loadHfModel } from '../../../activities/model/hf.js';
import { loraScaling } from '../../../activities/model/lora.js';
import { readPeftAdapter } from '../../../activities/model/peft.js';
import { parseSafetensors } from '../../../activities/model/safetensors.js';
import { parseRunConfig } from '../../../activities/run/config.js';
import { loadRun } from '../../../activities/run/resolve.js';
import { checkpointPrefix, MODEL_NAME } from '../../../activities/store/keys.js';
import { commit, readArtifact } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';

const QWEN3 = fileURLToPath(new URL('../../fixtures/hf/qwen3', import.meta.url));
const work = await mkdtemp(join(tmpdir(), 'lora-run-'));
after(() => rm(work, { recursive: true, force: true }));
const storeUri = pathToFileURL(join(work, 'store')).href;
const config = parseRunConfig({
  name: 'lora',
  store: storeUri,
  model: { from: QWEN3, lora: { rank: 4, targets: ['q_proj', 'v_proj', 'up_proj'] } },
  phases: [{ kind: 'sft', steps: 2, batchSize: 2 }],
});

describe('a LoRA run', () => {
  it('checkpoint 0 is the pretrained base plus fresh adapters; a later checkpoint stores only the adapters and reads back whole', async () => {
    await initRun({ storeUri, runId: 'r', config, resumeFrom: null });
    const store = openStore(storeUri);
    try {
      const { run } = await loadRun(store, 'r');
      assert.deepEqual(run.model.lora, { rank: 4, alpha: 8, targets: ['q_proj', 'v_proj', 'up_proj'] });
      const state0 = await loadTrainState(store, 'r', 0);
      const trainable = trainableNames(run.model);
      assert.equal(trainable.size, 2 * 3 * run.model.layers);
      assert.deepEqual([...state0.adamM.keys()].sort(), [...trainable].sort(), 'moments for the adapters only');
      for (const n of trainable)
        if (n.endsWith('lora_B.weight'))
          assert.ok(
            state0.params.get(n)!.data.every((v) => v === 0),
            `${n} starts at 0`,
          );

      // a trained state: the adapters changed, the base the same buffers
      const params = new Map(state0.params);
      for (const n of trainable)
        params.set(n, { shape: params.get(n)!.shape, data: params.get(n)!.data.map((v, i) => v + 0.01 * ((i % 7) - 3)) });
      const state1 = { ...state0, params, step: 1 };
      await commit(store, checkpointPrefix('r', 1), await writeCheckpoint(store, 'r', 1, state1));
      const stored = parseSafetensors(await readArtifact(store, checkpointPrefix('r', 1), MODEL_NAME));
      assert.deepEqual([...stored.tensors.keys()].sort(), [...trainable].sort(), 'checkpoint 1 holds the adapters alone');
      assert.equal(stored.metadata.frozen_from, '0');

      const back = await loadWeights(store, 'r', 1);
      const base = await loadWeights(store, 'r', 0);
      assert.deepEqual([...back.keys()].sort(), [...params.keys()].sort());
      for (const [n, w] of params) assert.deepEqual(back.get(n)!.data, w.data, n);
      for (const [n, w] of back) if (!trainable.has(n)) assert.deepEqual(w.data, base.get(n)!.data, `${n}: checkpoint 0's`);
      const again = await loadTrainState(store, 'r', 1);
      assert.equal(again.step, 1);
      assert.deepEqual([...again.adamM.keys()].sort(), [...trainable].sort());

      // the KL reference: the base, adapters off, whatever checkpoint the phase started at
      const ref = await loadReferenceWeights(store, 'r', 1, run.model);
      for (const [n, w] of ref) {
        if (n.endsWith('lora_B.weight'))
          assert.ok(
            w.data.every((v) => v === 0),
            `${n} off`,
          );
        else if (!trainable.has(n))
          assert.equal(w.data, back.get(n)!.data, `${n}: the same buffer as the policy's (one copy of the base per process)`);
      }
    } finally {
      await store.close();
    }
  });

  it('exports the merged model (W + (alpha/r)·B·A) and a PEFT adapter directory; the merged model scores what the adapted one does', async () => {
    const store = openStore(storeUri);
    try {
      const { run } = await loadRun(store, 'r');
      const dir = join(work, 'export');
      await exportRun(storeUri, 'r', 1, dir);
      const adapted = await loadWeights(store, 'r', 1);
      const merged = await loadHfModel(dir, { requireTokenizer: true });
      assert.deepEqual(merged.config, withLora(run.model, null), 'a plain Qwen3 directory');
      // one element by hand: q_proj of layer 0 at [2, 5]
      const m = 'model.layers.0.self_attn.q_proj';
      const [W, A, B] = [adapted.get(`${m}.weight`)!, adapted.get(`${m}.lora_A.weight`)!, adapted.get(`${m}.lora_B.weight`)!];
      const cols = W.shape[1]!;
      let ba = 0;
      for (let k = 0; k < 4; k++) ba += B.data[2 * 4 + k]! * A.data[k * cols + 5]!;
      assert.ok(
        Math.abs(
          (merged.tensors.get(`${m}.weight`)!.data as Float32Array)[2 * cols + 5]! -
            (W.data[2 * cols + 5]! + loraScaling(run.model.lora!) * ba),
        ) < 1e-6,
      );

      const peft = await readPeftAdapter(join(dir, ADAPTER_DIR));
      assert.deepEqual(peft.lora, run.model.lora);
      const config = JSON.parse(await readFile(join(dir, ADAPTER_DIR, 'adapter_config.json'), 'utf8')) as {
        base_model_name_or_path: string;
      };
      assert.equal(config.base_model_name_or_path, QWEN3, 'the adapter names its base directory');
      for (const [n, t] of peft.tensors) assert.deepEqual(t.data, adapted.get(n)!.data, n);

      const ids = [[5, 9, 40, 77, 120, 3, 64, 200, 11]];
      const attentionMask = [ids[0]!.map(() => 1)];
      const a = new ModelEngine(run.model, { threads: 1 });
      const b = new ModelEngine(merged.config, { threads: 1 });
      try {
        a.setWeights(adapted, 'adapted');
        b.setWeights(new Map([...merged.tensors].map(([n, t]) => [n, { shape: t.shape, data: t.data as Float32Array }])), 'merged');
        const [la, lb] = [await a.score({ ids, attentionMask }), await b.score({ ids, attentionMask })];
        la.logprobs.forEach((v, i) => assert.ok(Math.abs(v - lb.logprobs[i]!) < 1e-5, `token ${i}: ${v} vs ${lb.logprobs[i]}`));
      } finally {
        await a.close();
        await b.close();
      }
    } finally {
      await store.close();
    }
  });
});
