/**
 * Reference-based text-similarity rewards: BLEU, chrF and ROUGE-L.
 *
 * BLEU follows sacreBLEU (Post 2018, "A Call for Clarity in Reporting BLEU Scores") exactly: the
 * default `13a` tokenisation (the mteval-v13a rules used by WMT), n-gram clipping against the
 * maximum count over references, the closest reference length for the brevity penalty, and
 * sacreBLEU's smoothing methods (Chen & Cherry 2014): `exp` (the default, mteval's NIST smoothing),
 * `floor`, `add-k`, `none`. Sentence BLEU uses effective order, as `sacrebleu.sentence_bleu` does.
 * BLEUBERI (Chang et al. 2025) uses BLEU against high-quality references directly as the GRPO reward.
 *
 * chrF (Popović 2015) follows sacreBLEU's `CHRF()` defaults: character n-grams of orders 1..6,
 * whitespace removed, beta = 2, precision and recall averaged over the orders that occur
 * (sacreBLEU's effective-order smoothing), the best-scoring reference per sentence.
 *
 * ROUGE-L (Lin 2004) is the F-measure of the longest common subsequence of word tokens; the
 * tokenizer lowercases and splits on anything that is not a Unicode letter or digit (for ASCII
 * text this is the `rouge-score` package's tokenizer, which drops non-ASCII text altogether).
 *
 * All three return 0..100 from the metric functions; the rewards scale to 0..1 by default.
 */
import { z } from '../common/config.js';
import { extractAnswer, type ExtractMethod } from './extract.js';
import { defineReward, requireReference, type RewardResult, type RewardSample } from './types.js';

// ---------------------------------------------------------------------------------------------
// Tokenisation

