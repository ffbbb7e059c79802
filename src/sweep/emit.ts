/**
 * Job files that run a sweep on a cluster scheduler (`mqar sweep --emit slurm|k8s`): n tasks, task i running
 * `mqar sweep --shard i/n` into one results directory, then one merge job. Every task resumes (runs already in the
 * directory are skipped by run id), so a cancelled or failed task is fixed by submitting the same files again.
 *
 * - slurm: `sweep.sbatch` (a job array `--array=0-(n-1)`, `%p` concurrent tasks when a limit is given), `merge.sbatch`,
 *   and `submit.sh`, which submits the array and chains the merge with `--dependency=afterok:<array id>`.
 * - k8s: `sweep-job.yaml` (a ConfigMap holding the grid and an Indexed Job whose pods read `JOB_COMPLETION_INDEX`),
 *   `merge-job.yaml`, and `submit.sh` (apply, `kubectl wait` for completion, apply the merge). Results live on a
 *   PersistentVolumeClaim every pod mounts.
 *
 * The sweep config is copied into the job directory (`sweep.json`), so every task expands the same grid even if the
 * original file changes later.
 */

export const EMIT_TARGETS = ["slurm", "k8s"] as const;
export type EmitTarget = typeof EMIT_TARGETS[number];

export interface EmitOptions {
  target: EmitTarget;
  /** Job name (letters, digits, '-', '.'; becomes the Slurm job name and the Kubernetes object names). */
  name: string;
  /** Number of array tasks / completions: shards of the grid. */
  tasks: number;
  /** Grid size: tasks may not exceed it (an empty shard would be a task that does nothing). */
  gridRuns: number;
  /** How a task invokes mqar, as argv words (e.g. ["/usr/bin/deno", "run", "-A", "/src/mqar/main.ts"] or ["mqar"]). */
  command: readonly string[];
  /** Slurm: directory the task `cd`s into first (the project root, so deno finds deno.json); omitted: none. */
  workDir?: string;
  /** Where the tasks find the copied config: the job directory (slurm) or the ConfigMap mount (k8s). */
  configPath: string;
  /** The results directory every task writes into (absolute on slurm; the mount path inside pods on k8s). */
  resultsDir: string;
  /** The merged file the merge job writes. */
  mergedFile: string;
  /** Slurm: directory for the per-task logs (%A_%a). */
  logDir?: string;
  /** Concurrent tasks at most (Slurm `%p`, Kubernetes `parallelism`); default: all. */
  parallelism?: number;
  /** GPUs per task (Slurm `--gres=gpu:N`, Kubernetes `nvidia.com/gpu` limits); 0: none requested. */
  gpus?: number;
  /** Slurm: extra `#SBATCH` options, each one word such as "--partition=gpu" or "--time=04:00:00". */
  sbatchOptions?: readonly string[];
  /** k8s: container image holding mqar. */
  image?: string;
  /** k8s: name of the PersistentVolumeClaim for the results. */
  pvc?: string;
  /** k8s: the sweep config's text, stored in the ConfigMap. */
  configText?: string;
}

/** One emitted file: a name inside the job directory, its text, and whether it is executable. */
export interface EmittedFile {
  name: string;
  text: string;
  executable: boolean;
}

const NAME = /^[a-z0-9]([a-z0-9.-]{0,50}[a-z0-9])?$/;

/** A job name both schedulers accept (Kubernetes' DNS-1123 subdomain rule, kept short for the suffixes). */
export function jobName(text: string): string {
  const name = text.toLowerCase().replace(/[^a-z0-9.-]+/g, "-").replace(/^[^a-z0-9]+|[^a-z0-9]+$/g, "").slice(0, 40);
  return NAME.test(name) ? name : "mqar-sweep";
}

/** POSIX shell single-quoting (safe for any text). */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'"'"'`)}'`;
}

const shellLine = (words: readonly string[]) => words.map(shellQuote).join(" ");

export function emitJobFiles(o: EmitOptions): EmittedFile[] {
  if (!Number.isInteger(o.tasks) || o.tasks < 1 || o.tasks > o.gridRuns) {
    throw new RangeError(`tasks must be an integer in 1..${o.gridRuns} (the grid's runs), got ${o.tasks}`);
  }
  if (!NAME.test(o.name)) throw new RangeError(`job name "${o.name}" must match ${NAME}`);
  if (o.command.length === 0) throw new RangeError("the mqar command is empty");
  return o.target === "slurm" ? emitSlurm(o) : emitK8s(o);
}

