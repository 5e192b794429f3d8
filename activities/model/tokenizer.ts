/**
 * Tokenizers behind one interface (`TextTokenizer`):
 *
 * - `CharTokenizer` — one token per Unicode code point over an explicit alphabet, plus the special
 *   tokens pad / bos / eos (and optionally unk). For synthetic tasks (arithmetic, copying, sorting)
 *   where a tiny vocabulary trains fast. It serialises to a real Hugging Face `tokenizer.json`
 *   (WordLevel model, a one-character Split pre-tokenizer, Fuse decoder, `<bos> $A` template), so an
 *   exported model directory loads in `transformers`, and `loadTokenizer` recognises that JSON and
 *   rebuilds the native CharTokenizer from it.
 * - `HfTokenizer` — any other `tokenizer.json` (BPE, byte-level BPE, WordPiece, Unigram, WordLevel)
 *   through Hugging Face's pure-JS `@huggingface/tokenizers`, working offline from the JSON object;
 *   special tokens come from `tokenizer_config.json` when given.
 *
 * Ids are plain JS numbers. `decode` rejects ids outside the vocabulary, naming the id: a model's
 * `vocab_size` is often larger than its tokenizer (padded embedding rows); samplers should restrict
 * the logits to `tokenizer.vocabSize` (e.g. `logits.subarray(0, tokenizer.vocabSize)`).
 */
import { Tokenizer as HfJsTokenizer } from '@huggingface/tokenizers';

/** Options of `encode`. */
export interface EncodeOptions {
  /**
   * Add the tokenizer's special tokens around the text (BOS for the char tokenizer; the
   * post-processor template for HF tokenizers). Default true, as in `transformers`.
   */
  addSpecialTokens?: boolean;
}

/** Options of `decode`. */
export interface DecodeOptions {
  /** Drop special tokens (pad, bos, eos, added special tokens) from the text. Default false, as in `transformers`. */
  skipSpecialTokens?: boolean;
}

/** What the rest of durable-rl needs from a tokenizer. */
export interface TextTokenizer {
  readonly kind: 'char' | 'hf';
  /** Number of ids (largest id + 1), added tokens included. */
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  /** Every id that ends a sequence (the EOS token plus e.g. chat end-of-turn tokens). */
  readonly eosIds: readonly number[];
  /** Ids of all special tokens. */
  readonly specialIds: ReadonlySet<number>;
  encode(text: string, options?: EncodeOptions): number[];
  decode(ids: readonly number[], options?: DecodeOptions): string;
  /** Id of a token string, or undefined. */
  tokenToId(token: string): number | undefined;
  /** Token string of an id, or undefined. */
  idToToken(id: number): string | undefined;
  /** The `tokenizer.json` object to write next to exported weights. */
  toTokenizerJson(): Record<string, unknown>;
  /** The `tokenizer_config.json` object to write next to it (special-token names). */
  toTokenizerConfig(): Record<string, unknown>;
}

/** A bad tokenizer definition, or text/ids it cannot handle. */
export class TokenizerError extends Error {
  override readonly name = 'TokenizerError';
}

function checkIds(ids: readonly number[], vocabSize: number): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new TokenizerError(`token id ${id} at index ${i} is outside the vocabulary [0, ${vocabSize})`);
    }
  }
}

/** Definition of a character-level tokenizer (its JSON-serialisable spec). */
export interface CharTokenizerSpec {
  /** The characters, in id order after the special tokens; each a single code point, no duplicates. */
  chars: string[];
  /** Special token strings, which take the first ids in this order: pad, bos, eos, unk (when set). */
  pad: string;
  bos: string;
  eos: string;
  /** Token for characters outside the alphabet; null means such text is rejected with an error. */
  unk: string | null;
  /** Prepend BOS when encoding with special tokens. */
  addBos: boolean;
}

const CHAR_SPLIT_REGEX = '[\\s\\S]';

