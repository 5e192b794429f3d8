/**
 * Token sampling over one row of logits, and the stop conditions of a completion.
 *
 * Options use the names of vLLM's `SamplingParams` (which TRL's GRPOConfig forwards to vLLM):
 * `temperature`, `top_k`, `top_p`, `min_p`, `max_tokens`, `stop`, `stop_token_ids`, `ignore_eos`,
 * `include_stop_str_in_output`. The filters are applied in the order of Hugging Face `generate`'s
 * logits warpers — temperature, then top-k, then top-p (on what top-k kept), then min-p.
 *
 * Determinism (all randomness comes from counter streams, activities/common/rng.ts). The uniform number behind each draw is `CounterRng(seed, step,
 * promptId, sampleId).uniform(position)` — a pure function of those coordinates, so the token drawn
 * for a sequence is the same on every machine, on every re-run after a crash, and whatever other
 * sequences share its batch. The draw itself is inverse-CDF over the kept tokens in id order with
 * float64 sums, so equal logits give the same token bit for bit. Ties are broken by the lowest id
 * everywhere (greedy argmax, the top-k boundary, the top-p boundary).
 *
 * Log-probabilities returned with each token:
 * - `logprob` — log-softmax of the temperature-scaled logits over the row given,
 *   `log softmax(logits / T)[token]`: the distribution that was sampled from whenever no truncation
 *   (top-k/top-p/min-p) is active. Truncation is not part of it: a graph cannot reproduce the
 *   per-token nucleus cheaply, and TRL/verl ignore it too. With `temperature` 0 (greedy) there is
 *   no sampling distribution; `logprob` is then the model's own log-probability at temperature 1.
 *   The behaviour logprobs a rollout stores are the same quantity over the model's whole
 *   vocabulary, recorded by `generate` (model/generate.ts, its `temperature` option): exactly what
 *   the learner's score and train graphs recompute when fed the phase's temperature, so the
 *   importance ratio of an unchanged policy is 1.
 * - `rawLogprob` — log-softmax of the unscaled logits (temperature 1): the model's own probability.
 * - `sampledLogprob` — log-probability under the truncated, renormalised distribution actually
 *   drawn from (0 for greedy).
 * - `entropy` — entropy (nats) of the distribution `logprob` refers to; useful for metrics and for
 *   choosing branch points in tree rollouts.
 *
 * Restricting the vocabulary: pass a prefix view, e.g. `logits.subarray(0, tokenizer.vocabSize)`,
 * to exclude padded embedding rows that the tokenizer cannot decode.
 */
import { parseConfig, z } from '../common/config.js';
import { CounterRng } from '../common/rng.js';

/** Sampling options (vLLM `SamplingParams` names). */
export const samplingParamsSchema = z.strictObject({
  /**
   * Softmax temperature: logits are divided by it before sampling. 0 means greedy decoding (the
   * argmax, lowest id on ties), as in vLLM. DAPO (Yu et al., 2025) and most GRPO recipes sample at 1.0.
   * In an rl phase the learner takes its logprobs, KL and entropy at the same temperature
   * (log softmax(logits / T), as TRL and verl do), so its importance ratios compare the
   * distribution the rollouts were drawn from.
   */
  temperature: z.number().min(0).default(1),
  /**
   * Keep only the k most probable tokens (Fan et al., "Hierarchical Neural Story Generation",
   * 2018). -1 or 0 disables it (vLLM uses -1, TRL 0).
   */
  top_k: z.number().int().min(-1).default(-1),
  /**
   * Nucleus sampling (Holtzman et al., "The Curious Case of Neural Text Degeneration", ICLR 2020):
   * keep the smallest set of most probable tokens whose mass reaches top_p. 1 disables it.
   */
  top_p: z.number().gt(0).max(1).default(1),
  /**
   * Min-p sampling (Nguyen et al., "Turning Up the Heat: Min-p Sampling for Creative and Coherent
   * LLM Outputs", 2024): drop tokens whose probability is below min_p times the top token's. 0
   * disables it.
   */
  min_p: z.number().min(0).max(1).default(0),
  /** Largest number of completion tokens; a completion that reaches it finishes with `length`. */
  max_tokens: z.number().int().positive().default(256),
  /**
   * Strings that end the completion when they appear in its decoded text (finish reason
   * `stop_string`); the text is cut before the stop string unless `include_stop_str_in_output`.
   * A single string is accepted for a list of one.
   */
  stop: z
    .union([z.string().min(1), z.array(z.string().min(1, 'stop strings must not be empty'))])
    .transform((s) => (typeof s === 'string' ? [s] : s))
    .default([]),
  /** Token ids that end the completion (finish reason `stop`) besides the tokenizer's EOS ids. */
  stop_token_ids: z.array(z.number().int().nonnegative()).default([]),
  /** Keep generating past EOS tokens (until `stop_token_ids`, a stop string or `max_tokens`). */
  ignore_eos: z.boolean().default(false),
  /** Keep the matched stop string at the end of the completion text. */
  include_stop_str_in_output: z.boolean().default(false),
});

