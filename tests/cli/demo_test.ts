import { capture } from "../_helpers/console.ts";
import { main } from "../../main.ts";
import { demoRuns } from "../../src/cli/demo.ts";
import { readResults } from "../../src/sweep/results_file.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { checkXml } from "../_helpers/xml.ts";
import { gpuTest } from "../_helpers/gpu.ts";

Deno.test({
  name: "mqar demo: 3 mixers × 2 lrs × 3 seeds under a tiny budget, scored at the best lr, curves and page, resumable",
  ...gpuTest,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqar-demo-" });
    try {
      const first = await capture(() => main(["demo", "--budget", "0.05", "--out", dir]));
      assertEquals(first.code, 0, first.err);
      const runs = demoRuns();
      assertEquals(runs.length, 18);
      assertEquals(new Set(runs.map((r) => r.lr)).size, 2);
      assertEquals(new Set(runs.map((r) => r.seed)).size, 3);
      const { results } = await readResults(`${dir}/results.jsonl`);
      assertEquals(results.map((r) => r.config.mixer), runs.map((r) => r.mixer));
      assert(results.every((r) => r.steps >= 1 && r.stopReason?.startsWith("time budget")));
      const md = await Deno.readTextFile(`${dir}/demo.md`);
      for (const m of ["conv_attention", "based", "rebased"]) assert(md.includes(`| ${m} |`), md);
      assert(md.includes("mean ± std"), md);
      assert(first.out.includes("seeds passing 0.99"), first.out);
      assert(first.out.includes("18 of 18 runs stopped at the time budget"), first.out);
      assert(md.includes("depends on this machine's speed"), md);
      const svg = await Deno.readTextFile(`${dir}/curves.svg`);
      checkXml(svg);
      assert(svg.includes("seed 3"), "one line per seed");
      assert((await Deno.readTextFile(`${dir}/index.html`)).includes("<svg"));
      // Rerun: every run is already there, nothing trains again.
      const second = await capture(() => main(["demo", "--budget", "0.05", "--out", dir]));
      assertEquals(second.code, 0, second.err);
      assert(second.out.includes("18 of 18 runs already done"), second.out);
      assertEquals((await readResults(`${dir}/results.jsonl`)).results.length, 18);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
