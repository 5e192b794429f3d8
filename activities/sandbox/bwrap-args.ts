/**
 * The bubblewrap command line of one sandboxed run (pure: the caller probes the host and spawns).
 *
 * What the sandboxed command sees: the host's system directories read-only (`/usr` and the `/bin`,
 * `/lib*` links, a few files of `/etc`: the dynamic loader's cache, alternatives, time zone, the
 * user database without passwords), the extra read-only paths the caller names (an interpreter's
 * prefix), a fresh `/proc` of its own pid namespace, a minimal `/dev`, and one writable directory,
 * `/tmp`: a private tmpfs of `tmpMb`, holding the caller's input files. Nothing else of the host
 * (no home directories, no repository, no `/etc/shadow`) exists inside. It runs in new network
 * (only its own, empty loopback), pid, ipc, uts and cgroup namespaces, in a new session, and dies
 * with its parent.
 *
 * As root, bubblewrap sets up the namespaces itself (no user namespace), and the command drops to
 * `uid` with `setpriv` (no capabilities, no new privileges), so that RLIMIT_NPROC (which the kernel
 * never applies to uid 0) bounds its processes and file permissions apply. As another user,
 * bubblewrap runs unprivileged in a new user namespace and the command keeps that user's id.
 * Either way the limits are set last, by `prlimit`, inside the namespaces.
 */

/** Host directories that are read-only inside: bound if directories, recreated if links (merged /usr). */
export const SYSTEM_DIRS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32'];

/** Files of /etc visible inside: what the dynamic loader, `alternatives` links, `id` and time zones read. No secrets. */
export const ETC_FILES = [
  '/etc/ld.so.cache',
  '/etc/ld.so.conf',
  '/etc/ld.so.conf.d',
  '/etc/alternatives',
  '/etc/localtime',
  '/etc/passwd',
  '/etc/group',
  '/etc/nsswitch.conf',
  '/etc/ssl/openssl.cnf',
];

/** What `bwrapArgs` needs to know of the host: how each path exists (probed by the caller). */
export type HostPath = { kind: 'dir' | 'file' } | { kind: 'link'; target: string } | undefined;

export interface BwrapPlan {
  /** The command and its arguments, as run inside (paths as seen inside). */
  command: readonly string[];
  /** Input files: their names in `/tmp`, in the order of the file descriptors 3, 4, … that carry them. */
  files: readonly string[];
  /** Host paths made visible read-only at the same path (an interpreter's prefix). */
  readOnly: readonly string[];
  /** Size of the private `/tmp`, in MiB. */
  tmpMb: number;
  /** RLIMIT_DATA in bytes: the private memory of each process. */
  dataBytes: number;
  /** RLIMIT_AS in bytes: the address space of each process. */
  addressSpaceBytes: number;
  /** RLIMIT_NPROC: processes and threads of the sandbox's user. */
  maxProcesses: number;
  /** RLIMIT_CPU in seconds. */
  cpuSeconds: number;
  /** RLIMIT_FSIZE in bytes: the largest file the command may write. */
  fileBytes: number;
  /** RLIMIT_NOFILE. */
  maxOpenFiles: number;
  /** Set when bubblewrap runs as root: the unprivileged uid (and gid) the command drops to. */
  uid?: number;
  /** How each host path of SYSTEM_DIRS, ETC_FILES and `readOnly` exists. */
  host: (path: string) => HostPath;
}

/** The directories above an absolute path, outermost first: `/a/b/c` → `/a`, `/a/b`. */
function ancestors(path: string): string[] {
  const parts = path.split('/').filter(Boolean);
  return parts.slice(0, -1).map((_, i) => '/' + parts.slice(0, i + 1).join('/'));
}

function under(path: string, dir: string): boolean {
  return path === dir || path.startsWith(dir + '/');
}

/** bwrap's arguments (without the `bwrap` itself) for one run of `plan.command`. */
export function bwrapArgs(plan: BwrapPlan): string[] {
  const args = ['--unshare-net', '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--unshare-cgroup-try'];
  if (plan.uid === undefined) args.push('--unshare-user');
  args.push('--die-with-parent', '--new-session', '--hostname', 'sandbox');
  // Directories bubblewrap creates on its own are 0700 (root-only when it runs as root): create
  // every parent explicitly, 0755.
  const made = new Set<string>();
  const dir = (p: string) => {
    for (const d of [...ancestors(p), p]) {
      if (made.has(d)) continue;
      made.add(d);
      args.push('--perms', '0755', '--dir', d);
    }
  };
  const bound: string[] = [];
  for (const p of SYSTEM_DIRS) {
    const h = plan.host(p);
    if (!h) continue;
    if (h.kind === 'link') args.push('--symlink', h.target, p);
    else {
      args.push('--ro-bind', p, p);
      bound.push(p);
    }
  }
  for (const p of ETC_FILES) {
    const h = plan.host(p);
    if (!h) continue;
    ancestors(p).forEach(dir);
    if (h.kind === 'link') args.push('--symlink', h.target, p);
    else args.push('--ro-bind', p, p);
  }
  for (const p of plan.readOnly) {
    if (bound.some((b) => under(p, b)) || !plan.host(p)) continue;
    ancestors(p).forEach(dir);
    args.push('--ro-bind', p, p);
    bound.push(p);
  }
  args.push('--proc', '/proc', '--dev', '/dev');
  args.push('--size', String(plan.tmpMb * 1024 * 1024), '--perms', '1777', '--tmpfs', '/tmp');
  plan.files.forEach((name, i) => args.push('--perms', '0644', '--file', String(3 + i), `/tmp/${name}`));
  args.push('--chdir', '/tmp');
  const limits = [
    `--nproc=${plan.maxProcesses}`,
    `--data=${plan.dataBytes}`,
    `--as=${plan.addressSpaceBytes}`,
    `--cpu=${plan.cpuSeconds}`,
    `--fsize=${plan.fileBytes}`,
    `--nofile=${plan.maxOpenFiles}`,
    '--core=0',
  ];
  const drop =
    plan.uid === undefined
      ? []
      : [
          'setpriv',
          `--reuid=${plan.uid}`,
          `--regid=${plan.uid}`,
          '--clear-groups',
          '--inh-caps=-all',
          '--bounding-set=-all',
          '--no-new-privs',
          '--',
        ];
  if (plan.uid !== undefined) args.push('--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID');
  args.push('--', ...drop, 'prlimit', ...limits, '--', ...plan.command);
  return args;
}
