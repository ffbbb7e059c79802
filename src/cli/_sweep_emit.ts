/** `mqar sweep --emit slurm|k8s`: validates the grid, then writes the job files of src/sweep/emit.ts. */
import { basename, dirname, isAbsolute, join, posix, resolve } from "node:path";
import { writeTextAtomic } from "../io/atomic.ts";
import { checkOutputDir } from "../io/output_path.ts";
import {
  EMIT_TARGETS,
  emitJobFiles,
  type EmitTarget,
  jobName,
  K8S_CONFIG_PATH,
  K8S_RESULTS_MOUNT,
} from "../sweep/emit.ts";
import { isResultsDirectory } from "../sweep/results_file.ts";
import { numberFlag, printJson, UsageError } from "./_common.ts";
import { runningUnderDenoCli } from "./_flag_values.ts";
import type { PlannedRun, SweepConfig } from "../sweep/grid.ts";

export interface EmitFlags {
  emit: string;
  tasks?: string;
  jobDir?: string;
  parallelism?: string;
  gpus?: string;
  sbatchOptions?: string;
  image?: string;
  pvc?: string;
  mqarCommand?: string;
  json: boolean;
}

/** How a Slurm task starts this same mqar: the compiled binary itself, or this deno running this checkout's main.ts. */
export function thisInvocation(): { command: string[]; workDir?: string } {
  const exe = Deno.execPath();
  if (!runningUnderDenoCli()) return { command: [exe] };
  const main = new URL("../../main.ts", import.meta.url).pathname;
  return { command: [exe, "run", "-A", main], workDir: dirname(main) };
}

const words = (text: string) => text.trim().split(/\s+/).filter(Boolean);

export async function emitJobs(
  grid: { config: SweepConfig; runs: PlannedRun[] },
  configPath: string,
  out: string,
  outFlag: string,
  flags: EmitFlags,
): Promise<number> {
  if (!(EMIT_TARGETS as readonly string[]).includes(flags.emit)) {
    throw new UsageError(`--emit: got "${flags.emit}", expected one of ${EMIT_TARGETS.join(", ")}`);
  }
  const target = flags.emit as EmitTarget;
  const wrongTarget = target === "slurm"
    ? (["image", "pvc"] as const).find((f) => flags[f] !== undefined)
    : (["sbatchOptions"] as const).find((f) => flags[f] !== undefined);
  if (wrongTarget) {
    const flag = wrongTarget === "sbatchOptions" ? "sbatch-options" : wrongTarget;
    throw new UsageError(`--${flag} does not apply to --emit ${target}`);
  }
  const { config, runs } = grid;
  const tasks = numberFlag("tasks", flags.tasks, { integer: true, min: 1 }) ?? runs.length;
  if (tasks > runs.length) {
    throw new UsageError(
      `--tasks: got ${tasks}, expected at most ${runs.length} (the grid's run count; more tasks would have no run)`,
    );
  }
  const parallelism = numberFlag("parallelism", flags.parallelism, { integer: true, min: 1 });
  const gpus = numberFlag("gpus", flags.gpus, { integer: true, min: 0 }) ?? 0;
  if (flags.pvc !== undefined && !/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/.test(flags.pvc)) {
    throw new UsageError(
      `--pvc: got "${flags.pvc}", expected a Kubernetes object name (lowercase letters, digits, '-', '.')`,
    );
  }
  if (flags.image !== undefined && (!flags.image.trim() || /\s/.test(flags.image))) {
    throw new UsageError(`--image: got "${flags.image}", expected an image reference without spaces`);
  }
  const sbatchOptions = flags.sbatchOptions === undefined ? [] : words(flags.sbatchOptions);
  const badOption = sbatchOptions.find((o) => !/^--?[A-Za-z]/.test(o));
  if (badOption) {
    throw new UsageError(
      `--sbatch-options: got "${badOption}", expected sbatch options such as --partition=gpu (one word each, name=value)`,
    );
  }
  if (flags.mqarCommand !== undefined && words(flags.mqarCommand).length === 0) {
    throw new UsageError(`--mqar-command: got "${flags.mqarCommand}", expected the command that starts mqar`);
  }
  const name = jobName(config.name ?? basename(configPath).replace(/\.json$/, ""));
  const configText = await Deno.readTextFile(configPath);

  let resultsDir: string, mergedFile: string, jobConfigPath: string;
  let invocation: { command: string[]; workDir?: string };
  const jobDir = resolve(flags.jobDir ?? join("jobs", `${name}-${target}`));
  if (target === "slurm") {
    if (!(await isResultsDirectory(out))) {
      throw new UsageError(
        `${outFlag}: got "${out}", expected a results directory for --emit (each task writes its own shard file there)`,
      );
    }
    await checkOutputDir(outFlag, out);
    resultsDir = resolve(out);
    mergedFile = join(jobDir, "merged.jsonl");
    jobConfigPath = join(jobDir, "sweep.json");
    invocation = flags.mqarCommand ? { command: words(flags.mqarCommand) } : thisInvocation();
    await Deno.mkdir(join(jobDir, "logs"), { recursive: true });
  } else {
    if (out.endsWith(".jsonl")) {
      throw new UsageError(`${outFlag}: got "${out}", expected a results directory on the volume, not a .jsonl file`);
    }
    resultsDir = posix.normalize(isAbsolute(out) ? out : posix.join(K8S_RESULTS_MOUNT, out));
    if (!resultsDir.startsWith(`${K8S_RESULTS_MOUNT}/`) || resultsDir.includes("/../")) {
      throw new UsageError(
        `${outFlag}: got "${out}", expected a directory under ${K8S_RESULTS_MOUNT}/ (where pods mount the results volume)`,
      );
    }
    mergedFile = posix.join(dirname(resultsDir), `${basename(resultsDir)}-merged.jsonl`);
    if (!mergedFile.startsWith(`${K8S_RESULTS_MOUNT}/`)) mergedFile = posix.join(resultsDir, "merged", "merged.jsonl");
    jobConfigPath = K8S_CONFIG_PATH;
    invocation = { command: flags.mqarCommand ? words(flags.mqarCommand) : ["mqar"] };
  }
  await checkOutputDir("--job-dir", jobDir);
  const files = emitJobFiles({
    target,
    name,
    tasks,
    gridRuns: runs.length,
    command: invocation.command,
    workDir: invocation.workDir,
    configPath: jobConfigPath,
    resultsDir,
    mergedFile,
    logDir: target === "slurm" ? join(jobDir, "logs") : undefined,
    parallelism,
    gpus,
    sbatchOptions,
    image: flags.image,
    pvc: flags.pvc,
    configText,
  });
  await writeTextAtomic(join(jobDir, "sweep.json"), configText);
  for (const f of files) {
    const path = join(jobDir, f.name);
    await writeTextAtomic(path, f.text);
    if (f.executable && Deno.build.os !== "windows") await Deno.chmod(path, 0o755);
  }
  const summary = {
    target,
    jobDir,
    files: ["sweep.json", ...files.map((f) => f.name)],
    tasks,
    gridRuns: runs.length,
    resultsDir,
    mergedFile,
    submit: join(jobDir, "submit.sh"),
  };
  if (flags.json) printJson(summary);
  else {
    console.log(
      `${target}: ${tasks} task(s) over ${runs.length} grid runs; wrote ${summary.files.join(", ")} to ${jobDir}`,
    );
    console.log(`results go to ${resultsDir}, merged into ${mergedFile}; submit with: sh ${summary.submit}`);
  }
  return 0;
}
