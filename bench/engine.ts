/**
 * Model-engine benchmark (numbers only): `npx tsx bench/engine.ts [--quick] [--threads N]`.
 *
 * A Llama-style model of ~30M parameters (d_model 512, 8 layers, 8 query / 2 KV heads, SwiGLU
 * 1408, vocab 8192, untied head) on CPU:
 * - MatMul peak: GFLOP/s of one large float32 MatMul in onnxruntime, measured in the same run;
 * - trainStep at batch 8 x 512 tokens: tokens/s and MFU (model FLOPs 6·N·tokens plus attention,
 *   divided by time and by the MatMul peak);
 * - decode at batch 1, 8, 32 with 128 prompt + 128 new tokens (best of two runs): new tokens/s
 *   over the whole generate call and over the decode steps alone, and % of the FLOP-bound limit;
 *   at batch 32 also on int8 and int4 weights (`rollout.quantize`), each beside a float32 run
 *   measured right after it (the ratio);
 * - composed attention vs onnxruntime's fused com.microsoft.MultiHeadAttention on the same shapes;
 * - peak RSS of each part (each part runs in its own child process);
 * - the same trainStep without activation recomputation (`recompute: false`), for comparison.
 * Ends with one table of every number the engine's targets name (MFU >= 30%, decode batch 32
 * >= 25% of the FLOP-bound limit, trainStep peak RSS <= 4 GB) and the machine's load average.
 * `--quick` shrinks everything (a smoke run of the script itself); `--no-baseline` skips the
 * trainStep run without recomputation.
 *
 * `--with-torch PYTHON` (issue 16 item 1) also runs the same shapes in PyTorch eager through
 * `bench/torch-companion.py` with that interpreter, each right after durable-rl's measurement of the
 * same part (alternating, one invocation): fp32, and bf16 autocast where the CPU has AMX
 * (`/proc/cpuinfo` amx_bf16). The machine's peak is then the best square GEMM any of them reaches
 * (onnxruntime fp32, torch.mm fp32, torch.mm bf16 on AMX), every percentage is against it, and the
 * last table prints each durable-rl / PyTorch ratio. `--torch-bf16` adds bf16 autocast on a CPU
 * without AMX too.
 */
import { BENCH_MODEL_HF, QUICK_MODEL_HF } from './bench-model.js';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { parseModelConfig, parameterCount, type ModelConfig } from '../activities/model/config.js';
import { ModelEngine, initTrainState } from '../activities/model/engine.js';
import { initWeights } from '../activities/model/init.js';
import { sftLoss } from '../activities/model/losses.js';
import { generate } from '../activities/model/generate.js';
import type { DecodeQuantize } from '../activities/model/quantize.js';
import { Graph } from '../activities/model/graph.js';
import * as F from '../activities/model/ops.js';
import { causalAttention } from '../activities/model/attention.js';
import { CounterRng } from '../activities/common/rng.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const threadsArg = args.includes('--threads') ? Number(args[args.indexOf('--threads') + 1]) : 0;
const part = args.includes('--part') ? args[args.indexOf('--part') + 1] : undefined;
const baseline = !args.includes('--no-baseline');
/** `--profile PREFIX`: the train and decode parts' sessions write onnxruntime profiles (`PREFIX_<date>.json`; summed by bench/profile.ts). */
const profilePrefix = args.includes('--profile') ? args[args.indexOf('--profile') + 1]! : null;
/** `--with-torch PYTHON`: the interpreter that runs bench/torch-companion.py (absent: durable-rl alone). */
const python = args.includes('--with-torch') ? args[args.indexOf('--with-torch') + 1] : undefined;
/** `--torch-bf16`: PyTorch bf16 autocast even on a CPU without AMX (by default only where it has AMX). */
const forceBf16 = args.includes('--torch-bf16');

/** The benchmark model as a Hugging Face config (what the PyTorch companion builds too). */
const hfConfig: Record<string, unknown> = { ...(quick ? QUICK_MODEL_HF : BENCH_MODEL_HF) };
const modelCfg: ModelConfig = parseModelConfig(hfConfig);
const TRAIN = quick ? { batch: 2, seq: 64, steps: 2 } : { batch: 8, seq: 512, steps: 3 };
const DECODE = quick ? { prompt: 16, fresh: 16, batches: [1, 4] } : { prompt: 128, fresh: 128, batches: [1, 8, 32] };

