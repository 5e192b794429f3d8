/**
 * Random initialisation of a model's parameters from a seed, bit-reproducible on any machine:
 * element i of tensor `name` is `CounterRng(seed, hash32(name)).normal(i)` scaled: a pure function of (seed, name, i), so the same seed gives bitwise the same weights on every machine.
 *
 * GPT-2's scheme (Radford et al., 2019): weights ~ N(0, std²) with std 0.02, residual output
 * projections (attn c_proj / o_proj, MLP c_proj / down_proj) scaled by 1/sqrt(2·layers), biases 0,
 * norm gains 1. LoRA adapters as PEFT starts them: A ~ U(-1/√in, 1/√in), B = 0.
 */
import { CounterRng, hash32 } from '../common/rng.js';
import { parameterShapes, type ModelConfig } from './config.js';
import type { WeightTensor } from './graphs/common.js';

export interface InitOptions {
  /** Standard deviation of weight matrices (default 0.02, GPT-2 / nanoGPT). */
  std?: number;
}

const RESIDUAL_OUT = /(attn\.c_proj|mlp\.c_proj|self_attn\.o_proj|mlp\.down_proj)\.weight$/;
const NORM_GAIN = /(ln_1|ln_2|ln_f|input_layernorm|post_attention_layernorm|q_norm|k_norm|model\.norm)\.weight$/;

/** Fresh parameters for `cfg`, in `parameterShapes` order. */
export function initWeights(cfg: ModelConfig, seed: number | string, opts: InitOptions = {}): Map<string, WeightTensor> {
  const std = opts.std ?? 0.02;
  const out = new Map<string, WeightTensor>();
  for (const spec of parameterShapes(cfg)) {
    const n = spec.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (spec.name.endsWith('.bias') || spec.name.endsWith('.lora_B.weight')) {
      // zeros (a LoRA's B starts at 0, as PEFT's: the adapted model starts as the base model)
    } else if (spec.name.endsWith('.lora_A.weight')) {
      // PEFT's default for A: Kaiming-uniform with a = √5, i.e. U(-1/√in, 1/√in)
      const bound = 1 / Math.sqrt(spec.shape[1]!);
      const rng = new CounterRng(seed, hash32(spec.name));
      for (let i = 0; i < n; i++) data[i] = bound * (2 * rng.uniform(i) - 1);
    } else if (NORM_GAIN.test(spec.name)) {
      data.fill(1);
    } else {
      const s = RESIDUAL_OUT.test(spec.name) ? std / Math.sqrt(2 * cfg.layers) : std;
      const rng = new CounterRng(seed, hash32(spec.name));
      for (let i = 0; i < n; i++) data[i] = s * rng.normal(i);
    }
    out.set(spec.name, { shape: spec.shape.slice(), data });
  }
  return out;
}
