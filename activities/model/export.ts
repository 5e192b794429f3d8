/**
 * Export for serving: the `decode` graph as a standalone ONNX model (weights as initializers)
 * that a plain `ort.InferenceSession.create(path)` loads and runs, a JSON sidecar describing its
 * inputs, outputs, KV-cache layout and stop tokens, and (`exportModel`) the HF model directory
 * beside it (`saveHfModel`: config, safetensors weights, tokenizer).
 *
 * Weights beyond `externalDataBytes` go to ONNX external data (`decode.onnx.data` next to the
 * model, each tensor at a 64-byte-aligned offset): protobuf caps one file at 2 GB, and external
 * data lets onnxruntime read the weights without parsing them out of the protobuf.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import onnxProto from 'onnx-proto';
import { parseConfig, z } from '../common/config.js';
import { logger } from '../common/log.js';
import type { ModelConfig } from './config.js';
import type { Tensor } from './graph.js';
import { buildDecodeGraph } from './graphs/decode.js';
import type { WeightMap } from './graphs/common.js';
import { checkParameters, saveHfModel } from './hf.js';
import type { TensorMap, WriteCheckpointOptions } from './safetensors.js';
import type { TextTokenizer } from './tokenizer.js';

const { onnx } = onnxProto;
const log = logger('model:export');

export const exportOptionsSchema = z.object({
  /** File name of the ONNX model inside the export directory. */
  fileName: z
    .string()
    .regex(/^[\w.-]+\.onnx$/, 'a plain file name ending in .onnx')
    .default('decode.onnx'),
  /** What the graph returns for the next token: raw `logits` or `logprobs` (log-softmax). */
  output: z.enum(['logits', 'logprobs']).default('logits'),
  /**
   * Weights larger in total than this many bytes are written as ONNX external data
   * (`<fileName>.data`); smaller models are one self-contained file. 0 always writes external
   * data. Default 1 GiB (protobuf limits a single model file to 2 GB).
   */
  externalDataBytes: z
    .number()
    .int()
    .min(0)
    .default(2 ** 30),
});
export type ExportOptions = z.output<typeof exportOptionsSchema>;
export type ExportOptionsInput = z.input<typeof exportOptionsSchema>;

/** One graph input or output as the sidecar lists it: symbolic dims by name. */
export interface SidecarValue {
  name: string;
  dtype: string;
  shape: (number | string)[];
}

/** The JSON sidecar (`<fileName>.json`) describing how to drive the exported decode graph. */
export interface DecodeSidecar {
  format: 'durable-rl/decode';
  version: 1;
  model: string;
  externalData: string | null;
  opset: number;
  modelType: string;
  vocabSize: number;
  /** 'logits' or 'logprobs': what `outputs[0]` holds, for the token after the chunk's last position. */
  output: 'logits' | 'logprobs';
  inputs: SidecarValue[];
  outputs: SidecarValue[];
  kvCache: {
    layers: number;
    kvHeads: number;
    headDim: number;
    /** Layout of every `past.*` input and `fresh.*` output. */
    layout: '[batch, kv_heads, positions, head_dim]';
    pastKey: string;
    pastValue: string;
    freshKey: string;
    freshValue: string;
    notes: string[];
  };
  attentionMask: string;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
}

/** Bad export input: names what is wrong. */
export class ExportError extends Error {
  override readonly name = 'ExportError';
}

const ALIGN = 64;

function sidecarValue(t: Tensor): SidecarValue {
  return { name: t.name, dtype: t.dtype, shape: t.shape.map((d) => d ?? '?') };
}

/** Engine weights ({ shape, data }) or safetensors tensors ({ dtype, shape, data }) as a TensorMap. */
function asTensorMap(weights: WeightMap | TensorMap, what: string): TensorMap {
  const out: TensorMap = new Map();
  for (const [name, w] of weights) {
    if ('dtype' in w) out.set(name, w);
    else if (w.data instanceof Float32Array) out.set(name, { dtype: 'F32', shape: w.shape, data: w.data });
    else throw new ExportError(`${what}: ${name} must hold a Float32Array`);
  }
  return out;
}

function toWeightMap(cfg: ModelConfig, weights: WeightMap | TensorMap, what: string): WeightMap {
  const tensors = checkParameters(cfg, asTensorMap(weights, what), what);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of tensors) {
    if (!(t.data instanceof Float32Array)) throw new ExportError(`${what}: ${name} must be float32`);
    out.set(name, { shape: t.shape, data: t.data });
  }
  return out;
}

/**
 * Writes `<dir>/<fileName>` (the decode graph with the weights baked in), `<fileName>.data` when
 * the weights go to external data, and `<fileName>.json` (the sidecar). Returns the file names
 * written and the sidecar.
 */
