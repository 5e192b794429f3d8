/**
 * Export of a run's checkpoint as a servable Hugging Face model directory (`durable-rl export`):
 * config.json, generation_config.json, model.safetensors, the char tokenizer (tokenizer.json,
 * tokenizer_config.json) and the decode graph (decode.onnx + decode.json sidecar) — see
 * `exportModel` in activities/model/export.ts. The directory loads back with `loadHfModel` and
 * in `transformers`. A reward-model run (`model.classifier`) has no decode graph: its directory
 * holds the HF files only (`saveHfModel`: config.json naming `*ForSequenceClassification`, the
 * weights with `score.weight`, the tokenizer), which is what the `reward_model` reward loads.
 * A LoRA run's export is the merged model (W + (alpha/r)·B·A) with the adapter as a PEFT directory
 * in `adapter/` (`PeftModel.from_pretrained(base, dir/adapter)`), naming its base: the `model.from`
 * directory, or for a model trained from scratch its frozen weights written to `base/`.
 */
import { logger } from '../common/log.js';
import { exportModel } from '../model/export.js';
import { saveHfModel } from '../model/hf.js';
import { loadRun } from '../run/resolve.js';
import { withStore } from '../store/open.js';
import { committedSteps } from '../store/manifest.js';
import { loadWeights } from './checkpoint.js';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hfArchitecture, withLora } from '../model/config.js';
import { isAdapterName, mergeLora } from '../model/lora.js';
import { writePeftAdapter } from '../model/peft.js';

/** Where a LoRA run's export puts the adapter (a PEFT directory) and, for a model trained from scratch, its base. */
export const ADAPTER_DIR = 'adapter';
export const BASE_DIR = 'base';

const log = logger('checkpoint:export');

/** The checkpoint asked for is not there (names the run and the committed checkpoints). */
export class ExportRunError extends Error {
  override readonly name = 'ExportRunError';
}

export interface ExportRunResult {
  /** The directory written. */
  dir: string;
  /** File names written in it. */
  files: string[];
  /** The checkpoint exported (weights after `version` updates). */
  version: number;
}

/**
 * Writes checkpoint `version` of run `runId` (default: its latest committed checkpoint) to `dir`
 * as a model directory. The weights are read verified (size and sha256).
 */
export async function exportRun(storeUri: string, runId: string, version: number | undefined, dir: string): Promise<ExportRunResult> {
  return withStore(storeUri, async (store) => {
    const { run } = await loadRun(store, runId);
    const committed = await committedSteps(store, runId, 'checkpoints');
    const list = committed.length ? committed.join(', ') : 'none';
    if (version !== undefined && (!Number.isSafeInteger(version) || version < 0)) {
      throw new ExportRunError(
        `checkpoint must be a non-negative integer, got ${version}; run "${runId}" has committed checkpoints ${list}`,
      );
    }
    const v = version ?? committed.at(-1);
    if (v === undefined) throw new ExportRunError(`run "${runId}" in ${storeUri} has no committed checkpoint yet: nothing to export`);
    if (!committed.includes(v)) {
      throw new ExportRunError(
        `run "${runId}" has no committed checkpoint ${v} (committed checkpoints: ${list}); checkpoint v holds the weights after step v - 1`,
      );
    }
    const loaded = await loadWeights(store, runId, v);
    // a LoRA run: the merged weights as a plain model, and the adapter as a PEFT directory beside them
    const lora = run.model.lora;
    const model = lora ? withLora(run.model, null) : run.model;
    const weights = lora ? mergeLora(lora, loaded) : loaded;
    const adapterFiles: string[] = [];
    if (lora) {
      // PEFT's adapter names its base: the pretrained directory, or (from scratch) the base weights written beside it
      let basePath = run.config.model.from;
      if (basePath === null) {
        basePath = path.resolve(dir, BASE_DIR);
        const base = new Map(
          [...loaded].filter(([n]) => !isAdapterName(n)).map(([n, w]) => [n, { dtype: 'F32' as const, shape: w.shape, data: w.data }]),
        );
        // the frozen weights are checkpoint 0's: loadWeights(0) would give the same tensors
        adapterFiles.push(
          ...(await saveHfModel(basePath, { config: model, tensors: base, tokenizer: run.tokenizer })).map((f) => `${BASE_DIR}/${f}`),
        );
      } else if (basePath.startsWith('file://')) basePath = fileURLToPath(basePath);
      const adapters = new Map(
        [...loaded].filter(([n]) => isAdapterName(n)).map(([n, w]) => [n, { dtype: 'F32' as const, shape: w.shape, data: w.data }]),
      );
      const written = await writePeftAdapter(path.join(dir, ADAPTER_DIR), lora, adapters, {
        nameOrPath: basePath,
        hfClass: hfArchitecture(model),
      });
      adapterFiles.push(...written.map((f) => `${ADAPTER_DIR}/${f}`));
    }
    const files = run.model.classifier
      ? await saveHfModel(dir, {
          config: run.model,
          tensors: new Map(
            [...weights].map(([name, w]) => [name, { dtype: 'F32' as const, shape: w.shape, data: w.data as Float32Array }]),
          ),
          tokenizer: run.tokenizer,
        })
      : await exportModel(dir, {
          config: model,
          weights,
          tokenizer: run.tokenizer,
          // a pretrained start: its config.json's other fields and its chat template go back out with the weights
          ...(run.pretrained
            ? {
                rawConfig: JSON.parse(run.pretrained.files.config) as Record<string, unknown>,
                chatTemplate: run.pretrained.chatTemplate?.source ?? null,
              }
            : {}),
        });
    log.info({ runId, version: v, dir, files: files.length + adapterFiles.length, lora: lora !== undefined }, 'exported checkpoint');
    return { dir, files: [...files, ...adapterFiles], version: v };
  });
}
