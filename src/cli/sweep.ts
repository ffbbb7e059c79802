/** `mqar sweep`: validate a sweep config, expand the grid, take one shard, resume, train run by run (or --dry-run). */
import { parseRunConfigInput, resolveRunConfig, RunConfigError } from "../train/config.ts";
import type { RunConfig } from "../train/result.ts";
import {
  DEFAULT_MIXERS,
  expandGrid,
  loadSweepConfig,
  type PlannedRun,
  planRuns,
  type SweepConfig,
} from "../sweep/grid.ts";
import { describeRun } from "../sweep/merge.ts";
import {
  completedRunIds,
  firstEstimate,
  planSweep,
  type RunOne,
  runSweep,
  throughputFromResults,
} from "../sweep/runner.ts";
import { resultsTargetFile } from "../sweep/results_file.ts";
import { parseShard, selectShard, type Shard, shardLabel } from "../sweep/shard.ts";
import { type Command, numberFlag, parseFlags, printJson, UsageError } from "./_common.ts";
import { checkOutputFile } from "../io/output_path.ts";
import { resolve } from "node:path";
import { emitJobs } from "./_sweep_emit.ts";

const USAGE = `Usage: mqar sweep --config SWEEP.json --out PATH [--shard i/n] [--dry-run] [--json]
                  [--tokens-per-s N] [--continue-on-error]
       mqar sweep --config SWEEP.json --out DIR --emit slurm|k8s [--tasks N] [--job-dir DIR] [--parallelism N]
                  [--gpus N] [--sbatch-options "..."] [--image IMAGE] [--pvc NAME] [--mqar-command "..."]

Runs every run of a sweep grid that has no result yet, one after another, appending each result to the results file
as soon as it finishes. Rerunning the same command resumes: runs already in the results are skipped (by run id);
runs recorded with status "error" are retried.

  --config FILE        sweep config (JSON; see configs/sweeps/*.json). Validated completely before any training.
  --out PATH           (alias --results) a results file (an existing file or a path ending in .jsonl), or a results directory
                       (any other path; created if needed). In a directory an unsharded sweep writes results.jsonl and
                       shard i/n writes results-<i>-of-<n>.jsonl; resume reads every *.jsonl in the directory, so
                       shards can run in parallel (one process per shard) and be re-sharded later.
  --shard i/n          run only shard i of n (0-based): every n-th run of the grid starting at i. The shards of one
                       n partition the grid.
  --dry-run            list the runs (done / to do) and the cost: training tokens (examples × L × epochs; early
                       stopping lowers it) and estimated hours when a throughput is known (from finished runs of the
                       same mixer, d_model, L and batch in the results, else --tokens-per-s).
  --tokens-per-s N     fallback training throughput for the --dry-run estimate.
  --continue-on-error  when a run throws, note it and go on (default: stop; results so far are kept).
  --json               machine-readable output (--dry-run plan, or the final summary).

Cluster jobs (--emit; nothing is trained here):
  --emit slurm         writes sweep.sbatch (a job array --array=0-(n-1), task i runs --shard i/n into --out),
                       merge.sbatch and submit.sh (submits the array, then the merge with --dependency=afterok) into
                       --job-dir, with a copy of the config. --out is the results directory on the shared filesystem.
  --emit k8s           writes sweep-job.yaml (a ConfigMap with the config and an Indexed Job: pod i runs
                       --shard $JOB_COMPLETION_INDEX/n), merge-job.yaml and submit.sh (kubectl apply, wait, merge).
                       Pods mount the PersistentVolumeClaim --pvc (default mqar-results) at /results; --out is the
                       results directory on it (a relative path is taken under /results).
  --tasks N            array tasks / completions (default: one per grid run; at most the grid's run count)
  --job-dir DIR        where the job files go (default jobs/<config name>-<slurm|k8s>)
  --parallelism N      tasks running at once at most (Slurm %N, Kubernetes parallelism; default all)
  --gpus N             GPUs per task (Slurm --gres=gpu:N, Kubernetes nvidia.com/gpu); default 0
  --sbatch-options S   slurm: extra #SBATCH options, space-separated (e.g. "--partition=gpu --time=04:00:00")
  --image IMAGE        k8s: container image with mqar on its PATH (default mqar-bench:latest)
  --pvc NAME           k8s: the results volume claim (default mqar-results)
  --mqar-command CMD   how tasks start mqar (default: slurm, this checkout through this deno, or this binary;
                       k8s, "mqar")
Rerunning submit.sh after a task was cancelled or failed resumes it: finished runs are kept and skipped.

Grid order: sequences (config order) > d_model > mixer > lr > seed. Ctrl-C stops after the run in progress.

Sweep config (JSON object; unknown fields are errors):
  mixers           ["based", "rebased", ...]  (${DEFAULT_MIXERS.join(", ")})
  dModels          [64, 128, ...]
  sequences        [{"seqLen": 128, "numKvPairs": 16}, ...]  or  {"seqLens": [...], "numKvPairs": N | "paper" | "L/4"}
                   ("paper": N = L/4, but 16 at L = 128; needs 4·N <= L, L even)
  lrs, seeds       [5e-4, 1e-3, ...], [42, 43, ...]
  trainExamples, testExamples, epochs, batchSize, vocabSize (> every L), dataSeed, earlyStopAccuracy (0..1)
  microBatchSize   optional: N, "paper" (256 // (L // 512) for L >= 512) or {"1024": 128, ...}; divides batchSize
  maxSteps         optional: N or null
  powerA, randomNonQueries, weightDecay   optional (paper: 0.01, false, 0.1)
  name, description                       optional text
Presets: configs/sweeps/{paper-figure1,paper-table1-ablation,cpu-table1,cpu-smoke,cpu-tiny,cpu-all-mixers}.json`;

