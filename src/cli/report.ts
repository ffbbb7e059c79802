/** `mqar report`: tables, figures and one HTML page from results files. Needs no GPU. */
import { describeRun, mergeResults } from "../sweep/merge.ts";
import { readResultsAt, ResultsInputError } from "../sweep/results_file.ts";
import { buildReport, writeReport } from "../report/report.ts";
import { type Command, parseFlags, printJson, UsageError } from "./_common.ts";
import { checkOutputDir } from "../io/output_path.ts";

const USAGE = `Usage: mqar report --results FILE_OR_DIR... --out DIR [--title TEXT] [--json]

Reads results (files, or directories of *.jsonl such as a sharded sweep's; several after one --results, so a shell
glob such as --results runs/*.jsonl works; --results may also repeat) and writes into DIR:
  summary.csv, summary.md   best lr per (mixer, d_model, L, N): mean and std over seeds at that lr
  by-lr.csv                 mean and std over seeds for every lr
  table1.md                 the paper's Table 1 layout: "mean ± std" per mixer × d_model, for each L
  evp.csv                   expected validation performance EVP(n), n = 1..pool size, per (mixer, d_model, L, N)
  params.md                 parameter counts per mixer, d_model and L (from the records)
  throughput.csv            training tokens/s and peak GPU bytes per mixer, d_model and L
  figure1-accuracy-vs-d-L<L>.svg, evp-L<L>.svg, throughput-vs-L.svg, memory-vs-L.svg
  index.html                every table and figure on one self-contained page (inline SVG and CSS)
(When several N share one L, file names use L<L>-N<N>.)

Aggregation (paper): score = bestAccuracy; mean over seeds per (mixer, d, L, N, lr); best lr by that mean (ties: the
smaller lr); std = sample std over seeds at that lr (ddof 1), clipped to [0, 1]. Duplicate run ids count once.`;

/**
 * `--results a b c` (what a shell glob such as runs/*.jsonl expands to) as `--results a --results b --results c`: the
 * paths after one --results run up to the next flag.
 */
export function spreadResults(args: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    out.push(args[i]);
    if (args[i] !== "--results") continue;
    let first = true;
    while (i + 1 < args.length && !args[i + 1].startsWith("--")) {
      if (!first) out.push("--results");
      out.push(args[++i]);
      first = false;
    }
  }
  return out;
}

export const reportCommand: Command = {
  name: "report",
  summary: "CSV/Markdown tables, SVG figures and an HTML page from results (no GPU)",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("report", spreadResults(args), {
      results: { type: "string", multiple: true },
      out: { type: "string" },
      title: { type: "string" },
      json: { type: "boolean" },
    });
    const inputs = values.results ?? [];
    if (inputs.length === 0) throw new UsageError("--results is required (a results file or directory; repeatable)");
    if (!values.out) throw new UsageError("--out is required (the report directory)");
    await checkOutputDir("--out", values.out);
    const read = await readResultsAt(inputs);
    const merged = mergeResults(read.results);
    if (merged.results.length === 0) {
      throw new ResultsInputError(`no result records in ${read.files.join(", ")}`);
    }
    const inputNotes = [...read.warnings];
    const differing = merged.duplicates.filter((d) => !d.identical);
    if (merged.duplicates.length) {
      inputNotes.push(
        `${merged.duplicates.length} run ids appear more than once (${differing.length} with different outcomes); ` +
          `each counted once${
            differing.length ? `, e.g. ${differing[0].runId} ${describeRun(differing[0].config)}` : ""
          }`,
      );
    }
    for (const c of merged.conflicts) {
      inputNotes.push(`run id ${c.runId} has records with different configs (${c.sources.join(", ")}); kept ${c.kept}`);
    }
    const output = buildReport(merged.results, {
      title: values.title,
      generatedAt: new Date().toISOString(),
      sources: read.files,
      inputNotes,
    });
    const paths = await writeReport(values.out, output);
    if (values.json) {
      printJson({ out: values.out, files: paths, records: merged.results.length, notes: output.notes });
      return 0;
    }
    for (const n of output.notes) console.error(`note: ${n}`);
    console.log(
      `${merged.results.length} records, ${output.aggregation.rows.length} cells; wrote ${paths.length} files to ${values.out}` +
        ` (open ${values.out.replace(/\/+$/, "")}/index.html)`,
    );
    return 0;
  },
};
