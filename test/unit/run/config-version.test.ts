/**
 * Safe upgrades of a run's stored config (activities/run/config-version.ts): run.json of every
 * schema version (test/fixtures/run-records/run-v<N>.json, each written by the code of its time)
 * reads as the current version, a re-executed initRun of a run started before an upgrade finds its
 * run.json compatible, and user configs name removed fields.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ApplicationFailure } from '@temporalio/common';
import { ConfigError } from '../../../activities/common/config.js';
import { parseRunConfig, parseStoredRunConfig } from '../../../activities/run/config.js';
import { migrateRunConfig, RUN_CONFIG_VERSION } from '../../../activities/run/config-version.js';
import { readRunRecord, recordFromBytes, writeRunRecord } from '../../../activities/run/resolve.js';
import { initRun } from '../../../activities/checkpoint/init-run.js';
import { runRecordKey } from '../../../activities/store/keys.js';
import { openStore } from '../../../activities/store/open.js';

const dir = new URL('../../fixtures/run-records/', import.meta.url);
const fixture = (v: number) => readFileSync(new URL(`run-v${v}.json`, dir));
const json = (v: number) => JSON.parse(fixture(v).toString('utf8')) as { config: Record<string, unknown> } & Record<string, unknown>;

function tempStore() {
  const d = mkdtempSync(join(tmpdir(), 'config-version-'));
  return { store: openStore(pathToFileURL(d).href), uri: pathToFileURL(d).href, done: () => rmSync(d, { recursive: true, force: true }) };
}

test(`there is a run.json fixture of every schema version, 1 to ${RUN_CONFIG_VERSION}`, () => {
  const versions = readdirSync(dir)
    .map((f) => /^run-v(\d+)\.json$/.exec(f)?.[1])
    .filter((v) => v !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
  assert.deepEqual(
    versions,
    Array.from({ length: RUN_CONFIG_VERSION }, (_, i) => i + 1),
  );
});

test('run.json v1 (no schema_version, workflow.maxAttempts 30) reads as v2: maxAttempts gone, heartbeatTimeoutSeconds 3 kept, blockedAfterMinutes 5 and retryIntervalCapSeconds 60 by default', () => {
  assert.equal(json(1).schema_version, undefined);
  assert.equal((json(1).config.workflow as Record<string, unknown>).maxAttempts, 30);
  const r = recordFromBytes(fixture(1), 'run-v1.json');
  assert.equal(r.schema_version, 2);
  assert.equal(r.config.version, 2);
  assert.equal('maxAttempts' in r.config.workflow, false);
  assert.equal(r.config.workflow.heartbeatTimeoutSeconds, 3);
  assert.equal(r.config.workflow.activityTimeoutMinutes, 30);
  assert.equal(r.config.workflow.blockedAfterMinutes, 5);
  assert.equal(r.config.workflow.retryIntervalCapSeconds, 60);
  assert.deepEqual(r.config.workflow.stages, {});
});

test('run.json v1 and v2 of the same run read as the same record but for the run id', () => {
  const a = recordFromBytes(fixture(1), 'run-v1.json');
  const b = recordFromBytes(fixture(2), 'run-v2.json');
  assert.deepEqual({ ...a, run_id: 'x' }, { ...b, run_id: 'x' });
});

test('a run.json of schema_version 3 (a newer durable-rl) is refused, non-retryable, naming the versions this code reads', () => {
  const newer = Buffer.from(JSON.stringify({ ...json(2), schema_version: 3 }));
  assert.throws(
    () => recordFromBytes(newer, 'runs/x/run.json'),
    (e: unknown) =>
      e instanceof ApplicationFailure &&
      e.nonRetryable &&
      e.type === 'RunRecordVersion' &&
      /runs\/x\/run\.json/.test(e.message) &&
      /1 to 2/.test(e.message),
  );
});

test('readRunRecord of a store holding a v1 run.json answers the migrated record', async () => {
  const t = tempStore();
  try {
    await t.store.put(runRecordKey('tiny-v1'), fixture(1));
    const r = await readRunRecord(t.store, 'tiny-v1');
    assert.equal(r.schema_version, 2);
    assert.equal(r.config.workflow.blockedAfterMinutes, 5);
  } finally {
    await t.store.close();
    t.done();
  }
});

test('writeRunRecord over a v1 run.json of the same config (a re-executed initRun after the upgrade) is accepted and leaves the file byte for byte', async () => {
  const t = tempStore();
  try {
    const key = runRecordKey('tiny-v1');
    await t.store.put(key, fixture(1));
    const v1 = json(1);
    await writeRunRecord(t.store, { run_id: 'tiny-v1', name: 'tiny', resumed_from: null, config: parseStoredRunConfig(v1.config) });
    assert.deepEqual(Buffer.from(await t.store.get(key)), fixture(1));
  } finally {
    await t.store.close();
    t.done();
  }
});

test('writeRunRecord over a v1 run.json of another config (seed 12, not 11) is a non-retryable RunConfigConflict naming config.seed', async () => {
  const t = tempStore();
  try {
    await t.store.put(runRecordKey('tiny-v1'), fixture(1));
    const config = parseStoredRunConfig({ ...json(1).config, seed: 12 });
    await assert.rejects(
      writeRunRecord(t.store, { run_id: 'tiny-v1', name: 'tiny', resumed_from: null, config }),
      (e: unknown) => e instanceof ApplicationFailure && e.type === 'RunConfigConflict' && /config\.seed differs/.test(e.message),
    );
  } finally {
    await t.store.close();
    t.done();
  }
});

test('initRun re-executed with the workflow input of a run started before the upgrade (an unversioned config with maxAttempts) finds its v1 run.json and commits checkpoint 0', async () => {
  const t = tempStore();
  try {
    await t.store.put(runRecordKey('tiny-v1'), fixture(1));
    const r = await initRun({ storeUri: t.uri, runId: 'tiny-v1', config: json(1).config as never, resumeFrom: null });
    assert.equal(r.startStep, 0);
    assert.deepEqual(Buffer.from(await t.store.get(runRecordKey('tiny-v1'))), fixture(1), 'run.json left as written');
  } finally {
    await t.store.close();
    t.done();
  }
});

test('parseStoredRunConfig of an unversioned config equals parseRunConfig of the same config without maxAttempts', () => {
  const v1 = json(1).config;
  const { maxAttempts, ...workflow } = v1.workflow as Record<string, unknown>;
  assert.equal(maxAttempts, 30);
  assert.deepEqual(parseStoredRunConfig(v1), parseRunConfig({ ...v1, workflow }));
});

test("a user's config that sets workflow.maxAttempts is refused naming the field and what replaced it; stating version: 1 migrates it", () => {
  assert.throws(
    () => parseRunConfig({ workflow: { maxAttempts: 5 } }),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.issues.length === 1 &&
      e.issues[0]!.path === 'workflow.maxAttempts' &&
      /removed in config version 2/.test(e.message) &&
      /blockedAfterMinutes/.test(e.message),
  );
  const migrated = parseRunConfig({ version: 1, workflow: { maxAttempts: 5, heartbeatTimeoutSeconds: 7 } });
  assert.equal(migrated.version, 2);
  assert.equal(migrated.workflow.heartbeatTimeoutSeconds, 7);
  assert.equal('maxAttempts' in migrated.workflow, false);
});

test('a config stating version 3 or 0 is refused naming version', () => {
  for (const version of [3, 0]) {
    assert.throws(
      () => parseRunConfig({ version }),
      (e: unknown) => e instanceof ConfigError && e.issues[0]!.path === 'version',
    );
  }
});

test('migrateRunConfig leaves its input untouched and returns a current config as it is', () => {
  const v1 = json(1).config;
  const before = JSON.stringify(v1);
  const out = migrateRunConfig(v1, 1) as Record<string, unknown>;
  assert.equal(JSON.stringify(v1), before);
  assert.equal(out.version, 2);
  const current = { version: 2, seed: 3 };
  assert.equal(migrateRunConfig(current, 2), current);
});
