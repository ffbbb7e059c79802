/**
 * Regression gate: compares a current bench report (or training results) with a committed baseline.
 *
 * Metrics have a class, which sets the default tolerance, and a direction (which way is worse):
 *   params, analytic, count      deterministic figures (parameter count, analytic FLOPs/bytes, batch/N/V/steps): exact,
 *                                any change fails (the model or the formulas changed: update the baseline with it)
 *   bytes                        peak bytes of params/grads/optimizer/activations: exact, an increase fails
 *   machine_bytes                peak workspace and total bytes: depend on kernel choices per adapter (split-K scratch
 *                                on GPUs), so compared exactly only when both files come from the same adapter
 *   traffic                      dispatches, submits and uploaded bytes per training/inference step: exact, an increase
 *                                fails; like machine_bytes, kernel variants differ per adapter, so same adapter only
 *   accuracy                     best accuracy of a seeded run: exact by default, a decrease fails
 *   speed                        tokens/s, normalised by a figure measured in the same run (below): a drop of more than
 *                                the tolerance (default 25%) fails, so a slower machine does not
 * Speed normalisation (`normalize`): "reference" divides each case's tokens/s by the GFLOP/s of the bench's reference
 * matmul timed just before that case; {mixer: NAME} divides by NAME's tokens/s at the same shape in the same file;
 * "none" compares raw tokens/s; "auto" = reference for bench files, none available for results files (speed skipped).
 * Improvements beyond the tolerance are reported as notes (refresh the baseline to lock them in), never as failures.
 */
import { readResultsAt } from "../sweep/results_file.ts";
import type { RunResult } from "../train/result.ts";
import { BENCH_SCHEMA, type BenchCaseResult, type BenchReport, type StepTraffic } from "./throughput.ts";

export const METRIC_CLASSES = [
  "speed",
  "bytes",
  "machine_bytes",
  "traffic",
  "params",
  "analytic",
  "accuracy",
  "count",
] as const;
export type MetricClass = typeof METRIC_CLASSES[number];
/** Which way is worse: "higher" = higher is better (a drop fails), "lower" = lower is better, "equal" = any change. */
export type Direction = "higher" | "lower" | "equal";

export interface Tolerance {
  kind: "relative" | "absolute";
  /** Fraction (0.25 = 25%) for relative, the metric's unit for absolute. */
  value: number;
}

export const DEFAULT_TOLERANCES: Readonly<Record<MetricClass, Tolerance>> = {
  speed: { kind: "relative", value: 0.25 },
  bytes: { kind: "absolute", value: 0 },
  machine_bytes: { kind: "absolute", value: 0 },
  traffic: { kind: "absolute", value: 0 },
  params: { kind: "absolute", value: 0 },
  analytic: { kind: "absolute", value: 0 },
  accuracy: { kind: "absolute", value: 0 },
  count: { kind: "absolute", value: 0 },
};

const DIRECTIONS: Readonly<Record<MetricClass, Direction>> = {
  speed: "higher",
  bytes: "lower",
  machine_bytes: "lower",
  traffic: "lower",
  params: "equal",
  analytic: "equal",
  accuracy: "higher",
  count: "equal",
};

/** A bad gate input or option: the CLI prints the message as one line (exit code 2). */
export class GateInputError extends Error {
  override name = "GateInputError";
}

export interface ToleranceRules {
  byClass: Partial<Record<MetricClass, Tolerance>>;
  /** Glob over "CASE:METRIC" or "METRIC" (`*` = any text); later rules win. */
  byPattern: { pattern: string; regex: RegExp; tolerance: Tolerance }[];
}

export const emptyRules = (): ToleranceRules => ({ byClass: {}, byPattern: [] });

function parseToleranceValue(text: string, flag: string): Tolerance {
  const t = text.trim();
  if (t === "exact") return { kind: "absolute", value: 0 };
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(t);
  if (pct) return { kind: "relative", value: Number(pct[1]) / 100 };
  if (/^\d+(?:\.\d+)?(?:e[-+]?\d+)?$/i.test(t)) return { kind: "absolute", value: Number(t) };
  throw new GateInputError(
    `${flag}: bad tolerance "${text}": expected N% (relative), a number >= 0 (absolute) or "exact"`,
  );
}

