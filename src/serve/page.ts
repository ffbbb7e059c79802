/** The HTML of the `mqar serve` page (the script is the bundle of src/serve/app.ts). */
import { escapeXml } from "../report/svg.ts";
import { PAGE_FIELDS } from "./fields.ts";

export function pageHtml(): string {
  const field = (f: (typeof PAGE_FIELDS)[number]) =>
    f.flag === "mixer"
      ? `<label>${escapeXml(f.label)}<select id="f-mixer" name="mixer"></select></label>`
      : `<label>${escapeXml(f.label)}<input id="f-${f.flag}" name="${f.flag}" value="${escapeXml(f.initial)}"></label>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mqar-bench in the browser</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 960px; }
form { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: .5em 1em; }
label { display: flex; flex-direction: column; font-size: 12px; color: #555; }
input, select { font: inherit; padding: 2px 4px; }
.actions { grid-column: 1 / -1; display: flex; gap: 1em; align-items: center; }
#error { color: #b00; white-space: pre-wrap; }
table { border-collapse: collapse; margin-top: 1em; }
td, th { border-bottom: 1px solid #ddd; padding: 2px 10px; text-align: right; }
</style>
</head>
<body>
<h1>MQAR in this browser's WebGPU</h1>
<p>Adapter: <span id="adapter">asking for one…</span></p>
<form id="settings">
${PAGE_FIELDS.map(field).join("\n")}
<div class="actions"><button id="train" type="submit" disabled>Train</button>
<button id="export" type="button" disabled>Export results (JSONL)</button>
<span id="status"></span></div>
</form>
<p id="error"></p>
<div id="charts"></div>
<table><thead><tr><th>mixer</th><th>seed</th><th>best test accuracy</th><th>epochs</th><th>train tokens/s</th>
<th>peak memory</th></tr></thead><tbody id="runs"></tbody></table>
<p>The same kernels, model graph and trainer as the <code>mqar</code> CLI. The exported file holds the records
<code>mqar train</code> writes: <code>mqar report --results mqar-browser-results.jsonl --out report</code>.</p>
<script type="module" src="app.js"></script>
</body>
</html>
`;
}
