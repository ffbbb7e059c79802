import { syntheticResults } from "../_helpers/results.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { buildReport, mixerLabel } from "../../src/report/report.ts";
import { csvField, toCsv } from "../../src/report/csv.ts";
import { escapeMarkdownCell, fmtInt, fmtLr, fmtMeanStd, markdownTable } from "../../src/report/markdown.ts";
import { escapeHtml, renderHtmlPage } from "../../src/report/html.ts";
import { fakeConfig, fakeResult } from "../_helpers/results.ts";
import { checkXml } from "../_helpers/xml.ts";

/** A small synthetic sweep: accuracy grows with d, falls with L, depends on lr and seed (deterministic). */
function csvRow(csv: string, key: string): string[] {
  const line = csv.split("\n").find((l) => l.startsWith(key + ","));
  assert(line, `no row ${key} in\n${csv}`);
  return line.split(",");
}

Deno.test("report: every expected file, numbers that match the aggregation", () => {
  const results = syntheticResults();
  const out = buildReport(results, { title: "test report", generatedAt: "2025-01-01T00:00:00Z" });
  const names = out.files.map((f) => f.name);
  assertEquals(names.sort(), [
    "accuracy-vs-state-L128.svg",
    "accuracy-vs-state-L256-N32.svg",
    "accuracy-vs-state-L256-N64.svg",
    "by-lr.csv",
    "evp-L128.svg",
    "evp-L256-N32.svg",
    "evp-L256-N64.svg",
    "evp.csv",
    "figure1-accuracy-vs-d-L128.svg",
    "figure1-accuracy-vs-d-L256-N32.svg",
    "figure1-accuracy-vs-d-L256-N64.svg",
    "index.html",
    "memory-vs-L.svg",
    "params.md",
    "summary.csv",
    "summary.md",
    "table1.md",
    "throughput-vs-L.svg",
    "throughput.csv",
  ]);
  const file = (n: string) => out.files.find((f) => f.name === n)!.content;

  // summary.csv agrees with a direct computation for one cell.
  const cell = results.filter((r) =>
    r.config.mixer === "rebased" && r.config.dModel === 128 && r.config.numKvPairs === 32
  );
  const byLr = [1e-3, 3e-3].map((lr) => cell.filter((r) => r.config.lr === lr).map((r) => r.bestAccuracy));
  const means = byLr.map((s) => s.reduce((a, b) => a + b) / s.length);
  const best = means[1] > means[0] ? 1 : 0;
  const m = means[best];
  const std = Math.sqrt(byLr[best].reduce((a, b) => a + (b - m) ** 2, 0) / 2);
  const row = csvRow(file("summary.csv"), "rebased,128,256,32");
  assertEquals(row[4], String([1e-3, 3e-3][best]));
  assert(Math.abs(Number(row[5]) - m) < 1e-12 && Math.abs(Number(row[6]) - std) < 1e-12, row.join(","));
  assertEquals(row.slice(7), ["3", "2", "6"]);
  assertEquals(file("summary.csv").trim().split("\n").length, 1 + 3 * 2 * 3);
  assertEquals(file("by-lr.csv").trim().split("\n").length, 1 + 3 * 2 * 3 * 2);

  // table1.md shows that cell as "mean ± std" and a mean over d.
  assert(file("table1.md").includes(fmtMeanStd(m, std)), file("table1.md"));
  assert(file("table1.md").includes("L = 256, N = 32"));
  assert(file("table1.md").includes("| rebased (ReBased, (γ·norm(x)+β)²) |"), file("table1.md"));

  // evp.csv: one row per n = 1..6 per cell; EVP(1) is the pooled mean, EVP(6) ≤ max.
  const evp = file("evp.csv").trim().split("\n");
  assertEquals(evp.length, 1 + 18 * 6);
  const pool = cell.map((r) => r.bestAccuracy);
  const evpRows = evp.filter((l) => l.startsWith("rebased,128,256,32,")).map((l) => l.split(","));
  assertEquals(evpRows.map((r) => r[4]), ["1", "2", "3", "4", "5", "6"]);
  assert(Math.abs(Number(evpRows[0][5]) - pool.reduce((a, b) => a + b) / 6) < 1e-12);
  assert(Number(evpRows[5][5]) <= Math.max(...pool) + 1e-12);
  assertEquals(evpRows[5][7], String(Math.max(...pool))); // unbiased EVP(N) = max

  // params.md: the records' params per mixer × d × L.
  const params = file("params.md");
  assert(params.includes(`| based | 64 | ${fmtInt(results[0].params)} |`), params);
  // throughput.csv: a row per (mixer, d, L) with bytes.
  const tput = file("throughput.csv").trim().split("\n");
  assertEquals(tput.length, 1 + 3 * 2 * 2);
  assert(tput[0].startsWith("mixer,d_model,seq_len,n_runs,train_tokens_per_s_mean"));
  assert(file("summary.md").includes("sample standard deviation"));
});

