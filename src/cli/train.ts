/** `mqar train`: one run from a JSON config and/or flags; writes the result record, optionally a checkpoint. */
import { acquireGpu } from "../gpu/device.ts";
import { notACheckpoint, toStateDict, writeSafetensors } from "../train/safetensors.ts";
import {
  loadRunConfigFile,
  modelConfigOf,
  resolveRunConfig,
  RunConfigError,
  type RunConfigInput,
} from "../train/config.ts";
import type { RunResult } from "../train/result.ts";
import { trainRun } from "../train/trainer.ts";
import { computeRunId } from "../train/run_id.ts";
import { notASingleRecord } from "../sweep/results_file.ts";
import { checkOutputFile } from "../io/output_path.ts";
import { resolve } from "node:path";
import { adapterFitProblem } from "./_adapter_fit.ts";
import { mixerHelp } from "../model/config.ts";
import { runFlagFields } from "../train/run_fields.ts";
import { writeJsonAtomic } from "../io/atomic.ts";
import { type Command, parseFlags, printJson, UsageError } from "./_common.ts";
import { runConfigInputFromFlags } from "./_flag_values.ts";
import { ProgressPrinter } from "./_progress.ts";

/** Flags shared by `train` and `eval` that map onto RunConfig fields (src/train/run_fields.ts), plus --config. */
export const RUN_FLAGS = {
  config: { type: "string" },
  ...Object.fromEntries(
    runFlagFields().map(({ flag, spec }) => [flag, { type: spec.type === "boolean" ? "boolean" : "string" }]),
  ),
} as Record<string, { type: "string" | "boolean" }>;

/** Turns the RUN_FLAGS values into a validated partial RunConfig (flags override the config file). */
export async function runConfigFromFlags(
  values: Record<string, string | boolean | undefined>,
): Promise<RunConfigInput[]> {
  const inputs: RunConfigInput[] = [];
  if (values.config) inputs.push(await loadRunConfigFile(values.config as string));
  inputs.push(runConfigInputFromFlags(values));
  return inputs;
}

const USAGE = `Usage: mqar train [--config FILE] [flags] [--out FILE] [--save FILE] [--json]

Trains one model on MQAR and writes its result record (JSON). Flags override the config file; unset fields take the
paper's protocol (AdamW wd 0.1, cosine per epoch, early stop > 0.99, 64 epochs, batch 512, 100k/3k examples) at L=64.

  --mixer NAME            (default rebased) one of:
${mixerHelp("                            ")}
  --d-model N --seq-len N --kv-pairs N --vocab-size N
  --train-examples N --test-examples N --batch-size N --micro-batch-size N (gradient accumulation)
  --epochs N --lr X --weight-decay X --seed N (init, order, dropout) --data-seed N (the data) --max-steps N
  --early-stop X          stop when test accuracy exceeds X (default 0.99; 1 disables early stopping)
  --mamba-init reference|original  mamba: the reference code's dt_proj init (default) or Mamba's own
  --wkv-bf16              rwkv, conv_rwkv: round the wkv output and its gradients to bfloat16 as the reference code
                          does (default: float32, like every other mixer)
  --window N              sliding_window: query i attends to keys i-N..i (zoology's SlidingAttn block_size; default 256)
  --out FILE              result record path (default results/runs/<run id>.json)
  --save FILE             save the trained weights as safetensors (PyTorch state_dict names)
  --json                  print the result record on stdout`;

function summaryLine(r: RunResult): string {
  return `${r.config.mixer} d=${r.config.dModel} L=${r.config.seqLen}: best accuracy ${r.bestAccuracy.toFixed(4)} ` +
    `(epoch ${r.bestEpoch + 1}/${r.epochsRun}), ${r.steps} steps, ${r.wallTimeS.toFixed(1)} s, ` +
    `${Math.round(r.trainTokensPerS)} train tok/s, peak ${(r.peakBytes.total / 2 ** 20).toFixed(1)} MiB` +
    (r.stopReason ? ` [${r.stopReason}]` : "");
}

export const trainCommand: Command = {
  name: "train",
  summary: "train one mixer on MQAR (JSON config and/or flags); writes a result record",
  usage: USAGE,
  async run(args) {
    const { values } = parseFlags("train", args, {
      ...RUN_FLAGS,
      out: { type: "string" },
      save: { type: "string" },
      json: { type: "boolean" },
    });
    const cfg = resolveRunConfig(...await runConfigFromFlags(values));
    // Every output is checked before the GPU is touched: the work must never be lost at the end.
    const out = values.out ?? `results/runs/${computeRunId(cfg)}.json`;
    if (values.save && resolve(values.save) === resolve(out)) {
      throw new UsageError(`--save and --out both name "${values.save}": the weights and the record need two files`);
    }
    await checkOutputFile("--out", out, { existing: notASingleRecord });
    if (values.save) await checkOutputFile("--save", values.save, { existing: notACheckpoint });
    const gpu = await acquireGpu();
    const misfit = adapterFitProblem(gpu, cfg);
    if (misfit) throw new RunConfigError(misfit);
    const progress = new ProgressPrinter(`train ${cfg.mixer}`);
    if (!values.json) {
      console.error(
        `train ${cfg.mixer}: d=${cfg.dModel} L=${cfg.seqLen} N=${cfg.numKvPairs} V=${cfg.vocabSize} ` +
          `batch ${cfg.batchSize}${cfg.microBatchSize < cfg.batchSize ? ` (micro ${cfg.microBatchSize})` : ""} ` +
          `lr ${cfg.lr} epochs ${cfg.epochs} on ${gpu.info.description} (${gpu.info.backend})`,
      );
    }
    const outcome = await trainRun(gpu, cfg, {
      keepParams: Boolean(values.save),
      onProgress: (p) => progress.update(p),
      onEpoch: (e) =>
        progress.line(
          `epoch ${e.epoch + 1}: test accuracy ${e.accuracy.toFixed(4)}  train loss ${e.trainLoss.toFixed(4)}  ` +
            `lr ${e.lr.toExponential(2)}  ${e.seconds.toFixed(1)} s`,
        ),
    });
    progress.done();
    const r = outcome.result;
    // Both outputs are attempted even if one fails (a full disk, a path removed meanwhile): keep what can be kept.
    const failures: string[] = [];
    if (values.save && outcome.params) {
      try {
        const { tensors, metadata } = toStateDict(modelConfigOf(cfg), await outcome.params.download());
        await writeSafetensors(values.save, tensors, { ...metadata, run_id: r.runId, config: JSON.stringify(cfg) });
        if (!values.json) console.error(`saved weights to ${values.save}`);
      } catch (e) {
        failures.push(`could not save the weights to ${values.save}: ${(e as Error).message}`);
      }
    }
    outcome.release();
    try {
      await writeJsonAtomic(out, r);
    } catch (e) {
      failures.push(`could not write the result record to ${out}: ${(e as Error).message}`);
      if (!values.json) console.log(JSON.stringify(r)); // the record itself, so the run is not lost
    }
    if (values.json) printJson(r);
    else {
      console.log(summaryLine(r));
      if (!failures.some((f) => f.includes(out))) console.log(`result record: ${out}`);
    }
    for (const f of failures) console.error(`mqar train: ${f}`);
    if (failures.length) return 1;
    return r.status === "ok" ? 0 : 1;
  },
};
