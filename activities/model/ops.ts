/**
 * The differentiable op library. Each op emits its ONNX forward node(s) and, right beside it,
 * records on the graph's tape how to emit its gradient (tinygrad `Function` style). The reverse
 * pass itself lives in `autodiff.ts`.
 *
 * Conventions: binary ops broadcast numpy-style and accept a plain number for either operand (a
 * scalar constant of the other operand's dtype); gradients flowing into a broadcast operand are
 * summed back to its shape by `sumTo` (static axes when shapes are known at build time, runtime
 * `Shape` arithmetic otherwise). Axes are static integers (negative counts from the end).
 */
import { Tensor, isFloat, type Graph, onnxDType, tensorProto, typedArray, type DType, type Shape } from './graph.js';
import { quantizedMatMul } from './quantize.js';
import { broadcastShapes, fmtShape, matmulShape, normAxis, product, reduceShape, reshapeShape, sameDim, sameShape } from './shape.js';

type Grads = (Tensor | null | false | undefined)[];
export type TLike = Tensor | number;

function record(op: string, inputs: Tensor[], outputs: Tensor[], backward: (gy: (Tensor | null)[], needs: boolean[]) => Grads): void {
  const g = outputs[0]!.g;
  if (g.tape) g.tape.push({ op, inputs, outputs, backward });
}

function graphOf(...xs: TLike[]): Graph {
  for (const x of xs) if (x instanceof Tensor) return x.g;
  throw new Error('op needs at least one tensor operand');
}

function dtypeOf(op: string, ...xs: TLike[]): DType {
  let d: DType | undefined;
  for (const x of xs) {
    if (!(x instanceof Tensor)) continue;
    if (d && d !== x.dtype) throw new Error(`${op}: operand dtypes differ (${d} vs ${x.dtype}: ${x.name})`);
    d = x.dtype;
  }
  return d!;
}

function lift(g: Graph, x: TLike, dtype: DType): Tensor {
  return x instanceof Tensor ? x : g.scalar(x, dtype);
}

function lift2(op: string, a: TLike, b: TLike): [Tensor, Tensor] {
  const g = graphOf(a, b);
  const d = dtypeOf(op, a, b);
  return [lift(g, a, d), lift(g, b, d)];
}

function requireFloat(op: string, x: Tensor): void {
  if (!isFloat(x.dtype)) throw new Error(`${op}: ${x.name} must be a float tensor, got ${x.dtype}`);
}

// ---------------------------------------------------------------------------------------------
// Shape helpers on graph tensors (runtime int64 arithmetic where static shapes are unknown)
// ---------------------------------------------------------------------------------------------

/** The runtime shape of x (int64 [rank]). */
export function shapeOf(x: Tensor): Tensor {
  return x.g.shapeOf(x);
}

/** Runtime size of one dim of x as an int64 [1] tensor (a constant when static). */
export function dimOf(x: Tensor, axis: number): Tensor {
  const a = normAxis(axis, x.rank, 'dimOf');
  const d = x.shape[a];
  if (typeof d === 'number') return x.g.ints([d]);
  return x.g.node1('Shape', [x], 'int64', [1], { start: a, end: a + 1 });
}

/** A tensor of zeros with the runtime shape of x. */
export function zerosLike(x: Tensor): Tensor {
  return constantOfShape(shapeOf(x), 0, x.dtype, x.shape);
}

export function constantOfShape(shape: Tensor, value: number, dtype: DType, staticShape?: Shape): Tensor {
  const n = typeof shape.shape[0] === 'number' ? shape.shape[0] : null;
  const t = tensorProto('value', dtype, [1], typedArray(dtype, [value]));
  return shape.g.node1('ConstantOfShape', [shape], dtype, staticShape ?? (n === null ? [] : Array<null>(n).fill(null)), { value: { t } });
}

/**
 * Sums a gradient `gy` (shaped like a broadcast result) back to the shape of operand `x`:
 * ReduceSum over the broadcast axes, computed statically when the shapes are known at build time,
 * otherwise from runtime `Shape`s.
 */
export function sumTo(gy: Tensor, x: Tensor): Tensor {
  if (sameShape(gy.shape, x.shape)) return gy;
  const g = gy.g;
  const lead = gy.rank - x.rank;
  if (lead < 0) throw new Error(`sumTo: gradient ${gy} has lower rank than ${x}`);
  let staticOk = true;
  const keepAxes: number[] = [];
  for (let i = 0; i < x.rank; i++) {
    const xd = x.shape[i]!;
    const gd = gy.shape[i + lead]!;
    if (xd === 1 && gd !== 1) keepAxes.push(i + lead);
    else if (!sameDim(xd, gd)) staticOk = false;
  }
  if (staticOk) {
    let out = gy;
    if (keepAxes.length) out = reduceSum(out, keepAxes, true);
    if (lead > 0) out = reduceSum(out, [...Array(lead).keys()], false);
    return out;
  }
  // Runtime: axes where the (left-padded) shape of x differs from the gradient's shape.
  const xs = shapeOf(x);
  const padded = lead > 0 ? g.node1('Concat', [g.ints(Array(lead).fill(1)), xs], 'int64', [gy.rank], { axis: 0 }) : xs;
  const eq = g.node1('Equal', [padded, shapeOf(gy)], 'bool', [gy.rank]);
  const ne = g.node1('Not', [eq], 'bool', [gy.rank]);
  const nz = g.node1('NonZero', [ne], 'int64', [1, null]);
  const axes = g.node1('Reshape', [nz, g.ints([-1])], 'int64', [null]);
  const summed = g.node1(
    'ReduceSum',
    [gy, axes],
    gy.dtype,
    gy.shape.map(() => null),
    { keepdims: 1, noop_with_empty_axes: 1 },
  );
  return g.node1('Reshape', [summed, xs], gy.dtype, x.shape);
}

