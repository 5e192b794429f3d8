/**
 * The report's trajectory viewer (issue 15 §7): the multi-turn episodes of the last rl steps, step →
 * group → sample → turns → tokens, as nested `<details>` (no scripts). Each token of a policy turn
 * is shaded by its behaviour logprob (the less likely, the deeper the orange) and underlined by its
 * advantage (green above 0, red below, by magnitude); hovering shows id, logprob and advantage.
 * Observation segments (tool outputs with the template's glue) sit inline between the turns, in
 * grey, with each turn's tool calls (name, arguments, output or error) beside it.
 *
 * Token text comes from the caller (`tokenText`: the CLI passes the run's tokenizer), because this
 * folder reads the store only; without it tokens show as their ids.
 */
import { advantageOf, readStepRows, rowKey } from './load.js';
import type { ObjectStore } from '../store/object-store.js';
import type { AdvantagesRow, RewardsRow, RolloutsRow } from '../store/schemas.js';

/** One completion token as the viewer draws it. */
export interface TrajectoryToken {
  id: number;
  /** The token's text (`tokenText`), or null when the report has no tokenizer. */
  text: string | null;
  /** Behaviour logprob of a token the policy sampled; null on observation and glue tokens. */
  logprob: number | null;
  /** The advantage the learner applied to the token; null where it trains on nothing (masked, or no advantages row). */
  advantage: number | null;
}

/** A tool call of a turn, from the rollouts' `tool_calls` column. */
export interface TrajectoryCall {
  name: string;
  arguments: string;
  output: string | null;
  error: string | null;
  attempts: number | null;
}

/** One segment of an episode: a policy turn, an observation, or template glue. */
export interface TrajectorySegment {
  role: string;
  turn: number;
  tokens: TrajectoryToken[];
  /** Observation segments: what the observation says (the tool messages' contents, without glue). */
  observation: string | null;
}

/** One turn: its segments in order and its calls. */
export interface TrajectoryTurn {
  turn: number;
  segments: TrajectorySegment[];
  calls: TrajectoryCall[];
}

export interface TrajectorySample {
  sample_id: number;
  reward: number | null;
  reward_error: string | null;
  components: Record<string, number>;
  /** Scalar advantage, or the mean of the per-token ones over trained tokens; null without an advantages row. */
  advantage: number | null;
  finish_reason: string;
  malformed_turns: number;
  turns: TrajectoryTurn[];
}

export interface TrajectoryGroup {
  group_id: string;
  prompt_id: string;
  prompt: string;
  samples: TrajectorySample[];
}

export interface TrajectoryStep {
  run_id: string;
  step: number;
  /** Episodes of the step (all groups), of which `groups` shows the first. */
  episodes: number;
  groups: TrajectoryGroup[];
}

/** How many steps, groups and samples the viewer loads. */
export interface TrajectoryOptions {
  /** Token id → text (the run's tokenizer); absent: ids are shown. */
  tokenText?: ((id: number) => string) | null;
  /** Groups shown per step (in rollout order). */
  maxGroups: number;
}

function parseCall(json: string): TrajectoryCall {
  try {
    const c = JSON.parse(json) as Record<string, unknown>;
    return {
      name: typeof c.name === 'string' ? c.name : '?',
      arguments: JSON.stringify(c.arguments ?? {}),
      output: typeof c.output === 'string' ? c.output : null,
      error: typeof c.error === 'string' ? c.error : null,
      attempts: typeof c.attempts === 'number' ? c.attempts : null,
    };
  } catch {
    return { name: '?', arguments: json, output: null, error: 'the tool call record is not JSON', attempts: null };
  }
}

