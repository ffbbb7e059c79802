/** Markdown tables and the number formats shared by the Markdown and HTML reports. */

/** A table as text cells: rendered by markdownTable here and htmlTable in html.ts. */
export interface Table {
  caption?: string;
  header: string[];
  rows: string[][];
  /** Per column; numbers read best right-aligned. Default left. */
  align?: ("left" | "right")[];
}

/**
 * A cell's text made safe for a pipe table: pipes escaped, line breaks flattened, backslashes kept literal, and
 * &, <, > as entities because Markdown renderers pass raw HTML through.
 */
export function escapeMarkdownCell(text: string): string {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll("\\", "\\\\")
    .replaceAll("|", "\\|")
    .replace(/\r?\n/g, " ");
}

export function markdownTable(table: Table): string {
  const width = table.header.length;
  for (const [i, row] of table.rows.entries()) {
    if (row.length !== width) throw new Error(`table row ${i} has ${row.length} cells, header has ${width}`);
  }
  const line = (cells: string[]) => `| ${cells.map(escapeMarkdownCell).join(" | ")} |`;
  const rule = table.header.map((_, i) => (table.align?.[i] === "right" ? "---:" : "---"));
  const out = [line(table.header), `| ${rule.join(" | ")} |`, ...table.rows.map(line)].join("\n");
  return table.caption ? `${escapeMarkdownCell(table.caption)}\n\n${out}\n` : `${out}\n`;
}

/** Fixed decimals; "–" for missing values. */
export function fmtFixed(x: number | null | undefined, digits: number): string {
  return x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(digits);
}

/** "0.86 ± 0.08" (the paper's Table 1 format); "0.86 ± –" with a single seed. */
export function fmtMeanStd(meanValue: number, std: number | null, digits = 2): string {
  return `${fmtFixed(meanValue, digits)} ± ${fmtFixed(std, digits)}`;
}

/** Learning rates the way the paper writes them: 5e-4, 1e-3, 3e-3, 1e-2. */
export function fmtLr(lr: number): string {
  return lr.toExponential().replace("e+", "e");
}

/** Integers with thousands separators (1,179,520). */
export function fmtInt(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "–";
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}