// ---------------------------------------------------------------------------------------------
// Elementwise binary ops
// ---------------------------------------------------------------------------------------------

function binary(op: string, a: Tensor, b: Tensor, outDType?: DType): Tensor {
  const shape = broadcastShapes(op, a.shape, b.shape);
  return a.g.node1(op, [a, b], outDType ?? a.dtype, shape);
}

export function add(a0: TLike, b0: TLike): Tensor {
  const [a, b] = lift2('Add', a0, b0);
  const y = binary('Add', a, b);
  record('Add', [a, b], [y], ([gy], n) => [n[0] && sumTo(gy!, a), n[1] && sumTo(gy!, b)]);
  return y;
}

export function sub(a0: TLike, b0: TLike): Tensor {
  const [a, b] = lift2('Sub', a0, b0);
  const y = binary('Sub', a, b);
  record('Sub', [a, b], [y], ([gy], n) => [n[0] && sumTo(gy!, a), n[1] && sumTo(neg(gy!), b)]);
  return y;
}

export function mul(a0: TLike, b0: TLike): Tensor {
  const [a, b] = lift2('Mul', a0, b0);
  const y = binary('Mul', a, b);
  record('Mul', [a, b], [y], ([gy], n) => [n[0] && sumTo(mul(gy!, b), a), n[1] && sumTo(mul(gy!, a), b)]);
  return y;
}

export function div(a0: TLike, b0: TLike): Tensor {
  const [a, b] = lift2('Div', a0, b0);
  const y = binary('Div', a, b);
  record('Div', [a, b], [y], ([gy], n) => [n[0] && sumTo(div(gy!, b), a), n[1] && sumTo(neg(div(mul(gy!, y), b)), b)]);
  return y;
}

/** a ** b. The gradient to b uses log(a) and so needs a > 0 where it is taken. */
export function pow(a0: TLike, b0: TLike): Tensor {
  const [a, b] = lift2('Pow', a0, b0);
  const y = binary('Pow', a, b);
  record('Pow', [a, b], [y], ([gy], n) => {
    const c = a.g.constantValues(b);
    let da: Tensor | false = false;
    if (n[0]) {
      // a constant scalar exponent c: c·a^(c-1) without a runtime Pow where c is 1 or 2
      if (c && c.length === 1) da = c[0] === 1 ? gy! : c[0] === 2 ? mul(gy!, mul(a, 2)) : mul(gy!, mul(pow(a, c[0]! - 1), c[0]!));
      else da = mul(gy!, mul(b, pow(a, sub(b, 1))));
      da = sumTo(da, a);
    }
    return [da, n[1] && sumTo(mul(gy!, mul(y, log(a))), b)];
  });
  return y;
}

/** Elementwise minimum of two tensors; the gradient goes to the smaller (ties: to b). */
export function minimum(a0: TLike, b0: TLike): Tensor {
  const [a, b] = lift2('Min', a0, b0);
  const y = binary('Min', a, b);
  record('Min', [a, b], [y], ([gy], n) => {
    const takeA = less(a, b);
    return [n[0] && sumTo(where(takeA, gy!, 0), a), n[1] && sumTo(where(takeA, 0, gy!), b)];
  });
  return y;
}

/** Elementwise maximum of two tensors; the gradient goes to the larger (ties: to b). */
export function maximum(a0: TLike, b0: TLike): Tensor {
  const [a, b] = lift2('Max', a0, b0);
  const y = binary('Max', a, b);
  record('Max', [a, b], [y], ([gy], n) => {
    const takeA = greater(a, b);
    return [n[0] && sumTo(where(takeA, gy!, 0), a), n[1] && sumTo(where(takeA, 0, gy!), b)];
  });
  return y;
}

// Comparisons and logic: not differentiable, bool results.
export function equal(a0: TLike, b0: TLike): Tensor {
  const [a, b] = lift2('Equal', a0, b0);
  return binary('Equal', a, b, 'bool');
}
export function less(a0: TLike, b0: TLike): Tensor {
  const [a, b] = lift2('Less', a0, b0);
  return binary('Less', a, b, 'bool');
}
export function lessOrEqual(a0: TLike, b0: TLike): Tensor {
  const [a, b] = lift2('LessOrEqual', a0, b0);
  return binary('LessOrEqual', a, b, 'bool');
}
export function greater(a0: TLike, b0: TLike): Tensor {
  const [a, b] = lift2('Greater', a0, b0);
  return binary('Greater', a, b, 'bool');
}
export function greaterOrEqual(a0: TLike, b0: TLike): Tensor {
  const [a, b] = lift2('GreaterOrEqual', a0, b0);
  return binary('GreaterOrEqual', a, b, 'bool');
}
export function and(a: Tensor, b: Tensor): Tensor {
  return binary('And', a, b, 'bool');
}
export function or(a: Tensor, b: Tensor): Tensor {
  return binary('Or', a, b, 'bool');
}
export function not(a: Tensor): Tensor {
  return a.g.node1('Not', [a], 'bool', a.shape);
}