/** Python's `str.split()` whitespace (differs from JS `\s` in \x1c-\x1f, \x85 and \ufeff). */
// eslint-disable-next-line no-control-regex -- Python treats the separators \x1c-\x1f as whitespace; so must we
const PY_WS = /[\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

/** `' '.join(s.split())` as Python does it: words separated by single spaces. */
export function pySplit(s: string): string[] {
  return s.split(PY_WS).filter((w) => w !== '');
}

/**
 * sacreBLEU's `13a` tokenizer (mteval-v13a): unescapes a few HTML entities, splits off punctuation
 * and symbols, and splits periods and commas except inside numbers and dashes after digits.
 */
export function tokenize13a(line: string): string {
  let s = line.replaceAll('<skipped>', '').replaceAll('-\n', '').replaceAll('\n', ' ');
  if (s.includes('&')) {
    s = s.replaceAll('&quot;', '"').replaceAll('&amp;', '&').replaceAll('&lt;', '<').replaceAll('&gt;', '>');
  }
  s = ` ${s} `;
  // Symbols and punctuation ASCII ranges { | } ~  [ \ ] ^ _ `  space ! " # $ % &  ( ) * +  : ; < = > ? @  and /.
  s = s.replace(/([{-~[-` -&(-+:-@/])/gu, ' $1 ');
  // Period and comma, unless preceded by a digit ...
  s = s.replace(/([^0-9])([.,])/gu, '$1 $2 ');
  // ... or unless followed by a digit.
  s = s.replace(/([.,])([^0-9])/gu, ' $1 $2');
  // Dash after a digit.
  s = s.replace(/([0-9])(-)/gu, '$1 $2 ');
  return pySplit(s).join(' ');
}

// ---------------------------------------------------------------------------------------------
// BLEU

export type BleuSmooth = 'exp' | 'floor' | 'add-k' | 'none';

export interface BleuOptions {
  /** `13a` (sacreBLEU's default) or `none` (split on whitespace only). */
  tokenize: '13a' | 'none';
  lowercase: boolean;
  smooth: BleuSmooth;
  /** Value for `floor` (default 0.1) and `add-k` (default 1). */
  smoothValue?: number;
  /** Stop at the highest n-gram order the hypothesis has (sentence-level BLEU). */
  effectiveOrder: boolean;
  maxOrder: number;
}

export const CORPUS_BLEU_DEFAULTS: BleuOptions = { tokenize: '13a', lowercase: false, smooth: 'exp', effectiveOrder: false, maxOrder: 4 };
export const SENTENCE_BLEU_DEFAULTS: BleuOptions = { ...CORPUS_BLEU_DEFAULTS, effectiveOrder: true };

/** BLEU's sufficient statistics for one sentence or a whole corpus. */
export interface BleuStats {
  correct: number[];
  total: number[];
  sysLen: number;
  refLen: number;
}

export interface BleuScore extends BleuStats {
  /** 0..100 */
  score: number;
  /** Modified n-gram precisions, 0..100 (after smoothing). */
  precisions: number[];
  bp: number;
}

function words(text: string, o: Pick<BleuOptions, 'tokenize' | 'lowercase'>): string[] {
  const t = o.lowercase ? text.toLowerCase() : text;
  return pySplit(o.tokenize === '13a' ? tokenize13a(t) : t);
}

function ngramCounts(tokens: string[], maxOrder: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let n = 1; n <= maxOrder; n++) {
    for (let i = 0; i + n <= tokens.length; i++) {
      // Tokens joined by \u0001 (a control character that text tokens practically never hold);
      // the key starts with n so that n-grams of different orders never collide.
      const key = `${n}\u0000${tokens.slice(i, i + n).join('\u0001')}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

/** The reference length closest to the hypothesis length (the shorter one on ties). */
function closestRefLen(hypLen: number, refLens: number[]): number {
  let best = -1;
  let bestDiff = -1;
  for (const r of refLens) {
    const d = Math.abs(hypLen - r);
    if (bestDiff === -1 || d < bestDiff || (d === bestDiff && r < best)) {
      best = r;
      bestDiff = d;
    }
  }
  return best;
}

/** Sufficient statistics of one hypothesis against its references. */
export function bleuStats(hyp: string, refs: readonly string[], o: BleuOptions): BleuStats {
  if (refs.length === 0) throw new Error('BLEU needs at least one reference');
  const h = words(hyp, o);
  const refTokens = refs.map((r) => words(r, o));
  const maxRef = new Map<string, number>();
  for (const rt of refTokens) {
    for (const [k, c] of ngramCounts(rt, o.maxOrder)) if (c > (maxRef.get(k) ?? 0)) maxRef.set(k, c);
  }
  const correct = new Array<number>(o.maxOrder).fill(0);
  const total = new Array<number>(o.maxOrder).fill(0);
  for (let n = 1; n <= o.maxOrder; n++) total[n - 1] = Math.max(0, h.length - n + 1);
  for (const [k, c] of ngramCounts(h, o.maxOrder)) {
    const n = Number(k.slice(0, k.indexOf('\u0000')));
    correct[n - 1] += Math.min(c, maxRef.get(k) ?? 0);
  }
  return {
    correct,
    total,
    sysLen: h.length,
    refLen: closestRefLen(
      h.length,
      refTokens.map((t) => t.length),
    ),
  };
}

/** Natural log as sacreBLEU's `my_log`: log(0) is a very negative number, not -Infinity. */
const myLog = (x: number) => (x === 0 ? -9999999999 : Math.log(x));

/** BLEU from sufficient statistics, with sacreBLEU's smoothing. */
export function bleuFromStats(stats: BleuStats, o: BleuOptions): BleuScore {
  const correct = [...stats.correct];
  const total = [...stats.total];
  const { sysLen, refLen } = stats;
  const maxOrder = o.maxOrder;
  const smoothValue = o.smoothValue ?? (o.smooth === 'floor' ? 0.1 : o.smooth === 'add-k' ? 1 : 0);
  const bp = sysLen < refLen ? (sysLen > 0 ? Math.exp(1 - refLen / sysLen) : 0) : 1;
  const precisions = new Array<number>(maxOrder).fill(0);
  const base = { correct, total, sysLen, refLen, precisions, bp };
  if (!correct.some((c) => c > 0)) return { ...base, score: 0 };
  let smoothMteval = 1;
  let effOrder = maxOrder;
  for (let n = 1; n <= maxOrder; n++) {
    if (o.smooth === 'add-k' && n > 1) {
      correct[n - 1] += smoothValue;
      total[n - 1] += smoothValue;
    }
    if (total[n - 1] === 0) break;
    if (o.effectiveOrder) effOrder = n;
    if (correct[n - 1] === 0) {
      if (o.smooth === 'exp') {
        smoothMteval *= 2;
        precisions[n - 1] = 100 / (smoothMteval * total[n - 1]!);
      } else if (o.smooth === 'floor') {
        precisions[n - 1] = (100 * smoothValue) / total[n - 1]!;
      }
    } else {
      precisions[n - 1] = (100 * correct[n - 1]!) / total[n - 1]!;
    }
  }
  let logSum = 0;
  for (let i = 0; i < effOrder; i++) logSum += myLog(precisions[i]!);
  return { ...base, score: bp * Math.exp(logSum / effOrder) };
}

/** Sentence BLEU (0..100) as `sacrebleu.sentence_bleu` computes it (effective order, `exp` smoothing). */
export function sentenceBleu(hyp: string, refs: readonly string[], opts: Partial<BleuOptions> = {}): BleuScore {
  const o = { ...SENTENCE_BLEU_DEFAULTS, ...opts };
  return bleuFromStats(bleuStats(hyp, refs, o), o);
}

/**
 * Corpus BLEU (0..100) as `sacrebleu.corpus_bleu` computes it. `refStreams[k][i]` is the k-th
 * reference of hypothesis i (sacreBLEU's layout).
 */
export function corpusBleu(
  hyps: readonly string[],
  refStreams: readonly (readonly string[])[],
  opts: Partial<BleuOptions> = {},
): BleuScore {
  const o = { ...CORPUS_BLEU_DEFAULTS, ...opts };
  for (const [k, s] of refStreams.entries()) {
    if (s.length !== hyps.length) throw new Error(`reference stream ${k} has ${s.length} sentences for ${hyps.length} hypotheses`);
  }
  const acc: BleuStats = { correct: new Array(o.maxOrder).fill(0), total: new Array(o.maxOrder).fill(0), sysLen: 0, refLen: 0 };
  hyps.forEach((h, i) => {
    const s = bleuStats(
      h,
      refStreams.map((st) => st[i]!),
      o,
    );
    for (let n = 0; n < o.maxOrder; n++) {
      acc.correct[n] += s.correct[n]!;
      acc.total[n] += s.total[n]!;
    }
    acc.sysLen += s.sysLen;
    acc.refLen += s.refLen;
  });
  return bleuFromStats(acc, o);
}

// ---------------------------------------------------------------------------------------------
// chrF

export interface ChrfOptions {
  charOrder: number;
  beta: number;
  /** Keep whitespace inside character n-grams (sacreBLEU default: removed). */
  whitespace: boolean;
  lowercase: boolean;
}

export const CHRF_DEFAULTS: ChrfOptions = { charOrder: 6, beta: 2, whitespace: false, lowercase: false };

function charNgrams(text: string, o: ChrfOptions): Map<string, number>[] {
  const t = o.lowercase ? text.toLowerCase() : text;
  const chars = Array.from(o.whitespace ? t : pySplit(t).join(''));
  const out: Map<string, number>[] = [];
  for (let n = 1; n <= o.charOrder; n++) {
    const m = new Map<string, number>();
    for (let i = 0; i + n <= chars.length; i++) {
      const g = chars.slice(i, i + n).join('');
      m.set(g, (m.get(g) ?? 0) + 1);
    }
    out.push(m);
  }
  return out;
}

/** [hyp, ref, match] counts per order, flattened. */
function chrfMatch(h: Map<string, number>[], r: Map<string, number>[]): number[] {
  const stats: number[] = [];
  h.forEach((hm, i) => {
    const rm = r[i]!;
    let nh = 0;
    let nr = 0;
    let nm = 0;
    for (const c of hm.values()) nh += c;
    for (const c of rm.values()) nr += c;
    for (const [g, c] of hm) nm += Math.min(c, rm.get(g) ?? 0);
    // As sacreBLEU: hypothesis n-grams of an order the reference does not have are not counted
    // (matters for corpus statistics, where a short reference would otherwise cost precision).
    stats.push(nr > 0 ? nh : 0, nr, nm);
  });
  return stats;
}

/** chrF (0..100) from [hyp, ref, match] statistics, sacreBLEU's default (effective-order averaging). */
export function chrfFromStats(stats: readonly number[], o: ChrfOptions = CHRF_DEFAULTS): number {
  const factor = o.beta * o.beta;
  let avgP = 0;
  let avgR = 0;
  let eff = 0;
  for (let i = 0; i < o.charOrder; i++) {
    const nh = stats[3 * i]!;
    const nr = stats[3 * i + 1]!;
    const nm = stats[3 * i + 2]!;
    if (nh > 0 && nr > 0) {
      avgP += nm / nh;
      avgR += nm / nr;
      eff++;
    }
  }
  if (eff === 0) return 0;
  avgP /= eff;
  avgR /= eff;
  if (avgP + avgR === 0) return 0;
  return (100 * (1 + factor) * avgP * avgR) / (factor * avgP + avgR);
}

function chrfBestStats(hyp: string, refs: readonly string[], o: ChrfOptions): number[] {
  if (refs.length === 0) throw new Error('chrF needs at least one reference');
  const h = charNgrams(hyp, o);
  let best: number[] = [];
  let bestF = -1;
  for (const r of refs) {
    const s = chrfMatch(h, charNgrams(r, o));
    const f = chrfFromStats(s, o);
    if (f > bestF) {
      bestF = f;
      best = s;
    }
  }
  return best;
}

/** Sentence chrF (0..100) against the best of several references. */
export function sentenceChrf(hyp: string, refs: readonly string[], opts: Partial<ChrfOptions> = {}): number {
  const o = { ...CHRF_DEFAULTS, ...opts };
  return chrfFromStats(chrfBestStats(hyp, refs, o), o);
}

/** Corpus chrF (0..100): statistics summed over sentences. `refStreams` as in `corpusBleu`. */
export function corpusChrf(hyps: readonly string[], refStreams: readonly (readonly string[])[], opts: Partial<ChrfOptions> = {}): number {
  const o = { ...CHRF_DEFAULTS, ...opts };
  const acc = new Array<number>(3 * o.charOrder).fill(0);
  hyps.forEach((h, i) => {
    chrfBestStats(
      h,
      refStreams.map((s) => s[i]!),
      o,
    ).forEach((v, j) => (acc[j]! += v));
  });
  return chrfFromStats(acc, o);
}

// ---------------------------------------------------------------------------------------------
// ROUGE-L

/** Lowercased word tokens: runs of Unicode letters and digits. */
export function rougeTokens(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

/** Length of the longest common subsequence (O(n·m) time, O(m) memory). */
export function lcsLength(a: readonly string[], b: readonly string[]): number {
  if (a.length === 0 || b.length === 0) return 0;
  let prev = new Int32Array(b.length + 1);
  let cur = new Int32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, cur[j - 1]!);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[b.length]!;
}

/** ROUGE-L precision, recall and F-measure (0..1) against the best reference (by F). */
export function rougeL(hyp: string, refs: readonly string[], beta = 1): { precision: number; recall: number; f: number } {
  if (refs.length === 0) throw new Error('ROUGE-L needs at least one reference');
  const h = rougeTokens(hyp);
  let best = { precision: 0, recall: 0, f: 0 };
  for (const ref of refs) {
    const r = rougeTokens(ref);
    const lcs = lcsLength(h, r);
    if (lcs === 0) continue;
    const p = lcs / h.length;
    const rc = lcs / r.length;
    const f = ((1 + beta * beta) * p * rc) / (rc + beta * beta * p);
    if (f > best.f) best = { precision: p, recall: rc, f };
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Rewards

const extractOpts = {
  /** Which part of the completion is compared: the whole of it (default) or an extracted answer, tried in order. */
  extract: z
    .array(z.enum(['answer_tag', 'boxed', 'whole']))
    .min(1)
    .default(['whole']),
  /** Tag name for `answer_tag`. */
  answerTag: z.string().min(1).default('answer'),
  /** Scale of the reward: `unit` maps the metric to 0..1, `percent` keeps 0..100. */
  scale: z.enum(['unit', 'percent']).default('unit'),
};

function hypothesis(sample: RewardSample, o: { extract: string[]; answerTag: string }): string {
  return extractAnswer(sample.completion, o.extract as ExtractMethod[], o.answerTag)?.answer ?? '';
}

export const BleuRewardOptions = z.strictObject({
  ...extractOpts,
  /** Tokenisation: sacreBLEU's default `13a`, or `none` (whitespace split). */
  tokenize: z.enum(['13a', 'none']).default('13a'),
  /** Lowercase hypothesis and references first (sacreBLEU `-lc`). */
  lowercase: z.boolean().default(false),
  /** Smoothing (Chen & Cherry 2014): `exp` is sacreBLEU's default. */
  smooth: z.enum(['exp', 'floor', 'add-k', 'none']).default('exp'),
  /** Smoothing value for `floor` (default 0.1) and `add-k` (default 1). */
  smoothValue: z.number().positive().optional(),
  /** Effective order (as `sacrebleu.sentence_bleu`): short hypotheses are not zeroed by missing 4-grams. */
  effectiveOrder: z.boolean().default(true),
  /** Highest n-gram order. */
  maxOrder: z.number().int().min(1).max(8).default(4),
});

export const bleuReward = defineReward({
  name: 'bleu',
  description: 'sentence BLEU of the completion against the reference(s), sacreBLEU 13a tokenisation and exp smoothing',
  source: 'BLEUBERI (Chang et al. 2025); BLEU (Papineni et al. 2002) as in sacreBLEU (Post 2018)',
  optionsSchema: BleuRewardOptions,
  create: (o) => ({
    score(sample): RewardResult {
      const refs = requireReference(sample, 'bleu');
      const b = bleuFromStats(bleuStats(hypothesis(sample, o), refs, o), o);
      const k = o.scale === 'unit' ? 0.01 : 1;
      return { reward: b.score * k, components: { bleu: b.score * k, brevity_penalty: b.bp } };
    },
  }),
});

export const ChrfRewardOptions = z.strictObject({
  ...extractOpts,
  /** Character n-gram order (chrF default 6). */
  charOrder: z.number().int().min(1).max(12).default(6),
  /** Recall weight: beta = 2 weighs recall twice as much as precision. */
  beta: z.number().positive().default(2),
  /** Keep whitespace inside character n-grams. */
  whitespace: z.boolean().default(false),
  lowercase: z.boolean().default(false),
});

export const chrfReward = defineReward({
  name: 'chrf',
  description: 'character n-gram F-score (chrF, n = 6, beta = 2) against the best reference',
  source: 'chrF (Popović 2015) as in sacreBLEU',
  optionsSchema: ChrfRewardOptions,
  create: (o) => ({
    score(sample): RewardResult {
      const v = sentenceChrf(hypothesis(sample, o), requireReference(sample, 'chrf'), o) * (o.scale === 'unit' ? 0.01 : 1);
      return { reward: v, components: { chrf: v } };
    },
  }),
});

export const RougeLRewardOptions = z.strictObject({
  ...extractOpts,
  /** F-measure beta (1 = harmonic mean of LCS precision and recall, as `rouge-score`). */
  beta: z.number().positive().default(1),
});

export const rougeLReward = defineReward({
  name: 'rouge_l',
  description: 'ROUGE-L: F-measure of the longest common word subsequence with the best reference',
  source: 'ROUGE-L (Lin 2004)',
  optionsSchema: RougeLRewardOptions,
  create: (o) => ({
    score(sample): RewardResult {
      const r = rougeL(hypothesis(sample, o), requireReference(sample, 'rouge_l'), o.beta);
      const k = o.scale === 'unit' ? 1 : 100;
      return { reward: r.f * k, components: { rouge_l_precision: r.precision * k, rouge_l_recall: r.recall * k } };
    },
  }),
});
