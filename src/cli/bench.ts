/** `mqar bench`: training and inference throughput, peak memory and per-kernel time for mixers × d_model × L. */
import { acquireGpu } from "../gpu/device.ts";
import { defaultNumKvPairs, MqarConfigError, validateMqarConfig } from "../data/mqar.ts";
import { isMixerName, makeModelConfig, type MixerName, MIXERS, ModelConfigError } from "../model/config.ts";
import {
  BENCH_DEFAULTS,
  benchMqarConfig,
  type BenchReport,
  type BenchSettings,
  benchWindow,
  runBench,
} from "../bench/throughput.ts";
import { benchText, writeBenchOutputs } from "../bench/output.ts";
import { type Command, listFlag, numberFlag, parseFlags, printJson, UsageError } from "./_common.ts";
import { checkOutputDir } from "../io/output_path.ts";
import { writeTextAtomic } from "../io/atomic.ts";

const D = BENCH_DEFAULTS;

const USAGE = `Usage: mqar bench [--mixers a,b] [--d-models 64,128] [--seq-lens 256,2048] [--batch-size N] [--steps N]
                  [--repeats N] [--warmup N] [--vocab-size N] [--window N] [--kv-pairs N] [--seed N] [--max-memory-mib N]
                  [--no-inference] [--no-profile] [--profile-passes N] [--variant OP=NAME,...] [--json] [--out DIR]

For each mixer × d_model × seq_len: builds the training graph at micro-batch = --batch-size, warms up, then times
--steps training steps (forward + backward + AdamW on random MQAR batches uploaded as in training, no readback in the
timed loop, one wait at the end), --repeats times; reports the median training tokens/s, inference tokens/s (forward-only
graph), the allocator's exact peak bytes by category (and per token), analytic FLOPs per token and activation bytes, and
per-kernel GPU time from timestamp queries where the adapter supports them. When a buffer would exceed the device's
maxBufferSize / maxStorageBufferBindingSize (or the --max-memory-mib budget), the batch is halved until it fits; a case
that does not fit at batch 1 is skipped with a note.

  --mixers LIST         default ${D.mixers.join(",")} (valid: ${MIXERS.join(", ")})
  --d-models LIST       default ${D.dModels.join(",")}
  --seq-lens LIST       default ${D.seqLens.join(",")} (even; longer ones such as 2048,4096 where memory allows;
                        MQAR needs vocab > L, so L=8192 needs --vocab-size 16384)
  --batch-size N        requested micro-batch, default ${D.batchSize}
  --steps N             timed steps per repeat, default ${D.steps}
  --repeats N           timed repeats (median reported), default ${D.repeats}
  --warmup N            untimed steps first, default ${D.warmup}
  --vocab-size N        default ${D.vocabSize}
  --window N            sliding window of the mixers that have one (sliding_window; default theirs, 256)
  --kv-pairs N          labelled positions per example, default the sweep's N for each L (L/4; 16 at L=128)
  --seed N              parameter init and dropout seed, default ${D.seed}
  --max-memory-mib N    also reduce the batch until the analytic bytes fit this budget
  --no-inference        skip the forward-only timing
  --no-profile          skip the per-kernel timestamp profile
  --profile-passes N    profiled steps (median per kernel); default 1 on software adapters, 3 otherwise
  --variant OP=NAME,... force an op's variant instead of the adapter's rule: delta_rule=recurrent|chunked (DeltaNet,
                        Gated DeltaNet), ssd=recurrent|chunked (Mamba-2); the records' variants say what ran
  --out DIR             output directory (default results/bench): bench.json (everything), bench.csv, bench.md,
                        kernels.csv, bench-results.jsonl (records for \`mqar report --results DIR\`)
  --json                print the full JSON report on stdout instead of the table
  --peer jax-js         instead: the same model written with jax-js (benchmarks/peer_jaxjs.ts), trained side by side in
                        this process on the same adapter; prints ours/peer training tokens/s and peak memory ratios
                        (PEER_MIXERS only: attention, conv_attention, based, rebased)`;

const FLAGS = {
  mixers: { type: "string" },
  "d-models": { type: "string" },
  "seq-lens": { type: "string" },
  "batch-size": { type: "string" },
  steps: { type: "string" },
  repeats: { type: "string" },
  warmup: { type: "string" },
  "vocab-size": { type: "string" },
  window: { type: "string" },
  "kv-pairs": { type: "string" },
  seed: { type: "string" },
  "max-memory-mib": { type: "string" },
  "no-inference": { type: "boolean" },
  "no-profile": { type: "boolean" },
  "profile-passes": { type: "string" },
  variant: { type: "string" },
  out: { type: "string" },
  json: { type: "boolean" },
  peer: { type: "string" },
} as const;

