/**
 * sha256 on a thread of its own: the store hashes every artifact it writes or reads (manifest.ts),
 * and a checkpoint of gigabytes is seconds of hashing that would otherwise run on the event loop's
 * thread, where the activities' heartbeats, cancellation and a workflow worker in the same process
 * wait for it. The bytes are streamed to the thread in chunks of HASH_CHUNK_BYTES, at most
 * IN_FLIGHT of them at a time, so the memory a hash adds stays a few chunks whatever the size.
 *
 * Each chunk is copied into a fresh buffer that is then transferred (moved, not cloned again):
 * transferring the caller's own buffer would detach it, and the caller still needs its bytes (it
 * writes them to the store after hashing, or hands them on after reading); posting a view without
 * transfer would clone the whole buffer it views, not just the chunk. A SharedArrayBuffer would
 * spare the copy only if the bytes already lived in one, and they do not (onnxruntime outputs,
 * store reads). The copy is a memcpy, several times faster than sha256, so the calling thread
 * spends a small part of the hash's time on it, in pieces between which its event loop turns.
 *
 * One thread per process, started by the first hash and kept for the next ones; it is unref'd
 * whenever no hash is pending, so it never keeps the process alive. If it dies (an error, an exit),
 * the pending hashes are rejected with that reason and the next hash starts a new one.
 */
import { Worker } from 'node:worker_threads';
import { workerScript } from '../common/worker-script.js';

/** Bytes per chunk sent to the hashing thread. */
export const HASH_CHUNK_BYTES = 16 << 20;
/** Chunks of one hash on their way to (or inside) the thread at once: one being hashed, one queued. */
const IN_FLIGHT = 2;

export type HashRequest = { id: number; chunk: Uint8Array } | { id: number; end: true };
export type HashReply = { id: number; ack: true } | { id: number; hex: string } | { id: number; error: string };

interface Job {
  /** Called on each chunk's acknowledgement. */
  ack: () => void;
  done: (hex: string) => void;
  fail: (err: Error) => void;
}

let worker: Worker | null = null;
let nextId = 1;
const jobs = new Map<number, Job>();

function start(): Worker {
  const { code, eval: isEval } = workerScript(import.meta.url, './hash-worker');
  const w = new Worker(code, { eval: isEval, name: 'durable-rl sha256' });
  w.unref();
  w.on('message', (msg: HashReply) => {
    const job = jobs.get(msg.id);
    if (!job) return;
    if ('ack' in msg) return job.ack();
    jobs.delete(msg.id);
    if (jobs.size === 0) w.unref(); // an idle thread never keeps the process alive
    if ('hex' in msg) job.done(msg.hex);
    else job.fail(new Error(`sha256 on the hashing thread failed: ${msg.error}`));
  });
  const died = (reason: string) => {
    if (worker !== w) return;
    worker = null;
    const err = new Error(`the hashing thread exited (${reason}); the next hash starts a new one`);
    for (const job of jobs.values()) job.fail(err);
    jobs.clear();
  };
  w.on('error', (err) => died(err.message));
  w.on('exit', (code) => died(`exit code ${code}`));
  return w;
}

/** sha256 hex of `bytes`, computed on the process's hashing thread; `bytes` is left as it was. */
export async function sha256HexOffThread(bytes: Uint8Array): Promise<string> {
  worker ??= start();
  const w = worker;
  const id = nextId++;
  let inFlight = 0;
  let wake: (() => void) | null = null;
  let failed: Error | null = null;
  const result = new Promise<string>((resolve, reject) => {
    jobs.set(id, {
      ack: () => {
        inFlight--;
        wake?.();
      },
      done: resolve,
      fail: (err) => {
        failed = err;
        wake?.();
        reject(err);
      },
    });
  });
  result.catch(() => undefined); // observed below; a failure while chunks are still being sent must not go unhandled
  w.ref();
  for (let at = 0; at < bytes.byteLength && !failed; at += HASH_CHUNK_BYTES) {
    while (inFlight >= IN_FLIGHT && !failed) await new Promise<void>((resolve) => (wake = resolve));
    if (failed) break;
    const chunk = bytes.slice(at, at + HASH_CHUNK_BYTES); // a copy of this chunk alone: see the header
    inFlight++;
    w.postMessage({ id, chunk } satisfies HashRequest, [chunk.buffer]);
  }
  if (!failed) w.postMessage({ id, end: true } satisfies HashRequest);
  return result;
}
