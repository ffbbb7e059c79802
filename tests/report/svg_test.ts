import { checkXml } from "../_helpers/xml.ts";
import { assert, assertEquals, assertThrows } from "../_helpers/assert.ts";
import { escapeXml, formatNumber, niceTicks, renderFigure, toStandaloneSvg } from "../../src/report/svg.ts";

/**
 * A minimal XML well-formedness checker (no DOMParser in Deno): every character belongs to a tag, a comment or text;
 * tags nest and balance; one root; attributes are quoted and unique; "&" only starts a known entity; no stray "<".
 * Returns the element names in document order and the decoded text nodes.
 */
Deno.test("xml checker: accepts well-formed documents and rejects broken ones", () => {
  assertEquals(checkXml('<?xml version="1.0"?>\n<a x="1"><b/>t &amp; u<c y=\'2\'>v</c><!-- n --></a>').elements, [
    "a",
    "b",
    "c",
  ]);
  for (
    const bad of [
      "<a><b></a></b>",
      "<a>",
      "<a></a><b></b>",
      "<a>x < y</a>",
      "<a>x & y</a>",
      '<a t="1" t="2"/>',
      "<a t=1/>",
      "x<a/>",
      "",
      '<a t="&nbsp;"/>',
    ]
  ) assertThrows(() => checkXml(bad), /./, bad);
});

const figure = () =>
  renderFigure({
    title: 'Accuracy <vs> d & "L"',
    subtitle: "error bars: ±1 std",
    legendTitle: "mixer",
    panels: [
      {
        title: "L = 256",
        x: { label: "model dimension d_model (log2 scale)", scale: "log2", ticks: [64, 128, 256, 512] },
        y: { label: "accuracy (fraction)", domain: [0, 1] },
        series: [
          {
            name: "based",
            points: [{ x: 64, y: 0.2, yLow: 0.1, yHigh: 0.3 }, { x: 128, y: 0.5 }, {
              x: 256,
              y: 0.9,
              yLow: 0.8,
              yHigh: 1,
            }],
          },
          { name: "re<based> & co", points: [{ x: 64, y: 0.4 }, { x: 512, y: NaN }, { x: 512, y: 1 }] },
        ],
      },
      {
        title: "tokens/s",
        x: { label: "sequence length L (tokens)", scale: "log2" },
        y: { label: "throughput (tokens/s)", scale: "log10" },
        series: [
          { name: "based", points: [{ x: 128, y: 3e4 }, { x: 2048, y: 2.2e6 }] },
          {
            name: "attention",
            band: true,
            points: [{ x: 128, y: 5e4, yLow: 4e4, yHigh: 6e4 }, { x: 256, y: 2e4, yLow: 1e4, yHigh: 3e4 }],
          },
        ],
      },
      { title: "empty", x: { label: "x (units)" }, y: { label: "y (units)" }, series: [] },
    ],
  });

Deno.test("svg: a figure is well-formed XML with titles, axis labels, ticks and a legend naming every series", () => {
  const svg = figure();
  const doc = checkXml(toStandaloneSvg(svg));
  assertEquals(doc.root, "svg");
  assert(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  assert(toStandaloneSvg(svg).startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<svg'));
  const texts = doc.texts.map((t) => t.trim());
  for (
    const expected of [
      'Accuracy <vs> d & "L"',
      "error bars: ±1 std",
      "mixer",
      "based",
      "re<based> & co",
      "attention",
      "model dimension d_model (log2 scale)",
      "accuracy (fraction)",
      "sequence length L (tokens)",
      "throughput (tokens/s)",
      "no data",
      "64",
      "512",
      "0.2",
      "1",
      "10k",
      "1M",
    ]
  ) assert(texts.includes(expected), `missing text "${expected}" in ${JSON.stringify(texts)}`);
  // The legend lists each name once even when it appears in several panels.
  assertEquals(texts.filter((t) => t === "based").length, 1);
  assert(!svg.includes("NaN") && !svg.includes("Infinity") && !svg.includes("undefined"));
  assert(doc.elements.includes("polygon"), "band drawn");
  assert(!svg.includes(" id="), "no ids: figures can share one HTML page");
});

Deno.test("svg: escaping, number formatting and tick choice", () => {
  assertEquals(escapeXml(`a<b>&"c"'d\u0001`), "a&lt;b&gt;&amp;&quot;c&quot;&#39;d");
  assertEquals([0, 64, 0.25, 1 / 3, 12345, 3.4e6, 1.25e9, -2e4].map(formatNumber), [
    "0",
    "64",
    "0.25",
    "0.333",
    "12.3k",
    "3.4M",
    "1.25G",
    "-20k",
  ]);
  assertEquals(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assertEquals(niceTicks(1, 20), [5, 10, 15, 20]);
  assertEquals(niceTicks(3, 3), [3]);
});