function now(): number {
  return performance.now() / 1000;
}

/**
 * Forward FLOPs per token at context length `ctx`: 2 per weight multiply (every matrix but the
 * embedding table, whose lookup is a gather; the LM head counts whether tied or not) + attention.
 */
function forwardFlopsPerToken(cfg: ModelConfig, ctx: number): number {
  const table = cfg.vocabSize * cfg.hidden;
  const multiplied = parameterCount(cfg) - table + (cfg.tieWordEmbeddings ? table : 0);
  const attention = 2 * 2 * cfg.layers * cfg.heads * cfg.headDim * ctx; // QK^T and PV
  return 2 * multiplied + attention;
}

/** Best GFLOP/s of a square float32 MatMul over a few sizes (the "peak" MFU is measured against). */
async function matmulPeak(threads: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  let best = 0;
  for (const n of quick ? [128, 256] : [512, 1024, 2048]) {
    const g = new Graph({ name: 'peak' });
    const a = g.input('a', 'float32', [n, n]);
    const b = g.input('b', 'float32', [n, n]);
    g.output(F.matmul(a, b), 'c');
    const s = await ort.InferenceSession.create(g.toBytes(), threads ? { intraOpNumThreads: threads } : {});
    const rng = new CounterRng(1, 'peak', n);
    const data = Float32Array.from({ length: n * n }, (_, i) => rng.normal(i));
    const feeds = { a: new ort.Tensor('float32', data, [n, n]), b: new ort.Tensor('float32', data, [n, n]) };
    await s.run(feeds);
    let fastest = Infinity;
    for (let r = 0; r < (quick ? 3 : n >= 2048 ? 4 : 10); r++) {
      const t0 = now();
      await s.run(feeds);
      fastest = Math.min(fastest, now() - t0);
    }
    await s.release();
    const gflops = (2 * n ** 3) / fastest / 1e9;
    out[`n${n}`] = gflops;
    best = Math.max(best, gflops);
  }
  out.gflops = best;
  return out;
}

function randomIds(rng: CounterRng, rows: number, len: number, offset: number): number[][] {
  return Array.from({ length: rows }, (_, r) => Array.from({ length: len }, (_, t) => rng.int(offset + r * len + t, modelCfg.vocabSize)));
}

async function benchTrain(threads: number, recompute = true): Promise<Record<string, number>> {
  const t0 = now();
  const weights = initWeights(modelCfg, 1);
  const initS = now() - t0;
  const engine = new ModelEngine(modelCfg, { threads, recompute, profilePrefix });
  let state = initTrainState(modelCfg, weights);
  const rng = new CounterRng(2, 'bench-train');
  const { batch, seq, steps } = TRAIN;
  const mk = (i: number) => ({
    ids: randomIds(rng, batch, seq, i * batch * seq),
    lossMask: Array.from({ length: batch }, () => Array.from({ length: seq }, (_, t) => (t === 0 ? 0 : 1))),
  });
  const t1 = now();
  await engine.trainSession('trainStep', sftLoss());
  const buildS = now() - t1;
  const t2 = now();
  state = (await engine.trainStep(state, mk(0), { loss: sftLoss(), lr: 1e-4 })).state; // warm-up
  const warmS = now() - t2;
  const times: number[] = [];
  for (let s = 1; s <= steps; s++) {
    const b = mk(s);
    const t = now();
    state = (await engine.trainStep(state, b, { loss: sftLoss(), lr: 1e-4 })).state;
    times.push(now() - t);
  }
  await engine.close();
  const step = times.reduce((a, b) => a + b, 0) / times.length;
  const tokens = batch * seq;
  const flops = 3 * tokens * forwardFlopsPerToken(modelCfg, seq / 2);
  return { initS, buildS, warmS, stepS: step, tokensPerS: tokens / step, gflops: flops / step / 1e9 };
}

