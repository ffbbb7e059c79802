/**
 * Proves the A/B gate on this machine: `--tries` A/A comparisons (HEAD against the working tree, which should be HEAD:
 * any regression is a false alarm) and `--tries` comparisons in which the candidate runs with a known slowdown
 * (MQAR_SLOWDOWN_KERNELS: the linear-attention kernels of Based and ReBased run 5 times; a try that flags none of those
 * mixers' metrics is a miss, and a flagged metric of any other mixer a false alarm). Writes check.json and check.md.
 *
 *   deno run -A benchmarks/ab_gate_check.ts [--tries 5] [--samples 5] [--mixers a,b] [--out results/ab-check]
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { type AbReport, runAbGate } from "../src/bench/ab_gate.ts";
import { writeTextAtomic } from "../src/io/atomic.ts";
import { MIXERS } from "../src/model/config.ts";

/**
 * The deliberate slowdown: the Based/ReBased linear-attention kernels (forward and backward) do their work 5 times.
 * Twice is too little to test the gate with: at the matrix's small shapes those kernels take about a tenth of a training
 * step, so doubling them slows the step by about 10 % (measured: median ratio 1.10), under the 15 % threshold, and a
 * gate that flagged it would be flagging noise. Five times makes the step about 1.4× slower.
 */
export const SLOWDOWN = { MQAR_SLOWDOWN_KERNELS: String.raw`\.mixer\.attn$`, MQAR_SLOWDOWN_REPEATS: "5" };
/** Mixers whose step runs those kernels. */
export const slowedMixer = (metric: string) => /^(based|rebased)[^/]*\//.test(metric);

interface Try {
  kind: "A/A" | "slowdown";
  index: number;
  regressions: string[];
  /** Regressions of metrics the slowdown does not touch (all of them in A/A). */
  falseAlarms: string[];
  /** Slowdown tries only: whether any slowed mixer's metric was flagged. */
  detected: boolean | null;
  /** Ratios of the slowed mixers' training metrics (slowdown) or of every metric (A/A): median and range. */
  ratios: { median: number; min: number; max: number };
  wallS: number;
}

const { values } = parseArgs({
  args: Deno.args,
  options: {
    tries: { type: "string", default: "5" },
    samples: { type: "string", default: "5" },
    mixers: { type: "string" },
    out: { type: "string", default: "results/ab-check" },
  },
});
const tries = Number(values.tries), samples = Number(values.samples);
if (!(Number.isInteger(tries) && tries >= 1)) throw new Error(`--tries: got ${values.tries}, expected an integer >= 1`);
const mixers = values.mixers ? values.mixers.split(",") : [...MIXERS];
const root = new URL("..", import.meta.url).pathname;
const dirty = new Deno.Command("git", { args: ["status", "--porcelain", "--untracked-files=no"], cwd: root })
  .outputSync();
if (new TextDecoder().decode(dirty.stdout).trim()) {
  console.error("warning: the working tree differs from HEAD, so the A/A tries compare two different trees");
}

function summarise(kind: Try["kind"], index: number, r: AbReport): Try {
  const falseAlarms = kind === "A/A" ? r.regressions : r.regressions.filter((m) => !slowedMixer(m));
  const watched = r.metrics.filter((m) => kind === "A/A" || (slowedMixer(m.name) && m.name.endsWith(":train")));
  const ratios = watched.map((m) => m.decision.ratio).sort((a, b) => a - b);
  return {
    kind,
    index,
    regressions: r.regressions,
    falseAlarms,
    detected: kind === "slowdown" ? r.regressions.some(slowedMixer) : null,
    ratios: { median: ratios[ratios.length >> 1], min: ratios[0], max: ratios[ratios.length - 1] },
    wallS: r.wallS,
  };
}

const results: Try[] = [];
const out = values.out!;
for (let i = 0; i < tries; i++) {
  for (const kind of ["A/A", "slowdown"] as const) {
    const report = await runAbGate({
      base: "HEAD",
      samples,
      threshold: 0.15,
      root,
      mixers,
      env: kind === "slowdown" ? { candidate: SLOWDOWN } : undefined,
      log: (line) => console.error(`${kind} try ${i + 1}: ${line}`),
    });
    await writeTextAtomic(join(out, `${kind === "A/A" ? "aa" : "slow"}-${i + 1}.json`), JSON.stringify(report));
    const t = summarise(kind, i + 1, report);
    results.push(t);
    console.log(
      `${kind} try ${i + 1}: ${t.regressions.length} regression(s) [${t.regressions.join(", ")}], ` +
        `false alarms ${t.falseAlarms.length}${t.detected === null ? "" : `, detected ${t.detected}`}, ratios ` +
        `${t.ratios.median.toFixed(3)} (${t.ratios.min.toFixed(3)}–${t.ratios.max.toFixed(3)}), ${
          t.wallS.toFixed(0)
        } s`,
    );
  }
}
const aa = results.filter((t) => t.kind === "A/A"), slow = results.filter((t) => t.kind === "slowdown");
const summary = {
  tries,
  samples,
  mixers,
  slowdown: SLOWDOWN,
  aaRunsWithFalseAlarm: aa.filter((t) => t.falseAlarms.length > 0).length,
  aaFalseAlarmMetrics: aa.reduce((n, t) => n + t.falseAlarms.length, 0),
  slowdownMisses: slow.filter((t) => !t.detected).length,
  slowdownFalseAlarmMetrics: slow.reduce((n, t) => n + t.falseAlarms.length, 0),
  results,
};
await writeTextAtomic(join(out, "check.json"), JSON.stringify(summary, null, 2) + "\n");
const md = [
  `# A/B gate check: ${tries} A/A and ${tries} slowdown tries, ${samples} samples per side`,
  "",
  `- A/A tries with a false alarm: ${summary.aaRunsWithFalseAlarm}/${tries} (${summary.aaFalseAlarmMetrics} metrics)`,
  `- slowdown tries that missed it: ${summary.slowdownMisses}/${tries}; unaffected metrics flagged: ` +
  `${summary.slowdownFalseAlarmMetrics}`,
  "",
  "| try | regressions | ratio median (min–max) | s |",
  "| --- | --- | ---: | ---: |",
  ...results.map((t) =>
    `| ${t.kind} ${t.index} | ${t.regressions.join(", ") || "none"} | ${t.ratios.median.toFixed(3)} ` +
    `(${t.ratios.min.toFixed(3)}–${t.ratios.max.toFixed(3)}) | ${t.wallS.toFixed(0)} |`
  ),
  "",
].join("\n");
await writeTextAtomic(join(out, "check.md"), md);
console.log(md);
