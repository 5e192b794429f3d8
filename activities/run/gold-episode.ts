/**
 * A gold trajectory of an environment as an SFT row (issue 15): tokenised segment by segment, as
 * the episode rollout tokenises an episode (activities/rollout/episode.ts) — the prompt, each
 * policy turn (loss mask 1, followed by the end-of-turn token where the turn ends on it), each
 * observation segment (template glue + observations, loss mask 0). The conversation is never
 * tokenised as one text, so SFT trains on the token boundaries RL will sample and score.
 */
import type { Environment, EnvRow } from '../env/types.js';
import { goldSegments } from '../env/gold.js';
import { CHAT_TEMPLATE_DATE, type ResolvedRun } from './resolve.js';

/** The fields of a resolved run the encoding reads. */
export type GoldEpisodeRun = Pick<ResolvedRun, 'tokenizer' | 'pretrained' | 'encodePrompt' | 'encodeCompletion'>;

/** One SFT row: ids and their loss mask (1 on the policy's turns and end-of-turn tokens). */
export interface GoldEpisodeRow {
  ids: number[];
  lossMask: number[];
  /** Where each segment ends in `ids` (exclusive), the prompt first: for tests and the report. */
  segmentEnds: number[];
}

/** The gold episode of `row` in `env`, as the run's model reads it. */
export function encodeGoldEpisode(run: GoldEpisodeRun, env: Environment, row: EnvRow): GoldEpisodeRow {
  const template = run.pretrained?.chatTemplate ?? null;
  const endOfTurnId = run.encodeCompletion('').at(-1)!;
  const chat = template ? { template, tools: env.tools, now: CHAT_TEMPLATE_DATE } : null;
  const { prompt, segments } = goldSegments(env, row, { chat, endOfTurn: run.tokenizer.decode([endOfTurnId]) });
  const raw = (text: string) => run.tokenizer.encode(text, { addSpecialTokens: false });
  // the prompt as the rollout encodes it: through the template with the tools, or with the tokenizer's own specials (BOS)
  const ids = chat ? raw(prompt) : run.encodePrompt(prompt);
  const lossMask = ids.map(() => 0);
  const segmentEnds = [ids.length];
  for (const s of segments) {
    const part = s.role === 'policy' && s.endsTurn ? run.encodeCompletion(s.text) : raw(s.text);
    ids.push(...part);
    for (let k = 0; k < part.length; k++) lossMask.push(s.role === 'policy' ? 1 : 0);
    segmentEnds.push(ids.length);
  }
  return { ids, lossMask, segmentEnds };
}
