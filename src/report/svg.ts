/**
 * A small dependency-free SVG line-plot module: figures made of one or more panels that share a legend, with
 * linear / log2 / log10 axes, tick labels, axis titles, error bars and shaded bands. Output is plain SVG 1.1 text
 * that works standalone (with `toStandaloneSvg`) and inline in HTML (no ids, so many figures can share a page).
 */

export type ScaleKind = "linear" | "log2" | "log10";

export interface Axis {
  /** Axis title, with units. */
  label: string;
  scale?: ScaleKind;
  /** Fixed data range; default: fitted to the data (and the ticks). */
  domain?: [number, number];
  /** Tick positions in data units; default: chosen from the domain. */
  ticks?: number[];
  format?: (value: number) => string;
}

export interface Point {
  x: number;
  y: number;
  /** Error bar or band limits (data units). */
  yLow?: number;
  yHigh?: number;
}

export interface Series {
  name: string;
  points: Point[];
  color?: string;
  /** SVG stroke-dasharray, e.g. "6 3". */
  dash?: string;
  /** Draw yLow..yHigh as a shaded band instead of error bars. */
  band?: boolean;
  marker?: MarkerShape;
}

export type MarkerShape = "circle" | "square" | "triangle" | "diamond";
/** Marker shapes in the order series get them, so overlapping or grey-printed lines stay distinguishable. */
export const MARKERS: MarkerShape[] = ["circle", "square", "triangle", "diamond"];

export interface Panel {
  title: string;
  x: Axis;
  y: Axis;
  series: Series[];
}

export interface Figure {
  title: string;
  subtitle?: string;
  panels: Panel[];
  /** Panels per row (default: all in one row, up to 3). */
  columns?: number;
  panelWidth?: number;
  panelHeight?: number;
  legendTitle?: string;
}

/** Okabe–Ito colours (distinguishable with the common colour-vision deficiencies), yellow swapped for grey. */
export const PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#999999"];
export const DASHES = ["", "6 3", "2 3", "8 3 2 3"];

/** Text safe for XML content and attribute values; drops characters XML 1.0 forbids. */
export function escapeXml(text: string): string {
  return text
    // deno-lint-ignore no-control-regex
    .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, "")
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

/** Compact tick text: 0.25, 64, 2048, 12k, 3.4M, 1.2G. */
export function formatNumber(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  const trim = (x: number) => String(Number(x.toPrecision(3)));
  if (a >= 1e9) return `${trim(v / 1e9)}G`;
  if (a >= 1e6) return `${trim(v / 1e6)}M`;
  if (a >= 1e4) return `${trim(v / 1e3)}k`;
  if (Number.isInteger(v)) return String(v);
  return trim(v);
}

const r2 = (v: number) => Math.round(v * 100) / 100;

interface Scale {
  map(v: number): number;
  ticks: number[];
  format: (v: number) => string;
  valid(v: number): boolean;
}

function transformOf(kind: ScaleKind): (v: number) => number {
  return kind === "log2" ? Math.log2 : kind === "log10" ? Math.log10 : (v) => v;
}

function inverseOf(kind: ScaleKind): (t: number) => number {
  return kind === "log2" ? (t) => 2 ** t : kind === "log10" ? (t) => 10 ** t : (t) => t;
}

