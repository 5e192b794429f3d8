/**
 * Finding the final answer inside a completion: `<answer>` tags, `\boxed{}`, GSM8K's `#### X`,
 * "The answer is X", the last number, and the letter of a multiple-choice answer. Each extractor
 * returns the last occurrence (models restate and correct themselves; the last word counts) or
 * undefined when the completion has none.
 */

/** Extractor names, tried in the order a reward's options list them. */
export type ExtractMethod = 'answer_tag' | 'boxed' | 'hash' | 'answer_is' | 'last_number' | 'whole';

/** Content of the last balanced `{...}` group starting at `open` (index of `{`), or undefined. */
function balancedGroup(text: string, open: number): { inner: string; end: number } | undefined {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '\\' && (text[i + 1] === '{' || text[i + 1] === '}')) {
      i++;
      continue;
    }
    if (c === '{') depth++;
    else if (c === '}') {
      depth--;
      if (depth === 0) return { inner: text.slice(open + 1, i), end: i + 1 };
    }
  }
  return undefined;
}

/** The last `\boxed{...}` / `\fbox{...}` content (balanced braces), or `\boxed 5`. */
export function extractBoxed(text: string): string | undefined {
  const re = /\\(?:boxed|fbox)\b\s*/g;
  let found: string | undefined;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const at = m.index + m[0].length;
    if (text[at] === '{') {
      const g = balancedGroup(text, at);
      if (g) found = g.inner.trim();
    } else {
      const word = /^[^\s$]+/.exec(text.slice(at));
      if (word) found = word[0];
    }
  }
  return found;
}

/** The last `<tag>...</tag>` content. */
export function extractTag(text: string, tag: string): string | undefined {
  const esc = tag.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp(`<${esc}>([\\s\\S]*?)</${esc}>`, 'g');
  let found: string | undefined;
  for (let m = re.exec(text); m; m = re.exec(text)) found = m[1]!.trim();
  return found;
}

/** GSM8K style: the rest of the line after the last `####`. */
export function extractHash(text: string): string | undefined {
  const i = text.lastIndexOf('####');
  if (i < 0) return undefined;
  const rest = text
    .slice(i + 4)
    .split('\n')[0]!
    .trim();
  return rest === '' ? undefined : rest;
}

/** Cuts a captured answer phrase at its sentence end and strips markdown emphasis. */
function tidyPhrase(phrase: string): string {
  let s = phrase.trim();
  // A `$...$` or `\(...\)` math span is the answer itself.
  const math = /\$\$?([^$]+)\$\$?|\\\(([\s\S]+?)\\\)/.exec(s);
  if (math) return (math[1] ?? math[2]!).trim();
  const cut = s.search(/\.\s|\.$|;|\s—\s/);
  if (cut >= 0) s = s.slice(0, cut);
  return s.replace(/^[*_\s]+|[*_\s]+$/g, '').trim();
}

/** "The (final) answer is X", "Answer: X", "**Final answer:** X" — the last such phrase. */
export function extractAnswerIs(text: string): string | undefined {
  const re = /\b(?:final\s+answer|answer)\b[*_\s]*(?:is\b|:|=)[*_\s:]*([^\n]*)/gi;
  let found: string | undefined;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    const t = tidyPhrase(m[1]!);
    if (t !== '') found = t;
  }
  return found;
}

const NUM = String.raw`(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+`;
const LAST_NUMBER = new RegExp(
  String.raw`\\[dt]?frac\{[^{}]*\}\{[^{}]*\}|-?(?:${NUM})(?:[eE][+-]?\d+)?(?:\s*/\s*(?:${NUM}))?(?:\s*\\?%)?`,
  'g',
);

/** The last number in the text (`-1,234.5`, `3/4`, `12%`, `\frac{1}{2}`), or undefined. */
export function extractLastNumber(text: string): string | undefined {
  let found: string | undefined;
  for (let m = LAST_NUMBER.exec(text); m; m = LAST_NUMBER.exec(text)) found = m[0];
  LAST_NUMBER.lastIndex = 0;
  return found?.trim();
}