async function benchDecode(threads: number, batch: number, quantize: DecodeQuantize | null = null): Promise<Record<string, number>> {
  const engine = new ModelEngine(modelCfg, { threads, profilePrefix });
  engine.setWeights(initWeights(modelCfg, 1), 'bench');
  const rng = new CounterRng(3, 'bench-decode', batch);
  const prompts = randomIds(rng, batch, DECODE.prompt, 0);
  const t0 = now();
  await engine.decodeSession({ quantize });
  const buildS = now() - t0;
  const warm = await generate(engine, prompts.slice(0, 1), { maxNewTokens: 2, pickToken: () => 1, stopTokenIds: [], quantize });
  void warm;
  // best of two runs (the machine is shared): the run with the fastest decode steps
  let total = Infinity;
  let prefill = 0;
  for (let rep = 0; rep < (quick ? 1 : 2); rep++) {
    let firstAt = 0;
    const t1 = now();
    const sampler = new CounterRng(4, 'bench-pick', batch);
    await generate(engine, prompts, {
      maxNewTokens: DECODE.fresh,
      stopTokenIds: [],
      quantize,
      pickToken: (_l, s, pos) => {
        if (pos === 0 && s === 0) firstAt = now();
        return sampler.int(s * 4096 + pos, modelCfg.vocabSize);
      },
    });
    const t = now() - t1;
    if (t - (firstAt - t1) < total - prefill) {
      total = t;
      prefill = firstAt - t1;
    }
  }
  await engine.close();
  const fresh = batch * DECODE.fresh;
  const ctxAvg = DECODE.prompt + DECODE.fresh / 2;
  return {
    buildS,
    prefillS: prefill,
    totalS: total,
    newTokensPerS: fresh / total,
    stepTokensPerS: (batch * (DECODE.fresh - 1)) / (total - prefill),
    stepGflops: (batch * (DECODE.fresh - 1) * forwardFlopsPerToken(modelCfg, ctxAvg)) / (total - prefill) / 1e9,
  };
}

/** One attention layer's core at (batch, heads, T, S): composed ops vs com.microsoft.MultiHeadAttention. */
async function benchAttention(threads: number): Promise<Record<string, number>> {
  const hd = modelCfg.headDim;
  const h = modelCfg.heads;
  const cases = quick
    ? [
        { b: 2, t: 32, past: 0 },
        { b: 2, t: 1, past: 32 },
      ]
    : [
        { b: 8, t: 512, past: 0 },
        { b: 32, t: 1, past: 192 },
      ];
  const out: Record<string, number> = {};
  for (const c of cases) {
    const s = c.past + c.t;
    // composed: q [B,H,T,hd], k/v [B,H,S,hd] (no GQA here: MHA has none), causal + padding mask
    const g1 = new Graph({ name: 'composed' });
    const q = g1.input('q', 'float32', [c.b, h, c.t, hd]);
    const k = g1.input('k', 'float32', [c.b, h, s, hd]);
    const v = g1.input('v', 'float32', [c.b, h, s, hd]);
    const m = g1.input('mask', 'bool', [c.b, s]);
    g1.output(causalAttention(q, k, v, { keyMask: m }), 'y');
    // fused: MultiHeadAttention with q [B,T,H*hd], k/v in BNSH layout, additive causal+padding bias
    const g2 = new Graph({ name: 'fused' });
    g2.useDomain('com.microsoft', 1);
    const q2 = g2.input('q', 'float32', [c.b, c.t, h * hd]);
    const k2 = g2.input('k', 'float32', [c.b, h, s, hd]);
    const v2 = g2.input('v', 'float32', [c.b, h, s, hd]);
    const bias = g2.input('bias', 'float32', [c.b, 1, c.t, s]);
    g2.output(
      g2.node1('MultiHeadAttention', [q2, k2, v2, null, null, bias], 'float32', [c.b, c.t, h * hd], { num_heads: h }, 'com.microsoft'),
      'y',
    );
    const so = threads ? { intraOpNumThreads: threads } : {};
    const s1 = await ort.InferenceSession.create(g1.toBytes(), so);
    const s2 = await ort.InferenceSession.create(g2.toBytes(), so);
    const rng = new CounterRng(5, 'attn');
    const rand = (n: number) => Float32Array.from({ length: n }, (_, i) => rng.normal(i));
    const qd = rand(c.b * h * c.t * hd);
    const kd = rand(c.b * h * s * hd);
    const maskData = new Uint8Array(c.b * s).fill(1);
    const biasData = new Float32Array(c.b * c.t * s);
    for (let bi = 0; bi < c.b; bi++)
      for (let i = 0; i < c.t; i++) for (let j = 0; j < s; j++) biasData[(bi * c.t + i) * s + j] = j <= c.past + i ? 0 : -1e30;
    const f1 = {
      q: new ort.Tensor('float32', qd, [c.b, h, c.t, hd]),
      k: new ort.Tensor('float32', kd, [c.b, h, s, hd]),
      v: new ort.Tensor('float32', kd, [c.b, h, s, hd]),
      mask: new ort.Tensor('bool', maskData, [c.b, s]),
    };
    const f2 = {
      q: new ort.Tensor('float32', qd, [c.b, c.t, h * hd]),
      k: f1.k,
      v: f1.v,
      bias: new ort.Tensor('float32', biasData, [c.b, 1, c.t, s]),
    };
    const time = async (sess: ort.InferenceSession, feeds: Record<string, ort.Tensor>) => {
      await sess.run(feeds);
      let best = Infinity;
      for (let r = 0; r < (quick ? 3 : 10); r++) {
        const t0 = now();
        await sess.run(feeds);
        best = Math.min(best, now() - t0);
      }
      return best;
    };
    const name = `B${c.b}_T${c.t}_S${s}`;
    out[`${name}_composed_ms`] = (await time(s1, f1)) * 1000;
    out[`${name}_fused_mha_ms`] = (await time(s2, f2)) * 1000;
    await s1.release();
    await s2.release();
  }
  return out;
}

function rssMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

async function runPart(name: string): Promise<void> {
  let r: Record<string, number>;
  if (name === 'peak') r = await matmulPeak(threadsArg);
  else if (name === 'train') r = await benchTrain(threadsArg);
  else if (name === 'train-norecompute') r = await benchTrain(threadsArg, false);
  else if (name.startsWith('decode-int')) {
    const [, q, b] = /^decode-(int8|int4)-(\d+)$/.exec(name) ?? [];
    r = await benchDecode(threadsArg, Number(b), q as DecodeQuantize);
  } else if (name.startsWith('decode')) r = await benchDecode(threadsArg, Number(name.slice(6)));
  else if (name === 'attention') r = await benchAttention(threadsArg);
  else throw new Error(`unknown bench part ${name}`);
  r.peakRssMiB = rssMiB();
  process.stdout.write(`RESULT ${JSON.stringify(r)}\n`);
}

function child(name: string): Record<string, number> {
  const self = fileURLToPath(import.meta.url);
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      self,
      '--part',
      name,
      ...(quick ? ['--quick'] : []),
      ...(threadsArg ? ['--threads', String(threadsArg)] : []),
      ...(profilePrefix ? ['--profile', `${profilePrefix}-${name}`] : []),
    ],
    {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
      env: { ...process.env, DURABLE_RL_LOG_LEVEL: 'warn' },
    },
  );
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) throw new Error(`bench part ${name} failed (exit ${r.status}): ${r.stderr.slice(-2000)}`);
  return JSON.parse(line.slice(7)) as Record<string, number>;
}

/** Whether the CPU has AMX (bf16 tiles): PyTorch bf16 autocast is measured only there. */
function hasAmx(): boolean {
  try {
    return /\bamx_bf16\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return false;
  }
}

type TorchDtype = 'fp32' | 'bf16';

/**
 * One measurement of bench/torch-companion.py (PyTorch eager, its own process): `part` peak, train
 * (TRAIN's shape, the same SFT loss and AdamW) or decode at `batch` (DECODE's prompt and new
 * tokens, best of two calls as ours). Null when it failed (the reason goes to stderr).
 */
