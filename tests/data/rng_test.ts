import { mixSeed, Rng } from "../../src/data/rng.ts";
import { assert, assertAlmostEquals, assertEquals, assertNotEquals, assertThrows } from "../_helpers/assert.ts";

/** Upper chi-square quantile (Wilson-Hilferty); z = 4.75 is a one-sided tail of about 1e-6. */
function chiSquareCritical(df: number, z = 4.75): number {
  const c = 2 / (9 * df);
  return df * (1 - c + z * Math.sqrt(c)) ** 3;
}

function uniformChiSquare(counts: number[], n: number): number {
  const expected = n / counts.length;
  return counts.reduce((acc, c) => acc + (c - expected) ** 2 / expected, 0);
}

function stream(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => rng.nextU32());
}

Deno.test("rng: streams are pure functions of the seed words", () => {
  assertEquals(stream(new Rng(42, 0, 7), 64), stream(new Rng(42, 0, 7), 64));
  assertEquals(mixSeed(1, 2, 3), mixSeed(1, 2, 3));
  const variants = [[42, 0, 7], [42, 0, 8], [42, 1, 7], [43, 0, 7], [7, 0, 42], [42, 7, 0], [42, 0], [42], [
    2 ** 32 + 42,
  ]];
  const firsts = new Set(variants.map((seed) => stream(new Rng(...seed), 4).join(",")));
  assertEquals(firsts.size, variants.length, "seed words (their order, count and high bits) must all matter");
  // The per-example streams of a split start at distinct points.
  const starts = new Set(Array.from({ length: 2000 }, (_, i) => new Rng(42, 0, i).nextU32()));
  assertEquals(starts.size, 2000);
  // Neighbouring example streams are not shifted copies of each other.
  const a = stream(new Rng(42, 0, 1), 256), b = new Set(stream(new Rng(42, 0, 2), 256));
  assert(a.filter((x) => b.has(x)).length === 0);
});

Deno.test("rng: nextU32 is a 32-bit unsigned integer with balanced bits", () => {
  const rng = new Rng(1);
  const n = 20_000;
  const ones = new Array(32).fill(0);
  for (let i = 0; i < n; i++) {
    const x = rng.nextU32();
    assert(Number.isInteger(x) && x >= 0 && x < 2 ** 32);
    for (let bit = 0; bit < 32; bit++) ones[bit] += (x >>> bit) & 1;
  }
  // Each bit is Bernoulli(1/2): standard error 0.5/√n ≈ 0.0035; allow 5.5 SE.
  for (let bit = 0; bit < 32; bit++) assertAlmostEquals(ones[bit] / n, 0.5, 0.02, `bit ${bit}`);
});

Deno.test("rng: uniform is in [0, 1), uniform across bins, and serially uncorrelated", () => {
  const rng = new Rng(2);
  const n = 40_000, bins = 20;
  const counts = new Array(bins).fill(0);
  const xs = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const x = rng.uniform();
    assert(x >= 0 && x < 1);
    xs[i] = x;
    sum += x;
    counts[Math.floor(x * bins)]++;
  }
  // Mean: sd 1/√12 ≈ 0.289, SE ≈ 0.0014; allow ~5 SE.
  assertAlmostEquals(sum / n, 0.5, 0.007);
  const stat = uniformChiSquare(counts, n);
  assert(stat < chiSquareCritical(bins - 1), `chi-square ${stat.toFixed(1)}`);
  // Lag-1 correlation: SE 1/√n = 0.005; allow 5 SE.
  let cov = 0, variance = 0;
  for (let i = 0; i < n; i++) {
    variance += (xs[i] - 0.5) ** 2;
    if (i > 0) cov += (xs[i] - 0.5) * (xs[i - 1] - 0.5);
  }
  assertAlmostEquals(cov / variance, 0, 0.025);
  // 53 random bits: the low bits vary too (a 32-bit float would leave x·2^32 integral).
  assert(Array.from(xs.subarray(0, 100)).some((x) => !Number.isInteger(x * 2 ** 32)));
});

Deno.test("rng: int covers [lo, hi] inclusively and uniformly, and rejects bad ranges", () => {
  const rng = new Rng(3);
  for (const [lo, hi] of [[0, 0], [5, 5], [-3, 3], [1, 4095], [4096, 8191], [0, 6]]) {
    let min = Infinity, max = -Infinity;
    for (let i = 0; i < 20_000; i++) {
      const x = rng.int(lo, hi);
      assert(Number.isInteger(x) && x >= lo && x <= hi, `${x} outside [${lo}, ${hi}]`);
      min = Math.min(min, x);
      max = Math.max(max, x);
    }
    assertEquals([min, max], [lo, hi], `both ends of [${lo}, ${hi}] are reachable`);
  }
  // Span 7 is not a power of two: rejection must keep it unbiased.
  const counts = new Array(7).fill(0);
  const n = 35_000;
  for (let i = 0; i < n; i++) counts[rng.int(10, 16) - 10]++;
  const stat = uniformChiSquare(counts, n);
  assert(stat < chiSquareCritical(6), `chi-square ${stat.toFixed(1)}`);
  // The widest span is allowed and still uses all 32 bits.
  const wide = Array.from({ length: 1000 }, () => rng.int(0, 2 ** 32 - 1));
  assert(wide.every((x) => x >= 0 && x < 2 ** 32) && wide.some((x) => x >= 2 ** 31));
  assertThrows(() => rng.int(3, 2), /bad range \[3, 2\]/);
  assertThrows(() => rng.int(0, 2 ** 32), /bad range/);
  assertThrows(() => rng.int(0, NaN), /bad range/);
});

Deno.test("rng: normal has mean 0 and variance 1", () => {
  const rng = new Rng(4);
  const n = 40_000;
  let sum = 0, sumSq = 0;
  for (let i = 0; i < n; i++) {
    const z = rng.normal();
    assert(Number.isFinite(z));
    sum += z;
    sumSq += z * z;
  }
  // SE of the mean 0.005, of the second moment √(2/n) ≈ 0.007; allow ~5 SE.
  assertAlmostEquals(sum / n, 0, 0.025);
  assertAlmostEquals(sumSq / n, 1, 0.035);
});

Deno.test("rng: shuffle is a uniform permutation", () => {
  const rng = new Rng(5);
  const items = Uint32Array.from({ length: 100 }, (_, i) => i);
  rng.shuffle(items);
  assertEquals(Array.from(items).sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i));
  assertNotEquals(Array.from(items), Array.from({ length: 100 }, (_, i) => i));
  const counts = new Map<string, number>();
  const n = 12_000;
  for (let i = 0; i < n; i++) {
    const perm = ["a", "b", "c", "d"];
    rng.shuffle(perm);
    counts.set(perm.join(""), (counts.get(perm.join("")) ?? 0) + 1);
  }
  assertEquals(counts.size, 24);
  const stat = uniformChiSquare([...counts.values()], n);
  assert(stat < chiSquareCritical(23), `chi-square ${stat.toFixed(1)}`);
});
