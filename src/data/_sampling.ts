/**
 * Sampling without replacement with the semantics of numpy's legacy `np.random.choice(..., replace=False)`, which the
 * reference MQAR generator uses (spec §1.3). Only the distributions must match, not numpy's random stream.
 */
import type { Rng } from "./rng.ts";

/** What the samplers draw from (an Rng; tests may feed recorded numpy uniforms). */
export type UniformSource = Pick<Rng, "uniform" | "int">;

/**
 * Writes `count` distinct integers from [lo, hi] into out[offset .. offset+count), a uniformly random ordered subset
 * (what numpy's `permutation(n)[:count]` gives). Memory is O(count + 2^16), whatever the size of the range.
 */
export function sampleDistinctUniform(
  rng: UniformSource,
  lo: number,
  hi: number,
  count: number,
  out: Uint32Array,
  offset = 0,
): void {
  const range = hi - lo + 1;
  if (!(count >= 0 && count <= range)) throw new RangeError(`cannot draw ${count} distinct values from [${lo}, ${hi}]`);
  if (2 * count <= range) {
    // Sparse: sequential rejection. Each accepted draw is uniform over the values not yet chosen, which is exactly
    // the law of an ordered uniform subset; at most half the range is taken, so < 2 draws per value on average.
    // Membership: a byte map while the range is small (the paper's 4095 keys), else a Set, to bound memory.
    if (range <= Math.max(1 << 16, 64 * count)) {
      const taken = new Uint8Array(range);
      for (let i = 0; i < count; i++) {
        let v: number;
        do v = rng.int(lo, hi); while (taken[v - lo]);
        taken[v - lo] = 1;
        out[offset + i] = v;
      }
    } else {
      const chosen = new Set<number>();
      for (let i = 0; i < count; i++) {
        let v: number;
        do v = rng.int(lo, hi); while (chosen.has(v));
        chosen.add(v);
        out[offset + i] = v;
      }
    }
    return;
  }
  // Dense: partial Fisher-Yates over the whole range (range < 2 * count, so still O(count) memory).
  const pool = new Uint32Array(range);
  for (let i = 0; i < range; i++) pool[i] = lo + i;
  for (let i = 0; i < count; i++) {
    const j = rng.int(i, range - 1);
    const t = pool[j];
    pool[j] = pool[i];
    pool[i] = t;
    out[offset + i] = t;
  }
}

/** The MQAR gap law: p_i ∝ a·i^(a−1) for i = 1..S, normalised; p[s] is the probability of query slot s = i − 1. */
export function powerLawWeights(numSlots: number, powerA: number): Float64Array {
  const p = new Float64Array(numSlots);
  let total = 0;
  for (let i = 0; i < numSlots; i++) {
    p[i] = powerA * Math.pow(i + 1, powerA - 1);
    total += p[i];
  }
  for (let i = 0; i < numSlots; i++) p[i] /= total;
  return p;
}

/** Reusable buffers for sampleWeightedDistinctLegacy, so a batch allocates them once. */
export interface WeightedScratch {
  remaining: Uint32Array;
  cdf: Float64Array;
  taken: Uint8Array;
}

export function weightedScratch(size: number): WeightedScratch {
  return { remaining: new Uint32Array(size), cdf: new Float64Array(size), taken: new Uint8Array(size) };
}

/**
 * Writes `count` distinct indices of `weights` (all > 0) into out[offset ..), by numpy's legacy weighted
 * without-replacement procedure: in rounds, draw one uniform per missing index, zero the weights already found,
 * take cdf = cumsum / last, map each uniform to the first cdf entry above it (searchsorted side='right'), and append
 * the new indices in order of first occurrence. This is NOT sequential (Plackett-Luce) sampling: indices found in
 * the same round keep the order of their uniforms, so later outputs are biased towards lower-weight indices
 * (the reason later MQAR keys are queried later).
 *
 * Cost per round: O(remaining) for the cdf + O(k log remaining) for the lookups. The cdf is built over the remaining
 * indices only, in ascending order; that skips exactly the zero terms numpy adds, so the sums are the same numbers.
 */
export function sampleWeightedDistinctLegacy(
  rng: UniformSource,
  weights: Float64Array,
  count: number,
  out: Uint32Array,
  offset = 0,
  scratch: WeightedScratch = weightedScratch(weights.length),
): void {
  const size = weights.length;
  if (!(count >= 0 && count <= size)) throw new RangeError(`cannot draw ${count} distinct indices from ${size}`);
  const { remaining, cdf, taken } = scratch;
  for (let i = 0; i < size; i++) {
    remaining[i] = i;
    taken[i] = 0;
  }
  let numRemaining = size;
  let found = 0;
  while (found < count) {
    let acc = 0;
    for (let r = 0; r < numRemaining; r++) {
      acc += weights[remaining[r]];
      cdf[r] = acc;
    }
    for (let r = 0; r < numRemaining; r++) cdf[r] /= acc;
    const draws = count - found;
    for (let d = 0; d < draws; d++) {
      const x = rng.uniform();
      // First r with cdf[r] > x. x < 1 = cdf[last], so the search never falls off the end.
      let lo = 0, hi = numRemaining - 1;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (cdf[mid] > x) hi = mid;
        else lo = mid + 1;
      }
      const index = remaining[lo];
      if (!taken[index]) {
        taken[index] = 1;
        out[offset + found++] = index;
      }
    }
    let kept = 0;
    for (let r = 0; r < numRemaining; r++) if (!taken[remaining[r]]) remaining[kept++] = remaining[r];
    numRemaining = kept;
  }
}
