/**
 * Where an engine's onnxruntime sessions run: on a worker thread of the engine's own (the default)
 * or on the calling thread. onnxruntime-node executes a whole session run synchronously on the
 * thread that calls it, so on the event loop's thread a long run (a learner micro-batch of a large
 * model) stops heartbeats, cancellation and any workflow worker in the process until it returns.
 * On the worker the event loop keeps turning; the engine awaits the run's reply.
 *
 * The sessions themselves live in a `SessionServer` (session-server.ts) on the owning thread; this
 * is the caller's side. What crosses threads, and what it costs:
 * - a session's graph bytes: transferred (moved, not copied);
 * - `run` feeds: copied (each is the caller's to keep); only their own elements, never the rest
 *   of a larger buffer they view;
 * - `run` outputs: transferred back (onnxruntime allocates them on the worker);
 * - resident tensors (`put`): copied once, or moved with `move` (the caller's array is detached),
 *   then fed by reference to any number of runs; outputs can be kept resident (`keep`) to feed
 *   the next run without a round trip (gradient accumulators), and KV caches live on the worker.
 * onnxruntime-node refuses SharedArrayBuffer-backed tensors ("Invalid argument"), so shared memory
 * cannot stand in for the copies: a tensor onnxruntime reads must be owned by the worker's thread.
 */
import { Worker } from 'node:worker_threads';
import { workerScript } from '../common/worker-script.js';
import ort from 'onnxruntime-node';
import { buffersOf, ownsBuffer, SessionServer, wire, type CacheUse, type Reply, type Request, type WireTensor } from './session-server.js';

/** A tensor resident where the sessions run, fed to runs by reference. */
export class ResidentTensor {
  constructor(
    readonly host: SessionHost,
    readonly ref: number,
    readonly generation: number,
    readonly type: ort.Tensor.Type,
    readonly dims: readonly number[],
  ) {}
}

/** A feed of a hosted session: a tensor of the caller's (copied to the worker) or a resident one. */
export type HostedFeed = ort.Tensor | ResidentTensor;

/** A KV cache resident where the sessions run (see `HostedSession.exec`'s `cache`). */
export class KvCacheHandle {
  constructor(
    readonly host: SessionHost,
    readonly ref: number,
    readonly generation: number,
  ) {}

  /** Keeps batch rows `keep` (ascending) of every cache tensor. */
  compact(keep: readonly number[]): Promise<void> {
    return this.host.call({ op: 'compact', ref: this.ref, keep: [...keep] }, this.generation).then(() => undefined);
  }

  /** Empties the cache and puts its first `batch` rows in use. */
  reset(batch: number): Promise<void> {
    return this.host.call({ op: 'reset', ref: this.ref, batch }, this.generation).then(() => undefined);
  }

  /** Moves every row's filled positions [0, length) `by` positions towards the start (session-server.ts `shift`). */
  shift(by: number, length: number): Promise<void> {
    return this.host.call({ op: 'shift', ref: this.ref, by, length }, this.generation).then(() => undefined);
  }

  /** Appends the rows of `from` (all its positions filled) right-aligned to end at position `at - 1`. */
  admit(from: KvCacheHandle, at: number): Promise<void> {
    this.host.check(from.generation, 'KV cache');
    return this.host.call({ op: 'admit', ref: this.ref, from: from.ref, at }, this.generation).then(() => undefined);
  }

  release(): Promise<void> {
    return this.host.drop([this]);
  }
}

export interface ExecOptions {
  /** Outputs to keep resident instead of returning them (e.g. `new.acc.*` for the next micro-batch). */
  keep?: readonly string[];
  /** A KV cache fed as `inputs` and written from `outputs` (session-server.ts, `CacheUse`). */
  cache?: Omit<CacheUse, 'ref'> & { handle: KvCacheHandle };
}

/** A session of a `SessionHost`: `run` takes and returns tensors as `ort.InferenceSession.run` does. */
export class HostedSession {
  constructor(
    private readonly host: SessionHost,
    readonly id: number,
    readonly generation: number,
    readonly inputNames: readonly string[],
    readonly outputNames: readonly string[],
  ) {}

  /** False once the host's worker has exited (its sessions died with it). */
  get alive(): boolean {
    return this.host.generation === this.generation;
  }

