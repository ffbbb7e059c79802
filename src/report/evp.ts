/**
 * Expected Validation Performance (Dodge et al. 2019; spec §6.3, formula of [D] expected_max_performance.py):
 * with N scores sorted ascending v_(1) <= ... <= v_(N), the expected best of n i.i.d. draws WITH replacement is
 *   EVP(n) = Σ_i v_(i) · w_i,  w_i = (i/N)^n − ((i−1)/N)^n,
 * and its spread is sqrt(Var(n)) with Var(n) = Σ_i w_i (v_(i) − EVP(n))². EVP(1) is the mean; EVP(n) → max as n grows.
 * Also the unbiased without-replacement estimator (Dodge et al. 2021) Û(n) = Σ_{i=n..N} v_(i) C(i−1, n−1) / C(N, n).
 */

export interface EvpPoint {
  n: number;
  /** EVP(n), with replacement. */
  mean: number;
  /** sqrt(Var(n)). */
  std: number;
  /** Unbiased without-replacement estimate; null for n > N. */
  unbiased: number | null;
}

function sortedFinite(scores: readonly number[]): number[] {
  const v = scores.filter((x) => Number.isFinite(x));
  if (v.length === 0) throw new RangeError("EVP needs at least one finite score");
  return v.sort((a, b) => a - b);
}

/** EVP(n) and its std for n >= 1 trials drawn with replacement from `scores`. */
export function expectedMaxPerformance(scores: readonly number[], n: number): { mean: number; std: number } {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`EVP: n must be an integer >= 1, got ${n}`);
  const v = sortedFinite(scores);
  const N = v.length;
  const w = v.map((_, i) => ((i + 1) / N) ** n - (i / N) ** n);
  let m = 0;
  for (let i = 0; i < N; i++) m += v[i] * w[i];
  let variance = 0;
  for (let i = 0; i < N; i++) variance += w[i] * (v[i] - m) ** 2;
  return { mean: m, std: Math.sqrt(variance) };
}

/** Û(n) = Σ_{i=n..N} v_(i) C(i−1, n−1) / C(N, n) (i 1-based); null when n > N. */
export function evpWithoutReplacement(scores: readonly number[], n: number): number | null {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`EVP: n must be an integer >= 1, got ${n}`);
  const v = sortedFinite(scores);
  const N = v.length;
  if (n > N) return null;
  // log C(N, n) summed term by term keeps large pools finite.
  let logCNn = 0;
  for (let k = 1; k <= n; k++) logCNn += Math.log((N - n + k) / k);
  // ratio_i = C(i−1, n−1) / C(N, n); ratio_n = 1 / C(N, n), ratio_{i+1} = ratio_i · i / (i − n + 1).
  let ratio = Math.exp(-logCNn);
  let total = 0;
  for (let i = n; i <= N; i++) {
    total += v[i - 1] * ratio;
    ratio *= i / (i - n + 1);
  }
  return total;
}

/** EVP for n = 1..nMax (default N, the pool size). */
export function evpCurve(scores: readonly number[], nMax?: number): EvpPoint[] {
  const N = sortedFinite(scores).length;
  const last = nMax ?? N;
  const out: EvpPoint[] = [];
  for (let n = 1; n <= last; n++) {
    const { mean, std } = expectedMaxPerformance(scores, n);
    out.push({ n, mean, std, unbiased: evpWithoutReplacement(scores, n) });
  }
  return out;
}
