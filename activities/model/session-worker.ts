/**
 * The worker-thread entry of an engine's sessions (started by `session-host.ts`): serves a
 * `SessionServer` over the thread's message port. Requests are handled one at a time, in order;
 * each reply carries the request's id, and the tensors it returns are transferred, not copied.
 */
import { parentPort } from 'node:worker_threads';
import { buffersOf, SessionServer, type Reply, type Request } from './session-server.js';

const port = parentPort;
if (!port) throw new Error('session-worker.ts runs as a worker thread (session-host.ts starts it)');
const server = new SessionServer();
let queue: Promise<void> = Promise.resolve();

port.on('message', (msg: { id: number; req: Request } | { id: number; close: true }) => {
  queue = queue.then(async () => {
    if ('close' in msg) {
      await server.close();
      port.postMessage({ id: msg.id, reply: {} });
      return;
    }
    try {
      const reply: Reply = await server.handle(msg.req);
      const tensors = 'outputs' in reply ? Object.values(reply.outputs) : 'tensor' in reply ? [reply.tensor] : [];
      port.postMessage({ id: msg.id, reply }, buffersOf(tensors));
    } catch (err) {
      port.postMessage({ id: msg.id, error: { message: (err as Error).message, name: (err as Error).name } });
    }
  });
});
