/**
 * Aggregation as in the paper (spec §2.5, [R] main_fig_parsing.ipynb): a run's score is its bestAccuracy (max test
 * accuracy over epochs); for each (mixer, d, L, lr) take the mean over seeds; for each (mixer, d, L) keep the lr with
 * the best mean (ties: the smaller lr, like pandas idxmax over lrs in ascending order); the spread is the sample
 * standard deviation over seeds at that lr (ddof = 1, as pandas computes it; undefined for a single seed), clipped
 * to [0, 1]. Cells are also keyed by numKvPairs so sweeps with different N at one L (Figure 1 vs the ablation) never mix.
 */
import type { RunConfig, RunResult } from "../train/result.ts";
import { DEFAULT_MIXERS } from "../sweep/grid.ts";
import { canonicalJson } from "../train/run_id.ts";

export function mean(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return xs.length ? s / xs.length : NaN;
}

/** Sample standard deviation (ddof = 1); null for fewer than two values. */
export function sampleStd(xs: readonly number[]): number | null {
  if (xs.length < 2) return null;
  const m = mean(xs);
  let s = 0;
  for (const x of xs) s += (x - m) ** 2;
  return Math.sqrt(s / (xs.length - 1));
}

const clip01 = (x: number) => Math.min(1, Math.max(0, x));

/** (L, N): one MQAR task. */
export interface Task {
  seqLen: number;
  numKvPairs: number;
}

export interface LrCell {
  lr: number;
  mean: number;
  /** Sample std over seeds (ddof 1), clipped to [0, 1]; null with one seed. */
  std: number | null;
  seeds: number[];
  scores: number[];
}

export interface SummaryRow extends Task {
  mixer: string;
  dModel: number;
  bestLr: number;
  mean: number;
  std: number | null;
  nSeeds: number;
  /** Every lr of the cell, ascending. */
  lrs: LrCell[];
  /** Every scored run of the cell (all lrs × seeds): the EVP pool. */
  scores: number[];
}

export interface Aggregation {
  rows: SummaryRow[];
  /** Things the reader should know (excluded runs, mixed configs). */
  notes: string[];
}

/** Sort order for mixers: the paper's list first (in its order), others alphabetically after. */
export function compareMixers(a: string, b: string): number {
  const ia = DEFAULT_MIXERS.indexOf(a);
  const ib = DEFAULT_MIXERS.indexOf(b);
  if (ia !== ib && (ia < 0 || ib < 0)) return ia < 0 ? 1 : -1;
  if (ia !== ib) return ia - ib;
  return a < b ? -1 : a > b ? 1 : 0;
}

export function taskLabel(t: Task): string {
  return `L = ${t.seqLen}, N = ${t.numKvPairs}`;
}

/** Distinct tasks, sorted by L then N. */
export function tasksOf(rows: readonly Task[]): Task[] {
  const seen = new Map<string, Task>();
  for (const r of rows) seen.set(`${r.seqLen}|${r.numKvPairs}`, { seqLen: r.seqLen, numKvPairs: r.numKvPairs });
  return [...seen.values()].sort((a, b) => a.seqLen - b.seqLen || a.numKvPairs - b.numKvPairs);
}

export function sortedUnique<T extends number | string>(xs: Iterable<T>, compare?: (a: T, b: T) => number): T[] {
  return [...new Set(xs)].sort(compare ?? ((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** A score usable for aggregation: not an errored run, and a finite accuracy. */
export function scoreOf(r: RunResult): number | null {
  if (r.status === "error") return null;
  const a = r.bestAccuracy as number | null;
  return typeof a === "number" && Number.isFinite(a) ? a : null;
}

const CELL_FIELDS = new Set<keyof RunConfig>(["mixer", "dModel", "seqLen", "numKvPairs", "lr", "seed"]);

/** The config fields outside the aggregation key in which runs of one cell differ. */
function differingFields(configs: readonly RunConfig[]): string[] {
  const out: string[] = [];
  const keys = new Set(configs.flatMap((c) => Object.keys(c))) as Set<keyof RunConfig>;
  for (const k of keys) {
    if (CELL_FIELDS.has(k)) continue;
    if (new Set(configs.map((c) => canonicalJson(c[k] ?? null))).size > 1) out.push(k);
  }
  return out.sort();
}

export function aggregate(results: readonly RunResult[]): Aggregation {
  const notes: string[] = [];
  const cells = new Map<
    string,
    { key: Omit<SummaryRow, "bestLr" | "mean" | "std" | "nSeeds" | "lrs" | "scores">; runs: RunResult[] }
  >();
  let excluded = 0;
  for (const r of results) {
    if (scoreOf(r) === null) {
      excluded++;
      continue;
    }
    const c = r.config;
    const k = `${c.mixer}|${c.dModel}|${c.seqLen}|${c.numKvPairs}`;
    const cell = cells.get(k) ?? {
      key: { mixer: c.mixer, dModel: c.dModel, seqLen: c.seqLen, numKvPairs: c.numKvPairs },
      runs: [],
    };
    cell.runs.push(r);
    cells.set(k, cell);
  }
  if (excluded) {
    notes.push(
      `${excluded} run${excluded === 1 ? "" : "s"} without a score (status "error" or no finite bestAccuracy) excluded`,
    );
  }

  const rows: SummaryRow[] = [];
  for (const { key, runs } of cells.values()) {
    const differ = differingFields(runs.map((r) => r.config));
    if (differ.length) {
      notes.push(
        `${key.mixer} d=${key.dModel} ${taskLabel(key)}: runs differ in ${
          differ.join(", ")
        } and are aggregated together`,
      );
    }
    const byLr = new Map<number, RunResult[]>();
    for (const r of runs) byLr.set(r.config.lr, [...(byLr.get(r.config.lr) ?? []), r]);
    const lrs: LrCell[] = [...byLr.entries()].sort(([a], [b]) => a - b).map(([lr, rs]) => {
      const scores = rs.map((r) => scoreOf(r)!);
      const std = sampleStd(scores);
      return {
        lr,
        mean: mean(scores),
        std: std === null ? null : clip01(std),
        seeds: rs.map((r) => r.config.seed),
        scores,
      };
    });
    // Strictly greater: on a tie the smaller lr (earlier in ascending order) stays.
    let best = lrs[0];
    for (const cell of lrs) if (cell.mean > best.mean) best = cell;
    const seedCounts = new Set(lrs.map((l) => l.scores.length));
    if (seedCounts.size > 1) {
      notes.push(
        `${key.mixer} d=${key.dModel} ${taskLabel(key)}: lrs have different numbers of seeds (${
          lrs.map((l) => `${l.lr}: ${l.scores.length}`).join(", ")
        }); the sweep may be incomplete`,
      );
    }
    rows.push({
      ...key,
      bestLr: best.lr,
      mean: best.mean,
      std: best.std,
      nSeeds: best.scores.length,
      lrs,
      scores: runs.map((r) => scoreOf(r)!),
    });
  }
  rows.sort((a, b) =>
    a.seqLen - b.seqLen || a.numKvPairs - b.numKvPairs || compareMixers(a.mixer, b.mixer) || a.dModel - b.dModel
  );
  return { rows, notes };
}
