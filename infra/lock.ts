/**
 * An inter-process lock file: created with O_EXCL (`open(..., 'wx')`), holding the owner's pid,
 * process start time and host. Whoever creates the file holds the lock; it is released by
 * deleting the file.
 *
 * Stale-lock recovery: a lock whose owner is on this host and no longer alive (pid gone, zombie,
 * or pid reused by another process) is broken. Breaking happens under a second, short-lived
 * O_EXCL lock (`<file>.break`) and re-reads the lock before deleting it, so two waiters can never
 * both break it nor delete a fresh lock that a third process just took. A lock held by another
 * host cannot be judged: we wait, and after `waitMs` fail with a message naming the file.
 */
import { closeSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { isAlive, procStartTime } from './proc.js';

export interface LockHolder {
  pid: number;
  procStart: string | null;
  host: string;
  /** ISO time the lock was taken. */
  since: string;
  /** What the holder is doing ("starting servers", "building temporal v1.5.1"). */
  purpose: string;
  /** Unique per acquisition, so two acquisitions in one process never look alike. */
  token: number;
}

export interface LockOptions {
  /** What the lock protects, for messages ("servers in /x/state"). */
  what: string;
  /** What this process will do while holding it (recorded in the file for waiters to read). */
  purpose: string;
  /** How long to wait for a live holder before giving up (ms). Default 20 minutes: builds are slow. */
  waitMs?: number;
  /** Called about every 15 s while waiting, with the holder and the time waited so far. */
  onWait?: (holder: LockHolder | null, waitedMs: number) => void;
}

/** How long a `.break` lock may exist before it counts as abandoned (it is held for microseconds). */
const BREAK_STALE_MS = 10_000;
/** How long an unreadable (half-written) lock file may exist before it counts as abandoned. */
const PARTIAL_STALE_MS = 10_000;
const POLL_MS = 100;
let acquisitions = 0;

function parseHolder(text: string): LockHolder | null {
  try {
    const h = JSON.parse(text) as LockHolder;
    return typeof h.pid === 'number' && typeof h.host === 'string' ? h : null;
  } catch {
    return null;
  }
}

function ageMs(file: string): number {
  try {
    return Date.now() - statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

function tryCreate(file: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}

function isStale(file: string, holder: LockHolder | null): boolean {
  if (holder === null) return ageMs(file) > PARTIAL_STALE_MS;
  if (holder.host !== hostname()) return false;
  return !isAlive({ pid: holder.pid, procStart: holder.procStart });
}

/** Deletes `file` if it is (still) stale, under the break lock. Returns true when it was removed. */
function breakStale(file: string, judged: string): boolean {
  const breakFile = `${file}.break`;
  if (!tryCreate(breakFile, String(process.pid))) {
    if (ageMs(breakFile) > BREAK_STALE_MS) {
      try {
        unlinkSync(breakFile);
      } catch {
        /* someone else cleaned it */
      }
    }
    return false;
  }
  try {
    let now: string;
    try {
      now = readFileSync(file, 'utf8');
    } catch {
      return false; // released meanwhile
    }
    if (now !== judged) return false; // a new holder took it after we judged: not ours to break
    unlinkSync(file);
    return true;
  } finally {
    try {
      unlinkSync(breakFile);
    } catch {
      /* judged abandoned and removed by another waiter */
    }
  }
}

/** Takes the lock, waiting for a live holder and breaking a stale one. Returns the release function. */
export async function acquireLock(file: string, opts: LockOptions): Promise<() => void> {
  const me: LockHolder = {
    pid: process.pid,
    procStart: procStartTime(process.pid),
    host: hostname(),
    since: new Date().toISOString(),
    purpose: opts.purpose,
    token: ++acquisitions,
  };
  const content = JSON.stringify(me);
  const waitMs = opts.waitMs ?? 20 * 60_000;
  const t0 = Date.now();
  let lastReport = -Infinity;
  while (true) {
    if (tryCreate(file, content)) {
      return () => {
        try {
          if (readFileSync(file, 'utf8') === content) unlinkSync(file);
        } catch {
          /* already gone */
        }
      };
    }
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile: retry at once
      throw e;
    }
    const holder = parseHolder(text);
    if (isStale(file, holder) && breakStale(file, text)) continue;
    const waited = Date.now() - t0;
    if (waited > waitMs) {
      const who = holder ? `pid ${holder.pid} on ${holder.host} (${holder.purpose}, since ${holder.since})` : 'an unknown process';
      throw new Error(
        `timed out after ${Math.round(waited / 1000)} s waiting for the lock on ${opts.what}, held by ${who}. ` +
          `If that process is gone, delete ${file} and retry.`,
      );
    }
    if (opts.onWait && Date.now() - lastReport >= 15_000) {
      lastReport = Date.now();
      opts.onWait(holder, waited);
    }
    await sleep(POLL_MS);
  }
}

/** Runs `fn` while holding the lock file. */
export async function withLock<T>(file: string, opts: LockOptions, fn: () => Promise<T>): Promise<T> {
  const release = await acquireLock(file, opts);
  try {
    return await fn();
  } finally {
    release();
  }
}
