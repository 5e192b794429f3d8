/**
 * Where the real servers are, for integration tests. `npm test` runs `infra up` first, so here
 * `up()` takes its cheap, lock-free path and just reads the endpoints; a test file run on its own
 * brings the servers up itself.
 */
import { up, type InfraEndpoints } from '../../infra/index.js';

let cached: Promise<InfraEndpoints> | undefined;

export function servers(): Promise<InfraEndpoints> {
  cached ??= up({ quiet: true });
  return cached;
}