export async function exportDecodeOnnx(
  dir: string,
  model: { config: ModelConfig; weights: WeightMap | TensorMap; eosTokenIds?: number[] },
  options: ExportOptionsInput = {},
): Promise<{ files: string[]; sidecar: DecodeSidecar }> {
  const opts = parseConfig(exportOptionsSchema, options, 'export options');
  const cfg = model.config;
  if (cfg.classifier)
    throw new ExportError(`export: ${cfg.modelType} is a sequence classifier (reward model); only causal LMs have a decode graph`);
  const weights = toWeightMap(cfg, model.weights, `export to ${dir}`);
  const graph = buildDecodeGraph(cfg, weights, { output: opts.output });
  const proto = graph.toModelProto();
  const dataName = `${opts.fileName}.data`;
  const initializers = proto.graph!.initializer!;
  const weightBytes = initializers.reduce((a, t) => a + (t.rawData?.length ?? 0), 0);
  const external = weightBytes > opts.externalDataBytes;
  const files = [opts.fileName];
  await mkdir(dir, { recursive: true });
  if (external) {
    // the weights (not the graph's own constants) move to one data file, each at an aligned offset
    const chunks: Uint8Array[] = [];
    let offset = 0;
    for (const t of initializers) {
      const raw = t.rawData;
      if (!raw || !weights.has(t.name!)) continue;
      const pad = (ALIGN - (offset % ALIGN)) % ALIGN;
      if (pad) chunks.push(new Uint8Array(pad));
      offset += pad;
      chunks.push(raw);
      t.externalData = [
        { key: 'location', value: dataName },
        { key: 'offset', value: String(offset) },
        { key: 'length', value: String(raw.length) },
      ];
      t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      t.rawData = null;
      offset += raw.length;
    }
    await writeFile(path.join(dir, dataName), chunks);
    files.push(dataName);
  }
  await writeFile(path.join(dir, opts.fileName), onnx.ModelProto.encode(proto).finish());
  const eos = [...new Set(model.eosTokenIds ?? cfg.eosTokenIds)];
  const sidecar: DecodeSidecar = {
    format: 'durable-rl/decode',
    version: 1,
    model: opts.fileName,
    externalData: external ? dataName : null,
    opset: graph.opset,
    modelType: cfg.modelType,
    vocabSize: cfg.vocabSize,
    output: opts.output,
    inputs: graph.inputs.map(sidecarValue),
    outputs: graph.outputs.map(sidecarValue),
    kvCache: {
      layers: cfg.layers,
      kvHeads: cfg.kvHeads,
      headDim: cfg.headDim,
      layout: '[batch, kv_heads, positions, head_dim]',
      pastKey: 'past.{layer}.key',
      pastValue: 'past.{layer}.value',
      freshKey: 'fresh.{layer}.key',
      freshValue: 'fresh.{layer}.value',
      notes: [
        'prefill: feed the whole (left-padded) prompt as input_ids with past length 0 (past.* of shape [batch, kv_heads, 0, head_dim])',
        "fresh.* hold only this chunk's keys (after rotary embedding) and values: append them to the cache and feed the cache as past.* on the next call",
        'a preallocated cache may be fed whole: slots not yet written are masked by 0 in attention_mask',
      ],
    },
    attentionMask:
      'int64 [batch, past + seq]: 1 = real token, 0 = padding or an unused cache slot; positions are counted from it (number of real tokens before each)',
    bosTokenId: cfg.bosTokenId,
    eosTokenIds: eos,
    padTokenId: cfg.padTokenId,
  };
  const sidecarName = `${opts.fileName.replace(/\.onnx$/, '')}.json`;
  await writeFile(path.join(dir, sidecarName), JSON.stringify(sidecar, null, 2) + '\n');
  files.push(sidecarName);
  log.info({ dir, files, weightBytes, external }, 'exported decode graph');
  return { files, sidecar };
}

/** What `exportModel` writes. */
export interface ExportModelInput {
  config: ModelConfig;
  weights: WeightMap | TensorMap;
  tokenizer?: TextTokenizer | null;
  /** Fields of an original `config.json` to keep (see `saveHfModel`). */
  rawConfig?: Record<string, unknown>;
  /** The chat template to write with the tokenizer (see `saveHfModel`). */
  chatTemplate?: string | null;
}

/**
 * A servable model directory: the HF files (`saveHfModel`: config.json, generation_config.json,
 * safetensors weights, tokenizer files) and the decode graph with its sidecar
 * (`exportDecodeOnnx`). The sidecar's eos ids are the config's and the tokenizer's, as in
 * generation_config.json. Returns the file names written.
 */
export async function exportModel(
  dir: string,
  model: ExportModelInput,
  options: ExportOptionsInput & WriteCheckpointOptions = {},
): Promise<string[]> {
  const { maxShardBytes, metadata, ...onnxOptions } = options;
  const tensors = asTensorMap(model.weights, `export to ${dir}`);
  const hfFiles = await saveHfModel(
    dir,
    {
      config: model.config,
      tensors,
      tokenizer: model.tokenizer ?? null,
      rawConfig: model.rawConfig,
      chatTemplate: model.chatTemplate ?? null,
    },
    { maxShardBytes, metadata },
  );
  const eos = model.tokenizer ? [...model.config.eosTokenIds, ...model.tokenizer.eosIds] : model.config.eosTokenIds;
  const { files } = await exportDecodeOnnx(dir, { config: model.config, weights: tensors, eosTokenIds: eos }, onnxOptions);
  return [...hfFiles, ...files];
}
