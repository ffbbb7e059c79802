/**
 * The statistics of the A/B performance gate: samples of one metric (seconds per token, lower is better) from a base
 * revision A and a candidate B, measured interleaved on the same machine. The decision is the ratio of medians
 * median(B)/median(A) with a seeded percentile-bootstrap confidence interval (each group resampled with replacement),
 * as asv does with its ratio factor: a regression is a slowdown beyond the threshold *with confidence* (the interval's
 * lower end above 1 + threshold), so noise alone, however large, widens the interval instead of failing the gate.
 * A Mann–Whitney U test on the raw samples is reported beside it. Pure: no GPU, no I/O.
 */
import { Rng } from "../data/rng.ts";

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error("median of no samples");
  const s = [...xs].sort((a, b) => a - b), m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export interface RatioInterval {
  /** median(b) / median(a). */
  ratio: number;
  /** Percentile-bootstrap interval of the ratio at `confidence`. */
  lo: number;
  hi: number;
  confidence: number;
}

/** Bootstrap CI of median(b)/median(a); deterministic for a seed. */
export function bootstrapRatio(
  a: readonly number[],
  b: readonly number[],
  opts: { iterations?: number; confidence?: number; seed?: number } = {},
): RatioInterval {
  if (a.length < 2 || b.length < 2) throw new Error("bootstrap needs at least 2 samples per group");
  const iterations = opts.iterations ?? 4000, confidence = opts.confidence ?? 0.95;
  const rng = new Rng(opts.seed ?? 0xab, 0x5eed);
  const pick = (xs: readonly number[]) => Array.from({ length: xs.length }, () => xs[rng.int(0, xs.length - 1)]);
  const ratios = new Float64Array(iterations);
  for (let i = 0; i < iterations; i++) ratios[i] = median(pick(b)) / median(pick(a));
  ratios.sort();
  const tail = (1 - confidence) / 2;
  const at = (q: number) => ratios[Math.min(iterations - 1, Math.max(0, Math.floor(q * iterations)))];
  return { ratio: median(b) / median(a), lo: at(tail), hi: at(1 - tail), confidence };
}

/** Two-sided Mann–Whitney U test (normal approximation with tie correction): U of b over a and its p-value. */
export function mannWhitney(a: readonly number[], b: readonly number[]): { u: number; p: number } {
  const all = [...a.map((v) => ({ v, g: 0 })), ...b.map((v) => ({ v, g: 1 }))].sort((x, y) => x.v - y.v);
  const ranks = new Float64Array(all.length);
  let tieTerm = 0;
  for (let i = 0; i < all.length;) {
    let j = i;
    while (j + 1 < all.length && all[j + 1].v === all[i].v) j++;
    const rank = (i + j) / 2 + 1, t = j - i + 1;
    for (let k = i; k <= j; k++) ranks[k] = rank;
    tieTerm += t ** 3 - t;
    i = j + 1;
  }
  const n1 = a.length, n2 = b.length, n = n1 + n2;
  let rb = 0;
  all.forEach((x, i) => x.g === 1 && (rb += ranks[i]));
  const u = rb - (n2 * (n2 + 1)) / 2;
  const mean = (n1 * n2) / 2;
  const variance = (n1 * n2 / 12) * ((n + 1) - tieTerm / (n * (n - 1)));
  if (variance <= 0) return { u, p: 1 };
  const z = (Math.abs(u - mean) - 0.5) / Math.sqrt(variance);
  return { u, p: Math.min(1, 2 * (1 - normalCdf(Math.max(0, z)))) };
}

/** Φ(x) by the Abramowitz–Stegun 7.1.26 erf approximation (|error| < 1.5e-7). */
function normalCdf(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x) / Math.SQRT2);
  const y = 1 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t *
      Math.exp(-(x * x) / 2);
  return x >= 0 ? (1 + y) / 2 : (1 - y) / 2;
}

export type AbStatus = "regression" | "improvement" | "unchanged";

export interface AbDecision extends RatioInterval {
  status: AbStatus;
  /** Mann–Whitney p-value of the raw samples (reported, not used to decide). */
  p: number;
  samples: { a: number; b: number };
}

/**
 * The decision for one metric where lower is better (seconds per token): a regression when the whole interval lies
 * above 1 + threshold, an improvement when it lies below 1/(1 + threshold), else unchanged.
 */
export function decideAb(
  a: readonly number[],
  b: readonly number[],
  threshold = 0.15,
  opts: { confidence?: number; seed?: number } = {},
): AbDecision {
  const ci = bootstrapRatio(a, b, opts);
  const status: AbStatus = ci.lo > 1 + threshold
    ? "regression"
    : ci.hi < 1 / (1 + threshold)
    ? "improvement"
    : "unchanged";
  return { ...ci, status, p: mannWhitney(a, b).p, samples: { a: a.length, b: b.length } };
}
