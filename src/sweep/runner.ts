/**
 * The sweep runner: resume by runId, run the remaining runs one after another through an injected `runOne` (the
 * trainer), append each result the moment it finishes. Also the dry-run plan (counts and estimated cost).
 */
import type { RunConfig, RunResult } from "../train/result.ts";
import type { PlannedRun } from "./grid.ts";
import { describeRun } from "./merge.ts";
import { readResultsAt, resultsTargetFile, ResultsWriter } from "./results_file.ts";
import { canonicalJson, computeRunId } from "../train/run_id.ts";
import type { Shard } from "./shard.ts";

export interface RunContext {
  runId: string;
  /** 1-based position among the runs this call actually trains, and how many that is. */
  position: number;
  todo: number;
  signal?: AbortSignal;
}

/** Trains one run; may resolve with status "nan"/"error" records. A rejection means no result exists. */
export type RunOne = (config: RunConfig, ctx: RunContext) => Promise<RunResult>;

export type SweepEvent =
  | { kind: "resume"; file: string; total: number; done: number; todo: number; warnings: string[] }
  | { kind: "start"; run: PlannedRun; position: number; todo: number }
  | { kind: "finish"; run: PlannedRun; result: RunResult; position: number; todo: number; wallS: number }
  | { kind: "fail"; run: PlannedRun; error: unknown; position: number; todo: number }
  | { kind: "warning"; message: string };

export interface SweepOptions {
  /** The runs of this invocation (a whole grid or one shard), in order. */
  runs: readonly RunConfig[] | readonly PlannedRun[];
  /** Results file or directory (see results_file.ts): read for resume, appended to. */
  resultsPath: string;
  /** Chooses the shard's file inside a results directory. */
  shard?: Shard;
  runOne: RunOne;
  onProgress?: (event: SweepEvent) => void;
  /** Record a rejected runOne as failed and go on (default: stop the sweep and rethrow). */
  continueOnError?: boolean;
  /** Checked between runs (and handed to runOne): an aborted sweep stops after the current run. */
  signal?: AbortSignal;
  /**
   * Called once with the runs still to do, after the results file was validated and locked and before the first run:
   * the place for checks that need the trainer (e.g. that every run fits the adapter). Not called when none is left.
   */
  preflight?: (todo: readonly PlannedRun[]) => Promise<void>;
}

export interface SweepSummary {
  file: string;
  /** Whether `file` exists after the sweep (a results file it created and never wrote to is removed again). */
  fileExists: boolean;
  total: number;
  skipped: number;
  completed: RunResult[];
  failed: { run: PlannedRun; error: unknown }[];
  aborted: boolean;
}

function toPlanned(runs: readonly RunConfig[] | readonly PlannedRun[]): PlannedRun[] {
  return runs.map((r, i) =>
    "runId" in r && "config" in r
      ? r as PlannedRun
      : { index: i, runId: computeRunId(r as RunConfig), config: r as RunConfig }
  );
}

/** RunIds with a usable record at `path` (status "error" records do not count: those runs are retried). */
export async function completedRunIds(
  path: string,
): Promise<{ ids: Set<string>; results: RunResult[]; warnings: string[] }> {
  const read = await readResultsAt([path], { allowMissing: true });
  const results = read.results.map((r) => r.result);
  return {
    ids: new Set(results.filter((r) => r.status !== "error").map((r) => r.runId)),
    results,
    warnings: read.warnings,
  };
}

export async function runSweep(opts: SweepOptions): Promise<SweepSummary> {
  const planned = toPlanned(opts.runs);
  const emit = opts.onProgress ?? (() => {});
  // Opening the writer validates and locks the file before anything is trained.
  const writer = await ResultsWriter.open(await resultsTargetFile(opts.resultsPath, opts.shard));
  const file = writer.path;
  const summary: SweepSummary = {
    file,
    fileExists: true,
    total: planned.length,
    skipped: 0,
    completed: [],
    failed: [],
    aborted: false,
  };
  try {
    // Resume reads everything at the path (all shard files of a directory), so re-sharding never repeats a run.
    const done = await completedRunIds(opts.resultsPath);
    const todo = planned.filter((r) => !done.ids.has(r.runId));
    summary.skipped = planned.length - todo.length;
    emit({
      kind: "resume",
      file,
      total: planned.length,
      done: planned.length - todo.length,
      todo: todo.length,
      // The writer already cut its file's torn tail (so reading found none there): report what it saw.
      warnings: [...writer.existing.warnings, ...done.warnings],
    });
    if (writer.repaired) emit({ kind: "warning", message: writer.repaired });
    if (todo.length > 0) await opts.preflight?.(todo);
    for (let i = 0; i < todo.length; i++) {
      if (opts.signal?.aborted) {
        summary.aborted = true;
        break;
      }
      const run = todo[i];
      const position = i + 1;
      emit({ kind: "start", run, position, todo: todo.length });
      const t0 = performance.now();
      let result: RunResult;
      try {
        result = await opts.runOne(run.config, { runId: run.runId, position, todo: todo.length, signal: opts.signal });
      } catch (error) {
        summary.failed.push({ run, error });
        emit({ kind: "fail", run, error, position, todo: todo.length });
        if (!opts.continueOnError) throw error;
        continue;
      }
      if (canonicalJson(result.config) !== canonicalJson(run.config)) {
        emit({
          kind: "warning",
          message: `run ${run.runId} (${describeRun(run.config)}): the trainer returned a different config ` +
            `(${describeRun(result.config)}); the record keeps the grid's runId so resume and merge still match it`,
        });
      }
      // The grid's id is authoritative: resume, shards and merge all key on it.
      const record: RunResult = result.runId === run.runId ? result : { ...result, runId: run.runId };
      await writer.append(record);
      summary.completed.push(record);
      emit({
        kind: "finish",
        run,
        result: record,
        position,
        todo: todo.length,
        wallS: (performance.now() - t0) / 1000,
      });
    }
    return summary;
  } finally {
    summary.fileExists = !(writer.created && writer.written === 0);
    await writer.close();
  }
}

