import { assert, assertEquals, assertRejects, assertThrows } from "../_helpers/assert.ts";
import {
  DEFAULT_MIXERS,
  expandGrid,
  loadSweepConfig,
  paperMicroBatchSize,
  paperNumKvPairs,
  parseSweepConfig,
  planRuns,
  SweepConfigError,
} from "../../src/sweep/grid.ts";
import { MIXERS } from "../../src/model/config.ts";
import { checkRun, loadGrid } from "../../src/cli/sweep.ts";

const PRESETS = new URL("../../configs/sweeps/", import.meta.url);

function baseConfig(): Record<string, unknown> {
  return {
    mixers: ["based", "rebased"],
    dModels: [32, 64],
    sequences: [{ seqLen: 64, numKvPairs: 8 }, { seqLen: 128, numKvPairs: 16 }],
    lrs: [1e-3, 3e-3],
    seeds: [1, 2],
    trainExamples: 100,
    testExamples: 20,
    epochs: 2,
    batchSize: 32,
    vocabSize: 8192,
    dataSeed: 42,
    earlyStopAccuracy: 0.99,
  };
}

/** The SweepConfigError issues of a bad config (fails the test if it parses). */
function issuesOf(raw: unknown): { path: string; message: string }[] {
  try {
    parseSweepConfig(raw);
  } catch (e) {
    if (e instanceof SweepConfigError) return e.issues;
    throw e;
  }
  throw new Error("expected a SweepConfigError");
}

function expectIssue(raw: unknown, path: string, ...fragments: string[]): void {
  const issues = issuesOf(raw);
  const hit = issues.find((i) => i.path === path);
  assert(hit, `no issue at "${path}"; got ${JSON.stringify(issues)}`);
  for (const f of fragments) assert(hit.message.includes(f), `issue at ${path} "${hit.message}" lacks "${f}"`);
}

Deno.test("grid: expansion count and order (sequences > d > mixer > lr > seed)", () => {
  const runs = expandGrid(parseSweepConfig(baseConfig()));
  assertEquals(runs.length, 2 * 2 * 2 * 2 * 2);
  const key = (i: number) => {
    const r = runs[i];
    return [r.seqLen, r.dModel, r.mixer, r.lr, r.seed];
  };
  assertEquals(key(0), [64, 32, "based", 1e-3, 1]);
  assertEquals(key(1), [64, 32, "based", 1e-3, 2]);
  assertEquals(key(2), [64, 32, "based", 3e-3, 1]);
  assertEquals(key(4), [64, 32, "rebased", 1e-3, 1]);
  assertEquals(key(8), [64, 64, "based", 1e-3, 1]);
  assertEquals(key(16), [128, 32, "based", 1e-3, 1]);
  assertEquals(key(31), [128, 64, "rebased", 3e-3, 2]);
  // Defaults fill the RunConfig fields the sweep config left out.
  assertEquals(runs[0].powerA, 0.01);
  assertEquals(runs[0].randomNonQueries, false);
  assertEquals(runs[0].weightDecay, 0.1);
  assertEquals(runs[0].maxSteps, null);
  assertEquals(runs[0].microBatchSize, 32);
  assertEquals(runs[16].numKvPairs, 16);
  // Deterministic: expanding again gives the same runs and ids; ids are unique.
  assertEquals(planRuns(expandGrid(parseSweepConfig(baseConfig()))), planRuns(runs));
  assertEquals(new Set(planRuns(runs).map((r) => r.runId)).size, runs.length);
});

Deno.test("grid: kv-pair rules and micro-batch forms", () => {
  const paper = expandGrid(parseSweepConfig({
    ...baseConfig(),
    mixers: ["based"],
    dModels: [64],
    lrs: [1e-3],
    seeds: [1],
    batchSize: 512,
    trainExamples: 1024,
    sequences: { seqLens: [128, 256, 512, 1024, 2048], numKvPairs: "paper" },
    microBatchSize: "paper",
  }));
  assertEquals(paper.map((r) => r.numKvPairs), [16, 64, 128, 256, 512]);
  assertEquals(paper.map((r) => r.microBatchSize), [512, 512, 256, 128, 64]);
  assertEquals([128, 256].map(paperNumKvPairs), [16, 64]);
  assertEquals(paperMicroBatchSize(4096, 512), 32);
  assertEquals(paperMicroBatchSize(1024, 64), 64); // never above the batch

  const quarter = parseSweepConfig({ ...baseConfig(), sequences: { seqLens: [32, 128], numKvPairs: "L/4" } });
  assertEquals(quarter.sequences, [{ seqLen: 32, numKvPairs: 8 }, { seqLen: 128, numKvPairs: 32 }]);
  const fixed = parseSweepConfig({ ...baseConfig(), sequences: { seqLens: [256, 2048], numKvPairs: 32 } });
  assertEquals(fixed.sequences.map((s) => s.numKvPairs), [32, 32]);
  // One L with two N (Figure 1 next to the ablation) is allowed.
  const both = expandGrid(parseSweepConfig({
    ...baseConfig(),
    sequences: [{ seqLen: 256, numKvPairs: 64 }, { seqLen: 256, numKvPairs: 32 }],
  }));
  assertEquals(new Set(both.map((r) => r.numKvPairs)), new Set([64, 32]));
  const byLen = parseSweepConfig({ ...baseConfig(), microBatchSize: { "128": 8 } });
  assertEquals(byLen.microBatchSizes, { 64: 32, 128: 8 });
});

