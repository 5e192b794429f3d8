/**
 * An episode as text segments, the way the rollout builds it (activities/rollout/episode.ts): the
 * prompt (the environment's first messages through the chat template with the tools, or the user
 * text), then the policy's turns (trainable) and, after each turn that calls tools, the observation
 * segment (template glue + observations, loss mask 0). A gold trajectory (SFT) is tokenised segment
 * by segment from this, so supervised and RL batches agree token for token on the same episode.
 */
import { renderObservation, renderPrompt, type ChatRendering } from './format.js';
import type { ChatMessage, Environment, EnvRow, Trajectory } from './types.js';

/** One segment of an episode after the prompt. */
export interface TextSegment {
  /** `policy`: the policy's turn (trained on); `observation`: glue and observations (loss mask 0). */
  role: 'policy' | 'observation';
  text: string;
  /**
   * Policy turns: the turn ends with the end-of-turn token (the final turn; every turn in the hermes
   * format, where a call turn ends with the template's end-of-turn token too). A tagged call turn
   * ends at its closing tag instead, where generation stops.
   */
  endsTurn: boolean;
}

/** The prompt text of an episode of `row`: `env.reset(row)` rendered (chat template with the tools, or the user text). */
export function episodePrompt(env: Environment, row: EnvRow, chat?: ChatRendering | null): string {
  return renderPrompt(env.reset(row), chat ? { ...chat, tools: chat.tools ?? env.tools } : null);
}

/**
 * The segments of a trajectory (assistant turns and the role `tool` messages answering them, as
 * `env.gold` gives it) after the prompt of `row`. `endOfTurn`: the end-of-turn token's text (e.g.
 * `<|im_end|>`), which a chat template writes after a turn and the policy generates itself; it is
 * cut from the glue (`renderObservation`).
 */
export function trajectorySegments(
  env: Environment,
  row: EnvRow,
  trajectory: Trajectory,
  opts: { chat?: ChatRendering | null; endOfTurn?: string } = {},
): TextSegment[] {
  const chat = opts.chat ? { ...opts.chat, tools: opts.chat.tools ?? env.tools } : null;
  const history: ChatMessage[] = [...env.reset(row)];
  const out: TextSegment[] = [];
  for (let i = 0; i < trajectory.length; i++) {
    const m = trajectory[i]!;
    if (m.role !== 'assistant')
      throw new Error(`trajectory of ${row.promptId}: message ${i} is a ${m.role} message where a policy turn belongs`);
    history.push(m);
    const observations: ChatMessage[] = [];
    while (trajectory[i + 1]?.role === 'tool') observations.push(trajectory[++i]!);
    const last = i === trajectory.length - 1;
    out.push({ role: 'policy', text: m.content, endsTurn: last || env.format === 'hermes' });
    if (observations.length === 0) {
      if (!last) throw new Error(`trajectory of ${row.promptId}: turn ${out.length} is not the last, yet nothing answers it`);
      continue;
    }
    const endOfTurn = env.format === 'hermes' ? (opts.endOfTurn ?? '') : '';
    out.push({ role: 'observation', text: renderObservation(env.format, { history, observations, chat, endOfTurn }), endsTurn: false });
    history.push(...observations);
    if (last) throw new Error(`trajectory of ${row.promptId} ends with an observation: it must end with the policy's final turn`);
  }
  return out;
}

/** The gold episode of a row (`env.gold`): its prompt text and segments. */
export function goldSegments(
  env: Environment,
  row: EnvRow,
  opts: { chat?: ChatRendering | null; endOfTurn?: string } = {},
): { prompt: string; segments: TextSegment[] } {
  if (!env.gold) throw new Error(`environment ${env.name} has no gold trajectories: an sft phase needs them`);
  return { prompt: episodePrompt(env, row, opts.chat), segments: trajectorySegments(env, row, env.gold(row), opts) };
}