const globToRegex = (glob: string) =>
  new RegExp(`^${glob.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);

/**
 * Parses a tolerance spec: comma-separated `KEY=VALUE` items, KEY a metric class (speed, bytes, ...) or a glob over
 * metric names ("train.tokensPerS", "based/*:peakBytes.*"); a VALUE alone sets the speed tolerance.
 * Examples: "30%", "speed=40%,accuracy=0.01", "*L2048:train.tokensPerS=50%".
 */
export function parseToleranceSpec(spec: string, rules = emptyRules(), flag = "--tolerance"): ToleranceRules {
  const items = spec.split(",").map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new GateInputError(`${flag}: empty tolerance spec`);
  for (const item of items) {
    const eq = item.lastIndexOf("=");
    if (eq < 0) {
      rules.byClass.speed = parseToleranceValue(item, flag);
      continue;
    }
    const key = item.slice(0, eq).trim(), value = parseToleranceValue(item.slice(eq + 1), flag);
    if ((METRIC_CLASSES as readonly string[]).includes(key)) {
      rules.byClass[key as MetricClass] = value;
    } else if (/[.*/:]/.test(key)) {
      rules.byPattern.push({ pattern: key, regex: globToRegex(key), tolerance: value });
    } else {
      throw new GateInputError(
        `${flag}: unknown metric class "${key}" in "${item}"; classes: ${METRIC_CLASSES.join(", ")}, ` +
          `or a metric name/glob such as train.tokensPerS or based/*:peakBytes.*`,
      );
    }
  }
  return rules;
}

export type Normalize = "auto" | "reference" | "none" | { mixer: string };

export function parseNormalize(text: string, flag = "--normalize"): Normalize {
  if (text === "auto" || text === "reference" || text === "none") return text;
  const m = /^mixer:(.+)$/.exec(text);
  if (m) return { mixer: m[1] };
  throw new GateInputError(`${flag}: got "${text}", expected auto, reference, none or mixer:NAME`);
}

export const normalizeLabel = (n: Normalize): string => typeof n === "string" ? n : `mixer:${n.mixer}`;

/** One figure of one case, before speed normalisation. */
export interface GateMetric {
  name: string;
  cls: MetricClass;
  value: number | null;
}

export interface GateCase {
  /** "based/d64/L256" (bench) or "based/d64/L256/N64/lr0.001/seed42" (results). */
  id: string;
  mixer: string;
  /** The same shape of other mixers (for mixer normalisation): "d64/L256". */
  shape: string;
  status: string;
  note: string | null;
  referenceGflops: number | null;
  metrics: GateMetric[];
}

export interface GateInput {
  kind: "bench" | "results";
  source: string;
  /** description + backend: machine_bytes are compared only between equal adapters. */
  adapter: string | null;
  cases: GateCase[];
}

const bytesMetrics = (prefix: string, b: Record<string, number> | null): GateMetric[] =>
  ["params", "grads", "optimizer", "activations", "workspace", "total"].map((k) => ({
    name: `${prefix}.${k}`,
    cls: k === "workspace" || k === "total" ? "machine_bytes" : "bytes",
    value: b && typeof b[k] === "number" ? b[k] : null,
  }));

const trafficMetrics = (prefix: string, t: StepTraffic | undefined): GateMetric[] =>
  (["dispatches", "submits", "uploadBytes"] as const).map((k) => ({
    name: `${prefix}.${k}`,
    cls: "traffic",
    value: typeof t?.[k] === "number" ? t[k] : null,
  }));

function benchCaseMetrics(c: BenchCaseResult): GateMetric[] {
  return [
    { name: "params", cls: "params", value: c.params },
    { name: "batch", cls: "count", value: c.batch },
    { name: "numKvPairs", cls: "count", value: c.numKvPairs },
    { name: "vocabSize", cls: "count", value: c.vocabSize },
    { name: "analytic.flopsPerToken.train", cls: "analytic", value: c.analytic.flopsPerToken.train },
    { name: "analytic.bytes.train.total", cls: "analytic", value: c.analytic.bytes.train.total },
    { name: "analytic.bytes.inference.total", cls: "analytic", value: c.analytic.bytes.inference.total },
    ...bytesMetrics("peakBytes.train", c.peakBytes.train),
    ...bytesMetrics("peakBytes.inference", c.peakBytes.inference),
    ...trafficMetrics("train.perStep", c.train?.perStep),
    ...trafficMetrics("inference.perStep", c.inference?.perStep),
    { name: "train.tokensPerS", cls: "speed", value: c.train?.tokensPerS ?? null },
    { name: "inference.tokensPerS", cls: "speed", value: c.inference?.tokensPerS ?? null },
  ];
}

export function gateInputFromBench(report: BenchReport, source: string): GateInput {
  return {
    kind: "bench",
    source,
    adapter: `${report.adapter.description} (${report.adapter.backend})`,
    cases: report.cases.map((c) => ({
      id: c.id,
      mixer: c.mixer,
      shape: `d${c.dModel}/L${c.seqLen}`,
      status: c.status,
      note: c.note,
      referenceGflops: c.referenceGflops,
      metrics: benchCaseMetrics(c),
    })),
  };
}

export function gateInputFromResults(results: readonly RunResult[], source: string): GateInput {
  const first = results[0];
  const describe = (r: RunResult) => {
    const c = r.config;
    return `${c.mixer}/d${c.dModel}/L${c.seqLen}/N${c.numKvPairs}/lr${c.lr}/seed${c.seed}`;
  };
  const counts = new Map<string, number>();
  for (const r of results) counts.set(describe(r), (counts.get(describe(r)) ?? 0) + 1);
  return {
    kind: "results",
    source,
    adapter: first ? `${first.adapter?.description} (${first.adapter?.backend})` : null,
    cases: results.map((r) => {
      const c = r.config;
      const id = describe(r);
      const acc = r.bestAccuracy as number | null;
      return {
        // Records that differ only outside the key (e.g. epochs) are told apart by run id.
        id: (counts.get(id) ?? 0) > 1 ? `${id}#${r.runId}` : id,
        mixer: c.mixer,
        shape: `d${c.dModel}/L${c.seqLen}/N${c.numKvPairs}/lr${c.lr}/seed${c.seed}`,
        status: r.status,
        note: r.stopReason,
        referenceGflops: null,
        metrics: [
          { name: "params", cls: "params", value: r.params },
          { name: "steps", cls: "count", value: r.steps },
          { name: "bestAccuracy", cls: "accuracy", value: typeof acc === "number" ? acc : null },
          ...bytesMetrics("peakBytes", r.peakBytes as unknown as Record<string, number>),
          { name: "trainTokensPerS", cls: "speed", value: r.trainTokensPerS ?? null },
        ],
      };
    }),
  };
}

function looksLikeRunResult(v: unknown): v is RunResult {
  return typeof v === "object" && v !== null && "runId" in v && "config" in v && "peakBytes" in v;
}

/** Reads a bench JSON (`mqar bench --out`'s bench.json), a result record, a results .jsonl file or a results dir. */
export async function loadGateInput(path: string): Promise<GateInput> {
  let text: string | null = null;
  try {
    const stat = await Deno.stat(path);
    if (stat.isFile) text = await Deno.readTextFile(path);
  } catch (e) {
    throw new GateInputError(`${path}: ${(e as Error).message}`);
  }
  if (text !== null) {
    let parsed: unknown = undefined;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not one JSON document: a JSONL results file, read below
    }
    if (parsed !== undefined) {
      if (typeof parsed === "object" && parsed !== null && (parsed as { schema?: unknown }).schema === BENCH_SCHEMA) {
        const report = parsed as BenchReport;
        if (!Array.isArray(report.cases)) throw new GateInputError(`${path}: bench report without cases`);
        return gateInputFromBench(report, path);
      }
      if (looksLikeRunResult(parsed)) return gateInputFromResults([parsed], path);
      if (Array.isArray(parsed) && parsed.length === 0) {
        throw new GateInputError(`${path}: an empty list: no result records or bench cases to compare`);
      }
      if (Array.isArray(parsed) && parsed.every(looksLikeRunResult)) return gateInputFromResults(parsed, path);
      if (!text.includes("\n{")) {
        throw new GateInputError(`${path}: neither a bench report (schema ${BENCH_SCHEMA}) nor result records`);
      }
    }
  }
  try {
    const read = await readResultsAt([path]);
    if (read.results.length === 0) throw new GateInputError(`${path}: no result records`);
    return gateInputFromResults(read.results.map((r) => r.result), path);
  } catch (e) {
    if (e instanceof GateInputError) throw e;
    throw new GateInputError(`${path}: ${(e as Error).message}`);
  }
}

