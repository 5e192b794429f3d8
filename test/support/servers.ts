/**
 * Where the real servers are, for integration tests. `npm test` runs `infra up` first and passes
 * the endpoints in the environment; a test file run on its own brings the servers up itself.
 */
import { up, type InfraEndpoints } from '../../infra/index.js';

let cached: Promise<InfraEndpoints> | undefined;

export function servers(): Promise<InfraEndpoints> {
  cached ??= up({ quiet: true });
  return cached;
}
