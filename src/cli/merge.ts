/** `mqar merge`: combine results files (e.g. one per shard) into one, reporting duplicates and missing runs. */
import { describeRun, mergeResults } from "../sweep/merge.ts";
import { isResultsDirectory, readResultsAt, writeResultsFile } from "../sweep/results_file.ts";
import { type Command, parseFlags, printJson, UsageError } from "./_common.ts";
import { checkOutputFile } from "../io/output_path.ts";
import { resolve } from "node:path";
import { loadGrid } from "./sweep.ts";

const USAGE = `Usage: mqar merge --out FILE [--config SWEEP.json] [--allow-missing] [--json] INPUT...

Combines results files into one JSONL file with one record per run id. INPUTs are results files or directories
(every *.jsonl inside, e.g. the results-<i>-of-<n>.jsonl files of a sharded sweep).

  --out FILE         merged results file (written atomically; may be one of the inputs; an existing file holding
                     runs that no input has is refused, since replacing it would drop them).
  --config FILE      the sweep config: lists grid runs that have no result ("missing") and records not in the grid.
  --allow-missing    exit 0 even when grid runs are missing or only have status "error" records.
  --json             print the merge report as JSON.

Duplicates (one run id in several records with the same config) keep one record: a finished run over an "error"
record, then the later finishedAt; each is reported. A run id whose records have different configs is a conflict.
Exit status: 0 when complete; 1 when runs are missing or failed (unless --allow-missing) or on conflicts;
2 for unusable input (an invalid line inside a file is reported with its line number, never merged).`;

const LIST_LIMIT = 20;

function listSome<T>(items: readonly T[], show: (x: T) => string): string[] {
  const lines = items.slice(0, LIST_LIMIT).map((x) => `  ${show(x)}`);
  if (items.length > LIST_LIMIT) lines.push(`  ... and ${items.length - LIST_LIMIT} more`);
  return lines;
}

export const mergeCommand: Command = {
  name: "merge",
  summary: "combine results files (shards) into one; report duplicates and missing runs",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags("merge", args, {
      out: { type: "string" },
      config: { type: "string" },
      "allow-missing": { type: "boolean" },
      json: { type: "boolean" },
    }, true);
    if (!values.out) throw new UsageError("--out is required (the merged results .jsonl file)");
    if (positionals.length === 0) throw new UsageError("give at least one INPUT results file or directory");
    if (await isResultsDirectory(values.out)) {
      throw new UsageError(`--out: got "${values.out}", expected a file path ending in .jsonl (not a directory)`);
    }
    await checkOutputFile("--out", values.out);
    const grid = values.config ? (await loadGrid(values.config)).runs : undefined;
    const read = await readResultsAt(positionals);
    // Replacing a file that is not one of the inputs must not drop runs that only it holds.
    if (!read.files.some((f) => resolve(f) === resolve(values.out!))) {
      const existing = await readResultsAt([values.out], { allowMissing: true });
      const inputIds = new Set(read.results.map((r) => r.result.runId));
      const dropped = existing.results.filter((r) => !inputIds.has(r.result.runId)).length;
      if (dropped > 0) {
        throw new UsageError(
          `--out "${values.out}" exists and holds ${dropped} run(s) that no input has, which merging would drop; ` +
            `add it as an input (merge into it) or choose a new file`,
        );
      }
    }
    const merged = mergeResults(read.results, grid);
    await writeResultsFile(values.out, merged.results);

    const incomplete = merged.missing.length > 0 || merged.failed.length > 0;
    const code = merged.conflicts.length > 0 || (incomplete && !values["allow-missing"]) ? 1 : 0;
    if (values.json) {
      printJson({
        out: values.out,
        files: read.files,
        records: read.results.length,
        written: merged.results.length,
        warnings: read.warnings,
        duplicates: merged.duplicates,
        conflicts: merged.conflicts,
        missing: merged.missing.map((m) => ({ index: m.index, runId: m.runId, config: m.config })),
        failed: merged.failed.map((r) => ({ runId: r.runId, stopReason: r.stopReason, config: r.config })),
        extra: merged.extra.map((r) => ({ runId: r.runId, config: r.config })),
        gridSize: grid?.length ?? null,
        exitCode: code,
      });
      return code;
    }
    const out: string[] = [];
    for (const w of read.warnings) out.push(`warning: ${w}`);
    out.push(
      `read ${read.results.length} records from ${read.files.length} file${read.files.length === 1 ? "" : "s"}; ` +
        `wrote ${merged.results.length} to ${values.out}`,
    );
    if (merged.duplicates.length) {
      const identical = merged.duplicates.filter((d) => d.identical).length;
      out.push(
        `${merged.duplicates.length} duplicated run ids (${identical} identical copies, ${
          merged.duplicates.length - identical
        } with different outcomes), one record kept each:`,
        ...listSome(
          merged.duplicates,
          (d) =>
            `${d.runId} ${describeRun(d.config)}: ${d.identical ? "identical" : "differ"}; kept ${d.sources[0]}, ` +
            `dropped ${d.sources.slice(1).join(", ")}`,
        ),
      );
    }
    if (merged.conflicts.length) {
      out.push(
        `${merged.conflicts.length} run ids with DIFFERENT configs (records edited or written by another tool):`,
        ...listSome(merged.conflicts, (c) => `${c.runId} in ${c.sources.join(", ")}; kept ${c.kept ?? "none"}`),
      );
    }
    if (grid) {
      out.push(
        `grid: ${grid.length} runs, ${
          grid.length - merged.missing.length
        } with a record, ${merged.missing.length} missing`,
      );
      if (merged.missing.length) {
        out.push(...listSome(merged.missing, (m) => `#${m.index} ${m.runId} ${describeRun(m.config)}`));
      }
      if (merged.extra.length) {
        out.push(`${merged.extra.length} records are not in this grid (kept in the output):`);
        out.push(...listSome(merged.extra, (r) => `${r.runId} ${describeRun(r.config)}`));
      }
    }
    if (merged.failed.length) {
      out.push(`${merged.failed.length} runs only have status "error" records (\`mqar sweep\` retries them):`);
      out.push(...listSome(merged.failed, (r) => `${r.runId} ${describeRun(r.config)}: ${r.stopReason ?? "error"}`));
    }
    if (incomplete && values["allow-missing"]) out.push("incomplete, but --allow-missing was given");
    console.log(out.join("\n"));
    return code;
  },
};