/** cond ? a : b, broadcasting all three. */
export function where(cond: Tensor, a0: TLike, b0: TLike): Tensor {
  if (cond.dtype !== 'bool') throw new Error(`Where: condition ${cond.name} must be bool, got ${cond.dtype}`);
  const [a, b] = lift2('Where', a0, b0);
  const y = cond.g.node1('Where', [cond, a, b], a.dtype, broadcastShapes('Where', cond.shape, a.shape, b.shape));
  record('Where', [a, b], [y], ([gy], n) => [n[0] && sumTo(where(cond, gy!, 0), a), n[1] && sumTo(where(cond, 0, gy!), b)]);
  return y;
}

// ---------------------------------------------------------------------------------------------
// Elementwise unary ops
// ---------------------------------------------------------------------------------------------

function unary(op: string, x: Tensor, attrs = {}): Tensor {
  return x.g.node1(op, [x], x.dtype, x.shape, attrs);
}

export function neg(x: Tensor): Tensor {
  const y = unary('Neg', x);
  record('Neg', [x], [y], ([gy]) => [neg(gy!)]);
  return y;
}

export function exp(x: Tensor): Tensor {
  requireFloat('Exp', x);
  const y = unary('Exp', x);
  record('Exp', [x], [y], ([gy]) => [mul(gy!, y)]);
  return y;
}

export function log(x: Tensor): Tensor {
  requireFloat('Log', x);
  const y = unary('Log', x);
  record('Log', [x], [y], ([gy]) => [div(gy!, x)]);
  return y;
}

export function sqrt(x: Tensor): Tensor {
  requireFloat('Sqrt', x);
  const y = unary('Sqrt', x);
  record('Sqrt', [x], [y], ([gy]) => [div(mul(gy!, 0.5), y)]);
  return y;
}

export function tanh(x: Tensor): Tensor {
  requireFloat('Tanh', x);
  const y = unary('Tanh', x);
  record('Tanh', [x], [y], ([gy]) => [mul(gy!, sub(1, mul(y, y)))]);
  return y;
}

export function sigmoid(x: Tensor): Tensor {
  requireFloat('Sigmoid', x);
  const y = unary('Sigmoid', x);
  record('Sigmoid', [x], [y], ([gy]) => [mul(gy!, mul(y, sub(1, y)))]);
  return y;
}

export function erf(x: Tensor): Tensor {
  requireFloat('Erf', x);
  const y = unary('Erf', x);
  record('Erf', [x], [y], ([gy]) => [mul(gy!, mul(exp(neg(mul(x, x))), 2 / Math.sqrt(Math.PI)))]);
  return y;
}

/**
 * GELU (Hendrycks & Gimpel, "Gaussian Error Linear Units", 2016) as the opset-20 `Gelu` op.
 * `approximate: 'tanh'` is GPT-2's `gelu_new`; 'none' the exact erf form.
 */
export function gelu(x: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  requireFloat('Gelu', x);
  const y = unary('Gelu', x, { approximate });
  record('Gelu', [x], [y], ([gy]) => {
    if (approximate === 'tanh') {
      const c = Math.sqrt(2 / Math.PI);
      const x2 = mul(x, x);
      const t = tanh(mul(mul(x, add(mul(x2, 0.044715), 1)), c));
      const dudx = mul(add(mul(x2, 3 * 0.044715), 1), c);
      const d = add(mul(add(t, 1), 0.5), mul(mul(mul(x, 0.5), sub(1, mul(t, t))), dudx));
      return [mul(gy!, d)];
    }
    const cdf = mul(add(erf(mul(x, Math.SQRT1_2)), 1), 0.5);
    const pdf = mul(exp(mul(mul(x, x), -0.5)), 1 / Math.sqrt(2 * Math.PI));
    return [mul(gy!, add(cdf, mul(x, pdf)))];
  });
  return y;
}

export function relu(x: Tensor): Tensor {
  const y = unary('Relu', x);
  record('Relu', [x], [y], ([gy]) => [where(greater(x, 0), gy!, 0)]);
  return y;
}

/** SiLU / swish x * sigmoid(x) (composite), the gate of SwiGLU. */
export function silu(x: Tensor): Tensor {
  return mul(x, sigmoid(x));
}

/** Clamps x into [lo, hi] (either bound may be omitted); gradient passes where x is inside. */
export function clip(x: Tensor, lo?: number, hi?: number): Tensor {
  const g = x.g;
  const loT = lo === undefined ? null : g.scalar(lo, x.dtype);
  const hiT = hi === undefined ? null : g.scalar(hi, x.dtype);
  const y = g.node1('Clip', [x, loT, hiT], x.dtype, x.shape);
  record('Clip', [x], [y], ([gy]) => {
    let inside: Tensor | null = null;
    if (loT) inside = greaterOrEqual(x, loT);
    if (hiT) inside = inside ? and(inside, lessOrEqual(x, hiT)) : lessOrEqual(x, hiT);
    return [inside ? where(inside, gy!, 0) : gy];
  });
  return y;
}

