/**
 * Export of a run's checkpoint as a servable Hugging Face model directory (`durable-rl export`):
 * config.json, generation_config.json, model.safetensors, the char tokenizer (tokenizer.json,
 * tokenizer_config.json) and the decode graph (decode.onnx + decode.json sidecar) — see
 * `exportModel` in activities/model/export.ts. The directory loads back with `loadHfModel` and
 * in `transformers`. A reward-model run (`model.classifier`) has no decode graph: its directory
 * holds the HF files only (`saveHfModel`: config.json naming `*ForSequenceClassification`, the
 * weights with `score.weight`, the tokenizer), which is what the `reward_model` reward loads.
 */
import { logger } from '../common/log.js';
import { exportModel } from '../model/export.js';
import { saveHfModel } from '../model/hf.js';
import { loadRun } from '../run/resolve.js';
import { withStore } from '../store/open.js';
import { committedSteps } from '../store/manifest.js';
import { loadWeights } from './checkpoint.js';

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
    const weights = await loadWeights(store, runId, v);
    const files = run.model.classifier
      ? await saveHfModel(dir, {
          config: run.model,
          tensors: new Map(
            [...weights].map(([name, w]) => [name, { dtype: 'F32' as const, shape: w.shape, data: w.data as Float32Array }]),
          ),
          tokenizer: run.tokenizer,
        })
      : await exportModel(dir, {
          config: run.model,
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
    log.info({ runId, version: v, dir, files: files.length }, 'exported checkpoint');
    return { dir, files, version: v };
  });
}