/** The turns of one episode row, each token with its logprob and advantage. Pure. */
export function episodeTurns(
  r: RolloutsRow,
  adv: AdvantagesRow | undefined,
  tokenText?: ((id: number) => string) | null,
): TrajectoryTurn[] {
  const ends = r.segment_ends ? Array.from(r.segment_ends) : [r.completion_token_ids.length];
  const roles = r.segment_roles ?? ['policy'];
  const turnsOf = r.segment_turns ? Array.from(r.segment_turns) : [0];
  const ids = Array.from(r.completion_token_ids);
  const lps = Array.from(r.behaviour_logprobs);
  const mask = r.loss_mask;
  const trained = (j: number) => (mask ? mask[j] === true : true) && (adv?.loss_mask ? adv.loss_mask[j] === true : true);
  const advantageAt = (j: number): number | null => {
    if (!adv || !trained(j)) return null;
    if (adv.token_advantages) return adv.token_advantages[j] ?? null;
    return adv.advantage;
  };
  const turns = new Map<number, TrajectoryTurn>();
  const turnOf = (t: number) => {
    let x = turns.get(t);
    if (!x) turns.set(t, (x = { turn: t, segments: [], calls: [] }));
    return x;
  };
  let start = 0;
  let observation = 0;
  ends.forEach((end, k) => {
    const role = roles[k] ?? 'policy';
    const policy = role === 'policy';
    const tokens: TrajectoryToken[] = [];
    for (let j = start; j < end; j++) {
      tokens.push({
        id: ids[j]!,
        text: tokenText ? tokenText(ids[j]!) : null,
        logprob: policy ? lps[j]! : null,
        advantage: advantageAt(j),
      });
    }
    const obs = role === 'observation' ? (r.observations?.[observation++] ?? null) : null;
    turnOf(turnsOf[k] ?? 0).segments.push({ role, turn: turnsOf[k] ?? 0, tokens, observation: obs });
    start = end;
  });
  for (const json of r.tool_calls ?? []) {
    let turn = 0;
    try {
      const t = (JSON.parse(json) as { turn?: unknown }).turn;
      if (typeof t === 'number') turn = t;
    } catch {
      // parseCall says the record is not JSON
    }
    turnOf(turn).calls.push(parseCall(json));
  }
  return [...turns.values()].sort((a, b) => a.turn - b.turn);
}

/** The viewer's data of one step's rows: episodes only (rows with segments), grouped, the first `maxGroups` groups. Pure. */
export function trajectoryStep(
  runId: string,
  step: number,
  rollouts: readonly RolloutsRow[],
  rewards: ReadonlyMap<string, RewardsRow>,
  advantages: ReadonlyMap<string, AdvantagesRow>,
  o: TrajectoryOptions,
): TrajectoryStep | null {
  const episodes = rollouts.filter((r) => r.segment_ends !== null);
  if (episodes.length === 0) return null;
  const groups = new Map<string, TrajectoryGroup>();
  for (const r of episodes) {
    let g = groups.get(r.group_id);
    if (!g) {
      if (groups.size >= o.maxGroups) continue;
      groups.set(r.group_id, (g = { group_id: r.group_id, prompt_id: r.prompt_id, prompt: r.prompt_text, samples: [] }));
    }
    const rw = rewards.get(rowKey(r));
    const adv = advantages.get(rowKey(r));
    g.samples.push({
      sample_id: r.sample_id,
      reward: rw?.reward ?? null,
      reward_error: rw ? rw.error : 'no rewards row for this sample',
      components: rw?.components ? { ...rw.components } : {},
      advantage: advantageOf(adv).advantage,
      finish_reason: r.finish_reason,
      malformed_turns: r.malformed_turns ?? 0,
      turns: episodeTurns(r, adv, o.tokenText),
    });
  }
  return { run_id: runId, step, episodes: episodes.length, groups: [...groups.values()] };
}

/** The viewer's data of the given steps (newest last), read from the store; steps without episodes are left out. */
export async function loadTrajectories(
  store: ObjectStore,
  steps: readonly { runId: string; step: number }[],
  o: TrajectoryOptions,
): Promise<TrajectoryStep[]> {
  const out: TrajectoryStep[] = [];
  for (const { runId, step } of steps) {
    const { rollouts, rewards, advantages } = await readStepRows(store, runId, step);
    const t = trajectoryStep(runId, step, rollouts, rewards, advantages, o);
    if (t) out.push(t);
  }
  return out;
}

// ── rendering ───────────────────────────────────────────────────────────────────────────────────

/** Escapes text for HTML element content and attribute values. */
function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const num = (x: number | null, digits = 3) => (x === null || !Number.isFinite(x) ? '–' : x.toFixed(digits));

/** The background of a policy token: transparent at probability 1, deep orange at 0. */
export function logprobShade(logprob: number): string {
  const p = Math.min(1, Math.max(0, Math.exp(logprob)));
  return `rgba(247,103,7,${(0.75 * (1 - p)).toFixed(3)})`;
}

/** The underline of a trained token: green for a positive advantage, red for a negative one, opacity by |a| / scale. */
export function advantageShade(advantage: number, scale: number): string {
  const a = scale > 0 ? Math.min(1, Math.abs(advantage) / scale) : 0;
  return advantage >= 0 ? `rgba(47,158,68,${a.toFixed(3)})` : `rgba(201,42,42,${a.toFixed(3)})`;
}