/** Training tokens of one run if it runs every epoch (early stopping only lowers it). */
export function runTrainTokens(c: RunConfig): number {
  return c.trainExamples * c.seqLen * c.epochs;
}

/** Estimated training throughput (tokens/s) of a run, or undefined when unknown. */
export type ThroughputEstimate = (config: RunConfig) => number | undefined;

/** Mean measured trainTokensPerS of finished runs with the same mixer, d and L. */
export function throughputFromResults(results: readonly RunResult[]): ThroughputEstimate {
  const sums = new Map<string, { sum: number; n: number }>();
  const key = (c: RunConfig) => `${c.mixer}|${c.dModel}|${c.seqLen}|${c.batchSize}|${c.microBatchSize}`;
  for (const r of results) {
    const t = r.trainTokensPerS;
    if (r.status === "error" || typeof t !== "number" || !(t > 0)) continue;
    const s = sums.get(key(r.config)) ?? { sum: 0, n: 0 };
    s.sum += t;
    s.n++;
    sums.set(key(r.config), s);
  }
  return (c) => {
    const s = sums.get(key(c));
    return s ? s.sum / s.n : undefined;
  };
}

/** Tries each estimate in turn. */
export function firstEstimate(...estimates: (ThroughputEstimate | undefined)[]): ThroughputEstimate {
  return (c) => {
    for (const e of estimates) {
      const v = e?.(c);
      if (v !== undefined && v > 0) return v;
    }
    return undefined;
  };
}

export interface SweepPlan {
  total: number;
  done: number;
  todo: number;
  /** Training tokens (examples × L × epochs) of the runs still to do, and of the whole list. */
  todoTrainTokens: number;
  totalTrainTokens: number;
  /** Hours for the runs to do whose throughput is estimated; null when none of them has an estimate. */
  estimatedHours: number | null;
  /** Runs to do that had no throughput estimate (not in estimatedHours). */
  runsWithoutEstimate: number;
  runs: { run: PlannedRun; done: boolean; trainTokens: number; estimatedHours: number | null }[];
}

/** The dry-run plan: which runs are done, and the remaining cost in tokens and (with an estimate) hours. */
export function planSweep(
  runs: readonly RunConfig[] | readonly PlannedRun[],
  doneIds: ReadonlySet<string>,
  throughput?: ThroughputEstimate,
): SweepPlan {
  const planned = toPlanned(runs);
  let todoTrainTokens = 0;
  let totalTrainTokens = 0;
  let seconds = 0;
  let runsWithoutEstimate = 0;
  const rows = planned.map((run) => {
    const done = doneIds.has(run.runId);
    const trainTokens = runTrainTokens(run.config);
    totalTrainTokens += trainTokens;
    const rate = throughput?.(run.config);
    const hours = rate && rate > 0 ? trainTokens / rate / 3600 : null;
    if (!done) {
      todoTrainTokens += trainTokens;
      if (hours === null) runsWithoutEstimate++;
      else seconds += hours * 3600;
    }
    return { run, done, trainTokens, estimatedHours: hours };
  });
  const todo = rows.filter((r) => !r.done).length;
  return {
    total: planned.length,
    done: planned.length - todo,
    todo,
    todoTrainTokens,
    totalTrainTokens,
    // Null when runs remain and none has an estimate; a partial sum is flagged by runsWithoutEstimate.
    estimatedHours: todo > 0 && runsWithoutEstimate === todo ? null : seconds / 3600,
    runsWithoutEstimate,
    runs: rows,
  };
}
