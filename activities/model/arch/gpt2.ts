/**
 * GPT-2 (Radford et al., "Language Models are Unsupervised Multitask Learners", 2019), in one
 * readable function: learned absolute positions, pre-LayerNorm blocks, fused QKV projection,
 * causal multi-head attention, GELU MLP, final LayerNorm, LM head tied to the token embedding
 * (or `lm_head.weight` when `tie_word_embeddings` is false). Weights are HF's Conv1D layout
 * [in, out]; names are HF's (`transformer.h.0.attn.c_attn.weight`, ...).
 */
import type { Graph, Tensor } from '../graph.js';
import type { ModelConfig } from '../config.js';
import * as F from '../ops.js';
import { attentionBias, causalAttention } from '../attention.js';
import type { ArchBuilder, ArchInputs, ArchOutputs, LayerKV, ParamFn } from './types.js';

function activation(cfg: ModelConfig, x: Tensor): Tensor {
  switch (cfg.activation) {
    case 'gelu_tanh':
      return F.gelu(x, 'tanh');
    case 'gelu':
      return F.gelu(x, 'none');
    case 'relu':
      return F.relu(x);
    default:
      throw new Error(`gpt2: unsupported activation ${cfg.activation}`);
  }
}

/** [B, T, H*hd] -> [B, H, T, hd] */
function heads(x: Tensor, h: number, hd: number): Tensor {
  return F.transpose(F.reshape(x, [0, 0, h, hd]), [0, 2, 1, 3]);
}

function body(g: Graph, cfg: ModelConfig, p: ParamFn, inp: ArchInputs): ArchOutputs {
  const { hidden: d, heads: nh, headDim: hd } = cfg;
  let h = F.add(F.gather(p('transformer.wte.weight'), inp.ids), F.gather(p('transformer.wpe.weight'), inp.positions));
  const fresh: LayerKV[] = [];
  const bias = attentionBias(inp.ids, inp.keyMask, h.dtype); // shared by every layer
  for (let i = 0; i < cfg.layers; i++) {
    const n = `transformer.h.${i}`;
    h = g.scope(n, () => {
      const a = F.layerNorm(h, p(`${n}.ln_1.weight`), p(`${n}.ln_1.bias`), cfg.normEps);
      const qkv = F.linear(a, p(`${n}.attn.c_attn.weight`), p(`${n}.attn.c_attn.bias`), 'in_out');
      const [q, k0, v0] = F.split(qkv, [d, d, d], -1) as [Tensor, Tensor, Tensor];
      const k = heads(k0, nh, hd);
      const v = heads(v0, nh, hd);
      fresh.push({ key: k, value: v });
      const att = causalAttention(heads(q, nh, hd), k, v, { bias, past: inp.past?.[i] });
      const merged = F.reshape(F.transpose(att, [0, 2, 1, 3]), [0, 0, d]);
      const hAttn = F.add(h, F.linear(merged, p(`${n}.attn.c_proj.weight`), p(`${n}.attn.c_proj.bias`), 'in_out'));
      const m = F.layerNorm(hAttn, p(`${n}.ln_2.weight`), p(`${n}.ln_2.bias`), cfg.normEps);
      const up = activation(cfg, F.linear(m, p(`${n}.mlp.c_fc.weight`), p(`${n}.mlp.c_fc.bias`), 'in_out'));
      return F.add(hAttn, F.linear(up, p(`${n}.mlp.c_proj.weight`), p(`${n}.mlp.c_proj.bias`), 'in_out'));
    });
  }
  const hidden = F.layerNorm(h, p('transformer.ln_f.weight'), p('transformer.ln_f.bias'), cfg.normEps);
  return { hidden, fresh };
}

function head(_g: Graph, cfg: ModelConfig, p: ParamFn, hidden: Tensor): Tensor {
  return cfg.tieWordEmbeddings
    ? F.linear(hidden, p('transformer.wte.weight'), null, 'out_in')
    : F.linear(hidden, p('lm_head.weight'), null, 'out_in');
}

export const gpt2: ArchBuilder = { body, head };