/** Converts element type; gradients flow back through float-to-float casts only. */
export function cast(x: Tensor, to: DType): Tensor {
  if (x.dtype === to) return x;
  const y = x.g.node1('Cast', [x], to, x.shape, { to: onnxDType(to) });
  if (isFloat(x.dtype) && isFloat(to)) record('Cast', [x], [y], ([gy]) => [cast(gy!, x.dtype)]);
  return y;
}

export function identity(x: Tensor): Tensor {
  const y = unary('Identity', x);
  record('Identity', [x], [y], ([gy]) => [gy]);
  return y;
}

// ---------------------------------------------------------------------------------------------
// Reductions and normalisations
// ---------------------------------------------------------------------------------------------

function axesOf(op: string, x: Tensor, axes: number[] | undefined): number[] {
  const all = axes ?? [...Array(x.rank).keys()];
  return [...new Set(all.map((a) => normAxis(a, x.rank, op)))].sort((p, q) => p - q);
}

/** Broadcasts a reduced gradient back to x's shape. */
function unreduce(gy: Tensor, x: Tensor, axes: number[], keepdims: boolean): Tensor {
  const gk = keepdims ? gy : unsqueeze(gy, axes);
  return expand(gk, x);
}

export function reduceSum(x: Tensor, axes?: number[], keepdims = false): Tensor {
  const ax = axesOf('ReduceSum', x, axes);
  const y = x.g.node1('ReduceSum', [x, x.g.ints(ax)], x.dtype, reduceShape(x.shape, ax, keepdims), { keepdims: keepdims ? 1 : 0 });
  record('ReduceSum', [x], [y], ([gy]) => [unreduce(gy!, x, ax, keepdims)]);
  return y;
}

/** The number of elements reduced over `axes`, as a scalar of x's dtype. */
function countOf(x: Tensor, axes: number[]): Tensor {
  const n = product(axes.map((a) => x.shape[a]!));
  if (n !== null) return x.g.scalar(n, x.dtype);
  const g = x.g;
  const dims = g.node1('Gather', [shapeOf(x), g.ints(axes)], 'int64', [axes.length], { axis: 0 });
  const p = g.node1('ReduceProd', [dims], 'int64', [], { keepdims: 0 });
  return g.node1('Cast', [p], x.dtype, [], { to: onnxDType(x.dtype) });
}

export function reduceMean(x: Tensor, axes?: number[], keepdims = false): Tensor {
  const ax = axesOf('ReduceMean', x, axes);
  const y = x.g.node1('ReduceMean', [x, x.g.ints(ax)], x.dtype, reduceShape(x.shape, ax, keepdims), { keepdims: keepdims ? 1 : 0 });
  record('ReduceMean', [x], [y], ([gy]) => [unreduce(div(gy!, countOf(x, ax)), x, ax, keepdims)]);
  return y;
}

/** Max over axes; the gradient is shared evenly among tied maxima. */
export function reduceMax(x: Tensor, axes?: number[], keepdims = false): Tensor {
  const ax = axesOf('ReduceMax', x, axes);
  const y = x.g.node1('ReduceMax', [x, x.g.ints(ax)], x.dtype, reduceShape(x.shape, ax, keepdims), { keepdims: keepdims ? 1 : 0 });
  record('ReduceMax', [x], [y], ([gy]) => {
    const yk = keepdims ? y : unsqueeze(y, ax);
    const gk = keepdims ? gy! : unsqueeze(gy!, ax);
    const mask = cast(equal(x, yk), x.dtype);
    const count = reduceSum(mask, ax, true);
    return [mul(mask, div(gk, count))];
  });
  return y;
}

export function softmax(x: Tensor, axis = -1): Tensor {
  requireFloat('Softmax', x);
  const a = normAxis(axis, x.rank, 'Softmax');
  const y = x.g.node1('Softmax', [x], x.dtype, x.shape, { axis: a });
  record('Softmax', [x], [y], ([gy]) => [mul(y, sub(gy!, reduceSum(mul(gy!, y), [a], true)))]);
  return y;
}

export function logSoftmax(x: Tensor, axis = -1): Tensor {
  requireFloat('LogSoftmax', x);
  const a = normAxis(axis, x.rank, 'LogSoftmax');
  const y = x.g.node1('LogSoftmax', [x], x.dtype, x.shape, { axis: a });
  record('LogSoftmax', [x], [y], ([gy]) => [sub(gy!, mul(exp(y), reduceSum(gy!, [a], true)))]);
  return y;
}

/**
 * LayerNormalization over the last dims from `axis` (Ba et al., "Layer Normalization", 2016),
 * the opset-17 op with its Mean/InvStdDev outputs kept for the backward pass.
 */