export type ComparisonStatus = "pass" | "regression" | "improved" | "skipped";

export interface Comparison {
  /** "CASE:METRIC". */
  metric: string;
  cls: MetricClass | "status";
  direction: Direction;
  baseline: number | null;
  current: number | null;
  tolerance: Tolerance | null;
  /** What the values are (e.g. "tokens/s per reference GFLOP/s"). */
  unit: string;
  status: ComparisonStatus;
  /** One line: the metric, baseline, current and the allowed tolerance. */
  message: string;
}

export interface GateOptions {
  rules?: ToleranceRules;
  normalize?: Normalize;
  /** Only these classes are compared (others are skipped silently). */
  only?: readonly MetricClass[];
}

export interface GateOutcome {
  comparisons: Comparison[];
  regressions: Comparison[];
  improvements: Comparison[];
  notes: string[];
  passed: boolean;
}

export function toleranceFor(rules: ToleranceRules, caseId: string, metric: string, cls: MetricClass): Tolerance {
  for (let i = rules.byPattern.length - 1; i >= 0; i--) {
    const p = rules.byPattern[i];
    if (p.regex.test(`${caseId}:${metric}`) || p.regex.test(metric)) return p.tolerance;
  }
  return rules.byClass[cls] ?? DEFAULT_TOLERANCES[cls];
}

