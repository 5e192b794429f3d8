/**
 * The side of the engine that owns onnxruntime sessions: creates and releases them, keeps tensors
 * resident between runs (parameters fed to many runs, gradient accumulators, KV caches), and runs
 * sessions on feeds that are inline tensors or references to resident ones. It is plain message
 * handling with no transport of its own: `session-worker.ts` serves it on a worker thread (the
 * default), `session-host.ts` calls it directly when sessions run on the calling thread.
 *
 * Everything here runs on the thread that owns the sessions, so a session run blocks only that
 * thread: onnxruntime-node's `run` executes the graph synchronously inside a setImmediate callback.
 */
import ort from 'onnxruntime-node';

/** A tensor as it crosses threads: its element type, dims and data (an exactly-owned typed array). */
export interface WireTensor {
  type: ort.Tensor.Type;
  dims: readonly number[];
  data: ort.Tensor.DataType;
}

/** A feed: a tensor given with the request, or a tensor resident on the server under `ref`. */
export type WireFeed = WireTensor | { ref: number };

/**
 * A KV cache's part in a decode run: the cache's tensors are fed as `inputs[i]` (an empty past
 * when `length` is 0, else the whole preallocated buffer with its unused slots masked by the
 * caller), and output `outputs[i]` (the run's own keys/values, `chunk` positions) is written into
 * tensor i at position `length` when `write` is set. Those outputs are not returned.
 */
export interface CacheUse {
  ref: number;
  inputs: readonly string[];
  outputs: readonly string[];
  length: number;
  chunk: number;
  write: boolean;
}

export type Request =
  | { op: 'create'; session: number; bytes: Uint8Array; options: ort.InferenceSession.SessionOptions }
  | { op: 'release'; session: number }
  | { op: 'put'; ref: number; tensor: WireTensor }
  | { op: 'zeros'; ref: number; dims: readonly number[] }
  | { op: 'take'; ref: number }
  | { op: 'drop'; refs: readonly number[] }
  | { op: 'cache'; ref: number; tensors: number; batch: number; heads: number; capacity: number; headDim: number; rows?: number }
  | { op: 'compact'; ref: number; keep: readonly number[] }
  | { op: 'shift'; ref: number; by: number; length: number }
  | { op: 'reset'; ref: number; batch: number }
  | { op: 'admit'; ref: number; from: number; at: number }
  | {
      op: 'run';
      session: number;
      feeds: Record<string, WireFeed>;
      /** Outputs kept resident under the given refs instead of returned. */
      keep?: Record<string, number>;
      cache?: CacheUse;
    };

export type Reply =
  | { inputNames: readonly string[]; outputNames: readonly string[] } // create
  | { outputs: Record<string, WireTensor> } // run
  | { tensor: WireTensor } // take
  | Record<string, never>;

/** True when `a` is the whole of its (non-shared) buffer, so the buffer can be transferred alone. */
export function ownsBuffer(a: ArrayBufferView): boolean {
  return a.buffer instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === a.buffer.byteLength;
}

/** `t` with data that owns its buffer: the same data when it does, else a copy of just its elements. */
export function wire(t: { type: ort.Tensor.Type; dims: readonly number[]; data: ort.Tensor.DataType }): WireTensor {
  const data = t.data as ArrayBufferView & { slice(): ort.Tensor.DataType };
  return { type: t.type, dims: t.dims, data: ArrayBuffer.isView(data) && !ownsBuffer(data) ? data.slice() : t.data };
}

/** The buffers of wire tensors, to transfer them instead of copying. */
export function buffersOf(tensors: Iterable<WireTensor>): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const t of tensors) if (ArrayBuffer.isView(t.data) && t.data.buffer instanceof ArrayBuffer) out.push(t.data.buffer);
  return out;
}

/**
 * One KV-cache tensor group: `tensors` buffers of `rows` x [heads, capacity, headDim] whose first
 * `batch` rows are in use, and whose first `length` positions of every (row, head) are filled (the
 * caller tracks `length`); the rest is masked out by the caller.
 */
class KvCache {
  private readonly data: Float32Array[];
  constructor(
    tensors: number,
    private batch: number,
    readonly heads: number,
    readonly capacity: number,
    readonly headDim: number,
    private readonly rows = batch,
  ) {
    this.data = Array.from({ length: tensors }, () => new Float32Array(rows * heads * capacity * headDim));
  }

  /** Tensor i: an empty past (length 0) or the rows in use, whole (a view, no copy). */
  feed(i: number, length: number): ort.Tensor {
    const { batch, heads, capacity, headDim } = this;
    if (length === 0) return new ort.Tensor('float32', new Float32Array(0), [batch, heads, 0, headDim]);
    return new ort.Tensor('float32', this.data[i]!.subarray(0, batch * heads * capacity * headDim), [batch, heads, capacity, headDim]);
  }

  /** Writes a [batch, heads, n, headDim] chunk into tensor i at positions length..length+n-1. */
  write(i: number, length: number, chunk: Float32Array, n: number): void {
    const { heads, capacity, headDim } = this;
    const span = n * headDim;
    const data = this.data[i]!;
    for (let bh = 0; bh < this.batch * heads; bh++)
      data.set(chunk.subarray(bh * span, (bh + 1) * span), (bh * capacity + length) * headDim);
  }

  /** Keeps batch rows `keep` (ascending) of every tensor, in place. */
  compact(keep: readonly number[]): void {
    const block = this.heads * this.capacity * this.headDim;
    for (const data of this.data) {
      keep.forEach((r, i) => {
        if (r !== i) data.copyWithin(i * block, r * block, (r + 1) * block);
      });
    }
    this.batch = keep.length;
  }

