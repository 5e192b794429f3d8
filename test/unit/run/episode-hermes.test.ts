/**
 * Episodes of a pretrained chat model (the `hermes` format) through the rollout activity: the tiny
 * Qwen3 fixture with a Hermes-style template that declares tools (test/fixtures/env/hermes-tools.jinja)
 * runs `calculator` episodes from its (random) checkpoint 0. The prompt is the template's rendering of
 * the environment's first messages with the `calc` tool declared; every completion token is either
 * the policy's, as sampled, or an observation segment the template wrote.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { initRun } from '../../../activities/checkpoint/init-run.js';
import { releaseEngines } from '../../../activities/rollout/policy.js';
import { rolloutShard } from '../../../activities/rollout/rollout-shard.js';
import { parseRunConfig } from '../../../activities/run/config.js';
import { loadRun } from '../../../activities/run/resolve.js';
import { stepPrefix } from '../../../activities/store/keys.js';
import { readEntry } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';
import { decodeRollouts, type RolloutsRow } from '../../../activities/store/schemas.js';
import { firstShardInput } from './fixture.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'episode-hermes-'));
const model = join(work, 'qwen3-tools');
cpSync(join(FIXTURES, 'hf/qwen3'), model, { recursive: true });
cpSync(join(FIXTURES, 'env/hermes-tools.jinja'), join(model, 'chat_template.jinja'));
const storeUri = pathToFileURL(join(work, 'store')).href;
const config = parseRunConfig({
  name: 'hermes-episodes',
  seed: 5,
  store: storeUri,
  model: { from: model },
  environment: { name: 'calculator', options: { format: 'hermes', maxTurns: 2, maxTotalTokens: 1000 } },
  phases: [{ kind: 'rl', steps: 1, promptsPerStep: 2, groupSize: 2, lr: 1e-5, sampling: { temperature: 1, max_tokens: 24 } }],
  engine: { threads: 1 },
});

after(async () => {
  await releaseEngines();
  rmSync(work, { recursive: true, force: true });
});

describe('hermes episodes of a pretrained chat model', () => {
  let rows: RolloutsRow[];
  let decode: (ids: ArrayLike<number>) => string;
  before(async () => {
    await initRun({ storeUri, runId: 'h', config, resumeFrom: null });
    const store = openStore(storeUri);
    const { run } = await loadRun(store, 'h');
    decode = (ids) => run.tokenizer.decode(Array.from(ids));
    const r = await rolloutShard(firstShardInput(storeUri, 'h', 2));
    rows = decodeRollouts(await readEntry(store, stepPrefix('h', 0), r.rollouts));
    await store.close();
  });

  it('the prompt is the template with the calc tool declared and the system message, ending at the assistant header', () => {
    assert.equal(rows.length, 4);
    for (const r of rows) {
      const prompt = decode(r.prompt_token_ids);
      assert.match(prompt, /<tools>[\s\S]*"name": "calc"[\s\S]*<\/tools>/);
      assert.match(prompt, /careful calculator/);
      assert.ok(prompt.endsWith('<|im_start|>assistant\n'), JSON.stringify(prompt.slice(-40)));
    }
  });

  it('each row is an episode of at most 2 turns within 1000 tokens: policy segments masked in, any observation a template turn with loss mask 0', () => {
    for (const r of rows) {
      assert.ok(r.turns! >= 1 && r.turns! <= 2, `${r.turns} turns`);
      assert.ok(
        r.prompt_token_ids.length + r.completion_token_ids.length <= 1000,
        `${r.prompt_token_ids.length} + ${r.completion_token_ids.length} tokens`,
      );
      let start = 0;
      r.segment_ends!.forEach((end, k) => {
        const role = r.segment_roles![k];
        assert.ok(r.loss_mask!.slice(start, end).every((m) => m === (role === 'policy')));
        if (role === 'observation')
          assert.match(decode(r.completion_token_ids.subarray(start, end)), /<\|im_start\|>user\n<tool_response>/);
        start = end;
      });
    }
  });
});
