/**
 * What the built-in environments share: their common options (format, turn limit, splits, reward
 * weights), the character set a char-level model needs for them, and the way a gold trajectory is
 * written in either format.
 */
import { z } from '../common/config.js';
import { instantiateReward } from '../reward/types.js';
import { splitItems, type Candidate, type Draws } from '../tasks/split.js';
import { answerTag, formatAnswer, formatCall, renderObservation } from './format.js';
import { EpisodeRewardOptions, episodeReward } from './reward.js';
import type { ChatMessage, Environment, EnvironmentLimits, EnvRow, Tool, ToolCall, ToolCallFormat, Trajectory } from './types.js';

/** Options every built-in environment takes. */
export const builtinOptions = {
  /** `tagged` (char-level models from scratch: `<c>…</c>`, `<o>…</o>`, `<a>…</a>`) or `hermes` (pretrained chat models with a tool template). */
  format: z.enum(['tagged', 'hermes']).default('tagged'),
  /** Most policy turns per episode (the gold trajectories take at most 3). */
  maxTurns: z.number().int().min(1).max(64).default(4),
  /** Most tokens per episode (prompt, turns, observations); default: room for twice the longest gold episode in characters, or 2048 with hermes. */
  maxTotalTokens: z.number().int().positive().optional(),
  /** Most seconds per episode. */
  maxSeconds: z.number().positive().default(120),
  /** Fraction of problems held out for evaluation (by a hash of the problem, never trained on under any seed). */
  evalFraction: z.number().min(0).max(1).default(0.1),
  /** The trajectory reward's options (reward.ts; `answerTag` follows the format unless set). */
  reward: EpisodeRewardOptions.partial().default({}),
};

/** Every printable ASCII character: the alphabet of the built-in environments (prompts, calls, observations, error texts). */
export const PRINTABLE_ASCII = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join('');

/** An observation's text as a char model can read it: characters outside printable ASCII become `?`. */
export function asciiOnly(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?');
}

/** The limits of a built-in environment from its options. */
export function limitsOf(
  o: { format: ToolCallFormat; maxTurns: number; maxTotalTokens?: number | undefined; maxSeconds: number },
  longestChars: number,
): EnvironmentLimits {
  return {
    maxTurns: o.maxTurns,
    maxTotalTokens: o.maxTotalTokens ?? (o.format === 'tagged' ? 2 * longestChars + 16 : 2048),
    maxSeconds: o.maxSeconds,
  };
}

/** The trajectory reward of a built-in environment: `episode` with the format's answer tag unless the options set one. */
export function builtinReward(format: ToolCallFormat, options: Record<string, unknown>) {
  return instantiateReward(episodeReward, { answerTag: answerTag(format), ...options });
}

/** A gold trajectory: each call in its own turn, followed by its observation, then the final answer. */
export function goldTrajectory(
  format: ToolCallFormat,
  tools: readonly Tool[],
  steps: readonly { call: ToolCall; observation: string }[],
  answer: string,
): Trajectory {
  const out: ChatMessage[] = [];
  for (const { call, observation } of steps) {
    out.push({ role: 'assistant', content: formatCall(format, call, tools) });
    out.push({ role: 'tool', name: call.name, content: observation });
  }
  out.push({ role: 'assistant', content: formatAnswer(format, answer) });
  return out;
}

/** Characters of a trajectory after the prompt, as the tagged format writes it (observations rendered). */
export function trajectoryChars(format: ToolCallFormat, trajectory: Trajectory): number {
  return trajectory.reduce(
    (n, m) => n + (m.role === 'tool' ? renderObservation(format, { history: [], observations: [m] }) : m.content).length,
    0,
  );
}

/** The validated options every built-in has (`builtinOptions`). */
export interface BuiltinEnvOptions {
  format: ToolCallFormat;
  maxTurns: number;
  maxTotalTokens?: number | undefined;
  maxSeconds: number;
  evalFraction: number;
  reward: Record<string, unknown>;
}

/** What makes one built-in environment: its tools, its problems and their gold trajectories. */
export interface BuiltinSpec {
  name: string;
  tools: Tool[];
  /** The system message of the hermes format (none in the tagged format: the prompt is the user text alone). */
  system: string;
  maxPromptChars: number;
  /** The longest gold trajectory, which sizes `maxEpisodeChars` and the token limit. */
  longestGold: Trajectory;
  gold(row: EnvRow): Trajectory;
  /** One problem from an attempt's draws for a split (`splitItems`: its key decides the split; null: draw again). */
  candidate(d: Draws, split: 'train' | 'eval'): Candidate | null;
  /** What to change when a split runs out of problems. */
  hint: string;
}

/** A built-in environment from its spec: seeded items by split, the format's messages, limits and the episode reward. */
export function builtinEnvironment(o: BuiltinEnvOptions, spec: BuiltinSpec): Environment {
  const maxEpisodeChars = trajectoryChars(o.format, spec.longestGold);
  return {
    name: spec.name,
    tools: spec.tools,
    format: o.format,
    limits: limitsOf(o, spec.maxPromptChars + maxEpisodeChars),
    reset: (row) =>
      o.format === 'tagged'
        ? [{ role: 'user', content: row.prompt }]
        : [
            { role: 'system', content: spec.system },
            { role: 'user', content: row.prompt },
          ],
    task: {
      alphabet: PRINTABLE_ASCII,
      maxPromptChars: spec.maxPromptChars,
      maxEpisodeChars,
      prompts: (seed, split, count, offset = 0) =>
        splitItems({
          task: spec.name,
          seed,
          split,
          count,
          offset,
          evalFraction: o.evalFraction,
          maxAttempts: 2000,
          hint: spec.hint,
          candidate: (d) => spec.candidate(d, split),
        }),
    },
    gold: spec.gold,
    reward: builtinReward(o.format, o.reward),
  };
}