  /** Empties the cache and puts its first `batch` rows in use (for a prefill at length 0). */
  reset(batch: number): void {
    if (batch > this.rows) throw new Error(`KV cache reset to ${batch} rows: only ${this.rows} allocated`);
    this.batch = batch;
  }

  /**
   * Moves the filled positions [0, length) of every row `by` positions towards the start: by > 0
   * drops the first `by` (slots every row masks), by < 0 opens -by slots before them (to be masked).
   */
  shift(by: number, length: number): void {
    const { heads, capacity, headDim } = this;
    const from = Math.max(by, 0);
    const to = Math.max(-by, 0);
    if (length - from + to > capacity || from > length)
      throw new Error(`KV cache shift by ${by} of ${length} positions leaves capacity ${capacity}`);
    for (const data of this.data)
      for (let bh = 0; bh < this.batch * heads; bh++) {
        const row = bh * capacity * headDim;
        data.copyWithin(row + to * headDim, row + from * headDim, row + length * headDim);
      }
  }

  /**
   * Appends the rows of `src` (every position of it filled) after the rows in use, right-aligned so
   * that their last position is `at - 1`: the positions before them are the caller's to mask.
   */
  admit(src: KvCache, at: number): void {
    const { heads, capacity, headDim } = this;
    const n = src.capacity;
    if (src.heads !== heads || src.headDim !== headDim || src.data.length !== this.data.length)
      throw new Error('KV cache admit: the caches differ in shape');
    if (this.batch + src.batch > this.rows || n > at || at > capacity)
      throw new Error(
        `KV cache admit: ${src.batch} rows of ${n} positions at ${at} do not fit ${this.rows - this.batch} free rows of ${capacity}`,
      );
    this.data.forEach((data, i) => {
      const from = src.data[i]!;
      for (let bh = 0; bh < src.batch * heads; bh++)
        data.set(from.subarray(bh * n * headDim, (bh + 1) * n * headDim), ((this.batch * heads + bh) * capacity + at - n) * headDim);
    });
    this.batch += src.batch;
  }
}

const tensorOf = (t: WireTensor) => new ort.Tensor(t.type, t.data as Float32Array, t.dims);

/** The sessions, resident tensors and KV caches of one engine, and the requests that use them. */
export class SessionServer {
  private readonly sessions = new Map<number, ort.InferenceSession>();
  private readonly resident = new Map<number, ort.Tensor>();
  private readonly caches = new Map<number, KvCache>();

  async handle(req: Request): Promise<Reply> {
    switch (req.op) {
      case 'create': {
        const s = await ort.InferenceSession.create(req.bytes, req.options);
        this.sessions.set(req.session, s);
        return { inputNames: s.inputNames, outputNames: s.outputNames };
      }
      case 'release': {
        const s = this.sessions.get(req.session);
        this.sessions.delete(req.session);
        await s?.release();
        return {};
      }
      case 'put':
        this.resident.set(req.ref, tensorOf(req.tensor));
        return {};
      case 'zeros': {
        const n = req.dims.reduce((a, b) => a * b, 1);
        this.resident.set(req.ref, new ort.Tensor('float32', new Float32Array(n), req.dims));
        return {};
      }
      case 'take': {
        const t = this.tensor(req.ref);
        this.resident.delete(req.ref);
        return { tensor: wire({ type: t.type, dims: t.dims, data: t.data }) };
      }
      case 'drop':
        for (const ref of req.refs) {
          this.resident.delete(ref);
          this.caches.delete(ref);
        }
        return {};
      case 'cache':
        this.caches.set(req.ref, new KvCache(req.tensors, req.batch, req.heads, req.capacity, req.headDim, req.rows));
        return {};
      case 'compact':
        this.cache(req.ref).compact(req.keep);
        return {};
      case 'reset':
        this.cache(req.ref).reset(req.batch);
        return {};
      case 'shift':
        this.cache(req.ref).shift(req.by, req.length);
        return {};
      case 'admit':
        this.cache(req.ref).admit(this.cache(req.from), req.at);
        return {};
      case 'run':
        return { outputs: await this.run(req) };
    }
  }

  private tensor(ref: number): ort.Tensor {
    const t = this.resident.get(ref);
    if (!t) throw new Error(`no resident tensor ${ref} (dropped, or never put)`);
    return t;
  }

  private cache(ref: number): KvCache {
    const c = this.caches.get(ref);
    if (!c) throw new Error(`no KV cache ${ref} (dropped, or never created)`);
    return c;
  }

  private async run(req: Extract<Request, { op: 'run' }>): Promise<Record<string, WireTensor>> {
    const session = this.sessions.get(req.session);
    if (!session) throw new Error(`no session ${req.session} (released)`);
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, f] of Object.entries(req.feeds)) feeds[name] = 'ref' in f ? this.tensor(f.ref) : tensorOf(f);
    const cache = req.cache ? this.cache(req.cache.ref) : null;
    if (cache) req.cache!.inputs.forEach((name, i) => (feeds[name] = cache.feed(i, req.cache!.length)));
    const r = await session.run(feeds);
    const out: Record<string, WireTensor> = {};
    const skip = new Set(req.cache?.outputs ?? []);
    for (const [name, t] of Object.entries(r)) {
      const ref = req.keep?.[name];
      if (ref !== undefined) this.resident.set(ref, t);
      else if (!skip.has(name)) out[name] = wire({ type: t.type, dims: t.dims, data: t.data });
    }
    if (cache && req.cache!.write) {
      req.cache!.outputs.forEach((name, i) => cache.write(i, req.cache!.length, r[name]!.data as Float32Array, req.cache!.chunk));
    }
    return out;
  }

  /** Releases every session and drops every tensor (the engine closes). */
  async close(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    this.resident.clear();
    this.caches.clear();
    await Promise.all(all.map((s) => s.release().catch(() => undefined)));
  }
}
