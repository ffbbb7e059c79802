import { assert, assertAlmostEquals, assertEquals } from "../_helpers/assert.ts";
import { aggregate, compareMixers, sampleStd } from "../../src/report/aggregate.ts";
import type { RunConfig, RunResult } from "../../src/train/result.ts";
import { fakeConfig, fakeResult } from "../_helpers/results.ts";

function runs(base: Partial<RunConfig>, byLr: Record<string, number[]>): RunResult[] {
  return Object.entries(byLr).flatMap(([lr, scores]) =>
    scores.map((s, i) => fakeResult(fakeConfig({ ...base, lr: Number(lr), seed: 42 + i }), s))
  );
}

Deno.test("aggregate: mean over seeds per lr, best lr by that mean, sample std at the best lr", () => {
  const results = runs({ mixer: "based", dModel: 64, seqLen: 128, numKvPairs: 16 }, {
    "0.001": [0.5, 0.6, 0.7],
    "0.003": [0.9, 0.8, 1.0], // best mean 0.9, sample std 0.1 (population std would be 0.0816)
    "0.01": [0.95, 0.2, 0.3], // the best single run, but a worse mean
  });
  const { rows, notes } = aggregate(results);
  assertEquals(notes, []);
  assertEquals(rows.length, 1);
  const r = rows[0];
  assertEquals([r.mixer, r.dModel, r.seqLen, r.numKvPairs, r.bestLr, r.nSeeds], ["based", 64, 128, 16, 0.003, 3]);
  assertAlmostEquals(r.mean, 0.9, 1e-12);
  assertAlmostEquals(r.std!, 0.1, 1e-12);
  assertEquals(r.lrs.map((l) => l.lr), [0.001, 0.003, 0.01]);
  assertAlmostEquals(r.lrs[0].mean, 0.6, 1e-12);
  assertEquals(r.scores.length, 9); // the EVP pool: all lr × seed runs
  assertEquals(sampleStd([1]), null);
  assertAlmostEquals(sampleStd([1, 2, 3, 4])!, Math.sqrt(5 / 3), 1e-15);
});

Deno.test("aggregate: ties keep the smaller lr; one seed has no std; cells are keyed by (mixer, d, L, N)", () => {
  const tie = runs({ mixer: "rebased" }, { "0.01": [0.4, 0.6], "0.001": [0.6, 0.4] });
  const single = runs({ mixer: "attention" }, { "0.001": [0.3] });
  const ablation = runs({ mixer: "rebased", seqLen: 128, numKvPairs: 8 }, { "0.001": [0.99, 0.97] });
  const { rows } = aggregate([...tie, ...single, ...ablation]);
  // Sorted by L, N, mixer (paper order), d.
  assertEquals(rows.map((r) => `${r.mixer}/${r.numKvPairs}`), ["rebased/8", "attention/16", "rebased/16"]);
  assertEquals(rows[2].bestLr, 0.001);
  assertEquals(rows[1].std, null);
  assertEquals(rows[1].nSeeds, 1);
  assertAlmostEquals(rows[0].mean, 0.98, 1e-12);
});

Deno.test("aggregate: errored runs are excluded, nan runs count, mixed configs and uneven seeds are noted", () => {
  const base = { mixer: "based", dModel: 32 };
  const results = [
    ...runs(base, { "0.001": [0.5, 0.7] }),
    fakeResult(fakeConfig({ ...base, lr: 0.001, seed: 99 }), 0, { status: "error" }),
    fakeResult(fakeConfig({ ...base, lr: 0.003, seed: 42 }), 0.9, { status: "nan", stopReason: "nan at step 5" }),
    fakeResult(fakeConfig({ ...base, lr: 0.003, seed: 43, epochs: 8 }), 0.8),
  ];
  const { rows, notes } = aggregate(results);
  assertEquals(rows.length, 1);
  assertEquals(rows[0].bestLr, 0.003);
  assertAlmostEquals(rows[0].mean, 0.85, 1e-12);
  assertEquals(rows[0].scores.length, 4);
  assert(notes.some((n) => n.startsWith("1 run without a score")), notes.join("\n"));
  assert(notes.some((n) => n.includes("runs differ in epochs")), notes.join("\n"));
  const uneven = aggregate(runs(base, { "0.001": [0.5, 0.7], "0.003": [0.2] })).notes;
  assert(uneven.some((n) => n.includes("different numbers of seeds")), uneven.join("\n"));
});

Deno.test("aggregate: std is clipped to [0, 1]", () => {
  // Scores outside [0, 1] cannot come from accuracy, but the clip keeps error bars in range regardless.
  const { rows } = aggregate(runs({}, { "0.001": [-1, 2] }));
  assertEquals(rows[0].std, 1);
});

Deno.test("aggregate: mixer order follows the paper's list, unknown names last", () => {
  assertEquals(["zeta", "rebased", "attention", "based", "alpha"].sort(compareMixers), [
    "attention",
    "based",
    "rebased",
    "alpha",
    "zeta",
  ]);
});