/** One token per code point over an explicit alphabet. */
export class CharTokenizer implements TextTokenizer {
  readonly kind = 'char' as const;
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number | null;
  readonly eosIds: readonly number[];
  readonly specialIds: ReadonlySet<number>;
  private readonly tokens: string[];
  private readonly ids = new Map<string, number>();
  private readonly specials: string[];

  /** `extraEosIds`: more ids that end a sequence besides `eos` (e.g. from the model's config). */
  constructor(
    readonly spec: CharTokenizerSpec,
    extraEosIds: readonly number[] = [],
  ) {
    const specials = [spec.pad, spec.bos, spec.eos, ...(spec.unk === null ? [] : [spec.unk])];
    for (const s of specials) {
      if (typeof s !== 'string' || s.length === 0)
        throw new TokenizerError(`special tokens must be non-empty strings, got ${JSON.stringify(s)}`);
    }
    if (new Set(specials).size !== specials.length)
      throw new TokenizerError(`special tokens must be distinct: ${JSON.stringify(specials)}`);
    this.tokens = [...specials];
    for (const [i, c] of spec.chars.entries()) {
      if (typeof c !== 'string' || [...c].length !== 1) {
        throw new TokenizerError(`chars[${i}] must be exactly one character (code point), got ${JSON.stringify(c)}`);
      }
      if (this.tokens.includes(c)) throw new TokenizerError(`chars[${i}] ${JSON.stringify(c)} is a duplicate or a special token`);
      this.tokens.push(c);
    }
    this.tokens.forEach((t, id) => this.ids.set(t, id));
    this.specials = specials;
    this.padId = 0;
    this.bosId = 1;
    this.eosId = 2;
    this.unkId = spec.unk === null ? null : 3;
    this.eosIds = [...new Set([this.eosId, ...extraEosIds])];
    this.specialIds = new Set(specials.map((_, i) => i));
    this.vocabSize = this.tokens.length;
  }

  /**
   * A tokenizer over the distinct code points of `alphabet`, in first-seen order.
   * Defaults: `<pad>`, `<bos>`, `<eos>`, no unk (unknown characters are an error), BOS added.
   */
  static fromAlphabet(alphabet: string, options: Partial<Omit<CharTokenizerSpec, 'chars'>> = {}): CharTokenizer {
    return new CharTokenizer({
      chars: [...new Set(alphabet)],
      pad: options.pad ?? '<pad>',
      bos: options.bos ?? '<bos>',
      eos: options.eos ?? '<eos>',
      unk: options.unk ?? null,
      addBos: options.addBos ?? true,
    });
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const out: number[] = [];
    if ((options.addSpecialTokens ?? true) && this.spec.addBos) out.push(this.bosId);
    let i = 0;
    let charIndex = 0;
    outer: while (i < text.length) {
      for (const s of this.specials) {
        if (text.startsWith(s, i)) {
          out.push(this.ids.get(s)!);
          i += s.length;
          charIndex += [...s].length;
          continue outer;
        }
      }
      const cp = text.codePointAt(i)!;
      const c = String.fromCodePoint(cp);
      const id = this.ids.get(c);
      if (id !== undefined) out.push(id);
      else if (this.unkId !== null) out.push(this.unkId);
      else
        throw new TokenizerError(
          `character ${JSON.stringify(c)} (U+${cp.toString(16).toUpperCase().padStart(4, '0')}) at position ${charIndex} is not in the tokenizer's alphabet; add it to chars or set an unk token`,
        );
      i += c.length;
      charIndex++;
    }
    return out;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    checkIds(ids, this.vocabSize);
    let s = '';
    for (const id of ids) {
      if (options.skipSpecialTokens && this.specialIds.has(id)) continue;
      s += this.tokens[id];
    }
    return s;
  }

  tokenToId(token: string): number | undefined {
    return this.ids.get(token);
  }

  idToToken(id: number): string | undefined {
    return this.tokens[id];
  }