export function layerNorm(x: Tensor, scale: Tensor, bias: Tensor | null, eps = 1e-5, axis = -1): Tensor {
  requireFloat('LayerNormalization', x);
  const a = normAxis(axis, x.rank, 'LayerNormalization');
  const statShape = x.shape.map((d, i) => (i < a ? d : 1));
  // The op keeps its statistics in float32 (stash_type 1, the only kind onnxruntime's CPU kernel has).
  const stash: DType = 'float32';
  const [y, mean0, invStd0] = x.g.node(
    'LayerNormalization',
    [x, scale, bias],
    [
      { dtype: x.dtype, shape: x.shape },
      { dtype: stash, shape: statShape },
      { dtype: stash, shape: statShape },
    ],
    { axis: a, epsilon: { f: eps }, stash_type: onnxDType(stash) },
  ) as [Tensor, Tensor, Tensor];
  const ins = bias ? [x, scale, bias] : [x, scale];
  record('LayerNormalization', ins, [y], ([gy], n) => {
    const axes = [...Array(x.rank - a).keys()].map((i) => i + a);
    let mean = mean0;
    let invStd = invStd0;
    if (x.dtype !== stash) {
      // Other precisions recompute the statistics in their own dtype.
      mean = reduceMean(x, axes, true);
      const centered = sub(x, mean);
      invStd = div(1, sqrt(add(reduceMean(mul(centered, centered), axes, true), eps)));
    }
    const xhat = mul(sub(x, mean), invStd);
    const gxhat = mul(gy!, scale);
    const dx = n[0] && mul(invStd, sub(sub(gxhat, reduceMean(gxhat, axes, true)), mul(xhat, reduceMean(mul(gxhat, xhat), axes, true))));
    return [dx, n[1] && sumTo(mul(gy!, xhat), scale), bias && n[2] && sumTo(gy!, bias)];
  });
  return y;
}

/** RMSNorm (Zhang & Sennrich, "Root Mean Square Layer Normalization", 2019), composed. */
export function rmsNorm(x: Tensor, weight: Tensor, eps = 1e-6): Tensor {
  // Pow -> ReduceMean -> Add -> Sqrt -> Div -> Mul: the pattern onnxruntime fuses into one
  // SimplifiedLayerNormalization kernel in inference graphs.
  const ms = reduceMean(pow(x, 2), [-1], true);
  return mul(div(x, sqrt(add(ms, eps))), weight);
}

// ---------------------------------------------------------------------------------------------
// Linear algebra
// ---------------------------------------------------------------------------------------------

function swapLast2(x: Tensor): Tensor {
  const perm = [...Array(x.rank).keys()];
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return transpose(x, perm);
}

/**
 * Batched MatMul with broadcasting batch dims (ranks >= 2). A 2-D right operand against a batched
 * left operand takes its gradient as one GEMM over the flattened batch.
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  dtypeOf('MatMul', a, b);
  const y = a.g.node1('MatMul', [a, b], a.dtype, matmulShape(a.shape, b.shape));
  record('MatMul', [a, b], [y], ([gy], n) => {
    const da = n[0] && sumTo(matmul(gy!, swapLast2(b)), a);
    let db: Tensor | false = false;
    if (n[1]) {
      if (b.rank === 2 && a.rank > 2) {
        db = gemm(flatten2d(a), flatten2d(gy!), { transA: true });
      } else {
        db = sumTo(matmul(swapLast2(a), gy!), b);
      }
    }
    return [da, db];
  });
  return y;
}

/** Views x [..., d] as [N, d]. */
export function flatten2d(x: Tensor): Tensor {
  const d = x.dim(-1);
  if (typeof d === 'number') return reshape(x, [-1, d]);
  const g = x.g;
  const shape = g.node1('Concat', [g.ints([-1]), dimOf(x, -1)], 'int64', [2], { axis: 0 });
  return reshape(x, shape, [null, d]);
}

/**
 * A dense layer y = x W (+ b) on the last axis of x. `layout` is how W is stored: 'in_out'
 * ([in, out], GPT-2 Conv1D) or 'out_in' ([out, in], torch nn.Linear). The weight gradient is one
 * GEMM over the flattened batch, emitted directly in W's layout.
 */
export function linear(x: Tensor, w: Tensor, b: Tensor | null, layout: 'in_out' | 'out_in'): Tensor {
  const g = x.g;
  dtypeOf('linear', x, w);
  const inDim = w.shape[layout === 'in_out' ? 0 : 1]!;
  const outDim = w.shape[layout === 'in_out' ? 1 : 0]!;
  const xin = x.dim(-1);
  if (typeof inDim === 'number' && typeof xin === 'number' && inDim !== xin) {
    throw new Error(`linear: input ${x} has ${xin} features but weight ${w.name} ${fmtShape(w.shape)} expects ${inDim}`);
  }
  const yShape = [...x.shape.slice(0, -1), outDim];
  // a decode graph that quantises: a baked float32 weight becomes MatMulNBits (LoRA's small adapters stay float32)
  const baked = g.quantize && w.dtype === 'float32' && !w.name.includes('.lora_') ? g.initializerData(w.name) : undefined;
  if (baked) {
    const y = quantizedMatMul(x, w, baked as Float32Array, layout, g.quantize!);
    return b ? g.node1('Add', [y, b], x.dtype, yShape) : y;
  }
  const wt = layout === 'in_out' ? w : g.node1('Transpose', [w], w.dtype, [inDim, outDim], { perm: [1, 0] });
  let y = g.node1('MatMul', [x, wt], x.dtype, yShape);
  if (b) y = g.node1('Add', [y, b], x.dtype, yShape);
  record('linear', b ? [x, w, b] : [x, w], [y], ([gy], n) => {
    const g2 = n[1] || n[2] ? flatten2d(gy!) : null;
    const dx =
      n[0] &&
      g.node1(
        'MatMul',
        [gy!, layout === 'in_out' ? g.node1('Transpose', [w], w.dtype, [outDim, inDim], { perm: [1, 0] }) : w],
        x.dtype,
        x.shape,
      );
    const dw = n[1] && (layout === 'in_out' ? gemm(flatten2d(x), g2!, { transA: true }) : gemm(g2!, flatten2d(x), { transA: true }));
    const db = b && n[2] && reduceSum(g2!, [0]);
    return [dx, dw, db];
  });
  return y;
}

