import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CharTokenizer, HfTokenizer, loadTokenizer, TokenizerError } from '../../../activities/model/tokenizer.js';

/** GPT-2's byte → printable-character table, rebuilt here so the test writes its own byte-level BPE. */
function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const out: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) out[b] = printable.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  return out;
}

/** A tiny byte-level BPE tokenizer.json: 256 byte tokens, three merges, one special token. */
function tinyByteBpe(): { json: Record<string, unknown>; config: Record<string, unknown> } {
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((c, i) => {
    vocab[c] = i;
  });
  const merges = [
    ['Ġ', 't'],
    ['h', 'e'],
    ['Ġt', 'he'],
  ];
  for (const [a, b] of merges) vocab[a! + b!] = Object.keys(vocab).length; // 256, 257, 258
  vocab['<|endoftext|>'] = 259;
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    json: {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: [
        { id: 259, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
      ],
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', ...byteLevel },
      post_processor: { type: 'ByteLevel', ...byteLevel },
      decoder: { type: 'ByteLevel', ...byteLevel },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: '',
        end_of_word_suffix: '',
        fuse_unk: false,
        byte_fallback: false,
        vocab,
        merges: merges.map((m) => m.join(' ')),
      },
    },
    config: { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', pad_token: null, clean_up_tokenization_spaces: false },
  };
}

test('char tokenizer: specials take ids 0..2, BOS prepended, specials in text recognised, round trip', () => {
  const t = CharTokenizer.fromAlphabet('0123456789+= ');
  assert.equal(t.vocabSize, 3 + 13);
  assert.deepEqual([t.padId, t.bosId, t.eosId], [0, 1, 2]);
  assert.deepEqual(t.encode('12+3'), [1, 4, 5, 13, 6]);
  assert.deepEqual(t.encode('12+3', { addSpecialTokens: false }), [4, 5, 13, 6]);
  assert.deepEqual(t.encode('9<eos>'), [1, 12, 2]);
  assert.equal(t.decode(t.encode('1 + 2 = 3<eos>')), '<bos>1 + 2 = 3<eos>');
  assert.equal(t.decode(t.encode('1 + 2 = 3<eos>'), { skipSpecialTokens: true }), '1 + 2 = 3');
  assert.deepEqual(t.eosIds, [2]);
  assert.deepEqual([...t.specialIds].sort(), [0, 1, 2]);
});

test('char tokenizer: unknown characters error with their position unless an unk token is set', () => {
  const t = CharTokenizer.fromAlphabet('ab');
  assert.throws(
    () => t.encode('abxa'),
    (e: unknown) => e instanceof TokenizerError && /"x" \(U\+0078\) at position 2/.test(e.message),
  );
  const u = CharTokenizer.fromAlphabet('ab', { unk: '<unk>' });
  assert.deepEqual(u.encode('axb', { addSpecialTokens: false }), [4, 3, 5]);
});

test('char tokenizer: astral code points are one token; bad specs and ids are rejected', () => {
  const t = CharTokenizer.fromAlphabet('a🙂');
  assert.deepEqual(t.encode('🙂a🙂', { addSpecialTokens: false }), [4, 3, 4]);
  assert.equal(t.decode([4, 3]), '🙂a');
  assert.throws(
    () => new CharTokenizer({ chars: ['ab'], pad: '<p>', bos: '<b>', eos: '<e>', unk: null, addBos: true }),
    /chars\[0\] must be exactly one character/,
  );
  assert.throws(
    () => new CharTokenizer({ chars: ['a', 'a'], pad: '<p>', bos: '<b>', eos: '<e>', unk: null, addBos: true }),
    /chars\[1\] "a" is a duplicate/,
  );
  assert.throws(() => new CharTokenizer({ chars: [], pad: 'x', bos: 'x', eos: '<e>', unk: null, addBos: true }), /distinct/);
  assert.throws(() => t.decode([0, 5]), /token id 5 at index 1 is outside the vocabulary \[0, 5\)/);
  assert.throws(() => t.decode([1.5]), /token id 1.5/);
});

