/**
 * The engine at real model sizes, side by side with PyTorch (numbers only):
 *
 *   npx tsx bench/real-sizes.ts --with-torch /tmp/pyfx/bin/python      # both models, ~25 min on 2 cores
 *   npx tsx bench/real-sizes.ts --models smollm2-135m --parts decode   # a subset
 *   npx tsx bench/real-sizes.ts --decode 256+64                        # a shorter decode budget
 *   npx tsx bench/real-sizes.ts --quick --with-torch python            # 2-layer models, tiny shapes: a smoke run
 *
 * Models: random weights in the exact shapes of SmolLM2-135M and Qwen2.5-0.5B (the HF configs in
 * `bench/real-sizes.json`, read by both sides). Per model, each in a child process of its own so
 * that every peak RSS (`process.resourceUsage().maxRSS`, PyTorch's `ru_maxrss`) is that
 * measurement's alone:
 * - decode: batch 32, 256 random prompt tokens + 256 new tokens, greedy (argmax), no stop token;
 *   durable-rl `generate` on an engine with `bakeWeights: false` (the rollout's setting) vs HF
 *   `generate` (`do_sample=False`); new tokens/s over the whole call, prefill included. Load time:
 *   `setWeights` + building the decode session vs constructing the HF model;
 * - full fine-tuning and LoRA (r 16, alpha 32, all seven linear modules): trainStep at 8 x 512 with
 *   the SFT loss and AdamW (the engine's defaults, state moved to the session thread as the
 *   learner does) vs a PyTorch fp32 step of the same loss, clipping and AdamW (LoRA via PEFT);
 *   tokens/s of the best timed step after one warm-up step, and peak RSS. Load time: building
 *   the trainStep session vs constructing the model, PEFT wrapper and optimizer;
 * - the machine's peak: best square fp32 MatMul in onnxruntime and torch.mm (and bf16 where the
 *   CPU has AMX); every throughput is also given as a fraction of the best of them (model FLOPs:
 *   2 per multiplied weight per token plus attention; training 3x the forward for full
 *   fine-tuning, 2x for LoRA, whose frozen weights get no gradient).
 * Options: `--with-torch PYTHON` runs `bench/torch-companion.py` with that interpreter for each
 * measurement (without it only durable-rl's column is printed); `--threads N` (default 2, both
 * sides); `--models a,b`; `--parts decode,full,lora`; `--decode P+N` (default 256+256);
 * `--train-steps N` timed steps after the warm-up (default 1; 0 times the first step, session
 * warm-up included: for the slowest runs); `--decode-reps N` (default 1); `--micro N` splits each
 * 8 x 512 training batch into N micro-batches whose gradients are accumulated (durable-rl only:
 * the same update, less activation memory); `--update-part-mib N` the engine's `updatePartMiB` (the
 * accumulated update in parts of at most N MiB of parameters; default the engine's 512, 0 whole).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { parseModelConfig, parameterCount, withLora, type ModelConfig } from '../activities/model/config.js';
import { ModelEngine, initTrainState } from '../activities/model/engine.js';
import { initWeights } from '../activities/model/init.js';
import { sftLoss } from '../activities/model/losses.js';
import { generate } from '../activities/model/generate.js';
import { Graph } from '../activities/model/graph.js';
import * as F from '../activities/model/ops.js';
import { CounterRng } from '../activities/common/rng.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string): string => (args.includes(name) ? args[args.indexOf(name) + 1]! : def);
const quick = args.includes('--quick');
const threads = Number(arg('--threads', '2'));
const part = args.includes('--part') ? arg('--part', '') : undefined;
const python = args.includes('--with-torch') ? arg('--with-torch', '') : undefined;
const models = arg('--models', 'smollm2-135m,qwen2.5-0.5b').split(',');
const parts = arg('--parts', 'decode,full,lora').split(',');
const trainSteps = Number(arg('--train-steps', '1'));
const decodeReps = Number(arg('--decode-reps', '1'));
const micro = Number(arg('--micro', '1'));
const updatePartMiB = args.includes('--update-part-mib') ? Number(arg('--update-part-mib', '')) : undefined;
const [promptLen, newLen] = arg('--decode', quick ? '16+8' : '256+256')
  .split('+')
  .map(Number) as [number, number];
const DECODE_BATCH = quick ? 4 : 32;
const TRAIN = quick ? { batch: 2, seq: 32 } : { batch: 8, seq: 512 };
const LORA_RANK = 16;

const here = fileURLToPath(new URL('.', import.meta.url));
const CONFIG_FILE = `${here}real-sizes.json`;
const COMPANION = `${here}torch-companion.py`;

/** The HF config of `name` (`--quick`: cut to 2 layers, the rest of the shapes kept). */
function hfConfig(name: string): Record<string, unknown> {
  const all = JSON.parse(readFileSync(CONFIG_FILE, 'utf8')) as Record<string, Record<string, unknown>>;
  const c = all[name];
  if (!c) throw new Error(`unknown model ${name}: one of ${Object.keys(all).join(', ')}`);
  return quick ? { ...c, num_hidden_layers: 2 } : c;
}