function emitSlurm(o: EmitOptions): EmittedFile[] {
  const n = o.tasks;
  const limit = o.parallelism && o.parallelism < n ? `%${o.parallelism}` : "";
  const log = (what: string) => (o.logDir ? [`#SBATCH --output=${o.logDir}/${what}`] : []);
  const common = [
    ...(o.gpus ? [`#SBATCH --gres=gpu:${o.gpus}`] : []),
    ...(o.sbatchOptions ?? []).map((opt) => `#SBATCH ${opt}`),
  ];
  const cd = o.workDir ? [`cd ${shellQuote(o.workDir)}`] : [];
  const sweep = [
    "#!/bin/bash",
    `#SBATCH --job-name=${o.name}`,
    `#SBATCH --array=0-${n - 1}${limit}`,
    ...log("sweep-%A_%a.out"),
    ...common,
    `# Task i of ${n} runs shard i/${n} of the grid; rerunning it resumes (finished runs are skipped by run id).`,
    "set -euo pipefail",
    ...cd,
    `exec ${shellLine(o.command)} sweep --config ${shellQuote(o.configPath)} --out ${shellQuote(o.resultsDir)} ` +
    `--shard "\${SLURM_ARRAY_TASK_ID}/${n}"`,
    "",
  ].join("\n");
  const merge = [
    "#!/bin/bash",
    `#SBATCH --job-name=${o.name}-merge`,
    ...log("merge-%j.out"),
    ...(o.sbatchOptions ?? []).map((opt) => `#SBATCH ${opt}`),
    "# Runs after every array task succeeded (submit.sh chains it with --dependency=afterok).",
    "set -euo pipefail",
    ...cd,
    `exec ${shellLine(o.command)} merge --config ${shellQuote(o.configPath)} --out ${shellQuote(o.mergedFile)} ` +
    shellQuote(o.resultsDir),
    "",
  ].join("\n");
  const submit = [
    "#!/bin/sh",
    "# Submits the sweep array, then the merge job to run once every task has succeeded. Submitting again after a",
    "# cancelled or failed task resumes: finished runs are kept and skipped.",
    "set -eu",
    'here=$(cd "$(dirname "$0")" && pwd)',
    'array=$(sbatch --parsable "$here/sweep.sbatch")',
    "array=${array%%;*}",
    'merge=$(sbatch --parsable --dependency=afterok:"$array" "$here/merge.sbatch")',
    "merge=${merge%%;*}",
    `echo "sweep array $array (${n} tasks), merge job $merge (after the array succeeds): ` +
    `results in ${o.resultsDir}, merged into ${o.mergedFile}"`,
    "",
  ].join("\n");
  return [
    { name: "sweep.sbatch", text: sweep, executable: true },
    { name: "merge.sbatch", text: merge, executable: true },
    { name: "submit.sh", text: submit, executable: true },
  ];
}

// ---- Kubernetes ----

type Yaml = string | number | boolean | null | Yaml[] | { [key: string]: Yaml };

/** Block-style YAML for plain data; strings are double-quoted JSON strings (valid YAML), keys are plain words. */
export function toYaml(value: Yaml, indent = 0): string {
  const pad = " ".repeat(indent);
  const scalar = (v: Yaml) => (typeof v === "string" ? JSON.stringify(v) : String(v));
  const isBlock = (v: Yaml) =>
    v !== null && typeof v === "object" && (Array.isArray(v) ? v.length > 0 : Object.keys(v).length > 0);
  const empty = (v: Yaml) => (Array.isArray(v) ? "[]" : "{}");
  if (Array.isArray(value)) {
    return value.map((item) => {
      if (!isBlock(item)) return `${pad}- ${item !== null && typeof item === "object" ? empty(item) : scalar(item)}\n`;
      // The first line of a mapping or list shares the dash's line.
      const body = toYaml(item, indent + 2);
      return `${pad}- ${body.slice(indent + 2)}`;
    }).join("");
  }
  if (value !== null && typeof value === "object") {
    return Object.entries(value).map(([k, v]) => {
      if (!/^[A-Za-z0-9_./-]+$/.test(k)) throw new RangeError(`YAML key "${k}" needs quoting`);
      if (isBlock(v)) return `${pad}${k}:\n${toYaml(v, Array.isArray(v) ? indent : indent + 2)}`;
      return `${pad}${k}: ${v !== null && typeof v === "object" ? empty(v) : scalar(v)}\n`;
    }).join("");
  }
  return `${pad}${scalar(value)}\n`;
}

