/**
 * `mqar demo` (`deno task demo`): the embedded default showdown. Trains conv_attention, based and rebased on a small MQAR
 * to 99 % test accuracy or a time budget each, then prints accuracy, training tokens/s and peak GPU memory per mixer.
 */
import { acquireGpu } from "../gpu/device.ts";
import { resolveRunConfig, type RunConfigInput } from "../train/config.ts";
import type { RunResult } from "../train/result.ts";
import { trainRun } from "../train/trainer.ts";
import { writeTextAtomic } from "../io/atomic.ts";
import { ResultsWriter } from "../sweep/results_file.ts";
import { checkOutputDir } from "../io/output_path.ts";
import { type Command, numberFlag, parseFlags } from "./_common.ts";
import { ProgressPrinter } from "./_progress.ts";

export const DEMO_MIXERS = ["conv_attention", "based", "rebased"] as const;

/**
 * A small MQAR sized for a CPU software adapter: d = 64, L = 32, 4 pairs, vocabulary 256. On a GPU raise the budget or
 * use `mqar train` with the paper's sizes.
 */
export const DEMO_CONFIG: RunConfigInput = {
  dModel: 64,
  seqLen: 32,
  numKvPairs: 4,
  vocabSize: 256,
  trainExamples: 4_000,
  testExamples: 500,
  batchSize: 32,
  epochs: 40,
  lr: 3e-3,
  seed: 42,
};

const USAGE = `Usage: mqar demo [--budget SECONDS] [--out DIR]

Trains ${DEMO_MIXERS.join(", ")} on MQAR (d=64, L=32, 4 kv pairs, V=256) until test accuracy > 0.99 or the time
budget per mixer (default 60 s of training) runs out, then prints a comparison table and writes DIR/demo.md and
DIR/results.jsonl (default DIR: results/demo).`;

function mib(bytes: number): string {
  return (bytes / 2 ** 20).toFixed(1);
}

export function demoTable(results: RunResult[]): string {
  const lines = [
    "| mixer | params | best accuracy | epochs | steps | train tok/s | peak MiB (params/grads/optim/activ/work) | stop |",
    "|---|---:|---:|---:|---:|---:|---|---|",
  ];
  for (const r of results) {
    const p = r.peakBytes;
    lines.push(
      `| ${r.config.mixer} | ${r.params.toLocaleString("en-US")} | ${r.bestAccuracy.toFixed(4)} | ${r.epochsRun} | ` +
        `${r.steps} | ${Math.round(r.trainTokensPerS)} | ${mib(p.total)} (${mib(p.params)}/${mib(p.grads)}/` +
        `${mib(p.optimizer)}/${mib(p.activations)}/${mib(p.workspace)}) | ${r.stopReason ?? "all epochs"} |`,
    );
  }
  return lines.join("\n");
}

export const demoCommand: Command = {
  name: "demo",
  summary: "the default showdown: conv_attention vs based vs rebased on a small MQAR, with a summary table",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("demo", args, { budget: { type: "string" }, out: { type: "string" } });
    const budget = numberFlag("budget", values.budget, { min: 1 }) ?? 60;
    const outDir = values.out ?? "results/demo";
    await checkOutputDir("--out", outDir);
    const writer = await ResultsWriter.open(`${outDir}/results.jsonl`);
    try {
      return await runDemo(outDir, budget, writer);
    } finally {
      await writer.close();
    }
  },
};

async function runDemo(outDir: string, budget: number, writer: ResultsWriter): Promise<number> {
  {
    const gpu = await acquireGpu();
    console.log(`mqar demo on ${gpu.info.description} (${gpu.info.backend}${gpu.info.software ? ", software" : ""})`);
    console.log(
      `MQAR d=${DEMO_CONFIG.dModel} L=${DEMO_CONFIG.seqLen} N=${DEMO_CONFIG.numKvPairs} V=${DEMO_CONFIG.vocabSize}, ` +
        `batch ${DEMO_CONFIG.batchSize}, lr ${DEMO_CONFIG.lr}; each mixer trains to > 0.99 or ${budget} s`,
    );
    const results: RunResult[] = [];
    {
      for (const mixer of DEMO_MIXERS) {
        const cfg = resolveRunConfig({ ...DEMO_CONFIG, mixer });
        const progress = new ProgressPrinter(`  ${mixer}`);
        const { result } = await trainRun(gpu, cfg, {
          maxTrainSeconds: budget,
          onProgress: (p) => progress.update(p),
          onEpoch: (e) => progress.line(`  ${mixer} epoch ${e.epoch + 1}: test accuracy ${e.accuracy.toFixed(4)}`),
        });
        progress.done();
        console.log(
          `  ${mixer}: best accuracy ${result.bestAccuracy.toFixed(4)}, ${Math.round(result.trainTokensPerS)} train ` +
            `tok/s, peak ${mib(result.peakBytes.total)} MiB`,
        );
        results.push(result);
        await writer.append(result);
      }
    }
    const table = demoTable(results);
    console.log(`\n${table}\n`);
    await writeTextAtomic(
      `${outDir}/demo.md`,
      `# mqar demo\n\nAdapter: ${gpu.info.description} (${gpu.info.backend}). Budget ${budget} s of training per mixer.\n\n` +
        `${table}\n`,
    );
    console.log(`report: ${outDir}/demo.md (table), ${outDir}/results.jsonl (full result records)`);
    return 0;
  }
}