export function formatTolerance(t: Tolerance, direction: Direction): string {
  const sign = direction === "higher" ? "-" : direction === "lower" ? "+" : "±";
  if (t.kind === "absolute" && t.value === 0) return "exact";
  return t.kind === "relative" ? `${sign}${+(t.value * 100).toFixed(4)}%` : `${sign}${t.value}`;
}

const fmtValue = (x: number | null) =>
  x === null ? "missing" : Number.isInteger(x) ? String(x) : Math.abs(x) >= 1000 ? x.toFixed(1) : x.toPrecision(4);

function relChange(baseline: number, current: number): string {
  if (current === baseline) return "";
  if (baseline === 0) return " (from 0)";
  const pct = ((current - baseline) / Math.abs(baseline)) * 100;
  return ` (${pct >= 0 ? "+" : ""}${pct.toFixed(pct !== 0 && Math.abs(pct) < 0.1 ? 3 : 1)}%)`;
}

/** Judges one pair of values: the core of the gate (exported for tests). */
export function judge(
  baseline: number,
  current: number,
  direction: Direction,
  tol: Tolerance,
): "pass" | "regression" | "improved" {
  const allowance = tol.kind === "relative" ? tol.value * Math.abs(baseline) : tol.value;
  // A hair of slack so 0.1 + 0.2-style float noise in a relative bound never decides a deterministic comparison.
  const eps = 1e-12 * Math.max(1, Math.abs(baseline));
  const worse = direction === "higher"
    ? current < baseline - allowance - eps
    : direction === "lower"
    ? current > baseline + allowance + eps
    : Math.abs(current - baseline) > allowance + eps;
  if (worse) return "regression";
  const better = direction === "higher"
    ? current > baseline + allowance + eps
    : direction === "lower"
    ? current < baseline - allowance - eps
    : false;
  return better ? "improved" : "pass";
}

interface SpeedView {
  value: number | null;
  unit: string;
  /** Why this case's speed cannot be normalised. */
  skip: string | null;
}

function speedView(input: GateInput, c: GateCase, m: GateMetric, normalize: Normalize): SpeedView {
  const mode = normalize === "auto" ? (input.kind === "bench" ? "reference" : "unavailable") : normalize;
  if (m.value === null) return { value: null, unit: "", skip: null };
  if (mode === "unavailable") {
    return {
      value: null,
      unit: "",
      skip: "results files carry no reference measurement: pass --normalize mixer:NAME (or none) to compare speed",
    };
  }
  if (mode === "none") return { value: m.value, unit: "tokens/s (raw)", skip: null };
  if (mode === "reference") {
    if (!c.referenceGflops) return { value: null, unit: "", skip: `${input.source} has no reference GFLOP/s` };
    return { value: m.value / c.referenceGflops, unit: "tokens/s per reference GFLOP/s", skip: null };
  }
  const ref = input.cases.find((o) => o.mixer === mode.mixer && o.shape === c.shape);
  const refValue = ref?.metrics.find((o) => o.name === m.name)?.value ?? null;
  if (!refValue) {
    return { value: null, unit: "", skip: `no ${mode.mixer} ${m.name} at ${c.shape} in ${input.source}` };
  }
  return { value: m.value / refValue, unit: `× ${mode.mixer}'s ${m.name}`, skip: null };
}

