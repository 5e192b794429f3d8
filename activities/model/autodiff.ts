/**
 * Reverse-mode automatic differentiation at graph-build time.
 *
 * Ops in `ops.ts` record on the graph's tape how to emit their gradient. `grad(loss, wrt)` walks
 * the tape backwards from `loss`, asks each op on the path from `wrt` to `loss` for the gradients
 * of the inputs that need one, and sums the contributions of tensors used more than once (one
 * variadic `Sum` node). The result is ordinary ONNX nodes in the same graph: the backward pass runs
 * in onnxruntime like the forward.
 */
import type { Tensor } from './graph.js';
import { constantOfShape, shapeOf } from './ops.js';

/**
 * Gradients of scalar (or any-shaped, with `seed`) `y` with respect to each tensor of `wrt`.
 * Returns null for a tensor `y` does not depend on. `seed` defaults to ones shaped like `y`.
 */
export function grad(y: Tensor, wrt: Tensor[], seed?: Tensor): (Tensor | null)[] {
  const g = y.g;
  const tape = g.tape;
  if (!tape) throw new Error(`grad: graph ${g.name} records no tape (create it with { tape: true })`);
  return g.noTape(() => {
    // Forward sweep: which tensors depend on wrt.
    const dependent = new Set<string>(wrt.map((t) => t.name));
    const live: boolean[] = tape.map((e) => {
      const on = e.inputs.some((t) => dependent.has(t.name));
      if (on) for (const o of e.outputs) dependent.add(o.name);
      return on;
    });
    if (!dependent.has(y.name)) return wrt.map(() => null);

    const pending = new Map<string, Tensor[]>();
    const static_ = y.shape.every((d) => typeof d === 'number');
    const start =
      seed ??
      (static_
        ? g.constant(new Array<number>((y.shape as number[]).reduce((p, q) => p * q, 1)).fill(1), y.dtype, y.shape as number[])
        : constantOfShape(shapeOf(y), 1, y.dtype, y.shape));
    pending.set(y.name, [start]);

    const total = (t: Tensor): Tensor | null => {
      const parts = pending.get(t.name);
      if (!parts || parts.length === 0) return null;
      if (parts.length === 1) return parts[0]!;
      const s = g.node1('Sum', parts, t.dtype, t.shape);
      pending.set(t.name, [s]);
      return s;
    };

    for (let i = tape.length - 1; i >= 0; i--) {
      if (!live[i]) continue;
      const e = tape[i]!;
      const gOut = e.outputs.map(total);
      if (gOut.every((q) => q === null)) continue;
      const needs = e.inputs.map((t) => dependent.has(t.name));
      const gIn = g.scope(`grad.${e.op}`, () => e.backward(gOut, needs));
      e.inputs.forEach((t, k) => {
        const gi = gIn[k];
        if (!needs[k] || !gi) return;
        if (gi.dtype !== t.dtype) throw new Error(`grad: ${e.op} returned a ${gi.dtype} gradient for ${t}`);
        const list = pending.get(t.name);
        if (list) list.push(gi);
        else pending.set(t.name, [gi]);
      });
    }
    return wrt.map(total);
  });
}
