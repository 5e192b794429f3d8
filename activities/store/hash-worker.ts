/**
 * The hashing thread's entry (started by `hash-thread.ts`): sha256 of the chunks each job streams,
 * in order. Every chunk is acknowledged once hashed (the caller keeps at most a few in flight), and
 * the job's end is answered with the hex digest.
 */
import { createHash, type Hash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import type { HashReply, HashRequest } from './hash-thread.js';

const port = parentPort;
if (!port) throw new Error('hash-worker.ts runs as a worker thread (hash-thread.ts starts it)');
const jobs = new Map<number, Hash>();

port.on('message', (msg: HashRequest) => {
  const reply = (r: HashReply) => port.postMessage(r);
  try {
    let h = jobs.get(msg.id);
    if (!h) jobs.set(msg.id, (h = createHash('sha256')));
    if ('chunk' in msg) {
      h.update(msg.chunk);
      reply({ id: msg.id, ack: true });
    } else {
      jobs.delete(msg.id);
      reply({ id: msg.id, hex: h.digest('hex') });
    }
  } catch (err) {
    jobs.delete(msg.id);
    reply({ id: msg.id, error: (err as Error).message });
  }
});
