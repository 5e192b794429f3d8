/**
 * Counter-based random numbers: the one source of randomness in activities.
 *
 * Every random draw in durable-rl is a pure function of (run seed, coordinates): for sampling the
 * coordinates are (step, prompt, sample, position), for initialisation (tensor, element). A
 * counter-based generator needs no state, so a re-executed activity draws exactly the same numbers
 * on any machine, in any order, after any crash.
 *
 * The generator is Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
 * SC'11): a 128-bit counter and a 64-bit key go through ten rounds of multiply/xor bijections and
 * give four 32-bit words. Verified against the known-answer vectors of the Random123 reference.
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two unsigned 32-bit integers, exact in float64 pieces. */
function mulhi32(a: number, b: number): number {
  const aLo = a & 0xffff;
  const aHi = a >>> 16;
  const bLo = b & 0xffff;
  const bHi = b >>> 16;
  const loLo = aLo * bLo;
  const mid1 = aHi * bLo;
  const mid2 = aLo * bHi;
  const carry = ((loLo >>> 16) + (mid1 & 0xffff) + (mid2 & 0xffff)) >>> 16;
  return (aHi * bHi + (mid1 >>> 16) + (mid2 >>> 16) + carry) >>> 0;
}

/** Philox4x32-10 of a 4-word counter under a 2-word key. Writes the 4 output words into `out`. */
export function philox4x32(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
  out: Uint32Array = new Uint32Array(4),
): Uint32Array {
  let x0 = c0 >>> 0,
    x1 = c1 >>> 0,
    x2 = c2 >>> 0,
    x3 = c3 >>> 0;
  let y0 = k0 >>> 0,
    y1 = k1 >>> 0;
  for (let round = 0; round < 10; round++) {
    const hi0 = mulhi32(M0, x0);
    const lo0 = Math.imul(M0, x0) >>> 0;
    const hi1 = mulhi32(M1, x2);
    const lo1 = Math.imul(M1, x2) >>> 0;
    x0 = (hi1 ^ x1 ^ y0) >>> 0;
    x1 = lo1;
    x2 = (hi0 ^ x3 ^ y1) >>> 0;
    x3 = lo0;
    y0 = (y0 + W0) >>> 0;
    y1 = (y1 + W1) >>> 0;
  }
  out[0] = x0;
  out[1] = x1;
  out[2] = x2;
  out[3] = x3;
  return out;
}

/** FNV-1a 32-bit hash: turns a string id (prompt id, tensor name) into a counter word. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  const bytes = new TextEncoder().encode(text);
  for (const b of bytes) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Splits a seed (a safe integer, or a string hashed to one) into the two key words. */
export function seedKey(seed: number | string): [number, number] {
  if (typeof seed === 'string') return [hash32(seed), hash32(`${seed}\u0000hi`)];
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new RangeError(`seed must be a non-negative safe integer, got ${seed}`);
  }
  return [seed >>> 0, Math.floor(seed / 0x100000000) >>> 0];
}

/** Coordinate words: numbers are taken as unsigned 32-bit, strings hashed. */
function word(c: number | string): number {
  if (typeof c === 'string') return hash32(c);
  if (!Number.isInteger(c) || c < 0 || c > 0xffffffff) {
    throw new RangeError(`random-stream coordinate must be an integer in [0, 2^32), got ${c}`);
  }
  return c >>> 0;
}

/**
 * A stream of random numbers addressed by coordinates. Up to three coordinates name the stream
 * (e.g. step, prompt id, sample id); the fourth counter word is the position within it, so
 * `at(position)` is random access: `uniform(17)` is the same number whether or not 0..16 were drawn.
 */
export class CounterRng {
  private readonly k0: number;
  private readonly k1: number;
  private readonly c0: number;
  private readonly c1: number;
  private readonly c2: number;
  private readonly buf = new Uint32Array(4);

  constructor(seed: number | string, ...stream: (number | string)[]) {
    if (stream.length > 3) throw new RangeError(`at most 3 stream coordinates, got ${stream.length}`);
    [this.k0, this.k1] = seedKey(seed);
    this.c0 = word(stream[0] ?? 0);
    this.c1 = word(stream[1] ?? 0);
    this.c2 = word(stream[2] ?? 0);
  }

  /** Four raw 32-bit words at a position. */
  words(position: number): Uint32Array {
    return philox4x32(this.c0, this.c1, this.c2, word(position), this.k0, this.k1, this.buf);
  }

  /** A float64 uniform in [0, 1) with 53 random bits, at a position. */
  uniform(position: number): number {
    const w = this.words(position);
    return ((w[0]! >>> 5) * 67108864 + (w[1]! >>> 6)) / 9007199254740992;
  }

  /** A standard normal at a position (Box-Muller over the position's four words). */
  normal(position: number): number {
    const w = this.words(position);
    const u1 = ((w[0]! >>> 5) * 67108864 + (w[1]! >>> 6) + 1) / 9007199254740992; // (0, 1]
    const u2 = ((w[2]! >>> 5) * 67108864 + (w[3]! >>> 6)) / 9007199254740992;
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** An integer in [0, n) at a position (rejection-free: 53-bit uniform, n far below 2^53). */
  int(position: number, n: number): number {
    return Math.floor(this.uniform(position) * n);
  }
}
