/**
 * The training graphs: forward, pluggable loss, backward (build-time autodiff), global-norm
 * gradient clipping and AdamW, with parameters, optimizer moments and the step counter as inputs
 * and their updated values as outputs. Three kinds:
 *
 * - `trainStep`: one batch, forward to update in one run.
 * - `grad`:      forward + backward of one micro-batch, added into gradient accumulators
 *                (`acc.<param>` in, `new.acc.<param>` out).
 * - `apply`:     clipping + AdamW from accumulated gradients scaled by `grad_scale`
 *                (1 / number of micro-batches).
 * - `gradNorm` + `applyPart`: the same update in parts, for models whose update would otherwise
 *                hold every parameter and moment twice (inputs and outputs): `gradNorm` takes the
 *                accumulators and outputs `grad_norm` and `skipped`; each `applyPart` takes
 *                `grad_norm` as an input and updates the parameters `TrainBuildOptions.part` names.
 *                The same ops in the same order as `apply`: bitwise the same new state.
 *
 * Inputs (as applicable): every parameter by HF name; `adam_m.<param>`, `adam_v.<param>`;
 * `step` int64 [] (updates applied so far); `lr` float32 []; `input_ids` int64 [batch, seq];
 * `attention_mask` int64 [batch, seq]; `loss_mask` float32 [batch, seq]; `temperature` float32 []
 * (LM heads only: the logits are divided by it before the logprobs and the entropy, see
 * `tempered` in common.ts); the loss builder's extras.
 * Outputs: `new.<param>`, `new.adam_m.<param>`, `new.adam_v.<param>`, `new.step`; `loss`,
 * `grad_norm` (before clipping), `skipped` (1 when the gradient norm is not finite: the `new.*`
 * outputs are then meaningless and the caller keeps the inputs — `ModelEngine.trainStep` does; a
 * per-tensor Where in the graph cost ~10-20% of a step), `metric.<name>` per loss metric.
 *
 * Memory (the activations held from forward to backward dominate a step's peak): token logprobs
 * come from the logits by one fused op (`fusedTokenLogprobs`: no log-softmax tensor is kept), and
 * cheap activations the backward reads are recomputed there (`rematerialize`, on by default).
 * Sessions of these graphs need `TRAIN_SESSION_CONFIG` (the engine passes it). At 8x512 tokens on
 * the 30M bench model: peak RSS 4.3-4.5 -> 2.6-2.9 GiB, no slowdown visible in the noise (bench/README.md).
 */
import { Graph, type DType, type Tensor } from '../graph.js';
import { parameterShapes, trainableNames, type ModelConfig } from '../config.js';
import { parseConfig, z } from '../../common/config.js';
import * as F from '../ops.js';
import { grad } from '../autodiff.js';
import { archOf } from '../arch/index.js';
import type { LossBuilder, LossContext } from '../losses.js';
import { DIM, TEMPERATURE_INPUT, allButLast, declareParams, logSoftmax, positionsAndMask, tempered, tokenEntropy } from './common.js';
import { sequenceRewards } from './reward.js';

/** AdamW and clipping hyperparameters fixed at graph-build time (the learning rate is an input). */
export const optimizerSchema = z.object({
  /** Adam β1, the decay of the first-moment average (Kingma & Ba, "Adam", 2015). */
  beta1: z.number().min(0).max(1).default(0.9),
  /** Adam β2, the decay of the second-moment average (Kingma & Ba, 2015). */
  beta2: z.number().min(0).max(1).default(0.999),
  /** Adam ε added to the denominator (Kingma & Ba, 2015). */
  eps: z.number().positive().default(1e-8),
  /**
   * Decoupled weight decay λ: p ← p − lr·λ·p, applied apart from the adaptive step (Loshchilov &
   * Hutter, "Decoupled Weight Decay Regularization", 2019).
   */
  weightDecay: z.number().min(0).default(0),
  /**
   * Which parameters decay: 'matrices' (rank ≥ 2: linear and embedding weights, not biases and
   * norm gains — the HF Trainer's convention) or 'all'.
   */
  decay: z.enum(['matrices', 'all']).default('matrices'),
  /**
   * Global L2-norm gradient clipping threshold (Pascanu et al., "On the difficulty of training
   * recurrent neural networks", 2013); 0 disables clipping.
   */
  maxGradNorm: z.number().min(0).default(1),
});
export type OptimizerOptions = z.output<typeof optimizerSchema>;
export type OptimizerInput = z.input<typeof optimizerSchema>;

