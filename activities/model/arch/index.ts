/** The architecture builders by normalised `arch` name (`config.ts` maps HF `model_type`s to these). */
import type { ModelConfig } from '../config.js';
import { gpt2 } from './gpt2.js';
import { llama } from './llama.js';
import type { ArchBuilder } from './types.js';

export type { ArchBuilder, ArchInputs, ArchOutputs, LayerKV, ParamFn } from './types.js';

const ARCHS: Record<string, ArchBuilder> = { gpt2, llama };

export function archOf(cfg: ModelConfig): ArchBuilder {
  const a = ARCHS[cfg.arch];
  if (!a) throw new Error(`unknown architecture "${cfg.arch}" (model_type ${cfg.modelType}); supported: gpt2, llama, qwen2`);
  return a;
}
