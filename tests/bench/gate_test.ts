/**
 * The regression gate: judging pairs, exact vs normalised-speed comparisons, tolerance specs, inputs (bench reports and
 * results files), the CLI's exit codes and lines, and the CI gate against configs/gate/cpu-baseline.json.
 *
 * The CI gate below runs the small bench recorded in the committed baseline (its own `settings`) in-process and gates
 * only the deterministic figures: parameter counts, analytic FLOPs/bytes, batch/N/V and the peak bytes of params,
 * grads, optimizer and activations (plus workspace/total when the adapter is the baseline's). Speed is left to
 * benchmarks/gate_ci.sh on a dedicated runner: on a shared CPU rasteriser the tokens/s of a 3 s bench move by more than
 * any useful tolerance.
 */
import { join } from "node:path";
import {
  type GateCase,
  type GateInput,
  gateInputFromBench,
  gateInputFromResults,
  judge,
  loadGateInput,
  parseNormalize,
  parseToleranceSpec,
  runGate,
} from "../../src/bench/gate.ts";
import type { BenchReport } from "../../src/bench/throughput.ts";
import { runBench } from "../../src/bench/throughput.ts";
import { gateCommand } from "../../src/cli/gate.ts";
import { UsageError } from "../../src/cli/_common.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "../_helpers/assert.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";
import { fakeConfig, fakeResult } from "../_helpers/results.ts";

const BASELINE_FILE = new URL("../../configs/gate/cpu-baseline.json", import.meta.url);

function gateCase(
  mixer: string,
  over: { params?: number; activations?: number; workspace?: number; tps?: number; ref?: number } = {},
): GateCase {
  return {
    id: `${mixer}/d64/L256`,
    mixer,
    shape: "d64/L256",
    status: "ok",
    note: null,
    referenceGflops: over.ref ?? 10,
    metrics: [
      { name: "params", cls: "params", value: over.params ?? 1000 },
      { name: "peakBytes.train.activations", cls: "bytes", value: over.activations ?? 4096 },
      { name: "peakBytes.train.workspace", cls: "machine_bytes", value: over.workspace ?? 512 },
      { name: "train.tokensPerS", cls: "speed", value: over.tps ?? 1000 },
    ],
  };
}

const input = (cases: GateCase[], adapter = "gpu A (vulkan)", kind: "bench" | "results" = "bench"): GateInput => ({
  kind,
  source: kind === "bench" ? "x/bench.json" : "x/results.jsonl",
  adapter,
  cases,
});

Deno.test("judge: direction and tolerance decide; the tolerance bound itself passes", () => {
  const pct = (v: number) => ({ kind: "relative" as const, value: v });
  const abs = (v: number) => ({ kind: "absolute" as const, value: v });
  assertEquals(judge(100, 75, "higher", pct(0.25)), "pass");
  assertEquals(judge(100, 74.9, "higher", pct(0.25)), "regression");
  assertEquals(judge(100, 126, "higher", pct(0.25)), "improved");
  assertEquals(judge(100, 100, "lower", abs(0)), "pass");
  assertEquals(judge(100, 101, "lower", abs(0)), "regression");
  assertEquals(judge(100, 99, "lower", abs(0)), "improved");
  assertEquals(judge(100, 99, "equal", abs(0)), "regression");
  assertEquals(judge(100, 101, "equal", abs(1)), "pass");
  assertEquals(judge(0.9, 0.89, "higher", abs(0.01)), "pass");
  assertEquals(judge(0.9, 0.88, "higher", abs(0.01)), "regression");
});

