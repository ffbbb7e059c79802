import { main } from "../../main.ts";
import { readResults } from "../../src/sweep/results_file.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { gpuTest } from "../_helpers/gpu.ts";

Deno.test({
  name: "mqar demo: three mixers under a tiny budget, a table and full records where it says",
  ...gpuTest,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqar-demo-" });
    try {
      assertEquals(await main(["demo", "--budget", "1", "--out", dir]), 0);
      const table = await Deno.readTextFile(`${dir}/demo.md`);
      for (const m of ["conv_attention", "based", "rebased"]) assert(table.includes(`| ${m} |`), table);
      const { results } = await readResults(`${dir}/results.jsonl`);
      assertEquals(results.map((r) => r.config.mixer), ["conv_attention", "based", "rebased"]);
      assert(results.every((r) => r.steps >= 1 && r.stopReason?.startsWith("time budget")));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
