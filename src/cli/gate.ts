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
import { type Command, listFlag, printJson, UsageError } from "./_common.ts";
import { parseFlagsOneLine } from "./bench.ts";

const USAGE = `Usage: mqar gate --baseline FILE --current FILE [--tolerance SPEC]... [--normalize MODE] [--only CLASSES]
                 [--verbose] [--json]

Compares CURRENT (a bench.json from \`mqar bench\`, a result record, a results .jsonl file or directory) with BASELINE.
Prints one line per regression (metric, baseline, current, allowed tolerance) and exits 1 if there is any; 0 otherwise.

Metric classes and default tolerances:
  params, analytic, count   parameter counts, analytic FLOPs/bytes, batch/N/V/steps: exact (any change fails)
  bytes                     peak bytes of params/grads/optimizer/activations: exact, an increase fails
  machine_bytes             peak workspace and total bytes: exact, compared only when both files come from one adapter
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
  --json             print the full outcome as JSON`;

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