function now(): number {
  return performance.now() / 1000;
}

/** Forward FLOPs per token at context `ctx`: 2 per multiplied weight (LM head included, the embedding lookup not) + attention. */
function forwardFlopsPerToken(cfg: ModelConfig, ctx: number): number {
  const table = cfg.vocabSize * cfg.hidden;
  const multiplied = parameterCount(cfg) - table + (cfg.tieWordEmbeddings ? table : 0);
  return 2 * multiplied + 2 * 2 * cfg.layers * cfg.heads * cfg.headDim * ctx;
}

/** Model FLOPs of one decode call: the prefill, then `newLen - 1` one-token steps. */
function decodeFlops(cfg: ModelConfig): number {
  return (
    DECODE_BATCH * promptLen * forwardFlopsPerToken(cfg, promptLen / 2) +
    DECODE_BATCH * (newLen - 1) * forwardFlopsPerToken(cfg, promptLen + newLen / 2)
  );
}

/** Model FLOPs of one training step: forward, input gradients and (full fine-tuning) weight gradients. */
function trainFlops(cfg: ModelConfig, lora: boolean): number {
  return (lora ? 2 : 3) * TRAIN.batch * TRAIN.seq * forwardFlopsPerToken(cfg, TRAIN.seq / 2);
}

async function matmulPeak(): Promise<Record<string, number>> {
  const out: Record<string, number> = { gflops: 0 };
  for (const n of [512, 1024, 2048]) {
    const g = new Graph({ name: 'peak' });
    g.output(F.matmul(g.input('a', 'float32', [n, n]), g.input('b', 'float32', [n, n])), 'c');
    const s = await ort.InferenceSession.create(g.toBytes(), { intraOpNumThreads: threads });
    const rng = new CounterRng(1, 'peak', n);
    const data = Float32Array.from({ length: n * n }, (_, i) => rng.normal(i));
    const feeds = { a: new ort.Tensor('float32', data, [n, n]), b: new ort.Tensor('float32', data, [n, n]) };
    await s.run(feeds);
    let fastest = Infinity;
    for (let r = 0; r < (n >= 2048 ? 4 : 10); r++) {
      const t0 = now();
      await s.run(feeds);
      fastest = Math.min(fastest, now() - t0);
    }
    await s.release();
    out[`fp32_n${n}`] = (2 * n ** 3) / fastest / 1e9;
    out.gflops = Math.max(out.gflops!, out[`fp32_n${n}`]!);
  }
  return out;
}

function randomIds(seed: string, rows: number, len: number, vocab: number): number[][] {
  const rng = new CounterRng(7, seed);
  return Array.from({ length: rows }, (_, r) => Array.from({ length: len }, (_, t) => rng.int(r * len + t, vocab)));
}

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