  toTokenizerJson(): Record<string, unknown> {
    const vocab: Record<string, number> = {};
    this.tokens.forEach((t, id) => {
      vocab[t] = id;
    });
    const special = (id: number) => ({
      id,
      content: this.tokens[id],
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    });
    const bos = this.spec.bos;
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: this.specials.map((_, id) => special(id)),
      normalizer: null,
      pre_tokenizer: { type: 'Split', pattern: { Regex: CHAR_SPLIT_REGEX }, behavior: 'Isolated', invert: false },
      post_processor: this.spec.addBos
        ? {
            type: 'TemplateProcessing',
            single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
            pair: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
            special_tokens: { [bos]: { id: bos, ids: [this.bosId], tokens: [bos] } },
          }
        : null,
      decoder: { type: 'Fuse' },
      model: { type: 'WordLevel', vocab, unk_token: this.spec.unk ?? '<unk>' },
    };
  }

  toTokenizerConfig(): Record<string, unknown> {
    return {
      tokenizer_class: 'PreTrainedTokenizerFast',
      bos_token: this.spec.bos,
      eos_token: this.spec.eos,
      pad_token: this.spec.pad,
      ...(this.spec.unk === null ? {} : { unk_token: this.spec.unk }),
      add_bos_token: this.spec.addBos,
      clean_up_tokenization_spaces: false,
      model_max_length: 1_000_000,
    };
  }

  /**
   * Rebuilds a CharTokenizer from a `tokenizer.json` that `toTokenizerJson` wrote; null when the
   * JSON has another shape (then it is an ordinary HF tokenizer).
   */
  static fromTokenizerJson(
    json: Record<string, unknown>,
    config: Record<string, unknown> = {},
    extraEosIds: readonly number[] = [],
  ): CharTokenizer | null {
    const model = json.model as Record<string, unknown> | undefined;
    const pre = json.pre_tokenizer as Record<string, unknown> | null | undefined;
    const dec = json.decoder as Record<string, unknown> | null | undefined;
    if (
      model?.type !== 'WordLevel' ||
      pre?.type !== 'Split' ||
      (pre.pattern as Record<string, unknown> | undefined)?.Regex !== CHAR_SPLIT_REGEX ||
      pre.behavior !== 'Isolated' ||
      dec?.type !== 'Fuse' ||
      json.normalizer != null
    ) {
      return null;
    }
    const vocab = model.vocab as Record<string, number>;
    const added = (json.added_tokens as { id: number; content: string; special: boolean }[] | undefined) ?? [];
    const byId: string[] = [];
    for (const [t, id] of Object.entries(vocab)) byId[id] = t;
    const specials = added
      .filter((a) => a.special)
      .sort((a, b) => a.id - b.id)
      .map((a) => a.content);
    if (specials.length < 3 || specials.length > 4 || specials.some((s, i) => byId[i] !== s)) return null;
    for (let i = 0; i < byId.length; i++) if (byId[i] === undefined) return null;
    const chars = byId.slice(specials.length);
    const tokenName = (v: unknown) => (typeof v === 'string' ? v : (v as { content?: string } | null)?.content);
    const [pad, bos, eos, unk] = specials as [string, string, string, string | undefined];
    if ((tokenName(config.bos_token) ?? bos) !== bos || (tokenName(config.eos_token) ?? eos) !== eos) return null;
    return new CharTokenizer({ chars, pad, bos, eos, unk: unk ?? null, addBos: json.post_processor != null }, extraEosIds);
  }
}

/** Name of a special token in `tokenizer_config.json`: a string or an AddedToken object. */
export function specialName(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return null;
}

/** Options of `HfTokenizer`. */
export interface HfTokenizerOptions {
  /** Extra end-of-sequence ids (from the model's config.json / generation_config.json). */
  extraEosIds?: readonly number[];
}

