/**
 * LLM-judge reward over an OpenAI-compatible chat API (`POST {baseUrl}/chat/completions`).
 *
 * Modes:
 * - `principle` — RewardAnything (Yu et al. 2025, "Generalizable Principle-Following Reward
 *   Models"): the judge scores how well the response follows a natural-language principle given in
 *   the options or per prompt (`metadata.principle`).
 * - `rubric` — rubric rewards: the judge marks each rubric item (from the options or
 *   `metadata.rubrics`) satisfied (1), partly (0.5) or not (0); the reward is their weighted mean.
 *   This is the nugget-as-rubric verifier of Search-Gen-V ("An Efficient Rubric-based Generative
 *   Verifier for Search-Augmented LLMs", 2025); with `citations: true` an item only counts when the
 *   response supports it with a citation, as in CaRR (Citation-aware Rubric Rewards, "Chaining the
 *   Evidence", 2026).
 *
 * Verdicts are parsed strictly: `json` wants a JSON object `{"score": x}` (or `{"scores": [...]}`
 * for rubrics) as the whole reply, optionally in a ```json fence, optionally after a `<think>`
 * block; `score_line` wants exactly one line `Score: x/MAX`. A malformed or out-of-range verdict is
 * asked again (`malformedRetries`) and then is an error of the sample (never a zero).
 *
 * HTTP: per-request timeout, retries with exponential backoff on network errors, 408, 429
 * (honouring Retry-After) and 5xx; other 4xx fail at once (bad model name, bad key). A per-judge
 * concurrency limit caps requests in flight. Valid verdicts are cached by the SHA-256 of the
 * request (model, messages, sampling parameters) in memory and, optionally, as files in `cacheDir`,
 * so a re-executed activity does not pay for the same judgement twice.
 *
 * The API key is read from the environment variable named by `apiKeyEnv`, never from the config.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from '../common/config.js';
import { CounterRng } from '../common/rng.js';
import { defineReward, referencesOf, type RewardContext, type RewardResult, type RewardSample } from './types.js';

const Rubric = z.union([z.string().min(1), z.strictObject({ text: z.string().min(1), weight: z.number().positive().default(1) })]);

export const JudgeOptions = z
  .strictObject({
    /** Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:8000/v1`. */
    baseUrl: z.string().url(),
    /** Model name sent in the request. */
    model: z.string().min(1),
    /** Name of the environment variable holding the API key (sent as a Bearer token); none when unset. */
    apiKeyEnv: z.string().min(1).optional(),
    /** `principle` (RewardAnything) or `rubric` (rubric verifier, CaRR with `citations`). */
    mode: z.enum(['principle', 'rubric']).default('principle'),
    /** The principle to judge by (principle mode); `metadata.principle` overrides it per prompt. */
    principle: z.string().min(1).optional(),
    /** Rubric items (rubric mode); `metadata.rubrics` overrides them per prompt. */
    rubrics: z.array(Rubric).min(1).optional(),
    /** Rubric mode: an item counts only when the response supports it with a citation (CaRR). */
    citations: z.boolean().default(false),
    /** Show the reference answer(s) to the judge when the sample has them. */
    includeReference: z.boolean().default(true),
    /** Verdict format: `json` ({"score": x}) or `score_line` (`Score: x/MAX`; principle mode only). */
    verdictFormat: z.enum(['json', 'score_line']).default('json'),
    /** Lowest and highest score of the principle scale; the reward maps it to 0..1. */
    minScore: z.number().default(0),
    maxScore: z.number().default(10),
    /** Sampling temperature of the judge (0: as deterministic as the server allows). */
    temperature: z.number().min(0).max(2).default(0),
    /** Token budget of the verdict. */
    maxTokens: z.number().int().positive().default(1024),
    /** Per-request timeout, ms. */
    timeoutMs: z.number().int().positive().default(60_000),
    /** Retries after a network error, 408, 429 or 5xx. */
    retries: z.number().int().min(0).max(20).default(4),
    /** First backoff delay, ms; doubles each retry, with deterministic jitter, up to maxDelayMs. */
    baseDelayMs: z.number().int().min(0).default(500),
    maxDelayMs: z.number().int().positive().default(30_000),
    /** Times a malformed verdict is asked again before the sample fails. */
    malformedRetries: z.number().int().min(0).max(10).default(2),
    /** Requests in flight at once, per judge. */
    concurrency: z.number().int().positive().default(8),
    /** Directory of the persistent verdict cache (one JSON file per request hash); memory only when unset. */
    cacheDir: z.string().min(1).optional(),
  })
  .superRefine((o, ctx) => {
    if (o.maxScore <= o.minScore) ctx.addIssue({ code: 'custom', path: ['maxScore'], message: 'maxScore must be greater than minScore' });
    if (o.mode === 'rubric' && o.verdictFormat !== 'json') {
      ctx.addIssue({
        code: 'custom',
        path: ['verdictFormat'],
        message: 'rubric mode needs verdictFormat "json" (one score per rubric item)',
      });
    }
  });