/** About `count` ticks at 1, 2 or 5 × 10^k steps covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  const out: number[] = [];
  for (let t = Math.ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) {
    out.push(Number(t.toFixed(decimals)));
  }
  return out;
}

function makeScale(axis: Axis, values: number[], range: [number, number]): Scale {
  const kind = axis.scale ?? "linear";
  const f = transformOf(kind);
  const inv = inverseOf(kind);
  const valid = (v: number) => Number.isFinite(v) && (kind === "linear" || v > 0);
  const data = values.filter(valid);
  const given = (axis.ticks ?? []).filter(valid);
  let lo: number; // transformed units
  let hi: number;
  if (axis.domain) {
    [lo, hi] = [f(axis.domain[0]), f(axis.domain[1])];
  } else {
    const all = [...data, ...given].map(f);
    if (all.length === 0) [lo, hi] = [0, 1];
    else [lo, hi] = [Math.min(...all), Math.max(...all)];
    if (kind === "linear") {
      if (lo === hi) [lo, hi] = [lo - (Math.abs(lo) || 1) * 0.5, hi + (Math.abs(hi) || 1) * 0.5];
      if (given.length === 0) {
        // Widen to whole tick steps so the frame starts and ends on a labelled tick.
        const t = niceTicks(lo, hi);
        const step = t.length > 1 ? t[1] - t[0] : Math.abs(lo) || 1;
        [lo, hi] = [Math.floor(lo / step + 1e-9) * step, Math.ceil(hi / step - 1e-9) * step];
      }
    } else if (given.length === 0) {
      // Whole decades (or octaves) so every tick label is a round number.
      [lo, hi] = [Math.floor(lo + 1e-9), Math.ceil(hi - 1e-9)];
      if (lo === hi) [lo, hi] = [lo - 1, hi + 1];
      // A little room so points on a decade boundary do not sit on the frame.
      const pad = 0.04 * (hi - lo);
      [lo, hi] = [lo - pad, hi + pad];
    } else {
      const pad = Math.max(0.15 * (hi - lo), 0.3);
      [lo, hi] = [lo - pad, hi + pad];
    }
  }
  if (!(hi > lo)) [lo, hi] = [lo - 0.5, hi + 0.5];
  const [a, b] = range;
  const map = (v: number) => a + ((f(v) - lo) / (hi - lo)) * (b - a);

  let ticks: number[];
  if (given.length) {
    ticks = given;
  } else if (kind === "linear") {
    ticks = niceTicks(lo, hi);
  } else {
    ticks = [];
    for (let e = Math.ceil(lo - 1e-9); e <= Math.floor(hi + 1e-9); e++) ticks.push(inv(e));
    if (kind === "log10" && hi - lo <= 2) {
      // Few decades: add 2× and 5× ticks so the axis still reads.
      const minor: number[] = [];
      for (let e = Math.floor(lo); e <= Math.ceil(hi); e++) for (const m of [2, 5]) minor.push(m * 10 ** e);
      ticks = [...ticks, ...minor.filter((v) => f(v) >= lo - 1e-9 && f(v) <= hi + 1e-9)].sort((x, y) => x - y);
    }
  }
  ticks = ticks.filter((t) => f(t) >= lo - 1e-9 && f(t) <= hi + 1e-9);
  return { map, ticks, format: axis.format ?? formatNumber, valid };
}

interface SeriesStyle {
  color: string;
  dash: string;
  marker: MarkerShape;
}

interface LegendEntry extends SeriesStyle {
  name: string;
}

function seriesStyle(s: Series, index: number): SeriesStyle {
  return {
    color: s.color ?? PALETTE[index % PALETTE.length],
    dash: s.dash ?? DASHES[Math.floor(index / PALETTE.length) % DASHES.length],
    marker: s.marker ?? MARKERS[index % MARKERS.length],
  };
}

/** One marker of radius about r centred on (x, y). */
function markerSvg(shape: MarkerShape, x: number, y: number, r: number, color: string): string {
  const style = `fill="${color}" stroke="#ffffff" stroke-width="0.8"`;
  if (shape === "square") {
    const h = r * 0.9;
    return `<rect x="${r2(x - h)}" y="${r2(y - h)}" width="${r2(2 * h)}" height="${r2(2 * h)}" ${style}/>`;
  }
  if (shape === "triangle") {
    const t = r * 1.2;
    return `<path d="M${r2(x)} ${r2(y - t)}L${r2(x + t)} ${r2(y + t * 0.8)}L${r2(x - t)} ${
      r2(y + t * 0.8)
    }Z" ${style}/>`;
  }
  if (shape === "diamond") {
    const t = r * 1.3;
    return `<path d="M${r2(x)} ${r2(y - t)}L${r2(x + t)} ${r2(y)}L${r2(x)} ${r2(y + t)}L${r2(x - t)} ${
      r2(y)
    }Z" ${style}/>`;
  }
  return `<circle cx="${r2(x)}" cy="${r2(y)}" r="${r}" ${style}/>`;
}

function text(x: number, y: number, content: string, attrs = ""): string {
  return `<text x="${r2(x)}" y="${r2(y)}"${attrs ? ` ${attrs}` : ""}>${escapeXml(content)}</text>`;
}