Deno.test("grid: presets expand to the paper's grids", async () => {
  const fig1 = await loadGrid(new URL("paper-figure1.json", PRESETS).pathname);
  assertEquals(fig1.runs.length, 7 * 4 * 5 * 4 * 5);
  assertEquals(fig1.config.mixers, ["conv_attention", "based", "rebased", "attention", "rwkv", "conv_rwkv", "mamba"]);
  const byL = new Map(fig1.runs.map((r) => [r.config.seqLen, r.config]));
  assertEquals([...byL.keys()], [128, 256, 512, 1024, 2048]);
  assertEquals([...byL.values()].map((c) => c.numKvPairs), [16, 64, 128, 256, 512]);
  assertEquals([...byL.values()].map((c) => c.microBatchSize), [512, 512, 256, 128, 64]);
  assertEquals(fig1.config.lrs, [5e-4, 1e-3, 3e-3, 1e-2]);
  assertEquals(fig1.config.seeds, [42, 43, 44, 45, 46]);
  assertEquals(fig1.runs[0].config.trainExamples, 100000);
  assertEquals(fig1.runs[0].config.epochs, 64);

  const ablation = await loadGrid(new URL("paper-table1-ablation.json", PRESETS).pathname);
  assertEquals(ablation.runs.length, 6 * 4 * 2 * 4 * 5);
  assert(ablation.runs.every((r) => r.config.numKvPairs === 32));
  assertEquals(new Set(ablation.runs.map((r) => r.config.dModel)), new Set([16, 24, 32, 48]));
  assertEquals(
    new Set(ablation.runs.map((r) => r.config.mixer)),
    new Set(["based", "rebased", "rebased_x2", "rebased_norm", "rebased_gamma", "rebased_gamma_beta"]),
  );

  // The CPU preset that trains every architecture: whatever the registry says is trainable.
  const all = await loadGrid(new URL("cpu-all-mixers.json", PRESETS).pathname);
  assertEquals(all.config.mixers, [...MIXERS]);

  const smoke = await loadGrid(new URL("cpu-smoke.json", PRESETS).pathname);
  const tiny = await loadGrid(new URL("cpu-tiny.json", PRESETS).pathname);
  assertEquals(smoke.config.mixers.length, 2);
  assertEquals(smoke.config.seeds.length, 2);
  assert(tiny.runs.length <= smoke.runs.length);
  const tokens = (runs: typeof tiny.runs) =>
    runs.reduce((s, r) => s + r.config.trainExamples * r.config.seqLen * r.config.epochs, 0);
  assert(tokens(tiny.runs) < tokens(smoke.runs));
});

Deno.test("grid: mixer list comes from the model's MIXERS", () => {
  assertEquals([...DEFAULT_MIXERS], [...MIXERS]);
  // A caller-supplied list replaces it.
  const c = parseSweepConfig({ ...baseConfig(), mixers: ["mamba"] }, { mixers: ["mamba"] });
  assertEquals(c.mixers, ["mamba"]);
});