  async run(feeds: Record<string, HostedFeed>): Promise<Record<string, ort.Tensor>> {
    return (await this.exec(feeds)).outputs;
  }

  /** A run with outputs kept resident and/or a KV cache. */
  async exec(
    feeds: Record<string, HostedFeed>,
    opts: ExecOptions = {},
  ): Promise<{ outputs: Record<string, ort.Tensor>; kept: Record<string, ResidentTensor> }> {
    const wireFeeds: Record<string, WireTensor | { ref: number }> = {};
    const transfer: WireTensor[] = [];
    for (const [name, t] of Object.entries(feeds)) {
      if (t instanceof ResidentTensor) {
        this.host.check(t.generation, `resident feed ${name}`);
        wireFeeds[name] = { ref: t.ref };
      } else {
        const plain = { type: t.type, dims: [...t.dims], data: t.data };
        const w = this.host.inline ? plain : wire(plain);
        wireFeeds[name] = w;
        // a copy made by wire() is ours to move; the caller's own arrays are cloned by postMessage
        if (w.data !== plain.data) transfer.push(w);
      }
    }
    const keep: Record<string, number> = {};
    const kept: Record<string, ResidentTensor> = {};
    for (const name of opts.keep ?? []) keep[name] = this.host.newRef();
    const req: Request = { op: 'run', session: this.id, feeds: wireFeeds, keep };
    if (opts.cache) {
      const { handle, ...use } = opts.cache;
      this.host.check(handle.generation, 'KV cache');
      req.cache = { ...use, ref: handle.ref };
    }
    const reply = (await this.host.call(req, this.generation, buffersOf(transfer))) as { outputs: Record<string, WireTensor> };
    const outputs: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(reply.outputs)) outputs[name] = new ort.Tensor(t.type, t.data as Float32Array, t.dims);
    for (const [name, ref] of Object.entries(keep)) {
      kept[name] = new ResidentTensor(this.host, ref, this.generation, 'float32', []);
    }
    return { outputs, kept };
  }

  async release(): Promise<void> {
    if (this.alive) await this.host.call({ op: 'release', session: this.id }, this.generation);
  }
}

/** How requests reach the `SessionServer`. */
interface Transport {
  call(req: Request, transfer: ArrayBuffer[]): Promise<Reply>;
  close(): Promise<void>;
}

/** The server on the calling thread: direct calls, nothing copied. */
class InlineTransport implements Transport {
  private readonly server = new SessionServer();
  call(req: Request): Promise<Reply> {
    return this.server.handle(req);
  }
  close(): Promise<void> {
    return this.server.close();
  }
}

/** The server on a worker thread, started on first use and again after it exits. */
class WorkerTransport implements Transport {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();

  constructor(private readonly onExit: (reason: string) => void) {}

  private start(): Worker {
    const { code, eval: isEval } = workerScript(import.meta.url, './session-worker');
    const w = new Worker(code, { eval: isEval, name: 'durable-rl onnxruntime sessions' });
    w.on('message', (msg: { id: number; reply?: Reply; error?: { message: string; name: string } }) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (this.pending.size === 0) w.unref(); // an idle worker never keeps the process alive
      if (msg.error) p.reject(Object.assign(new Error(msg.error.message), { name: msg.error.name }));
      else p.resolve(msg.reply!);
    });
    const fail = (reason: string) => {
      if (this.worker !== w) return;
      this.worker = null;
      const err = new Error(`the engine's session worker exited (${reason}): its sessions and resident tensors are gone`);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
      this.onExit(reason);
    };
    w.on('error', (err) => fail(err.message));
    w.on('exit', (code) => fail(`exit code ${code}`));
    return w;
  }

  call(req: Request | { close: true }, transfer: ArrayBuffer[]): Promise<Reply> {
    this.worker ??= this.start();
    const w = this.worker;
    const id = this.nextId++;
    const reply = new Promise<Reply>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    w.ref();
    w.postMessage('close' in req ? { id, close: true } : { id, req }, transfer);
    return reply;
  }

  async close(): Promise<void> {
    const w = this.worker;
    if (!w) return;
    await this.call({ close: true }, []).catch(() => undefined);
    this.worker = null;
    await w.terminate();
  }
}

