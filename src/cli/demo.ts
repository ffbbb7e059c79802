/**
 * `mqar demo` (`deno task demo`): the paper's protocol in miniature. conv_attention, based and rebased on a CPU-sized
 * MQAR, each at several seeds and two learning rates of the paper's grid, scored as the paper scores (mean over seeds
 * at the best lr, with the std), every run's curve kept. The runs go through the sweep runner, so an interrupted demo
 * resumes where it stopped and every finished run is in results.jsonl.
 */
import { type RunConfig, type RunResult, stoppedByTimeBudget } from "../train/result.ts";
import { mqarConfigOf, resolveRunConfig, type RunConfigInput } from "../train/config.ts";
import { computeRunId } from "../train/run_id.ts";
import { aggregate, type SummaryRow } from "../report/aggregate.ts";
import { renderHtmlPage } from "../report/html.ts";
import { fmtFixed, fmtLr, fmtMeanStd, markdownTable, type Table } from "../report/markdown.ts";
import { type Figure, PALETTE, renderFigure, type Series, toStandaloneSvg } from "../report/svg.ts";
import { runSweep } from "../sweep/runner.ts";
import { checkOutputDir } from "../io/output_path.ts";
import { writeTextAtomic } from "../io/atomic.ts";
import { type Command, numberFlag, parseFlags } from "./_common.ts";
import { ProgressPrinter } from "./_progress.ts";

export const DEMO_MIXERS = ["conv_attention", "based", "rebased"] as const;
/**
 * The two highest learning rates of the paper's grid {5e-4, 1e-3, 3e-3, 1e-2} (a 500-step schedule is far shorter than
 * the paper's), three seeds: the paper's protocol in miniature.
 */
export const DEMO_LRS = [3e-3, 1e-2] as const;
export const DEMO_SEEDS = [1, 2, 3] as const;

/**
 * A CPU-sized MQAR: d = 64, L = 16, 2 pairs, vocabulary 128, sized so that 18 runs fit in about 5 minutes on 2 cores
 * and every mixer can pass the "answer is one of the context's values" plateau (1/N) within its ~500 steps; at L = 32
 * with 4 pairs Based and ReBased stayed on that plateau after 1,024 steps. Each run sees at most 4 epochs of 4096
 * examples, so it meets an example at most 4 times: learning the task, not memorising a small training set.
 */
export const DEMO_CONFIG: RunConfigInput = {
  dModel: 64,
  seqLen: 16,
  numKvPairs: 2,
  vocabSize: 128,
  trainExamples: 4096,
  testExamples: 256,
  batchSize: 32,
  epochs: 4,
  earlyStopAccuracy: 0.99,
};

/**
 * Training seconds a run may take before it stops (its record says so): only a safety cap against a stuck or very
 * slow adapter: a run cut by the clock makes the table depend on the machine's speed (`clockBoundNote` says so when
 * that happens), and a slow day on a 2-core VM cut runs at 30 s after 128-201 of their 512 steps.
 */
const DEFAULT_BUDGET_S = 600;

/** A sentence saying how many runs the clock, not the step count, ended; null when none did. */
export function clockBoundNote(results: readonly RunResult[]): string | null {
  const cut = results.filter(stoppedByTimeBudget).length;
  if (cut === 0) return null;
  return `${cut} of ${results.length} runs stopped at the time budget before their last step, so this table ` +
    `depends on this machine's speed; rerun with a larger --budget (into a new --out) for the step-bound numbers`;
}

const USAGE = `Usage: mqar demo [--budget SECONDS] [--out DIR]

The paper's protocol in miniature: ${
  DEMO_MIXERS.join(", ")
} on MQAR (d=${DEMO_CONFIG.dModel}, L=${DEMO_CONFIG.seqLen}, ${DEMO_CONFIG.numKvPairs} kv
pairs, V=${DEMO_CONFIG.vocabSize}, ${DEMO_CONFIG.epochs} epochs of ${DEMO_CONFIG.trainExamples} fresh examples), ${DEMO_SEEDS.length} seeds × lr ${
  DEMO_LRS.map(fmtLr).join(", ")
} each, early stop > 0.99.
Scored as the paper scores: mean test accuracy over seeds at the best lr (the best of the means), ± the std over seeds
at that lr. Prints the table (with how many seeds passed 0.99, training tokens/s and peak memory) and writes DIR:
results.jsonl (every run's record, resumable: rerun to finish an interrupted demo), demo.md, curves.svg (test accuracy
against training step, one line per seed, one panel per mixer) and index.html. Default DIR: results/demo.

  --budget SECONDS   training time per run before it stops (default ${DEFAULT_BUDGET_S}); a stopped run is scored as it
                     stands and its record says "time budget"`;