Deno.test("grid validation: each bad value names its field, the value and what is allowed", () => {
  const b = baseConfig;
  expectIssue(
    { ...b(), mixers: ["based", "h3"] },
    "mixers[1]",
    '"h3"',
    "valid mixers: attention, conv_attention, based",
  );
  expectIssue(
    { ...b(), sequences: [{ seqLen: 64, numKvPairs: 17 }] },
    "sequences[0].numKvPairs",
    "got 17",
    "4·numKvPairs <= seqLen",
    "at most 16",
  );
  expectIssue({ ...b(), sequences: [{ seqLen: 63, numKvPairs: 4 }] }, "sequences[0].seqLen", "got 63", "even");
  expectIssue(
    { ...b(), sequences: { seqLens: [64, 66], numKvPairs: 20 } },
    "sequences.numKvPairs (at seqLen 64)",
    "got 20",
  );
  expectIssue({ ...b(), lrs: [-1e-3] }, "lrs[0]", "got -0.001", "> 0");
  expectIssue({ ...b(), lrs: [1e-3, 0] }, "lrs[1]", "got 0", "> 0");
  const { epochs: _, ...noEpochs } = b();
  expectIssue(noEpochs, "epochs", "missing", "integer >= 1");
  expectIssue({ ...b(), vocabSize: 128 }, "vocabSize", "got 128", "larger than every seqLen (seqLen 128)");
  expectIssue({ ...b(), lr: [1e-3] }, "lr", "unknown field");
  expectIssue({ ...b(), seeds: [1, 2, 1] }, "seeds[2]", "duplicate of seeds[0]");
  expectIssue({ ...b(), microBatchSize: 5 }, "microBatchSize (at seqLen 64)", "got 5", "divisor of batchSize 32");
  expectIssue({ ...b(), microBatchSize: { "100": 8 } }, "microBatchSize.100", "no sequence has seqLen 100");
  expectIssue({ ...b(), microBatchSize: { "64": 0 } }, "microBatchSize.64", "got 0");
  expectIssue({ ...b(), microBatchSize: "auto" }, "microBatchSize", '"auto"', '"paper"');
  expectIssue({ ...b(), sequences: { seqLens: [64], numKvPairs: "L/8" } }, "sequences.numKvPairs", '"L/8"', '"paper"');
  expectIssue({ ...b(), earlyStopAccuracy: 1.5 }, "earlyStopAccuracy", "got 1.5", "[0, 1]");
  expectIssue({ ...b(), dModels: [] }, "dModels", "non-empty");
  expectIssue({ ...b(), dModels: [64.5] }, "dModels[0]", "got 64.5", "integer");
  expectIssue({ ...b(), maxSteps: 0 }, "maxSteps", "got 0");
  expectIssue({ ...b(), batchSize: "32" }, "batchSize", 'got "32"', "integer");
  expectIssue({ ...b(), sequences: [{ seqLen: 64 }] }, "sequences[0].numKvPairs", "missing");
  expectIssue(
    {
      ...b(),
      sequences: [{ seqLen: 64, numKvPairs: 8 }, { seqLen: 64, numKvPairs: 4 }, { seqLen: 64, numKvPairs: 8 }],
    },
    "sequences[2]",
    "duplicate of sequences[0]",
  );
  expectIssue({ ...b(), sequences: { seqLens: [64, 64], numKvPairs: 4 } }, "sequences.seqLens[1]", "duplicate");
  expectIssue({ ...b(), trainExamples: 16 }, "trainExamples", "got 16", "at least batchSize 32");
});

Deno.test("grid validation: every problem is reported at once, before any run exists", () => {
  const issues = issuesOf({ ...baseConfig(), mixers: ["nope"], lrs: [0], epochs: -1 });
  assertEquals(issues.map((i) => i.path).sort(), ["epochs", "lrs[0]", "mixers[0]"]);
  const err = (() => {
    try {
      parseSweepConfig({ ...baseConfig(), vocabSize: 64 }, { source: "my.json" });
    } catch (e) {
      return e as Error;
    }
  })()!;
  // main.ts prints errors whose name contains "ConfigError" as one line without a stack.
  assert(/ConfigError/.test(err.name));
  assert(err.message.startsWith("my.json: invalid sweep config"), err.message);
  assertThrows(() => parseSweepConfig(null), /invalid sweep config/);
  assertThrows(() => parseSweepConfig([]), /invalid sweep config/);
});

Deno.test("grid validation: a per-run hook sees each (mixer, d, L) once and its problems are reported", () => {
  const seen: string[] = [];
  const issues = (() => {
    try {
      parseSweepConfig(baseConfig(), {
        checkRun: (run) => {
          seen.push(`${run.mixer}/${run.dModel}/${run.seqLen}`);
          return run.mixer === "rebased" && run.seqLen === 128 ? "too long for this test" : null;
        },
      });
    } catch (e) {
      if (e instanceof SweepConfigError) return e.issues;
      throw e;
    }
    return [];
  })();
  assertEquals(seen.length, 2 * 2 * 2);
  assertEquals(issues.map((i) => i.path), ["run rebased d=32 L=128", "run rebased d=64 L=128"]);
  assertEquals(issues[0].message, "too long for this test");
});

Deno.test("grid validation: the sweep command's hook rejects models the trainer cannot build", () => {
  const raw = { ...baseConfig(), dModels: [8, 64] };
  assertEquals(parseSweepConfig(raw).dModels, [8, 64]); // the grid alone is fine
  try {
    parseSweepConfig(raw, { checkRun });
    throw new Error("expected a SweepConfigError");
  } catch (e) {
    assert(e instanceof SweepConfigError, String(e));
    assertEquals(e.issues.map((i) => i.path), [
      "run based d=8 L=64",
      "run rebased d=8 L=64",
      "run based d=8 L=128",
      "run rebased d=8 L=128",
    ]);
    assert(e.issues[0].message.includes("dModel"), e.issues[0].message);
  }
});

Deno.test("grid: loadSweepConfig reports unreadable files and bad JSON with the path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assertRejects(
      () => loadSweepConfig(`${dir}/none.json`),
      /none\.json: invalid sweep config[\s\S]*cannot read/,
    );
    await Deno.writeTextFile(`${dir}/bad.json`, "{ not json");
    await assertRejects(() => loadSweepConfig(`${dir}/bad.json`), /bad\.json[\s\S]*not valid JSON/);
    await Deno.writeTextFile(`${dir}/ok.json`, JSON.stringify(baseConfig()));
    assertEquals((await loadSweepConfig(`${dir}/ok.json`)).mixers, ["based", "rebased"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