function renderPanel(panel: Panel, width: number, height: number): string {
  const m = { left: 68, right: 16, top: 34, bottom: 54 };
  const x0 = m.left;
  const x1 = width - m.right;
  const y0 = m.top;
  const y1 = height - m.bottom;
  const xs: number[] = [];
  const ys: number[] = [];
  for (const s of panel.series) {
    for (const p of s.points) {
      xs.push(p.x);
      ys.push(p.y);
      if (p.yLow !== undefined) ys.push(p.yLow);
      if (p.yHigh !== undefined) ys.push(p.yHigh);
    }
  }
  const sx = makeScale(panel.x, xs, [x0, x1]);
  const sy = makeScale(panel.y, ys, [y1, y0]);
  const clampY = (py: number) => Math.min(y1, Math.max(y0, py));
  const clampX = (px: number) => Math.min(x1, Math.max(x0, px));
  const out: string[] = [];

  out.push(`<rect x="${x0}" y="${y0}" width="${r2(x1 - x0)}" height="${r2(y1 - y0)}" fill="#ffffff" stroke="none"/>`);
  for (const t of sy.ticks) {
    const py = r2(sy.map(t));
    out.push(`<line x1="${x0}" y1="${py}" x2="${r2(x1)}" y2="${py}" stroke="#e5e5e5" stroke-width="1"/>`);
    out.push(`<line x1="${x0 - 5}" y1="${py}" x2="${x0}" y2="${py}" stroke="#333333" stroke-width="1"/>`);
    out.push(text(x0 - 8, py + 4, sy.format(t), 'text-anchor="end" font-size="11"'));
  }
  for (const t of sx.ticks) {
    const px = r2(sx.map(t));
    out.push(`<line x1="${px}" y1="${y0}" x2="${px}" y2="${r2(y1)}" stroke="#f0f0f0" stroke-width="1"/>`);
    out.push(`<line x1="${px}" y1="${r2(y1)}" x2="${px}" y2="${r2(y1 + 5)}" stroke="#333333" stroke-width="1"/>`);
    out.push(text(px, y1 + 18, sx.format(t), 'text-anchor="middle" font-size="11"'));
  }
  out.push(
    `<rect x="${x0}" y="${y0}" width="${r2(x1 - x0)}" height="${
      r2(y1 - y0)
    }" fill="none" stroke="#333333" stroke-width="1"/>`,
  );

  panel.series.forEach((s, i) => {
    const { color, dash, marker: shape } = seriesStyle(s, i);
    const pts = s.points.filter((p) => sx.valid(p.x) && sy.valid(p.y)).sort((a, b) => a.x - b.x);
    if (pts.length === 0) return;
    const X = (p: Point) => r2(clampX(sx.map(p.x)));
    const Y = (v: number) => r2(clampY(sy.map(v)));
    const withRange = pts.filter((p) =>
      p.yLow !== undefined && p.yHigh !== undefined && sy.valid(p.yLow) && sy.valid(p.yHigh)
    );
    const g: string[] = [];
    if (s.band && withRange.length > 1) {
      const upper = withRange.map((p) => `${X(p)},${Y(p.yHigh!)}`);
      const lower = withRange.slice().reverse().map((p) => `${X(p)},${Y(p.yLow!)}`);
      g.push(`<polygon points="${[...upper, ...lower].join(" ")}" fill="${color}" fill-opacity="0.15" stroke="none"/>`);
    } else if (!s.band) {
      for (const p of withRange) {
        const px = X(p);
        const [a, b] = [Y(p.yLow!), Y(p.yHigh!)];
        g.push(
          `<path d="M${px} ${a}V${b}M${r2(px - 3)} ${a}H${r2(px + 3)}M${r2(px - 3)} ${b}H${r2(px + 3)}" ` +
            `stroke="${color}" stroke-width="1.2" fill="none"/>`,
        );
      }
    }
    if (pts.length > 1) {
      const d = pts.map((p, k) => `${k ? "L" : "M"}${X(p)} ${Y(p.y)}`).join("");
      g.push(
        `<path d="${d}" stroke="${color}" stroke-width="1.8" fill="none"${dash ? ` stroke-dasharray="${dash}"` : ""}/>`,
      );
    }
    // Dense curves read better without markers.
    if (pts.length <= 24) { for (const p of pts) g.push(markerSvg(shape, X(p), Y(p.y), 3.2, color)); }
    out.push(`<g>${g.join("")}</g>`);
  });
  if (panel.series.every((s) => s.points.length === 0)) {
    out.push(text((x0 + x1) / 2, (y0 + y1) / 2, "no data", 'text-anchor="middle" font-size="12" fill="#777777"'));
  }

  out.push(text((x0 + x1) / 2, 20, panel.title, 'text-anchor="middle" font-size="13" font-weight="bold"'));
  out.push(text((x0 + x1) / 2, height - 12, panel.x.label, 'text-anchor="middle" font-size="12"'));
  const cy = r2((y0 + y1) / 2);
  out.push(text(16, cy, panel.y.label, `text-anchor="middle" font-size="12" transform="rotate(-90 16 ${cy})"`));
  return out.join("\n");
}

