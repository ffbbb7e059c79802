import { capture } from "../_helpers/console.ts";
import { assert, assertEquals, assertRejects } from "../_helpers/assert.ts";
import { makeSweepCommand, sweepCommand } from "../../src/cli/sweep.ts";
import type { RunConfig } from "../../src/train/result.ts";
import type { RunOne } from "../../src/sweep/runner.ts";
import { readResults } from "../../src/sweep/results_file.ts";
import { fakeResult } from "../_helpers/results.ts";

const TINY = new URL("../../configs/sweeps/cpu-tiny.json", import.meta.url).pathname;

Deno.test("mqar sweep: dry run lists the runs and the cost without a trainer", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mqar-sweep-" });
  try {
    const r = await capture(() =>
      sweepCommand.run(["--config", TINY, "--results", dir, "--dry-run", "--tokens-per-s", "2048"])
    );
    assertEquals(r.code, 0, r.err);
    const lines = r.out.trim().split("\n");
    assertEquals(lines.filter((l) => / todo /.test(l)).length, 2, r.out);
    assert(r.out.includes("2 grid runs; 0 done, 2 to run"), r.out);
    // 64 examples × L 16 × 2 epochs = 2048 tokens per run; 2 runs at 2048 tokens/s = 2 s.
    assert(r.out.includes("training tokens to run: 4.1k (of 4.1k"), r.out);
    assert(r.out.includes("estimated time: 2.0 s for 2 of 2 runs"), r.out);

    const j = await capture(() =>
      sweepCommand.run(["--config", TINY, "--results", dir, "--dry-run", "--json", "--shard", "1/2"])
    );
    const plan = JSON.parse(j.out);
    assertEquals([plan.total, plan.todo, plan.gridSize], [1, 1, 2]);
    assertEquals(plan.resultsFile, `${dir}/results-1-of-2.jsonl`);
    assertEquals(plan.estimatedHours, null);
    // A dry run writes nothing.
    assertEquals([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mqar sweep: trains through the injected trainer, then resumes with nothing left", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mqar-sweep-" });
  try {
    const calls: RunConfig[] = [];
    let loads = 0;
    const runOne: RunOne = (cfg) => {
      calls.push(cfg);
      return Promise.resolve(fakeResult(cfg, 0.25));
    };
    const command = makeSweepCommand(() => {
      loads++;
      return Promise.resolve(runOne);
    });
    const first = await capture(() => command.run(["--config", TINY, "--results", `${dir}/r.jsonl`]));
    assertEquals(first.code, 0, first.err);
    assertEquals(calls.map((c) => c.mixer), ["based", "rebased"]);
    assertEquals(loads, 1);
    assert(first.err.includes("[2/2] ok: best accuracy 0.2500"), first.err);
    assertEquals((await readResults(`${dir}/r.jsonl`)).results.length, 2);

    const second = await capture(() => command.run(["--config", TINY, "--results", `${dir}/r.jsonl`, "--json"]));
    assertEquals(second.code, 0);
    const summary = JSON.parse(second.out);
    assertEquals([summary.completed, summary.skipped], [0, 2]);
    assertEquals(loads, 1); // nothing to train: the trainer is never loaded

    // A trainer that cannot start (no GPU): the error surfaces and no record is written.
    const broken = makeSweepCommand(() => Promise.reject(new Error("no adapter")));
    await assertRejects(
      () => capture(() => broken.run(["--config", TINY, "--results", `${dir}/other.jsonl`])),
      /no adapter/,
    );
    assertEquals(await readResults(`${dir}/other.jsonl`).catch(() => null), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mqar sweep: user mistakes are reported before anything runs", async () => {
  await assertRejects(() => sweepCommand.run(["--results", "x"]), /--config is required/);
  await assertRejects(() => sweepCommand.run(["--config", TINY]), /--out \(or --results\) is required/);
  await assertRejects(() => sweepCommand.run(["--config", TINY, "--results", "x", "--shard", "2/2"]), /--shard/);
  await assertRejects(() => sweepCommand.run(["--config", TINY, "--results", "x", "--bogus"]), /known flags for sweep/);
  await assertRejects(
    () => sweepCommand.run(["--config", TINY, "--results", "x", "--dry-run", "--tokens-per-s", "-1"]),
    /--tokens-per-s/,
  );
  const dir = await Deno.makeTempDir({ prefix: "mqar-sweep-" });
  try {
    const cfg = JSON.parse(await Deno.readTextFile(TINY));
    await Deno.writeTextFile(`${dir}/bad.json`, JSON.stringify({ ...cfg, dModels: [8], lrs: [0.001] }));
    // d_model 8 passes the grid schema but the trainer's model validator rejects it for Based/ReBased.
    await assertRejects(
      () => sweepCommand.run(["--config", `${dir}/bad.json`, "--results", dir, "--dry-run"]),
      /run based d=8 L=16: .*dModel/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
