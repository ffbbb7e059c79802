/** One self-contained HTML page: inline CSS, inline SVG figures, tables; no scripts and no external assets. */
import type { Table } from "./markdown.ts";

/** Text safe for HTML content and double- or single-quoted attribute values. */
export function escapeHtml(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

export function htmlTable(table: Table): string {
  const cls = (i: number) => (table.align?.[i] === "right" ? ' class="num"' : "");
  const head = table.header.map((h, i) => `<th${cls(i)}>${escapeHtml(h)}</th>`).join("");
  const body = table.rows
    .map((row) => `<tr>${row.map((c, i) => `<td${cls(i)}>${escapeHtml(c)}</td>`).join("")}</tr>`)
    .join("\n");
  const caption = table.caption ? `<caption>${escapeHtml(table.caption)}</caption>` : "";
  return `<div class="table-wrap"><table>${caption}<thead><tr>${head}</tr></thead>\n<tbody>\n${body}\n</tbody></table></div>`;
}

export interface HtmlFigure {
  /** An <svg> element (no XML declaration). */
  svg: string;
  caption: string;
  /** The standalone file of the same figure, linked under the caption. */
  file?: string;
}

export interface HtmlSection {
  /** Anchor id: letters, digits and dashes. */
  id: string;
  title: string;
  /** Plain-text paragraphs. */
  paragraphs?: string[];
  tables?: Table[];
  figures?: HtmlFigure[];
  /** Plain-text list items. */
  bullets?: string[];
}

export interface HtmlPage {
  title: string;
  subtitle?: string;
  sections: HtmlSection[];
}

const CSS = `
:root { color-scheme: light; }
body { font-family: Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1480px; padding: 24px 32px 64px;
  color: #222; background: #fafafa; line-height: 1.45; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.25em; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #ddd; }
.subtitle { color: #555; margin: 0 0 16px; }
nav ul { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 6px 18px; }
nav a, figcaption a { color: #0a58ca; text-decoration: none; }
figure { margin: 12px 0 20px; background: #fff; border: 1px solid #e3e3e3; border-radius: 4px; padding: 8px;
  display: inline-block; max-width: calc(100% - 18px); vertical-align: top; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #444; margin-top: 6px; }
.table-wrap { overflow-x: auto; margin: 10px 0 18px; }
table { border-collapse: collapse; background: #fff; font-size: 0.92em; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; white-space: nowrap; }
th { background: #f0f3f7; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fbfbfb; }
`;

function safeId(id: string): string {
  return id.replace(/[^A-Za-z0-9-]/g, "-");
}

export function renderHtmlPage(page: HtmlPage): string {
  const nav = page.sections.map((s) => `<li><a href="#${safeId(s.id)}">${escapeHtml(s.title)}</a></li>`).join("");
  const sections = page.sections.map((s) => {
    const parts: string[] = [`<section id="${safeId(s.id)}">`, `<h2>${escapeHtml(s.title)}</h2>`];
    for (const p of s.paragraphs ?? []) parts.push(`<p>${escapeHtml(p)}</p>`);
    if (s.bullets?.length) parts.push(`<ul>${s.bullets.map((b) => `<li>${escapeHtml(b)}</li>`).join("")}</ul>`);
    for (const t of s.tables ?? []) parts.push(htmlTable(t));
    for (const f of s.figures ?? []) {
      const link = f.file ? ` (<a href="${escapeHtml(encodeURI(f.file))}">${escapeHtml(f.file)}</a>)` : "";
      parts.push(`<figure>\n${f.svg}\n<figcaption>${escapeHtml(f.caption)}${link}</figcaption>\n</figure>`);
    }
    parts.push("</section>");
    return parts.join("\n");
  });
  return [
    "<!DOCTYPE html>",
    '<html lang="en">',
    "<head>",
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(page.title)}</title>`,
    `<style>${CSS}</style>`,
    "</head>",
    "<body>",
    `<h1>${escapeHtml(page.title)}</h1>`,
    page.subtitle ? `<p class="subtitle">${escapeHtml(page.subtitle)}</p>` : "",
    `<nav><ul>${nav}</ul></nav>`,
    ...sections,
    "</body>",
    "</html>",
    "",
  ].join("\n");
}