function tokenSpan(t: TrajectoryToken, scale: number): string {
  const text = t.text ?? `⟨${t.id}⟩`;
  const title =
    `id ${t.id}` +
    (t.logprob !== null ? ` · logprob ${num(t.logprob)}` : '') +
    (t.advantage !== null ? ` · advantage ${num(t.advantage)}` : '');
  const style: string[] = [];
  if (t.logprob !== null) style.push(`background:${logprobShade(t.logprob)}`);
  if (t.advantage !== null) style.push(`border-bottom:3px solid ${advantageShade(t.advantage, scale)}`);
  return `<span class="tok" title="${esc(title)}"${style.length ? ` style="${style.join(';')}"` : ''}>${esc(text)}</span>`;
}

function callLine(c: TrajectoryCall): string {
  const result = c.error !== null ? `<span class="error">error: ${esc(c.error)}</span>` : esc(c.output ?? '');
  const tries = c.attempts !== null && c.attempts > 1 ? ` <small>(${c.attempts} attempts)</small>` : '';
  return `<li><code>${esc(c.name)}(${esc(c.arguments)})</code> → ${result}${tries}</li>`;
}

function sampleView(s: TrajectorySample): string {
  const all = s.turns.flatMap((t) => t.segments.flatMap((g) => g.tokens));
  const scale = Math.max(0, ...all.map((t) => Math.abs(t.advantage ?? 0)));
  const turns = s.turns
    .map((t) => {
      const segs = t.segments
        .map((g) =>
          g.role === 'policy'
            ? `<span class="seg policy">${g.tokens.map((x) => tokenSpan(x, scale)).join('')}</span>`
            : `<span class="seg ${esc(g.role)}" title="${esc(g.role)}${g.observation !== null ? `: ${esc(g.observation)}` : ''}">${g.tokens.map((x) => tokenSpan(x, scale)).join('')}</span>`,
        )
        .join('');
      const calls = t.calls.length ? `<ul class="calls">${t.calls.map(callLine).join('')}</ul>` : '';
      return `<div class="turn"><span class="turn-label">turn ${t.turn}</span><div class="turn-text">${segs}</div>${calls}</div>`;
    })
    .join('');
  const comps = Object.entries(s.components)
    .map(([k, v]) => `${esc(k)} ${num(v)}`)
    .join(', ');
  const reward = s.reward !== null ? num(s.reward) : `<span class="error">${esc(s.reward_error ?? 'none')}</span>`;
  return (
    `<details class="sample"><summary>sample ${s.sample_id}: reward ${reward}, advantage ${num(s.advantage)}, ${s.turns.length} turns, ` +
    `${esc(s.finish_reason)}${s.malformed_turns ? `, ${s.malformed_turns} malformed` : ''}</summary>` +
    (comps ? `<p class="components">${comps}</p>` : '') +
    turns +
    '</details>'
  );
}

/** The viewer as an HTML section (empty when no step has episodes). */
export function renderTrajectories(steps: readonly TrajectoryStep[]): string {
  if (steps.length === 0) return '';
  const body = steps
    .map(
      (st, i) =>
        `<details class="traj-step"${i === steps.length - 1 ? ' open' : ''}><summary>step ${st.step}${st.run_id ? ` (run ${esc(st.run_id)})` : ''}: ${st.episodes} episodes, ${st.groups.length} groups shown</summary>` +
        st.groups
          .map(
            (g) =>
              `<details class="group"><summary>group ${esc(g.group_id)} (${esc(g.prompt_id)}): ${g.samples.length} samples, rewards ${g.samples.map((s) => num(s.reward, 2)).join(' ')}</summary>` +
              `<pre>${esc(g.prompt)}</pre>${g.samples.map(sampleView).join('')}</details>`,
          )
          .join('') +
        '</details>',
    )
    .join('');
  return (
    '<section><h2>Trajectories</h2><p><small>Policy tokens shaded by behaviour logprob (deeper orange: less likely) and underlined by advantage ' +
    '(green above 0, red below); observations in grey; hover a token for its id, logprob and advantage.</small></p>' +
    body +
    '</section>'
  );
}

/** The viewer's CSS, added to the report's. */
export const TRAJECTORY_CSS = `
details.traj-step, details.group, details.sample { margin: 4px 0 4px 12px; } details > summary { cursor: pointer; }
.turn { display: flex; gap: 8px; align-items: baseline; margin: 2px 0 2px 12px; } .turn-label { color: #666; font-size: 12px; white-space: nowrap; }
.turn-text { font-family: monospace; white-space: pre-wrap; word-break: break-all; } .tok { padding: 0 0.5px; }
.seg.observation, .seg.glue { background: #f1f3f5; color: #555; } ul.calls { margin: 0 0 0 8px; padding-left: 14px; font-size: 12px; }
p.components { color: #555; font-size: 12px; margin: 2px 12px; }
`;