/** The sessions of one engine, on a worker thread (`thread: 'worker'`) or the calling thread. */
export class SessionHost {
  readonly inline: boolean;
  private readonly transport: Transport;
  private refs = 0;
  private sessions = 0;
  /** Bumped whenever the worker exits: sessions and tensors of older generations are gone. */
  generation = 0;

  constructor(thread: 'worker' | 'main') {
    this.inline = thread === 'main';
    this.transport = this.inline ? new InlineTransport() : new WorkerTransport(() => this.generation++);
  }

  /** @internal */
  newRef(): number {
    return ++this.refs;
  }

  /** @internal Throws when `generation` is not the current one (the worker exited since). */
  check(generation: number, what: string): void {
    if (generation !== this.generation) throw new Error(`${what} belongs to an exited session worker`);
  }

  /** @internal */
  async call(req: Request, generation: number, transfer: ArrayBuffer[] = []): Promise<Reply> {
    this.check(generation, `request ${req.op}`);
    return this.transport.call(req, transfer);
  }

  /** A session of the graph `bytes` (moved to the worker: do not use them afterwards). */
  async create(bytes: Uint8Array, options: ort.InferenceSession.SessionOptions): Promise<HostedSession> {
    const session = ++this.sessions;
    const own = this.inline || ownsBuffer(bytes) ? bytes : bytes.slice();
    const generation = this.generation;
    const r = (await this.call(
      { op: 'create', session, bytes: own, options },
      generation,
      this.inline ? [] : [own.buffer as ArrayBuffer],
    )) as {
      inputNames: string[];
      outputNames: string[];
    };
    return new HostedSession(this, session, generation, r.inputNames, r.outputNames);
  }

  /**
   * Makes `t` resident. With `move` its buffer is transferred when `t` owns it whole (the caller's
   * array is detached afterwards: it must not be read again); otherwise its elements are copied.
   */
  async put(
    t: { type: ort.Tensor.Type; dims: readonly number[]; data: ort.Tensor.DataType },
    opts: { move?: boolean } = {},
  ): Promise<ResidentTensor> {
    const ref = this.newRef();
    const generation = this.generation;
    const plain = { type: t.type, dims: [...t.dims], data: t.data }; // an ort.Tensor's fields are getters: spell them out
    const w = this.inline ? plain : wire(plain);
    const transfer = !this.inline && (opts.move || w.data !== t.data) ? buffersOf([w]) : [];
    await this.call({ op: 'put', ref, tensor: w }, generation, transfer);
    return new ResidentTensor(this, ref, generation, t.type, t.dims);
  }

  /** A resident float32 tensor of zeros (allocated where the sessions run: nothing crosses). */
  async zeros(dims: readonly number[]): Promise<ResidentTensor> {
    const ref = this.newRef();
    const generation = this.generation;
    await this.call({ op: 'zeros', ref, dims: [...dims] }, generation);
    return new ResidentTensor(this, ref, generation, 'float32', dims);
  }

  /** Moves a resident tensor back to the caller (no longer resident). */
  async take(t: ResidentTensor): Promise<ort.Tensor> {
    const r = (await this.call({ op: 'take', ref: t.ref }, t.generation)) as { tensor: WireTensor };
    return new ort.Tensor(r.tensor.type, r.tensor.data as Float32Array, r.tensor.dims);
  }

  /** Frees resident tensors and KV caches (those of an exited worker are gone already). */
  async drop(items: readonly (ResidentTensor | KvCacheHandle)[]): Promise<void> {
    const refs = items.filter((t) => t.generation === this.generation).map((t) => t.ref);
    if (refs.length) await this.call({ op: 'drop', refs }, this.generation);
  }

  /** A resident KV cache of `tensors` float32 [batch, heads, capacity, headDim] buffers. */
  async kvCache(shape: {
    tensors: number;
    batch: number;
    heads: number;
    capacity: number;
    headDim: number;
    /** Rows allocated (default `batch`): room for rows admitted later. */
    rows?: number;
  }): Promise<KvCacheHandle> {
    const ref = this.newRef();
    const generation = this.generation;
    await this.call({ op: 'cache', ref, ...shape }, generation);
    return new KvCacheHandle(this, ref, generation);
  }

  /** Releases every session and tensor and stops the worker. */
  async close(): Promise<void> {
    await this.transport.close();
    this.generation++;
  }
}
