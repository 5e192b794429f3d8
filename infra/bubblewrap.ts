/**
 * bubblewrap (`bwrap`), the sandbox of activities/sandbox/: found on PATH, else installed from the
 * distribution's packages when this process may (root with apt-get: Debian and Ubuntu), else an
 * error that says how to install it. Unlike the servers it is not built from source: it is a small
 * C program every distribution packages, and the sandbox needs the system's one (setuid or not, as
 * the distribution decided).
 */
import { spawnSync } from 'node:child_process';
import { onPath } from './binaries.js';

export type BubblewrapSource = 'path' | 'installed';

/** Raised when bwrap is missing and cannot be installed by this process; the message says how. */
export class BubblewrapMissingError extends Error {
  override readonly name = 'BubblewrapMissingError';
}

const HOW =
  'install it as root: `apt-get install -y bubblewrap` (Debian, Ubuntu), `dnf install bubblewrap` (Fedora), `apk add bubblewrap` (Alpine); ' +
  'until then untrusted code runs in the weaker fallback layers (activities/sandbox/README.md)';

/**
 * Finds bwrap, installing it with `apt-get install -y bubblewrap` when missing and this process is
 * root on a host with apt-get (running `apt-get update` first only if the package is unknown).
 */
export function ensureBubblewrap(opts: { env?: NodeJS.ProcessEnv; progress?: (msg: string) => void } = {}): {
  path: string;
  source: BubblewrapSource;
} {
  const env = opts.env ?? process.env;
  const progress = opts.progress ?? (() => {});
  const found = onPath('bwrap', env);
  if (found) return { path: found, source: 'path' };
  if (process.getuid?.() !== 0)
    throw new BubblewrapMissingError(`bubblewrap (bwrap) is not installed and this process is not root: ${HOW}`);
  if (!onPath('apt-get', env)) throw new BubblewrapMissingError(`bubblewrap (bwrap) is not installed and this host has no apt-get: ${HOW}`);
  const apt = (args: string[]) => {
    progress(`running apt-get ${args.join(' ')}`);
    return spawnSync('apt-get', args, { env: { ...env, DEBIAN_FRONTEND: 'noninteractive' }, encoding: 'utf8', timeout: 600_000 });
  };
  const install = ['install', '-y', '--no-install-recommends', 'bubblewrap'];
  let r = apt(install);
  if (r.status !== 0 && /Unable to locate package|has no installation candidate/.test(r.stderr ?? '')) {
    apt(['update']);
    r = apt(install);
  }
  const path = onPath('bwrap', env);
  if (r.status !== 0 || !path) {
    const tail = `${r.stderr ?? ''}${r.error?.message ?? ''}`.trim().split('\n').slice(-5).join('\n');
    throw new BubblewrapMissingError(`\`apt-get install -y bubblewrap\` failed (exit ${r.status ?? r.signal}):\n${tail}\n${HOW}`);
  }
  progress(`installed bubblewrap: ${path}`);
  return { path, source: 'installed' };
}
