/**
 * Bench output: the full JSON, CSV and Markdown tables, a plain-text table for the terminal, and the adapter that turns
 * bench cases into result records (`bench-results.jsonl`) so `mqar report --results <bench dir>` draws the throughput
 * and memory figures from them. Those records carry no accuracy (bestAccuracy null), so the report leaves them out of
 * the accuracy tables and says so in its notes.
 */
import { join } from "node:path";
import { writeTextAtomic } from "../io/atomic.ts";
import { toCsv } from "../report/csv.ts";
import { fmtFixed, fmtInt, markdownTable, type Table } from "../report/markdown.ts";
import { writeResultsFile } from "../sweep/results_file.ts";
import { RESULT_SCHEMA_VERSION, type RunConfig, type RunResult } from "../train/result.ts";
import { computeRunId } from "../train/run_id.ts";
import { modelConfigOf } from "../train/config.ts";
import { stateSize } from "../model/state_size.ts";
import { type BenchCaseResult, type BenchReport, BYTE_KEYS } from "./throughput.ts";

const MIB = 2 ** 20;
export const BENCH_FILES = {
  json: "bench.json",
  csv: "bench.csv",
  markdown: "bench.md",
  kernels: "kernels.csv",
  results: "bench-results.jsonl",
} as const;

/** Kernels listed per case in the Markdown and terminal output. */
const TOP_KERNELS = 8;

const num = (x: number | null | undefined, digits = 0) =>
  x === null || x === undefined || !Number.isFinite(x) ? "–" : digits === 0 ? fmtInt(x) : x.toFixed(digits);

/** 3 significant digits for FLOP counts and rates of any magnitude (1.23e9 → "1.23G"). */
export function fmtSi(x: number | null | undefined): string {
  if (x === null || x === undefined || !Number.isFinite(x)) return "–";
  const units: [number, string][] = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
  for (const [scale, unit] of units) if (Math.abs(x) >= scale) return `${(x / scale).toPrecision(3)}${unit}`;
  return x.toPrecision(3);
}

export function benchCsv(report: BenchReport): string {
  const header = [
    "mixer",
    "d_model",
    "seq_len",
    "num_kv_pairs",
    "vocab_size",
    "requested_batch",
    "batch",
    "status",
    "note",
    "params",
    "state_floats",
    "train_tokens_per_s",
    "train_tokens_per_s_min",
    "train_tokens_per_s_max",
    "train_seconds_per_step",
    "inference_tokens_per_s",
    "reference_gflops",
    "train_tokens_per_s_per_reference_gflops",
    "analytic_train_flops_per_token",
    "analytic_forward_flops_per_token",
    "achieved_train_gflops",
    "achieved_inference_gflops",
    ...BYTE_KEYS.map((k) => `peak_bytes_train_${k}`),
    "peak_bytes_train_total_per_token",
    ...BYTE_KEYS.map((k) => `peak_bytes_inference_${k}`),
    "peak_bytes_inference_total_per_token",
    "analytic_bytes_train_total",
    "analytic_bytes_train_activations",
    "analytic_activation_bytes_per_token",
    "train_loss",
    "kernel_profile_total_ms",
    "linear_attention_form",
  ];
  const rows = report.cases.map((c) => [
    c.mixer,
    c.dModel,
    c.seqLen,
    c.numKvPairs,
    c.vocabSize,
    c.requestedBatch,
    c.batch,
    c.status,
    c.note ?? "",
    c.params,
    c.stateFloats,
    c.train?.tokensPerS,
    c.train?.min,
    c.train?.max,
    c.train?.secondsPerStep,
    c.inference?.tokensPerS,
    c.referenceGflops,
    c.train && c.referenceGflops ? c.train.tokensPerS / c.referenceGflops : null,
    c.analytic.flopsPerToken.train,
    c.analytic.flopsPerToken.forward,
    c.achievedGflops.train,
    c.achievedGflops.inference,
    ...BYTE_KEYS.map((k) => c.peakBytes.train?.[k]),
    c.peakBytesPerToken.train?.total,
    ...BYTE_KEYS.map((k) => c.peakBytes.inference?.[k]),
    c.peakBytesPerToken.inference?.total,
    c.analytic.bytes.train.total,
    c.analytic.bytes.train.activations,
    c.analytic.bytes.train.activationsPerToken,
    c.trainLoss,
    c.kernels?.available ? c.kernels.totalMs : null,
    c.analytic.linearAttention ?? "",
  ]);
  return toCsv(header, rows);
}

export function kernelsCsv(report: BenchReport): string {
  const header = ["mixer", "d_model", "seq_len", "batch", "rank", "label", "group", "phase", "calls", "ms", "share"];
  const rows = report.cases.flatMap((c) =>
    (c.kernels?.available ? c.kernels.kernels : []).map((k, i) => [
      c.mixer,
      c.dModel,
      c.seqLen,
      c.batch,
      i + 1,
      k.label,
      k.group,
      k.phase,
      k.calls,
      k.ms,
      k.share,
    ])
  );
  return toCsv(header, rows);
}

