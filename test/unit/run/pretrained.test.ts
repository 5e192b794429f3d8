/**
 * A run that starts `from` a pretrained Hugging Face model directory (issue 11 §3), on the
 * transformers-made fixtures of test/fixtures/hf: the config check before the run (the directory, its
 * files, its fields, the from-scratch fields it excludes), how prompts and gold completions become
 * ids (the chat template's user turn and generation prompt, the end-of-turn token; a base model
 * without a template encodes with its own specials), and what initRun leaves: run.json naming every
 * source file by size and sha256, the run's own copy of the config and tokenizer files, checkpoint 0
 * holding the pretrained weights, and a refusal, naming both hashes, when the directory changed
 * under a re-executed initRun.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { initRun } from '../../../activities/checkpoint/init-run.js';
import { loadWeights } from '../../../activities/checkpoint/checkpoint.js';
import { exportRun } from '../../../activities/checkpoint/export.js';
import { ConfigError } from '../../../activities/common/config.js';
import { parseModelConfig } from '../../../activities/model/config.js';
import { checkParameters, loadHfModel } from '../../../activities/model/hf.js';
import { readCheckpointDir } from '../../../activities/model/safetensors.js';
import { parseRunConfig, type RunConfigInput } from '../../../activities/run/config.js';
import { checkRunConfig, loadRun } from '../../../activities/run/resolve.js';
import type { RunRecord } from '../../../activities/run/types.js';
import { basePrefix, runRecordKey } from '../../../activities/store/keys.js';
import { readManifest } from '../../../activities/store/manifest.js';
import { openStore } from '../../../activities/store/open.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/hf/', import.meta.url));
const work = await mkdtemp(join(tmpdir(), 'pretrained-'));
after(() => rm(work, { recursive: true, force: true }));

const configFrom = (from: string, over: Partial<RunConfigInput> = {}) =>
  parseRunConfig({
    name: 'from-qwen3',
    store: pathToFileURL(join(work, 'store')).href,
    model: { from },
    phases: [{ kind: 'sft', steps: 1, batchSize: 2 }],
    ...over,
  });

const refusal = async (p: Promise<unknown>, re: RegExp) =>
  assert.rejects(p, (e: unknown) => e instanceof ConfigError && re.test(e.message), `expected ConfigError ${re}`);

/** A copy of a fixture directory to damage. */
async function copyOf(name: string, as: string): Promise<string> {
  const dir = join(work, as);
  await cp(join(FIXTURES, name), dir, { recursive: true });
  return dir;
}

