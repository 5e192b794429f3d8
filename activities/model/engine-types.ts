/**
 * What the model engine takes in, and the error it throws for bad input: token and training
 * batches, the training state, and `ModelInputError`. Kept apart from `engine.ts` so that losses,
 * `generate.ts` and the stage activities can name these without loading onnxruntime.
 */
import type { WeightTensor } from './graphs/common.js';

/** Bad input to the engine: names the tensor or field and what was expected. */
export class ModelInputError extends Error {
  override readonly name = 'ModelInputError';
}

/**
 * The temperature a policy's logprobs are taken at, for a sampling temperature `t`:
 * log softmax(logits / T) with T = t, except greedy decoding (t = 0), which samples from no
 * distribution and is scored at T = 1. Throws ModelInputError for a negative or non-finite t.
 */
export function logprobTemperature(t: number): number {
  if (!Number.isFinite(t) || t < 0) throw new ModelInputError(`temperature must be a finite number >= 0, got ${t}`);
  return t === 0 ? 1 : t;
}

/** Tokens of a batch: rectangular rows. `attentionMask` (1 real / 0 padding) defaults to all ones. */
export interface TokenBatch {
  ids: readonly (readonly number[])[];
  attentionMask?: readonly (readonly number[])[];
}

/** A value for an extra loss input: a scalar, [B] or [B, T] numbers, or an explicit tensor. */
export type ExtraValue =
  number | readonly number[] | readonly (readonly number[])[] | { data: Float32Array | BigInt64Array | Uint8Array; dims: number[] };

export interface TrainBatch extends TokenBatch {
  /** 1 where a token's loss counts (completion tokens), aligned with `ids`. */
  lossMask: readonly (readonly number[])[];
  /** Extra inputs the loss builder declared, by name. */
  extra?: Record<string, ExtraValue>;
}

/** Parameters, AdamW moments and the number of updates applied. */
export interface TrainState {
  params: Map<string, WeightTensor>;
  adamM: Map<string, WeightTensor>;
  adamV: Map<string, WeightTensor>;
  step: number;
}
