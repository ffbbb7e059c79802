import { bootstrapRatio, decideAb, mannWhitney, median } from "../../src/bench/ab_stats.ts";
import { Rng } from "../../src/data/rng.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";

const noisy = (rng: Rng, n: number, base: number, spread: number) =>
  Array.from({ length: n }, () => base * (1 + spread * rng.normal()));

/** A heavy tail: mostly a tight spread, sometimes a slow outlier (another job took the CPU). */
const heavy = (rng: Rng, n: number, base: number) =>
  Array.from({ length: n }, () => base * (1 + 0.05 * rng.normal()) * (rng.uniform() < 0.2 ? 1 + 2 * rng.uniform() : 1));

Deno.test("A/B statistics: identical samples are unchanged with ratio 1", () => {
  const a = [1, 1.1, 0.9, 1.05, 0.95];
  const d = decideAb(a, [...a]);
  assertEquals([d.status, d.ratio], ["unchanged", 1]);
  assert(d.lo <= 1 && d.hi >= 1);
  assertEquals(median([3, 1, 2]), 2);
  assertEquals(median([4, 1, 2, 3]), 2.5);
  // Deterministic for a seed.
  assertEquals(bootstrapRatio(a, [1.2, 1.3, 1.25, 1.1, 1.4]), bootstrapRatio(a, [1.2, 1.3, 1.25, 1.1, 1.4]));
});

Deno.test("A/B statistics: a 2× slowdown is a regression, a 2× speed-up an improvement, at 5 samples each", () => {
  const rng = new Rng(7);
  for (let trial = 0; trial < 50; trial++) {
    const a = noisy(rng, 5, 1, 0.1);
    assertEquals(decideAb(a, noisy(rng, 5, 2, 0.1)).status, "regression", `trial ${trial}`);
    assertEquals(decideAb(a, noisy(rng, 5, 0.5, 0.1)).status, "improvement", `trial ${trial}`);
  }
  const m = mannWhitney([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]);
  assert(m.p < 0.02, `p ${m.p}`);
  assert(mannWhitney([1, 2, 3], [1, 2, 3]).p > 0.9);
});

Deno.test("A/B statistics: noise alone, heavy-tailed or wide, rarely fails the gate (A/A)", () => {
  const rng = new Rng(11);
  let alarms = 0;
  const trials = 400;
  for (let t = 0; t < trials; t++) {
    const d = t % 2
      ? decideAb(heavy(rng, 5, 1), heavy(rng, 5, 1), 0.15, { seed: t })
      : decideAb(noisy(rng, 5, 1, 0.25), noisy(rng, 5, 1, 0.25), 0.15, { seed: t });
    if (d.status === "regression") alarms++;
  }
  assert(alarms / trials < 0.05, `${alarms} false alarms in ${trials} A/A trials`);
  // A real 15% slowdown with mild noise is not reliably detectable at 5 samples: the gate errs towards passing.
  const subtle = decideAb(noisy(rng, 5, 1, 0.1), noisy(rng, 5, 1.15, 0.1));
  assert(subtle.status !== "improvement");
});