/**
 * parseFlags, with its messages kept to one line: node's parseArgs explains "--steps -1" over two lines (an option
 * value that starts with a dash).
 */
export function parseFlagsOneLine<O extends Parameters<typeof parseFlags>[2]>(
  command: string,
  args: string[],
  options: O,
) {
  try {
    return parseFlags(command, args, options);
  } catch (e) {
    if (e instanceof UsageError) throw new UsageError(e.message.replace(/\s*\n\s*/g, " "));
    throw e;
  }
}

const positiveInt = (flag: string) => (item: string) => numberFlag(flag, item, { integer: true, min: 1 })!;

/** The variants `--variant` may force, by op (the delta rule's op is delta_rule in DeltaNet, ssd in Mamba-2). */
const FORCEABLE_VARIANTS: Readonly<Record<string, readonly string[]>> = {
  delta_rule: ["recurrent", "chunked"],
  ssd: ["recurrent", "chunked"],
};

function variantFlag(value: string | undefined): Record<string, string> | null {
  if (value === undefined) return null;
  const out: Record<string, string> = {};
  for (const item of value.split(",")) {
    const [op, name, ...rest] = item.split("=");
    const allowed = FORCEABLE_VARIANTS[op];
    if (!allowed) {
      throw new UsageError(
        `--variant: unknown op "${op}" in "${item}"; valid: ${Object.keys(FORCEABLE_VARIANTS).join(", ")} (OP=NAME)`,
      );
    }
    if (rest.length || !allowed.includes(name)) {
      throw new UsageError(`--variant: ${op} must be one of ${allowed.join(", ")}, got "${item}"`);
    }
    out[op] = name;
  }
  return out;
}

/** Parses and validates the flags into settings (every error a UsageError naming its flag). */
export function benchSettingsFromArgs(args: string[]): { settings: BenchSettings; out: string; json: boolean } {
  const { values: v } = parseFlagsOneLine("bench", args, FLAGS);
  const int = (flag: keyof typeof FLAGS, min = 1) =>
    numberFlag(flag, v[flag] as string | undefined, { integer: true, min });
  const mixers = listFlag("mixers", v.mixers, (m) => {
    if (!isMixerName(m)) throw new UsageError(`--mixers: unknown mixer "${m}"; valid: ${MIXERS.join(", ")}`);
    return m as MixerName;
  }) ?? D.mixers;
  const settings: BenchSettings = {
    ...D,
    mixers,
    dModels: listFlag("d-models", v["d-models"], positiveInt("d-models")) ?? D.dModels,
    seqLens: listFlag("seq-lens", v["seq-lens"], positiveInt("seq-lens")) ?? D.seqLens,
    batchSize: int("batch-size") ?? D.batchSize,
    steps: int("steps") ?? D.steps,
    repeats: int("repeats") ?? D.repeats,
    warmup: int("warmup", 0) ?? D.warmup,
    vocabSize: int("vocab-size", 4) ?? D.vocabSize,
    window: int("window", 0) ?? null,
    kvPairs: int("kv-pairs") ?? null,
    seed: int("seed", 0) ?? D.seed,
    inference: !v["no-inference"],
    profile: !v["no-profile"],
    profilePasses: int("profile-passes") ?? null,
    maxMemoryBytes: v["max-memory-mib"] === undefined ? null : int("max-memory-mib")! * 2 ** 20,
    variants: variantFlag(v.variant as string | undefined),
  };
  // Every case must be a valid model and MQAR task before anything touches the GPU.
  for (const mixer of settings.mixers) {
    for (const d of settings.dModels) {
      for (const L of settings.seqLens) {
        let cfg;
        try {
          cfg = makeModelConfig({
            mixer,
            dModel: d,
            seqLen: L,
            vocabSize: settings.vocabSize,
            ...benchWindow(settings, mixer),
          });
        } catch (e) {
          if (!(e instanceof ModelConfigError)) throw e;
          const flag = e.field === "vocabSize" ? "--vocab-size" : e.field === "seqLen" ? "--seq-lens" : "--d-models";
          throw new UsageError(`${flag}: ${mixer} d=${d} L=${L}: ${e.message}`);
        }
        try {
          validateMqarConfig(benchMqarConfig(cfg, settings.kvPairs ?? defaultNumKvPairs(L), 1));
        } catch (e) {
          if (!(e instanceof MqarConfigError)) throw e;
          // Name the flag the user can change: too few keys for N is a vocabulary problem, 4N > L an N or L one.
          const flag = e.field === "vocabSize" || /vocabSize/.test(e.message)
            ? "--vocab-size"
            : e.field === "numKvPairs" && settings.kvPairs !== null
            ? "--kv-pairs"
            : "--seq-lens";
          throw new UsageError(`${flag}: L=${L}: ${e.message}`);
        }
      }
    }
  }
  return { settings, out: v.out ?? "results/bench", json: Boolean(v.json) };
}