test('char tokenizer.json is a real HF tokenizer: the HF library encodes and decodes it identically', () => {
  for (const addBos of [true, false]) {
    const t = CharTokenizer.fromAlphabet('abc xyz\n🙂', { addBos, unk: '<unk>' });
    const json = JSON.parse(JSON.stringify(t.toTokenizerJson()));
    const config = JSON.parse(JSON.stringify(t.toTokenizerConfig()));
    const viaHf = new HfTokenizer(json, config);
    const reloaded = loadTokenizer(json, config);
    assert.equal(reloaded.kind, 'char');
    for (const text of ['abc', 'x y\nz', 'a🙂<eos>b', 'a?c']) {
      const ids = t.encode(text);
      assert.deepEqual(viaHf.encode(text), ids, `HF library vs native on ${JSON.stringify(text)}`);
      assert.deepEqual(reloaded.encode(text), ids);
      assert.equal(viaHf.decode(ids), t.decode(ids));
      assert.equal(viaHf.decode(ids, { skipSpecialTokens: true }), t.decode(ids, { skipSpecialTokens: true }));
    }
    assert.equal(viaHf.vocabSize, t.vocabSize);
    assert.deepEqual([viaHf.bosId, viaHf.eosId, viaHf.padId], [t.bosId, t.eosId, t.padId]);
  }
});

test('HF byte-level BPE: merges apply, special tokens split out, UTF-8 round-trips', () => {
  const { json, config } = tinyByteBpe();
  const t = loadTokenizer(json, config, { extraEosIds: [258] });
  assert.equal(t.kind, 'hf');
  assert.equal(t.vocabSize, 260);
  // "the" at the start has no leading space: t + he (merge 2 only); " the" merges fully into 258.
  assert.deepEqual(t.encode('the the'), [116, 257, 258]);
  assert.deepEqual(t.encode('a<|endoftext|>'), [97, 259]);
  const text = 'the héllo 🙂 world\n';
  const ids = t.encode(text);
  assert.deepEqual(ids.slice(4, 7), [195, 169, 108]); // é is two bytes
  assert.equal(t.decode(ids), text);
  assert.equal(t.decode([...ids, 259]), text + '<|endoftext|>');
  assert.equal(t.decode([...ids, 259], { skipSpecialTokens: true }), text);
  assert.equal(t.decode([]), '');
  assert.deepEqual([t.bosId, t.eosId, t.padId], [259, 259, null]);
  assert.deepEqual(t.eosIds, [259, 258]);
  assert.deepEqual([...t.specialIds], [259]);
  assert.equal(t.tokenToId('Ġthe'), 258);
  assert.equal(t.idToToken(257), 'he');
  assert.throws(() => t.decode([260]), /token id 260 at index 0 is outside the vocabulary \[0, 260\)/);
});

test('HF WordLevel with whitespace pre-tokenizer works offline from a JSON object', () => {
  const json = {
    added_tokens: [{ id: 0, content: '[UNK]', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: { type: 'Lowercase' },
    pre_tokenizer: { type: 'WhitespaceSplit' },
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab: { '[UNK]': 0, hello: 1, world: 2 }, unk_token: '[UNK]' },
  };
  const t = loadTokenizer(json);
  assert.deepEqual(t.encode('Hello  WORLD again'), [1, 2, 0]);
  assert.equal(t.decode([1, 2]), 'hello world');
});

test('bad tokenizer definitions are named', () => {
  assert.throws(
    () => loadTokenizer({ version: '1.0' }, {}, {}, 'x/tokenizer.json'),
    /x\/tokenizer.json: not a Hugging Face tokenizer.json/,
  );
  assert.throws(() => loadTokenizer([], {}), /expected a JSON object/);
  const { json } = tinyByteBpe();
  assert.throws(() => loadTokenizer(json, { eos_token: '</s>' }), /eos_token "<\/s>" is not in the vocabulary/);
  assert.throws(() => loadTokenizer({ ...json, model: { type: 'Bogus' } }), /cannot build the tokenizer/);
});

test('HF tokenizer without an unk token rejects out-of-vocabulary text, naming the piece', () => {
  const t = loadTokenizer({ added_tokens: [], pre_tokenizer: { type: 'WhitespaceSplit' }, model: { type: 'WordLevel', vocab: { a: 0 } } });
  assert.deepEqual(t.encode('a a'), [0, 0]);
  assert.throws(() => t.encode('a b'), /piece "b" of the text is not in the vocabulary/);
});