/** Validates the config file, including every run against the trainer's own config checks. */
export async function loadGrid(path: string): Promise<{ config: SweepConfig; runs: PlannedRun[] }> {
  const config = await loadSweepConfig(path, { checkRun });
  return { config, runs: planRuns(expandGrid(config)) };
}

/** The trainer's cross-field checks (data generator and model limits) for one run; null when it is valid. */
export function checkRun(run: RunConfig): string | null {
  try {
    resolveRunConfig(parseRunConfigInput(run, "run"));
    return null;
  } catch (e) {
    if (e instanceof RunConfigError) return e.message;
    throw e;
  }
}

function fmtTokens(n: number): string {
  return n >= 1e9
    ? `${(n / 1e9).toFixed(2)}G`
    : n >= 1e6
    ? `${(n / 1e6).toFixed(2)}M`
    : n >= 1e3
    ? `${(n / 1e3).toFixed(1)}k`
    : String(n);
}

function fmtDuration(seconds: number): string {
  if (seconds < 90) return `${seconds.toFixed(1)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(1)} min`;
  return `${(seconds / 3600).toFixed(2)} h`;
}

/** What a trainer loader is told about the invocation. */
export interface TrainerOptions {
  /** --json: print nothing but the final JSON. */
  quiet: boolean;
}

/** A trainer, optionally with a check that a run fits the hardware (asked for every run before the first one trains). */
export type Trainer = RunOne & { fitProblem?: (cfg: RunConfig) => string | null };

/** The real trainer: acquires the GPU once and trains each run with src/train/trainer.ts. */
export async function loadGpuTrainer(opts: TrainerOptions): Promise<Trainer> {
  // Imported on demand so `merge`, `report` and dry runs never load the GPU stack.
  const [{ acquireGpu }, { trainRun }, { adapterFitProblem }] = await Promise.all([
    import("../gpu/device.ts"),
    import("../train/trainer.ts"),
    import("./_adapter_fit.ts"),
  ]);
  const gpu = await acquireGpu();
  if (!opts.quiet) console.error(`training on ${gpu.info.description} (${gpu.info.backend})`);
  const run: Trainer = async (cfg) => {
    const outcome = await trainRun(gpu, cfg, {
      onEpoch: opts.quiet ? undefined : (e) =>
        console.error(
          `    epoch ${e.epoch + 1}/${cfg.epochs}: test accuracy ${e.accuracy.toFixed(4)}, ` +
            `train loss ${e.trainLoss.toFixed(4)}, ${e.seconds.toFixed(1)} s`,
        ),
    });
    outcome.release();
    return outcome.result;
  };
  run.fitProblem = (cfg) => adapterFitProblem(gpu, cfg);
  return run;
}

/**
 * Builds the command around a trainer. `loadRunOne` is called once, only when there is something to train, so a
 * dry run never initialises the GPU.
 */