describe('the config check before a pretrained run starts', () => {
  it('model.from excludes the from-scratch fields, naming each', () => {
    assert.throws(
      () => parseRunConfig({ model: { from: './m', hidden: 64, initStd: 0.1 } }),
      (e: unknown) =>
        e instanceof ConfigError &&
        /model\.hidden: model\.from loads a pretrained model, which brings its own architecture; remove model\.hidden/.test(e.message) &&
        /model\.initStd: .*brings its own weights/.test(e.message),
    );
  });

  it('a relative model.from resolves against the config file directory, like a dataset path', () => {
    const cfg = parseRunConfig({ model: { from: 'models/qwen' } }, 'run config', { baseDir: '/srv/configs' });
    assert.equal(cfg.model.from, 'file:///srv/configs/models/qwen');
  });

  it('a missing directory, a missing tokenizer, an unsupported architecture and an unsupported rope type are refused naming the file and field', async () => {
    await refusal(
      checkRunConfig(configFrom(join(work, 'nowhere'))),
      /model\.from: .*nowhere\/config\.json not found: model\.from must name a Hugging Face model directory/,
    );
    const noTok = await copyOf('qwen3', 'no-tokenizer');
    await rm(join(noTok, 'tokenizer.json'));
    await refusal(checkRunConfig(configFrom(noTok)), /model\.from: .*no-tokenizer\/tokenizer\.json not found/);
    const falcon = await copyOf('qwen3', 'falcon');
    const cfg = JSON.parse(await readFile(join(falcon, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(falcon, 'config.json'), JSON.stringify({ ...cfg, model_type: 'falcon' }));
    await refusal(
      checkRunConfig(configFrom(falcon)),
      /model\.from: .*falcon\/config\.json: model_type: unsupported model_type "falcon"; supported: gpt2, llama, qwen2, qwen3, mistral/,
    );
    const dynamic = await copyOf('qwen3', 'dynamic');
    await writeFile(
      join(dynamic, 'config.json'),
      JSON.stringify({ ...cfg, rope_parameters: { rope_type: 'dynamic', rope_theta: 1e6, factor: 2 } }),
    );
    await refusal(checkRunConfig(configFrom(dynamic)), /rope_parameters\.rope_type: rope type "dynamic"/);
  });
});

describe('prompts and completions of a pretrained run', () => {
  it('a chat model renders the prompt as the user turn plus the generation prompt and ends completions with its end-of-turn token', async () => {
    const run = await checkRunConfig(configFrom(join(FIXTURES, 'qwen3')));
    const { tokenizer } = run;
    const ids = run.encodePrompt('12+34=');
    assert.equal(tokenizer.decode(ids), '<|im_start|>user\n12+34=<|im_end|>\n<|im_start|>assistant\n');
    assert.equal(ids[0], tokenizer.tokenToId('<|im_start|>'), 'no BOS: the template begins the sequence');
    const completion = run.encodeCompletion('46');
    assert.equal(completion.at(-1), tokenizer.tokenToId('<|im_end|>'));
    assert.equal(tokenizer.decode(completion.slice(0, -1)), '46');
    const expected = JSON.parse(await readFile(join(FIXTURES, 'qwen3', 'expected.json'), 'utf8')) as { eos_token_ids: number[] };
    assert.deepEqual([...run.stopIds], expected.eos_token_ids, "generation stops on generation_config.json's eos ids");
    assert.equal(run.model.modelType, 'qwen3');
  });

  it('a base model without a chat template encodes the prompt with the tokenizer alone', async () => {
    const base = await copyOf('qwen3', 'base-model');
    await rm(join(base, 'chat_template.jinja'));
    const run = await checkRunConfig(configFrom(base));
    assert.deepEqual(run.encodePrompt('12+34='), run.tokenizer.encode('12+34='));
    assert.equal(run.pretrained?.chatTemplate, null);
  });
});

describe('initRun of a pretrained run', () => {
  it('records every source file by size and sha256, copies the config and tokenizer files, and makes the pretrained weights checkpoint 0', async () => {
    const src = join(FIXTURES, 'smollm2'); // BF16 weights: checkpoint 0 holds them upcast to float32
    const config = configFrom(src);
    const r = await initRun({ storeUri: config.store, runId: 'pre', config, resumeFrom: null });
    assert.equal(r.startStep, 0);
    const store = openStore(config.store);
    try {
      const record = JSON.parse(new TextDecoder().decode(await store.get(runRecordKey('pre')))) as RunRecord;
      assert.equal(record.base_model?.uri, pathToFileURL(src).href);
      const names = record.base_model!.files.map((f) => f.name);
      assert.deepEqual(names, [
        'chat_template.jinja',
        'config.json',
        'generation_config.json',
        'model.safetensors',
        'tokenizer.json',
        'tokenizer_config.json',
      ]);
      for (const f of record.base_model!.files) {
        const bytes = await readFile(join(src, f.name));
        assert.equal(f.bytes, bytes.length, f.name);
        assert.equal(f.sha256, createHash('sha256').update(bytes).digest('hex'), f.name);
      }
      const copied = (await readManifest(store, basePrefix('pre')))!.artifacts.map((a) => a.name).sort();
      assert.deepEqual(copied, ['chat_template.jinja', 'config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']);

      const cfg = parseModelConfig(JSON.parse(await readFile(join(src, 'config.json'), 'utf8')));
      const contents = await readCheckpointDir(src);
      const want = checkParameters(cfg, contents.tensors, src);
      const got = await loadWeights(store, 'pre', 0);
      assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
      for (const [name, t] of want) assert.deepEqual(got.get(name)!.data, t.data, `${name} bit for bit`);

      // every stage resolves the run from its own copy
      const { run } = await loadRun(store, 'pre');
      assert.equal(run.model.modelType, 'llama');
      assert.equal(run.tokenizer.decode(run.encodePrompt('7+8=')), '<|im_start|>user\n7+8=<|im_end|>\n<|im_start|>assistant\n');
    } finally {
      await store.close();
    }
  });

  it('a re-executed initRun whose source directory changed is refused naming the file and both hashes', async () => {
    const src = await copyOf('qwen3', 'changing');
    const config = configFrom(src);
    await initRun({ storeUri: config.store, runId: 'chg', config, resumeFrom: null });
    const before = createHash('sha256')
      .update(await readFile(join(src, 'tokenizer.json')))
      .digest('hex');
    const tok = JSON.parse(await readFile(join(src, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(src, 'tokenizer.json'), JSON.stringify(tok));
    const now = createHash('sha256')
      .update(await readFile(join(src, 'tokenizer.json')))
      .digest('hex');
    assert.notEqual(now, before);
    await assert.rejects(
      initRun({ storeUri: config.store, runId: 'chg', config, resumeFrom: null }),
      (e: unknown) =>
        e instanceof Error &&
        e.message.includes(`changing/tokenizer.json changed: run.json records sha256 ${before}`) &&
        e.message.includes(`now has sha256 ${now}`),
    );
  });

  it('export writes a directory that loads back with the same weights, config, tokenizer and chat template', async () => {
    const src = join(FIXTURES, 'qwen3');
    const config = configFrom(src);
    await initRun({ storeUri: config.store, runId: 'exp', config, resumeFrom: null });
    const out = join(work, 'exported');
    await exportRun(config.store, 'exp', 0, out);
    const back = await loadHfModel(out, { requireTokenizer: true });
    assert.deepEqual(back.config, parseModelConfig(JSON.parse(await readFile(join(src, 'config.json'), 'utf8'))));
    assert.equal(await readFile(join(out, 'chat_template.jinja'), 'utf8'), await readFile(join(src, 'chat_template.jinja'), 'utf8'));
    assert.deepEqual(back.tokenizer!.encode('12+34=46'), (await checkRunConfig(config)).tokenizer.encode('12+34=46'));
    const weights = checkParameters(back.config, (await readCheckpointDir(src)).tensors, src);
    for (const [name, t] of weights) assert.deepEqual(back.tensors.get(name)!.data, t.data, name);
  });

  it('a Qwen3 trained from scratch exports as a Qwen3ForCausalLM directory that a from-run starts from bit for bit (the README example)', async () => {
    const store0 = pathToFileURL(join(work, 'store-scratch')).href;
    const scratch = parseRunConfig({
      name: 'tiny-qwen3',
      store: store0,
      model: { type: 'qwen3', hidden: 32, layers: 1, heads: 2 },
      phases: [{ kind: 'sft', steps: 1 }],
    });
    await initRun({ storeUri: store0, runId: 'scratch', config: scratch, resumeFrom: null });
    const dir = join(work, 'tiny-qwen3');
    await exportRun(store0, 'scratch', 0, dir);
    const exported = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(exported.model_type, 'qwen3');
    assert.deepEqual(exported.architectures, ['Qwen3ForCausalLM']);
    const config = configFrom(dir, { name: 'from-tiny-qwen3' });
    const run = await checkRunConfig(config);
    assert.equal(run.tokenizer.kind, 'char', "the exported char tokenizer is read back as the run's char tokenizer");
    assert.deepEqual(run.encodePrompt('1+2='), [run.tokenizer.bosId, ...run.tokenizer.encode('1+2=', { addSpecialTokens: false })]);
    await initRun({ storeUri: config.store, runId: 'from-scratch', config, resumeFrom: null });
    const store = openStore(config.store);
    const store1 = openStore(store0);
    try {
      const a = await loadWeights(store1, 'scratch', 0);
      const b = await loadWeights(store, 'from-scratch', 0);
      for (const [name, t] of a) assert.deepEqual(b.get(name)!.data, t.data, name);
    } finally {
      await store.close();
      await store1.close();
    }
  });
});
