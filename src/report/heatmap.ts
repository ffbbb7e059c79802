/**
 * Heatmaps as plain SVG (no dependencies): one or more panels of a matrix crop, cell shade = value / panel maximum,
 * with optional outlined cells (the ground-truth positions of an attention map).
 */
import { escapeXml } from "./svg.ts";

export interface HeatmapPanel {
  title: string;
  /** Row-major values of the full matrix, `width` columns. */
  values: ArrayLike<number>;
  width: number;
  /** The rows and columns shown, in order (e.g. the query rows × the context columns). */
  rows: readonly number[];
  cols: readonly number[];
  /** Cells to outline, as [row, col] in matrix coordinates. */
  marks?: readonly [number, number][];
}

export interface Heatmap {
  title: string;
  panels: HeatmapPanel[];
  /** Axis titles. */
  rowLabel: string;
  colLabel: string;
  /** Panels per row (default up to 4). */
  columns?: number;
}

const CELL_MAX = 10;
const PANEL = 260;

function shade(v: number): string {
  // White (0) to dark blue (1).
  const t = Math.max(0, Math.min(1, v));
  const c = (a: number, b: number) => Math.round(a + (b - a) * t);
  return `rgb(${c(255, 8)},${c(255, 48)},${c(255, 107)})`;
}

export function renderHeatmap(h: Heatmap): string {
  const columns = Math.max(1, Math.min(h.columns ?? 4, h.panels.length));
  const rowsOfPanels = Math.ceil(h.panels.length / columns);
  const maxCells = Math.max(...h.panels.map((p) => Math.max(p.rows.length, p.cols.length)), 1);
  const cell = Math.max(1, Math.min(CELL_MAX, Math.floor(PANEL / maxCells)));
  const pw = Math.max(...h.panels.map((p) => p.cols.length)) * cell + 40;
  const ph = Math.max(...h.panels.map((p) => p.rows.length)) * cell + 56;
  const width = columns * pw + 20, height = rowsOfPanels * ph + 36;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `font-family="sans-serif" font-size="11">`,
    `<text x="10" y="18" font-size="14" font-weight="bold">${escapeXml(h.title)}</text>`,
  ];
  h.panels.forEach((p, k) => {
    const x0 = 10 + (k % columns) * pw + 30, y0 = 36 + Math.floor(k / columns) * ph + 16;
    let max = 0;
    for (const i of p.rows) for (const j of p.cols) max = Math.max(max, p.values[i * p.width + j]);
    out.push(`<text x="${x0}" y="${y0 - 4}">${escapeXml(p.title)}</text>`);
    p.rows.forEach((i, r) => {
      p.cols.forEach((j, c) => {
        const v = max > 0 ? p.values[i * p.width + j] / max : 0;
        out.push(
          `<rect x="${x0 + c * cell}" y="${y0 + r * cell}" width="${cell}" height="${cell}" fill="${shade(v)}"/>`,
        );
      });
    });
    for (const [i, j] of p.marks ?? []) {
      const r = p.rows.indexOf(i), c = p.cols.indexOf(j);
      if (r < 0 || c < 0) continue;
      out.push(
        `<rect x="${x0 + c * cell}" y="${y0 + r * cell}" width="${cell}" height="${cell}" fill="none" ` +
          `stroke="#d62728" stroke-width="1"/>`,
      );
    }
    const w = p.cols.length * cell, hh = p.rows.length * cell;
    out.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${hh}" fill="none" stroke="#444"/>`);
    out.push(`<text x="${x0 + w / 2}" y="${y0 + hh + 14}" text-anchor="middle">${escapeXml(h.colLabel)}</text>`);
    out.push(
      `<text x="${x0 - 8}" y="${y0 + hh / 2}" text-anchor="middle" transform="rotate(-90 ${x0 - 8} ${y0 + hh / 2})">${
        escapeXml(h.rowLabel)
      }</text>`,
    );
  });
  out.push("</svg>");
  return out.join("\n");
}