async function benchDecode(cfg: ModelConfig): Promise<Record<string, number>> {
  const engine = new ModelEngine(cfg, { threads, bakeWeights: false });
  const weights = initWeights(cfg, 1);
  const t0 = now();
  engine.setWeights(weights, 'bench');
  await engine.decodeSession();
  await generate(engine, [[1, 2, 3]], { maxNewTokens: 2, pickToken: argmax, stopTokenIds: [] });
  const loadS = now() - t0;
  const prompts = randomIds('decode', DECODE_BATCH, promptLen, cfg.vocabSize);
  let totalS = Infinity;
  let prefillS = 0;
  for (let rep = 0; rep < decodeReps; rep++) {
    let firstAt = 0;
    const t1 = now();
    const out = await generate(engine, prompts, {
      maxNewTokens: newLen,
      stopTokenIds: [],
      temperature: 0,
      pickToken: (logits, s, pos) => {
        if (pos === 0 && s === 0) firstAt = now();
        return argmax(logits);
      },
    });
    const t = now() - t1;
    if (out.some((g) => g.tokens.length !== newLen)) throw new Error('a sequence stopped early');
    if (t < totalS) [totalS, prefillS] = [t, firstAt - t1];
  }
  await engine.close();
  return { loadS, totalS, prefillS, newTokensPerS: (DECODE_BATCH * newLen) / totalS };
}

async function benchTrain(base: ModelConfig, lora: boolean): Promise<Record<string, number>> {
  const cfg = lora ? withLora(base, { rank: LORA_RANK }) : base;
  const engine = new ModelEngine(cfg, { threads, ...(updatePartMiB === undefined ? {} : { updatePartMiB }) });
  let state = initTrainState(cfg, initWeights(cfg, 1));
  const rows = () => Array.from({ length: TRAIN.batch }, () => Array.from({ length: TRAIN.seq }, (_, t) => (t === 0 ? 0 : 1)));
  const t0 = now();
  await engine.trainSession('trainStep', sftLoss());
  const loadS = now() - t0;
  const step = async (i: number) => {
    const ids = randomIds(`train${i}`, TRAIN.batch, TRAIN.seq, cfg.vocabSize);
    const mask = rows();
    const per = Math.ceil(TRAIN.batch / micro);
    const batches = Array.from({ length: Math.ceil(TRAIN.batch / per) }, (_, k) => ({
      ids: ids.slice(k * per, (k + 1) * per),
      lossMask: mask.slice(k * per, (k + 1) * per),
    }));
    const t = now();
    const r = await engine.trainStep(state, batches.length === 1 ? batches[0]! : batches, { loss: sftLoss(), lr: 1e-4, moveState: true });
    state = r.state;
    return { s: now() - t, loss: r.metrics.loss! };
  };
  const warm = await step(0);
  const warmS = warm.s;
  const times: number[] = [];
  let loss = warm.loss;
  for (let i = 1; i <= trainSteps; i++) {
    const r = await step(i);
    times.push(r.s);
    loss = r.loss;
  }
  await engine.close();
  const stepS = times.length ? Math.min(...times) : warmS; // --train-steps 0: the warm-up step is all there is
  return { loadS, warmS, stepS, tokensPerS: (TRAIN.batch * TRAIN.seq) / stepS, loss };
}

async function runPart(name: string): Promise<void> {
  const [what, model] = name.split(':') as [string, string | undefined];
  let r: Record<string, number>;
  if (what === 'peak') r = await matmulPeak();
  else {
    const cfg = parseModelConfig(hfConfig(model!));
    if (what === 'decode') r = await benchDecode(cfg);
    else if (what === 'full' || what === 'lora') r = await benchTrain(cfg, what === 'lora');
    else throw new Error(`unknown part ${name}`);
  }
  r.peakRssMiB = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
}

type Result = Record<string, number> | { error: string };

