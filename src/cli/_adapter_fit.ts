/**
 * Does a run fit the adapter? WebGPU fails an over-sized storage binding with a validation error that the trainer
 * cannot see (the run would train on garbage), so every run is checked against the adapter's per-buffer limit with the
 * analytic buffer list before anything is allocated, and the message names the config field to change.
 */
import type { Gpu } from "../gpu/device.ts";
import { analyticBuffers } from "../bench/analytic.ts";
import { bufferLimit } from "../bench/throughput.ts";
import { POSITION_EMBEDDINGS, WORD_EMBEDDINGS } from "../model/param_spec.ts";
import { modelConfigOf } from "../train/config.ts";
import type { RunConfig } from "../train/result.ts";

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

function largestBuffer(gpu: Pick<Gpu, "limits" | "info">, cfg: RunConfig, microBatch: number) {
  return analyticBuffers(modelConfigOf(cfg), {
    batch: microBatch,
    labelsPerExample: cfg.numKvPairs,
    training: true,
    limits: gpu.limits,
    software: gpu.info.software,
  }).largest;
}

/** Null when every buffer of the run's training graph fits; else one line naming the field, the value and the limit. */
export function adapterFitProblem(gpu: Pick<Gpu, "limits" | "info">, cfg: RunConfig): string | null {
  const limit = bufferLimit(gpu);
  const largest = largestBuffer(gpu, cfg, cfg.microBatchSize);
  if (largest.bytes <= limit) return null;
  const needs = `needs a ${mib(largest.bytes)} buffer (${largest.name}), more than this adapter binds at once ` +
    `(${mib(limit)}, maxStorageBufferBindingSize/maxBufferSize)`;
  const maxElements = Math.floor(limit / 4);
  if (largest.name.startsWith(WORD_EMBEDDINGS)) {
    return `vocabSize: ${cfg.vocabSize} at dModel ${cfg.dModel} ${needs}; allowed: vocabSize × dModel <= ` +
      `${maxElements} here (vocabSize <= ${Math.floor(maxElements / cfg.dModel)} at this dModel)`;
  }
  if (largest.name.startsWith(POSITION_EMBEDDINGS)) {
    return `seqLen: ${cfg.seqLen} at dModel ${cfg.dModel} ${needs}; allowed: seqLen × dModel <= ${maxElements} here`;
  }
  let fits: number | null = null;
  for (let m = cfg.microBatchSize - 1; m >= 1; m--) {
    if (cfg.batchSize % m === 0 && largestBuffer(gpu, cfg, m).bytes <= limit) {
      fits = m;
      break;
    }
  }
  return `microBatchSize: ${cfg.microBatchSize} ${needs}; ` +
    (fits !== null
      ? `allowed here: a micro-batch of at most ${fits} that divides batchSize ${cfg.batchSize} (--micro-batch-size ${fits})`
      : `even a micro-batch of 1 does not fit: lower seqLen or dModel`);
}