export type SamplingParams = z.output<typeof samplingParamsSchema>;
export type SamplingParamsInput = z.input<typeof samplingParamsSchema>;

/** Validates sampling options, filling defaults; throws ConfigError naming each bad field. */
export function parseSamplingParams(input: unknown = {}, what = 'sampling params'): SamplingParams {
  return parseConfig(samplingParamsSchema, input, what);
}

/** The coordinates that name one sequence's random stream (one stream per (seed, step, prompt, sample)). */
export interface SampleStreamKey {
  /** The run seed. */
  seed: number | string;
  /** Training step. */
  step: number;
  /** Prompt id (a string is hashed). */
  promptId: number | string;
  /** Sample index within the prompt's group, or a tree node id. */
  sampleId: number | string;
}

/** The random stream of one sequence; `.uniform(position)` is the draw for completion position `position`. */
export function sampleStream(key: SampleStreamKey): CounterRng {
  return new CounterRng(key.seed, key.step, key.promptId, key.sampleId);
}

/** A sampled token with its log-probabilities (see the file comment for which is which). */
export interface SampleResult {
  token: number;
  logprob: number;
  rawLogprob: number;
  sampledLogprob: number;
  entropy: number;
}

/** Logits that cannot be sampled from (NaN, +Infinity, all -Infinity, empty). */
export class SamplingError extends Error {
  override readonly name = 'SamplingError';
}

// Scratch buffers reused across calls (JS is single-threaded and sampleToken does not re-enter).
let weights = new Float64Array(0);
let sorted = new Float64Array(0);
let kept = new Uint8Array(0);

function ensureScratch(n: number): void {
  if (weights.length < n) {
    weights = new Float64Array(n);
    sorted = new Float64Array(n);
    kept = new Uint8Array(n);
  }
}

/**
 * Keeps, among the currently kept tokens, those of the `need` largest weights (ties to the lowest
 * id) — the shared boundary rule of top-k and top-p. `threshold` is the smallest kept weight.
 */
function keepAtLeast(n: number, threshold: number, need: number): void {
  let takenAtThreshold = 0;
  for (let i = 0; i < n; i++) {
    if (!kept[i]) continue;
    const w = weights[i]!;
    if (w > threshold) continue;
    if (w === threshold && takenAtThreshold < need) takenAtThreshold++;
    else kept[i] = 0;
  }
}

/**
 * Candidate cut-offs for the partial sorts of top-k and top-p: only the kept weights at or above a
 * cut-off are sorted, and the cut-off is lowered until they are enough (count for top-k, mass for
 * top-p). Peaked LM distributions need only a few hundred candidates out of 150k.
 */
const CUTOFFS = [2 ** -4, 2 ** -8, 2 ** -16, 2 ** -32, 2 ** -64, 0];

/** Copies the kept weights >= cutoff into `sorted` (first `m` slots); returns m and their mass. */
function gather(n: number, cutoff: number): { m: number; mass: number } {
  let m = 0;
  let mass = 0;
  for (let i = 0; i < n; i++) {
    if (kept[i] && weights[i]! >= cutoff) {
      sorted[m++] = weights[i]!;
      mass += weights[i]!;
    }
  }
  return { m, mass };
}

