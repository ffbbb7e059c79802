import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { capture } from "../_helpers/console.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "../_helpers/assert.ts";
import { sweepCommand } from "../../src/cli/sweep.ts";
import { emitJobFiles, jobName, shellQuote, toYaml } from "../../src/sweep/emit.ts";

const SMOKE = new URL("../../configs/sweeps/cpu-smoke.json", import.meta.url).pathname;

async function inTemp<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "mqar-emit-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("emit: shell quoting and job names survive hostile text", () => {
  assertEquals(shellQuote("/a/b-c.json"), "/a/b-c.json");
  assertEquals(shellQuote("it's a $HOME"), `'it'"'"'s a $HOME'`);
  assertEquals(jobName("Paper Figure 1 (ReBased)!"), "paper-figure-1-rebased");
  assertEquals(jobName("___"), "mqar-sweep");
});

Deno.test("emit: toYaml writes nested block YAML that a YAML parser reads back", () => {
  const value = {
    a: 1,
    list: [{ name: "x", items: ["p", "q"] }, "s", 2, []],
    empty: {},
    text: 'line "one"\nline: two',
    flag: true,
  };
  assertEquals(parseYaml(toYaml(value)), value);
});

Deno.test("sweep --emit slurm: an array of n shards, a chained merge, the config copied", async () => {
  await inTemp(async (dir) => {
    const jobs = join(dir, "jobs");
    const r = await capture(() =>
      sweepCommand.run([
        "--config",
        SMOKE,
        "--out",
        join(dir, "res"),
        "--emit",
        "slurm",
        "--tasks",
        "3",
        "--job-dir",
        jobs,
        "--parallelism",
        "2",
        "--gpus",
        "1",
        "--sbatch-options",
        "--partition=gpu --time=01:00:00",
      ])
    );
    assertEquals(r.code, 0, r.err);
    const sweep = await Deno.readTextFile(join(jobs, "sweep.sbatch"));
    assert(sweep.includes("#SBATCH --array=0-2%2\n"), sweep);
    assert(sweep.includes("#SBATCH --gres=gpu:1\n#SBATCH --partition=gpu\n#SBATCH --time=01:00:00\n"), sweep);
    assert(sweep.includes(`--shard "\${SLURM_ARRAY_TASK_ID}/3"`), sweep);
    assert(sweep.includes(`--config ${jobs}/sweep.json --out ${dir}/res `), sweep);
    const merge = await Deno.readTextFile(join(jobs, "merge.sbatch"));
    assert(merge.includes(`merge --config ${jobs}/sweep.json --out ${jobs}/merged.jsonl ${dir}/res`), merge);
    const submit = await Deno.readTextFile(join(jobs, "submit.sh"));
    assert(submit.includes('--dependency=afterok:"$array"'), submit);
    assertEquals(await Deno.readTextFile(join(jobs, "sweep.json")), await Deno.readTextFile(SMOKE));
    assertEquals((await Deno.stat(join(jobs, "submit.sh"))).mode! & 0o111, 0o111);
    // Nothing trained and no results file was started.
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["jobs"]);
  });
});

