/**
 * `durable-rl gc <run>` as a person runs it (child process, real Temporal dev server, file:// store):
 * a 6-step run with a manual retention policy (keepLast 2, keepEvery 3) leaves checkpoints 0..6;
 * `gc --dry-run` lists the checkpoints the policy drops and removes nothing; `gc` removes exactly
 * those (their objects gone, the bytes it says), keeps the others and every step's data and
 * evaluation; `resume-from` a kept checkpoint trains to the end, and from a removed one is refused.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openStore } from '../../../activities/store/open.js';
import type { ObjectStore } from '../../../activities/store/object-store.js';
import { runPrefix } from '../../../activities/store/keys.js';
import { committedSteps } from '../../../activities/store/manifest.js';
import { testTemporal, type TestTemporal } from '../../support/temporal.js';
import { runCli } from '../../support/cli.js';

const tag = Date.now().toString(36);
const dir = mkdtempSync(join(tmpdir(), 'drl-gc-cli-'));
const storeUri = pathToFileURL(join(dir, 'store')).href;

let t: TestTemporal;
let store: ObjectStore;
before(async () => {
  t = await testTemporal();
  store = openStore(storeUri);
});
after(async () => {
  await t?.client.connection.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

const cli = (args: string[]) => runCli(args, t.env);

/** Six sft steps (checkpoints 0..6), seconds each; gc is left to the command (`apply: manual`). */
const CONFIG = (name: string) => `name: ${name}
seed: 7
task:
  name: addition
  options: { minDigits: 1, maxDigits: 1, reverse: true, pad: true }
model: { hidden: 32, layers: 1, heads: 2 }
phases:
  - { kind: sft, steps: 6, batchSize: 8, lr: 0.003 }
eval: { prompts: 8, passK: 0 }
engine: { threads: 1 }
retention: { keepLast: 2, keepEvery: 3, apply: manual }
`;

/** Every object of the run, key → size. */
async function objects(runId: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const o of store.list(`${runPrefix(runId)}/`)) out.set(o.key, o.size);
  return out;
}

const DROPPED = [1, 2, 4];
const KEPT = [0, 3, 5, 6];

test('gc --dry-run lists the checkpoints the policy drops and removes nothing; gc removes exactly those, keeps step data, and resume-from a kept checkpoint still trains', async () => {
  const file = join(dir, 'gc.yaml');
  writeFileSync(file, CONFIG(`gc-cli-${tag}`));
  const train = await cli(['train', file, '--store', storeUri, '--with-workers', '--follow']);
  assert.equal(train.code, 0, train.stdout + train.stderr);
  const runId = train.stdout.match(/^started training run (\S+)$/m)![1]!;
  assert.deepEqual(await committedSteps(store, runId, 'checkpoints'), [0, 1, 2, 3, 4, 5, 6], 'manual: the run itself removed nothing');
  const before = await objects(runId);
  const steps = await committedSteps(store, runId, 'steps');
  const evals = await committedSteps(store, runId, 'evals');
  assert.deepEqual(steps, [0, 1, 2, 3, 4, 5]);
  assert.ok(evals.length >= 2, `evaluations at the start and the end: ${evals.join(', ')}`);

  // dry run: what would go, and nothing goes
  const dry = await cli(['gc', runId, '--dry-run']);
  assert.equal(dry.code, 0, dry.stdout + dry.stderr);
  assert.match(dry.stdout, new RegExp(`^retention of ${runId}: keepLast 2, keepEvery 3, optimizerState all$`, 'm'));
  assert.match(dry.stdout, /^keeps checkpoints 0 \(.+\); 3 \(.+\); 5 \(.+\); 6 \(.+\)$/m);
  const would = [...dry.stdout.matchAll(/^ {2}would remove checkpoint (\d+): (\d+) objects?, .+$/gm)];
  assert.deepEqual(
    would.map((m) => Number(m[1])),
    DROPPED,
    dry.stdout,
  );
  const wouldFree = Number(dry.stdout.match(/^would free .+ \((\d+) bytes\)$/m)?.[1]);
  assert.ok(wouldFree > 0, dry.stdout);
  assert.deepEqual(await objects(runId), before, 'the dry run removed or changed an object');

  // the real one: those checkpoints and nothing else
  const gc = await cli(['gc', runId]);
  assert.equal(gc.code, 0, gc.stdout + gc.stderr);
  const removed = [...gc.stdout.matchAll(/^ {2}removed checkpoint (\d+): (\d+) objects?, .+$/gm)];
  assert.deepEqual(
    removed.map((m) => [Number(m[1]), Number(m[2])]),
    would.map((m) => [Number(m[1]), Number(m[2])]),
    'gc removed what the dry run listed',
  );
  const freed = Number(gc.stdout.match(/^freed .+ \((\d+) bytes\)$/m)?.[1]);
  assert.equal(freed, wouldFree);
  assert.deepEqual(await committedSteps(store, runId, 'checkpoints'), KEPT);
  const after = await objects(runId);
  const gone = [...before.keys()].filter((k) => !after.has(k));
  assert.equal(
    gone.reduce((n, k) => n + before.get(k)!, 0),
    freed,
    'the bytes it says it freed are the bytes gone',
  );
  for (const k of gone) {
    const m = k.match(/\/checkpoints\/0*(\d+)\//);
    assert.ok(m && DROPPED.includes(Number(m[1])), `${k} removed: not an object of a dropped checkpoint`);
  }
  for (const [k, size] of before) if (!gone.includes(k)) assert.equal(after.get(k), size, `${k} changed`);
  assert.equal(after.size, before.size - gone.length, 'gc wrote no new object');
  assert.deepEqual(await committedSteps(store, runId, 'steps'), steps, 'step data is never removed');
  assert.deepEqual(await committedSteps(store, runId, 'evals'), evals, 'evaluations are never removed');

  // a second gc finds nothing to do
  const again = await cli(['gc', runId]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /^freed 0 B \(0 bytes\): nothing to remove$/m);

  // resume-from: a removed checkpoint is refused naming the committed ones; a kept one trains to the end
  const refused = await cli(['resume-from', runId, '--step', '0']);
  assert.equal(refused.code, 2, refused.stdout + refused.stderr);
  assert.match(refused.stderr, /^durable-rl: step 0 of ".+" is not committed \(committed checkpoints: 0, 3, 5, 6\)/);
  const resumed = await cli(['resume-from', runId, '--step', '2', '--with-workers', '--follow']);
  assert.equal(resumed.code, 0, resumed.stdout + resumed.stderr);
  assert.match(resumed.stdout, new RegExp(`resumes ${runId} from checkpoint 3 `));
  const newId = resumed.stdout.match(/^started training run (\S+)$/m)![1]!;
  assert.match(resumed.stdout, new RegExp(`^run ${newId} completed: 6 steps committed`, 'm'));
  assert.deepEqual(await committedSteps(store, newId, 'checkpoints'), [3, 4, 5, 6]);
});