export function parseOptimizer(input: unknown): OptimizerOptions {
  return parseConfig(optimizerSchema, input ?? {}, 'optimizer options');
}

export type TrainGraphKind = 'trainStep' | 'grad' | 'apply' | 'gradNorm' | 'applyPart';

/** How a training graph is built (not what it computes: results agree to float rounding). */
export interface TrainBuildOptions {
  /**
   * Selective activation recomputation (`rematerialize`): cheap forward values the backward
   * reads are recomputed in the backward pass instead of kept (default true). Needs a session
   * with onnxruntime's CommonSubexpressionElimination disabled (`TRAIN_SESSION_CONFIG`), which
   * would otherwise merge the copies back.
   */
  recompute?: boolean;
  /** `applyPart`: the trained parameters it updates (and only their moments and accumulators are inputs). */
  part?: readonly string[];
}

/**
 * onnxruntime session config entries training sessions need: common-subexpression elimination
 * off, so that recomputed values stay recomputed (see `TrainBuildOptions.recompute`).
 */
export const TRAIN_SESSION_CONFIG = { optimization: { disable_specified_optimizers: 'CommonSubexpressionElimination' } } as const;

export interface TrainGraph {
  graph: Graph;
  /** Names of the extra inputs the loss declared (with dtypes), fed from `TrainBatch.extra`. */
  extraInputs: { name: string; dtype: DType }[];
  /** Names of the loss metrics (graph outputs `metric.<name>`). */
  metrics: string[];
  /** Whether the graph takes the `temperature` input (an LM head's forward; not `apply`, not a classifier). */
  temperature: boolean;
}

interface ForwardResult {
  loss: Tensor;
  metrics: Record<string, Tensor>;
  extraInputs: { name: string; dtype: DType }[];
}