function torchChild(config: string, dtype: TorchDtype, what: 'peak' | 'train' | 'decode', batch = 0): Record<string, number> | null {
  const companion = fileURLToPath(new URL('torch-companion.py', import.meta.url));
  const argv = [companion, '--part', what, '--threads', String(threadsArg || cpus().length), '--dtype', dtype];
  if (what === 'train')
    argv.push('--config', config, '--batch', String(TRAIN.batch), '--seq', String(TRAIN.seq), '--steps', String(TRAIN.steps));
  if (what === 'decode')
    argv.push(
      '--config',
      config,
      '--batch',
      String(batch),
      '--prompt',
      String(DECODE.prompt),
      '--new',
      String(DECODE.fresh),
      '--reps',
      quick ? '1' : '2',
    );
  const r = spawnSync(python!, argv, { encoding: 'utf8', maxBuffer: 1 << 24 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!line) {
    process.stderr.write(
      `torch ${dtype} ${what}${batch ? ` batch ${batch}` : ''} failed (exit ${r.status}, signal ${r.signal}): ${r.stderr.slice(-1500)}\n`,
    );
    return null;
  }
  const out = JSON.parse(line.slice(7)) as Record<string, unknown>;
  const nums = Object.fromEntries(Object.entries(out).filter(([, v]) => typeof v === 'number')) as Record<string, number>;
  // trainStep: the mean of the timed steps, as ours (the companion reports the best)
  const steps = out.stepsS as number[] | undefined;
  if (what === 'train' && steps && steps.length) {
    nums.stepS = steps.reduce((a, b) => a + b, 0) / steps.length;
    nums.tokensPerS = (TRAIN.batch * TRAIN.seq) / nums.stepS;
  }
  return nums;
}

function fmt(x: number, digits = 1): string {
  return x.toFixed(digits);
}

function trainLine(label: string, train: Record<string, number>, peak: number): string {
  return (
    `${label} ${TRAIN.batch}x${TRAIN.seq}: ${fmt(train.tokensPerS!)} tokens/s, ${fmt(train.stepS!, 2)} s/step, ${fmt(train.gflops!)} GFLOP/s, MFU ${fmt((100 * train.gflops!) / peak)}% of the machine peak; ` +
    `init ${fmt(train.initS!, 1)} s, graph+session ${fmt(train.buildS!, 1)} s, first step ${fmt(train.warmS!, 1)} s; peak RSS ${fmt(train.peakRssMiB!, 0)} MiB\n`
  );
}

/** Prints rows as an aligned text table. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n') + '\n';
}

async function main(): Promise<void> {
  if (part) return runPart(part);
  const n = parameterCount(modelCfg);
  const load0 = loadavg();
  const amx = hasAmx();
  const dtypes: TorchDtype[] = python ? (amx || forceBf16 ? ['fp32', 'bf16'] : ['fp32']) : [];
  process.stdout.write(
    `model: llama-style, ${(n / 1e6).toFixed(1)}M parameters (d ${modelCfg.hidden}, ${modelCfg.layers} layers, ${modelCfg.heads}q/${modelCfg.kvHeads}kv heads, vocab ${modelCfg.vocabSize}); threads ${threadsArg || 'ort default'}` +
      `${python ? `; PyTorch eager ${dtypes.join(' and ')} beside each part (${python}, threads ${threadsArg || cpus().length}; AMX ${amx ? 'yes' : 'no'}${!dtypes.includes('bf16') ? ': bf16 autocast not measured' : ''})` : ''}\n`,
  );
  // the HF config the companion builds the same model from
  const tmp = mkdtempSync(join(tmpdir(), 'bench-engine-'));
  const configPath = join(tmp, 'config.json');
  writeFileSync(configPath, JSON.stringify(hfConfig));
  /** PyTorch's result of each part, by dtype ('' where not run or failed). */
  const torch = new Map<string, Record<string, number> | null>();
  const withTorch = (key: string, what: 'peak' | 'train' | 'decode', batch = 0) => {
    for (const dt of dtypes) torch.set(`${key}:${dt}`, torchChild(configPath, dt, what, batch));
  };

  const peak = child('peak');
  withTorch('peak', 'peak');
  const sizes = Object.entries(peak)
    .filter(([k]) => k.startsWith('n'))
    .map(([k, v]) => `${k.slice(1)}: ${fmt(v)}`)
    .join(', ');
  const torchPeak = (dt: TorchDtype) => torch.get(`peak:${dt}`)?.gflops ?? 0;
  /** The machine's peak: the best square GEMM any side reaches (bf16 on AMX included); every percentage is of it. */
  const machinePeak = Math.max(peak.gflops!, ...dtypes.map(torchPeak));
  process.stdout.write(
    `matmul peak: onnxruntime fp32 ${fmt(peak.gflops!)} GFLOP/s (square MatMul, by size ${sizes}; peak RSS ${fmt(peak.peakRssMiB!, 0)} MiB)` +
      dtypes.map((dt) => `, torch.mm ${dt} ${fmt(torchPeak(dt))}`).join('') +
      `; machine peak ${fmt(machinePeak)} GFLOP/s\n`,
  );
  const train = child('train');
  process.stdout.write(trainLine('trainStep', train, machinePeak));
  withTorch('train', 'train');
  for (const dt of dtypes) {
    const t = torch.get(`train:${dt}`);
    if (t)
      process.stdout.write(
        `  PyTorch ${dt}: ${fmt(t.tokensPerS!)} tokens/s, ${fmt(t.stepS!, 2)} s/step (mean of ${TRAIN.steps} after a warm-up step of ${fmt(t.warmS!, 1)} s); peak RSS ${fmt(t.peakRssMiB!, 0)} MiB\n`,
      );
  }
  const plain = baseline ? child('train-norecompute') : null;
  if (plain) process.stdout.write(trainLine('trainStep without recomputation', plain, machinePeak));
  const decodes = new Map<number, Record<string, number>>();
  for (const b of DECODE.batches) {
    const d = child(`decode${b}`);
    decodes.set(b, d);
    process.stdout.write(
      `decode batch ${b} (${DECODE.prompt} prompt + ${DECODE.fresh} new): ${fmt(d.newTokensPerS!)} new tokens/s overall (prefill ${fmt(d.prefillS!, 2)} s), ` +
        `${fmt(d.stepTokensPerS!)} tokens/s in decode steps = ${fmt(d.stepGflops!)} GFLOP/s, ${fmt((100 * d.stepGflops!) / machinePeak)}% of the FLOP-bound limit; ` +
        `session ${fmt(d.buildS!, 1)} s; peak RSS ${fmt(d.peakRssMiB!, 0)} MiB\n`,
    );
    withTorch(`decode${b}`, 'decode', b);
    for (const dt of dtypes) {
      const t = torch.get(`decode${b}:${dt}`);
      if (t)
        process.stdout.write(
          `  PyTorch ${dt} HF generate: ${fmt(t.newTokensPerS!)} new tokens/s overall (${fmt(t.totalS!, 2)} s, prefill included); peak RSS ${fmt(t.peakRssMiB!, 0)} MiB\n`,
        );
    }
  }
  // weight-only quantised decode (rollout.quantize) at the largest batch, beside float32 measured again in turn
  const lastBatch = DECODE.batches[DECODE.batches.length - 1]!;
  const quantized: [string, Record<string, number>, Record<string, number>][] = [];
  for (const q of ['int8', 'int4'] as const) {
    const d = child(`decode-${q}-${lastBatch}`);
    const f = child(`decode${lastBatch}`);
    quantized.push([q, d, f]);
    process.stdout.write(
      `decode batch ${lastBatch}, ${q} weights: ${fmt(d.newTokensPerS!)} new tokens/s overall, ${fmt(d.stepTokensPerS!)} in decode steps ` +
        `(float32 measured next to it: ${fmt(f.stepTokensPerS!)}; ${fmt(d.stepTokensPerS! / f.stepTokensPerS!, 2)}x); session ${fmt(d.buildS!, 1)} s; peak RSS ${fmt(d.peakRssMiB!, 0)} MiB\n`,
    );
  }
  const att = child('attention');
  process.stdout.write(`attention core (${modelCfg.heads} heads x ${modelCfg.headDim}), best of runs:\n`);
  for (const [k, v] of Object.entries(att)) if (k !== 'peakRssMiB') process.stdout.write(`  ${k}: ${fmt(v, 2)}\n`);
  rmSync(tmp, { recursive: true, force: true });

  // the summary: every number the targets name, in one table
  const pct = (x: number) => `${fmt((100 * x) / machinePeak)}%`;
  const mib = (x: number) => `${fmt(x, 0)} MiB`;
  const rows: string[][] = [['measure', 'tokens/s', '% of machine peak', 'peak RSS', 'target', 'met']];
  const trainRow = (label: string, t: Record<string, number>, target: boolean) => {
    const mfu = t.gflops! / machinePeak;
    const gb = (t.peakRssMiB! * 2 ** 20) / 1e9;
    rows.push([
      label,
      fmt(t.tokensPerS!),
      `MFU ${pct(t.gflops!)}`,
      mib(t.peakRssMiB!),
      target ? 'MFU >= 30%, RSS <= 4 GB' : '(comparison)',
      target ? (mfu >= 0.3 && gb <= 4 ? 'yes' : 'no') : '',
    ]);
  };
  trainRow(`trainStep ${TRAIN.batch}x${TRAIN.seq}`, train, true);
  if (plain) trainRow(`trainStep ${TRAIN.batch}x${TRAIN.seq}, no recompute`, plain, false);
  const last = DECODE.batches[DECODE.batches.length - 1]!;
  for (const [b, d] of decodes) {
    const target = b === last;
    rows.push([
      `decode batch ${b} (steps)`,
      fmt(d.stepTokensPerS!),
      pct(d.stepGflops!),
      mib(d.peakRssMiB!),
      target ? '>= 25% of FLOP bound' : '',
      target ? (d.stepGflops! / machinePeak >= 0.25 ? 'yes' : 'no') : '',
    ]);
  }
  for (const [q, d, f] of quantized) {
    rows.push([
      `decode batch ${lastBatch} (steps), ${q}`,
      fmt(d.stepTokensPerS!),
      pct(d.stepGflops!),
      mib(d.peakRssMiB!),
      `${fmt(d.stepTokensPerS! / f.stepTokensPerS!, 2)}x float32`,
      '',
    ]);
  }
  for (const [k, v] of Object.entries(att)) {
    if (!k.endsWith('_composed_ms')) continue;
    const shape = k.slice(0, -'_composed_ms'.length);
    const fused = att[`${shape}_fused_mha_ms`]!;
    rows.push([`attention ${shape}: composed / fused MHA`, '', '', '', `${fmt(v, 2)} / ${fmt(fused, 2)} ms`, '']);
  }
  const load1 = loadavg();
  const loads = `load average ${fmt(load0[0]!, 2)} at start, ${fmt(load1[0]!, 2)} at end on ${cpus().length} CPUs`;
  process.stdout.write(`\nsummary (machine peak ${fmt(machinePeak)} GFLOP/s; 1 GB = 1e9 bytes; ${loads}):\n`);
  process.stdout.write(table(rows));
  if (python) process.stdout.write(sideBySide(train, decodes, torch, dtypes, machinePeak, loads));
  const busiest = Math.max(load0[0]!, load1[0]!);
  if (python && busiest > cpus().length && (threadsArg || cpus().length) > 1)
    process.stdout.write(
      `note: load average ${fmt(busiest)} is above the ${cpus().length} CPUs: spinning thread pools (PyTorch's OpenMP, onnxruntime's intra-op pool) lose time to other processes, unequally; take these ratios on a quiet machine, or compare at --threads 1\n`,
    );
}