export function makeSweepCommand(loadRunOne: (opts: TrainerOptions) => Promise<Trainer>): Command {
  return {
    name: "sweep",
    summary: "run (or resume, or one shard of) a sweep grid, appending one result line per run",
    usage: USAGE,
    async run(args) {
      const { values } = parseFlags(
        "sweep",
        args,
        {
          config: { type: "string" },
          results: { type: "string" },
          out: { type: "string" },
          shard: { type: "string" },
          "dry-run": { type: "boolean" },
          "tokens-per-s": { type: "string" },
          "continue-on-error": { type: "boolean" },
          json: { type: "boolean" },
          emit: { type: "string" },
          tasks: { type: "string" },
          "job-dir": { type: "string" },
          parallelism: { type: "string" },
          gpus: { type: "string" },
          "sbatch-options": { type: "string" },
          image: { type: "string" },
          pvc: { type: "string" },
          "mqar-command": { type: "string" },
        },
        false,
        ["sbatch-options", "mqar-command"],
      );
      if (!values.config) {
        throw new UsageError("--config is required (a sweep config JSON, e.g. configs/sweeps/cpu-smoke.json)");
      }
      if (values.out && values.results && values.out !== values.results) {
        throw new UsageError("--out and --results name the same thing (where results go): give one of them");
      }
      values.results ??= values.out;
      if (!values.results) {
        throw new UsageError("--out (or --results) is required: a results .jsonl file or a directory");
      }
      const emitOnly = ["tasks", "job-dir", "parallelism", "gpus", "sbatch-options", "image", "pvc", "mqar-command"]
        .filter((f) => values[f as keyof typeof values] !== undefined);
      if (values.emit !== undefined) {
        for (const f of ["shard", "dry-run", "tokens-per-s", "continue-on-error"] as const) {
          if (values[f] !== undefined) {
            throw new UsageError(`--${f} does not apply to --emit (the job files shard the grid)`);
          }
        }
        return await emitJobs(
          await loadGrid(values.config),
          values.config,
          values.results,
          values.out ? "--out" : "--results",
          {
            emit: values.emit,
            tasks: values.tasks,
            jobDir: values["job-dir"],
            parallelism: values.parallelism,
            gpus: values.gpus,
            sbatchOptions: values["sbatch-options"],
            image: values.image,
            pvc: values.pvc,
            mqarCommand: values["mqar-command"],
            json: Boolean(values.json),
          },
        );
      }
      if (emitOnly.length) throw new UsageError(`--${emitOnly[0]} applies only with --emit slurm|k8s`);
      const tokensPerS = numberFlag("tokens-per-s", values["tokens-per-s"], { min: 0, exclusiveMin: true });
      const shard: Shard | undefined = values.shard ? parseShard(values.shard) : undefined;
      const { runs: grid } = await loadGrid(values.config);
      const runs = shard ? selectShard(grid, shard) : grid;
      // The results file is checked before any run (and before a dry run reports on it).
      const target = await resultsTargetFile(values.results, shard);
      if (resolve(target) === resolve(values.config)) {
        throw new UsageError(`--out "${values.results}" is the sweep config itself; give a results file or directory`);
      }
      await checkOutputFile(values.out ? "--out" : "--results", target);
      const scope = shard
        ? `shard ${shardLabel(shard)}: ${runs.length} of ${grid.length} grid runs`
        : `${grid.length} grid runs`;

      if (values["dry-run"]) {
        const done = await completedRunIds(values.results);
        const estimate = firstEstimate(throughputFromResults(done.results), tokensPerS ? () => tokensPerS : undefined);
        const plan = planSweep(runs, done.ids, estimate);
        const file = await resultsTargetFile(values.results, shard);
        if (values.json) {
          printJson({
            ...plan,
            resultsFile: file,
            warnings: done.warnings,
            shard: shard ?? null,
            gridSize: grid.length,
          });
          return 0;
        }
        for (const w of done.warnings) console.error(`warning: ${w}`);
        for (const r of plan.runs) {
          console.log(
            `${String(r.run.index).padStart(5)}  ${r.run.runId}  ${r.done ? "done" : "todo"}  ${
              describeRun(r.run.config)
            }  ` +
              `${fmtTokens(r.trainTokens)} tokens${
                r.estimatedHours !== null ? `  ~${fmtDuration(r.estimatedHours * 3600)}` : ""
              }`,
          );
        }
        console.log(`\n${scope}; ${plan.done} done, ${plan.todo} to run; results file ${file}`);
        console.log(
          `training tokens to run: ${fmtTokens(plan.todoTrainTokens)} (of ${fmtTokens(plan.totalTrainTokens)}; ` +
            `full epochs, early stopping lowers it)`,
        );
        if (plan.todo > 0) {
          const known = plan.todo - plan.runsWithoutEstimate;
          console.log(
            plan.estimatedHours !== null && known > 0
              ? `estimated time: ${fmtDuration(plan.estimatedHours * 3600)} for ${known} of ${plan.todo} runs` +
                (plan.runsWithoutEstimate ? ` (${plan.runsWithoutEstimate} without a throughput estimate)` : "")
              : "estimated time: unknown (give --tokens-per-s, or finish a run of each mixer/d/L first)",
          );
        }
        return 0;
      }

      const controller = new AbortController();
      const onSigint = () => {
        if (controller.signal.aborted) Deno.exit(130);
        console.error("\nstopping after the run in progress (Ctrl-C again to quit now; that run's result is lost)");
        controller.abort();
      };
      let listening = false;
      try {
        Deno.addSignalListener("SIGINT", onSigint);
        listening = true;
      } catch {
        // Signals are unavailable on some platforms; Ctrl-C then ends the process (finished results are safe).
      }
      let runOne: Trainer | null = null;
      const loadOnce = async () => runOne ??= await loadRunOne({ quiet: Boolean(values.json) });
      const started = performance.now();
      let wallSum = 0;
      try {
        const summary = await runSweep({
          runs,
          resultsPath: values.results,
          shard,
          signal: controller.signal,
          continueOnError: values["continue-on-error"],
          preflight: async (todo) => {
            const trainer = await loadOnce();
            for (const run of todo) {
              const problem = trainer.fitProblem?.(run.config);
              if (problem) throw new UsageError(`run ${run.runId} (${describeRun(run.config)}): ${problem}`);
            }
          },
          runOne: async (cfg, ctx) => (await loadOnce())(cfg, ctx),
          onProgress: (e) => {
            if (values.json) return;
            if (e.kind === "resume") {
              for (const w of e.warnings) console.error(`warning: ${w}`);
              console.error(`${scope}; ${e.done} already done, ${e.todo} to run; appending to ${e.file}`);
            } else if (e.kind === "start") {
              console.error(`[${e.position}/${e.todo}] ${e.run.runId} ${describeRun(e.run.config)}`);
            } else if (e.kind === "finish") {
              wallSum += e.wallS;
              const r = e.result;
              const eta = (wallSum / e.position) * (e.todo - e.position);
              console.error(
                `[${e.position}/${e.todo}] ${r.status}: best accuracy ${
                  typeof r.bestAccuracy === "number" ? r.bestAccuracy.toFixed(4) : "–"
                } (epoch ${r.bestEpoch + 1}, ${r.epochsRun} epochs${r.stopReason ? `, ${r.stopReason}` : ""}) in ${
                  fmtDuration(e.wallS)
                }${e.position < e.todo ? `; ~${fmtDuration(eta)} left` : ""}`,
              );
            } else if (e.kind === "fail") {
              console.error(`[${e.position}/${e.todo}] failed: ${(e.error as Error)?.message ?? String(e.error)}`);
            } else {
              console.error(`warning: ${e.message}`);
            }
          },
        });
        const result = {
          resultsFile: summary.fileExists ? summary.file : null,
          total: summary.total,
          skipped: summary.skipped,
          completed: summary.completed.length,
          failed: summary.failed.map((f) => ({
            runId: f.run.runId,
            error: String((f.error as Error)?.message ?? f.error),
          })),
          aborted: summary.aborted,
          wallS: (performance.now() - started) / 1000,
        };
        if (values.json) printJson(result);
        else {
          console.error(
            `${result.completed} run${
              result.completed === 1 ? "" : "s"
            } finished, ${result.skipped} skipped (already done), ` +
              `${result.failed.length} failed${result.aborted ? ", stopped early" : ""}; ` +
              (summary.fileExists ? `results in ${summary.file}` : "no results written"),
          );
        }
        return result.failed.length || result.aborted ? 1 : 0;
      } finally {
        if (listening) Deno.removeSignalListener("SIGINT", onSigint);
      }
    },
  };
}

/** `mqar sweep` with the GPU trainer. */
export const sweepCommand: Command = makeSweepCommand(loadGpuTrainer);
