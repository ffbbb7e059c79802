/**
 * The report: from result records to CSV / Markdown tables, SVG figures and one self-contained index.html.
 * `buildReport` is pure (records in, file contents out); `writeReport` puts the files in a directory.
 */
import { join } from "node:path";
import { writeTextAtomic } from "../io/atomic.ts";
import type { RunResult } from "../train/result.ts";
import { type ArchName, makeArchConfig } from "../model/config.ts";
import { findArchitecture } from "../mixers/registry.ts";
import { paramCount } from "../model/param_count.ts";
import { stateSize } from "../model/state_size.ts";
import {
  aggregate,
  type Aggregation,
  compareMixers,
  mean,
  scoreOf,
  sortedUnique,
  type SummaryRow,
  type Task,
  taskLabel,
  tasksOf,
} from "./aggregate.ts";
import { toCsv } from "./csv.ts";
import { evpCurve } from "./evp.ts";
import { type HtmlFigure, type HtmlSection, renderHtmlPage } from "./html.ts";
import { fmtFixed, fmtInt, fmtLr, fmtMeanStd, markdownTable, type Table } from "./markdown.ts";
import {
  type Figure,
  formatNumber,
  MARKERS,
  type MarkerShape,
  PALETTE,
  type Panel,
  renderFigure,
  type Series,
  toStandaloneSvg,
} from "./svg.ts";

/** "name (the paper's label)", e.g. "rebased_x2 (x²)", from the mixer registry; unknown names as they are. */
export function mixerLabel(mixer: string): string {
  const arch = findArchitecture(mixer);
  const label = arch ? arch.paperLabel ?? arch.label : undefined;
  return label && label.toLowerCase() !== mixer ? `${mixer} (${label})` : mixer;
}

export interface ReportOptions {
  title?: string;
  /** Shown in the page; pass a fixed value for reproducible output. */
  generatedAt?: string;
  /** Where the records came from (files). */
  sources?: string[];
  /** Problems found while reading the inputs (torn lines, duplicates), shown with the report's own notes. */
  inputNotes?: string[];
}

export interface ReportFile {
  name: string;
  content: string;
}

export interface ReportOutput {
  files: ReportFile[];
  notes: string[];
  aggregation: Aggregation;
}

export interface ThroughputRow {
  mixer: string;
  dModel: number;
  seqLen: number;
  nRuns: number;
  tokensPerSMean: number | null;
  tokensPerSMin: number | null;
  tokensPerSMax: number | null;
  peakBytesMax: Record<string, number>;
  microBatchSizes: number[];
}

const BYTE_CATEGORIES = ["total", "params", "grads", "optimizer", "activations", "workspace"];
const MIB = 1024 * 1024;

