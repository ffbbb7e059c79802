import { assert, assertEquals, assertRejects } from "../_helpers/assert.ts";
import type { RunConfig, RunResult } from "../../src/train/result.ts";
import { expandGrid, parseSweepConfig, planRuns } from "../../src/sweep/grid.ts";
import { appendResult, readResults, readResultsAt } from "../../src/sweep/results_file.ts";
import {
  firstEstimate,
  planSweep,
  type RunOne,
  runSweep,
  type SweepEvent,
  throughputFromResults,
} from "../../src/sweep/runner.ts";
import { selectShard } from "../../src/sweep/shard.ts";
import { computeRunId } from "../../src/train/run_id.ts";
import { fakeResult } from "../_helpers/results.ts";

const runs = expandGrid(parseSweepConfig({
  mixers: ["based", "rebased"],
  dModels: [32],
  sequences: [{ seqLen: 64, numKvPairs: 8 }],
  lrs: [1e-3, 3e-3, 1e-2],
  seeds: [1],
  trainExamples: 100,
  testExamples: 10,
  epochs: 2,
  batchSize: 10,
  vocabSize: 8192,
  dataSeed: 42,
  earlyStopAccuracy: 0.99,
}));

/** A fake trainer: records which configs it was asked for; the score encodes the lr so results are traceable. */
function fakeTrainer(fail?: (c: RunConfig) => boolean): { runOne: RunOne; calls: RunConfig[] } {
  const calls: RunConfig[] = [];
  return {
    calls,
    runOne: (cfg) => {
      calls.push(cfg);
      if (fail?.(cfg)) return Promise.reject(new Error(`boom ${cfg.mixer} ${cfg.lr}`));
      return Promise.resolve(fakeResult(cfg, cfg.lr * 10));
    },
  };
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "mqar-runner-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("runner: runs everything in order and appends one record per run", async () => {
  await withTempDir(async (dir) => {
    const t = fakeTrainer();
    const events: SweepEvent["kind"][] = [];
    const path = `${dir}/results.jsonl`;
    const summary = await runSweep({
      runs,
      resultsPath: path,
      runOne: t.runOne,
      onProgress: (e) => events.push(e.kind),
    });
    assertEquals(t.calls, runs);
    assertEquals(summary.completed.length, 6);
    assertEquals(summary.skipped, 0);
    assertEquals(summary.file, path);
    assertEquals(events, ["resume", ...Array(6).fill(["start", "finish"]).flat()]);
    const read = await readResults(path);
    assertEquals(read.results.map((r) => r.runId), runs.map(computeRunId));
  });
});

Deno.test("runner: resume after a crash mid-write loses no finished run and reruns only the missing ones", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/results.jsonl`;
    // Simulated crash: runs 0, 1 and 3 finished; run 4 was being written when the process died.
    for (const i of [0, 1, 3]) await appendResult(path, fakeResult(runs[i], 0.9));
    const half = JSON.stringify(fakeResult(runs[4], 0.9));
    await Deno.writeTextFile(path, half.slice(0, half.length >> 1), { append: true });

    const t = fakeTrainer();
    const events: SweepEvent[] = [];
    const summary = await runSweep({ runs, resultsPath: path, runOne: t.runOne, onProgress: (e) => events.push(e) });
    assertEquals(t.calls, [runs[2], runs[4], runs[5]]);
    assertEquals(summary.skipped, 3);
    const resume = events[0];
    assert(resume.kind === "resume");
    assertEquals([resume.done, resume.todo], [3, 3]);
    assertEquals(resume.warnings.length, 1); // the torn line was noticed...
    assert(events.some((e) => e.kind === "warning" && e.message.includes("truncated")), "...and repaired");

    const read = await readResults(path);
    assertEquals(read.warnings, []);
    assertEquals(read.results.length, 6);
    assertEquals(new Set(read.results.map((r) => r.runId)), new Set(runs.map(computeRunId)));
    // The earlier records are untouched (score 0.9), the new ones come from this run (score = 10·lr).
    assertEquals(read.results.slice(0, 3).map((r) => r.bestAccuracy), [0.9, 0.9, 0.9]);
    assertEquals(read.results.slice(3).map((r) => r.bestAccuracy), [runs[2], runs[4], runs[5]].map((c) => c.lr * 10));

    // Nothing left: a third invocation trains nothing.
    const again = fakeTrainer();
    assertEquals((await runSweep({ runs, resultsPath: path, runOne: again.runOne })).skipped, 6);
    assertEquals(again.calls, []);
  });
});

Deno.test("runner: a corrupt line in the middle stops the sweep before any training", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/results.jsonl`;
    await Deno.writeTextFile(
      path,
      `${JSON.stringify(fakeResult(runs[0]))}\nnot json\n${JSON.stringify(fakeResult(runs[1]))}\n`,
    );
    const t = fakeTrainer();
    await assertRejects(
      () => runSweep({ runs, resultsPath: path, runOne: t.runOne }),
      /:2: line 2 is not a result record/,
    );
    assertEquals(t.calls, []);
  });
});

