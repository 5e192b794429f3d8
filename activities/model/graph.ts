/**
 * The ONNX graph builder: a typed TypeScript API that collects nodes, graph inputs, outputs,
 * initializers and constants, and serialises them to an ONNX `ModelProto` (protobuf bytes through
 * the `onnx-proto` definitions) that `InferenceSession.create` loads directly.
 *
 * Every value is a `Tensor`: a name in the graph plus its element type and its shape as far as it
 * is known at build time. A dimension is a number (static), a string (a named symbolic dimension,
 * e.g. `batch` or `seq`, which becomes a `dim_param` on graph inputs and outputs), or `null`
 * (unknown until run time). Ops (see `ops.ts`) infer output shapes from input shapes so that the
 * autodiff can decide statically where gradients must be reduced over broadcast dimensions.
 *
 * Names are scoped: `g.scope('model.layers.0', () => ...)` prefixes the names of every node and
 * intermediate value created inside, so a dump of a graph reads like the model that produced it.
 */
import onnxProto from 'onnx-proto';
import type { QuantizeSpec } from './quantize.js';

const { onnx } = onnxProto;
type IModelProto = onnxProto.onnx.IModelProto;
type INodeProto = onnxProto.onnx.INodeProto;
type ITensorProto = onnxProto.onnx.ITensorProto;
type IValueInfoProto = onnxProto.onnx.IValueInfoProto;
type IAttributeProto = onnxProto.onnx.IAttributeProto;

/** Default ONNX opset of every graph durable-rl builds (20: Gelu, reduction axes as inputs). */
export const OPSET = 20;
/** IR version matching opset 20. */
export const IR_VERSION = 9;

export type DType = 'float32' | 'float64' | 'float16' | 'int64' | 'int32' | 'bool' | 'uint8' | 'int8';
export type Dim = number | string | null;
export type Shape = Dim[];

const ONNX_DTYPE: Record<DType, number> = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
};
const DTYPE_OF_ONNX: Record<number, DType> = Object.fromEntries(Object.entries(ONNX_DTYPE).map(([k, v]) => [v, k as DType]));
export const BYTES_PER_ELEMENT: Record<DType, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  int64: 8,
  int32: 4,
  bool: 1,
  uint8: 1,
  int8: 1,
};

export function onnxDType(d: DType): number {
  return ONNX_DTYPE[d];
}
export function dtypeOfOnnx(code: number): DType {
  const d = DTYPE_OF_ONNX[code];
  if (!d) throw new Error(`unsupported ONNX element type ${code}`);
  return d;
}
export function isFloat(d: DType): boolean {
  return d === 'float32' || d === 'float64' || d === 'float16';
}

/** Typed array holding elements of a dtype (int64 as BigInt64Array, bool as Uint8Array). */
export type TypedData = Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array | Int8Array;

/** Converts plain numbers into the typed array of a dtype. */
export function typedArray(dtype: DType, values: ArrayLike<number | bigint>): TypedData {
  const n = values.length;
  switch (dtype) {
    case 'float32':
      return Float32Array.from(values as ArrayLike<number>);
    case 'float64':
      return Float64Array.from(values as ArrayLike<number>);
    case 'int32':
      return Int32Array.from(values as ArrayLike<number>);
    case 'uint8':
    case 'bool':
      return Uint8Array.from(values as ArrayLike<number>, (v) => Number(v));
    case 'int8':
      return Int8Array.from(values as ArrayLike<number>);
    case 'int64': {
      const out = new BigInt64Array(n);
      for (let i = 0; i < n; i++) out[i] = BigInt(values[i]!);
      return out;
    }
    case 'float16':
      throw new Error('float16 constants must be given as raw Uint16Array bits');
  }
}

/** Attribute values: numbers are INT, number[] INTS, strings STRING; wrap floats in `{ f }` / `{ floats }`. */
export type AttrValue = number | number[] | string | { f: number } | { floats: number[] } | { t: ITensorProto };
export type Attrs = Record<string, AttrValue | undefined>;

/** A value in a graph: its name, element type and (partially) known shape. */
export class Tensor {
  constructor(
    readonly g: Graph,
    readonly name: string,
    readonly dtype: DType,
    readonly shape: Shape,
  ) {}
  get rank(): number {
    return this.shape.length;
  }
  /** Static size of a dimension (negative axes count from the end), or null when not static. */
  dim(axis: number): Dim {
    return this.shape[axis < 0 ? this.shape.length + axis : axis] ?? null;
  }
  toString(): string {
    return `${this.name}: ${this.dtype}[${this.shape.map((d) => d ?? '?').join(', ')}]`;
  }
}

