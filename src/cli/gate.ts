/** `mqar gate`: compares a bench report (or results) with a committed baseline; exit 1 on any regression. */
import {
  emptyRules,
  GateInputError,
  type GateOutcome,
  loadGateInput,
  METRIC_CLASSES,
  type MetricClass,
  type Normalize,
  normalizeLabel,
  parseNormalize,
  parseToleranceSpec,
  runGate,
} from "../bench/gate.ts";
import { AbGateInputError, abRegressionLines, runAbGate, writeAbOutputs } from "../bench/ab_gate.ts";
import { checkOutputDir } from "../io/output_path.ts";
import { isMixerName, MIXERS } from "../model/config.ts";
import { type Command, listFlag, numberFlag, printJson, UsageError } from "./_common.ts";
import { parseFlagsOneLine } from "./bench.ts";

const USAGE = `Usage: mqar gate --baseline FILE --current FILE [--tolerance SPEC]... [--normalize MODE] [--only CLASSES]
                 [--verbose] [--json]
       mqar gate --ab [BASE] [--samples N] [--max-seconds S] [--threshold P%] [--mixers a,b] [--out DIR] [--json]

Compares CURRENT (a bench.json from \`mqar bench\`, a result record, a results .jsonl file or directory) with BASELINE.
Prints one line per regression (metric, baseline, current, allowed tolerance) and exits 1 if there is any; 0 otherwise.

Metric classes and default tolerances:
  params, analytic, count   parameter counts, analytic FLOPs/bytes, batch/N/V/steps: exact (any change fails)
  bytes                     peak bytes of params/grads/optimizer/activations: exact, an increase fails
  machine_bytes             peak workspace and total bytes: exact, compared only when both files come from one adapter
  traffic                   dispatches, submits and uploaded bytes per step: exact, an increase fails, compared only
                            when both files come from one adapter
  accuracy                  best accuracy of a seeded run: exact, a decrease fails
  speed                     tokens/s normalised by a figure from the same run: a drop of more than 25% fails

  --tolerance SPEC   comma-separated KEY=VALUE, KEY a class or a metric glob (train.tokensPerS, based/*:peakBytes.*),
                     VALUE N% (relative), a number (absolute) or exact; a bare VALUE sets speed. Repeatable.
                     e.g. --tolerance 40%  --tolerance speed=30%,accuracy=0.01
  --normalize MODE   speed normalisation: auto (default: reference for bench files; results files have none, so their
                     speed is skipped), reference (tokens/s per GFLOP/s of the bench's reference matmul, timed before
                     each case), mixer:NAME (ratio to NAME's tokens/s at the same shape), none (raw tokens/s)
  --only CLASSES     compare only these classes, e.g. params,analytic,count,bytes (deterministic figures)
  --verbose          also print every passing comparison
  --json             print the full outcome as JSON

A/B mode (--ab): measures the git revision BASE (default HEAD~1, checked out into a temporary worktree with its own
dependencies) and the working tree on this machine, interleaved in fresh processes (A B A B ...), on the committed
matrix (every mixer at d = 64, L = 32 and 128, batch 8: training and inference steps), and decides each metric with a
95% bootstrap interval of the ratio of median seconds per token. A regression is a slowdown whose whole interval lies
above the threshold; noise widens the interval instead of failing. One line per regression, exit 1; ab.json and ab.md
go to --out. Refuses to compare samples from different adapters.
  --samples N        processes per side, default 5 (>= 2)
  --max-seconds S    time budget for the whole gate: after 2 samples per side, another pair runs only while the slowest
                     pair so far still fits (for CI's fixed limit on a machine of unknown speed); the report says when
                     it stopped early
  --threshold P%     slowdown that counts, default 15%
  --mixers LIST      restrict the matrix (default every trainable mixer)
  --out DIR          where ab.json and ab.md go, default results/gate-ab`;

/** `--ab` takes an optional revision: a bare `--ab` (last, or before another flag) means HEAD~1. */
export function expandAbFlag(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    out.push(args[i]);
    if (args[i] === "--ab" && (i + 1 >= args.length || args[i + 1].startsWith("--"))) out.push("HEAD~1");
  }
  return out;
}

/** "15%", "15" or "0.15"-style input is ambiguous; only N% (0 < N < 1000) is accepted. */
export function thresholdFlag(value: string | undefined): number {
  if (value === undefined) return 0.15;
  const m = /^(\d+(?:\.\d+)?)%$/.exec(value.trim());
  const pct = m ? Number(m[1]) : NaN;
  if (!(pct > 0 && pct < 1000)) {
    throw new UsageError(`--threshold: got "${value}", expected a percentage such as 15% (between 0% and 1000%)`);
  }
  return pct / 100;
}