Deno.test("gate: deterministic figures compare exactly; speed compares as a ratio to the same run's reference", () => {
  const base = input([gateCase("based"), gateCase("rebased")]);
  // A machine half as fast: tokens/s and the reference both halve, the normalised speed is unchanged.
  const slowerMachine = input([gateCase("based", { tps: 500, ref: 5 }), gateCase("rebased", { tps: 480, ref: 5 })]);
  const ok = runGate(base, slowerMachine);
  assert(ok.passed, ok.regressions.map((r) => r.message).join("\n"));
  assertEquals(ok.comparisons.filter((c) => c.cls === "speed").length, 2);

  const worse = input([
    gateCase("based", { params: 1001, activations: 4112 }),
    gateCase("rebased", { tps: 500, ref: 10, activations: 4000 }),
  ]);
  const out = runGate(base, worse);
  assertEquals(out.passed, false);
  assertEquals(out.regressions.map((r) => r.metric), [
    "based/d64/L256:params",
    "based/d64/L256:peakBytes.train.activations",
    "rebased/d64/L256:train.tokensPerS",
  ]);
  assertEquals(
    out.regressions[0].message,
    "based/d64/L256 params: baseline 1000, current 1001 (+0.1%), allowed exact (params)",
  );
  assertEquals(
    out.regressions[2].message,
    "rebased/d64/L256 train.tokensPerS (tokens/s per reference GFLOP/s): baseline 100, current 50 (-50.0%), " +
      "allowed -25% (speed, higher is better)",
  );
  // Fewer activation bytes are an improvement (a note), not a failure.
  assertEquals(out.improvements.map((c) => c.metric), ["rebased/d64/L256:peakBytes.train.activations"]);
  assert(out.notes.some((n) => n.includes("refresh the baseline")));

  // Tolerances: a class rule, and a per-metric glob that wins over it.
  const loose = runGate(base, worse, { rules: parseToleranceSpec("speed=60%,params=1,bytes=16") });
  assert(loose.passed, loose.regressions.map((r) => r.message).join("\n"));
  const glob = runGate(base, worse, { rules: parseToleranceSpec("params=1,bytes=16,rebased/*:train.tokensPerS=10%") });
  assertEquals(glob.regressions.map((r) => r.metric), ["rebased/d64/L256:train.tokensPerS"]);
  assert(glob.regressions[0].message.includes("allowed -10%"));
  // --only restricts the classes.
  assertEquals(runGate(base, worse, { only: ["speed"] }).regressions.length, 1);
});

Deno.test("gate: mixer normalisation, raw speed, and workspace bytes only between equal adapters", () => {
  const base = input([gateCase("attention", { tps: 2000 }), gateCase("based", { tps: 1000 })]);
  // Everything half as fast, reference unchanged: a regression in raw and reference terms, not relative to attention.
  const cur = input([gateCase("attention", { tps: 1000 }), gateCase("based", { tps: 500 })]);
  assertEquals(runGate(base, cur).passed, false);
  const rel = runGate(base, cur, { normalize: parseNormalize("mixer:attention") });
  assert(rel.passed);
  assertEquals(rel.comparisons.filter((c) => c.cls === "speed").map((c) => [c.metric, c.baseline, c.current]), [
    ["based/d64/L256:train.tokensPerS", 0.5, 0.5],
  ]);
  assert(rel.notes.some((n) => n.includes("normalising mixer attention")));
  assertEquals(runGate(base, cur, { normalize: "none" }).regressions.length, 2);
  assertThrows(() => parseNormalize("fastest"), /--normalize: got "fastest"/);

  const bigger = input([gateCase("attention", { workspace: 1024, tps: 2000 }), gateCase("based", { tps: 1000 })]);
  assertEquals(runGate(base, bigger).regressions.map((r) => r.metric), [
    "attention/d64/L256:peakBytes.train.workspace",
  ]);
  const otherAdapter = { ...bigger, adapter: "gpu B (metal)" };
  const skipped = runGate(base, otherAdapter);
  assert(skipped.passed);
  assert(skipped.notes.some((n) => n.includes("adapters differ")));
});