function forwardLoss(g: Graph, cfg: ModelConfig, params: { p: (n: string) => Tensor }, loss: LossBuilder): ForwardResult {
  const arch = archOf(cfg);
  const ids = g.input('input_ids', 'int64', [DIM.batch, DIM.seq]);
  const mask = g.input('attention_mask', 'int64', [DIM.batch, DIM.seq]);
  const lossMask = g.input('loss_mask', 'float32', [DIM.batch, DIM.seq]);
  const { positions, keyMask } = positionsAndMask(g, mask, ids);
  const { hidden } = arch.body(g, cfg, params.p, { ids, positions, keyMask });
  // a sequence classifier (reward model) has a score head instead of the LM head: its losses see
  // `rewards` [B] (graphs/reward.ts) and no token logprobs
  const classifier = cfg.classifier === true;
  const logits = classifier ? null : tempered(g, arch.head(g, cfg, params.p, allButLast(hidden)));
  // the token logprobs straight from the logits (no [B, T, vocab] log-softmax tensor kept for the
  // backward); the full log-softmax is built only when the loss asks for the entropy
  const logprobs = logits ? fusedTokenLogprobs(logits, ids) : null;
  const rewards = classifier ? sequenceRewards(cfg, params.p, hidden, mask) : undefined;
  const noLm = (what: string) =>
    new Error(`loss ${loss.key}: ${what} needs an LM head, but this model is a sequence classifier (use ctx.rewards)`);
  const attentionMask = g.noTape(() => F.cast(mask, 'float32'));
  const tape = g.tape;
  let entropy: Tensor | null = null;
  const extraInputs: { name: string; dtype: DType }[] = [];
  const reserved = new Set(['input_ids', 'attention_mask', 'loss_mask', TEMPERATURE_INPUT, 'lr', 'step', 'grad_scale']);
  const ctx: LossContext = {
    g,
    get logprobs(): Tensor {
      if (!logprobs) throw noLm('ctx.logprobs');
      return logprobs;
    },
    rewards,
    lossMask,
    attentionMask,
    entropy() {
      if (!logits) throw noLm('ctx.entropy()');
      if (!entropy) {
        const saved = g.tape;
        g.tape = tape;
        try {
          entropy = tokenEntropy(logSoftmax(logits));
        } finally {
          g.tape = saved;
        }
      }
      return entropy;
    },
    input(name, dtype, dims) {
      if (reserved.has(name) || parameterShapes(cfg).some((s) => s.name === name)) {
        throw new Error(`loss ${loss.key}: input name "${name}" is reserved by the training graph`);
      }
      extraInputs.push({ name, dtype });
      return g.input(
        name,
        dtype,
        dims.map((d) => (d === 'batch' ? DIM.batch : d === 'seq' ? DIM.seq : d)),
      );
    },
  };
  const r = loss.build(ctx);
  if (r.loss.rank !== 0) throw new Error(`loss ${loss.key}: the loss must be a scalar, got ${r.loss}`);
  for (const [k, v] of Object.entries(r.metrics ?? {})) {
    if (v.rank !== 0) throw new Error(`loss ${loss.key}: metric ${k} must be a scalar, got ${v}`);
  }
  return { loss: r.loss, metrics: r.metrics ?? {}, extraInputs };
}

/** Emits the global norm over all gradients and its outputs `grad_norm` and `skipped` (1 when not finite). */
function emitGradNorm(g: Graph, grads: Tensor[]): Tensor {
  const sq = grads.map((gr) => F.reduceSum(F.mul(gr, gr)));
  const total = sq.length === 1 ? sq[0]! : g.node1('Sum', sq, 'float32', []);
  const gradNorm = F.sqrt(total);
  g.output(gradNorm, 'grad_norm');
  const nonFinite = F.or(g.node1('IsNaN', [gradNorm], 'bool', []), g.node1('IsInf', [gradNorm], 'bool', []));
  g.output(F.cast(nonFinite, 'float32'), 'skipped');
  return gradNorm;
}

/** Emits clipping + AdamW and their outputs. */
function emitUpdate(g: Graph, params: Tensor[], grads: Tensor[], opt: OptimizerOptions): void {
  emitAdamW(g, params, grads, emitGradNorm(g, grads), opt);
}