/** A Hugging Face `tokenizer.json`, through `@huggingface/tokenizers`. */
export class HfTokenizer implements TextTokenizer {
  readonly kind = 'hf' as const;
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  readonly eosIds: readonly number[];
  readonly specialIds: ReadonlySet<number>;
  private readonly impl: HfJsTokenizer;

  constructor(
    private readonly json: Record<string, unknown>,
    private readonly config: Record<string, unknown> = {},
    options: HfTokenizerOptions = {},
    what = 'tokenizer.json',
  ) {
    if (typeof json !== 'object' || json === null || typeof json.model !== 'object' || json.model === null) {
      throw new TokenizerError(`${what}: not a Hugging Face tokenizer.json (no "model" object)`);
    }
    // The JS library handles WordLevel with its "legacy" model, which takes the unk token from the
    // tokenizer config rather than from the model JSON.
    const model = json.model as Record<string, unknown>;
    const unk = config.unk_token ?? (model.type === 'WordLevel' ? model.unk_token : undefined);
    try {
      this.impl = new HfJsTokenizer(
        { added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...json },
        {
          ...config,
          clean_up_tokenization_spaces: config.clean_up_tokenization_spaces ?? false,
          ...(unk === undefined ? {} : { unk_token: unk }),
        },
      );
    } catch (e) {
      throw new TokenizerError(`${what}: cannot build the tokenizer: ${(e as Error).message}`);
    }
    let max = -1;
    for (const id of this.impl.get_vocab(true).values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    const idOf = (field: string): number | null => {
      const name = specialName(config[field]);
      if (name === null) return null;
      const id = this.impl.token_to_id(name);
      if (id === undefined)
        throw new TokenizerError(`${what}: tokenizer_config.json ${field} ${JSON.stringify(name)} is not in the vocabulary`);
      return id;
    };
    this.bosId = idOf('bos_token');
    this.eosId = idOf('eos_token');
    this.padId = idOf('pad_token');
    const eos = new Set<number>(this.eosId === null ? [] : [this.eosId]);
    for (const id of options.extraEosIds ?? []) eos.add(id);
    this.eosIds = [...eos];
    this.specialIds = new Set([...this.impl.get_added_tokens_decoder().entries()].filter(([, t]) => t.special).map(([id]) => id));
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TokenizerError(`encode expects a string, got ${typeof text}`);
    const { ids, tokens } = this.impl.encode(text, { add_special_tokens: options.addSpecialTokens ?? true });
    const bad = ids.findIndex((id: unknown) => !Number.isInteger(id));
    if (bad >= 0) {
      throw new TokenizerError(
        `piece ${JSON.stringify(tokens[bad])} of the text is not in the vocabulary and the tokenizer has no unk token`,
      );
    }
    return ids;
  }

  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    checkIds(ids, this.vocabSize);
    if (ids.length === 0) return '';
    return this.impl.decode([...ids], { skip_special_tokens: options.skipSpecialTokens ?? false });
  }

  tokenToId(token: string): number | undefined {
    return this.impl.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.impl.id_to_token(id);
  }

  toTokenizerJson(): Record<string, unknown> {
    return this.json;
  }

  toTokenizerConfig(): Record<string, unknown> {
    return this.config;
  }
}

/**
 * Builds the right tokenizer for a `tokenizer.json` object (plus its optional
 * `tokenizer_config.json`): a CharTokenizer when the JSON is one `CharTokenizer` wrote, else an
 * HfTokenizer. `what` names the source in errors.
 */
export function loadTokenizer(
  json: unknown,
  config: Record<string, unknown> = {},
  options: HfTokenizerOptions = {},
  what = 'tokenizer.json',
): TextTokenizer {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new TokenizerError(`${what}: expected a JSON object`);
  const char = CharTokenizer.fromTokenizerJson(json as Record<string, unknown>, config, options.extraEosIds);
  if (char) return char;
  return new HfTokenizer(json as Record<string, unknown>, config, options, what);
}
