/**
 * `npm run infra -- <command>`: the real servers for development, tests and CI.
 *
 *   up      [--only temporal|minio] [--state-dir DIR] [--json] [--quiet]
 *           start what is not running (building pinned binaries the first time), print endpoints
 *   down    [--only temporal|minio] [--state-dir DIR] [--purge]
 *           stop the servers; --purge also deletes their data, credentials and logs
 *   status  [--state-dir DIR] [--json]      where each server stands; starts nothing
 *   env     [--state-dir DIR]               `export DURABLE_RL_...=...` lines for a shell:
 *                                           eval "$(npm run -s infra -- env)"
 *   sandbox                                 find bubblewrap, installing it as root with apt-get (`up` does too,
 *                                           and only warns when it cannot)
 */
import { parseArgs } from 'node:util';
import { BubblewrapMissingError, ensureBubblewrap } from './bubblewrap.js';
import { COMPONENTS, down, endpointsEnv, ensure, status, type Component, type InfraStatus } from './index.js';

const USAGE = `usage: npm run infra -- <up|down|status|env|sandbox> [options]
  up      [--only temporal|minio] [--state-dir DIR] [--json] [--quiet]
  down    [--only temporal|minio] [--state-dir DIR] [--purge]
  status  [--state-dir DIR] [--json]
  env     [--state-dir DIR]
  sandbox (bubblewrap for untrusted code: installed with apt-get as root)
The state dir defaults to $DURABLE_RL_STATE_DIR, else <cache>/state (cache: $DURABLE_RL_CACHE_DIR or ~/.cache/durable-rl).`;

function out(line = ''): void {
  process.stdout.write(line + '\n');
}

function describe(st: InfraStatus): void {
  const t = st.temporal;
  const m = st.minio;
  const pid = (p: number | null) => (p === null ? '' : ` (pid ${p})`);
  out(`Temporal  ${t.state}${pid(t.pid)}${t.detail ? `: ${t.detail}` : ''}`);
  if (t.endpoint) out(`  gRPC    ${t.endpoint}`);
  if (t.uiUrl) out(`  Web UI  ${t.uiUrl}`);
  if (t.log) out(`  log     ${t.log}`);
  out(`MinIO     ${m.state}${pid(m.pid)}${m.detail ? `: ${m.detail}` : ''}`);
  if (m.endpoint) out(`  S3      ${m.endpoint}`);
  if (m.uiUrl) out(`  console ${m.uiUrl}`);
  if (m.log) out(`  log     ${m.log}`);
  out(`state dir ${st.stateDir}  (credentials: \`npm run infra -- env\`)`);
}

/** bubblewrap for activities/sandbox/, installed when missing and possible; a missing one is a warning here, not a failure. */
function bubblewrapLine(quiet: boolean): string {
  try {
    const b = ensureBubblewrap({ progress: quiet ? undefined : (m) => out(m) });
    return `bubblewrap ${b.source === 'installed' ? 'installed' : 'found'}: ${b.path}`;
  } catch (e) {
    if (!(e instanceof BubblewrapMissingError)) throw e;
    return `no bubblewrap (${e.message})`;
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      only: { type: 'string', multiple: true },
      'state-dir': { type: 'string' },
      json: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      purge: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const cmd = positionals[0];
  if (values.help || !cmd) {
    out(USAGE);
    return cmd || values.help ? 0 : 2;
  }
  if (positionals.length > 1) throw new Error(`unexpected argument ${JSON.stringify(positionals[1])}\n${USAGE}`);
  const only = values.only?.map((c) => {
    if (!COMPONENTS.includes(c as Component)) throw new Error(`--only ${c}: expected one of ${COMPONENTS.join(', ')}`);
    return c as Component;
  });
  const stateDir = values['state-dir'];

  switch (cmd) {
    case 'up': {
      const t0 = Date.now();
      const r = await ensure({ stateDir, components: only, quiet: values.quiet });
      const sandbox = bubblewrapLine(values.quiet || values.json);
      if (values.json) {
        out(JSON.stringify({ ...r, bubblewrap: sandbox, seconds: (Date.now() - t0) / 1000 }));
        return 0;
      }
      const e = r.endpoints;
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      if (r.actions.temporal !== 'skipped')
        out(
          `Temporal  ${r.actions.temporal}: gRPC ${e.temporal.address}  namespace ${e.temporal.namespace}  Web UI ${e.temporal.uiUrl || '(unknown)'}`,
        );
      if (r.actions.minio !== 'skipped')
        out(`MinIO     ${r.actions.minio}: S3 ${e.minio.endpoint}  bucket ${e.minio.bucket}  region ${e.minio.region}`);
      out(`sandbox   ${sandbox}`);
      out(`ready in ${secs} s; state dir ${r.stateDir}; \`npm run infra -- env\` prints the endpoints and credentials as env vars`);
      return 0;
    }
    case 'down':
      await down({ stateDir, components: only, purge: values.purge });
      out(`stopped${only ? ` ${only.join(', ')}` : ''}${values.purge ? ' and purged' : ''}`);
      return 0;
    case 'status': {
      const st = await status({ stateDir });
      if (values.json) out(JSON.stringify(st));
      else describe(st);
      return 0;
    }
    case 'env': {
      const st = await status({ stateDir });
      if (st.temporal.state !== 'running' && st.temporal.state !== 'external')
        throw new Error(`Temporal is ${st.temporal.state}; run \`npm run infra -- up\` first`);
      if (st.minio.state !== 'running' && st.minio.state !== 'external')
        throw new Error(`MinIO is ${st.minio.state}; run \`npm run infra -- up\` first`);
      const r = await ensure({ stateDir, quiet: true }); // healthy: the lock-free fast path, no side effects
      for (const [k, v] of Object.entries(endpointsEnv(r.endpoints))) out(`export ${k}='${v.replace(/'/g, `'\\''`)}'`);
      return 0;
    }
    case 'sandbox': {
      const b = ensureBubblewrap({ progress: (m) => out(m) });
      out(`bubblewrap ${b.source === 'installed' ? 'installed' : 'found'}: ${b.path}`);
      return 0;
    }
    default:
      throw new Error(`unknown command ${JSON.stringify(cmd)}\n${USAGE}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`infra: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