Deno.test("gate: a case missing or failing in the current run is a regression line of its own", () => {
  const base = input([gateCase("based"), gateCase("rebased")]);
  const failed = { ...gateCase("rebased"), status: "error", note: "out of memory" };
  const out = runGate(base, input([failed]));
  assertEquals(out.regressions.map((r) => r.message), [
    "based/d64/L256: case missing from current (x/bench.json); baseline ran it",
    "rebased/d64/L256: status ok in baseline, error in current (out of memory)",
  ]);
  const extra = runGate(input([gateCase("based")]), input([gateCase("based"), gateCase("rebased")]));
  assert(extra.passed && extra.notes.includes("rebased/d64/L256: not in the baseline (not gated)"));
});

Deno.test("tolerance specs: classes, globs, bare values; bad specs name --tolerance", () => {
  const r = parseToleranceSpec("30%, accuracy=0.01,bytes=exact,train.tokensPerS=50%");
  assertEquals(r.byClass, {
    speed: { kind: "relative", value: 0.3 },
    accuracy: { kind: "absolute", value: 0.01 },
    bytes: { kind: "absolute", value: 0 },
  });
  assertEquals(r.byPattern.map((p) => p.pattern), ["train.tokensPerS"]);
  assertThrows(() => parseToleranceSpec("speed=fast"), /^GateInputError: --tolerance: bad tolerance "fast"/);
  assertThrows(() => parseToleranceSpec("sped=10%"), /--tolerance: unknown metric class "sped"/);
  assertThrows(() => parseToleranceSpec(" , "), /--tolerance: empty/);
});

Deno.test("results files: accuracy of a seeded run is exact; speed needs an explicit normalisation", () => {
  const a = fakeResult(fakeConfig({ mixer: "based" }), 0.9);
  const b = fakeResult(fakeConfig({ mixer: "attention" }), 0.8);
  const base = gateInputFromResults([a, b], "base.jsonl");
  assertEquals(base.cases[0].id, "based/d64/L128/N16/lr0.001/seed42");
  const same = runGate(base, gateInputFromResults([a, b], "cur.jsonl"));
  assert(same.passed);
  assert(same.notes.some((n) => n.includes("results files carry no reference measurement")));
  const lower = fakeResult(fakeConfig({ mixer: "based" }), 0.85);
  const out = runGate(base, gateInputFromResults([lower, b], "cur.jsonl"));
  assertEquals(out.regressions.map((r) => r.metric), ["based/d64/L128/N16/lr0.001/seed42:bestAccuracy"]);
  assert(out.regressions[0].message.includes("baseline 0.9000, current 0.8500"), out.regressions[0].message);
  assert(runGate(base, gateInputFromResults([lower, b], "c"), { rules: parseToleranceSpec("accuracy=0.05") }).passed);
  const slow = fakeResult(fakeConfig({ mixer: "based" }), 0.9, { trainTokensPerS: 10 });
  assertEquals(runGate(base, gateInputFromResults([slow, b], "c"), { normalize: "none" }).regressions.length, 1);
});

function tinyReport(): BenchReport {
  return JSON.parse(Deno.readTextFileSync(BASELINE_FILE)) as BenchReport;
}