/** Pads x with zeros: `pads` = [begin..., end...] for `axes` (static). Gradient: a slice. */
export function pad(x: Tensor, pads: number[], axes: number[]): Tensor {
  const g = x.g;
  const ax = axes.map((a) => normAxis(a, x.rank, 'Pad'));
  if (pads.length !== 2 * ax.length) throw new Error(`Pad: ${ax.length} axes need ${2 * ax.length} pads, got ${pads.length}`);
  const out = x.shape.slice();
  ax.forEach((a, i) => {
    const d = x.shape[a];
    out[a] = typeof d === 'number' ? d + pads[i]! + pads[i + ax.length]! : null;
  });
  const y = g.node1('Pad', [x, g.ints(pads), null, g.ints(ax)], x.dtype, out, { mode: 'constant' });
  record('Pad', [x], [y], ([gy]) => [
    slice(
      gy!,
      ax.map((_, i) => pads[i]!),
      ax.map((_, i) => (pads[i + ax.length]! > 0 ? -pads[i + ax.length]! : 2 ** 62)),
      ax,
    ),
  ]);
  return y;
}

/** 2-D Gemm: op(a) @ op(b) (+ c), op = optional transpose. */
export function gemm(a: Tensor, b: Tensor, opts: { transA?: boolean; transB?: boolean; c?: Tensor } = {}): Tensor {
  if (a.rank !== 2 || b.rank !== 2) throw new Error(`Gemm: operands must be 2-D, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`);
  const ta = !!opts.transA;
  const tb = !!opts.transB;
  const m = a.shape[ta ? 1 : 0]!;
  const k1 = a.shape[ta ? 0 : 1]!;
  const k2 = b.shape[tb ? 1 : 0]!;
  const nn = b.shape[tb ? 0 : 1]!;
  if (typeof k1 === 'number' && typeof k2 === 'number' && k1 !== k2) {
    throw new Error(`Gemm: inner dimensions differ: ${fmtShape(a.shape)}${ta ? 'ᵀ' : ''} @ ${fmtShape(b.shape)}${tb ? 'ᵀ' : ''}`);
  }
  const c = opts.c ?? null;
  const y = a.g.node1('Gemm', [a, b, c], a.dtype, [m, nn], { transA: ta ? 1 : 0, transB: tb ? 1 : 0 });
  const ins = c ? [a, b, c] : [a, b];
  record('Gemm', ins, [y], ([gy], n) => [
    // y = A' B' with A' = op(a), B' = op(b): dA' = gy B'^T, dB' = A'^T gy
    n[0] && (ta ? gemm(b, gy!, { transA: tb, transB: true }) : gemm(gy!, b, { transB: !tb })),
    n[1] && (tb ? gemm(gy!, a, { transA: true, transB: ta }) : gemm(a, gy!, { transA: !ta })),
    c && n[2] && sumTo(gy!, c),
  ]);
  return y;
}

// ---------------------------------------------------------------------------------------------
// Indexing
// ---------------------------------------------------------------------------------------------

/** Gather along `axis` (embedding lookup at axis 0); the gradient is a ScatterND add into zeros. */
export function gather(data: Tensor, indices: Tensor, axis = 0): Tensor {
  if (indices.dtype !== 'int64' && indices.dtype !== 'int32')
    throw new Error(`Gather: indices ${indices.name} must be int64 or int32, got ${indices.dtype}`);
  const a = normAxis(axis, data.rank, 'Gather');
  const shape = [...data.shape.slice(0, a), ...indices.shape, ...data.shape.slice(a + 1)];
  const y = data.g.node1('Gather', [data, indices], data.dtype, shape, { axis: a });
  record('Gather', [data], [y], ([gy]) => {
    if (a !== 0) throw new Error('Gather: gradients are implemented for axis 0 only');
    const idx = unsqueeze(cast(indices, 'int64'), [-1]);
    return [data.g.node1('ScatterND', [zerosLike(data), idx, gy!], data.dtype, data.shape, { reduction: 'add' })];
  });
  return y;
}

