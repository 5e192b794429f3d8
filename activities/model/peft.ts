/**
 * LoRA adapters as PEFT writes and reads them: a directory with `adapter_config.json` (`peft_type`
 * "LORA", `r`, `lora_alpha`, `target_modules`, ...) and `adapter_model.safetensors` (the A and B
 * matrices under PEFT's `base_model.model.` prefix). `readPeftAdapter` accepts what this engine
 * computes exactly as PEFT does (plain LoRA on linear modules of the llama family, no bias, no
 * dropout at training time, no rsLoRA / DoRA / per-module ranks) and refuses the rest naming the
 * field; `writePeftAdapter` writes a directory `PeftModel.from_pretrained(base, dir)` loads.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../common/config.js';
import { isAdapterName, LORA_TARGETS, normaliseLora, PEFT_PREFIX, type LoraConfig } from './lora.js';
import { parseSafetensors, serializeSafetensors, type TensorMap } from './safetensors.js';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

/** The LoRA of an `adapter_config.json` (parsed JSON); ConfigError names each field it cannot honour. */
export function loraOfPeftConfig(json: unknown, what = ADAPTER_CONFIG_FILE): LoraConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new ConfigError(what, [{ path: '', message: 'expected a JSON object' }]);
  const c = json as Record<string, unknown>;
  const problems: { path: string; message: string }[] = [];
  const need = (ok: boolean, path: string, message: string) => {
    if (!ok) problems.push({ path, message });
  };
  const empty = (v: unknown) => v === undefined || v === null || (typeof v === 'object' && Object.keys(v as object).length === 0);
  need(c.peft_type === 'LORA', 'peft_type', `expected "LORA", got ${JSON.stringify(c.peft_type)}`);
  need(c.bias === undefined || c.bias === 'none', 'bias', 'only bias "none" is supported');
  need(!c.use_rslora, 'use_rslora', 'rsLoRA scaling is not supported');
  need(!c.use_dora, 'use_dora', 'DoRA is not supported');
  need(!c.fan_in_fan_out, 'fan_in_fan_out', 'Conv1D (GPT-2) adapters are not supported');
  need(empty(c.modules_to_save), 'modules_to_save', 'fully trained extra modules are not supported');
  need(empty(c.rank_pattern) && empty(c.alpha_pattern), 'rank_pattern', 'per-module ranks or alphas are not supported');
  need(
    c.layers_to_transform === undefined || c.layers_to_transform === null,
    'layers_to_transform',
    'adapters on some layers only are not supported',
  );
  const targets = c.target_modules;
  const list = Array.isArray(targets) ? targets : [];
  need(
    list.length > 0 && list.every((t) => (LORA_TARGETS as readonly unknown[]).includes(t)),
    'target_modules',
    `expected a list of ${LORA_TARGETS.join(', ')}, got ${JSON.stringify(targets)}`,
  );
  need(typeof c.r === 'number' && Number.isInteger(c.r) && c.r > 0, 'r', `expected a positive integer, got ${JSON.stringify(c.r)}`);
  need(
    typeof c.lora_alpha === 'number' && c.lora_alpha > 0,
    'lora_alpha',
    `expected a positive number, got ${JSON.stringify(c.lora_alpha)}`,
  );
  if (problems.length) throw new ConfigError(what, problems);
  // dropout only acts in training; a loaded adapter trains on here without it (loraSchema)
  return normaliseLora({ rank: c.r as number, alpha: c.lora_alpha as number, targets: list as LoraConfig['targets'] });
}

/** The `adapter_config.json` of a LoRA, naming its base model (a path or hub id, as PEFT records it). */
export function peftConfigOf(lora: LoraConfig, base: { nameOrPath: string; hfClass: string }): Record<string, unknown> {
  return {
    auto_mapping: null,
    base_model_name_or_path: base.nameOrPath,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_to_transform: null,
    lora_alpha: lora.alpha,
    lora_dropout: 0,
    modules_to_save: null,
    peft_type: 'LORA',
    r: lora.rank,
    rank_pattern: {},
    alpha_pattern: {},
    target_modules: [...lora.targets].sort(),
    task_type: 'CAUSAL_LM',
    use_dora: false,
    use_rslora: false,
  };
}

/** Reads a PEFT LoRA directory: its LoRA and its tensors under this engine's names (the PEFT prefix dropped). */
export async function readPeftAdapter(dir: string): Promise<{ lora: LoraConfig; tensors: TensorMap }> {
  const configFile = path.join(dir, ADAPTER_CONFIG_FILE);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(configFile, 'utf8'));
  } catch (err) {
    throw new ConfigError(configFile, [{ path: '', message: (err as Error).message }]);
  }
  const lora = loraOfPeftConfig(json, configFile);
  const weightsFile = path.join(dir, ADAPTER_WEIGHTS_FILE);
  const { tensors } = parseSafetensors(new Uint8Array(await readFile(weightsFile)), weightsFile);
  const out: TensorMap = new Map();
  for (const [name, t] of tensors) {
    const bare = name.startsWith(PEFT_PREFIX) ? name.slice(PEFT_PREFIX.length) : name;
    if (!isAdapterName(bare)) throw new ConfigError(weightsFile, [{ path: name, message: 'not a LoRA tensor (lora_A / lora_B weight)' }]);
    out.set(bare, t);
  }
  return { lora, tensors: out };
}

/** Writes a PEFT LoRA directory from adapter tensors by this engine's names; returns the file names. */
export async function writePeftAdapter(
  dir: string,
  lora: LoraConfig,
  tensors: TensorMap,
  base: { nameOrPath: string; hfClass: string },
): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const named = new Map([...tensors].filter(([n]) => isAdapterName(n)).map(([n, t]) => [PEFT_PREFIX + n, t]));
  await writeFile(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(peftConfigOf(lora, base), null, 2) + '\n');
  await writeFile(path.join(dir, ADAPTER_WEIGHTS_FILE), serializeSafetensors(named, { format: 'pt' }));
  return [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE];
}
