/**
 * Gradient checking against central finite differences computed by onnxruntime itself.
 *
 * For a case `y = build(x1, ..., xn)` the checker builds one graph that outputs
 * `L = sum(y * R)` (R a fixed random tensor, so every element of y and every permutation of it
 * matters) and the autodiff gradients dL/dxi, then compares every gradient element with
 * `(L(x + h e) - L(x - h e)) / 2h`, each L evaluated by running the same ONNX session.
 *
 * Each case runs twice: with static input shapes (the autodiff reduces broadcast gradients over
 * axes known at build time) and with every dimension unknown (it must use runtime `Shape` maths).
 */
import assert from 'node:assert/strict';
import ort from 'onnxruntime-node';
import { Graph, type DType, type Shape, type Tensor } from '../../../activities/model/graph.js';
import { mul, reduceSum } from '../../../activities/model/ops.js';
import { grad } from '../../../activities/model/autodiff.js';
import { CounterRng, hash32 } from '../../../activities/common/rng.js';

export interface GradInput {
  name: string;
  shape: number[];
  /** 'normal' (default), 'positive' (in [0.5, 2)), 'int' (indices in [0, high)), 'bool'. */
  kind?: 'normal' | 'positive' | 'int' | 'bool';
  high?: number;
  /** Explicit values (overrides kind). */
  values?: number[];
  /** Shape declared in the non-static run (default: every dim unknown). */
  declared?: Shape;
}

export interface GradCase {
  name: string;
  /** float64 (default) where ORT's CPU kernels support double; else float32 with looser tolerances. */
  dtype?: 'float64' | 'float32';
  inputs: GradInput[];
  build: (...xs: Tensor[]) => Tensor;
  /** Which dims to declare: static, unknown (null), or both runs (default). */
  shapes?: 'static' | 'unknown' | 'both';
  rtol?: number;
  atol?: number;
  h?: number;
  /** onnxruntime graph optimisation level (default 'all'). */
  optimization?: 'basic' | 'all';
}

/** Tolerances: float64 differences are accurate to ~1e-8; float32 to ~1e-3 relative. */
export const TOL = {
  float64: { h: 1e-6, rtol: 1e-6, atol: 1e-8 },
  float32: { h: 1e-2, rtol: 3e-2, atol: 3e-3 },
} as const;

function inputDType(inp: GradInput, dtype: DType): DType {
  return inp.kind === 'int' ? 'int64' : inp.kind === 'bool' ? 'bool' : dtype;
}

function makeData(c: GradCase, i: number, dtype: DType): number[] {
  const inp = c.inputs[i]!;
  if (inp.values) return inp.values;
  const n = inp.shape.reduce((a, b) => a * b, 1);
  const rng = new CounterRng(7, hash32(c.name), i);
  const out: number[] = [];
  for (let k = 0; k < n; k++) {
    switch (inp.kind ?? 'normal') {
      case 'normal':
        out.push(rng.normal(k));
        break;
      case 'positive':
        out.push(0.5 + 1.5 * rng.uniform(k));
        break;
      case 'int':
        out.push(rng.int(k, inp.high ?? 2));
        break;
      case 'bool':
        out.push(rng.uniform(k) < 0.5 ? 1 : 0);
        break;
    }
  }
  void dtype;
  return out;
}

function ortTensor(dtype: DType, data: number[], dims: number[]): ort.Tensor {
  switch (dtype) {
    case 'float64':
      return new ort.Tensor('float64', Float64Array.from(data), dims);
    case 'float32':
      return new ort.Tensor('float32', Float32Array.from(data), dims);
    case 'int64':
      return new ort.Tensor('int64', BigInt64Array.from(data.map(BigInt)), dims);
    case 'bool':
      return new ort.Tensor('bool', Uint8Array.from(data), dims);
    default:
      throw new Error(`gradcheck: dtype ${dtype}`);
  }
}

