/**
 * Tool-call formats: how a policy writes a call, where generation of a turn stops, how a turn's
 * text is parsed (`final` | `calls` | `malformed`), and how observations are rendered as the one
 * segment (template glue + observation text, loss mask 0) appended after the policy's turn.
 *
 * - `hermes` (Qwen2.5/Qwen3, Hermes): `<tool_call>{"name": "calc", "arguments": {"expression":
 *   "12*34"}}</tool_call>`, several blocks per turn allowed (parallel calls); the turn ends with
 *   the model's end-of-turn token. Observations are role `tool` messages rendered by the model's
 *   own chat template: the glue is the suffix the template adds for them (`renderObservation`).
 * - `tagged` (char-level models trained from scratch, no chat template): `<c>12*34</c>` where `c`
 *   is the tool's tag and the body its parameters in declaration order joined by `|`
 *   (`<l>krona|country</l>`); generation stops at the closing tag, so one call per turn. The
 *   observation is `<o>text</o>`, the final answer `<a>…</a>` followed by the end of sequence.
 *   Tags are one letter: fewer characters to learn and to generate.
 */
import type { ChatTemplate } from '../model/chat.js';
import { argumentError, parameterNames, parameterType } from './args.js';
import type { ChatMessage, ParsedTurn, Tool, ToolCall, ToolCallFormat, ToolSpec } from './types.js';

/** The tag of the observation in the tagged format. */
export const TAGGED_OBSERVATION_TAG = 'o';
/** Separator of a tagged call's arguments. */
export const TAGGED_ARG_SEPARATOR = '|';
/** The hermes call block's tag. */
export const HERMES_CALL_TAG = 'tool_call';

/** The tag of the final answer in a format (`<a>` tagged, `<answer>` hermes). */
export function answerTag(format: ToolCallFormat): string {
  return format === 'tagged' ? 'a' : 'answer';
}

/** A tool's tag in the tagged format. */
export function toolTag(tool: Tool): string {
  return tool.tag ?? tool.spec.name;
}

/**
 * Strings that end the generation of a policy turn besides the end-of-turn token (the run's stop
 * ids): tagged, each tool's closing tag; hermes, none (a turn may hold several calls and ends with
 * the template's end-of-turn token).
 */
export function stopStrings(format: ToolCallFormat, tools: readonly Tool[]): string[] {
  return format === 'tagged' ? tools.map((t) => `</${toolTag(t)}>`) : [];
}

/** The text of one call as the format writes it (gold trajectories). */
export function formatCall(format: ToolCallFormat, call: ToolCall, tools: readonly Tool[]): string {
  if (format === 'hermes')
    return `<${HERMES_CALL_TAG}>\n${pythonJson({ name: call.name, arguments: call.arguments })}\n</${HERMES_CALL_TAG}>`;
  const tool = tools.find((t) => t.spec.name === call.name);
  if (!tool) throw new Error(`formatCall: unknown tool "${call.name}"`);
  const values = parameterNames(tool.spec)
    .filter((p) => Object.hasOwn(call.arguments, p))
    .map((p) => {
      const v = call.arguments[p];
      return typeof v === 'string' ? v : JSON.stringify(v);
    });
  return `<${toolTag(tool)}>${values.join(TAGGED_ARG_SEPARATOR)}</${toolTag(tool)}>`;
}

/**
 * JSON as Python's `json.dumps` writes it by default (`", "` and `": "` separators, non-ASCII kept):
 * how Qwen/Hermes templates (`tojson`) and their training data write a call's JSON.
 */