/** One recorded op on the autodiff tape: how to turn output gradients into input gradients. */
export interface TapeEntry {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  readonly outputs: readonly Tensor[];
  /** Receives one gradient (or null) per output and which inputs need one; returns one per input. */
  readonly backward: (gradOutputs: (Tensor | null)[], needs: boolean[]) => (Tensor | null | false | undefined)[];
}

interface NodeRecord {
  opType: string;
  domain: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attrs: Attrs;
}

interface Initializer {
  name: string;
  dtype: DType;
  dims: number[];
  data: TypedData;
}

export interface GraphOptions {
  /** Graph name (shows in dumps and in ONNX tooling). */
  name?: string;
  /** Record ops on the autodiff tape (needed only for graphs that call `grad`). Default false. */
  tape?: boolean;
  /** ONNX opset (default `OPSET`). */
  opset?: number;
  /** Quantise the linear layers on baked float32 weights (`quantize.ts`; decode graphs only, no tape). */
  quantize?: QuantizeSpec | null;
}

/** Builds one ONNX graph. */
export class Graph {
  readonly name: string;
  readonly opset: number;
  readonly nodes: NodeRecord[] = [];
  readonly inputs: Tensor[] = [];
  readonly outputs: Tensor[] = [];
  readonly initializers: Initializer[] = [];
  /** The autodiff tape (null when the graph records none). */
  tape: TapeEntry[] | null;
  /** How `linear` quantises baked weights (null: it does not). */
  readonly quantize: QuantizeSpec | null;
  private readonly used = new Set<string>();
  private readonly scopes: string[] = [];
  private readonly constCache = new Map<string, Tensor>();
  private readonly constValues = new Map<string, number[]>();
  private readonly shapeCache = new Map<string, Tensor>();
  private readonly domains = new Map<string, number>();
  private counter = 0;
  /** Values produced by nodes (renameable as outputs). */
  private readonly produced = new Set<string>();
  /** Node outputs renamed to graph-output names (applied when serialising). */
  private readonly alias = new Map<string, string>();

  constructor(opts: GraphOptions = {}) {
    this.name = opts.name ?? 'graph';
    this.opset = opts.opset ?? OPSET;
    this.tape = opts.tape ? [] : null;
    this.quantize = opts.quantize ?? null;
    if (this.quantize && this.tape)
      throw new Error(`graph ${this.name}: quantized linear layers have no gradient; build it without a tape`);
  }

  /** The data of initializer `name` (undefined for inputs and node outputs). */
  initializerData(name: string): TypedData | undefined {
    return this.initializers.find((i) => i.name === name)?.data;
  }

  /** Runs `fn` with `name` appended to the scope prefix of every node and value it creates. */
  scope<R>(name: string, fn: () => R): R {
    this.scopes.push(name);
    try {
      return fn();
    } finally {
      this.scopes.pop();
    }
  }

  /** Runs `fn` without recording on the tape (backward emission, inference-only parts). */
  noTape<R>(fn: () => R): R {
    const saved = this.tape;
    this.tape = null;
    try {
      return fn();
    } finally {
      this.tape = saved;
    }
  }

  private prefix(): string {
    return this.scopes.length ? this.scopes.join('.') + '/' : '';
  }

  /** A fresh unique value name under the current scope. */
  fresh(base: string): string {
    let name = this.prefix() + base;
    if (this.used.has(name)) {
      do name = `${this.prefix()}${base}_${++this.counter}`;
      while (this.used.has(name));
    }
    this.used.add(name);
    return name;
  }

  private claim(name: string, what: string): void {
    if (this.used.has(name)) throw new Error(`graph ${this.name}: ${what} name "${name}" is already used`);
    this.used.add(name);
  }

  /** Declares a graph input. Symbolic dims (strings) become `dim_param`s. */
  input(name: string, dtype: DType, shape: Shape): Tensor {
    this.claim(name, 'input');
    const t = new Tensor(this, name, dtype, shape);
    this.inputs.push(t);
    return t;
  }

  /** Adds an initializer: a named constant stored in the model (weights baked into a session). */
  initializer(name: string, dtype: DType, dims: number[], data: TypedData): Tensor {
    const n = dims.reduce((a, b) => a * b, 1);
    if (data.length !== n) {
      throw new Error(`initializer ${name}: shape [${dims.join(', ')}] needs ${n} elements, got ${data.length}`);
    }
    this.claim(name, 'initializer');
    this.initializers.push({ name, dtype, dims, data });
    return new Tensor(this, name, dtype, dims.slice());
  }