/** Throughput and peak memory per (mixer, d, L), over every run that produced numbers (status ok or nan). */
export function throughputRows(results: readonly RunResult[]): ThroughputRow[] {
  const groups = new Map<string, RunResult[]>();
  for (const r of results) {
    if (r.status === "error") continue;
    const k = `${r.config.mixer}|${r.config.dModel}|${r.config.seqLen}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  const rows: ThroughputRow[] = [];
  for (const runs of groups.values()) {
    const c = runs[0].config;
    const rates = runs.map((r) => r.trainTokensPerS as number | null).filter((t): t is number =>
      typeof t === "number" && Number.isFinite(t) && t > 0
    );
    const peakBytesMax: Record<string, number> = {};
    for (const cat of BYTE_CATEGORIES) {
      const vals = runs.map((r) => (r.peakBytes as Record<string, number>)[cat]).filter((v) => Number.isFinite(v));
      if (vals.length) peakBytesMax[cat] = Math.max(...vals);
    }
    rows.push({
      mixer: c.mixer,
      dModel: c.dModel,
      seqLen: c.seqLen,
      nRuns: runs.length,
      tokensPerSMean: rates.length ? mean(rates) : null,
      tokensPerSMin: rates.length ? Math.min(...rates) : null,
      tokensPerSMax: rates.length ? Math.max(...rates) : null,
      peakBytesMax,
      microBatchSizes: sortedUnique(runs.map((r) => r.config.microBatchSize)),
    });
  }
  return rows.sort((a, b) => a.seqLen - b.seqLen || compareMixers(a.mixer, b.mixer) || a.dModel - b.dModel);
}

/** File-name tag of a task: "L256", or "L256-N32" when several N share that L. */
function taskTag(task: Task, tasks: readonly Task[]): string {
  const shared = tasks.filter((t) => t.seqLen === task.seqLen).length > 1;
  return shared ? `L${task.seqLen}-N${task.numKvPairs}` : `L${task.seqLen}`;
}

const sameTask = (a: Task, b: Task) => a.seqLen === b.seqLen && a.numKvPairs === b.numKvPairs;

/** Stable styles: one colour and marker per mixer, in the report's mixer order, the same in every figure. */
function mixerStyles(mixers: readonly string[]): (m: string) => { color: string; marker: MarkerShape } {
  return (m) => {
    const i = Math.max(0, mixers.indexOf(m));
    return { color: PALETTE[i % PALETTE.length], marker: MARKERS[i % MARKERS.length] };
  };
}

function integerTicks(max: number): number[] {
  if (max <= 10) return Array.from({ length: max }, (_, i) => i + 1);
  const step = max <= 25 ? 5 : max <= 50 ? 10 : Math.ceil(max / 50) * 10;
  const out = [1];
  for (let t = step; t <= max; t += step) out.push(t);
  return out;
}

const ACCURACY_AXIS = (label: string) => ({ label, scale: "linear" as const, domain: [0, 1] as [number, number] });

function figure1(
  task: Task,
  rows: SummaryRow[],
  mixers: string[],
  style: (m: string) => { color: string; marker: MarkerShape },
): Figure {
  const dModels = sortedUnique(rows.map((r) => r.dModel), (a, b) => a - b);
  const series: Series[] = mixers.map((mixer) => ({
    name: mixer,
    ...style(mixer),
    points: rows.filter((r) => r.mixer === mixer).map((r) => ({
      x: r.dModel,
      y: r.mean,
      ...(r.std === null ? {} : { yLow: Math.max(0, r.mean - r.std), yHigh: Math.min(1, r.mean + r.std) }),
    })),
  })).filter((s) => s.points.length > 0);
  return {
    title: `MQAR accuracy vs model dimension (${taskLabel(task)})`,
    subtitle:
      "each point: best lr by mean over seeds; error bars: ±1 sample std over seeds at that lr, clipped to [0, 1]",
    legendTitle: "mixer",
    panels: [{
      title: taskLabel(task),
      x: { label: "model dimension d_model (log2 scale)", scale: "log2", ticks: dModels },
      y: ACCURACY_AXIS("test accuracy (fraction of queries)"),
      series,
    }],
  };
}

/** Recurrent state floats per sequence of a cell's model (from one of its records: the window, if any, is the config's). */
function cellStateFloats(row: SummaryRow, results: readonly RunResult[]): number | null {
  const r = results.find((x) =>
    x.config.mixer === row.mixer && x.config.dModel === row.dModel && x.config.seqLen === row.seqLen &&
    x.config.numKvPairs === row.numKvPairs
  );
  if (!r || !findArchitecture(r.config.mixer)) return null;
  const { mixer, dModel, seqLen, vocabSize, window } = r.config;
  return stateSize(makeArchConfig({ mixer: mixer as ArchName, dModel, seqLen, vocabSize, window })).total;
}

/** Accuracy against recurrent state size, the axis zoology compares recall on: a point per (mixer, d_model). */
function stateFigure(
  task: Task,
  rows: SummaryRow[],
  results: readonly RunResult[],
  mixers: string[],
  style: (m: string) => { color: string; marker: MarkerShape },
): Figure {
  const series: Series[] = mixers.map((mixer) => ({
    name: mixer,
    ...style(mixer),
    points: rows.filter((r) => r.mixer === mixer).flatMap((r) => {
      const x = cellStateFloats(r, results);
      return x === null ? [] : [{ x, y: r.mean }];
    }).sort((a, b) => a.x - b.x),
  })).filter((s) => s.points.length > 0);
  return {
    title: `MQAR accuracy vs recurrent state size (${taskLabel(task)})`,
    subtitle: "state: floats a layer keeps per sequence (softmax attention: its KV cache at L), both layers; " +
      "a point per d_model at its best lr",
    legendTitle: "mixer",
    panels: [{
      title: taskLabel(task),
      x: { label: "recurrent state (floats per sequence, log2 scale)", scale: "log2" },
      y: ACCURACY_AXIS("test accuracy (fraction of queries)"),
      series,
    }],
  };
}

function evpFigure(
  task: Task,
  rows: SummaryRow[],
  mixers: string[],
  style: (m: string) => { color: string; marker: MarkerShape },
): Figure {
  const dModels = sortedUnique(rows.map((r) => r.dModel), (a, b) => a - b);
  const maxPool = Math.max(...rows.map((r) => r.scores.length));
  const panels: Panel[] = dModels.map((d) => ({
    title: `d_model = ${d}`,
    x: {
      label: "trials n (runs drawn from the lr × seed pool)",
      scale: "linear",
      domain: [1, Math.max(2, maxPool)],
      ticks: integerTicks(maxPool),
    },
    y: ACCURACY_AXIS("expected best accuracy (fraction)"),
    series: mixers.flatMap((mixer) => {
      const row = rows.find((r) => r.mixer === mixer && r.dModel === d);
      if (!row) return [];
      const lo = Math.min(...row.scores);
      const hi = Math.max(...row.scores);
      return [{
        name: mixer,
        ...style(mixer),
        band: true,
        points: evpCurve(row.scores).map((p) => ({
          x: p.n,
          y: p.mean,
          yLow: Math.max(lo, p.mean - p.std),
          yHigh: Math.min(hi, p.mean + p.std),
        })),
      }];
    }),
  }));
  return {
    title: `Expected validation performance (${taskLabel(task)})`,
    subtitle:
      "Dodge et al. 2019, draws with replacement from all lr × seed runs; band: ±1 std, clipped to the pool's range",
    legendTitle: "mixer",
    columns: Math.min(4, panels.length),
    panelWidth: 360,
    panelHeight: 300,
    panels,
  };
}

function perLFigure(
  title: string,
  yLabel: string,
  rows: ThroughputRow[],
  value: (r: ThroughputRow) => number | null,
  mixers: string[],
  style: (m: string) => { color: string; marker: MarkerShape },
): Figure {
  const dModels = sortedUnique(rows.map((r) => r.dModel), (a, b) => a - b);
  const seqLens = sortedUnique(rows.map((r) => r.seqLen), (a, b) => a - b);
  const panels: Panel[] = dModels.map((d) => ({
    title: `d_model = ${d}`,
    x: { label: "sequence length L (tokens, log2 scale)", scale: "log2", ticks: seqLens },
    y: { label: yLabel, scale: "log10" },
    series: mixers.map((mixer) => ({
      name: mixer,
      ...style(mixer),
      points: rows.filter((r) => r.mixer === mixer && r.dModel === d).flatMap((r) => {
        const v = value(r);
        return v !== null && Number.isFinite(v) && v > 0 ? [{ x: r.seqLen, y: v }] : [];
      }),
    })).filter((s) => s.points.length > 0),
  }));
  return {
    title,
    subtitle: "one panel per d_model; log–log axes",
    legendTitle: "mixer",
    columns: Math.min(4, panels.length),
    panelWidth: 360,
    panelHeight: 300,
    panels,
  };
}

/** Table 1 layout: one table per task, a row per mixer, "mean ± std" per d, and the mean over d like the paper. */
function table1(task: Task, rows: SummaryRow[], mixers: string[]): Table {
  const dModels = sortedUnique(rows.map((r) => r.dModel), (a, b) => a - b);
  return {
    caption: taskLabel(task),
    header: ["mixer", ...dModels.map((d) => `d=${d}`), "mean over d"],
    align: ["left", ...dModels.map(() => "right" as const), "right"],
    rows: mixers.filter((m) => rows.some((r) => r.mixer === m)).map((mixer) => {
      const cells = dModels.map((d) => rows.find((r) => r.mixer === mixer && r.dModel === d));
      const present = cells.filter((c): c is SummaryRow => c !== undefined);
      const meanOverD = fmtFixed(mean(present.map((c) => c.mean)), 2) + (present.length < dModels.length ? "*" : "");
      return [mixerLabel(mixer), ...cells.map((c) => (c ? fmtMeanStd(c.mean, c.std, 2) : "–")), meanOverD];
    }),
  };
}

function summaryTable(rows: SummaryRow[]): Table {
  return {
    header: ["mixer", "d_model", "L", "N", "best lr", "mean acc", "std", "seeds", "mean acc by lr", "runs"],
    align: ["left", "right", "right", "right", "right", "right", "right", "right", "left", "right"],
    rows: rows.map((r) => [
      r.mixer,
      String(r.dModel),
      String(r.seqLen),
      String(r.numKvPairs),
      fmtLr(r.bestLr),
      fmtFixed(r.mean, 3),
      fmtFixed(r.std, 3),
      String(r.nSeeds),
      r.lrs.map((l) => `${fmtLr(l.lr)}: ${fmtFixed(l.mean, 3)} (${l.scores.length})`).join(", "),
      String(r.scores.length),
    ]),
  };
}

/** The spec §4 count for a run's model, or null for an architecture the model code does not know. */
function expectedParams(r: RunResult): number | null {
  try {
    const c = r.config;
    return paramCount(
      makeArchConfig({ mixer: c.mixer as ArchName, dModel: c.dModel, seqLen: c.seqLen, vocabSize: c.vocabSize }),
    );
  } catch {
    return null;
  }
}

function paramsTable(results: readonly RunResult[], mixers: string[], notes: string[]): Table {
  const seqLens = sortedUnique(results.map((r) => r.config.seqLen), (a, b) => a - b);
  const keys = sortedUnique(results.map((r) => `${r.config.mixer}|${r.config.dModel}`), (a, b) => {
    const [ma, da] = a.split("|");
    const [mb, db] = b.split("|");
    return compareMixers(ma, mb) || Number(da) - Number(db);
  }).filter((k) => mixers.includes(k.split("|")[0]));
  const rows = keys.map((k) => {
    const [mixer, d] = k.split("|");
    return [
      mixer,
      d,
      ...seqLens.map((L) => {
        const runs = results.filter((r) =>
          r.config.mixer === mixer && r.config.dModel === Number(d) && r.config.seqLen === L
        );
        const values = sortedUnique(runs.map((r) => r.params), (a, b) => a - b);
        if (values.length > 1) {
          notes.push(
            `params differ between runs of ${mixer} d=${d} L=${L}: ${values.join(", ")} (different vocabSize?)`,
          );
        }
        // Cross-check against the exact count of spec §4 (src/model/param_count.ts), which reproduces Table 4.
        const expected = sortedUnique(runs.map(expectedParams).filter((v): v is number => v !== null), (a, b) => a - b);
        const mismatch = expected.length > 0 &&
          (values.length !== expected.length || values.some((v, i) => v !== expected[i]));
        if (mismatch) {
          notes.push(
            `params of ${mixer} d=${d} L=${L}: the records say ${values.join(", ")}, the spec §4 count is ${
              expected.join(", ")
            }`,
          );
        }
        const text = values.length ? values.map(fmtInt).join(" / ") : "–";
        return mismatch ? `${text} (spec: ${expected.map(fmtInt).join(" / ")})` : text;
      }),
    ];
  });
  return {
    caption: "Trainable parameters from the run records (the position embedding makes them depend on L); " +
      "a value that differs from the spec §4 count is followed by that count",
    header: ["mixer", "d_model", ...seqLens.map((L) => `L=${L}`)],
    align: ["left", "right", ...seqLens.map(() => "right" as const)],
    rows,
  };
}

function throughputTable(rows: ThroughputRow[]): Table {
  return {
    header: ["mixer", "d_model", "L", "runs", "train tokens/s (mean)", "peak memory (MiB)", "micro-batch"],
    align: ["left", "right", "right", "right", "right", "right", "right"],
    rows: rows.map((r) => [
      r.mixer,
      String(r.dModel),
      String(r.seqLen),
      String(r.nRuns),
      r.tokensPerSMean === null ? "–" : formatNumber(r.tokensPerSMean),
      r.peakBytesMax.total === undefined ? "–" : fmtFixed(r.peakBytesMax.total / MIB, 1),
      r.microBatchSizes.join(", "),
    ]),
  };
}

export const METHOD_TEXT = [
  'Score of a run: bestAccuracy, the best test accuracy over epochs (fraction of query positions predicted exactly); runs with status "error" are left out.',
  "Per (mixer, d_model, L, N, lr): mean over seeds. Per (mixer, d_model, L, N): the lr with the highest mean (ties: the smaller lr); std is the sample standard deviation over seeds at that lr (ddof = 1, as pandas; '–' with one seed), clipped to [0, 1] (paper §2.5 of the spec).",
  "EVP(n): expected best accuracy of n runs drawn with replacement from all lr × seed runs of a cell (Dodge et al. 2019); evp_unbiased: the without-replacement estimator (Dodge et al. 2021), defined for n ≤ pool size.",
];

export function buildReport(results: readonly RunResult[], opts: ReportOptions = {}): ReportOutput {
  const agg = aggregate(results);
  const notes = [...(opts.inputNotes ?? []), ...agg.notes];
  const rows = agg.rows;
  const tasks = tasksOf(rows);
  const mixers = sortedUnique(results.map((r) => r.config.mixer), compareMixers);
  const style = mixerStyles(mixers);
  const files: ReportFile[] = [];
  const add = (name: string, content: string) => files.push({ name, content });

  add(
    "summary.csv",
    toCsv(
      [
        "mixer",
        "d_model",
        "seq_len",
        "num_kv_pairs",
        "best_lr",
        "mean_accuracy",
        "std_accuracy",
        "n_seeds",
        "n_lrs",
        "n_runs",
      ],
      rows.map((
        r,
      ) => [
        r.mixer,
        r.dModel,
        r.seqLen,
        r.numKvPairs,
        r.bestLr,
        r.mean,
        r.std,
        r.nSeeds,
        r.lrs.length,
        r.scores.length,
      ]),
    ),
  );
  add(
    "by-lr.csv",
    toCsv(
      ["mixer", "d_model", "seq_len", "num_kv_pairs", "lr", "mean_accuracy", "std_accuracy", "n_seeds", "is_best_lr"],
      rows.flatMap((r) =>
        r.lrs.map((
          l,
        ) => [r.mixer, r.dModel, r.seqLen, r.numKvPairs, l.lr, l.mean, l.std, l.scores.length, l.lr === r.bestLr])
      ),
    ),
  );
  add(
    "evp.csv",
    toCsv(
      ["mixer", "d_model", "seq_len", "num_kv_pairs", "n", "evp", "evp_std", "evp_unbiased", "pool_size"],
      rows.flatMap((r) =>
        evpCurve(r.scores).map((
          p,
        ) => [r.mixer, r.dModel, r.seqLen, r.numKvPairs, p.n, p.mean, p.std, p.unbiased, r.scores.length])
      ),
    ),
  );
  const tput = throughputRows(results);
  add(
    "throughput.csv",
    toCsv(
      [
        "mixer",
        "d_model",
        "seq_len",
        "n_runs",
        "train_tokens_per_s_mean",
        "train_tokens_per_s_min",
        "train_tokens_per_s_max",
        ...BYTE_CATEGORIES.map((c) => `peak_bytes_${c}_max`),
        "micro_batch_sizes",
      ],
      tput.map((r) => [
        r.mixer,
        r.dModel,
        r.seqLen,
        r.nRuns,
        r.tokensPerSMean,
        r.tokensPerSMin,
        r.tokensPerSMax,
        ...BYTE_CATEGORIES.map((c) => r.peakBytesMax[c]),
        r.microBatchSizes.join(";"),
      ]),
    ),
  );

  const t1Tables = tasks.map((task) => table1(task, rows.filter((r) => sameTask(r, task)), mixers));
  const paramTable = paramsTable(results, mixers, notes);
  const summary = summaryTable(rows);
  const title = opts.title ?? "mqar-bench report";
  const header = (h: string) => `# ${h}\n\n`;
  const notesMd = notes.length ? `Notes:\n\n${notes.map((n) => `- ${n}`).join("\n")}\n\n` : "";
  add(
    "summary.md",
    header(`${title}: best lr per cell`) + `${METHOD_TEXT.join("\n\n")}\n\n` + notesMd + markdownTable(summary),
  );
  add(
    "table1.md",
    header(`${title}: accuracy (mean ± std over seeds at the best lr)`) +
      "Layout of the paper's Table 1: a row per mixer, a column per d_model, and the mean over d_model " +
      "(* = some d_model missing).\n\n" + t1Tables.map(markdownTable).join("\n"),
  );
  add("params.md", header(`${title}: parameter counts`) + markdownTable(paramTable));

  const figures: { section: string; file: string; fig: Figure; caption: string }[] = [];
  for (const task of tasks) {
    const taskRows = rows.filter((r) => sameTask(r, task));
    const tag = taskTag(task, tasks);
    figures.push({
      section: "figure1",
      file: `figure1-accuracy-vs-d-${tag}.svg`,
      fig: figure1(task, taskRows, mixers, style),
      caption: `Accuracy vs d_model at ${taskLabel(task)}.`,
    });
  }
  for (const task of tasks) {
    const taskRows = rows.filter((r) => sameTask(r, task));
    figures.push({
      section: "figure1",
      file: `accuracy-vs-state-${taskTag(task, tasks)}.svg`,
      fig: stateFigure(task, taskRows, results, mixers, style),
      caption: `Accuracy vs recurrent state size at ${taskLabel(task)}.`,
    });
  }
  for (const task of tasks) {
    const taskRows = rows.filter((r) => sameTask(r, task));
    figures.push({
      section: "evp",
      file: `evp-${taskTag(task, tasks)}.svg`,
      fig: evpFigure(task, taskRows, mixers, style),
      caption: `Expected validation performance at ${taskLabel(task)}.`,
    });
  }
  if (tput.length) {
    figures.push({
      section: "throughput",
      file: "throughput-vs-L.svg",
      fig: perLFigure(
        "Training throughput vs sequence length",
        "training throughput (tokens/s, log scale)",
        tput,
        (r) => r.tokensPerSMean,
        mixers,
        style,
      ),
      caption: "Mean training tokens per second (eval excluded) over the runs of each mixer, d_model and L.",
    });
    figures.push({
      section: "throughput",
      file: "memory-vs-L.svg",
      fig: perLFigure(
        "Peak GPU memory vs sequence length",
        "peak GPU memory (MiB, log scale)",
        tput,
        (r) => (r.peakBytesMax.total === undefined ? null : r.peakBytesMax.total / MIB),
        mixers,
        style,
      ),
      caption:
        "Largest peak of allocated GPU bytes (params + grads + optimizer + activations + workspace) over the runs.",
    });
  }
  const statsFig = paramStatsFigure(results);
  if (statsFig) {
    figures.push({
      section: "layernorm",
      file: "figure10-qk-layernorm-stats.svg",
      fig: statsFig.fig,
      caption: "Mean (line) ± std (band) over the 192 features of ReBased's ln_q/ln_k γ and β after each epoch " +
        `(the paper's Appendix C, Figure 10)${statsFig.note ? `; ${statsFig.note}` : ""}.`,
    });
  }
  const svgs = new Map<string, string>();
  for (const f of figures) {
    const svg = renderFigure(f.fig);
    svgs.set(f.file, svg);
    add(f.file, toStandaloneSvg(svg));
  }
  const htmlFigures = (section: string): HtmlFigure[] =>
    figures.filter((f) => f.section === section).map((f) => ({
      svg: svgs.get(f.file)!,
      caption: f.caption,
      file: f.file,
    }));

  const scored = results.filter((r) => scoreOf(r) !== null).length;
  const seqLens = sortedUnique(results.map((r) => r.config.seqLen), (a, b) => a - b);
  const sections: HtmlSection[] = [
    {
      id: "overview",
      title: "Overview",
      paragraphs: [
        `${results.length} run records (${scored} scored), ${rows.length} (mixer, d_model, L, N) cells; mixers: ${
          mixers.join(", ")
        }; sequence lengths: ${seqLens.join(", ")}.`,
        ...METHOD_TEXT,
        ...(opts.sources?.length ? [`Sources: ${opts.sources.join(", ")}.`] : []),
      ],
      bullets: notes,
    },
    { id: "figure1", title: "Accuracy vs model dimension (Figure 1)", figures: htmlFigures("figure1") },
    { id: "table1", title: "Accuracy table (Table 1 layout)", tables: t1Tables },
    { id: "summary", title: "Best learning rate per cell", tables: [summary] },
    { id: "evp", title: "Expected validation performance", figures: htmlFigures("evp") },
    { id: "params", title: "Parameter counts", tables: [paramTable] },
    {
      id: "throughput",
      title: "Throughput and memory",
      figures: htmlFigures("throughput"),
      tables: tput.length ? [throughputTable(tput)] : [],
      paragraphs: tput.length ? [] : ["No run recorded throughput or memory."],
    },
    ...(statsFig
      ? [{ id: "layernorm", title: "q/k LayerNorm statistics (Figure 10)", figures: htmlFigures("layernorm") }]
      : []),
    {
      id: "files",
      title: "Files",
      paragraphs: ["Everything on this page is also in the report directory:"],
      bullets: [...files.map((f) => f.name), "index.html"],
    },
  ];
  add(
    "index.html",
    renderHtmlPage({
      title,
      subtitle: opts.generatedAt ? `generated ${opts.generatedAt}` : undefined,
      sections,
    }),
  );
  return { files, notes, aggregation: agg };
}

const STATS_RUN_LIMIT = 12;

/** γ/β statistics per epoch (records' paramStatsPerEpoch): one panel per parameter, one series per run. */
function paramStatsFigure(results: readonly RunResult[]): { fig: Figure; note: string | null } | null {
  const runs = results.filter((r) => r.paramStatsPerEpoch && Object.keys(r.paramStatsPerEpoch).length)
    .sort((a, b) =>
      compareMixers(a.config.mixer, b.config.mixer) || a.config.dModel - b.config.dModel ||
      a.config.seqLen - b.config.seqLen || a.config.lr - b.config.lr || a.config.seed - b.config.seed
    );
  if (runs.length === 0) return null;
  const shown = runs.slice(0, STATS_RUN_LIMIT);
  const short = (name: string) => name.replace(/^backbone\.layers\.\d+\.(sequence_mixer\.)?mixer\./, "");
  const names = sortedUnique(
    shown.flatMap((r) => Object.keys(r.paramStatsPerEpoch!).map(short)),
    (a, b) => a < b ? -1 : a > b ? 1 : 0,
  );
  const title = (n: string) => {
    const [ln, p] = n.split(".");
    return `${/weight|gamma/.test(p) ? "γ" : "β"} of ${ln}`;
  };
  const panels: Panel[] = names.map((n) => ({
    title: title(n),
    x: { label: "epoch" },
    y: { label: "value (mean ± std over features)" },
    series: shown.flatMap((r) => {
      const entry = Object.entries(r.paramStatsPerEpoch!).find(([k]) => short(k) === n)?.[1];
      if (!entry) return [];
      const c = r.config;
      return [{
        name: `${c.mixer} d=${c.dModel} L=${c.seqLen} lr=${fmtLr(c.lr)} seed=${c.seed}`,
        band: true,
        points: entry.mean.map((m, e) => ({ x: e + 1, y: m, yLow: m - entry.std[e], yHigh: m + entry.std[e] })),
      }];
    }),
  }));
  return {
    fig: { title: "q/k LayerNorm parameters during training", panels, columns: 2 },
    note: runs.length > shown.length ? `the first ${shown.length} of ${runs.length} runs shown` : null,
  };
}

/** Writes every file of the report into `dir` (created); returns the paths written. */
export async function writeReport(dir: string, output: ReportOutput): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (const f of output.files) {
    const path = join(dir, f.name);
    await writeTextAtomic(path, f.content);
    paths.push(path);
  }
  return paths;
}