export function pythonJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(', ')}]`;
  if (value !== null && typeof value === 'object')
    return `{${Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => `${JSON.stringify(k)}: ${pythonJson(v)}`)
      .join(', ')}}`;
  return JSON.stringify(value) ?? 'null';
}

/** The text of a final answer as the format writes it. */
export function formatAnswer(format: ToolCallFormat, answer: string): string {
  const tag = answerTag(format);
  return `<${tag}>${answer}</${tag}>`;
}

const malformed = (error: string, text: string): ParsedTurn => ({ kind: 'malformed', error, text });

/** Known tool names, for error messages. */
const toolList = (tools: readonly Tool[]) => tools.map((t) => t.spec.name).join(', ') || 'none';

/** A call of a known tool with arguments its schema accepts, or what is wrong with it. */
function checkCall(call: ToolCall, tools: readonly Tool[]): string | null {
  const tool = tools.find((t) => t.spec.name === call.name);
  if (!tool) return `unknown tool "${call.name}" (tools: ${toolList(tools)})`;
  return argumentError(tool.spec, call.arguments);
}

/**
 * Parses one assistant turn: `final` when it makes no call, `calls` when every call is
 * well-formed (known tool, arguments matching the schema), `malformed` with what was wrong
 * otherwise (bad JSON, no name, unknown tool, wrong argument types, an unclosed block).
 */
export function parseTurn(format: ToolCallFormat, text: string, tools: readonly Tool[]): ParsedTurn {
  return format === 'hermes' ? parseHermes(text, tools) : parseTagged(text, tools);
}

function parseHermes(text: string, tools: readonly Tool[]): ParsedTurn {
  const open = `<${HERMES_CALL_TAG}>`;
  const close = `</${HERMES_CALL_TAG}>`;
  const calls: ToolCall[] = [];
  let at = 0;
  let block = 0;
  for (;;) {
    const start = text.indexOf(open, at);
    if (start < 0) break;
    block++;
    const end = text.indexOf(close, start + open.length);
    if (end < 0) return malformed(`${open} ${block} is not closed: end each call with ${close}`, text);
    const body = text.slice(start + open.length, end).trim();
    at = end + close.length;
    let value: unknown;
    try {
      value = JSON.parse(body);
    } catch (err) {
      return malformed(`${open} ${block} is not JSON (${(err as Error).message}): write {"name": ..., "arguments": {...}}`, text);
    }
    for (const raw of Array.isArray(value) ? value : [value]) {
      const call = hermesCall(raw);
      if (typeof call === 'string') return malformed(`${open} ${block}: ${call}`, text);
      const problem = checkCall(call, tools);
      if (problem) return malformed(`${open} ${block}: ${problem}`, text);
      calls.push(call);
    }
  }
  if (block === 0 && text.includes(close)) return malformed(`${close} without ${open}`, text);
  return calls.length > 0 ? { kind: 'calls', calls, text } : { kind: 'final', text };
}

/** One JSON call object as a ToolCall, or what is wrong with it. */
function hermesCall(raw: unknown): ToolCall | string {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    return 'a call must be a JSON object {"name": ..., "arguments": {...}}';
  const r = raw as Record<string, unknown>;
  if (typeof r.name !== 'string' || r.name === '') return 'the call has no "name" string';
  let args = r.arguments ?? r.parameters ?? {};
  if (typeof args === 'string') {
    // OpenAI's form: the arguments as a JSON string
    try {
      args = JSON.parse(args);
    } catch {
      return `"arguments" of ${r.name} is a string that is not JSON`;
    }
  }
  if (args === null || typeof args !== 'object' || Array.isArray(args)) return `"arguments" of ${r.name} must be a JSON object`;
  return { name: r.name, arguments: args as Record<string, unknown> };
}

/** A tagged argument's text as the value its declared type wants (the schema check then judges it). */
function taggedValue(text: string, type: string | undefined): unknown {
  switch (type) {
    case 'integer':
    case 'number':
      return /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(text.trim()) ? Number(text.trim()) : text;
    case 'boolean':
      return text === 'true' ? true : text === 'false' ? false : text;
    case 'array':
    case 'object':
      try {
        return JSON.parse(text);
      } catch {
        return text;
      }
    default:
      return text;
  }
}

/** Tags the tagged format gives a meaning besides the tools': the answer and the observation. */
const RESERVED_TAGS = new Set(['a', TAGGED_OBSERVATION_TAG, 'think']);

function parseTagged(text: string, tools: readonly Tool[]): ParsedTurn {
  const byTag = new Map(tools.map((t) => [toolTag(t), t]));
  const calls: ToolCall[] = [];
  const tagRe = /<([A-Za-z_][A-Za-z0-9_]*)>/g;
  for (let m = tagRe.exec(text); m; m = tagRe.exec(text)) {
    const tag = m[1]!;
    const tool = byTag.get(tag);
    const close = `</${tag}>`;
    const end = text.indexOf(close, m.index + m[0].length);
    if (!tool) {
      // a closed <x>…</x> that is no tool's tag and no reserved tag: a call of an unknown tool
      if (end >= 0 && !RESERVED_TAGS.has(tag))
        return malformed(`unknown tool <${tag}> (tools: ${tools.map((t) => `<${toolTag(t)}> ${t.spec.name}`).join(', ')})`, text);
      continue;
    }
    if (end < 0) return malformed(`<${tag}> is not closed: end the call with ${close}`, text);
    const body = text.slice(m.index + m[0].length, end);
    tagRe.lastIndex = end + close.length;
    const names = parameterNames(tool.spec);
    const parts = names.length <= 1 ? [body] : body.split(TAGGED_ARG_SEPARATOR);
    const required = (tool.spec.parameters.required as string[] | undefined)?.length ?? 0;
    if (parts.length > names.length || parts.length < required) {
      return malformed(
        `<${tag}> ${tool.spec.name} takes ${names.length} argument${names.length === 1 ? '' : 's'} (${names.join(TAGGED_ARG_SEPARATOR)}), got ${parts.length}`,
        text,
      );
    }
    const args = Object.fromEntries(parts.map((p, i) => [names[i]!, taggedValue(p, parameterType(tool.spec, names[i]!))]));
    const call = { name: tool.spec.name, arguments: args };
    const problem = checkCall(call, tools);
    if (problem) return malformed(problem, text);
    calls.push(call);
  }
  return calls.length > 0 ? { kind: 'calls', calls, text } : { kind: 'final', text };
}

/** Tools as transformers' `tools` argument of `apply_chat_template`: `{ type: 'function', function: spec }`. */
export function toolSchemas(tools: readonly Tool[] | readonly ToolSpec[]): Record<string, unknown>[] {
  return tools.map((t) => ({ type: 'function', function: 'spec' in t ? t.spec : t }));
}

/** A pretrained model's chat template and how to render with it. */
export interface ChatRendering {
  template: ChatTemplate;
  /** The environment's tools, rendered into the prompt by templates that take `tools`. */
  tools?: readonly Tool[];
  /** More template variables (`enable_thinking`, ...). */
  extra?: Record<string, unknown>;
  /** The date `strftime_now` gives; fix it so renders are reproducible. */
  now?: Date;
}

/**
 * The prompt of an episode: the chat template's rendering of the first messages with the tools and
 * the generation prompt; without a template (tagged, char models), the user messages' text.
 */
export function renderPrompt(messages: readonly ChatMessage[], chat?: ChatRendering | null): string {
  if (!chat) {
    return messages
      .filter((m) => m.role === 'user')
      .map((m) => m.content)
      .join('');
  }
  return chat.template.render(messages, {
    addGenerationPrompt: true,
    tools: chat.tools && chat.tools.length > 0 ? toolSchemas(chat.tools) : null,
    ...(chat.extra ? { extra: chat.extra } : {}),
    ...(chat.now ? { now: chat.now } : {}),
  });
}

/** What `renderObservation` needs. */
export interface ObservationInput {
  /** The conversation through the policy's turn: its last message is the assistant turn, content = the text it generated (without its end-of-turn token). */
  history: readonly ChatMessage[];
  /** The observations answering it (role `tool`). */
  observations: readonly ChatMessage[];
  /** The model's chat template (hermes with a pretrained model); none for char models. */
  chat?: ChatRendering | null;
  /**
   * The end-of-turn text the policy generated after its turn's content (`<|im_end|>` when it
   * stopped on that token), if any: the template writes it too, and it is the policy's, so it is
   * cut from the front of the glue. Empty when generation stopped at a stop string.
   */
  endOfTurn?: string;
}

/** Marks the end of the policy's turn inside a render; no template writes it. */
const SENTINEL = '\u0000\u2063end-of-policy-turn\u2063\u0000';

/**
 * The observation segment: what comes after the policy's turn up to where the policy's next turn
 * begins, as ONE text (tokenised as one segment, loss mask 0).
 *
 * - tagged: `<o>text</o>` per observation.
 * - hermes with a chat template: the template renders the conversation with the observations and
 *   the generation prompt; the segment is everything after the policy's turn content (the turn's
 *   closing, the tool messages, the next assistant header) — exactly the suffix transformers'
 *   `apply_chat_template` would add, with the end-of-turn the policy already generated cut off.
 *   The policy's own turns are never rendered back into tokens.
 * - hermes without a template: `<tool_response>\ntext\n</tool_response>` per observation.
 */
export function renderObservation(format: ToolCallFormat, input: ObservationInput): string {
  const { history, observations, chat, endOfTurn = '' } = input;
  if (format === 'tagged' || !chat) {
    const tag = format === 'tagged' ? TAGGED_OBSERVATION_TAG : 'tool_response';
    const sep = format === 'tagged' ? '' : '\n';
    return observations.map((o) => `<${tag}>${sep}${o.content}${sep}</${tag}>`).join(sep);
  }
  const last = history[history.length - 1];
  if (!last || last.role !== 'assistant')
    throw new Error(
      `renderObservation: the history must end with the policy's assistant turn, not ${last ? `a ${last.role} message` : 'nothing'}`,
    );
  const marked = [...history.slice(0, -1), { ...last, content: last.content + SENTINEL }, ...observations];
  const text = renderPrompt(marked, chat);
  const at = text.indexOf(SENTINEL);
  if (at < 0 || text.indexOf(SENTINEL, at + 1) >= 0)
    throw new Error(`renderObservation: ${chat.template.origin} does not render the assistant turn's content once, as written`);
  const glue = text.slice(at + SENTINEL.length);
  if (!glue.startsWith(endOfTurn))
    throw new Error(
      `renderObservation: ${chat.template.origin} ends an assistant turn with ${JSON.stringify(glue.slice(0, 20))}, not the end-of-turn ${JSON.stringify(endOfTurn)} the policy generated`,
    );
  return glue.slice(endOfTurn.length);
}
