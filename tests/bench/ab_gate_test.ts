/**
 * The A/B gate's plumbing without git or subprocesses: samples read from bench reports (best repeat), the refusal to
 * compare across adapters, the decision over every metric both sides measured, the CLI's flags and its report lines.
 */
import {
  AB_MATRIX,
  abBenchArgs,
  AbGateInputError,
  abMarkdown,
  abRegressionLines,
  type AbReport,
  anotherPairFits,
  decideSamples,
  type Sample,
  samplesFromBench,
} from "../../src/bench/ab_gate.ts";
import { expandAbFlag, thresholdFlag } from "../../src/cli/gate.ts";
import { UsageError } from "../../src/cli/_common.ts";
import { MIXERS } from "../../src/model/config.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";

/** `fn` throws an instance of `cls` whose message contains `text`. */
function throwsWith(fn: () => unknown, cls: new (...args: never[]) => Error, text: string): void {
  try {
    fn();
  } catch (e) {
    assert(e instanceof cls, `expected ${cls.name}, got ${e}`);
    assert(e.message.includes(text), `"${e.message}" lacks "${text}"`);
    return;
  }
  throw new Error(`expected ${cls.name} containing "${text}", nothing was thrown`);
}

const LAVAPIPE = { description: "llvmpipe (LLVM 15.0.6, 256 bits)", backend: "vulkan" };

function bench(adapter: { description: string; backend: string }, trainMax: number, inferMax: number | null) {
  return {
    adapter,
    cases: [
      {
        id: "rebased/d64/L32",
        status: "ok",
        train: { tokensPerS: trainMax / 2, max: trainMax },
        inference: inferMax === null ? null : { tokensPerS: inferMax / 2, max: inferMax },
      },
      { id: "mamba/d64/L32", status: "error", train: null, inference: null },
    ],
  };
}

const sample = (adapter: { description: string; backend: string }, trainMax: number, inferMax: number | null) =>
  samplesFromBench(bench(adapter, trainMax, inferMax), "test");

Deno.test("A/B gate: a bench report gives seconds per token of its best repeat, for ok cases only", () => {
  const s = sample(LAVAPIPE, 1000, 4000);
  assertEquals(s.adapter, "llvmpipe (LLVM 15.0.6, 256 bits) (vulkan)");
  assertEquals([...s.values.entries()], [["rebased/d64/L32:train", 1 / 1000], ["rebased/d64/L32:inference", 1 / 4000]]);
  throwsWith(() => samplesFromBench({ cases: [] }, "x.json"), AbGateInputError, "x.json: not a bench report");
});

Deno.test("A/B gate: refuses to compare samples from different adapters (description or backend)", () => {
  const gl = { ...LAVAPIPE, backend: "gl" };
  const base = [sample(LAVAPIPE, 1000, null), sample(LAVAPIPE, 1010, null)];
  const mixed = [sample(LAVAPIPE, 1000, null), sample(gl, 1000, null)];
  throwsWith(() => decideSamples(base, mixed, 0.15), AbGateInputError, "refusing to compare across adapters");
  const other = { description: "NVIDIA H200", backend: "vulkan" };
  throwsWith(
    () => decideSamples(base, [sample(other, 9000, null), sample(other, 9100, null)], 0.15),
    AbGateInputError,
    "NVIDIA H200 (vulkan)",
  );
  throwsWith(() => decideSamples(base.slice(0, 1), base, 0.15), AbGateInputError, "at least 2 samples");
});

Deno.test("A/B gate: every metric both sides measured is decided; a 2× slower candidate is a regression line", () => {
  const base: Sample[] = [1000, 1040, 980, 1010, 995].map((r) => sample(LAVAPIPE, r, 4000));
  // Inference is missing from one candidate sample: that metric is not decided.
  const slow: Sample[] = [500, 520, 490, 505, 498].map((r, i) => sample(LAVAPIPE, r, i === 2 ? null : 4000));
  const { adapter, metrics } = decideSamples(base, slow, 0.15);
  assertEquals(adapter, "llvmpipe (LLVM 15.0.6, 256 bits) (vulkan)");
  assertEquals(metrics.map((m) => [m.name, m.decision.status]), [["rebased/d64/L32:train", "regression"]]);
  assert(Math.abs(metrics[0].decision.ratio - 2) < 0.05);
  const report: AbReport = {
    schema: "mqar-gate-ab/1",
    base: { rev: "HEAD~1", commit: "0123456789abcdef" },
    candidate: { rev: "working tree", commit: "fedcba9876543210" },
    adapter,
    samples: 5,
    requestedSamples: 5,
    threshold: 0.15,
    matrix: { ...AB_MATRIX, mixers: ["rebased"] },
    metrics,
    regressions: ["rebased/d64/L32:train"],
    wallS: 12,
  };
  const lines = abRegressionLines(report);
  assertEquals(lines.length, 1);
  assert(
    /^REGRESSION rebased\/d64\/L32:train: 2\.0\d\d× slower than HEAD~1 \(95% CI .*threshold 15%\)$/.test(lines[0]),
  );
  assert(abMarkdown(report).includes("| rebased/d64/L32:train | 2.0"));
  assert(!abMarkdown(report).includes("time budget"));
  const cut = abMarkdown({ ...report, samples: 3 });
  assert(
    cut.includes(
      "3 interleaved samples each on llvmpipe (LLVM 15.0.6, 256 bits) (vulkan) (of 5 requested: the time budget",
    ),
    cut,
  );
  // Same samples on both sides: unchanged.
  assertEquals(decideSamples(base, base, 0.15).metrics.map((m) => m.decision.status), ["unchanged", "unchanged"]);
});

Deno.test("A/B gate: the matrix covers every mixer at d = 64 on two shapes; flags parse or name what is allowed", () => {
  const args = abBenchArgs(MIXERS);
  assertEquals(args[args.indexOf("--mixers") + 1].split(","), [...MIXERS]);
  assertEquals(args[args.indexOf("--seq-lens") + 1], "32,128");
  assertEquals(expandAbFlag(["--ab"]), ["--ab", "HEAD~1"]);
  assertEquals(expandAbFlag(["--ab", "--samples", "5"]), ["--ab", "HEAD~1", "--samples", "5"]);
  assertEquals(expandAbFlag(["--ab", "main"]), ["--ab", "main"]);
  assertEquals(thresholdFlag(undefined), 0.15);
  assertEquals(thresholdFlag("20%"), 0.2);
  for (const bad of ["0.15", "15", "0%", "-5%", "abc"]) {
    throwsWith(() => thresholdFlag(bad), UsageError, `--threshold: got "${bad}"`);
  }
});

Deno.test("A/B gate: a time budget stops sampling only after 2 pairs, when the slowest pair no longer fits", () => {
  // No budget: every requested pair runs.
  assert(anotherPairFits(4, 1e6, 1e6));
  // The first 2 pairs run whatever the budget (fewer than 2 samples per side cannot be decided).
  assert(anotherPairFits(0, 0, 0, 1));
  assert(anotherPairFits(1, 500, 400, 100));
  // Later pairs: only while elapsed + the slowest pair so far fits.
  assert(anotherPairFits(2, 400, 200, 600));
  assert(!anotherPairFits(2, 401, 200, 600));
  assert(!anotherPairFits(3, 590, 20, 600));
});