const CONFIG_MOUNT = "/etc/mqar";
/** Where pods mount the results volume; resultsDir and mergedFile must lie under it. */
export const K8S_RESULTS_MOUNT = "/results";

function emitK8s(o: EmitOptions): EmittedFile[] {
  const n = o.tasks;
  for (const path of [o.resultsDir, o.mergedFile]) {
    if (!path.startsWith(`${K8S_RESULTS_MOUNT}/`)) throw new RangeError(`${path} is not under ${K8S_RESULTS_MOUNT}/`);
  }
  const pvc = o.pvc ?? "mqar-results";
  const image = o.image ?? "mqar-bench:latest";
  const labels = { app: "mqar-bench", "mqar-sweep": o.name };
  const volumes: Yaml = [
    { name: "config", configMap: { name: `${o.name}-config` } },
    { name: "results", persistentVolumeClaim: { claimName: pvc } },
  ];
  const mounts: Yaml = [
    { name: "config", mountPath: CONFIG_MOUNT, readOnly: true },
    { name: "results", mountPath: K8S_RESULTS_MOUNT },
  ];
  const resources: Yaml = o.gpus ? { limits: { "nvidia.com/gpu": o.gpus } } : {};
  const container = (name: string, script: string): Yaml => ({
    name,
    image,
    command: ["/bin/sh", "-c", script],
    ...(o.gpus ? { resources } : {}),
    volumeMounts: mounts,
  });
  const sweepScript = `exec ${shellLine(o.command)} sweep --config ${shellQuote(o.configPath)} --out ` +
    `${shellQuote(o.resultsDir)} --shard "$JOB_COMPLETION_INDEX/${n}"`;
  const mergeScript = `exec ${shellLine(o.command)} merge --config ${shellQuote(o.configPath)} --out ` +
    `${shellQuote(o.mergedFile)} ${shellQuote(o.resultsDir)}`;
  const configMap: Yaml = {
    apiVersion: "v1",
    kind: "ConfigMap",
    metadata: { name: `${o.name}-config`, labels },
    data: { "sweep.json": o.configText ?? "" },
  };
  const job = (name: string, spec: Record<string, Yaml>, script: string): Yaml => ({
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { name, labels },
    spec: {
      ...spec,
      template: {
        metadata: { labels },
        spec: { restartPolicy: "Never", containers: [container(name, script)], volumes },
      },
    },
  });
  const sweepJob = job(o.name, {
    completionMode: "Indexed",
    completions: n,
    parallelism: Math.min(o.parallelism ?? n, n),
    // A failed index is retried on its own (Kubernetes >= 1.29); the retry resumes from the results on the volume.
    backoffLimitPerIndex: 2,
  }, sweepScript);
  const mergeJob = job(`${o.name}-merge`, { completions: 1, backoffLimit: 2 }, mergeScript);
  const doc = (...parts: Yaml[]) => parts.map((p) => `---\n${toYaml(p)}`).join("");
  const submit = [
    "#!/bin/sh",
    "# Applies the sweep (ConfigMap + Indexed Job), waits for every index to complete, then runs the merge job.",
    `# The results PersistentVolumeClaim "${pvc}" must exist (ReadWriteMany when pods share nodes unevenly).`,
    "set -eu",
    'here=$(cd "$(dirname "$0")" && pwd)',
    'kubectl apply -f "$here/sweep-job.yaml"',
    `kubectl wait --for=condition=complete --timeout=-1s job/${o.name}`,
    'kubectl apply -f "$here/merge-job.yaml"',
    `kubectl wait --for=condition=complete --timeout=-1s job/${o.name}-merge`,
    "",
  ].join("\n");
  return [
    { name: "sweep-job.yaml", text: doc(configMap, sweepJob), executable: false },
    { name: "merge-job.yaml", text: doc(mergeJob), executable: false },
    { name: "submit.sh", text: submit, executable: true },
  ];
}

export const K8S_CONFIG_PATH = `${CONFIG_MOUNT}/sweep.json`;