/** Runs the bench and writes its files; returns the report (the CLI and the gate test share this). */
export async function runBenchToDir(
  settings: BenchSettings,
  out: string | null,
  log: (line: string) => void = () => {},
): Promise<{ report: BenchReport; paths: string[] }> {
  const gpu = await acquireGpu();
  const report = await runBench(gpu, settings, { log });
  const paths = out === null ? [] : await writeBenchOutputs(out, report);
  return { report, paths };
}

export const benchCommand: Command = {
  name: "bench",
  summary: "training/inference tokens/s, peak bytes, analytic FLOPs and per-kernel time per mixer × d × L",
  usage: USAGE,
  async run(args) {
    const { settings, out, json } = benchSettingsFromArgs(args);
    await checkOutputDir("--out", out);
    const peerFlag = parseFlagsOneLine("bench", args, FLAGS).values.peer;
    if (peerFlag !== undefined) return await runPeer(peerFlag, settings, out, json);
    const cases = settings.mixers.length * settings.dModels.length * settings.seqLens.length;
    console.error(`bench: ${cases} case(s), writing to ${out}`);
    const { report, paths } = await runBenchToDir(settings, out, (line) => console.error(line));
    if (json) printJson(report);
    else {
      console.log(benchText(report));
      for (const n of report.notes) console.error(`note: ${n}`);
      console.log(`wrote ${paths.join(", ")} (${report.wallTimeS.toFixed(1)} s)`);
    }
    return report.cases.some((c) => c.status === "error") ? 1 : 0;
  },
};

/** `--peer jax-js`: ours vs the jax-js model per case; a benchmark, so the peer is imported only here. */
async function runPeer(peer: string, settings: BenchSettings, out: string, json: boolean): Promise<number> {
  if (peer !== "jax-js") throw new UsageError(`--peer: got "${peer}", expected jax-js`);
  const mod = await import("../../benchmarks/peer_jaxjs.ts");
  const rows = [];
  for (const mixer of settings.mixers) {
    if (!(mod.PEER_MIXERS as readonly string[]).includes(mixer)) {
      throw new UsageError(`--mixers: the jax-js peer implements ${mod.PEER_MIXERS.join(", ")}, not ${mixer}`);
    }
    for (const dModel of settings.dModels) {
      for (const seqLen of settings.seqLens) {
        const c = await mod.comparePeer({
          mixer: mixer as (typeof mod.PEER_MIXERS)[number],
          dModel,
          seqLen,
          batch: settings.batchSize,
          steps: settings.steps,
          vocabSize: settings.vocabSize,
          warmupSteps: settings.warmup,
          numKvPairs: settings.kvPairs ?? undefined,
          seed: settings.seed,
        });
        rows.push({
          mixer,
          dModel,
          seqLen,
          batch: settings.batchSize,
          oursTokensPerS: c.ours.trainTokensPerS,
          peerTokensPerS: c.peer.trainTokensPerS,
          tokensPerSRatio: c.tokensPerSRatio,
          tokensPerCpuSRatio: c.tokensPerCpuSRatio,
          oursPeakBytes: c.ours.peakBytes,
          peerPeakBytes: c.peer.peakBytes,
          peakBytesRatio: c.peakBytesRatio,
          adapter: c.peerAdapter,
        });
        if (!json) {
          console.log(
            `${mixer} d=${dModel} L=${seqLen} B=${settings.batchSize}: ours ${Math.round(c.ours.trainTokensPerS)} ` +
              `tok/s, jax-js ${Math.round(c.peer.trainTokensPerS)} tok/s, ratio ${
                c.tokensPerSRatio.toFixed(2)
              }x; peak ` +
              (c.peakBytesRatio === null
                ? "memory n/a (jax-js keeps its buffer pool after a process's first case: one mixer per run measures it)"
                : `${c.peakBytesRatio.toFixed(3)}x of jax-js's`),
          );
        }
      }
    }
  }
  await writeTextAtomic(`${out}/peer-jaxjs.json`, JSON.stringify(rows, null, 2) + "\n");
  if (json) printJson(rows);
  else console.log(`wrote ${out}/peer-jaxjs.json`);
  return 0;
}