/** Emits clipping by `gradNorm` (the global norm of all gradients, this graph's or an input) and AdamW for `params`. */
function emitAdamW(g: Graph, params: Tensor[], grads: Tensor[], gradNorm: Tensor, opt: OptimizerOptions): void {
  const f = (v: number) => g.scalar(v, 'float32');
  const step = g.input('step', 'int64', []);
  const lr = g.input('lr', 'float32', []);
  const coef = opt.maxGradNorm > 0 ? F.minimum(f(1), F.div(f(opt.maxGradNorm), F.add(gradNorm, 1e-6))) : null;
  const t = F.cast(F.add(step, g.constant([1], 'int64', [])), 'float32');
  const bc1 = F.sub(1, F.pow(f(opt.beta1), t));
  const bc2 = F.sub(1, F.pow(f(opt.beta2), t));
  const stepSize = F.div(lr, bc1); // lr / (1 - β1^t)
  const sqrtBc2 = F.sqrt(bc2);
  const decayFactor = F.sub(1, F.mul(lr, opt.weightDecay)); // 1 - lr·λ
  g.output(F.add(step, g.constant([1], 'int64', [])), 'new.step');
  params.forEach((p, i) => {
    g.scope(p.name, () => {
      const m = g.input(`adam_m.${p.name}`, 'float32', p.shape);
      const v = g.input(`adam_v.${p.name}`, 'float32', p.shape);
      const gc = coef ? F.mul(grads[i]!, coef) : grads[i]!;
      const m2 = F.add(F.mul(m, opt.beta1), F.mul(gc, 1 - opt.beta1));
      const v2 = F.add(F.mul(v, opt.beta2), F.mul(F.mul(gc, gc), 1 - opt.beta2));
      // p - lr/bc1 · m / (sqrt(v)/sqrt(bc2) + eps), after decoupled decay
      const denom = F.add(F.div(F.sqrt(v2), sqrtBc2), opt.eps);
      const decays = opt.weightDecay > 0 && (opt.decay === 'all' || p.rank >= 2);
      const base = decays ? F.mul(p, decayFactor) : p;
      const p2 = F.sub(base, F.mul(stepSize, F.div(m2, denom)));
      g.output(p2, `new.${p.name}`);
      g.output(m2, `new.adam_m.${p.name}`);
      g.output(v2, `new.adam_v.${p.name}`);
    });
  });
}

/**
 * Per-token logprobs aligned with `ids` [B, T] (entry 0 is 0) from next-token `logits`
 * [B, T-1, vocab], as one differentiable op: logits[target] − logsumexp(logits). Unlike
 * log-softmax followed by a gather, no [B, T-1, vocab] tensor besides the logits themselves lives
 * until the backward pass, whose gradient onehot(target)·g − softmax(logits)·g is emitted as one
 * Exp, one Mul and one ScatterElements add (at 8x512 tokens and vocab 8192 each such tensor is
 * 134 MB; the composed form kept the log-softmax and made four more).
 */
export function fusedTokenLogprobs(logits: Tensor, ids: Tensor): Tensor {
  const g = logits.g;
  const axis = logits.rank - 1;
  const stat = [...logits.shape.slice(0, -1), 1];
  const targets = g.noTape(() => F.unsqueeze(F.slice(ids, [1], [2 ** 62], [1]), [-1])); // [B, T-1, 1]
  const lse = g.node1('ReduceLogSumExp', [logits, g.ints([-1])], logits.dtype, stat, { keepdims: 1 });
  const picked = g.node1('GatherElements', [logits, targets], logits.dtype, stat, { axis });
  const lp = g.node1('Sub', [picked, lse], logits.dtype, stat);
  g.tape?.push({
    op: 'TokenLogprobs',
    inputs: [logits],
    outputs: [lp],
    backward: ([gy]) => {
      const probs = F.exp(F.sub(logits, lse)); // softmax, from the kept logits
      const scaled = F.mul(probs, F.neg(gy!));
      return [g.node1('ScatterElements', [scaled, targets, gy!], logits.dtype, logits.shape, { axis, reduction: 'add' })];
    },
  });
  return F.pad(F.squeeze(lp, [-1]), [1, 0], [1]);
}

/**
 * Op types cheap enough to run twice: elementwise arithmetic, softmax and layout ops. Their
 * outputs, when the backward pass reads them, are recomputed there instead of kept from the
 * forward pass (activation recomputation: Chen et al., "Training Deep Nets with Sublinear Memory
 * Cost", 2016; here selective, as in Korthikanti et al., "Reducing Activation Recomputation in
 * Large Transformer Models", 2022, which recomputes the attention core).
 */
const CHEAP_OPS = new Set([
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Neg',
  'Sqrt',
  'Pow',
  'Exp',
  'Sigmoid',
  'Tanh',
  'Erf',
  'Relu',
  'Softmax',
  'Transpose',
  'Reshape',
  'Concat',
  'Split',
  'Slice',
  'Unsqueeze',
  'Squeeze',
  'Expand',
]);