  /**
   * A constant tensor (an initializer deduplicated by content). `shape` defaults to a 1-D tensor
   * of the values' length; pass `[]` for a scalar.
   */
  constant(values: ArrayLike<number | bigint> | TypedData, dtype: DType, shape?: number[]): Tensor {
    const dims = shape ?? [values.length];
    const data =
      ArrayBuffer.isView(values) && typedDTypeMatches(values as TypedData, dtype)
        ? (values as TypedData)
        : typedArray(dtype, values as ArrayLike<number | bigint>);
    const small = data.length <= 64;
    const key = small ? `${dtype}|${dims.join(',')}|${Array.from(data as ArrayLike<number | bigint>).join(',')}` : '';
    if (small) {
      const hit = this.constCache.get(key);
      if (hit) return hit;
    }
    const t = this.initializer(this.freshConstName(), dtype, dims, data);
    if (small) {
      this.constCache.set(key, t);
      this.constValues.set(t.name, Array.from(data as ArrayLike<number | bigint>, Number));
    }
    return t;
  }

  /** The values of a small constant made by `constant` (undefined for anything else). */
  constantValues(t: Tensor): number[] | undefined {
    return this.constValues.get(t.name);
  }

  private freshConstName(): string {
    let name: string;
    do name = `const_${++this.counter}`;
    while (this.used.has(name));
    return name;
  }

  /** A scalar constant of a dtype. */
  scalar(v: number, dtype: DType): Tensor {
    return this.constant([v], dtype, []);
  }

  /** A 1-D int64 constant (shapes, axes, indices). */
  ints(v: number[]): Tensor {
    return this.constant(v, 'int64', [v.length]);
  }

  /**
   * Emits one node. `outs` gives each output's dtype and shape (inferred by the calling op);
   * `null` inputs are omitted optional inputs (emitted as empty names).
   */
  node(
    opType: string,
    inputs: (Tensor | null)[],
    outs: { dtype: DType; shape: Shape; name?: string }[],
    attrs: Attrs = {},
    domain = '',
  ): Tensor[] {
    for (const t of inputs) {
      if (t && t.g !== this) throw new Error(`${opType}: input ${t.name} belongs to another graph`);
    }
    if (domain && !this.domains.has(domain)) this.domains.set(domain, 1);
    const outputs = outs.map((o) => new Tensor(this, o.name ?? this.fresh(opType), o.dtype, o.shape));
    for (const o of outputs) this.produced.add(o.name);
    this.nodes.push({
      opType,
      domain,
      name: this.fresh(`${opType}_node`),
      inputs: inputs.map((t) => (t ? t.name : '')),
      outputs: outputs.map((t) => t.name),
      attrs,
    });
    return outputs;
  }

  /** Emits a node with a single output. */
  node1(opType: string, inputs: (Tensor | null)[], dtype: DType, shape: Shape, attrs: Attrs = {}, domain = ''): Tensor {
    return this.node(opType, inputs, [{ dtype, shape }], attrs, domain)[0]!;
  }

  /** The runtime shape of a tensor (one `Shape` node per tensor, cached). */
  shapeOf(t: Tensor): Tensor {
    let s = this.shapeCache.get(t.name);
    if (!s) {
      s = this.node1('Shape', [t], 'int64', [t.rank]);
      this.shapeCache.set(t.name, s);
    }
    return s;
  }

  /** Marks a tensor as a graph output under `name` (an Identity is inserted when names differ). */
  output(t: Tensor, name?: string): Tensor {
    let out = t;
    if (name && name !== t.name) {
      this.claim(name, 'output');
      if (this.produced.has(t.name) && !this.alias.has(t.name) && !this.outputs.some((o) => o.name === t.name)) {
        // rename the producing node's output (no Identity copy at run time)
        this.alias.set(t.name, name);
        out = new Tensor(this, name, t.dtype, t.shape);
      } else {
        out = this.node('Identity', [t], [{ dtype: t.dtype, shape: t.shape, name }])[0]!;
      }
    } else if (this.outputs.some((o) => o.name === t.name)) {
      throw new Error(`graph ${this.name}: ${t.name} is already an output`);
    }
    this.outputs.push(out);
    return out;
  }

  /** Registers an extra operator-set domain (e.g. `com.microsoft`). */
  useDomain(domain: string, version: number): void {
    this.domains.set(domain, version);
  }

  /** The serialised name of a value (its output name when it was renamed as a graph output). */
  private readonly resolve = (name: string): string => this.alias.get(name) ?? name;

