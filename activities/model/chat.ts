/**
 * Chat templates: a model's Jinja template turning a conversation into its prompt text, rendered
 * the way `transformers`' `apply_chat_template` renders it, through `@huggingface/jinja` (the
 * Jinja subset Hugging Face wrote for chat templates, the one transformers.js uses).
 *
 * What the template sees, as in transformers: `messages`, `add_generation_prompt`, `tools` and
 * `documents` (`none` when not given), the tokenizer's special-token strings (`bos_token`,
 * `eos_token`, `pad_token`, `unk_token`, and `sep_token`, `cls_token`, `mask_token` when the
 * tokenizer config names them), `raise_exception(message)`, `strftime_now(format)`, and the
 * caller's extra variables (e.g. `enable_thinking`). Blocks are trimmed as transformers trims them
 * (`trim_blocks`, `lstrip_blocks`).
 *
 * `encodeChat` is `apply_chat_template(..., tokenize=True)`: the rendered text encoded without
 * adding special tokens (the template writes them itself).
 */
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import type { TextTokenizer } from './tokenizer.js';

/** One turn of a conversation. Fields besides role and content (`tool_calls`, `name`, ...) reach the template unchanged. */
export interface ChatMessage {
  /** `system`, `user`, `assistant`, `tool`, ...: whatever roles the template knows. */
  role: string;
  content: string;
  [field: string]: unknown;
}

/** Options of `ChatTemplate.render` and `encodeChat`. */
export interface RenderOptions {
  /**
   * End the text with the header of an assistant turn, so that the model's continuation is its
   * reply (transformers' `add_generation_prompt`). True for prompts; false for a whole
   * conversation (supervised targets).
   */
  addGenerationPrompt: boolean;
  /** Tool definitions (JSON schemas, as in transformers' `tools`); `none` in the template when absent. */
  tools?: readonly Record<string, unknown>[] | null;
  /** Retrieved documents for RAG templates (transformers' `documents`); `none` in the template when absent. */
  documents?: readonly Record<string, unknown>[] | null;
  /**
   * More template variables (transformers' extra keyword arguments, e.g. `{ enable_thinking:
   * false }`). They may override the special-token strings, not the variables above.
   */
  extra?: Record<string, unknown>;
  /**
   * The time `strftime_now` formats, in UTC. Default: the current time, as in transformers (which
   * formats local time). Pass a fixed date where the prompt must be reproducible.
   */
  now?: Date;
}

/** A chat template that does not parse or render, or a conversation it cannot take. */
export class ChatTemplateError extends Error {
  override readonly name = 'ChatTemplateError';
}

/** Variables the renderer sets itself; `extra` may not replace them. */
const RESERVED = ['messages', 'add_generation_prompt', 'tools', 'documents', 'raise_exception', 'strftime_now'];

/** The special-token fields of a tokenizer config that transformers passes to templates. */
export const TEMPLATE_SPECIAL_TOKENS = [
  'bos_token',
  'eos_token',
  'pad_token',
  'unk_token',
  'sep_token',
  'cls_token',
  'mask_token',
] as const;

/** Checks a conversation, naming the message and field of the first problem. */
export function checkMessages(messages: unknown): asserts messages is ChatMessage[] {
  if (!Array.isArray(messages)) throw new ChatTemplateError(`messages must be an array of {role, content}, got ${describe(messages)}`);
  messages.forEach((m: unknown, i) => {
    if (typeof m !== 'object' || m === null || Array.isArray(m))
      throw new ChatTemplateError(`messages[${i}] must be an object {role, content}, got ${describe(m)}`);
    const { role, content } = m as Record<string, unknown>;
    if (typeof role !== 'string' || role.length === 0)
      throw new ChatTemplateError(`messages[${i}].role must be a non-empty string, got ${describe(role)}`);
    if (typeof content !== 'string') throw new ChatTemplateError(`messages[${i}].content must be a string, got ${describe(content)}`);
  });
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing (the field is missing)';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'string' ? JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}...` : v) : typeof v;
}

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'];

