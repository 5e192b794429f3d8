/**
 * A training run's data for activity tests: a temp file:// store holding run.json of a config and,
 * when asked, committed checkpoint 0 (the seeded initial weights) — what `initRun` would leave.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeCheckpoint } from '../../../activities/checkpoint/checkpoint.js';
import { initTrainState } from '../../../activities/model/engine.js';
import type { TrainState } from '../../../activities/model/engine-types.js';
import { initWeights } from '../../../activities/model/init.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { resolveRun, writeRunRecord, type ResolvedRun } from '../../../activities/run/resolve.js';
import { checkpointPrefix } from '../../../activities/store/keys.js';
import { commit } from '../../../activities/store/manifest.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { openStore } from '../../../activities/store/open.js';

export interface RunFixture {
  dir: string;
  storeUri: string;
  store: ObjectStore;
  run: ResolvedRun;
  /** Checkpoint 0's state, when it was committed. */
  state: TrainState | null;
  /** Closes the store and deletes the temp dir. */
  teardown(): Promise<void>;
}

export async function runFixture(runId: string, config: RunConfigInput, opts: { checkpoint0?: boolean } = {}): Promise<RunFixture> {
  const dir = await mkdtemp(join(tmpdir(), `${runId}-`));
  const storeUri = `file://${dir}`;
  const store = openStore(storeUri);
  const cfg = parseRunConfig({ ...config, store: storeUri });
  await writeRunRecord(store, { run_id: runId, name: cfg.name, resumed_from: null, config: cfg });
  const run = resolveRun(cfg);
  let state: TrainState | null = null;
  if (opts.checkpoint0) {
    state = initTrainState(run.model, initWeights(run.model, cfg.seed));
    await commit(store, checkpointPrefix(runId, 0), await writeCheckpoint(store, runId, 0, state));
  }
  return {
    dir,
    storeUri,
    store,
    run,
    state,
    async teardown() {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