Deno.test("report: figures are well-formed SVG naming every mixer; index.html inlines all of them", () => {
  const out = buildReport(syntheticResults(), { generatedAt: "fixed" });
  const html = out.files.find((f) => f.name === "index.html")!.content;
  const svgs = out.files.filter((f) => f.name.endsWith(".svg"));
  assertEquals(svgs.length, 11);
  for (const f of svgs) {
    const doc = checkXml(f.content);
    assertEquals(doc.root, "svg", f.name);
    const texts = doc.texts.map((t) => t.trim());
    for (const mixer of ["based", "rebased", "attention"]) assert(texts.includes(mixer), `${f.name} lacks ${mixer}`);
    assert(doc.elements.includes("title"), f.name);
    assert(
      texts.some((t) => /\(.*\)/.test(t) && /tokens|fraction|log2|MiB|trials/.test(t)),
      `${f.name}: axis titles with units`,
    );
    // Inline copy: the same <svg> element, without the XML declaration.
    const inline = f.content.replace(/^<\?xml[^>]*>\n/, "").trimEnd();
    assert(inline.startsWith("<svg") && html.includes(inline), `${f.name} not inline in index.html`);
  }
  const fig1 = svgs.find((f) => f.name === "figure1-accuracy-vs-d-L128.svg")!.content;
  assert(fig1.includes("model dimension d_model (log2 scale)") && fig1.includes("test accuracy (fraction of queries)"));
  assert(fig1.includes('<path d="M') && fig1.includes("V"), "error bars");
  const mem = svgs.find((f) => f.name === "memory-vs-L.svg")!.content;
  assert(mem.includes("peak GPU memory (MiB, log scale)"));

  // Self-contained: no scripts, no external resources, no XML declarations inside HTML.
  assert(!/<script|<link|<img|@import|url\(|src=/i.test(html), "external or scripted content");
  assert(!html.includes("<?xml"));
  assert(html.startsWith("<!DOCTYPE html>") && html.includes("<style>") && html.trimEnd().endsWith("</html>"));
  for (const id of ["overview", "figure1", "table1", "summary", "evp", "params", "throughput"]) {
    assert(html.includes(`<section id="${id}">`) && html.includes(`href="#${id}"`), id);
  }
  assert(html.includes(escapeHtml("±")) && html.includes("<table>"));
  assertEquals((html.match(/<svg /g) ?? []).length, 11);
  const state = svgs.find((f) => f.name === "accuracy-vs-state-L128.svg")!.content;
  assert(state.includes("recurrent state (floats per sequence, log2 scale)"), "state axis");
});

Deno.test("report: hostile names are escaped everywhere; output is deterministic", () => {
  const evil = 'x<script>alert("&")</script>';
  const results = [
    ...syntheticResults().slice(0, 6),
    fakeResult(fakeConfig({ mixer: evil, seed: 1 }), 0.5),
    fakeResult(fakeConfig({ mixer: evil, seed: 2 }), 0.6),
  ];
  const out = buildReport(results, { title: "A & B <report>", generatedAt: "fixed" });
  const html = out.files.find((f) => f.name === "index.html")!.content;
  assert(!html.includes("<script>"), "raw name in html");
  assert(html.includes("x&lt;script&gt;alert(&quot;&amp;&quot;)&lt;/script&gt;"));
  assert(html.includes("<title>A &amp; B &lt;report&gt;</title>"));
  for (const f of out.files.filter((f) => f.name.endsWith(".svg"))) checkXml(f.content);
  const md = out.files.find((f) => f.name === "summary.md")!.content;
  assert(md.includes('| x&lt;script&gt;alert("&amp;")&lt;/script&gt; |'), md); // Markdown passes raw HTML through
  const csv = out.files.find((f) => f.name === "summary.csv")!.content;
  assert(csv.includes(`"x<script>alert(""&"")</script>"`), csv);

  const again = buildReport(results, { title: "A & B <report>", generatedAt: "fixed" });
  assertEquals(again.files, out.files);
});

Deno.test("report building blocks: CSV quoting, Markdown escaping, formats, HTML page", () => {
  assertEquals([csvField("a,b"), csvField('q"q'), csvField("x\ny"), csvField(" lead"), csvField("plain")], [
    '"a,b"',
    '"q""q"',
    '"x\ny"',
    '" lead"',
    "plain",
  ]);
  assertEquals(
    [csvField(null), csvField(undefined), csvField(NaN), csvField(Infinity), csvField(0.1), csvField(true)],
    [
      "",
      "",
      "",
      "",
      "0.1",
      "true",
    ],
  );
  assertEquals(toCsv(["a", "b"], [[1, "x"]]), "a,b\n1,x\n");
  assertEquals(escapeMarkdownCell("a|b\nc\\d"), "a\\|b c\\\\d");
  assertEquals(escapeMarkdownCell("a<b & c>"), "a&lt;b &amp; c&gt;");
  assertEquals(
    markdownTable({ header: ["k", "v"], rows: [["a|b", "1"]], align: ["left", "right"] }),
    "| k | v |\n| --- | ---: |\n| a\\|b | 1 |\n",
  );
  assertEquals([5e-4, 1e-3, 3e-3, 1e-2, 2.5e-4].map(fmtLr), ["5e-4", "1e-3", "3e-3", "1e-2", "2.5e-4"]);
  assertEquals(fmtMeanStd(0.856, null), "0.86 ± –");
  assertEquals(fmtInt(1179520), "1,179,520");
  assertEquals(mixerLabel("rebased_x2"), "rebased_x2 (x²)");
  assertEquals(mixerLabel("something"), "something");
  const page = renderHtmlPage({
    title: "t",
    sections: [{
      id: "a b",
      title: "S<1>",
      paragraphs: ["p & q"],
      figures: [{ svg: "<svg></svg>", caption: "c", file: "f 1.svg" }],
    }],
  });
  assert(
    page.includes('<section id="a-b">') && page.includes("<h2>S&lt;1&gt;</h2>") && page.includes("<p>p &amp; q</p>"),
  );
  assert(page.includes('<a href="f%201.svg">f 1.svg</a>'));
});

Deno.test("report: Figure 10 from the records' per-epoch ln_q/ln_k statistics, one panel per parameter", () => {
  const p = "backbone.layers.1.sequence_mixer.mixer.";
  const stats = (m: number) => ({
    [`${p}ln_q.weight`]: { mean: [1, m], std: [0, 0.1] },
    [`${p}ln_q.bias`]: { mean: [0, 0.1], std: [0, 0.05] },
  });
  const results = [1, 2].map((seed) =>
    fakeResult(fakeConfig({ mixer: "rebased", seed }), 0.5, { paramStatsPerEpoch: stats(1 + seed / 10) })
  );
  const out = buildReport(results);
  const svg = out.files.find((f) => f.name === "figure10-qk-layernorm-stats.svg");
  assert(svg, out.files.map((f) => f.name).join(", "));
  checkXml(svg.content);
  for (const text of ["γ of ln_q", "β of ln_q", "seed=1", "seed=2"]) assert(svg.content.includes(text), text);
  assert(out.files.find((f) => f.name === "index.html")!.content.includes("Figure 10"));
  // Without statistics (Based, attention) there is no such figure.
  assert(!buildReport([fakeResult(fakeConfig(), 0.5)]).files.some((f) => f.name.startsWith("figure10")));
});
