/**
 * The A/B performance gate: the committed bench matrix (AB_MATRIX) for a base revision, checked out into a temporary
 * git worktree with its own dependencies, and for the working tree, run interleaved (A B A B …) in fresh processes on
 * this machine; each metric (seconds per token of a case's training step, and of its inference step) is decided by
 * ab_stats.ts. Comparing across adapters is refused: every sample records its adapter, and all must agree.
 */
import { join } from "node:path";
import { MIXERS } from "../model/config.ts";
import { writeTextAtomic } from "../io/atomic.ts";
import { markdownTable } from "../report/markdown.ts";
import { type AbDecision, decideAb } from "./ab_stats.ts";

/** The matrix both sides run: every trainable mixer at d = 64 on two shapes, training and inference. */
export const AB_MATRIX = {
  dModel: 64,
  seqLens: [32, 128],
  batchSize: 8,
  vocabSize: 256,
  steps: 3,
  // 3 repeats per sample (was 5): with 17 mixers the A/B took 785 s of CI's 20 minutes on a loaded 2-core runner.
  repeats: 3,
  warmup: 1,
} as const;

/** A bad A/B request (no git, unknown revision, mismatched adapters): one line, exit code 2. */
export class AbGateInputError extends Error {
  override name = "AbGateInputError";
}

export interface AbOptions {
  /** Base revision (git rev). */
  base: string;
  /** Samples per side (≥ 2; the issue asks ≥ 5). */
  samples: number;
  /** Relative slowdown that counts as a regression (0.15 = 15%). */
  threshold: number;
  /** Repository root of the working tree (the candidate). */
  root: string;
  /** Extra environment per side (the slowdown check injects one into the candidate only). */
  env?: { base?: Record<string, string>; candidate?: Record<string, string> };
  /** Mixers of the matrix (default every trainable one). */
  mixers?: readonly string[];
  /**
   * Wall-clock budget in seconds for the whole gate: after the first 2 pairs of samples, the next pair runs only while
   * the slowest pair so far still fits in what is left (CI's fixed time limit on a machine of unknown speed).
   */
  maxSeconds?: number;
  log?: (line: string) => void;
}

export interface AbMetric {
  /** "rebased/d64/L128:train" or ":inference". */
  name: string;
  /** Seconds per token: each side's samples (one per process, each its best repeat), in the order they ran. */
  base: number[];
  candidate: number[];
  decision: AbDecision;
}

export interface AbReport {
  schema: "mqar-gate-ab/1";
  base: { rev: string; commit: string };
  candidate: { rev: "working tree"; commit: string | null };
  adapter: string;
  samples: number;
  threshold: number;
  /** Samples per side asked for; more than `samples` when the time budget stopped the gate. */
  requestedSamples: number;
  matrix: typeof AB_MATRIX & { mixers: readonly string[] };
  metrics: AbMetric[];
  regressions: string[];
  wallS: number;
}