async function runAb(args: string[]): Promise<number> {
  const { values } = parseFlagsOneLine("gate", expandAbFlag(args), {
    ab: { type: "string" },
    samples: { type: "string" },
    "max-seconds": { type: "string" },
    threshold: { type: "string" },
    mixers: { type: "string" },
    out: { type: "string" },
    json: { type: "boolean" },
  });
  const samples = numberFlag("samples", values.samples, { integer: true, min: 2, max: 1000 }) ?? 5;
  const maxSeconds = numberFlag("max-seconds", values["max-seconds"], { min: 0, exclusiveMin: true });
  const threshold = thresholdFlag(values.threshold);
  const mixers = listFlag("mixers", values.mixers, (m) => {
    if (!isMixerName(m)) throw new UsageError(`--mixers: unknown mixer "${m}"; valid: ${MIXERS.join(", ")}`);
    return m;
  });
  const out = values.out ?? "results/gate-ab";
  await checkOutputDir("--out", out);
  let report;
  try {
    report = await runAbGate({
      base: values.ab!,
      samples,
      threshold,
      mixers,
      maxSeconds,
      root: Deno.cwd(),
      log: (line) => console.error(`gate --ab: ${line}`),
    });
  } catch (e) {
    if (e instanceof AbGateInputError) throw new UsageError(e.message);
    throw e;
  }
  const files = await writeAbOutputs(out, report);
  if (values.json) printJson(report);
  else for (const line of abRegressionLines(report)) console.log(line);
  const improved = report.metrics.filter((m) => m.decision.status === "improvement").length;
  console.error(
    `gate --ab: ${report.regressions.length ? "FAIL" : "PASS"}: ${report.metrics.length} metrics, ` +
      `${report.regressions.length} regression(s), ${improved} improvement(s), ${report.samples} samples per side${
        report.samples < report.requestedSamples ? ` (of ${report.requestedSamples}: time budget)` : ""
      }, ` +
      `${report.wallS.toFixed(0)} s; wrote ${files.join(", ")}`,
  );
  return report.regressions.length ? 1 : 0;
}

function onlyFlag(value: string | undefined): MetricClass[] | undefined {
  return listFlag("only", value, (c) => {
    if (!(METRIC_CLASSES as readonly string[]).includes(c)) {
      throw new UsageError(`--only: unknown class "${c}"; classes: ${METRIC_CLASSES.join(", ")}`);
    }
    return c as MetricClass;
  });
}

/** The lines the CLI prints: regressions first (one each), then a summary. */
export function gateReportLines(outcome: GateOutcome, verbose = false): { stdout: string[]; stderr: string[] } {
  const stdout = outcome.regressions.map((r) => `REGRESSION ${r.message}`);
  if (verbose) {
    for (const c of outcome.comparisons) {
      if (c.status !== "regression") stdout.push(`${c.status.padEnd(10)} ${c.message}`);
    }
  }
  const stderr = outcome.notes.map((n) => `note: ${n}`);
  const improved = outcome.improvements.length;
  stderr.push(
    `gate: ${outcome.passed ? "PASS" : "FAIL"}: ${outcome.comparisons.length} comparisons, ` +
      `${outcome.regressions.length} regression(s)${improved ? `, ${improved} improvement(s)` : ""}`,
  );
  return { stdout, stderr };
}

export const gateCommand: Command = {
  name: "gate",
  summary: "regression gate: compare a bench report or results with a committed baseline (exit 1 on regression)",
  usage: USAGE,
  async run(args) {
    if (args.includes("--ab")) return await runAb(args);
    const { values } = parseFlagsOneLine("gate", args, {
      baseline: { type: "string" },
      current: { type: "string" },
      tolerance: { type: "string", multiple: true },
      normalize: { type: "string" },
      only: { type: "string" },
      verbose: { type: "boolean" },
      json: { type: "boolean" },
    });
    if (!values.baseline) throw new UsageError("--baseline is required (the committed baseline file)");
    if (!values.current) throw new UsageError("--current is required (a bench.json or results file)");
    let rules = emptyRules();
    let normalize: Normalize = "auto";
    try {
      for (const spec of values.tolerance ?? []) rules = parseToleranceSpec(spec, rules);
      if (values.normalize !== undefined) normalize = parseNormalize(values.normalize);
    } catch (e) {
      if (e instanceof GateInputError) throw new UsageError(e.message);
      throw e;
    }
    const only = onlyFlag(values.only);
    const load = async (flag: string, path: string) => {
      try {
        return await loadGateInput(path);
      } catch (e) {
        if (e instanceof GateInputError) throw new UsageError(`--${flag}: ${e.message}`);
        throw e;
      }
    };
    const baseline = await load("baseline", values.baseline);
    const current = await load("current", values.current);
    const outcome = runGate(baseline, current, { rules, normalize, only });
    if (values.json) {
      printJson({
        ...outcome,
        baseline: values.baseline,
        current: values.current,
        normalize: normalizeLabel(normalize),
      });
    } else {
      const { stdout, stderr } = gateReportLines(outcome, Boolean(values.verbose));
      for (const line of stdout) console.log(line);
      for (const line of stderr) console.error(line);
    }
    return outcome.passed ? 0 : 1;
  },
};
