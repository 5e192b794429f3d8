/**
 * Bad input to the engine is rejected before any work with an error naming the tensor or field:
 * unknown architectures, missing / extra / misshapen / wrongly typed weights, token ids out of the
 * vocabulary, ragged or mismatched batches, bad loss masks and loss inputs, bad sampler output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseModelConfig } from '../../../activities/model/config.js';
import { ModelEngine, initTrainState } from '../../../activities/model/engine.js';
import { ModelInputError } from '../../../activities/model/engine-types.js';
import { initWeights } from '../../../activities/model/init.js';
import { sftLoss } from '../../../activities/model/losses.js';
import { generate } from '../../../activities/model/generate.js';
import type { WeightTensor } from '../../../activities/model/graphs/common.js';

const cfg = parseModelConfig({ model_type: 'gpt2', vocab_size: 10, n_embd: 8, n_layer: 1, n_head: 2, n_positions: 8 });

test('an unknown architecture is rejected naming model_type and the supported ones', () => {
  assert.throws(
    () => new ModelEngine({ model_type: 'mamba', vocab_size: 10 }),
    /model_type: unsupported model_type "mamba"; supported: gpt2, llama, qwen2/,
  );
});

test('bad engine options name the field', () => {
  assert.throws(() => new ModelEngine(cfg, { threads: -1 }), /threads/);
  assert.throws(() => new ModelEngine(cfg, { optimization: 'max' as 'all' }), /optimization/);
});

test('weights: missing, unexpected, misshapen and non-float32 tensors are named', () => {
  const engine = new ModelEngine(cfg);
  const good = initWeights(cfg, 1);
  const missing = new Map(good);
  missing.delete('transformer.h.0.attn.c_attn.weight');
  assert.throws(
    () => engine.setWeights(missing, 'v'),
    (e: Error) => e instanceof ModelInputError && /missing transformer\.h\.0\.attn\.c_attn\.weight \[8, 24\]/.test(e.message),
  );
  const extra = new Map(good);
  extra.set('transformer.h.1.ln_1.weight', { shape: [8], data: new Float32Array(8) });
  assert.throws(() => engine.setWeights(extra, 'v'), /unexpected tensor transformer\.h\.1\.ln_1\.weight/);
  const shaped = new Map(good);
  shaped.set('transformer.wpe.weight', { shape: [9, 8], data: new Float32Array(72) });
  assert.throws(() => engine.setWeights(shaped, 'v'), /transformer\.wpe\.weight has shape \[9, 8\], expected \[8, 8\]/);
  const typed = new Map<string, WeightTensor>(good);
  typed.set('transformer.ln_f.bias', { shape: [8], data: new Float64Array(8) as unknown as Float32Array });
  assert.throws(() => engine.setWeights(typed, 'v'), /transformer\.ln_f\.bias must be float32 \(Float32Array\), got Float64Array/);
  assert.equal(engine.weightsVersion, '', 'nothing was installed');
});

test('score: no weights, out-of-vocabulary ids, ragged rows and mismatched masks are named', async () => {
  const engine = new ModelEngine(cfg);
  await assert.rejects(engine.score({ ids: [[1, 2]] }), /no weights installed: call setWeights/);
  engine.setWeights(initWeights(cfg, 1), 'v1');
  await assert.rejects(
    engine.score({
      ids: [
        [1, 2, 3],
        [4, 10, 1],
      ],
    }),
    /batch\.ids\[1\]\[1\] = 10 is not a token id of this model \(vocab_size 10\)/,
  );
  await assert.rejects(
    engine.score({
      ids: [
        [1, 2, 3],
        [4, -1, 1],
      ],
    }),
    /batch\.ids\[1\]\[1\] = -1/,
  );
  await assert.rejects(
    engine.score({
      ids: [
        [1, 2, 3],
        [4, 5],
      ],
    }),
    /batch\.ids row 1 has 2 tokens, row 0 has 3/,
  );
  await assert.rejects(engine.score({ ids: [[1, 2, 3]], attentionMask: [[1, 1]] }), /attentionMask row 0 has 2 entries, ids rows have 3/);
  await assert.rejects(engine.score({ ids: [[1, 2, 3]], attentionMask: [[1, 2, 1]] }), /attentionMask row 0 must hold only 0 and 1/);
  await assert.rejects(engine.score({ ids: [[1, 2, 3, 4, 5, 6, 7, 8, 9]] }), /9 tokens exceed n_positions 8/);
  await engine.close();
});

test('trainStep: bad loss masks, missing or unknown loss inputs, bad state and lr are named', async () => {
  const engine = new ModelEngine(cfg);
  const state = initTrainState(cfg, initWeights(cfg, 1));
  const ids = [
    [1, 2, 3],
    [4, 5, 6],
  ];
  const opts = { loss: sftLoss(), lr: 1e-3 };
  await assert.rejects(engine.trainStep(state, { ids, lossMask: [[0, 1, 1]] }, opts), /batch 0\.lossMask must be 2 rows of 3 numbers/);
  await assert.rejects(
    engine.trainStep(
      state,
      {
        ids,
        lossMask: [
          [1, 1, 1],
          [0, 1, 1],
        ],
      },
      opts,
    ),
    /lossMask\[0\]\[0\] must be 0/,
  );
  await assert.rejects(
    engine.trainStep(
      state,
      {
        ids,
        attentionMask: [
          [1, 1, 0],
          [1, 1, 1],
        ],
        lossMask: [
          [0, 1, 1],
          [0, 1, 1],
        ],
      },
      opts,
    ),
    /lossMask\[0\]\[2\] marks a padding position/,
  );
  await assert.rejects(
    engine.trainStep(
      state,
      {
        ids,
        lossMask: [
          [0, 1, 1],
          [0, 1, 1],
        ],
        extra: { advantages: [1, 2] },
      },
      opts,
    ),
    /extra\.advantages is not an input of this loss/,
  );
  await assert.rejects(
    engine.trainStep(
      state,
      {
        ids,
        lossMask: [
          [0, 1, 1],
          [0, 1, 1],
        ],
      },
      { ...opts, lr: Number.NaN },
    ),
    /lr must be a finite number/,
  );
  const broken = { ...state, adamM: new Map(state.adamM) };
  broken.adamM.delete('transformer.wte.weight');
  await assert.rejects(
    engine.trainStep(
      broken,
      {
        ids,
        lossMask: [
          [0, 1, 1],
          [0, 1, 1],
        ],
      },
      opts,
    ),
    /train state adamM do not fit gpt2.*missing transformer\.wte\.weight/,
  );
  await assert.rejects(
    engine.trainStep(
      state,
      {
        ids,
        lossMask: [
          [0, 1, 1],
          [0, 1, 1],
        ],
      },
      { ...opts, optimizer: { beta1: 2 } },
    ),
    /optimizer options: beta1/,
  );
  await engine.close();
});

test('generate: empty prompts, too long requests and invalid picked tokens are named', async () => {
  const engine = new ModelEngine(cfg);
  engine.setWeights(initWeights(cfg, 1), 'v1');
  const pick = () => 1;
  await assert.rejects(generate(engine, [[1], []], { maxNewTokens: 2, pickToken: pick }), /prompt 1 is empty/);
  await assert.rejects(
    generate(engine, [[1, 2, 3]], { maxNewTokens: 6, pickToken: pick }),
    /prompt \(3 tokens\) \+ maxNewTokens \(6\) exceeds n_positions 8/,
  );
  await assert.rejects(generate(engine, [[1, 12]], { maxNewTokens: 2, pickToken: pick }), /prompts\.ids\[0\]\[1\] = 12 is not a token id/);
  await assert.rejects(
    generate(engine, [[1, 2]], { maxNewTokens: 2, pickToken: () => 10 }),
    /pickToken returned 10 for sequence 0 at position 0/,
  );
  await engine.close();
});