/** GatherElements (picks per-position entries, e.g. target-token logprobs); grad: ScatterElements add. */
export function gatherElements(data: Tensor, indices: Tensor, axis = -1): Tensor {
  const a = normAxis(axis, data.rank, 'GatherElements');
  if (indices.rank !== data.rank)
    throw new Error(`GatherElements: indices ${indices.name} must have the rank of ${data.name} (${data.rank})`);
  const y = data.g.node1('GatherElements', [data, indices], data.dtype, indices.shape, { axis: a });
  record('GatherElements', [data], [y], ([gy]) => [
    data.g.node1('ScatterElements', [zerosLike(data), indices, gy!], data.dtype, data.shape, { axis: a, reduction: 'add' }),
  ]);
  return y;
}

// ---------------------------------------------------------------------------------------------
// Shape manipulation
// ---------------------------------------------------------------------------------------------

/** Reshape to a static target (0 copies a dim, -1 infers one) or to a runtime int64 shape tensor. */
export function reshape(x: Tensor, shape: number[] | Tensor, staticShape?: Shape): Tensor {
  const g = x.g;
  let out: Shape;
  let shapeT: Tensor;
  if (shape instanceof Tensor) {
    shapeT = shape;
    const n = shape.shape[0];
    out = staticShape ?? (typeof n === 'number' ? Array<null>(n).fill(null) : []);
  } else {
    shapeT = g.ints(shape);
    out = staticShape ?? reshapeShape(`Reshape ${x.name}`, x.shape, shape);
  }
  const y = g.node1('Reshape', [x, shapeT], x.dtype, out);
  record('Reshape', [x], [y], ([gy]) => [reshape(gy!, shapeOf(x), x.shape)]);
  return y;
}

export function transpose(x: Tensor, perm: number[]): Tensor {
  if (perm.length !== x.rank || [...perm].sort((p, q) => p - q).some((p, i) => p !== i)) {
    throw new Error(`Transpose: perm [${perm.join(', ')}] is not a permutation of ${x.rank} axes of ${x.name}`);
  }
  const y = x.g.node1(
    'Transpose',
    [x],
    x.dtype,
    perm.map((p) => x.shape[p]!),
    { perm },
  );
  const inv = perm.map((_, i) => perm.indexOf(i));
  record('Transpose', [x], [y], ([gy]) => [transpose(gy!, inv)]);
  return y;
}

export function unsqueeze(x: Tensor, axes: number[]): Tensor {
  const rank = x.rank + axes.length;
  const ax = axes.map((a) => normAxis(a, rank, 'Unsqueeze')).sort((p, q) => p - q);
  const out: Shape = [];
  let k = 0;
  for (let i = 0; i < rank; i++) out.push(ax.includes(i) ? 1 : x.shape[k++]!);
  const y = x.g.node1('Unsqueeze', [x, x.g.ints(ax)], x.dtype, out);
  record('Unsqueeze', [x], [y], ([gy]) => [squeeze(gy!, ax)]);
  return y;
}

export function squeeze(x: Tensor, axes: number[]): Tensor {
  const ax = axes.map((a) => normAxis(a, x.rank, 'Squeeze')).sort((p, q) => p - q);
  for (const a of ax) {
    const d = x.shape[a];
    if (typeof d === 'number' && d !== 1) throw new Error(`Squeeze: axis ${a} of ${x.name} ${fmtShape(x.shape)} is not 1`);
  }
  const y = x.g.node1(
    'Squeeze',
    [x, x.g.ints(ax)],
    x.dtype,
    x.shape.filter((_, i) => !ax.includes(i)),
  );
  record('Squeeze', [x], [y], ([gy]) => [unsqueeze(gy!, ax)]);
  return y;
}

/** Broadcasts x to the shape of `like` (a tensor: its runtime shape) or to a static shape. */
export function expand(x: Tensor, like: Tensor | number[]): Tensor {
  const g = x.g;
  const shapeT = like instanceof Tensor ? shapeOf(like) : g.ints(like);
  const target = like instanceof Tensor ? like.shape : like;
  const y = g.node1('Expand', [x, shapeT], x.dtype, broadcastShapes('Expand', x.shape, target));
  record('Expand', [x], [y], ([gy]) => [sumTo(gy!, x)]);
  return y;
}

/** Normalised static slice start of one axis; the runtime form when the dim is not static. */
function sliceStart(x: Tensor, axis: number, start: number): Tensor | number {
  const d = x.shape[axis];
  if (typeof d === 'number') return start < 0 ? Math.max(start + d, 0) : Math.min(start, d);
  const g = x.g;
  const dt = dimOf(x, axis);
  return start < 0
    ? g.node1('Max', [g.node1('Add', [dt, g.ints([start])], 'int64', [1]), g.ints([0])], 'int64', [1])
    : g.node1('Min', [g.ints([start]), dt], 'int64', [1]);
}

/**
 * Slice with static starts/ends (numpy semantics, negative from the end, clamped) along `axes`,
 * step 1. The gradient pads the incoming gradient with zeros back to x's shape.
 */
