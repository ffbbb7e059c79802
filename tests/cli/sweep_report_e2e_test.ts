/**
 * End to end with the real GPU trainer: `mqar sweep --config <cpu-smoke's grid> --out DIR`, then `mqar report --results
 * DIR --out DIR/report`; the HTML report inlines every figure. The grid is configs/sweeps/cpu-smoke.json with 512
 * training examples instead of 4,000 (32 steps per run instead of 250): the same code paths, an eighth of the training.
 */
import { main } from "../../main.ts";
import { readResults } from "../../src/sweep/results_file.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { checkXml } from "../_helpers/xml.ts";
import { gpuTest } from "../_helpers/gpu.ts";

const SMOKE = new URL("../../configs/sweeps/cpu-smoke.json", import.meta.url).pathname;

Deno.test({
  name: "e2e: sweep cpu-smoke's grid (real training), resume, then report with HTML and SVG figures",
  ...gpuTest,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqar-e2e-" });
    const config = await Deno.makeTempFile({ prefix: "mqar-e2e-", suffix: ".json" });
    const smoke = JSON.parse(await Deno.readTextFile(SMOKE));
    await Deno.writeTextFile(config, JSON.stringify({ ...smoke, name: "cpu-smoke-short", trainExamples: 512 }));
    try {
      assertEquals(await main(["sweep", "--config", config, "--out", dir]), 0);
      const { results } = await readResults(`${dir}/results.jsonl`);
      assertEquals(results.length, 4);
      assertEquals(new Set(results.map((r) => r.config.mixer)), new Set(["conv_attention", "based"]));
      assert(results.every((r) => r.status === "ok" && r.trainTokensPerS > 0 && r.peakBytes.total > 0));
      assert(results.every((r) => r.env.deno === Deno.version.deno && r.adapter.description.length > 0));
      // Resume: nothing left to run, nothing appended.
      assertEquals(await main(["sweep", "--config", config, "--out", dir]), 0);
      assertEquals((await readResults(`${dir}/results.jsonl`)).results.length, 4);

      assertEquals(await main(["report", "--results", dir, "--out", `${dir}/report`]), 0);
      const html = await Deno.readTextFile(`${dir}/report/index.html`);
      const svgs = [...Deno.readDirSync(`${dir}/report`)].filter((e) => e.name.endsWith(".svg"));
      assert(svgs.length >= 2, `figures: ${svgs.map((e) => e.name)}`);
      for (const f of svgs) {
        const svg = await Deno.readTextFile(`${dir}/report/${f.name}`);
        assertEquals(checkXml(svg).root, "svg");
      }
      assertEquals((html.match(/<svg[\s>]/g) ?? []).length >= svgs.length, true, "every figure is inline in the page");
      assert(html.includes("conv_attention") && html.includes("based"));
    } finally {
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(config);
    }
  },
});