/**
 * The side-by-side table of `--with-torch`: tokens/s of each side, its fraction of the machine's
 * peak (model FLOPs over time), and the ratio durable-rl / PyTorch; decode over the whole call,
 * prefill included, as HF `generate` is timed.
 */
function sideBySide(
  train: Record<string, number>,
  decodes: Map<number, Record<string, number>>,
  torch: Map<string, Record<string, number> | null>,
  dtypes: TorchDtype[],
  machinePeak: number,
  loads: string,
): string {
  const pct = (flops: number, seconds: number) => `${fmt((100 * flops) / seconds / 1e9 / machinePeak)}%`;
  const header = ['measure', 'durable-rl', '% peak'];
  for (const dt of dtypes) header.push(`PyTorch ${dt}`, '% peak', `ratio vs ${dt}`);
  const rows: string[][] = [header];
  const trainFlops = 3 * TRAIN.batch * TRAIN.seq * forwardFlopsPerToken(modelCfg, TRAIN.seq / 2);
  const row = (label: string, ours: number, oursS: number, key: string, tput: string, time: string, flops: number) => {
    const r = [label, fmt(ours), pct(flops, oursS)];
    for (const dt of dtypes) {
      const t = torch.get(`${key}:${dt}`);
      r.push(...(t ? [fmt(t[tput]!), pct(flops, t[time]!), `${fmt(ours / t[tput]!, 2)}x`] : ['failed', '', '']));
    }
    rows.push(r);
  };
  row(`trainStep ${TRAIN.batch}x${TRAIN.seq}, tokens/s`, train.tokensPerS!, train.stepS!, 'train', 'tokensPerS', 'stepS', trainFlops);
  for (const [b, d] of decodes) {
    const flops =
      b * DECODE.prompt * forwardFlopsPerToken(modelCfg, DECODE.prompt / 2) +
      b * (DECODE.fresh - 1) * forwardFlopsPerToken(modelCfg, DECODE.prompt + DECODE.fresh / 2);
    row(
      `decode batch ${b} ${DECODE.prompt}+${DECODE.fresh}, new tokens/s`,
      d.newTokensPerS!,
      d.totalS!,
      `decode${b}`,
      'newTokensPerS',
      'totalS',
      flops,
    );
  }
  return (
    `\nside by side (ratio = durable-rl / PyTorch; % peak = model FLOPs / time / machine peak ${fmt(machinePeak)} GFLOP/s; ` +
    `decode over the whole call, prefill included; ${loads}):\n${table(rows)}`
  );
}

await main();
