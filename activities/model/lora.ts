/**
 * LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021): a frozen linear
 * layer W [out, in] gains a trainable low-rank path, y = x Wᵀ + (alpha / r) · (x Aᵀ) Bᵀ with
 * A [r, in] and B [out, r]. Only A and B train (with AdamW state for them alone); the base with the
 * path switched off (B = 0) is the model the adapter started from, the KL reference of RL.
 *
 * Names follow PEFT, so an adapter trained here is a PEFT adapter: the module's HF name plus
 * `.lora_A.weight` / `.lora_B.weight` (`model.layers.0.self_attn.q_proj.lora_A.weight`), saved
 * under PEFT's `base_model.model.` prefix in `adapter_model.safetensors` with an
 * `adapter_config.json` (`hf.ts`). Initialisation is PEFT's default: A ~ U(-1/√in, 1/√in)
 * (Kaiming-uniform with a = √5), B = 0, so the adapted model starts as the base model exactly.
 *
 * Supported: the llama family's linear modules (q/k/v/o projections, gate/up/down of the MLP),
 * dropout 0 (dropout would make the learner's logprobs differ from the rollout's), no bias, the
 * plain alpha / r scaling. Anything else is refused naming the field.
 */
import { z } from '../common/config.js';

/** The linear modules of a llama-family block a LoRA may target, by their HF (and PEFT) names. */
export const LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] as const;
export type LoraTarget = (typeof LORA_TARGETS)[number];

/** Where each target sits in a block (`model.layers.{i}.` + path). */
export const LORA_MODULE_PATHS: Record<LoraTarget, string> = {
  q_proj: 'self_attn.q_proj',
  k_proj: 'self_attn.k_proj',
  v_proj: 'self_attn.v_proj',
  o_proj: 'self_attn.o_proj',
  gate_proj: 'mlp.gate_proj',
  up_proj: 'mlp.up_proj',
  down_proj: 'mlp.down_proj',
};

/** The `model.lora` option of a run, and what `ModelConfig.lora` holds. */
export const loraSchema = z.strictObject({
  /** Rank r of the update B·A (PEFT `r`); the adapter has r·(in + out) parameters per targeted module. */
  rank: z.number().int().positive(),
  /** alpha: the update is scaled by alpha / r (PEFT `lora_alpha`); default 2·r, a common choice. */
  alpha: z.number().positive().optional(),
  /** Modules adapted in every block (PEFT `target_modules`); default the attention projections and the MLP. */
  targets: z
    .array(z.enum(LORA_TARGETS))
    .min(1)
    .default([...LORA_TARGETS]),
  /** Dropout on the adapter's input: only 0 (a dropout would make training logprobs differ from the rollout's). */
  dropout: z
    .literal(0, { error: 'only dropout 0 is supported: the learner must compute the logprobs the rollout sampled from' })
    .default(0),
});
export type LoraInput = z.input<typeof loraSchema>;

/** A normalised LoRA: every field given. */
export interface LoraConfig {
  rank: number;
  alpha: number;
  targets: LoraTarget[];
}

/** Validated options with the defaults filled in. */
export function normaliseLora(input: LoraInput | LoraConfig): LoraConfig {
  const l = loraSchema.parse(input);
  return {
    rank: l.rank,
    alpha: l.alpha ?? 2 * l.rank,
    targets: [...new Set(l.targets)].sort((a, b) => LORA_TARGETS.indexOf(a) - LORA_TARGETS.indexOf(b)),
  };
}

/** The factor of the low-rank path, alpha / r. */
export const loraScaling = (lora: LoraConfig): number => lora.alpha / lora.rank;

/** Whether an HF module name (`model.layers.3.mlp.up_proj`) is adapted. */
export function isLoraModule(lora: LoraConfig | undefined, module: string): boolean {
  return lora !== undefined && (lora.targets as readonly string[]).includes(module.slice(module.lastIndexOf('.') + 1));
}

/** The adapter tensors of a module [out, in]: `.lora_A.weight` [r, in], `.lora_B.weight` [out, r]. */
export function adapterShapes(module: string, out: number, inp: number, rank: number): { name: string; shape: number[] }[] {
  return [
    { name: `${module}.lora_A.weight`, shape: [rank, inp] },
    { name: `${module}.lora_B.weight`, shape: [out, rank] },
  ];
}

/** Whether a parameter name is an adapter tensor. */
export const isAdapterName = (name: string): boolean => /\.lora_[AB]\.weight$/.test(name);

/** PEFT's prefix of adapter tensor names in `adapter_model.safetensors`. */
export const PEFT_PREFIX = 'base_model.model.';

/**
 * The adapted weights as a plain model's: every adapted W [out, in] replaced by W + (alpha / r)·B·A
 * (float64 sums, rounded once), the adapter tensors left out. What `export` writes for tools that
 * do not load adapters; the adapter itself goes out as a PEFT directory (peft.ts).
 */
export function mergeLora<T extends { shape: number[]; data: Float32Array }>(
  lora: LoraConfig,
  weights: ReadonlyMap<string, T>,
): Map<string, { shape: number[]; data: Float32Array }> {
  const s = loraScaling(lora);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, w] of weights) {
    if (isAdapterName(name)) continue;
    const module = name.endsWith('.weight') ? name.slice(0, -'.weight'.length) : null;
    const a = module ? weights.get(`${module}.lora_A.weight`) : undefined;
    const b = module ? weights.get(`${module}.lora_B.weight`) : undefined;
    if (!a || !b) {
      out.set(name, w);
      continue;
    }
    const [rows, cols] = w.shape as [number, number];
    const r = a.shape[0]!;
    const merged = new Float32Array(rows * cols);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        let acc = 0;
        for (let k = 0; k < r; k++) acc += b.data[i * r + k]! * a.data[k * cols + j]!;
        merged[i * cols + j] = w.data[i * cols + j]! + s * acc;
      }
    }
    out.set(name, { shape: w.shape.slice(), data: merged });
  }
  return out;
}