/** Runs the extractors in order; returns the first answer found and the method that found it. */
export function extractAnswer(
  text: string,
  methods: readonly ExtractMethod[],
  answerTag = 'answer',
): { answer: string; method: ExtractMethod } | undefined {
  for (const method of methods) {
    let a: string | undefined;
    switch (method) {
      case 'answer_tag':
        a = extractTag(text, answerTag);
        break;
      case 'boxed':
        a = extractBoxed(text);
        break;
      case 'hash':
        a = extractHash(text);
        break;
      case 'answer_is':
        a = extractAnswerIs(text);
        break;
      case 'last_number':
        a = extractLastNumber(text);
        break;
      case 'whole':
        a = text.trim();
        break;
    }
    if (a !== undefined && a !== '') return { answer: a, method };
  }
  return undefined;
}

/**
 * The letter a multiple-choice completion chose, among `letters` (upper case), or undefined.
 * Looks, in order, at: `\boxed{X}`, `<answer>X</answer>`, "answer is (X)" / "Answer: X" /
 * "correct option is X", a line holding only the letter (`(C)`, `C.`, `**C**`), and the last
 * bracketed letter `(X)` when the last paragraph names only one. Bare capital letters inside prose ("A good first step") never count.
 * When the chosen phrase names two different letters ("A or C") the answer is ambiguous: undefined.
 */
export function extractChoice(raw: string, letters: string, answerTag = 'answer'): string | undefined {
  const text = raw.normalize('NFKC'); // full-width letters and brackets become ASCII
  const set = new Set(letters.toUpperCase().split(''));
  const letterOf = (s: string): string | undefined => {
    const t = s.replace(/\\text\{([^}]*)\}/g, '$1').replace(/^[\s(*[_]+|[\s)*\]_.:]+$/g, '');
    if (t.length === 1 && set.has(t.toUpperCase())) return t.toUpperCase();
    // "C. 42" / "(C) 42" / "C) the second": a letter then its option text.
    const m = /^\(?([A-Za-z])(?:[).:]|\s*-)\s/.exec(s.trim() + ' ');
    if (m && set.has(m[1]!.toUpperCase())) return m[1]!.toUpperCase();
    return undefined;
  };
  const boxed = extractBoxed(text);
  if (boxed !== undefined) {
    const l = letterOf(boxed);
    if (l) return l;
  }
  const tagged = extractTag(text, answerTag);
  if (tagged !== undefined) {
    const l = letterOf(tagged);
    if (l) return l;
  }
  // "answer is (C)", "Answer: C", "correct option is **C**", "the answer is C because ...".
  const phrase =
    /\b(?:answer|option|choice)\b[*_\s]*(?:is\b|:)[*_\s:]*(?:option\s+|choice\s+)?(?:[([]\s*([A-Za-z])\s*[)\]]|([A-Za-z])(?=[*_\s]*(?:$|[.,;:!)\n]|\s(?:because|since|as|which|or|and)\b)))(?=([^\n]*))/gim;
  let fromPhrase: string | undefined;
  let ambiguous = false;
  for (let m = phrase.exec(text); m; m = phrase.exec(text)) {
    const bracketed = m[1] !== undefined;
    const l = (m[1] ?? m[2])!;
    // A lower-case bare letter is only taken in brackets ("answer is (b)"), never as the article "a".
    if (!bracketed && l !== l.toUpperCase()) continue;
    if (!set.has(l.toUpperCase())) continue;
    fromPhrase = l.toUpperCase();
    const tail = m[3] ?? '';
    const other = /^[*_\s]*(?:or|and)\s+\(?([A-Z])\b/.exec(tail);
    ambiguous = other !== null && set.has(other[1]!) && other[1] !== fromPhrase;
  }
  if (fromPhrase !== undefined) return ambiguous ? undefined : fromPhrase;
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^[*_([\s]*([A-Z])[*_)\].:\s]*$/.exec(lines[i]!);
    if (m && set.has(m[1]!)) return m[1]!;
  }
  // The last paragraph names exactly one bracketed letter: "So we pick (C)." (a restated option
  // list "(A) 1 (B) 2" names several and is no answer).
  const paragraphs = text.split(/\n\s*\n/).filter((p) => p.trim() !== '');
  const lastPara = paragraphs[paragraphs.length - 1] ?? '';
  const named = new Set([...lastPara.matchAll(/\(([A-Z])\)/g)].map((m) => m[1]!).filter((l) => set.has(l)));
  return named.size === 1 ? [...named][0] : undefined;
}