/** The demo's runs, in the order they train (mixer, lr, seed). */
export function demoRuns(): RunConfig[] {
  return DEMO_MIXERS.flatMap((mixer) =>
    DEMO_LRS.flatMap((lr) => DEMO_SEEDS.map((seed) => resolveRunConfig({ ...DEMO_CONFIG, mixer, lr, seed })))
  );
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

/** The printed table: one row per mixer at its best lr. */
export function demoTable(results: readonly RunResult[]): Table {
  const rows = aggregate(results).rows;
  return {
    header: ["mixer", "best lr", "accuracy (mean ± std)", "seeds passing 0.99", "train tok/s", "peak MiB"],
    align: ["left", "right", "right", "right", "right", "right"],
    rows: rows.map((row) => {
      const runs = bestLrRuns(results, row);
      const passed = runs.filter((r) => r.bestAccuracy > 0.99).length;
      const tokS = runs.reduce((s, r) => s + r.trainTokensPerS, 0) / runs.length;
      const peak = Math.max(...runs.map((r) => r.peakBytes.total));
      return [
        row.mixer,
        fmtLr(row.bestLr),
        fmtMeanStd(row.mean, row.std, 4),
        `${passed}/${runs.length}`,
        String(Math.round(tokS)),
        mib(peak),
      ];
    }),
  };
}

function bestLrRuns(results: readonly RunResult[], row: SummaryRow): RunResult[] {
  return results.filter((r) => r.config.mixer === row.mixer && r.config.lr === row.bestLr);
}

/** Every (mixer, lr) cell: the paper's by-lr view, so the choice of the best lr can be checked. */
function byLrTable(results: readonly RunResult[]): Table {
  return {
    header: ["mixer", "lr", "accuracy per seed", "mean ± std"],
    align: ["left", "right", "left", "right"],
    rows: aggregate(results).rows.flatMap((row) =>
      row.lrs.map((l) => [
        row.mixer,
        fmtLr(l.lr),
        results.filter((r) => r.config.mixer === row.mixer && r.config.lr === l.lr)
          .sort((a, b) => a.config.seed - b.config.seed)
          .map((r) => `${r.config.seed}: ${fmtFixed(r.bestAccuracy, 3)}`).join(", "),
        fmtMeanStd(l.mean, l.std, 4),
      ])
    ),
  };
}

/** Test accuracy against training step: one panel per mixer, one line per seed (solid at the best lr). */
export function demoFigure(results: readonly RunResult[]): Figure {
  const rows = aggregate(results).rows;
  return {
    title: "Test accuracy during training",
    subtitle: `solid: the best lr of each mixer; dashed: the other lr; colour: seed`,
    columns: 3,
    panels: rows.map((row) => ({
      title: row.mixer,
      x: { label: "training step" },
      y: { label: "test accuracy", domain: [0, 1] },
      series: results.filter((r) => r.config.mixer === row.mixer)
        .sort((a, b) => a.config.lr - b.config.lr || a.config.seed - b.config.seed)
        .map((r): Series => {
          const stepsPerEpoch = Math.floor(r.config.trainExamples / r.config.batchSize);
          return {
            name: `lr ${fmtLr(r.config.lr)} seed ${r.config.seed}`,
            color: PALETTE[DEMO_SEEDS.indexOf(r.config.seed as 1) % PALETTE.length],
            dash: r.config.lr === row.bestLr ? undefined : "5 3",
            points: r.accuracyPerEpoch.map((a, e) => ({
              x: Math.min(r.steps, (e + 1) * stepsPerEpoch),
              y: a ?? 0,
            })),
          };
        }),
    })),
  };
}

export const demoCommand: Command = {
  name: "demo",
  summary: "the paper's protocol in miniature: conv_attention, based, rebased × seeds × lrs, mean ± std at the best lr",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("demo", args, { budget: { type: "string" }, out: { type: "string" } });
    const budget = numberFlag("budget", values.budget, { min: 0, exclusiveMin: true }) ?? DEFAULT_BUDGET_S;
    const outDir = values.out ?? "results/demo";
    await checkOutputDir("--out", outDir);
    const runs = demoRuns();
    const t0 = performance.now();
    const [{ acquireGpu }, { trainRun }] = await Promise.all([
      import("../gpu/device.ts"),
      import("../train/trainer.ts"),
    ]);
    const gpu = await acquireGpu();
    const c = mqarConfigOf(runs[0]);
    console.log(`mqar demo on ${gpu.info.description} (${gpu.info.backend}${gpu.info.software ? ", software" : ""})`);
    console.log(
      `MQAR d=${DEMO_CONFIG.dModel} L=${c.seqLen} N=${c.numKvPairs} V=${c.vocabSize}, ${DEMO_CONFIG.epochs} epochs of ` +
        `${c.trainExamples} examples, batch ${DEMO_CONFIG.batchSize}; ${DEMO_MIXERS.length} mixers × lr ${
          DEMO_LRS.map(fmtLr).join(", ")
        } × seeds ${DEMO_SEEDS.join(", ")} = ${runs.length} runs, each to > 0.99 or ${budget} s of training`,
    );
    const summary = await runSweep({
      runs,
      resultsPath: `${outDir}/results.jsonl`,
      runOne: async (cfg, ctx) => {
        const progress = new ProgressPrinter(
          `  [${ctx.position}/${ctx.todo}] ${cfg.mixer} lr ${fmtLr(cfg.lr)} seed ${cfg.seed}`,
        );
        const outcome = await trainRun(gpu, cfg, { maxTrainSeconds: budget, onProgress: (p) => progress.update(p) });
        progress.done();
        const r = outcome.result;
        console.log(
          `  [${ctx.position}/${ctx.todo}] ${cfg.mixer} lr ${fmtLr(cfg.lr)} seed ${cfg.seed}: best accuracy ` +
            `${r.bestAccuracy.toFixed(4)} after ${r.steps} steps, ${Math.round(r.trainTokensPerS)} tok/s`,
        );
        return r;
      },
      onProgress: (e) => {
        if (e.kind === "resume" && e.done > 0) console.log(`  resuming: ${e.done} of ${e.total} runs already done`);
      },
    });
    // Every run of the demo, finished now or by an earlier invocation, in demo order.
    const { readResults } = await import("../sweep/results_file.ts");
    const byId = new Map((await readResults(summary.file)).results.map((r) => [r.runId, r]));
    const results = runs.map((r) => byId.get(computeRunId(r))).filter((r): r is RunResult => r !== undefined);
    const table = demoTable(results);
    const seconds = (performance.now() - t0) / 1000;
    console.log(`\n${markdownTable(table)}\n`);
    const clockNote = clockBoundNote(results);
    if (clockNote) console.log(`note: ${clockNote}\n`);
    const figure = renderFigure(demoFigure(results));
    const intro =
      `Adapter: ${gpu.info.description} (${gpu.info.backend}). ${runs.length} runs, ${
        seconds.toFixed(0)
      } s in this invocation; training budget ${budget} s per run. Score: best test accuracy over epochs; mean over seeds ` +
      `at the lr with the best mean, ± the sample std over those seeds (the paper's protocol).` +
      (clockNote ? ` Note: ${clockNote}.` : "");
    await writeTextAtomic(
      `${outDir}/demo.md`,
      `# mqar demo\n\n${intro}\n\n${markdownTable(table)}\n\n## Every learning rate\n\n${
        markdownTable(byLrTable(results))
      }\n\nCurves: curves.svg\n`,
    );
    await writeTextAtomic(`${outDir}/curves.svg`, toStandaloneSvg(figure));
    await writeTextAtomic(
      `${outDir}/index.html`,
      renderHtmlPage({
        title: "mqar demo",
        subtitle: intro,
        sections: [
          { id: "table", title: "Mean ± std over seeds at the best lr", tables: [table] },
          {
            id: "curves",
            title: "Test accuracy during training",
            figures: [{ svg: figure, caption: "One line per run; solid at the best lr.", file: "curves.svg" }],
          },
          { id: "by-lr", title: "Every learning rate", tables: [byLrTable(results)] },
        ],
      }),
    );
    console.log(`wrote ${outDir}/demo.md, curves.svg, index.html, results.jsonl (${seconds.toFixed(0)} s)`);
    return 0;
  },
};
