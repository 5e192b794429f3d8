/**
 * Bounded concurrency: `mapLimit` runs an async function over items with at most `limit` calls in
 * flight and returns the results in input order, whatever order the calls finish in. Callers that
 * must stay deterministic (a rollout's tool calls, a reward's scores) get each item's result in its
 * own slot; only the interleaving of the calls varies.
 */

/**
 * Runs `fn(item, index)` over `items` with at most `limit` (≥ 1) calls in flight; results in input
 * order. The first call that throws rejects the whole map: no further item is started (calls
 * already running finish on their own; pass them an abort signal to stop them).
 */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  if (!(Number.isInteger(limit) && limit >= 1)) throw new Error(`mapLimit: limit must be a positive integer, got ${limit}`);
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const lane = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return out;
}