async function runCase(c: GradCase, mode: 'static' | 'unknown'): Promise<void> {
  const dtype: DType = c.dtype ?? 'float64';
  const tol = { ...TOL[dtype], ...(c.h ? { h: c.h } : {}), ...(c.rtol ? { rtol: c.rtol } : {}), ...(c.atol ? { atol: c.atol } : {}) };
  const data = c.inputs.map((_, i) => makeData(c, i, dtype));
  const declared = (inp: GradInput): Shape => (mode === 'static' ? inp.shape.slice() : (inp.declared ?? inp.shape.map(() => null)));

  // Probe y's runtime shape with a forward-only graph.
  const probe = new Graph({ name: `${c.name}-probe` });
  const pxs = c.inputs.map((inp) => probe.input(inp.name, inputDType(inp, dtype), declared(inp)));
  probe.output(c.build(...pxs), 'y');
  const feeds = (vals: number[][]): Record<string, ort.Tensor> =>
    Object.fromEntries(c.inputs.map((inp, i) => [inp.name, ortTensor(inputDType(inp, dtype), vals[i]!, inp.shape)]));
  const ps = await ort.InferenceSession.create(probe.toBytes(), { graphOptimizationLevel: c.optimization ?? 'all' });
  const yDims = (await ps.run(feeds(data))).y!.dims as number[];
  await ps.release();

  const g = new Graph({ name: c.name, tape: true });
  const xs = c.inputs.map((inp) => g.input(inp.name, inputDType(inp, dtype), declared(inp)));
  const y = c.build(...xs);
  const r = g.input('R', dtype, mode === 'static' ? yDims.slice() : yDims.map(() => null));
  const loss = reduceSum(mul(y, r));
  g.output(loss, 'L');
  const diff = c.inputs.map((inp) => !inp.kind || inp.kind === 'normal' || inp.kind === 'positive');
  const wrt = xs.filter((_, i) => diff[i]);
  const grads = grad(loss, wrt);
  grads.forEach((gr, k) => {
    assert.ok(gr, `${c.name}: no gradient path to ${wrt[k]!.name}`);
    g.output(gr, `grad_${wrt[k]!.name}`);
  });
  const session = await ort.InferenceSession.create(g.toBytes(), { intraOpNumThreads: 1, graphOptimizationLevel: c.optimization ?? 'all' });
  const rng = new CounterRng(11, hash32(c.name), 99);
  const rData = Array.from({ length: yDims.reduce((a, b) => a * b, 1) }, (_, k) => rng.normal(k));
  const run = async (vals: number[][]) => session.run({ ...feeds(vals), R: ortTensor(dtype, rData, yDims) });
  const base = await run(data);

  for (let i = 0; i < c.inputs.length; i++) {
    if (!diff[i]) continue;
    const inp = c.inputs[i]!;
    const analytic = base[`grad_${inp.name}`]!;
    assert.deepEqual(analytic.dims, inp.shape, `${c.name} [${mode}]: gradient of ${inp.name} has shape [${analytic.dims}]`);
    const a = analytic.data as Float64Array | Float32Array;
    for (let k = 0; k < data[i]!.length; k++) {
      const plus = data.map((v) => v.slice());
      const minus = data.map((v) => v.slice());
      plus[i]![k]! += tol.h;
      minus[i]![k]! -= tol.h;
      const lp = Number((await run(plus)).L!.data[0]);
      const lm = Number((await run(minus)).L!.data[0]);
      const numeric = (lp - lm) / (2 * tol.h);
      const err = Math.abs(a[k]! - numeric);
      assert.ok(
        err <= tol.atol + tol.rtol * Math.abs(numeric),
        `${c.name} [${mode} shapes, ${dtype}]: d L / d ${inp.name}[${k}] analytic ${a[k]} vs finite difference ${numeric} (|err| ${err.toExponential(2)})`,
      );
    }
  }
  await session.release();
}

/** Checks one case (both shape modes unless it says otherwise). */
export async function checkGrad(c: GradCase): Promise<void> {
  const modes =
    c.shapes === 'static' ? (['static'] as const) : c.shapes === 'unknown' ? (['unknown'] as const) : (['static', 'unknown'] as const);
  for (const m of modes) await runCase(c, m);
}
