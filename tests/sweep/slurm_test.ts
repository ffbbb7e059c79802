/**
 * `mqar sweep --emit slurm` on a real one-node Slurm (tests/_helpers/slurm.ts): the emitted array trains the CPU smoke
 * grid, a task cancelled mid-run is resumed by submitting again without retraining what had finished, and the chained
 * merge job writes exactly the grid.
 */
import { join } from "node:path";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { queue, run, type SlurmCluster, slurmUnavailable, startSlurm } from "../_helpers/slurm.ts";
import { loadGrid } from "../../src/cli/sweep.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const CONFIG = join(ROOT, "configs/sweeps/cpu-smoke.json");
const unavailable = slurmUnavailable();
if (unavailable) console.warn(unavailable);

const lines = async (path: string) => {
  try {
    return (await Deno.readTextFile(path)).split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
};

async function until(what: string, timeoutS: number, ok: () => Promise<boolean>) {
  const end = performance.now() + timeoutS * 1000;
  while (performance.now() < end) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeoutS} s waiting for ${what}`);
}

Deno.test({
  name: "sweep --emit slurm: the array trains the grid, a cancelled task resumes on resubmit, the merge is the grid",
  ignore: unavailable !== null,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "mqar-slurm-sweep-" });
    const results = join(tmp, "results"), jobs = join(tmp, "jobs");
    const emitted = await run(Deno.execPath(), [
      "run",
      "-A",
      join(ROOT, "main.ts"),
      "sweep",
      "--config",
      CONFIG,
      "--out",
      results,
      "--emit",
      "slurm",
      "--tasks",
      "2",
      "--job-dir",
      jobs,
    ]);
    assertEquals(emitted.code, 0, emitted.err);
    const grid = (await loadGrid(CONFIG)).runs.map((r) => r.runId).sort();
    let cluster: SlurmCluster | null = null;
    try {
      cluster = await startSlurm();
      const env = cluster.env;
      const t0 = performance.now();
      const first = await run("sh", [join(jobs, "submit.sh")], env);
      assertEquals(first.code, 0, first.err);
      const arrayId = /sweep array (\d+)/.exec(first.out)?.[1];
      assert(arrayId, first.out);
      // Shard 1 holds two runs: cancel its task once the first has been appended, while the second trains.
      const shard1 = join(results, "results-1-of-2.jsonl");
      await until("shard 1's first run", 600, async () => (await lines(shard1)).length >= 1);
      const cancel = await run("scancel", [`${arrayId}_1`], env);
      assertEquals(cancel.code, 0, cancel.err);
      const kept = await lines(shard1);
      assertEquals(
        kept.length,
        1,
        "the cancel came after shard 1's second run had finished; the test cannot show resume",
      );
      // Task 0 finishes; the merge waits on a dependency that can never be satisfied: cancel it.
      await until("task 0", 600, async () => !(await queue(env)).some((j) => j.id.startsWith(`${arrayId}_`)));
      for (const j of await queue(env)) await run("scancel", [j.id], env);
      const firstArrayS = (performance.now() - t0) / 1000;

      const t1 = performance.now();
      const second = await run("sh", [join(jobs, "submit.sh")], env);
      assertEquals(second.code, 0, second.err);
      await until("the resubmitted array and merge", 600, async () => (await queue(env)).length === 0);
      const resumeS = (performance.now() - t1) / 1000;
      const merged = await lines(join(jobs, "merged.jsonl"));
      assertEquals(merged.map((r) => r.runId).sort(), grid, "the merged file is the grid, one record per run");
      const after = await lines(shard1);
      assertEquals(after.length, 2, "shard 1: the finished run was kept and only the cancelled one trained again");
      assertEquals(after[0], kept[0]);
      assertEquals((await lines(join(results, "results-0-of-2.jsonl"))).length, 2);
      console.log(
        `local Slurm: started in ${cluster.startS.toFixed(1)} s; array until cancel + task 0: ` +
          `${firstArrayS.toFixed(1)} s; resubmitted array + merge: ${resumeS.toFixed(1)} s`,
      );
    } finally {
      await cluster?.stop();
    }
  },
});