export function slice(x: Tensor, starts: number[], ends: number[], axes?: number[]): Tensor {
  const g = x.g;
  const ax = (axes ?? starts.map((_, i) => i)).map((a) => normAxis(a, x.rank, 'Slice'));
  if (starts.length !== ax.length || ends.length !== ax.length) throw new Error('Slice: starts, ends and axes must have the same length');
  const out = x.shape.slice();
  ax.forEach((a, i) => {
    const d = x.shape[a];
    const s = starts[i]!;
    const e = ends[i]!;
    if (typeof d === 'number') {
      const ss = s < 0 ? Math.max(s + d, 0) : Math.min(s, d);
      const ee = e < 0 ? Math.max(e + d, 0) : Math.min(e, d);
      out[a] = Math.max(ee - ss, 0);
    } else if (s >= 0 && e >= 0 && e < 2 ** 62) out[a] = null;
    else out[a] = null;
  });
  const y = g.node1('Slice', [x, g.ints(starts), g.ints(ends), g.ints(ax)], x.dtype, out);
  record('Slice', [x], [y], ([gy]) => {
    const begins: (Tensor | number)[] = [];
    const endPads: (Tensor | number)[] = [];
    ax.forEach((a, i) => {
      const s = sliceStart(x, a, starts[i]!);
      begins.push(s);
      const d = x.shape[a];
      const len = y.shape[a];
      if (typeof d === 'number' && typeof len === 'number' && typeof s === 'number') endPads.push(d - len - s);
      else {
        const sT = typeof s === 'number' ? g.ints([s]) : s;
        endPads.push(g.node1('Sub', [g.node1('Sub', [dimOf(x, a), dimOf(y, a)], 'int64', [1]), sT], 'int64', [1]));
      }
    });
    const all = [...begins, ...endPads];
    const pads = all.every((p) => typeof p === 'number')
      ? g.ints(all as number[])
      : g.node1(
          'Concat',
          all.map((p) => (typeof p === 'number' ? g.ints([p]) : p)),
          'int64',
          [all.length],
          { axis: 0 },
        );
    return [g.node1('Pad', [gy!, pads, null, g.ints(ax)], x.dtype, x.shape, { mode: 'constant' })];
  });
  return y;
}

export function concat(xs: Tensor[], axis: number): Tensor {
  if (xs.length === 0) throw new Error('Concat: needs at least one tensor');
  const g = xs[0]!.g;
  const rank = xs[0]!.rank;
  const a = normAxis(axis, rank, 'Concat');
  dtypeOf('Concat', ...xs);
  for (const x of xs) if (x.rank !== rank) throw new Error(`Concat: ranks differ (${x.name} has rank ${x.rank}, expected ${rank})`);
  const out = xs[0]!.shape.map((d, i) => {
    if (i === a) {
      const sizes = xs.map((x) => x.shape[a]!);
      return sizes.every((s) => typeof s === 'number') ? (sizes as number[]).reduce((p, q) => p + q, 0) : null;
    }
    const ds = xs.map((x) => x.shape[i]!);
    const known = ds.find((q) => q !== null);
    return ds.every((q) => sameDim(q, ds[0]!)) ? ds[0]! : typeof known === 'number' ? known : null;
  });
  const y = g.node1('Concat', xs, xs[0]!.dtype, out, { axis: a });
  record('Concat', xs, [y], ([gy]) => {
    const sizes = xs.map((x) => x.shape[a]!);
    const split = sizes.every((s) => typeof s === 'number')
      ? g.ints(sizes as number[])
      : g.node1(
          'Concat',
          xs.map((x) => dimOf(x, a)),
          'int64',
          [xs.length],
          { axis: 0 },
        );
    const parts = g.node(
      'Split',
      [gy!, split],
      xs.map((x) => ({ dtype: x.dtype, shape: x.shape })),
      { axis: a },
    );
    return parts;
  });
  return y;
}

/** Splits x along `axis` into pieces of the given static sizes. */
export function split(x: Tensor, sizes: number[], axis: number): Tensor[] {
  const g = x.g;
  const a = normAxis(axis, x.rank, 'Split');
  const d = x.shape[a];
  const total = sizes.reduce((p, q) => p + q, 0);
  if (typeof d === 'number' && d !== total)
    throw new Error(`Split: sizes [${sizes.join(', ')}] sum to ${total}, but axis ${a} of ${x.name} is ${d}`);
  const ys = g.node(
    'Split',
    [x, g.ints(sizes)],
    sizes.map((s) => ({ dtype: x.dtype, shape: x.shape.map((q, i) => (i === a ? s : q)) })),
    { axis: a },
  );
  record('Split', [x], ys, (gys) => [
    concat(
      gys.map((gy, i) => gy ?? zerosLike(ys[i]!)),
      a,
    ),
  ]);
  return ys;
}

// ---------------------------------------------------------------------------------------------
// Non-differentiable helpers
// ---------------------------------------------------------------------------------------------

/** int64 Range(start, limit, delta) with runtime bounds. */
export function range(start: Tensor, limit: Tensor, delta: Tensor): Tensor {
  return start.g.node1('Range', [start, limit, delta], start.dtype, [null]);
}

/** Marks x as a constant for autodiff (no gradient flows through). */
export function stopGradient(x: Tensor): Tensor {
  return x.g.node1('Identity', [x], x.dtype, x.shape);
}

export function shapesEqual(a: Shape, b: Shape): boolean {
  return sameShape(a, b);
}