/** The main table: one row per case. */
export function benchTable(report: BenchReport): Table {
  return {
    header: [
      "mixer",
      "d",
      "L",
      "B",
      "state floats",
      "train tok/s",
      "infer tok/s",
      "FLOP/token (train)",
      "achieved GFLOP/s",
      "peak MiB (train)",
      "peak B/token",
      "activations MiB analytic / measured",
      "status",
    ],
    align: [
      "left",
      "right",
      "right",
      "right",
      "right",
      "right",
      "right",
      "right",
      "right",
      "right",
      "right",
      "right",
      "left",
    ],
    rows: report.cases.map((c) => [
      c.mixer,
      String(c.dModel),
      String(c.seqLen),
      c.batch ? String(c.batch) : "–",
      num(c.stateFloats),
      num(c.train?.tokensPerS),
      num(c.inference?.tokensPerS),
      fmtSi(c.analytic.flopsPerToken.train) + (c.analytic.linearAttention === "chunked" ? " (chunked)" : ""),
      num(c.achievedGflops.train, 2),
      c.peakBytes.train ? fmtFixed(c.peakBytes.train.total / MIB, 1) : "–",
      num(c.peakBytesPerToken.train?.total),
      `${fmtFixed(c.analytic.bytes.train.activations / MIB, 1)} / ${
        c.peakBytes.train ? fmtFixed(c.peakBytes.train.activations / MIB, 1) : "–"
      }`,
      c.note ? (c.note.startsWith(c.status) ? c.note : `${c.status} (${c.note})`) : c.status,
    ]),
  };
}

function memoryTable(report: BenchReport): Table {
  const cats = ["params", "grads", "optimizer", "activations", "workspace", "total"] as const;
  return {
    caption: "Peak GPU bytes of the training step by category (allocator, exact) and per token (B·L)",
    header: ["mixer", "d", "L", "B", ...cats.map((c) => `${c} MiB`), "total B/token", "analytic (4 categories) MiB"],
    align: ["left", "right", "right", "right", ...cats.map(() => "right" as const), "right", "right"],
    rows: report.cases.filter((c) => c.peakBytes.train).map((c) => [
      c.mixer,
      String(c.dModel),
      String(c.seqLen),
      String(c.batch),
      ...cats.map((k) => fmtFixed(c.peakBytes.train![k] / MIB, 2)),
      num(c.peakBytesPerToken.train!.total),
      fmtFixed(c.analytic.bytes.train.total / MIB, 2),
    ]),
  };
}

/** Kernel time as a share of the timed step: the rest is submission, uploads and the wait (large on CPU adapters). */
function coverage(c: BenchCaseResult): string {
  if (!c.kernels?.available || !c.train) return "";
  return `, ${(100 * c.kernels.totalMs / (1000 * c.train.secondsPerStep)).toFixed(0)}% of the timed step`;
}

function kernelTable(c: BenchCaseResult): Table | null {
  if (!c.kernels?.available || c.kernels.kernels.length === 0) return null;
  return {
    caption: `${c.id} (batch ${c.batch}): top kernels of one training step, ${c.kernels.totalMs.toFixed(1)} ms in ` +
      `kernels${coverage(c)} (median of ${c.kernels.passes} profiled step${c.kernels.passes === 1 ? "" : "s"})`,
    header: ["kernel", "phase", "calls", "ms", "share"],
    align: ["left", "left", "right", "right", "right"],
    rows: c.kernels.kernels.slice(0, TOP_KERNELS).map((k) => [
      k.label,
      k.phase,
      String(k.calls),
      k.ms.toFixed(2),
      `${(100 * k.share).toFixed(1)}%`,
    ]),
  };
}

function headerLines(report: BenchReport): string[] {
  const s = report.settings;
  return [
    `adapter: ${report.adapter.description} (${report.adapter.backend}${
      report.adapter.software ? ", software" : ""
    }); features: ${report.features.join(", ") || "none"}`,
    `settings: batch ${s.batchSize}, ${s.steps} step(s) × ${s.repeats} repeat(s) (median), warm-up ${s.warmup}, ` +
    `V=${s.vocabSize}, N=${s.kvPairs ?? "L/4 (16 at L=128)"}, seed ${s.seed}`,
    `reference: ${report.reference.name}: ${num(report.reference.gflops, 2)} GFLOP/s (median over cases)`,
  ];
}

