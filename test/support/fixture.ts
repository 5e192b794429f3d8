/**
 * Shared setup that several tests of a file read, built on first use: the first test that asks
 * builds it, later ones get the same value. Each test asks for what it needs, so any one test
 * still runs alone (`--test-name-pattern`), and no test relies on another having run first.
 */

/**
 * `build` runs once, on the first call; every call returns its promise. A failed build stays
 * failed: each test that needs it fails with the same error rather than building it again.
 */
export function lazyFixture<T>(build: () => Promise<T>): () => Promise<T> {
  let built: Promise<T> | undefined;
  return () => (built ??= build());
}
