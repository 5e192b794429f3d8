/**
 * Build-time shape arithmetic for the graph builder: broadcasting, reductions, reshapes, matmul.
 * A dimension is a number (static), a string (a named symbolic dimension) or null (unknown).
 * Two dims are provably equal only when both are the same number or the same symbol.
 */
import type { Dim, Shape } from './graph.js';

export function sameDim(a: Dim, b: Dim): boolean {
  return a !== null && a === b;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => sameDim(d, b[i]!));
}

export function fmtShape(s: Shape): string {
  return `[${s.map((d) => d ?? '?').join(', ')}]`;
}

/** Numpy-style broadcast of shapes; throws when two static dims disagree. */
export function broadcastShapes(op: string, ...shapes: Shape[]): Shape {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: Shape = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim | undefined;
    for (const s of shapes) {
      const k = s.length - rank + i;
      if (k < 0) continue;
      d = mergeBroadcastDim(op, d, s[k]!, shapes);
    }
    out.push(d === undefined ? 1 : d);
  }
  return out;
}

function mergeBroadcastDim(op: string, a: Dim | undefined, b: Dim, shapes: Shape[]): Dim {
  if (a === undefined || a === 1) return b;
  if (b === 1) return a;
  if (a === b) return a;
  if (typeof a === 'number' && typeof b === 'number') {
    throw new Error(`${op}: shapes ${shapes.map(fmtShape).join(' and ')} do not broadcast (dimension ${a} vs ${b})`);
  }
  if (typeof a === 'number') return a;
  if (typeof b === 'number') return b;
  return null;
}

export function normAxis(axis: number, rank: number, op = 'op'): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`${op}: axis ${axis} is out of range for rank ${rank}`);
  return a;
}

export function reduceShape(shape: Shape, axes: number[], keepdims: boolean): Shape {
  const set = new Set(axes);
  const out: Shape = [];
  shape.forEach((d, i) => {
    if (set.has(i)) {
      if (keepdims) out.push(1);
    } else out.push(d);
  });
  return out;
}

export function product(shape: Shape): number | null {
  let p = 1;
  for (const d of shape) {
    if (typeof d !== 'number') return null;
    p *= d;
  }
  return p;
}

/** Output shape of Reshape with a static target (0 copies the input dim, -1 is inferred). */
export function reshapeShape(op: string, input: Shape, target: number[]): Shape {
  const out: Shape = target.map((d, i) => (d === 0 ? (input[i] ?? null) : d === -1 ? null : d));
  const inferred = target.indexOf(-1);
  if (target.filter((d) => d === -1).length > 1) throw new Error(`${op}: at most one -1 in target shape [${target.join(', ')}]`);
  const total = product(input);
  if (inferred >= 0) {
    const known = out.filter((_, i) => i !== inferred);
    const p = product(known);
    if (total !== null && p !== null) {
      if (p === 0 || total % p !== 0) throw new Error(`${op}: cannot reshape ${fmtShape(input)} to [${target.join(', ')}]`);
      out[inferred] = total / p;
    } else if (p !== null && p !== 0) {
      // [A, B, C] -> [-1, C] keeps the symbolic product unknown; the one common case we can name:
      const rest = input.filter((d) => typeof d !== 'number');
      const inStatic = product(input.filter((d) => typeof d === 'number'));
      if (rest.length === 1 && inStatic === p) out[inferred] = rest[0]!;
    }
  } else if (total !== null) {
    const p = product(out);
    if (p !== null && p !== total)
      throw new Error(`${op}: cannot reshape ${fmtShape(input)} (${total} elements) to [${target.join(', ')}] (${p})`);
  }
  return out;
}

/** Output shape of (batched, broadcasting) MatMul of ranks >= 2. */
export function matmulShape(a: Shape, b: Shape): Shape {
  if (a.length < 2 || b.length < 2) throw new Error(`MatMul: operands must have rank >= 2, got ${fmtShape(a)} and ${fmtShape(b)}`);
  const k1 = a[a.length - 1]!;
  const k2 = b[b.length - 2]!;
  if (typeof k1 === 'number' && typeof k2 === 'number' && k1 !== k2) {
    throw new Error(`MatMul: inner dimensions differ: ${fmtShape(a)} @ ${fmtShape(b)}`);
  }
  const batch = broadcastShapes('MatMul', a.slice(0, -2), b.slice(0, -2));
  return [...batch, a[a.length - 2]!, b[b.length - 1]!];
}
