/**
 * Merging results: one record per runId (duplicates reported, never silently merged), optional comparison with the
 * grid (missing runs, runs the grid does not contain), and a deterministic output order.
 */
import type { RunConfig, RunResult } from "../train/result.ts";
import type { PlannedRun } from "./grid.ts";
import type { SourcedResult } from "./results_file.ts";
import { canonicalJson, computeRunId } from "../train/run_id.ts";

/** Several records with one runId and the same config: one was kept. */
export interface Duplicate {
  runId: string;
  config: RunConfig;
  /** Sources of every record, the kept one first. */
  sources: string[];
  /** True when all records are byte-identical (e.g. a shard file merged twice); false when their outcomes differ. */
  identical: boolean;
}

/** Several records with one runId but different configs: the id no longer identifies a config. */
export interface Conflict {
  runId: string;
  sources: string[];
  /** The source of the record kept (the one whose config hashes to the runId, else the first), or null. */
  kept: string | null;
}

const STATUS_RANK: Record<RunResult["status"], number> = { ok: 2, nan: 1, error: 0 };

/** Which of two records for the same config to keep: a finished run over an error, then the later one. */
function better(a: SourcedResult, b: SourcedResult): SourcedResult {
  const ra = STATUS_RANK[a.result.status];
  const rb = STATUS_RANK[b.result.status];
  if (ra !== rb) return ra > rb ? a : b;
  return b.result.finishedAt > a.result.finishedAt ? b : a;
}

/** One-line description of a run, for messages. */
export function describeRun(c: RunConfig): string {
  return `${c.mixer} d=${c.dModel} L=${c.seqLen} N=${c.numKvPairs} lr=${c.lr} seed=${c.seed}`;
}

export interface Deduped {
  results: SourcedResult[];
  duplicates: Duplicate[];
  conflicts: Conflict[];
}

/** Keeps one record per runId (first-seen order of runIds). */
export function dedupeResults(records: readonly SourcedResult[]): Deduped {
  const groups = new Map<string, SourcedResult[]>();
  for (const r of records) {
    const g = groups.get(r.result.runId);
    if (g) g.push(r);
    else groups.set(r.result.runId, [r]);
  }
  const results: SourcedResult[] = [];
  const duplicates: Duplicate[] = [];
  const conflicts: Conflict[] = [];
  for (const [runId, group] of groups) {
    if (group.length === 1) {
      results.push(group[0]);
      continue;
    }
    const configs = new Set(group.map((r) => canonicalJson(r.result.config)));
    if (configs.size > 1) {
      const matching = group.filter((r) => computeRunId(r.result.config) === runId);
      const kept = matching.length > 0 ? matching.reduce(better) : group[0];
      results.push(kept);
      conflicts.push({ runId, sources: group.map((r) => r.source), kept: kept.source });
      continue;
    }
    const kept = group.reduce(better);
    const texts = new Set(group.map((r) => JSON.stringify(r.result)));
    duplicates.push({
      runId,
      config: kept.result.config,
      sources: [kept.source, ...group.filter((r) => r !== kept).map((r) => r.source)],
      identical: texts.size === 1,
    });
    results.push(kept);
  }
  return { results, duplicates, conflicts };
}

function sortKey(c: RunConfig): (string | number)[] {
  return [c.seqLen, c.numKvPairs, c.dModel, c.mixer, c.lr, c.seed];
}

function compareKeys(a: (string | number)[], b: (string | number)[]): number {
  for (let i = 0; i < a.length; i++) {
    if (a[i] === b[i]) continue;
    return a[i] < b[i] ? -1 : 1;
  }
  return 0;
}

/** Sorts by (L, N, d, mixer, lr, seed, runId): the output does not depend on input order. */
export function sortResults(results: readonly RunResult[]): RunResult[] {
  return [...results].sort((a, b) =>
    compareKeys(sortKey(a.config), sortKey(b.config)) || (a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : 0)
  );
}

export interface MergeOutcome {
  /** One record per runId: in grid order when a grid is given (records outside it after), else sorted by config. */
  results: RunResult[];
  duplicates: Duplicate[];
  conflicts: Conflict[];
  /** Grid runs with no record (only with a grid). */
  missing: PlannedRun[];
  /** Kept records with status "error" (no score; `mqar sweep` reruns them on resume). */
  failed: RunResult[];
  /** Records whose runId is not in the grid (only with a grid): another sweep's runs or a changed grid. */
  extra: RunResult[];
}

export function mergeResults(records: readonly SourcedResult[], grid?: readonly PlannedRun[]): MergeOutcome {
  const { results, duplicates, conflicts } = dedupeResults(records);
  const byId = new Map(results.map((r) => [r.result.runId, r.result]));
  const failed = sortResults(results.map((r) => r.result).filter((r) => r.status === "error"));
  if (!grid) return { results: sortResults([...byId.values()]), duplicates, conflicts, missing: [], extra: [], failed };
  const inGrid = new Set(grid.map((g) => g.runId));
  const ordered: RunResult[] = [];
  const missing: PlannedRun[] = [];
  for (const run of grid) {
    const r = byId.get(run.runId);
    if (r) ordered.push(r);
    else missing.push(run);
  }
  const extra = sortResults([...byId.values()].filter((r) => !inGrid.has(r.runId)));
  return { results: [...ordered, ...extra], duplicates, conflicts, missing, extra, failed };
}
