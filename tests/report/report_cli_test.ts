import { capture } from "../_helpers/console.ts";
import { assert, assertEquals, assertRejects } from "../_helpers/assert.ts";
import { reportCommand, spreadResults } from "../../src/cli/report.ts";
import { appendResult } from "../../src/sweep/results_file.ts";
import { syntheticResults } from "../_helpers/results.ts";
import { checkXml } from "../_helpers/xml.ts";

Deno.test("mqar report: end to end from a sharded results directory to a report directory", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mqar-report-" });
  try {
    const results = syntheticResults();
    // Two shard files, one record duplicated across them and a torn last line, as a real interrupted sweep leaves.
    for (const [i, r] of results.entries()) await appendResult(`${dir}/runs/results-${i % 2}-of-2.jsonl`, r);
    await appendResult(`${dir}/runs/results-1-of-2.jsonl`, results[0]);
    await Deno.writeTextFile(`${dir}/runs/results-0-of-2.jsonl`, '{"schema":1,"ru', { append: true });

    const r = await capture(() =>
      reportCommand.run(["--results", `${dir}/runs`, "--out", `${dir}/report`, "--title", "E2E"])
    );
    assertEquals(r.code, 0, r.err);
    assert(r.out.includes(`${results.length} records, 18 cells; wrote 19 files`), r.out);
    assert(r.err.includes("ignored a torn last line"), r.err);
    assert(r.err.includes("1 run ids appear more than once"), r.err);

    const files = [...Deno.readDirSync(`${dir}/report`)].map((e) => e.name).sort();
    assertEquals(files.length, 19);
    const html = await Deno.readTextFile(`${dir}/report/index.html`);
    for (const name of files.filter((f) => f.endsWith(".svg"))) {
      const svg = await Deno.readTextFile(`${dir}/report/${name}`);
      checkXml(svg);
      assert(html.includes(svg.replace(/^<\?xml[^>]*>\n/, "").trimEnd()), `${name} not inline`);
    }
    assert(html.includes("<h1>E2E</h1>"));
    assert(html.includes("ignored a torn last line"), "input warnings shown on the page");
    const summary = await Deno.readTextFile(`${dir}/report/summary.csv`);
    assertEquals(summary.trim().split("\n").length, 19);

    // --json and a plain results file work too.
    await appendResult(`${dir}/one.jsonl`, results[0]);
    const j = await capture(() => reportCommand.run(["--results", `${dir}/one.jsonl`, "--out", `${dir}/r2`, "--json"]));
    assertEquals(JSON.parse(j.out).records, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mqar report: user and input errors", async () => {
  const dir = await Deno.makeTempDir({ prefix: "mqar-report-" });
  try {
    await assertRejects(() => reportCommand.run(["--out", dir]), /--results is required/);
    await assertRejects(() => reportCommand.run(["--results", `${dir}/x.jsonl`]), /--out is required/);
    await assertRejects(
      () => reportCommand.run(["--results", `${dir}/none.jsonl`, "--out", dir]),
      /no such results file/,
    );
    await Deno.writeTextFile(`${dir}/empty.jsonl`, "");
    await assertRejects(
      () => reportCommand.run(["--results", `${dir}/empty.jsonl`, "--out", dir]),
      /no result records/,
    );
    await Deno.writeTextFile(`${dir}/bad.jsonl`, "oops\n{}\n");
    await assertRejects(() => reportCommand.run(["--results", `${dir}/bad.jsonl`, "--out", dir]), /bad\.jsonl:1/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("mqar report: several paths after one --results (a shell glob), mixed with repeated flags", async () => {
  assertEquals(spreadResults(["--results", "a.jsonl", "b.jsonl", "--out", "r", "--results", "c"]), [
    "--results",
    "a.jsonl",
    "--results",
    "b.jsonl",
    "--out",
    "r",
    "--results",
    "c",
  ]);
  assertEquals(spreadResults(["--out", "r", "--results", "x"]), ["--out", "r", "--results", "x"]);
  const dir = await Deno.makeTempDir({ prefix: "mqar-report-" });
  try {
    const results = syntheticResults();
    for (const [i, r] of results.entries()) await appendResult(`${dir}/part-${i % 3}.jsonl`, r);
    const files = [0, 1, 2].map((i) => `${dir}/part-${i}.jsonl`);
    const r = await capture(() => reportCommand.run(["--results", ...files, "--out", `${dir}/report`]));
    assertEquals(r.code, 0, r.err);
    assert(r.out.startsWith(`${results.length} records`), r.out);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
