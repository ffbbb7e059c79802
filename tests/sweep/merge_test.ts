import { capture } from "../_helpers/console.ts";
import { assert, assertEquals, assertRejects } from "../_helpers/assert.ts";
import { expandGrid, parseSweepConfig, planRuns } from "../../src/sweep/grid.ts";
import { dedupeResults, mergeResults, sortResults } from "../../src/sweep/merge.ts";
import { appendResult, readResults, type SourcedResult } from "../../src/sweep/results_file.ts";
import { mergeCommand } from "../../src/cli/merge.ts";
import { fakeResult } from "../_helpers/results.ts";

const sweepConfig = {
  mixers: ["based", "rebased"],
  dModels: [32],
  sequences: [{ seqLen: 64, numKvPairs: 8 }],
  lrs: [1e-3, 3e-3],
  seeds: [1, 2],
  trainExamples: 100,
  testExamples: 10,
  epochs: 2,
  batchSize: 10,
  vocabSize: 8192,
  dataSeed: 42,
  earlyStopAccuracy: 0.99,
};
const grid = planRuns(expandGrid(parseSweepConfig(sweepConfig)));
const src = (result: ReturnType<typeof fakeResult>, source: string): SourcedResult => ({ result, source });

Deno.test("merge: identical duplicates keep one; differing outcomes prefer a finished run, then the later one", () => {
  const a = fakeResult(grid[0].config, 0.5);
  const errored = fakeResult(grid[1].config, 0, { status: "error", finishedAt: "2025-02-01T00:00:00.000Z" });
  const ok = fakeResult(grid[1].config, 0.7);
  const early = fakeResult(grid[2].config, 0.1, { finishedAt: "2025-01-01T00:00:00.000Z" });
  const late = fakeResult(grid[2].config, 0.2, { finishedAt: "2025-03-01T00:00:00.000Z" });
  const d = dedupeResults([
    src(a, "s0"),
    src(a, "s1"),
    src(errored, "s0"),
    src(ok, "s1"),
    src(late, "s0"),
    src(early, "s1"),
  ]);
  assertEquals(d.results.map((r) => r.result), [a, ok, late]);
  assertEquals(d.conflicts, []);
  assertEquals(
    d.duplicates.map((x) => [x.runId, x.identical, x.sources]),
    [[a.runId, true, ["s0", "s1"]], [ok.runId, false, ["s1", "s0"]], [late.runId, false, ["s0", "s1"]]],
  );
});

Deno.test("merge: one runId with different configs is a conflict; the record whose config hashes to it is kept", () => {
  const genuine = fakeResult(grid[0].config, 0.5);
  const forged = { ...fakeResult(grid[1].config, 0.9), runId: genuine.runId };
  const d = dedupeResults([src(forged, "bad"), src(genuine, "good")]);
  assertEquals(d.results.map((r) => r.result), [genuine]);
  assertEquals(d.conflicts, [{ runId: genuine.runId, sources: ["bad", "good"], kept: "good" }]);
  assertEquals(d.duplicates, []);
});

Deno.test("merge: missing and extra runs against the grid; output in grid order", () => {
  const other = fakeResult({ ...grid[0].config, dModel: 99 }, 0.3);
  const failed = fakeResult(grid[3].config, 0, { status: "error" });
  const records = [grid[5], grid[0], grid[2]].map((g) => src(fakeResult(g.config), "x"));
  const m = mergeResults([...records, src(other, "y"), src(failed, "z")], grid);
  assertEquals(m.missing.map((g) => g.index), [1, 4, 6, 7]);
  assertEquals(m.extra, [other]);
  assertEquals(m.failed, [failed]);
  assertEquals(m.results.map((r) => r.runId), [
    grid[0].runId,
    grid[2].runId,
    grid[3].runId,
    grid[5].runId,
    other.runId,
  ]);
  // Without a grid: sorted by config, independent of input order.
  const shuffled = mergeResults([...records].reverse()).results;
  assertEquals(shuffled, sortResults(records.map((r) => r.result)));
  assertEquals(shuffled.map((r) => r.runId), [grid[0].runId, grid[2].runId, grid[5].runId]);
});

Deno.test("mqar merge: combines shard files, reports duplicates and missing runs, exit code by completeness", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mqar-merge-" });
  try {
    await Deno.writeTextFile(`${dir}/sweep.json`, JSON.stringify(sweepConfig));
    await Deno.mkdir(`${dir}/shards`);
    const s0 = `${dir}/shards/results-0-of-2.jsonl`;
    const s1 = `${dir}/shards/results-1-of-2.jsonl`;
    for (const i of [0, 2, 4]) await appendResult(s0, fakeResult(grid[i].config, 0.4));
    for (const i of [1, 3, 4]) await appendResult(s1, fakeResult(grid[i].config, 0.4)); // grid[4] twice, identical
    await Deno.writeTextFile(s1, '{"schema":1,"runId":"torn', { append: true });

    const out = `${dir}/merged.jsonl`;
    const r = await capture(() => mergeCommand.run(["--out", out, "--config", `${dir}/sweep.json`, `${dir}/shards`]));
    assertEquals(r.code, 1, r.out); // grid runs 5, 6, 7 missing
    assert(r.out.includes("read 6 records from 2 files; wrote 5"), r.out);
    assert(r.out.includes("1 duplicated run ids (1 identical copies"), r.out);
    assert(r.out.includes("8 runs, 5 with a record, 3 missing"), r.out);
    assert(r.out.includes(`  #5 ${grid[5].runId} rebased d=32 L=64 N=8 lr=0.001 seed=2\n`), r.out);
    assert(r.out.includes("warning:") && r.out.includes("ignored a torn last line"), r.out);
    assertEquals((await readResults(out)).results.map((x) => x.runId), [0, 1, 2, 3, 4].map((i) => grid[i].runId));

    const allowed = await capture(() =>
      mergeCommand.run(["--out", out, "--config", `${dir}/sweep.json`, "--allow-missing", "--json", s0, s1])
    );
    assertEquals(allowed.code, 0);
    const report = JSON.parse(allowed.out);
    assertEquals(report.missing.map((m: { index: number }) => m.index), [5, 6, 7]);
    assertEquals(report.duplicates.length, 1);

    // Complete: add the missing runs; the merged file itself can be an input.
    for (const i of [5, 6, 7]) await appendResult(`${dir}/late.jsonl`, fakeResult(grid[i].config, 0.9));
    const done = await capture(() =>
      mergeCommand.run(["--out", out, "--config", `${dir}/sweep.json`, out, `${dir}/late.jsonl`])
    );
    assertEquals(done.code, 0, done.out);
    assertEquals((await readResults(out)).results.length, 8);

    // Corruption in the middle of an input is an error, and nothing is written.
    await Deno.writeTextFile(`${dir}/corrupt.jsonl`, `x\n${JSON.stringify(fakeResult(grid[0].config))}\n`);
    await assertRejects(
      () => mergeCommand.run(["--out", `${dir}/m2.jsonl`, `${dir}/corrupt.jsonl`]),
      /corrupt\.jsonl:1/,
    );
    assertEquals(await Deno.stat(`${dir}/m2.jsonl`).then(() => true, () => false), false);

    await assertRejects(() => mergeCommand.run([s0]), /--out is required/);
    await assertRejects(() => mergeCommand.run(["--out", out]), /at least one INPUT/);
    await assertRejects(() => mergeCommand.run(["--out", `${dir}/outdir`, s0]), /--out/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