export function benchMarkdown(report: BenchReport): string {
  const parts = [
    "# mqar bench\n",
    headerLines(report).map((l) => `- ${l}`).join("\n") + "\n",
    "Training = forward + backward + AdamW on random MQAR batches (uploaded each step as in training, no readback in " +
    "the timed loop); inference = forward only. tokens/s: median over repeats. FLOP/token: analytic model FLOPs " +
    "(matmuls incl. the LM head on labelled rows, causal O(L²) attention terms, Based/ReBased in the form the model " +
    "runs: the O(L²) parallel form, or the O(L) chunked form where marked; src/bench/analytic.ts). Peak bytes: " +
    "the allocator's exact accounting.\n",
    markdownTable(benchTable(report)),
    markdownTable(memoryTable(report)),
    ...report.cases.map(kernelTable).filter((t): t is Table => t !== null).map(markdownTable),
  ];
  const profileNotes = report.cases.map((c) => c.kernels?.note).filter((n): n is string => Boolean(n));
  const notes = [...report.notes, ...new Set(profileNotes)];
  if (notes.length) parts.push(`Notes:\n\n${notes.map((n) => `- ${n}`).join("\n")}\n`);
  return parts.join("\n");
}

/** Plain aligned text for the terminal. */
export function textTable(table: Table): string {
  const all = [table.header, ...table.rows];
  const widths = table.header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r.map((cell, i) => (table.align?.[i] === "right" ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))).join("  ")
      .trimEnd();
  return [line(table.header), line(widths.map((w) => "-".repeat(w))), ...table.rows.map(line)].join("\n");
}

export function benchText(report: BenchReport): string {
  const out = [...headerLines(report), "", textTable(benchTable(report))];
  for (const c of report.cases) {
    if (!c.kernels) continue;
    if (!c.kernels.available) continue;
    const top = c.kernels.groups.slice(0, 5).map((g) => `${g.group} [${g.phase}] ${(100 * g.share).toFixed(0)}%`)
      .join(", ");
    out.push(`${c.id} top kernels: ${top}`);
  }
  const unavailable = report.cases.find((c) => c.kernels && !c.kernels.available);
  if (unavailable) out.push(`per-kernel times: ${unavailable.kernels!.note}`);
  return out.join("\n");
}

/** Result records for `mqar report`: throughput and peak bytes, no accuracy. Only cases that ran. */
export function benchRunResults(report: BenchReport): RunResult[] {
  return report.cases.filter((c) => c.status === "ok" && c.train && c.peakBytes.train).map((c) => {
    const s = report.settings;
    const steps = c.train!.stepsPerRepeat * c.train!.repeats.length;
    const config: RunConfig = {
      mixer: c.mixer,
      dModel: c.dModel,
      seqLen: c.seqLen,
      numKvPairs: c.numKvPairs,
      vocabSize: c.vocabSize,
      powerA: 0.01,
      randomNonQueries: false,
      dataSeed: 42,
      trainExamples: 2 * c.batch,
      testExamples: 1,
      batchSize: c.batch,
      microBatchSize: c.batch,
      epochs: 1,
      lr: s.lr,
      weightDecay: 0.1,
      seed: s.seed,
      earlyStopAccuracy: 0.99,
      maxSteps: steps,
    };
    const wall = c.train!.secondsPerStep * steps;
    return {
      schema: RESULT_SCHEMA_VERSION,
      runId: computeRunId(config),
      status: "ok",
      stopReason: "benchmark: throughput and memory only, no accuracy",
      config,
      params: c.params,
      accuracyPerEpoch: [],
      trainLossPerEpoch: c.trainLoss === null ? [] : [c.trainLoss],
      bestAccuracy: null as unknown as number,
      bestEpoch: -1,
      epochsRun: 0,
      steps,
      wallTimeS: wall,
      trainTokensPerS: c.train!.tokensPerS,
      peakBytes: c.peakBytes.train!,
      ...(c.stateFloats === null ? {} : { stateFloats: stateSize(modelConfigOf(config)) }),
      adapter: report.adapter,
      env: report.env,
      startedAt: report.createdAt,
      finishedAt: report.createdAt,
    };
  });
}

/** Writes bench.json, bench.csv, bench.md, kernels.csv and bench-results.jsonl into `dir`; returns the paths. */
export async function writeBenchOutputs(dir: string, report: BenchReport): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const files: [string, string][] = [
    [BENCH_FILES.json, JSON.stringify(report, null, 2) + "\n"],
    [BENCH_FILES.csv, benchCsv(report)],
    [BENCH_FILES.markdown, benchMarkdown(report)],
    [BENCH_FILES.kernels, kernelsCsv(report)],
  ];
  const paths: string[] = [];
  for (const [name, content] of files) {
    const path = join(dir, name);
    await writeTextAtomic(path, content);
    paths.push(path);
  }
  const resultsPath = join(dir, BENCH_FILES.results);
  await writeResultsFile(resultsPath, benchRunResults(report));
  paths.push(resultsPath);
  return paths;
}