Deno.test("inputs: bench.json, a result record, a results .jsonl; anything else is a one-line input error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mqar-gate-test-" });
  try {
    const bench = join(dir, "bench.json");
    await Deno.writeTextFile(bench, JSON.stringify(tinyReport()));
    const fromBench = await loadGateInput(bench);
    assertEquals(fromBench.kind, "bench");
    assertEquals(fromBench, gateInputFromBench(tinyReport(), bench));
    const r = fakeResult(fakeConfig(), 0.7);
    const one = join(dir, "run.json");
    await Deno.writeTextFile(one, JSON.stringify(r, null, 2));
    assertEquals((await loadGateInput(one)).cases.length, 1);
    const jsonl = join(dir, "results.jsonl");
    await Deno.writeTextFile(
      jsonl,
      [r, fakeResult(fakeConfig({ seed: 43 }), 0.6)].map((x) => JSON.stringify(x)).join("\n"),
    );
    assertEquals((await loadGateInput(jsonl)).cases.map((c) => c.id), [
      "based/d64/L128/N16/lr0.001/seed42",
      "based/d64/L128/N16/lr0.001/seed43",
    ]);
    await Deno.writeTextFile(join(dir, "other.json"), '{"hello": 1}');
    await assertRejects(() => loadGateInput(join(dir, "other.json")), /neither a bench report/);
    await assertRejects(() => loadGateInput(join(dir, "nope.json")), /^GateInputError: .*nope\.json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Runs the gate command with console output captured. */
async function runGateCli(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [], err: string[] = [];
  const log = console.log, error = console.error;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    return { code: await gateCommand.run(args), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("mqar gate CLI: exit 0 on a pass, 1 with one line per regression; bad flags name the flag", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mqar-gate-cli-" });
  try {
    const base = tinyReport();
    const worse = structuredClone(base);
    worse.cases[1].peakBytes.train!.activations += 16;
    worse.cases[2].params += 1;
    const [b, w] = [join(dir, "base.json"), join(dir, "worse.json")];
    await Deno.writeTextFile(b, JSON.stringify(base));
    await Deno.writeTextFile(w, JSON.stringify(worse));
    const pass = await runGateCli(["--baseline", b, "--current", b]);
    assertEquals([pass.code, pass.out], [0, []]);
    assert(pass.err.at(-1)!.startsWith("gate: PASS"), pass.err.join("\n"));
    const fail = await runGateCli(["--baseline", b, "--current", w]);
    assertEquals(fail.code, 1);
    assertEquals(fail.out.length, 2);
    assert(fail.out[0].startsWith(`REGRESSION ${base.cases[1].id} peakBytes.train.activations: baseline`), fail.out[0]);
    assert(fail.out[1].startsWith(`REGRESSION ${base.cases[2].id} params: baseline`), fail.out[1]);
    assert(fail.err.at(-1)!.startsWith("gate: FAIL"));
    const bad: [string[], RegExp][] = [
      [["--current", b], /^--baseline is required/],
      [["--baseline", b], /^--current is required/],
      [["--baseline", b, "--current", b, "--tolerance", "x=1"], /^--tolerance: unknown metric class "x"/],
      [["--baseline", b, "--current", b, "--only", "speed,colour"], /^--only: unknown class "colour"/],
      [["--baseline", b, "--current", b, "--normalize", "max"], /^--normalize: got "max"/],
      [["--baseline", join(dir, "missing.json"), "--current", b], /^--baseline: .*missing\.json/],
      [["--baseline", b, "--current", b, "--strict"], /Unknown option '--strict'/],
    ];
    for (const [args, re] of bad) {
      const e = await runGateCli(args).then(() => null, (x: unknown) => x);
      assert(e instanceof UsageError, `${args.join(" ")}: expected a UsageError, got ${e}`);
      assert(re.test(e.message) && !e.message.includes("\n"), `${args.join(" ")}: ${e.message}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "CI gate: the small bench of configs/gate/cpu-baseline.json matches its deterministic figures exactly",
  ...gpuTest,
  fn: async () => {
    const baseline = tinyReport();
    const gpu = await testGpu();
    const current = await runBench(gpu, baseline.settings);
    const outcome = runGate(
      gateInputFromBench(baseline, BASELINE_FILE.pathname),
      gateInputFromBench(current, "in-process bench"),
      { only: ["params", "analytic", "count", "bytes", "machine_bytes", "traffic"] },
    );
    const lines = outcome.regressions.map((r) => r.message).join("\n");
    assert(
      outcome.passed,
      `regressions against configs/gate/cpu-baseline.json (if intended, regenerate it: benchmarks/gate_ci.sh --update):\n${lines}`,
    );
    // Every case ran and every deterministic figure of every case was compared.
    assertEquals(current.cases.map((c) => c.status), baseline.cases.map(() => "ok"));
    const perCase = outcome.comparisons.filter((c) => c.metric.startsWith(baseline.cases[0].id + ":")).length;
    assert(perCase >= 15, `only ${perCase} comparisons per case`);
  },
});