export type JudgeOptions = z.output<typeof JudgeOptions>;

export interface ChatMessage {
  role: 'system' | 'user';
  content: string;
}

export class MalformedVerdict extends Error {
  override readonly name = 'MalformedVerdict';
}

/** Removes a leading reasoning block and a Markdown code fence around the verdict. */
function verdictBody(reply: string): string {
  let s = reply.replace(/^\s*<think>[\s\S]*?<\/think>/, '').trim();
  const fence = /^```(?:json)?\s*\n([\s\S]*?)\n?```$/.exec(s);
  if (fence) s = fence[1]!.trim();
  return s;
}

const excerpt = (s: string) => JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}…` : s);

/** Parses a principle-mode verdict; throws MalformedVerdict saying what is wrong. */
export function parseScoreVerdict(reply: string, format: 'json' | 'score_line', min: number, max: number): number {
  let score: number;
  if (format === 'json') {
    const body = verdictBody(reply);
    let v: unknown;
    try {
      v = JSON.parse(body);
    } catch {
      throw new MalformedVerdict(`verdict is not a JSON object: ${excerpt(reply)}`);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      throw new MalformedVerdict(`verdict is not a JSON object: ${excerpt(reply)}`);
    const s = (v as Record<string, unknown>).score;
    if (typeof s !== 'number') throw new MalformedVerdict(`verdict has no numeric "score": ${excerpt(reply)}`);
    score = s;
  } else {
    const body = reply.replace(/^\s*<think>[\s\S]*?<\/think>/, '');
    const lines = [...body.matchAll(/^\s*\**Score\**\s*:\s*\**\s*(-?\d+(?:\.\d+)?)\s*\/\s*(\d+(?:\.\d+)?)\s*\**\s*$/gim)];
    if (lines.length !== 1) {
      throw new MalformedVerdict(`verdict needs exactly one "Score: x/${max}" line, found ${lines.length}: ${excerpt(reply)}`);
    }
    if (Number(lines[0]![2]) !== max) throw new MalformedVerdict(`verdict is out of ${lines[0]![2]}, expected /${max}: ${excerpt(reply)}`);
    score = Number(lines[0]![1]);
  }
  if (!Number.isFinite(score) || score < min || score > max) {
    throw new MalformedVerdict(`verdict score ${score} is outside [${min}, ${max}]: ${excerpt(reply)}`);
  }
  return score;
}

/** Parses a rubric verdict `{"scores": [...]}` with one value in {0, 0.5, 1} per item. */
export function parseRubricVerdict(reply: string, items: number): number[] {
  let v: unknown;
  try {
    v = JSON.parse(verdictBody(reply));
  } catch {
    throw new MalformedVerdict(`rubric verdict is not a JSON object: ${excerpt(reply)}`);
  }
  const scores = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>).scores : undefined;
  if (!Array.isArray(scores)) throw new MalformedVerdict(`rubric verdict has no "scores" array: ${excerpt(reply)}`);
  if (scores.length !== items)
    throw new MalformedVerdict(`rubric verdict has ${scores.length} scores for ${items} rubric items: ${excerpt(reply)}`);
  return scores.map((s, i) => {
    if (s !== 0 && s !== 0.5 && s !== 1)
      throw new MalformedVerdict(`rubric verdict scores[${i}] is ${JSON.stringify(s)}, expected 0, 0.5 or 1: ${excerpt(reply)}`);
    return s;
  });
}

interface RubricItem {
  text: string;
  weight: number;
}

function rubricsOf(sample: RewardSample, o: JudgeOptions): RubricItem[] {
  const raw = sample.metadata?.rubrics ?? o.rubrics;
  if (raw === undefined)
    throw new Error(`judge in rubric mode needs rubrics for prompt ${sample.promptId}: set metadata.rubrics or the rubrics option`);
  const parsed = z.array(Rubric).min(1).safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw new Error(
      `rubrics of prompt ${sample.promptId} must be a non-empty list of strings or { text, weight }: ${i.path.join('.')}: ${i.message}`,
    );
  }
  return parsed.data.map((r) => (typeof r === 'string' ? { text: r, weight: 1 } : { text: r.text, weight: r.weight }));
}

/** The chat messages sent to the judge for a sample. */
export function judgeMessages(sample: RewardSample, o: JudgeOptions, rubrics?: RubricItem[]): ChatMessage[] {
  const refs = o.includeReference ? referencesOf(sample) : [];
  const refText = refs.length === 0 ? '' : `\n\n[REFERENCE ANSWER${refs.length > 1 ? 'S' : ''}]\n${refs.join('\n---\n')}`;
  const conversation = `[PROMPT]\n${sample.prompt}${refText}\n\n[RESPONSE]\n${sample.completion}`;
  if (o.mode === 'rubric') {
    const list = rubrics!.map((r, i) => `${i + 1}. ${r.text}`).join('\n');
    const cite = o.citations
      ? ' An item counts as satisfied only when the response states it AND supports it with a citation to a source it names; an uncited or wrongly cited claim is not satisfied (0).'
      : '';
    return [
      {
        role: 'system',
        content:
          'You are a strict grader. For each numbered rubric item decide whether the RESPONSE satisfies it: 1 (fully), 0.5 (partly) or 0 (not at all).' +
          cite +
          ` Reply with only a JSON object {"scores": [...]} holding exactly ${rubrics!.length} numbers, in rubric order.`,
      },
      { role: 'user', content: `${conversation}\n\n[RUBRIC]\n${list}` },
    ];
  }
  const principle = (typeof sample.metadata?.principle === 'string' ? sample.metadata.principle : undefined) ?? o.principle;
  if (principle === undefined)
    throw new Error(
      `judge in principle mode needs a principle for prompt ${sample.promptId}: set metadata.principle or the principle option`,
    );
  const format =
    o.verdictFormat === 'json'
      ? `Reply with only a JSON object {"score": <number from ${o.minScore} to ${o.maxScore}>}.`
      : `Explain briefly, then end with exactly one line "Score: <number from ${o.minScore} to ${o.maxScore}>/${o.maxScore}".`;
  return [
    {
      role: 'system',
      content: `You are a reward model. Judge how well the RESPONSE to the PROMPT follows this principle:\n${principle}\nHigher scores mean closer adherence. ${format}`,
    },
    { role: 'user', content: conversation },
  ];
}

class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

const retryable = (e: unknown) => !(e instanceof HttpError) || e.status === 408 || e.status === 429 || e.status >= 500;

/** The judge client: cache, concurrency limit, retries. One per reward instance. */
export class JudgeClient {
  private readonly memo = new Map<string, string>();
  private readonly gate: Semaphore;
  /** Requests actually sent (for metrics and tests). */
  requests = 0;
  cacheHits = 0;

  constructor(private readonly o: JudgeOptions) {
    this.gate = new Semaphore(o.concurrency);
  }

  /** SHA-256 of everything that determines the reply. */
  key(messages: ChatMessage[], attempt: number): string {
    const body = JSON.stringify({ model: this.o.model, messages, temperature: this.o.temperature, max_tokens: this.o.maxTokens, attempt });
    return createHash('sha256').update(body).digest('hex');
  }

  private async cached(key: string): Promise<string | undefined> {
    const m = this.memo.get(key);
    if (m !== undefined) return m;
    if (!this.o.cacheDir) return undefined;
    try {
      const v = JSON.parse(await readFile(join(this.o.cacheDir, key.slice(0, 2), `${key}.json`), 'utf8')) as { reply?: unknown };
      if (typeof v.reply === 'string') {
        this.memo.set(key, v.reply);
        return v.reply;
      }
    } catch {
      // a miss, or a torn file from a crash: ask again
    }
    return undefined;
  }

  /** Stores a reply that parsed as a valid verdict. */
  async remember(key: string, reply: string): Promise<void> {
    this.memo.set(key, reply);
    if (!this.o.cacheDir) return;
    const dir = join(this.o.cacheDir, key.slice(0, 2));
    await mkdir(dir, { recursive: true });
    const tmp = join(dir, `${key}.${process.pid}.tmp`);
    await writeFile(tmp, JSON.stringify({ model: this.o.model, reply }));
    await rename(tmp, join(dir, `${key}.json`));
  }

  /** The reply for `messages` (attempt n of a malformed-verdict retry is a distinct request). */
  async complete(messages: ChatMessage[], attempt: number, signal: AbortSignal): Promise<{ reply: string; key: string; cached: boolean }> {
    const key = this.key(messages, attempt);
    const hit = await this.cached(key);
    if (hit !== undefined) {
      this.cacheHits++;
      return { reply: hit, key, cached: true };
    }
    const rng = new CounterRng('judge-backoff', key.slice(0, 8));
    let lastError: unknown;
    for (let retry = 0; retry <= this.o.retries; retry++) {
      if (retry > 0) {
        const exp = Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** (retry - 1));
        const wait =
          lastError instanceof HttpError && lastError.retryAfterMs !== undefined
            ? Math.min(this.o.maxDelayMs, lastError.retryAfterMs)
            : exp * (0.5 + 0.5 * rng.uniform(retry));
        await sleep(wait, undefined, { signal });
      }
      try {
        const reply = await this.gate.run(() => this.post(messages, signal));
        return { reply, key, cached: false };
      } catch (e) {
        if (signal.aborted) throw e;
        lastError = e;
        if (!retryable(e)) break;
      }
    }
    const what = lastError instanceof Error ? lastError.message : String(lastError);
    throw new Error(
      retryable(lastError) ? `judge request failed after ${this.o.retries + 1} attempts: ${what}` : `judge request failed: ${what}`,
    );
  }

  private async post(messages: ChatMessage[], signal: AbortSignal): Promise<string> {
    this.requests++;
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.o.apiKeyEnv) {
      const k = process.env[this.o.apiKeyEnv];
      if (!k) throw new HttpError(401, `environment variable ${this.o.apiKeyEnv} (apiKeyEnv) is not set`);
      headers.authorization = `Bearer ${k}`;
    }
    const url = `${this.o.baseUrl.replace(/\/+$/, '')}/chat/completions`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'POST',
        headers,
        body: JSON.stringify({ model: this.o.model, messages, temperature: this.o.temperature, max_tokens: this.o.maxTokens }),
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.o.timeoutMs)]),
      });
    } catch (e) {
      if (signal.aborted) throw e;
      const err = e as Error;
      throw new Error(
        err.name === 'TimeoutError' ? `no reply from ${url} within ${this.o.timeoutMs} ms` : `cannot reach ${url}: ${err.message}`,
      );
    }
    const text = await res.text();
    if (!res.ok) {
      const ra = res.headers.get('retry-after');
      const raMs = ra !== null && Number.isFinite(Number(ra)) ? Number(ra) * 1000 : undefined;
      throw new HttpError(res.status, `HTTP ${res.status} from ${url}: ${text.slice(0, 300)}`, raMs);
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new HttpError(502, `reply from ${url} is not JSON: ${text.slice(0, 200)}`);
    }
    const content = (body as { choices?: { message?: { content?: unknown } }[] }).choices?.[0]?.message?.content;
    if (typeof content !== 'string') throw new HttpError(502, `reply from ${url} has no choices[0].message.content: ${text.slice(0, 200)}`);
    return content;
  }
}

async function judgeSample(client: JudgeClient, sample: RewardSample, o: JudgeOptions, ctx: RewardContext): Promise<RewardResult> {
  const rubrics = o.mode === 'rubric' ? rubricsOf(sample, o) : undefined;
  const messages = judgeMessages(sample, o, rubrics);
  let lastMalformed: MalformedVerdict | undefined;
  for (let attempt = 0; attempt <= o.malformedRetries; attempt++) {
    const { reply, key, cached } = await client.complete(messages, attempt, ctx.signal);
    try {
      let result: RewardResult;
      if (rubrics) {
        const scores = parseRubricVerdict(reply, rubrics.length);
        const total = rubrics.reduce((s, r) => s + r.weight, 0);
        const reward = scores.reduce((s, v, i) => s + v * rubrics[i]!.weight, 0) / total;
        result = { reward, components: { rubric_satisfied: scores.filter((s) => s === 1).length, rubric_items: scores.length } };
      } else {
        const score = parseScoreVerdict(reply, o.verdictFormat, o.minScore, o.maxScore);
        result = { reward: (score - o.minScore) / (o.maxScore - o.minScore), components: { judge_score: score } };
      }
      if (!cached) await client.remember(key, reply);
      return result;
    } catch (e) {
      if (!(e instanceof MalformedVerdict)) throw e;
      lastMalformed = e;
      ctx.log.warn({ promptId: sample.promptId, sampleId: sample.sampleId, attempt, error: e.message }, 'malformed judge verdict');
    }
  }
  throw new Error(`judge gave no valid verdict in ${o.malformedRetries + 1} tries: ${lastMalformed!.message}`);
}

export const llmJudge = defineReward({
  name: 'llm_judge',
  description: 'an LLM judge over an OpenAI-compatible API scores the response by a principle or a rubric (optionally citation-aware)',
  source: 'RewardAnything (Yu et al. 2025); rubric verifier Search-Gen-V (2025); CaRR citation-aware rubric rewards (2026)',
  optionsSchema: JudgeOptions,
  create: (o) => {
    const client = new JudgeClient(o);
    return {
      score: (sample, ctx) => judgeSample(client, sample, o, ctx),
    };
  },
});