async function run(cmd: string[], cwd: string, env?: Record<string, string>): Promise<{ code: number; out: string }> {
  const p = new Deno.Command(cmd[0], { args: cmd.slice(1), cwd, env, stdout: "piped", stderr: "piped" });
  const r = await p.output();
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

/** The bench's flags for the matrix. */
export function abBenchArgs(mixers: readonly string[]): string[] {
  const m = AB_MATRIX;
  return [
    "bench",
    "--mixers",
    mixers.join(","),
    "--d-models",
    String(m.dModel),
    "--seq-lens",
    m.seqLens.join(","),
    "--batch-size",
    String(m.batchSize),
    "--vocab-size",
    String(m.vocabSize),
    "--steps",
    String(m.steps),
    "--repeats",
    String(m.repeats),
    "--warmup",
    String(m.warmup),
    "--no-profile",
  ];
}

export interface Sample {
  adapter: string;
  /** metric → seconds per token. */
  values: Map<string, number>;
}

/**
 * Seconds per token of every case of a bench.json (training, and inference where measured), from the process's best
 * repeat: interference from other load only ever slows a repeat down, so the fastest is the least noisy estimate of
 * what the code costs (as timeit advises).
 */
export function samplesFromBench(bench: unknown, source: string): Sample {
  const b = bench as {
    adapter?: { description?: string; backend?: string };
    cases?: {
      id: string;
      status: string;
      train: { max: number } | null;
      inference: { max: number } | null;
    }[];
  };
  if (!b?.adapter || !Array.isArray(b.cases)) throw new AbGateInputError(`${source}: not a bench report`);
  const values = new Map<string, number>();
  for (const c of b.cases) {
    if (c.status !== "ok") continue;
    if (c.train && c.train.max > 0) values.set(`${c.id}:train`, 1 / c.train.max);
    if (c.inference && c.inference.max > 0) values.set(`${c.id}:inference`, 1 / c.inference.max);
  }
  return { adapter: `${b.adapter.description} (${b.adapter.backend})`, values };
}

/**
 * Decides every metric both sides measured. Refuses (AbGateInputError) when the samples do not all come from one
 * adapter (description and backend): a ratio across machines says nothing about the change.
 */
export function decideSamples(
  base: readonly Sample[],
  candidate: readonly Sample[],
  threshold: number,
): { adapter: string; metrics: AbMetric[] } {
  const adapters = new Set([...base, ...candidate].map((s) => s.adapter));
  if (adapters.size !== 1) {
    throw new AbGateInputError(
      `refusing to compare across adapters: the samples ran on ${[...adapters].join(" and ")}`,
    );
  }
  if (base.length < 2 || candidate.length < 2) {
    throw new AbGateInputError(`need at least 2 samples per side, got ${base.length} and ${candidate.length}`);
  }
  const names = [...candidate[0].values.keys()].filter((n) => [...base, ...candidate].every((s) => s.values.has(n)));
  const metrics = names.map((name, k) => {
    const a = base.map((s) => s.values.get(name)!);
    const b = candidate.map((s) => s.values.get(name)!);
    return { name, base: a, candidate: b, decision: decideAb(a, b, threshold, { seed: k + 1 }) };
  });
  return { adapter: [...adapters][0], metrics };
}

/**
 * Whether pair `done` (0-based: `done` pairs have run) may start under a wall-clock budget: the first 2 always run
 * (the fewest the statistics accept); later ones only while the slowest pair so far still fits in what is left.
 */
export function anotherPairFits(done: number, elapsedS: number, slowestPairS: number, maxSeconds?: number): boolean {
  if (done < 2 || maxSeconds === undefined) return true;
  return elapsedS + slowestPairS <= maxSeconds;
}

export async function runAbGate(opts: AbOptions): Promise<AbReport> {
  const log = opts.log ?? (() => {});
  const t0 = performance.now();
  if (!Number.isInteger(opts.samples) || opts.samples < 2) {
    throw new AbGateInputError(`--samples: got ${opts.samples}, expected an integer >= 2 (5 or more recommended)`);
  }
  const sha = await run(["git", "rev-parse", "--verify", "--quiet", `${opts.base}^{commit}`], opts.root);
  if (sha.code !== 0) {
    throw new AbGateInputError(`--ab: "${opts.base}" is not a commit of the git checkout at ${opts.root}`);
  }
  const commit = sha.out.trim().split("\n")[0];
  const head = await run(["git", "rev-parse", "HEAD"], opts.root);
  const tree = await Deno.makeTempDir({ prefix: "mqar-ab-base-" });
  const outDir = await Deno.makeTempDir({ prefix: "mqar-ab-runs-" });
  const added = await run(["git", "worktree", "add", "--detach", "--force", tree, commit], opts.root);
  if (added.code !== 0) throw new AbGateInputError(`--ab: could not check ${opts.base} out: ${added.out.trim()}`);
  const mixers = opts.mixers ?? MIXERS;
  try {
    const sides = [
      { name: "base" as const, cwd: tree, env: opts.env?.base },
      { name: "candidate" as const, cwd: opts.root, env: opts.env?.candidate },
    ];
    // Each side installs its own dependencies (as its deno.lock pins them) before anything is timed.
    for (const side of sides) {
      const install = await run([Deno.execPath(), "install"], side.cwd, side.env);
      if (install.code !== 0) log(`${side.name}: deno install: ${install.out.trim().split("\n").pop()}`);
    }
    const samples: Record<"base" | "candidate", Sample[]> = { base: [], candidate: [] };
    let slowestPairS = 0;
    for (let i = 0; i < opts.samples; i++) {
      const elapsedS = (performance.now() - t0) / 1000;
      if (!anotherPairFits(i, elapsedS, slowestPairS, opts.maxSeconds)) {
        log(
          `stopping after ${i} of ${opts.samples} samples per side: another pair (${slowestPairS.toFixed(0)} s) ` +
            `would pass the ${opts.maxSeconds} s budget (${elapsedS.toFixed(0)} s used)`,
        );
        break;
      }
      const pairStart = performance.now();
      for (const side of sides) {
        const out = join(outDir, `${side.name}-${i}`);
        const r = await run([Deno.execPath(), "run", "-A", "main.ts", ...abBenchArgs(mixers), "--out", out], side.cwd, {
          ...side.env,
        });
        if (r.code !== 0) {
          throw new AbGateInputError(`${side.name} bench failed (sample ${i + 1}): ${r.out.trim().split("\n").pop()}`);
        }
        const bench = JSON.parse(await Deno.readTextFile(join(out, "bench.json")));
        samples[side.name].push(samplesFromBench(bench, `${side.name} sample ${i + 1}`));
        log(`sample ${i + 1}/${opts.samples} ${side.name} done`);
      }
      slowestPairS = Math.max(slowestPairS, (performance.now() - pairStart) / 1000);
    }
    const { adapter, metrics } = decideSamples(samples.base, samples.candidate, opts.threshold);
    return {
      schema: "mqar-gate-ab/1",
      base: { rev: opts.base, commit },
      candidate: { rev: "working tree", commit: head.code === 0 ? head.out.trim() : null },
      adapter,
      samples: samples.base.length,
      requestedSamples: opts.samples,
      threshold: opts.threshold,
      matrix: { ...AB_MATRIX, mixers },
      metrics,
      regressions: metrics.filter((m) => m.decision.status === "regression").map((m) => m.name),
      wallS: (performance.now() - t0) / 1000,
    };
  } finally {
    await run(["git", "worktree", "remove", "--force", tree], opts.root);
    await Deno.remove(tree, { recursive: true }).catch(() => {});
    await Deno.remove(outDir, { recursive: true }).catch(() => {});
  }
}

/** One line per regression: the metric, the ratio and its interval, the threshold. */
export function abRegressionLines(r: AbReport): string[] {
  return r.metrics.filter((m) => m.decision.status === "regression").map((m) =>
    `REGRESSION ${m.name}: ${fmtRatio(m.decision.ratio)} slower than ${r.base.rev} ` +
    `(95% CI ${fmtRatio(m.decision.lo)}–${fmtRatio(m.decision.hi)}; threshold ${(r.threshold * 100).toFixed(0)}%)`
  );
}

const fmtRatio = (x: number) => `${x.toFixed(3)}×`;

export function abMarkdown(r: AbReport): string {
  const table = markdownTable({
    header: ["metric", "ratio (candidate / base, s per token)", "95% CI", "Mann–Whitney p", "verdict"],
    align: ["left", "right", "right", "right", "left"],
    rows: r.metrics.map((m) => [
      m.name,
      m.decision.ratio.toFixed(3),
      `${m.decision.lo.toFixed(3)}–${m.decision.hi.toFixed(3)}`,
      m.decision.p.toFixed(3),
      m.decision.status,
    ]),
  });
  return `# A/B performance gate\n\nBase ${r.base.rev} (${r.base.commit.slice(0, 12)}) vs the working tree ` +
    `(${r.candidate.commit?.slice(0, 12) ?? "?"}), ${r.samples} interleaved samples each on ${r.adapter}` +
    (r.samples < r.requestedSamples
      ? ` (of ${r.requestedSamples} requested: the time budget ended the sampling)`
      : "") +
    `; a ` +
    `regression is a slowdown above ${(r.threshold * 100).toFixed(0)}% with 95% confidence. ${r.regressions.length} ` +
    `regression(s); ${r.wallS.toFixed(0)} s.\n\n${table}\n`;
}

export async function writeAbOutputs(dir: string, r: AbReport): Promise<string[]> {
  const json = join(dir, "ab.json"), md = join(dir, "ab.md");
  await writeTextAtomic(json, JSON.stringify(r, null, 2) + "\n");
  await writeTextAtomic(md, abMarkdown(r));
  return [json, md];
}
