/**
 * How a module starts one of its worker threads (node:worker_threads) the same way under tsx and
 * from built JavaScript: the session worker of an engine (model/session-host.ts) and the hashing
 * thread of the store (store/hash-thread.ts).
 */

/**
 * The `Worker` arguments for the module `entry` (a path relative to the caller, without its
 * extension) next to the caller, whose `import.meta.url` is `caller`: the TypeScript source when
 * the caller runs as TypeScript (tsx), whose loader Node 20 does not pass on to worker threads —
 * the worker registers it itself — else the built JS.
 */
export function workerScript(caller: string, entry: string): { code: string | URL; eval: boolean } {
  if (!caller.endsWith('.ts')) return { code: new URL(`${entry}.js`, caller), eval: false };
  const source = new URL(`${entry}.ts`, caller).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  return {
    code: `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(source)}); });`,
    eval: true,
  };
}