/**
 * Samples one token from a row of logits with the uniform number `u` in [0, 1) (normally
 * `sampleStream(key).uniform(position)`). Throws SamplingError for NaN or +Infinity logits (naming
 * the id) or when every logit is -Infinity.
 */
export function sampleToken(logits: ArrayLike<number>, params: SamplingParams, u: number): SampleResult {
  const n = logits.length;
  if (n === 0) throw new SamplingError('logits row is empty');
  if (!(u >= 0 && u < 1)) throw new SamplingError(`uniform draw must be in [0, 1), got ${u}`);
  let max = -Infinity;
  let argmax = -1;
  for (let i = 0; i < n; i++) {
    const l = logits[i]!;
    if (!(l < Infinity)) throw new SamplingError(`logit of token ${i} is ${l}; the model produced non-finite output`);
    if (l > max) {
      max = l;
      argmax = i;
    }
  }
  if (argmax < 0) throw new SamplingError('every logit is -Infinity: no token can be sampled');

  const T = params.temperature;
  ensureScratch(n);
  // Unnormalised probabilities at temperature T (1 when greedy): w = exp((l - max) / T), so the
  // top token weighs exactly 1. Sums in float64, id order.
  const scale = T === 0 ? 1 : T;
  let Z = 0;
  let sumWS = 0;
  let finite = 0;
  for (let i = 0; i < n; i++) {
    const s = (logits[i]! - max) / scale;
    const w = Math.exp(s);
    weights[i] = w;
    if (w > 0) {
      kept[i] = 1;
      finite++;
      Z += w;
      sumWS += w * s;
    } else kept[i] = 0;
  }
  const logZ = Math.log(Z);
  const entropy = logZ - sumWS / Z;
  // Log-normaliser at temperature 1 (a second exponential pass only when T is not 1).
  let lseRaw = max + logZ;
  if (scale !== 1) {
    let sumRaw = 0;
    for (let i = 0; i < n; i++) sumRaw += Math.exp(logits[i]! - max);
    lseRaw = max + Math.log(sumRaw);
  }
  if (T === 0) {
    const lp = logits[argmax]! - lseRaw;
    return { token: argmax, logprob: lp, rawLogprob: lp, sampledLogprob: 0, entropy };
  }

  let truncated = false;
  // top-k: the k largest weights, ties to the lowest id.
  const k = params.top_k;
  if (k > 0 && k < finite) {
    let g = { m: 0, mass: 0 };
    for (const c of CUTOFFS) if ((g = gather(n, c)).m >= k) break;
    const view = sorted.subarray(0, g.m).sort();
    const threshold = view[g.m - k]!;
    let above = 0;
    for (let j = g.m - 1; j >= 0 && view[j]! > threshold; j--) above++;
    keepAtLeast(n, threshold, k - above);
    truncated = true;
  }

  // top-p: the most probable tokens (of those kept) until their mass reaches top_p, boundary
  // token included, ties to the lowest id.
  if (params.top_p < 1) {
    const target = params.top_p * (truncated ? gather(n, 0).mass : Z);
    let g = { m: 0, mass: 0 };
    for (const c of CUTOFFS) if ((g = gather(n, c)).mass >= target || c === 0) break;
    const view = sorted.subarray(0, g.m).sort();
    let cum = 0;
    let threshold = view[0]!;
    let atThreshold = 0;
    for (let j = g.m - 1; j >= 0; j--) {
      const w = view[j]!;
      if (w !== threshold) {
        threshold = w;
        atThreshold = 0;
      }
      atThreshold++;
      cum += w;
      if (cum >= target) break;
    }
    keepAtLeast(n, threshold, atThreshold);
    truncated = true;
  }

  // min-p: relative to the top token, whose weight is exactly 1.
  if (params.min_p > 0) {
    for (let i = 0; i < n; i++) if (kept[i] && weights[i]! < params.min_p) kept[i] = 0;
    truncated = true;
  }

  let Zk = Z;
  if (truncated) {
    Zk = 0;
    for (let i = 0; i < n; i++) if (kept[i]) Zk += weights[i]!;
  }
  const target = u * Zk;
  let cum = 0;
  let token = -1;
  let last = -1;
  for (let i = 0; i < n; i++) {
    if (!kept[i]) continue;
    last = i;
    cum += weights[i]!;
    if (cum > target) {
      token = i;
      break;
    }
  }
  if (token < 0) token = last; // rounding left target at the very top of the mass
  const s = (logits[token]! - max) / T;
  return {
    token,
    logprob: s - logZ,
    rawLogprob: logits[token]! - lseRaw,
    sampledLogprob: Math.log(weights[token]! / Zk),
    entropy,
  };
}