/** Compares `current` with `baseline`; passed is false when any metric regressed. */
export function runGate(baseline: GateInput, current: GateInput, options: GateOptions = {}): GateOutcome {
  const rules = options.rules ?? emptyRules();
  const normalize = options.normalize ?? "auto";
  const only = options.only ? new Set(options.only) : null;
  const comparisons: Comparison[] = [];
  const notes: string[] = [];
  const skipReasons = new Map<string, number>();
  const skip = (reason: string) => skipReasons.set(reason, (skipReasons.get(reason) ?? 0) + 1);
  const sameAdapter = baseline.adapter !== null && baseline.adapter === current.adapter;
  if (!sameAdapter && (!only || only.has("machine_bytes") || only.has("traffic"))) {
    skip(
      `workspace/total bytes and per-step traffic not compared: adapters differ (baseline ${baseline.adapter}, ` +
        `current ${current.adapter})`,
    );
  }
  const currentById = new Map(current.cases.map((c) => [c.id, c]));
  for (const b of baseline.cases) {
    const c = currentById.get(b.id);
    if (!c) {
      if (b.status === "ok") {
        comparisons.push({
          metric: `${b.id}:case`,
          cls: "status",
          direction: "equal",
          baseline: null,
          current: null,
          tolerance: null,
          unit: "",
          status: "regression",
          message: `${b.id}: case missing from current (${current.source}); baseline ran it`,
        });
      }
      continue;
    }
    if (b.status === "ok" && c.status !== "ok") {
      comparisons.push({
        metric: `${b.id}:status`,
        cls: "status",
        direction: "equal",
        baseline: null,
        current: null,
        tolerance: null,
        unit: "",
        status: "regression",
        message: `${b.id}: status ok in baseline, ${c.status} in current${c.note ? ` (${c.note})` : ""}`,
      });
      continue;
    }
    if (b.status !== "ok") {
      skip(`cases not ok in the baseline are not compared`);
      continue;
    }
    for (const bm of b.metrics) {
      if (only && !only.has(bm.cls)) continue;
      const cm = c.metrics.find((m) => m.name === bm.name);
      if ((bm.cls === "machine_bytes" || bm.cls === "traffic") && !sameAdapter) continue;
      let bv = bm.value, cv = cm?.value ?? null, unit = "";
      if (bm.cls === "speed") {
        const bs = speedView(baseline, b, bm, normalize);
        const cs = cm ? speedView(current, c, cm, normalize) : { value: null, unit: "", skip: null };
        if (bs.skip || cs.skip) {
          skip(`speed not compared: ${bs.skip ?? cs.skip}`);
          continue;
        }
        if (typeof normalize === "object" && b.mixer === normalize.mixer) {
          skip(`speed of the normalising mixer ${normalize.mixer} is 1 by definition and not compared`);
          continue;
        }
        bv = bs.value;
        cv = cs.value;
        unit = bs.unit;
      }
      if (bv === null) continue; // nothing to hold the current run to
      const metric = `${b.id}:${bm.name}`;
      const direction = DIRECTIONS[bm.cls];
      const tol = toleranceFor(rules, b.id, bm.name, bm.cls);
      const allowed = formatTolerance(tol, direction);
      const what = `${b.id} ${bm.name}${unit ? ` (${unit})` : ""}`;
      if (cv === null) {
        comparisons.push({
          metric,
          cls: bm.cls,
          direction,
          baseline: bv,
          current: null,
          tolerance: tol,
          unit,
          status: "regression",
          message: `${what}: baseline ${fmtValue(bv)}, current missing, allowed ${allowed} (${bm.cls})`,
        });
        continue;
      }
      const status = judge(bv, cv, direction, tol);
      comparisons.push({
        metric,
        cls: bm.cls,
        direction,
        baseline: bv,
        current: cv,
        tolerance: tol,
        unit,
        status,
        message: `${what}: baseline ${fmtValue(bv)}, current ${fmtValue(cv)}${relChange(bv, cv)}, allowed ${allowed} ` +
          `(${bm.cls}${direction === "equal" ? "" : `, ${direction} is better`})`,
      });
    }
  }
  for (const c of current.cases) {
    if (!baseline.cases.some((b) => b.id === c.id)) notes.push(`${c.id}: not in the baseline (not gated)`);
  }
  for (const [reason, n] of skipReasons) notes.push(n > 1 ? `${reason} (${n}×)` : reason);
  const regressions = comparisons.filter((c) => c.status === "regression");
  const improvements = comparisons.filter((c) => c.status === "improved");
  if (improvements.length) {
    notes.push(`${improvements.length} metric(s) improved beyond tolerance: refresh the baseline to lock the gains in`);
  }
  // A gate that compared nothing (an empty baseline, no case in common, --only filtering everything) proves nothing.
  const compared = comparisons.filter((c) => c.status !== "skipped").length;
  if (compared === 0) notes.push("nothing was compared (no metric in common with the baseline): failing");
  return { comparisons, regressions, improvements, notes, passed: regressions.length === 0 && compared > 0 };
}
