/**
 * How fast a char model from scratch learns a built-in environment's tagged format by SFT on its
 * gold trajectories (issue 15): the engine alone (no Temporal, no store), batches of gold episodes
 * tokenised as the run tokenises them (run/gold-episode.ts: policy turns in the loss, observations
 * not), and every `--every` steps a teacher-forced probe of held-out items: an episode counts when
 * every policy token has probability above 1/2 given the gold context — then that token is the
 * argmax, so greedy decoding reproduces the whole gold episode (observations follow from the
 * calls). A lower bound on greedy success (greedy may also succeed off the gold path).
 *
 *   npx tsx bench/env-sft.ts calculator --steps 1400
 *   npx tsx bench/env-sft.ts lookup --steps 1000 --hidden 64 --layers 2
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { buildLoss } from '../activities/learner/index.js';
import { parseModelConfig } from '../activities/model/config.js';
import { initTrainState, ModelEngine } from '../activities/model/engine.js';
import { initWeights } from '../activities/model/init.js';
import { CharTokenizer } from '../activities/model/tokenizer.js';
import { environmentByName } from '../activities/env/registry.js';
import { encodeGoldEpisode, type GoldEpisodeRow } from '../activities/run/gold-episode.js';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    steps: { type: 'string', default: '1000' },
    batch: { type: 'string', default: '32' },
    hidden: { type: 'string', default: '64' },
    layers: { type: 'string', default: '2' },
    lr: { type: 'string', default: '3e-3' },
    every: { type: 'string', default: '200' },
    eval: { type: 'string', default: '64' },
    seed: { type: 'string', default: '1' },
  },
});
const envName = positionals[0] ?? 'calculator';
const [steps, batch, hidden, layers, every, evalCount, seed] = ['steps', 'batch', 'hidden', 'layers', 'every', 'eval', 'seed'].map((k) =>
  Number(args[k as keyof typeof args]),
) as [number, number, number, number, number, number, number];
const lr = Number(args.lr);

const env = environmentByName(envName);
const tok = CharTokenizer.fromAlphabet(env.task!.alphabet);
const run = {
  tokenizer: tok,
  pretrained: null,
  encodePrompt: (p: string) => tok.encode(p),
  encodeCompletion: (t: string) => [...tok.encode(t, { addSpecialTokens: false }), tok.eosId],
};
const model = parseModelConfig(
  {
    model_type: 'llama',
    vocab_size: tok.vocabSize,
    hidden_size: hidden,
    num_hidden_layers: layers,
    num_attention_heads: 4,
    intermediate_size: 3 * hidden,
    max_position_embeddings: 8 * Math.ceil((1 + env.task!.maxPromptChars + env.task!.maxEpisodeChars + 1) / 8),
    tie_word_embeddings: true,
    bos_token_id: tok.bosId,
    eos_token_id: tok.eosId,
    pad_token_id: tok.padId,
  },
  'bench model',
);

/** Right-padded batch (pad id, attention and loss mask 0). */
function padded(rows: readonly GoldEpisodeRow[]) {
  const T = Math.max(...rows.map((r) => r.ids.length));
  const fill = <V>(xs: readonly V[], v: V) => [...xs, ...new Array<V>(T - xs.length).fill(v)];
  return {
    ids: rows.map((r) => fill(r.ids, tok.padId)),
    attentionMask: rows.map((r) =>
      fill(
        r.ids.map(() => 1),
        0,
      ),
    ),
    lossMask: rows.map((r) => fill(r.lossMask, 0)),
  };
}

const engine = new ModelEngine(model, { threads: 2 });
let state = initTrainState(model, initWeights(model, seed, { std: 0.02 }));
const loss = buildLoss({ name: 'sft', options: {} });
const heldOut = env.task!.prompts(seed, 'eval', evalCount);
const heldOutRows = heldOut.map((it) => encodeGoldEpisode(run, env, it));

/** Held-out episodes whose every policy token has p > 1/2, in all and by gold call count. */
async function probe(): Promise<string> {
  engine.setWeights(state.params, `step-${state.step}`);
  const r = await engine.score(padded(heldOutRows), { entropy: false });
  const T = r.dims[1];
  const by = new Map<number, { ok: number; n: number }>();
  let ok = 0;
  heldOutRows.forEach((row, i) => {
    const all = row.lossMask.every((m, t) => !m || Math.exp(r.logprobs[i * T + t]!) > 0.5);
    const calls = heldOut[i]!.metadata.goldCalls as number;
    const c = by.get(calls) ?? { ok: 0, n: 0 };
    c.n++;
    if (all) {
      c.ok++;
      ok++;
    }
    by.set(calls, c);
  });
  const parts = [...by.entries()].sort(([a], [b]) => a - b).map(([k, c]) => `${k} calls ${c.ok}/${c.n}`);
  return `${ok}/${heldOutRows.length} greedy-exact (${parts.join(', ')})`;
}

console.log(
  `${envName}: llama h${hidden} L${layers}, vocab ${tok.vocabSize}, batch ${batch}, lr ${lr}, ${heldOut.length} held-out items; load ${loadavg()[0]!.toFixed(1)}`,
);
const t0 = performance.now();
for (let s = 0; s < steps; s++) {
  const items = env.task!.prompts(seed, 'train', batch, s * batch);
  const r = await engine.trainStep(state, padded(items.map((it) => encodeGoldEpisode(run, env, it))), { loss, lr });
  state = r.state;
  if ((s + 1) % every === 0 || s === steps - 1) {
    const secs = (performance.now() - t0) / 1000;
    console.log(`step ${s + 1}: loss ${r.metrics.loss!.toFixed(4)}, ${await probe()}, ${secs.toFixed(0)} s`);
  }
}
console.log(`load ${loadavg()[0]!.toFixed(1)}`);
await engine.close();