/** Dims substituted for symbols when comparing tensor sizes (only ratios matter). */
function numel(shape: readonly (number | string | null)[]): number {
  return shape.reduce<number>((a, d) => a * (typeof d === 'number' ? d : 512), 1);
}

/**
 * Selective activation recomputation, as a rewrite of a training graph whose first `fwdEnd` nodes
 * are the forward pass. Every forward value the backward pass reads that a cheap op made (see
 * CHEAP_OPS; also a MatMul whose output is several times larger than its operands: attention
 * scores, recomputed from the queries and keys the backward keeps anyway) is recomputed by a clone
 * of its producer placed just before its first backward reader, so the forward copy dies at the
 * end of the forward pass. A clone's operands are values the backward keeps anyway, values
 * computed once outside the autodiff tape (masks, rotary tables, the attention bias), inputs, or
 * other clones. On the 30M-parameter bench model at 8x512 this takes the SwiGLU products, the
 * RMSNorm outputs and the attention probabilities out of the memory held across the step.
 * Returns the number of nodes cloned.
 */
export function rematerialize(g: Graph, fwdEnd: number, tapeValues: ReadonlyMap<string, Tensor>): number {
  const nodes = g.nodes;
  const producer = new Map<string, number>();
  for (let i = 0; i < fwdEnd; i++) for (const o of nodes[i]!.outputs) producer.set(o, i);
  const readByBackward = new Set<string>();
  for (let i = fwdEnd; i < nodes.length; i++) for (const x of nodes[i]!.inputs) if (producer.has(x)) readByBackward.add(x);
  const outputs = new Set(g.outputs.map((t) => t.name));

  const memo = new Map<number, boolean>();
  const recomputable = (i: number, depth: number): boolean => {
    const hit = memo.get(i);
    if (hit !== undefined) return hit;
    const n = nodes[i]!;
    let ok = depth < 8 && n.domain === '' && !n.outputs.some((o) => outputs.has(o));
    if (ok && n.opType === 'MatMul') {
      const [a, b] = n.inputs.map((x) => tapeValues.get(x));
      const y = tapeValues.get(n.outputs[0]!);
      ok = !!(a && b && y) && numel(y.shape) >= 4 * (numel(a.shape) + numel(b.shape));
    } else if (ok) ok = CHEAP_OPS.has(n.opType);
    for (const x of ok ? n.inputs : []) {
      const j = producer.get(x);
      // available in the backward pass: an input, kept for the backward anyway, or off the tape
      if (!x || j === undefined || readByBackward.has(x) || !tapeValues.has(x)) continue;
      if (!recomputable(j, depth + 1)) {
        ok = false;
        break;
      }
    }
    memo.set(i, ok);
    return ok;
  };
  // recompute only large values (activations with batch and sequence dims)
  const big = (x: string) => {
    const t = tapeValues.get(x);
    return !!t && t.shape.filter((d) => typeof d !== 'number').length >= 2;
  };
  const target = new Set<number>();
  for (const x of readByBackward) {
    const i = producer.get(x)!;
    if (big(x) && recomputable(i, 0)) target.add(i);
  }
  if (target.size === 0) return 0;

  // emit clones in front of their first backward reader
  const cloneName = new Map<string, string>();
  const cloned = new Set<number>();
  const out: typeof nodes = nodes.slice(0, fwdEnd);
  const emit = (i: number): void => {
    if (cloned.has(i)) return;
    cloned.add(i);
    const n = nodes[i]!;
    const inputs = n.inputs.map((x) => {
      const j = producer.get(x);
      if (!x || j === undefined) return x;
      if (target.has(j) || (!readByBackward.has(x) && tapeValues.has(x))) {
        emit(j);
        return cloneName.get(x)!;
      }
      return x;
    });
    const outs = n.outputs.map((o) => {
      const c = g.fresh(`remat/${o}`);
      cloneName.set(o, c);
      return c;
    });
    out.push({ ...n, name: g.fresh(`remat/${n.name}`), inputs, outputs: outs });
  };
  for (let i = fwdEnd; i < nodes.length; i++) {
    const n = nodes[i]!;
    const inputs = n.inputs.map((x) => {
      const j = producer.get(x);
      if (j === undefined || !target.has(j)) return x;
      emit(j);
      return cloneName.get(x)!;
    });
    out.push({ ...n, inputs });
  }
  nodes.splice(0, nodes.length, ...out);
  return cloned.size;
}