/** Greedy word wrap to lines of at most `maxChars` (a longer single word stays whole). */
export function wrapText(textValue: string, maxChars: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of textValue.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > maxChars) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.length ? lines : [""];
}

/** Renders a figure as an <svg> element (no XML declaration: inline-ready). */
export function renderFigure(fig: Figure): string {
  const pw = fig.panelWidth ?? 440;
  const ph = fig.panelHeight ?? 320;
  const columns = Math.max(1, Math.min(fig.columns ?? Math.min(3, fig.panels.length), fig.panels.length || 1));
  const rows = Math.max(1, Math.ceil(fig.panels.length / columns));

  const legend: LegendEntry[] = [];
  for (const p of fig.panels) {
    p.series.forEach((s, i) => {
      if (!legend.some((e) => e.name === s.name)) legend.push({ name: s.name, ...seriesStyle(s, i) });
    });
  }
  const longest = Math.max(fig.legendTitle?.length ?? 0, ...legend.map((e) => e.name.length), 4);
  const legendWidth = legend.length ? Math.ceil(52 + longest * 7.2) : 0;
  const width = columns * pw + legendWidth + 8;
  // Rough glyph widths of Helvetica at 16 px bold and 12 px, to wrap header lines that would overflow.
  const titleLines = wrapText(fig.title, Math.floor((width - 24) / 9.4));
  const subtitleLines = fig.subtitle ? wrapText(fig.subtitle, Math.floor((width - 24) / 6.4)) : [];
  const titleHeight = 18 + titleLines.length * 20 + subtitleLines.length * 16 + (subtitleLines.length ? 4 : 0);
  const height = titleHeight + rows * ph;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="${width}" height="${height}" ` +
      `viewBox="0 0 ${width} ${height}" role="img" font-family="Helvetica, Arial, sans-serif" fill="#222222">`,
  );
  out.push(`<title>${escapeXml(fig.title)}</title>`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  let ty = 24;
  for (const line of titleLines) {
    out.push(text(width / 2, ty, line, 'text-anchor="middle" font-size="16" font-weight="bold"'));
    ty += 20;
  }
  for (const line of subtitleLines) {
    out.push(text(width / 2, ty - 2, line, 'text-anchor="middle" font-size="12" fill="#555555"'));
    ty += 16;
  }
  fig.panels.forEach((panel, i) => {
    const ox = (i % columns) * pw;
    const oy = titleHeight + Math.floor(i / columns) * ph;
    out.push(`<g transform="translate(${ox} ${oy})">`, renderPanel(panel, pw, ph), "</g>");
  });
  if (legend.length) {
    const lx = columns * pw + 4;
    let ly = titleHeight + 34;
    const items: string[] = [];
    if (fig.legendTitle) {
      items.push(text(lx + 8, ly, fig.legendTitle, 'font-size="12" font-weight="bold"'));
      ly += 20;
    }
    for (const e of legend) {
      items.push(
        `<line x1="${lx + 8}" y1="${ly - 4}" x2="${lx + 36}" y2="${ly - 4}" stroke="${e.color}" stroke-width="2"${
          e.dash ? ` stroke-dasharray="${e.dash}"` : ""
        }/>`,
        markerSvg(e.marker, lx + 22, ly - 4, 3.2, e.color),
        text(lx + 42, ly, e.name, 'font-size="12"'),
      );
      ly += 20;
    }
    out.push(`<g>${items.join("")}</g>`);
  }
  out.push("</svg>");
  return out.join("\n");
}

/** The SVG as a standalone .svg file. */
export function toStandaloneSvg(svg: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${svg}\n`;
}
