import { assert, assertEquals, assertThrows } from "../_helpers/assert.ts";
import { UsageError } from "../../src/cli/_common.ts";
import { expandGrid, parseSweepConfig, planRuns } from "../../src/sweep/grid.ts";
import { parseShard, selectShard } from "../../src/sweep/shard.ts";

const grid = planRuns(expandGrid(parseSweepConfig({
  mixers: ["based", "rebased", "attention"],
  dModels: [16, 32, 64],
  sequences: { seqLens: [64, 128, 256], numKvPairs: "paper" },
  lrs: [1e-3, 3e-3],
  seeds: [1, 2, 3],
  trainExamples: 10,
  testExamples: 10,
  epochs: 1,
  batchSize: 8,
  vocabSize: 8192,
  dataSeed: 1,
  earlyStopAccuracy: 0.99,
})));

Deno.test("shard: parse i/n", () => {
  assertEquals(parseShard("0/1"), { index: 0, count: 1 });
  assertEquals(parseShard(" 3 / 8 "), { index: 3, count: 8 });
  for (const bad of ["1/1", "4/4", "-1/4", "0/0", "a/b", "1", "1/2/3", "1.5/4", ""]) {
    assertThrows(() => parseShard(bad), /--shard/, bad);
    try {
      parseShard(bad);
    } catch (e) {
      assert(e instanceof UsageError, `${bad}: ${e}`);
    }
  }
  assertThrows(() => parseShard("4/4"), /0-based and must be < 4/);
  assertThrows(() => selectShard([1, 2], { index: 2, count: 2 }), /invalid shard/);
});

Deno.test("shard: the shards of any n partition the grid (union = grid, no overlap), balanced to within one run", () => {
  assertEquals(grid.length, 162);
  for (const n of [1, 2, 3, 4, 5, 7, 16, 161, 162, 200]) {
    const shards = Array.from({ length: n }, (_, i) => selectShard(grid, { index: i, count: n }));
    const ids = shards.flat().map((r) => r.runId);
    assertEquals(ids.length, grid.length, `n=${n}: total`);
    assertEquals(new Set(ids).size, grid.length, `n=${n}: overlap`);
    assertEquals(new Set(ids), new Set(grid.map((r) => r.runId)), `n=${n}: union`);
    const sizes = shards.map((s) => s.length);
    assert(Math.max(...sizes) - Math.min(...sizes) <= 1, `n=${n}: sizes ${sizes}`);
    // Deterministic: the same shard twice is the same list, in grid order.
    assertEquals(selectShard(grid, { index: n - 1, count: n }), shards[n - 1]);
    for (const s of shards) for (let k = 1; k < s.length; k++) assert(s[k - 1].index < s[k].index);
  }
});

Deno.test("shard: every shard gets a similar mix of sequence lengths (cost balance)", () => {
  for (const n of [2, 4]) {
    for (let i = 0; i < n; i++) {
      const shard = selectShard(grid, { index: i, count: n });
      for (const L of [64, 128, 256]) {
        const share = shard.filter((r) => r.config.seqLen === L).length / shard.length;
        assert(Math.abs(share - 1 / 3) < 0.05, `shard ${i}/${n} L=${L}: ${share}`);
      }
    }
  }
});
