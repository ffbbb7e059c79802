/** Small seedable PRNG (xoshiro128**, seeded by splitmix32). Streams are pure functions of their seed words. */

function splitmix32(state: number): [number, number] {
  state = (state + 0x9e3779b9) | 0;
  let z = state;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return [state, (z ^ (z >>> 16)) >>> 0];
}

/** Mixes several integers into one 32-bit seed (order-sensitive). */
export function mixSeed(...words: number[]): number {
  let h = 0x811c9dc5;
  for (const w of words) {
    let [, z] = splitmix32((h ^ (w >>> 0)) | 0);
    [, z] = splitmix32((z + Math.floor(w / 4294967296)) | 0);
    h = Math.imul(h ^ z, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export class Rng {
  #s = new Uint32Array(4);
  #spare: number | null = null;

  /** The stream is a pure function of the seed words, e.g. new Rng(dataSeed, split, index). */
  constructor(...seed: number[]) {
    let state = mixSeed(...seed);
    for (let i = 0; i < 4; i++) {
      let z: number;
      [state, z] = splitmix32(state);
      this.#s[i] = z;
    }
    if ((this.#s[0] | this.#s[1] | this.#s[2] | this.#s[3]) === 0) this.#s[0] = 1;
  }

  /** Uniform 32-bit unsigned integer. */
  nextU32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    const hi = this.nextU32() >>> 5;
    const lo = this.nextU32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [lo, hi] (inclusive), unbiased. */
  int(lo: number, hi: number): number {
    const span = hi - lo + 1;
    if (!(span >= 1) || span > 4294967296) throw new Error(`Rng.int: bad range [${lo}, ${hi}]`);
    const limit = 4294967296 - (4294967296 % span);
    let x: number;
    do x = this.nextU32(); while (x >= limit);
    return lo + (x % span);
  }

  /** Standard normal (Box-Muller). */
  normal(): number {
    if (this.#spare !== null) {
      const s = this.#spare;
      this.#spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** In-place Fisher-Yates shuffle. */
  shuffle<T>(items: T[] | Uint32Array | Int32Array): void {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(0, i);
      const t = items[i];
      items[i] = items[j];
      items[j] = t;
    }
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