/** Runs one measurement in a child process: this script's `--part`, or the PyTorch companion. */
function child(side: 'durable-rl' | 'torch' | 'torch-bf16', name: string): Result {
  const [what, model] = name.split(':') as [string, string | undefined];
  let cmd: string;
  let argv: string[];
  if (side === 'durable-rl') {
    cmd = process.execPath;
    argv = ['--import', 'tsx', fileURLToPath(import.meta.url), '--part', name, '--threads', String(threads)];
    argv.push(
      '--decode',
      `${promptLen}+${newLen}`,
      '--train-steps',
      String(trainSteps),
      '--decode-reps',
      String(decodeReps),
      '--micro',
      String(micro),
    );
    if (quick) argv.push('--quick');
    if (updatePartMiB !== undefined) argv.push('--update-part-mib', String(updatePartMiB));
  } else {
    cmd = python!;
    argv = [COMPANION, '--threads', String(threads), '--dtype', side === 'torch-bf16' ? 'bf16' : 'fp32'];
    if (what === 'peak') argv.push('--part', 'peak');
    else {
      if (quick) throw new Error('--quick with PyTorch: not supported for model parts');
      argv.push('--config', `${CONFIG_FILE}#${model}`);
      if (what === 'decode')
        argv.push(
          '--part',
          'decode',
          '--batch',
          String(DECODE_BATCH),
          '--prompt',
          String(promptLen),
          '--new',
          String(newLen),
          '--reps',
          String(decodeReps),
        );
      else argv.push('--part', 'train', '--batch', String(TRAIN.batch), '--seq', String(TRAIN.seq), '--steps', String(trainSteps));
      if (what === 'lora') argv.push('--lora-rank', String(LORA_RANK));
    }
  }
  const t0 = now();
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 1 << 24, env: { ...process.env, DURABLE_RL_LOG_LEVEL: 'warn' } });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  process.stderr.write(
    `  [${side} ${name}: ${(now() - t0).toFixed(0)} s wall${line ? '' : `, failed (exit ${r.status}, signal ${r.signal})`}]\n`,
  );
  if (!line) return { error: `exit ${r.status} signal ${r.signal}: ${r.stderr.slice(-400).trim()}` };
  return JSON.parse(line.slice(7)) as Record<string, number>;
}

const ok = (r: Result | undefined): r is Record<string, number> => r !== undefined && !('error' in r);
const fmt = (x: number, digits = 1): string => x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n') + '\n';
}

