/**
 * `gcRun`: removes from a run's store what its retention policy (retention.ts) no longer keeps —
 * whole checkpoints, and the AdamW moments of kept checkpoints that no resume will read — and
 * nothing else: step data (metrics, rollouts, rewards, advantages) and evaluations are never touched,
 * so the report and every kept checkpoint read as before.
 *
 * At the manifest level, so that a crash at any point leaves the store consistent:
 *
 * - a dropped checkpoint loses its `manifest.json` first: from that moment it is no longer
 *   committed (manifest.ts), so no reader takes it, then its objects are deleted;
 * - a checkpoint that loses its moments gets a new manifest without the `OPTIMIZER_NAME` entry
 *   (an atomic replace: readers see the old manifest or the new one), then the moments object is
 *   deleted. This is the one place a committed manifest is rewritten; the artifacts it keeps are
 *   the same objects, and a re-executed commit of that checkpoint finds it committed and writes
 *   nothing;
 * - what a crash leaves behind (objects of a checkpoint whose manifest is gone, or that its
 *   manifest no longer lists) is swept by the next `gcRun`: below the latest committed checkpoint,
 *   nothing writes objects any more, so an unreferenced object there is garbage. The latest and
 *   anything after it (the learner's uncommitted next checkpoint) are never swept.
 *
 * Safe on a running run: the plan keeps the latest checkpoint (which the next step trains from and
 * rolls out with) and the reference of a running phase.
 */
import type { RunConfig } from '../run/config.js';
import { readRunRecord } from '../run/resolve.js';
import { retentionPlan, type RetentionPlan, type RetentionPolicy } from './retention.js';
import { checkpointPrefix, OPTIMIZER_NAME, parseRunKey, runFolder } from '../store/keys.js';
import { artifactKey, committedSteps, encodeManifest, manifestKey, readManifest } from '../store/manifest.js';
import type { ObjectStore } from '../store/object-store.js';

/** A policy gc cannot apply (keepEvery without keepLast once the overrides are merged); nothing was removed. */
export class RetentionPolicyError extends Error {
  override name = 'RetentionPolicyError';
}

export interface GcOptions {
  /** Say what would be removed, remove nothing. */
  dryRun?: boolean;
  /** Fields that override the run's own `retention` (the CLI's --keep-last, --keep-every, --optimizer-state). */
  policy?: Partial<RetentionPolicy>;
  /** The run's config when the caller has read run.json already (commitStep); default: read it here. */
  config?: RunConfig;
}

/** One removal: a whole checkpoint, a checkpoint's moments, or objects an interrupted gc left. */
export interface GcRemoval {
  checkpoint: number;
  what: 'checkpoint' | 'optimizer' | 'leftover';
  /** Store keys removed (or that would be). */
  keys: string[];
  bytes: number;
}

export interface GcResult {
  runId: string;
  policy: RetentionPolicy;
  plan: RetentionPlan;
  removed: GcRemoval[];
  /** Sum of the removals' bytes. */
  bytesFreed: number;
  dryRun: boolean;
}

/** Applies the run's retention policy (with `options.policy` over it) to its checkpoints. */
export async function gcRun(store: ObjectStore, runId: string, options: GcOptions = {}): Promise<GcResult> {
  const config = options.config ?? (await readRunRecord(store, runId)).config;
  const policy: RetentionPolicy = { ...config.retention, ...options.policy };
  if (policy.keepEvery !== null && policy.keepLast === null)
    throw new RetentionPolicyError('keepEvery needs keepLast (without keepLast every checkpoint is kept): give --keep-last');
  const checkpoints = await committedSteps(store, runId, 'checkpoints');
  const plan = retentionPlan({
    checkpoints,
    phases: config.phases,
    frozenBase: Boolean(config.model.lora),
    policy,
    offPolicySteps: config.rollout.offPolicySteps ?? 0,
  });
  const latest = checkpoints.at(-1) ?? -1;
  const dryRun = options.dryRun ?? false;

  // every object below the run's checkpoints, by checkpoint number
  const objects = new Map<number, Map<string, number>>();
  for await (const o of store.list(`${runFolder(runId, 'checkpoints')}/`)) {
    const k = parseRunKey(o.key);
    if (k?.folder !== 'checkpoints') continue;
    const m = objects.get(k.number!) ?? new Map<string, number>();
    m.set(o.key, o.size);
    objects.set(k.number!, m);
  }
  const sizes = (keys: string[], v: number) => keys.reduce((n, key) => n + (objects.get(v)?.get(key) ?? 0), 0);

  const removed: GcRemoval[] = [];
  // leftovers of an interrupted gc (or of a commit that never finished) below the latest checkpoint
  for (const [v, objs] of [...objects].sort((a, b) => a[0] - b[0])) {
    if (v >= latest) continue;
    const prefix = checkpointPrefix(runId, v);
    const manifest = checkpoints.includes(v) ? await readManifest(store, prefix) : undefined;
    const listed = new Set(manifest ? [manifestKey(prefix), ...manifest.artifacts.map((e) => artifactKey(prefix, e))] : []);
    const keys = [...objs.keys()].filter((key) => !listed.has(key)).sort();
    if (keys.length > 0) removed.push({ checkpoint: v, what: 'leftover', keys, bytes: sizes(keys, v) });
  }
  for (const v of plan.drop) {
    const prefix = checkpointPrefix(runId, v);
    const manifest = await readManifest(store, prefix);
    if (!manifest) continue;
    const keys = [manifestKey(prefix), ...manifest.artifacts.map((e) => artifactKey(prefix, e))];
    removed.push({ checkpoint: v, what: 'checkpoint', keys, bytes: sizes(keys, v) });
  }
  for (const v of plan.dropOptimizer) {
    const prefix = checkpointPrefix(runId, v);
    const manifest = await readManifest(store, prefix);
    const entry = manifest?.artifacts.find((e) => e.name === OPTIMIZER_NAME);
    if (!entry) continue; // already weights-only
    const keys = [artifactKey(prefix, entry)];
    removed.push({ checkpoint: v, what: 'optimizer', keys, bytes: sizes(keys, v) });
  }

  if (!dryRun) {
    for (const r of removed) {
      const prefix = checkpointPrefix(runId, r.checkpoint);
      if (r.what === 'optimizer') {
        const manifest = (await readManifest(store, prefix))!;
        const artifacts = manifest.artifacts.filter((e) => e.name !== OPTIMIZER_NAME);
        await store.put(manifestKey(prefix), encodeManifest({ ...manifest, artifacts }));
      }
      // a dropped checkpoint's manifest is its first key: it stops being committed before anything else goes
      for (const key of r.keys) await store.delete(key);
    }
  }
  return { runId, policy, plan, removed, bytesFreed: removed.reduce((n, r) => n + r.bytes, 0), dryRun };
}
