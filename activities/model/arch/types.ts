/**
 * What every architecture builder receives and returns. An architecture is a function that emits
 * the transformer body into a graph; the three graphs (decode, score, trainStep) differ only in
 * where the parameters come from (initializers or inputs), whether there is a KV cache, and what
 * they do with the final hidden states.
 */
import type { Graph, Tensor } from '../graph.js';
import type { ModelConfig } from '../config.js';

/** One layer's keys and values, [batch, kvHeads, positions, headDim]. */
export interface LayerKV {
  key: Tensor;
  value: Tensor;
}

export interface ArchInputs {
  /** int64 [batch, seq]: the token ids of this chunk. */
  ids: Tensor;
  /** int64 [batch, seq]: absolute position of each token (counting only real tokens). */
  positions: Tensor;
  /** bool [batch, past + seq]: true where a key position holds a real token. */
  keyMask: Tensor;
  /** Cached keys/values of earlier positions, one per layer (decode only). */
  past?: LayerKV[];
}

export interface ArchOutputs {
  /** Final hidden states after the last norm, [batch, seq, hidden]. */
  hidden: Tensor;
  /** Keys/values of this chunk's positions only, one per layer. */
  fresh: LayerKV[];
}

/** Parameter lookup by HF name (throws naming a missing parameter). */
export type ParamFn = (name: string) => Tensor;

export interface ArchBuilder {
  /** Emits the transformer body. */
  body(g: Graph, cfg: ModelConfig, p: ParamFn, inputs: ArchInputs): ArchOutputs;
  /** Next-token logits [batch, seq, vocab] from final hidden states. */
  head(g: Graph, cfg: ModelConfig, p: ParamFn, hidden: Tensor): Tensor;
}