Deno.test("runner: a throwing trainer stops the sweep (finished results kept) unless continueOnError", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/results.jsonl`;
    const failing = fakeTrainer((c) => c.lr === 3e-3);
    await assertRejects(() => runSweep({ runs, resultsPath: path, runOne: failing.runOne }), /boom based 0.003/);
    assertEquals((await readResults(path)).results.length, 1);

    const path2 = `${dir}/results2.jsonl`;
    const failing2 = fakeTrainer((c) => c.lr === 3e-3);
    const s = await runSweep({ runs, resultsPath: path2, runOne: failing2.runOne, continueOnError: true });
    assertEquals(s.failed.map((f) => f.run.config), [runs[1], runs[4]]);
    assertEquals(s.completed.length, 4);
    // The failed runs are not recorded, so the next invocation runs exactly them.
    const t = fakeTrainer();
    await runSweep({ runs, resultsPath: path2, runOne: t.runOne });
    assertEquals(t.calls, [runs[1], runs[4]]);
  });
});

Deno.test("runner: status 'error' records are retried; the grid's runId is enforced; abort stops between runs", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/results.jsonl`;
    await appendResult(path, fakeResult(runs[0], 0, { status: "error", stopReason: "device lost" }));
    await appendResult(path, fakeResult(runs[1], 0.2, { status: "nan", stopReason: "nan at step 3" }));
    const controller = new AbortController();
    const calls: RunConfig[] = [];
    const runOne: RunOne = (cfg, ctx) => {
      calls.push(cfg);
      assertEquals(ctx.runId, computeRunId(cfg));
      if (calls.length === 2) controller.abort();
      // A trainer that computes its own (different) id: the runner stores the grid's.
      return Promise.resolve({ ...fakeResult(cfg, 0.5), runId: "trainer-own-id" } as RunResult);
    };
    const s = await runSweep({ runs, resultsPath: path, runOne, signal: controller.signal });
    assertEquals(calls, [runs[0], runs[2]]); // error retried, nan kept, stopped after the abort
    assert(s.aborted);
    const ids = (await readResults(path)).results.map((r) => r.runId);
    assertEquals(ids, [computeRunId(runs[0]), computeRunId(runs[1]), computeRunId(runs[0]), computeRunId(runs[2])]);
  });
});

Deno.test("runner: shards write separate files in a results directory and resume sees all of them", async () => {
  await withTempDir(async (dir) => {
    const planned = planRuns(runs);
    for (const index of [0, 1]) {
      const t = fakeTrainer();
      const shard = { index, count: 2 };
      const s = await runSweep({ runs: selectShard(planned, shard), resultsPath: dir, shard, runOne: t.runOne });
      assertEquals(s.file, `${dir}/results-${index}-of-2.jsonl`);
      assertEquals(t.calls.length, 3);
    }
    const all = await readResultsAt([dir]);
    assertEquals(new Set(all.results.map((r) => r.result.runId)), new Set(planned.map((r) => r.runId)));
    // Re-sharding (3 shards) or running unsharded finds everything done.
    const t = fakeTrainer();
    const s = await runSweep({ runs: planned, resultsPath: dir, runOne: t.runOne });
    assertEquals([s.skipped, t.calls.length], [6, 0]);
  });
});

Deno.test("runner: dry-run plan counts done runs, training tokens and estimated hours", () => {
  const done = new Set([computeRunId(runs[0]), computeRunId(runs[5])]);
  const perRun = 100 * 64 * 2;
  const noEstimate = planSweep(runs, done);
  assertEquals([noEstimate.total, noEstimate.done, noEstimate.todo], [6, 2, 4]);
  assertEquals(noEstimate.totalTrainTokens, 6 * perRun);
  assertEquals(noEstimate.todoTrainTokens, 4 * perRun);
  assertEquals(noEstimate.estimatedHours, null);
  assertEquals(noEstimate.runs.map((r) => r.done), [true, false, false, false, false, true]);

  // Measured throughput for "based" only, a constant fallback for the rest.
  const measured = throughputFromResults([
    fakeResult(runs[0], 0.5, { trainTokensPerS: 100 }),
    fakeResult(runs[1], 0.5, { trainTokensPerS: 300 }),
    fakeResult(runs[2], 0.5, { status: "error", trainTokensPerS: 1 }),
  ]);
  assertEquals(measured(runs[2]), 200);
  assertEquals(measured(runs[3]), undefined);
  const plan = planSweep(runs, done, firstEstimate(measured, () => 400));
  // To do: based lr 3e-3, 1e-2 at 200 tok/s; rebased lr 1e-3, 3e-3 at 400 tok/s.
  assertEquals(plan.estimatedHours, (2 * perRun / 200 + 2 * perRun / 400) / 3600);
  assertEquals(plan.runsWithoutEstimate, 0);
  const partial = planSweep(runs, done, measured);
  assertEquals(partial.runsWithoutEstimate, 2);
});