/** `sampleToken` with the draw for `position` of a sequence's stream. */
export function sampleAt(logits: ArrayLike<number>, params: SamplingParams, stream: CounterRng, position: number): SampleResult {
  return sampleToken(logits, params, stream.uniform(position));
}

/** Why a completion ended: an EOS / stop token, `max_tokens`, or a stop string. */
export const FINISH_REASONS = ['stop', 'length', 'stop_string'] as const;
export type FinishReason = (typeof FINISH_REASONS)[number];

/** A finished completion: why, and the text to keep. */
export interface StopResult {
  reason: FinishReason;
  /**
   * The completion text to keep: cut before the stop string (or after it with
   * `include_stop_str_in_output`); the text as given otherwise. The token ids are not cut: every
   * sampled token stays part of the completion (its logprob was recorded), as in vLLM.
   */
  text: string;
  /** The stop string or stop token id that matched; null for `length`. */
  matched: string | number | null;
  /** Number of tokens generated, the stopping token included. */
  tokens: number;
}

/**
 * Incremental stop-condition checker for one completion. Call `push(token, text)` after each
 * sampled token with the decoded completion text so far; it returns the finish or null.
 *
 * Order of checks, as in vLLM: stop token (an EOS id unless `ignore_eos`, or one of
 * `stop_token_ids`) → stop string → `max_tokens`. Among stop strings the earliest occurrence wins
 * (then the longest). Only the tail of the text that could hold a new match is searched: the part
 * after the previous text's end minus the longest stop string, minus 3 more characters because an
 * incomplete UTF-8 sequence at the end of byte-level decoded text may still change.
 */
export class StopChecker {
  private readonly stopIds: Set<number>;
  private readonly maxStop: number;
  private count = 0;
  private prevLength = 0;
  private done: StopResult | null = null;

  constructor(
    private readonly params: SamplingParams,
    eosIds: readonly number[],
  ) {
    this.stopIds = new Set([...params.stop_token_ids, ...(params.ignore_eos ? [] : eosIds)]);
    this.maxStop = params.stop.reduce((m, s) => Math.max(m, s.length), 0);
  }

  /** The finish, once reached. */
  get result(): StopResult | null {
    return this.done;
  }

  push(token: number, text: string): StopResult | null {
    if (this.done) throw new Error(`completion already finished (${this.done.reason}); push called again`);
    this.count++;
    if (this.stopIds.has(token)) return (this.done = { reason: 'stop', text, matched: token, tokens: this.count });
    if (this.maxStop > 0) {
      const from = Math.max(0, Math.min(this.prevLength, text.length) - this.maxStop - 3);
      let best = -1;
      let bestStop = '';
      for (const s of this.params.stop) {
        const at = text.indexOf(s, from);
        if (at >= 0 && (best < 0 || at < best || (at === best && s.length > bestStop.length))) {
          best = at;
          bestStop = s;
        }
      }
      if (best >= 0) {
        const end = this.params.include_stop_str_in_output ? best + bestStop.length : best;
        return (this.done = { reason: 'stop_string', text: text.slice(0, end), matched: bestStop, tokens: this.count });
      }
      this.prevLength = text.length;
    }
    if (this.count >= this.params.max_tokens) return (this.done = { reason: 'length', text, matched: null, tokens: this.count });
    return null;
  }
}
