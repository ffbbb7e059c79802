import { assert, assertAlmostEquals, assertEquals, assertThrows } from "../_helpers/assert.ts";
import { evpCurve, evpWithoutReplacement, expectedMaxPerformance } from "../../src/report/evp.ts";

Deno.test("EVP: hand-computed values for scores [0.2, 0.5, 0.9]", () => {
  const scores = [0.9, 0.2, 0.5]; // order must not matter
  // n = 1: the mean; Var(1) is the population variance.
  const e1 = expectedMaxPerformance(scores, 1);
  assertAlmostEquals(e1.mean, (0.2 + 0.5 + 0.9) / 3, 1e-15);
  const m1 = 1.6 / 3;
  assertAlmostEquals(e1.std, Math.sqrt(((0.2 - m1) ** 2 + (0.5 - m1) ** 2 + (0.9 - m1) ** 2) / 3), 1e-15);
  // n = 2: weights (1/3)² − 0 = 1/9, (2/3)² − (1/3)² = 3/9, 1 − (2/3)² = 5/9.
  const e2 = expectedMaxPerformance(scores, 2);
  const m2 = (0.2 * 1 + 0.5 * 3 + 0.9 * 5) / 9; // 6.2 / 9
  assertAlmostEquals(e2.mean, m2, 1e-15);
  assertAlmostEquals(e2.mean, 0.68888888888888889, 1e-15);
  assertAlmostEquals(e2.std, Math.sqrt(((0.2 - m2) ** 2 * 1 + (0.5 - m2) ** 2 * 3 + (0.9 - m2) ** 2 * 5) / 9), 1e-15);
  // n = 3: weights 1/27, 7/27, 19/27.
  assertAlmostEquals(expectedMaxPerformance(scores, 3).mean, (0.2 * 1 + 0.5 * 7 + 0.9 * 19) / 27, 1e-15);
  // Large n approaches the max (the gap is (0.9 − 0.5)(2/3)^n + (0.5 − 0.2)(1/3)^n).
  const e50 = expectedMaxPerformance(scores, 50);
  assert(e50.mean < 0.9 && 0.9 - e50.mean < 1e-8, String(e50.mean));
  assert(e50.std < 1e-3);
});

Deno.test("EVP: the curve is non-decreasing from the mean to the max; degenerate pools", () => {
  const scores = [0.1, 0.95, 0.3, 0.3, 0.72, 0.5, 0.05, 0.88];
  const curve = evpCurve(scores, 40);
  assertEquals(curve.length, 40);
  assertEquals(curve.map((p) => p.n), Array.from({ length: 40 }, (_, i) => i + 1));
  for (let i = 1; i < curve.length; i++) assert(curve[i].mean >= curve[i - 1].mean - 1e-15);
  assertAlmostEquals(curve[0].mean, scores.reduce((a, b) => a + b) / scores.length, 1e-15);
  assert(Math.max(...scores) - curve[39].mean < 1e-2);
  assertEquals(evpCurve(scores).length, scores.length); // default: n = 1..N
  // A single score: EVP is that score with no spread; NaN scores are ignored.
  assertEquals(expectedMaxPerformance([0.4, NaN], 5), { mean: 0.4, std: 0 });
  assertThrows(() => expectedMaxPerformance([], 1), /at least one/);
  assertThrows(() => expectedMaxPerformance([0.5], 0), /n must be/);
});

Deno.test("EVP: unbiased without-replacement estimator (Dodge et al. 2021)", () => {
  const scores = [0.2, 0.5, 0.9];
  assertAlmostEquals(evpWithoutReplacement(scores, 1)!, 1.6 / 3, 1e-15);
  // n = 2: Σ_{i=2..3} v_(i) C(i−1, 1) / C(3, 2) = (0.5·1 + 0.9·2) / 3.
  assertAlmostEquals(evpWithoutReplacement(scores, 2)!, (0.5 + 1.8) / 3, 1e-15);
  assertEquals(evpWithoutReplacement(scores, 3), 0.9);
  assertEquals(evpWithoutReplacement(scores, 4), null);
  // It equals the average over all n-subsets of their max (brute force on 6 scores).
  const six = [0.31, 0.07, 0.66, 0.5, 0.93, 0.2];
  for (let n = 1; n <= 6; n++) {
    let sum = 0;
    let count = 0;
    for (let mask = 0; mask < 64; mask++) {
      const pick = six.filter((_, i) => mask & (1 << i));
      if (pick.length !== n) continue;
      sum += Math.max(...pick);
      count++;
    }
    assertAlmostEquals(evpWithoutReplacement(six, n)!, sum / count, 1e-12, `n=${n}`);
  }
  // Large pools stay finite (binomials computed in log space).
  const many = Array.from({ length: 400 }, (_, i) => i / 400);
  const u = evpWithoutReplacement(many, 200)!;
  assert(Number.isFinite(u) && u > 0.99 * (399 / 400) - 0.01 && u <= 399 / 400, String(u));
});