/** Python's `strftime` for `date` in UTC, C locale; the directives chat templates use. */
export function strftimeUtc(date: Date, format: string): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, '0');
  const hour12 = date.getUTCHours() % 12 || 12;
  const dayOfYear = Math.floor((date.getTime() - Date.UTC(date.getUTCFullYear(), 0, 1)) / 86_400_000) + 1;
  const fields: Record<string, () => string> = {
    Y: () => String(date.getUTCFullYear()),
    y: () => pad(date.getUTCFullYear() % 100),
    m: () => pad(date.getUTCMonth() + 1),
    B: () => MONTHS[date.getUTCMonth()]!,
    b: () => MONTHS[date.getUTCMonth()]!.slice(0, 3),
    d: () => pad(date.getUTCDate()),
    j: () => pad(dayOfYear, 3),
    A: () => DAYS[date.getUTCDay()]!,
    a: () => DAYS[date.getUTCDay()]!.slice(0, 3),
    H: () => pad(date.getUTCHours()),
    I: () => pad(hour12),
    p: () => (date.getUTCHours() < 12 ? 'AM' : 'PM'),
    M: () => pad(date.getUTCMinutes()),
    S: () => pad(date.getUTCSeconds()),
    '%': () => '%',
  };
  return format.replace(/%(.?)/gs, (_, d: string) => {
    const field = fields[d];
    if (!field) throw new ChatTemplateError(`strftime_now: unsupported directive "%${d}" in ${JSON.stringify(format)}`);
    return field();
  });
}

/** An error the template raised itself (`raise_exception`), told apart from the interpreter's. */
class RaisedByTemplate extends Error {}

/** Python's `range(start, stop, step)`. */
function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error('range() step must not be zero');
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

/** A parsed chat template with the special-token strings it renders with. */
export class ChatTemplate {
  private readonly program: Template['parsed'];

  /**
   * Parses `source` (the Jinja text). `specialTokens`: the token strings the template sees
   * (`bos_token` → `"<s>"`, ...). `origin` names where the template came from in every error
   * (`.../chat_template.jinja`, `.../tokenizer_config.json chat_template`).
   */
  constructor(
    readonly source: string,
    readonly specialTokens: Readonly<Record<string, string>> = {},
    readonly origin = 'chat template',
  ) {
    if (typeof source !== 'string') throw new ChatTemplateError(`${origin}: expected the template text, got ${describe(source)}`);
    try {
      this.program = new Template(source).parsed;
    } catch (e) {
      throw new ChatTemplateError(`${origin}: the chat template does not parse: ${(e as Error).message}`);
    }
  }

  /** The prompt text of a conversation, as `apply_chat_template(messages, tokenize=False, ...)` gives it. */
  render(messages: readonly ChatMessage[], options: RenderOptions): string {
    checkMessages(messages);
    const extra = options.extra ?? {};
    for (const key of Object.keys(extra)) {
      if (RESERVED.includes(key))
        throw new ChatTemplateError(`extra.${key}: "${key}" is set by the renderer itself (pass it as its own option, if it is one)`);
    }
    const now = options.now ?? new Date();
    const variables: Record<string, unknown> = {
      ...this.specialTokens,
      ...extra,
      // Jinja's literals and globals, then the variables transformers sets.
      true: true,
      false: false,
      none: null,
      True: true,
      False: false,
      None: null,
      range,
      messages,
      add_generation_prompt: options.addGenerationPrompt,
      tools: options.tools ?? null,
      documents: options.documents ?? null,
      raise_exception: (message: unknown) => {
        throw new RaisedByTemplate(String(message));
      },
      strftime_now: (format: unknown) => strftimeUtc(now, String(format)),
    };
    const env = new Environment();
    for (const [name, value] of Object.entries(variables)) env.set(name, value);
    try {
      const out = new Interpreter(env).run(this.program).value;
      if (typeof out !== 'string') throw new Error(`rendered a ${typeof out}, not text`);
      return out;
    } catch (e) {
      if (e instanceof ChatTemplateError) throw new ChatTemplateError(`${this.origin}: ${e.message}`);
      if (e instanceof RaisedByTemplate)
        throw new ChatTemplateError(`${this.origin}: the chat template refused the conversation: ${e.message}`);
      throw new ChatTemplateError(`${this.origin}: rendering the chat template failed: ${(e as Error).message}`);
    }
  }
}

/**
 * The token ids of a conversation, as `apply_chat_template(messages, tokenize=True, ...)` gives
 * them: the rendered text encoded without adding special tokens.
 */
export function encodeChat(
  tokenizer: TextTokenizer,
  template: ChatTemplate,
  messages: readonly ChatMessage[],
  options: RenderOptions,
): number[] {
  return tokenizer.encode(template.render(messages, options), { addSpecialTokens: false });
}
