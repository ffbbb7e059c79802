/** Synthetic run records for the sweep and report tests (no training), and a check that they are valid records. */
import { RESULT_SCHEMA_VERSION, type RunConfig, type RunResult } from "../../src/train/result.ts";
import { computeRunId } from "../../src/train/run_id.ts";
import { type ArchName, makeArchConfig } from "../../src/model/config.ts";
import { paramCount } from "../../src/model/param_count.ts";

export function fakeConfig(overrides: Partial<RunConfig> = {}): RunConfig {
  return {
    mixer: "based",
    dModel: 64,
    seqLen: 128,
    numKvPairs: 16,
    vocabSize: 8192,
    powerA: 0.01,
    randomNonQueries: false,
    dataSeed: 42,
    trainExamples: 1000,
    testExamples: 100,
    batchSize: 64,
    microBatchSize: 64,
    epochs: 4,
    lr: 1e-3,
    weightDecay: 0.1,
    seed: 42,
    earlyStopAccuracy: 0.99,
    maxSteps: null,
    ...overrides,
  };
}

/** The exact count for the mixers the model code knows (reports cross-check it), a placeholder for others. */
function paramsOf(c: RunConfig): number {
  try {
    return paramCount(
      makeArchConfig({ mixer: c.mixer as ArchName, dModel: c.dModel, seqLen: c.seqLen, vocabSize: c.vocabSize }),
    );
  } catch {
    return 1000 + c.dModel;
  }
}

/** A plausible record for `config` with the given best accuracy; the runId is the config's. */
export function fakeResult(config: RunConfig, bestAccuracy = 0.5, overrides: Partial<RunResult> = {}): RunResult {
  return {
    schema: RESULT_SCHEMA_VERSION,
    runId: computeRunId(config),
    status: "ok",
    stopReason: null,
    config,
    params: paramsOf(config),
    accuracyPerEpoch: [bestAccuracy / 2, bestAccuracy],
    trainLossPerEpoch: [5, 3],
    bestAccuracy,
    bestEpoch: 1,
    epochsRun: 2,
    steps: 32,
    wallTimeS: 1.5,
    trainTokensPerS: 1e5 * (64 / config.dModel) * (config.mixer === "attention" ? 128 / config.seqLen : 1),
    peakBytes: {
      params: 4 * config.dModel * 9000,
      grads: 4 * config.dModel * 9000,
      optimizer: 8 * config.dModel * 9000,
      activations: config.seqLen * config.dModel * 2000,
      workspace: 1 << 20,
      total: 16 * config.dModel * 9000 + config.seqLen * config.dModel * 2000 + (1 << 20),
    },
    adapter: {
      description: "fake",
      vendor: "test",
      architecture: "",
      device: "",
      isFallbackAdapter: false,
      backend: "vulkan",
      software: true,
    },
    env: { deno: "2.9.6", os: "linux", gitCommit: null, mqarVersion: "0.0.0" },
    startedAt: "2025-01-01T00:00:00.000Z",
    finishedAt: "2025-01-01T00:00:01.500Z",
    ...overrides,
  };
}

export function syntheticResults(): RunResult[] {
  let state = 12345;
  const rand = () => (state = (state * 1103515245 + 12345) % 2147483648) / 2147483648;
  const out: RunResult[] = [];
  const tasks = [{ seqLen: 128, numKvPairs: 16 }, { seqLen: 256, numKvPairs: 64 }, { seqLen: 256, numKvPairs: 32 }];
  const skill: Record<string, number> = { attention: 0.25, based: 0, rebased: 0.1 };
  for (const task of tasks) {
    for (const dModel of [64, 128]) {
      for (const mixer of ["based", "rebased", "attention"]) {
        for (const lr of [1e-3, 3e-3]) {
          for (const seed of [42, 43, 44]) {
            const base = 0.3 + skill[mixer] + (dModel === 128 ? 0.2 : 0) - (task.seqLen === 256 ? 0.1 : 0) +
              (lr === 3e-3 ? 0.05 : 0);
            const acc = Math.min(1, Math.max(0, base + (rand() - 0.5) * 0.2));
            out.push(fakeResult(fakeConfig({ ...task, dModel, mixer, lr, seed }), acc));
          }
        }
      }
    }
  }
  return out;
}

/** The cell of a summary.csv row for (mixer, d, L, N). */