function hasAmx(): boolean {
  try {
    return /\bamx_(bf16|tile)\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  if (part) return runPart(part);
  const load0 = loadavg();
  const started = now();
  const amx = hasAmx();
  process.stdout.write(
    `real sizes: ${models.join(', ')}; threads ${threads}; decode batch ${DECODE_BATCH} x (${promptLen} prompt + ${newLen} new), greedy; train ${TRAIN.batch} x ${TRAIN.seq}, ` +
      `best of ${trainSteps} step(s) after a warm-up; ${cpus().length} CPUs (${cpus()[0]?.model}), ${fmt(totalmem() / 2 ** 30, 0)} GiB; ` +
      `AMX ${amx ? 'yes' : 'no (PyTorch bf16 autocast not measured)'}; load average ${fmt(load0[0]!, 2)}\n`,
  );
  const peakDr = child('durable-rl', 'peak');
  // PyTorch bf16 autocast (issue 12): measured only where the CPU has AMX
  const bf16 = amx && python !== undefined;
  const peakPt = python ? child('torch', 'peak') : undefined;
  const peakBf = bf16 ? child('torch-bf16', 'peak') : undefined;
  const peak = Math.max(...[peakDr, peakPt, peakBf].map((r) => (ok(r) ? r.gflops! : 0)));
  process.stdout.write(
    `matmul peak fp32: onnxruntime ${ok(peakDr) ? fmt(peakDr.gflops!) : '-'}, torch ${ok(peakPt) ? fmt(peakPt.gflops!) : '-'}${ok(peakBf) ? ` (bf16 ${fmt(peakBf.gflops!)})` : ''} GFLOP/s; machine peak ${fmt(peak)}\n`,
  );

  const rows: string[][] = [
    [
      'model',
      'measure',
      'durable-rl',
      'PyTorch fp32',
      'ratio',
      'durable-rl % peak',
      'PyTorch % peak',
      ...(bf16 ? ['PyTorch bf16', 'ratio bf16'] : []),
    ],
  ];
  const notes: string[] = [];
  for (const model of models) {
    const cfg = parseModelConfig(hfConfig(model));
    const n = parameterCount(cfg);
    process.stdout.write(
      `\n${model}: ${fmt(n / 1e6)}M parameters (LoRA r ${LORA_RANK}: +${fmt((parameterCount(withLora(cfg, { rank: LORA_RANK })) - n) / 1e6, 2)}M)\n`,
    );
    for (const p of parts) {
      const dr = child('durable-rl', `${p}:${model}`);
      const pt = python ? child('torch', `${p}:${model}`) : undefined;
      const bf = bf16 ? child('torch-bf16', `${p}:${model}`) : undefined;
      process.stdout.write(`  ${p}: durable-rl ${JSON.stringify(dr)}\n`);
      if (pt) process.stdout.write(`  ${p}: torch ${JSON.stringify(pt)}\n`);
      if (bf) process.stdout.write(`  ${p}: torch bf16 ${JSON.stringify(bf)}\n`);
      for (const [side, r] of [
        ['durable-rl', dr],
        ['PyTorch', pt],
        ['PyTorch bf16', bf],
      ] as const)
        if (r && !ok(r)) notes.push(`${model} ${p} ${side}: ${r.error}`);
      const cell = (r: Result | undefined, key: string, digits = 1) => (ok(r) ? fmt(r[key]!, digits) : r ? 'failed' : '-');
      const ratio = (key: string, other = pt) => (ok(dr) && ok(other) ? `${fmt(dr[key]! / other[key]!, 2)}x` : '-');
      const extra = (key: string, digits = 1) => (bf16 ? [cell(bf, key, digits), ratio(key, bf)] : []);
      const pct = (r: Result | undefined, flops: number, key: string) =>
        ok(r) && peak ? `${fmt((100 * flops) / r[key]! / 1e9 / peak)}%` : '-';
      const label =
        p === 'decode'
          ? `decode B${DECODE_BATCH} ${promptLen}+${newLen}`
          : p === 'full'
            ? `full FT ${TRAIN.batch}x${TRAIN.seq}`
            : `LoRA r${LORA_RANK} ${TRAIN.batch}x${TRAIN.seq}`;
      const flops = p === 'decode' ? decodeFlops(cfg) : trainFlops(cfg, p === 'lora');
      const timeKey = p === 'decode' ? 'totalS' : 'stepS';
      const tput = p === 'decode' ? 'newTokensPerS' : 'tokensPerS';
      rows.push([
        model,
        `${label}: tokens/s`,
        cell(dr, tput),
        cell(pt, tput),
        ratio(tput),
        pct(dr, flops, timeKey),
        pct(pt, flops, timeKey),
        ...extra(tput),
      ]);
      rows.push([
        model,
        `${label}: peak RSS MiB`,
        cell(dr, 'peakRssMiB', 0),
        cell(pt, 'peakRssMiB', 0),
        ratio('peakRssMiB'),
        '',
        '',
        ...extra('peakRssMiB', 0),
      ]);
      rows.push([model, `${label}: load s`, cell(dr, 'loadS'), cell(pt, 'loadS'), ratio('loadS'), '', '', ...extra('loadS')]);
    }
  }
  const load1 = loadavg();
  process.stdout.write(
    `\nsummary (machine peak ${fmt(peak)} GFLOP/s fp32; ratio = durable-rl / PyTorch; wall ${fmt((now() - started) / 60)} min; load average ${fmt(load0[0]!, 2)} at start, ${fmt(load1[0]!, 2)} at end):\n`,
  );
  process.stdout.write(table(rows));
  for (const n of notes) process.stdout.write(`failed: ${n}\n`);
}

await main();