  /** The graph as an ONNX ModelProto object. */
  toModelProto(): IModelProto {
    // Unknown dims get unique dim_params: ONNX shape inference treats a dim with neither value nor
    // param as broadcastable to 1 in places, which makes onnxruntime warn about output sizes.
    let unknown = 0;
    const valueInfo = (t: Tensor): IValueInfoProto => ({
      name: t.name,
      type: {
        tensorType: {
          elemType: ONNX_DTYPE[t.dtype],
          shape: { dim: t.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d ?? `unk__${unknown++}` })) },
        },
      },
    });
    const nodes: INodeProto[] = this.nodes.map((n) => ({
      name: n.name,
      opType: n.opType,
      domain: n.domain,
      input: n.inputs.map(this.resolve),
      output: n.outputs.map(this.resolve),
      attribute: Object.entries(n.attrs)
        .filter((e): e is [string, AttrValue] => e[1] !== undefined)
        .map(([k, v]) => attribute(k, v)),
    }));
    // an initializer nothing reads is not stored (a float32 weight replaced by its quantised form)
    const read = new Set([...nodes.flatMap((n) => n.input ?? []), ...this.outputs.map((t) => t.name)]);
    const initializer: ITensorProto[] = this.initializers
      .filter((i) => read.has(i.name))
      .map((i) => tensorProto(i.name, i.dtype, i.dims, i.data));
    const opsetImport = [{ domain: '', version: this.opset }, ...[...this.domains].map(([domain, version]) => ({ domain, version }))];
    return {
      irVersion: IR_VERSION,
      producerName: 'durable-rl',
      producerVersion: '0.1.0',
      opsetImport,
      graph: {
        name: this.name,
        node: nodes,
        initializer,
        input: this.inputs.map(valueInfo),
        output: this.outputs.map(valueInfo),
      },
    };
  }

  /** Serialised ModelProto bytes, ready for `InferenceSession.create`. */
  toBytes(): Uint8Array {
    return onnx.ModelProto.encode(this.toModelProto()).finish();
  }

  /** A readable text listing of the graph: inputs, initializers (shapes only), nodes, outputs. */
  dump(): string {
    const lines: string[] = [`graph ${this.name} (opset ${this.opset}, ${this.nodes.length} nodes)`];
    for (const t of this.inputs) lines.push(`  input  ${t}`);
    for (const i of this.initializers) {
      const preview = i.data.length <= 8 ? ` = [${Array.from(i.data as ArrayLike<number>).join(', ')}]` : '';
      lines.push(`  init   ${i.name}: ${i.dtype}[${i.dims.join(', ')}]${preview}`);
    }
    for (const n of this.nodes) {
      const attrs = Object.entries(n.attrs)
        .filter(([, v]) => v !== undefined)
        .map(
          ([k, v]) => `${k}=${typeof v === 'object' && !Array.isArray(v) ? JSON.stringify('t' in v ? '<tensor>' : v) : JSON.stringify(v)}`,
        )
        .join(' ');
      lines.push(
        `  ${n.outputs.map(this.resolve).join(', ')} = ${n.domain ? n.domain + '.' : ''}${n.opType}(${n.inputs.map(this.resolve).join(', ')})${attrs ? ' ' + attrs : ''}`,
      );
    }
    for (const t of this.outputs) lines.push(`  output ${t}`);
    return lines.join('\n');
  }
}

function typedDTypeMatches(data: TypedData, dtype: DType): boolean {
  switch (dtype) {
    case 'float32':
      return data instanceof Float32Array;
    case 'float64':
      return data instanceof Float64Array;
    case 'int64':
      return data instanceof BigInt64Array;
    case 'int32':
      return data instanceof Int32Array;
    case 'bool':
    case 'uint8':
      return data instanceof Uint8Array;
    case 'int8':
      return data instanceof Int8Array;
    case 'float16':
      return data instanceof Uint16Array;
  }
}

function bytesOf(data: TypedData): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** A TensorProto with raw little-endian data (no copy until encoding). */
export function tensorProto(name: string, dtype: DType, dims: number[], data: TypedData): ITensorProto {
  return { name, dataType: ONNX_DTYPE[dtype], dims, rawData: bytesOf(data) };
}

function attribute(name: string, v: AttrValue): IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: ${v} is not an integer (wrap floats as { f: ${v} })`);
    return { name, type: T.INT, i: v };
  }
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if ('f' in v) return { name, type: T.FLOAT, f: v.f };
  if ('floats' in v) return { name, type: T.FLOATS, floats: v.floats };
  return { name, type: T.TENSOR, t: v.t };
}

/** Decodes ModelProto bytes (round-trip checks, inspecting saved graphs). */
export function decodeModel(bytes: Uint8Array): onnxProto.onnx.ModelProto {
  return onnx.ModelProto.decode(bytes);
}
