/**
 * LLaMA and its descendants — Llama 3.x, SmolLM2, Qwen2/2.5, Qwen3, Mistral (Touvron et al.,
 * "LLaMA", 2023; Yang et al., "Qwen2 Technical Report", 2024; "Qwen3 Technical Report", 2025;
 * Jiang et al., "Mistral 7B", 2023) — in one readable function: RMSNorm (Zhang & Sennrich, 2019),
 * rotary position embeddings (Su et al., "RoFormer", 2021, HF's rotate-half form, scaled as
 * `rope.ts` says), grouped-query attention (Ainslie et al., "GQA", 2023), SwiGLU MLP (Shazeer, "GLU
 * Variants Improve Transformer", 2020), optional q/k/v (and o, MLP) biases, Qwen3's per-head q/k
 * RMSNorm, Mistral's sliding window, tied or untied LM head. Weights are torch nn.Linear [out, in];
 * names are HF's (`model.layers.0.self_attn.q_proj.weight`, ...).
 */
import type { Graph, Tensor } from '../graph.js';
import type { LlamaModelConfig, ModelConfig } from '../config.js';
import * as F from '../ops.js';
import { attentionBias, causalAttention, slidingWindowBias } from '../attention.js';
import { ropeFrequencies, type RopeConfig } from '../rope.js';
import { isLoraModule, loraScaling } from '../lora.js';
import type { ArchBuilder, ArchInputs, ArchOutputs, LayerKV, ParamFn } from './types.js';

/** cos and sin of the rotary angles, each [B, 1, T, hd] (not differentiated), times the type's attention factor. */
export function rotaryTables(
  g: Graph,
  positions: Tensor,
  headDim: number,
  rope: RopeConfig,
  dtype: 'float32' | 'float64',
): [Tensor, Tensor] {
  const { invFreq, attentionFactor } = ropeFrequencies(rope, headDim);
  return g.noTape(() => {
    const pos = F.cast(positions, dtype); // [B, T]
    const freqs = F.mul(F.unsqueeze(pos, [-1]), g.constant(invFreq, dtype, [headDim / 2])); // [B, T, half]
    const emb = F.unsqueeze(F.concat([freqs, freqs], -1), [1]); // [B, 1, T, hd]
    const scaled = (t: Tensor) => (attentionFactor === 1 ? t : F.mul(t, attentionFactor));
    return [scaled(g.node1('Cos', [emb], dtype, emb.shape)), scaled(g.node1('Sin', [emb], dtype, emb.shape))];
  });
}

/** x * cos + rotate_half(x) * sin, with rotate_half(x) = concat(-x2, x1) over the head dim. */
export function applyRotary(x: Tensor, cos: Tensor, sin: Tensor, headDim: number): Tensor {
  const half = headDim / 2;
  const [x1, x2] = F.split(x, [half, half], -1) as [Tensor, Tensor];
  const rot = F.concat([F.neg(x2), x1], -1);
  return F.add(F.mul(x, cos), F.mul(rot, sin));
}

/** [B, T, H*hd] -> [B, H, T, hd] */
function heads(x: Tensor, h: number, hd: number): Tensor {
  return F.transpose(F.reshape(x, [0, 0, h, hd]), [0, 2, 1, 3]);
}

function body(g: Graph, cfg0: ModelConfig, p: ParamFn, inp: ArchInputs): ArchOutputs {
  const cfg = cfg0 as LlamaModelConfig;
  const { heads: nh, kvHeads: nkv, headDim: hd } = cfg;
  const opt = (name: string, on: boolean) => (on ? p(name) : null);
  // a linear module by HF name: x Wᵀ (+ b), plus LoRA's (alpha/r)·(x Aᵀ) Bᵀ where the module is adapted
  const linear = (x: Tensor, module: string, bias: boolean) => {
    const y = F.linear(x, p(`${module}.weight`), opt(`${module}.bias`, bias), 'out_in');
    if (!isLoraModule(cfg.lora, module)) return y;
    const low = F.linear(F.linear(x, p(`${module}.lora_A.weight`), null, 'out_in'), p(`${module}.lora_B.weight`), null, 'out_in');
    return F.add(y, F.mul(low, loraScaling(cfg.lora!)));
  };
  let h = F.gather(p('model.embed_tokens.weight'), inp.ids);
  const [cos, sin] = rotaryTables(g, inp.positions, hd, cfg.rope, h.dtype === 'float64' ? 'float64' : 'float32');
  const fresh: LayerKV[] = [];
  const bias = attentionBias(inp.ids, inp.keyMask, h.dtype); // shared by every layer
  const sw = cfg.slidingWindow;
  const windowBias = sw ? slidingWindowBias(bias, inp.positions, inp.keyMask, sw.window) : null; // shared by the sliding layers
  for (let i = 0; i < cfg.layers; i++) {
    const n = `model.layers.${i}`;
    h = g.scope(n, () => {
      const a = F.rmsNorm(h, p(`${n}.input_layernorm.weight`), cfg.normEps);
      const proj = (what: string, bias: boolean) => linear(a, `${n}.self_attn.${what}`, bias);
      // Qwen3 normalises each head (over hd) before the rotation
      const headNorm = (x: Tensor, what: string) => (cfg.qkNorm ? F.rmsNorm(x, p(`${n}.self_attn.${what}.weight`), cfg.normEps) : x);
      const q = applyRotary(headNorm(heads(proj('q_proj', cfg.qkvBias), nh, hd), 'q_norm'), cos, sin, hd);
      const k = applyRotary(headNorm(heads(proj('k_proj', cfg.qkvBias), nkv, hd), 'k_norm'), cos, sin, hd);
      const v = heads(proj('v_proj', cfg.qkvBias), nkv, hd);
      fresh.push({ key: k, value: v });
      const layerBias = windowBias && sw!.layers.includes(i) ? windowBias : bias;
      const att = causalAttention(q, k, v, { bias: layerBias, past: inp.past?.[i] });
      const merged = F.reshape(F.transpose(att, [0, 2, 1, 3]), [0, 0, nh * hd]);
      const hAttn = F.add(h, linear(merged, `${n}.self_attn.o_proj`, cfg.oBias));
      const m = F.rmsNorm(hAttn, p(`${n}.post_attention_layernorm.weight`), cfg.normEps);
      const mlp = (what: string, x: Tensor) => linear(x, `${n}.mlp.${what}`, cfg.mlpBias);
      const gated = F.mul(F.silu(mlp('gate_proj', m)), mlp('up_proj', m));
      return F.add(hAttn, mlp('down_proj', gated));
    });
  }
  const hidden = F.rmsNorm(h, p('model.norm.weight'), cfg.normEps);
  return { hidden, fresh };
}

function head(_g: Graph, cfg: ModelConfig, p: ParamFn, hidden: Tensor): Tensor {
  return F.linear(hidden, p(cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'), null, 'out_in');
}

export const llama: ArchBuilder = { body, head };