/** Builds one of the training graphs for a model, a loss and optimizer options. */
export function buildTrainGraph(
  cfg: ModelConfig,
  kind: TrainGraphKind,
  loss: LossBuilder,
  optInput: OptimizerInput = {},
  build: TrainBuildOptions = {},
): TrainGraph {
  const opt = parseOptimizer(optInput);
  const g = new Graph({ name: `${kind}-${cfg.modelType}`, tape: kind !== 'apply' && kind !== 'gradNorm' && kind !== 'applyPart' });
  // what trains (a LoRA model's adapters; else everything): gradients, accumulators and AdamW state for these only
  const trainable = trainableNames(cfg);
  if (kind === 'gradNorm' || kind === 'applyPart') {
    // inputs: the accumulators (and for a part, its parameters and moments) only, not the whole model
    const part = kind === 'applyPart' ? new Set(build.part ?? []) : trainable;
    const unknown = [...part].filter((n) => !trainable.has(n));
    if (part.size === 0 || unknown.length > 0) throw new Error(`${kind}: needs trained parameters, got [${[...part].join(', ')}]`);
    const specs = parameterShapes(cfg).filter((s) => part.has(s.name));
    const scale = g.input('grad_scale', 'float32', []);
    const grads = specs.map((s) => F.mul(g.input(`acc.${s.name}`, 'float32', s.shape), scale));
    if (kind === 'gradNorm') emitGradNorm(g, grads);
    else {
      const gradNorm = g.input('grad_norm', 'float32', []);
      emitAdamW(
        g,
        specs.map((s) => g.input(s.name, 'float32', s.shape)),
        grads,
        gradNorm,
        opt,
      );
    }
    return { graph: g, extraInputs: [], metrics: [], temperature: false };
  }
  const { p, params: all } = declareParams(g, cfg, 'inputs');
  const params = all.filter((t) => trainable.has(t.name));
  if (kind === 'apply') {
    const scale = g.input('grad_scale', 'float32', []);
    const grads = params.map((q) => F.mul(g.input(`acc.${q.name}`, 'float32', q.shape), scale));
    emitUpdate(g, params, grads, opt);
    return { graph: g, extraInputs: [], metrics: [], temperature: false };
  }
  const fwd = forwardLoss(g, cfg, { p }, loss);
  g.output(fwd.loss, 'loss');
  for (const [k, v] of Object.entries(fwd.metrics)) g.output(v, `metric.${k}`);
  const fwdEnd = g.nodes.length;
  const raw = grad(fwd.loss, params);
  const grads = raw.map((gr, i) => gr ?? F.zerosLike(params[i]!));
  g.noTape(() => {
    if (kind === 'grad') {
      params.forEach((q, i) => {
        const acc = g.input(`acc.${q.name}`, 'float32', q.shape);
        g.output(F.add(acc, grads[i]!), `new.acc.${q.name}`);
      });
    } else {
      emitUpdate(g, params, grads, opt);
    }
  });
  if (build.recompute ?? true) {
    const tapeValues = new Map<string, Tensor>();
    for (const e of g.tape!) for (const t of [...e.inputs, ...e.outputs]) tapeValues.set(t.name, t);
    rematerialize(g, fwdEnd, tapeValues);
  }
  return { graph: g, extraInputs: fwd.extraInputs, metrics: Object.keys(fwd.metrics), temperature: cfg.classifier !== true };
}