Deno.test("sweep --emit k8s: a ConfigMap and an Indexed Job over n completions, then a merge Job", async () => {
  await inTemp(async (dir) => {
    const jobs = join(dir, "k8s");
    const r = await capture(() =>
      sweepCommand.run([
        "--config",
        SMOKE,
        "--out",
        "smoke",
        "--emit",
        "k8s",
        "--tasks",
        "4",
        "--job-dir",
        jobs,
        "--image",
        "registry.example/mqar:1",
        "--pvc",
        "shared-results",
        "--gpus",
        "1",
        "--parallelism",
        "2",
      ])
    );
    assertEquals(r.code, 0, r.err);
    const docs = (await Deno.readTextFile(join(jobs, "sweep-job.yaml"))).split(/^---\n/m).filter(Boolean)
      .map((d) => parseYaml(d));
    assertEquals(docs.map((d) => d.kind), ["ConfigMap", "Job"]);
    const [configMap, job] = docs;
    assertEquals(configMap.data["sweep.json"], await Deno.readTextFile(SMOKE));
    assertEquals(job.apiVersion, "batch/v1");
    assertEquals(
      [job.spec.completionMode, job.spec.completions, job.spec.parallelism],
      ["Indexed", 4, 2],
    );
    const pod = job.spec.template.spec;
    assertEquals(pod.restartPolicy, "Never");
    const [container] = pod.containers;
    assertEquals(container.image, "registry.example/mqar:1");
    assertEquals(container.resources.limits["nvidia.com/gpu"], 1);
    assertEquals(container.command.slice(0, 2), ["/bin/sh", "-c"]);
    assertEquals(
      container.command[2],
      `exec mqar sweep --config /etc/mqar/sweep.json --out /results/smoke --shard "$JOB_COMPLETION_INDEX/4"`,
    );
    const mounts = Object.fromEntries(container.volumeMounts.map((m: { name: string }) => [m.name, m]));
    assertEquals([mounts.config.mountPath, mounts.results.mountPath], ["/etc/mqar", "/results"]);
    const volumes = Object.fromEntries(pod.volumes.map((v: { name: string }) => [v.name, v]));
    assertEquals(volumes.results.persistentVolumeClaim.claimName, "shared-results");
    assertEquals(volumes.config.configMap.name, configMap.metadata.name);
    const [mergeJob] = (await Deno.readTextFile(join(jobs, "merge-job.yaml"))).split(/^---\n/m).filter(Boolean)
      .map((d) => parseYaml(d));
    assertEquals(mergeJob.kind, "Job");
    assert(
      mergeJob.spec.template.spec.containers[0].command[2].endsWith(
        "merge --config /etc/mqar/sweep.json --out /results/smoke-merged.jsonl /results/smoke",
      ),
    );
    const submit = await Deno.readTextFile(join(jobs, "submit.sh"));
    assert(submit.includes(`kubectl wait --for=condition=complete --timeout=-1s job/${job.metadata.name}\n`), submit);
  });
});

Deno.test("sweep --emit: bad settings name the flag, the value and what is allowed", async () => {
  await inTemp(async (dir) => {
    const base = ["--config", SMOKE, "--out", join(dir, "res")];
    const cases: [string[], RegExp][] = [
      [["--emit", "pbs"], /--emit: got "pbs", expected one of slurm, k8s/],
      [["--emit", "slurm", "--tasks", "5"], /--tasks: got 5, expected at most 4 \(the grid's run count/],
      [["--emit", "slurm", "--tasks", "0"], /--tasks: got "0", expected .*>= 1/],
      [["--emit", "slurm", "--image", "x"], /--image does not apply to --emit slurm/],
      [["--emit", "k8s", "--sbatch-options", "--time=1"], /--sbatch-options does not apply to --emit k8s/],
      [["--emit", "slurm", "--sbatch-options", "partition=gpu"], /--sbatch-options: got "partition=gpu"/],
      [["--emit", "slurm", "--shard", "0/2"], /--shard does not apply to --emit/],
      [["--tasks", "2"], /--tasks applies only with --emit/],
      [["--emit", "k8s", "--pvc", "Bad_Name"], /--pvc: got "Bad_Name"/],
    ];
    for (const [flags, message] of cases) {
      await assertRejects(() => sweepCommand.run([...base, ...flags]), message, flags.join(" "));
    }
    await assertRejects(
      () => sweepCommand.run(["--config", SMOKE, "--out", join(dir, "r.jsonl"), "--emit", "slurm"]),
      /--out: got ".*r\.jsonl", expected a results directory/,
    );
    await assertRejects(
      () => sweepCommand.run(["--config", SMOKE, "--out", "/elsewhere", "--emit", "k8s", "--job-dir", dir]),
      /--out: got "\/elsewhere", expected a directory under \/results\//,
    );
    assertEquals([...Deno.readDirSync(dir)], []);
  });
});

Deno.test("emitJobFiles refuses more tasks than runs", () => {
  const base = {
    name: "x",
    gridRuns: 2,
    command: ["mqar"],
    configPath: "/c.json",
    resultsDir: "/results/r",
    mergedFile: "/results/m.jsonl",
  };
  assertThrows(() => emitJobFiles({ ...base, target: "slurm", tasks: 3 }), /tasks must be an integer in 1\.\.2/);
  assertThrows(() => emitJobFiles({ ...base, target: "k8s", tasks: 1, resultsDir: "/r" }), /not under \/results\//);
});
