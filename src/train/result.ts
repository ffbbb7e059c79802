/** The result record of one training run: one JSON line in a results file, the unit of sweeps and reports. */
import type { ByteCounts } from "../gpu/allocator.ts";
import type { AdapterSummary } from "../gpu/device.ts";
import type { StateSize } from "../model/state_size.ts";

export const RESULT_SCHEMA_VERSION = 1;

/** Everything that defines a run (the trainer's input after defaults are filled in). */
export interface RunConfig {
  mixer: string;
  dModel: number;
  seqLen: number;
  numKvPairs: number;
  vocabSize: number;
  powerA: number;
  randomNonQueries: boolean;
  dataSeed: number;
  trainExamples: number;
  testExamples: number;
  batchSize: number;
  microBatchSize: number;
  epochs: number;
  lr: number;
  weightDecay: number;
  seed: number;
  /** Stop once test accuracy exceeds this (the paper: 0.99). */
  earlyStopAccuracy: number;
  /** Optional cap on optimizer steps (budgeted runs, demos); null = none. */
  maxSteps: number | null;
  /**
   * Absent = false: layer 0's short conv is fixed to copy the previous token and is not trained (no update, no weight
   * decay): the paper's §5.5 analysis setup. Only for architectures whose layer 0 has that form (BaseConv).
   */
  fixPrevTokenConv?: boolean;
  /** Mamba only, absent = "reference": its dt_proj init (see ArchConfig.mambaInit). */
  mambaInit?: "reference" | "original";
  /** RWKV only, absent = false: round the wkv output and its gradients to bfloat16 as the reference code does. */
  wkvBf16?: boolean;
  /** sliding_window only, absent = DEFAULT_WINDOW: query i sees keys i − window ≤ j ≤ i (see ArchConfig.window). */
  window?: number;
}

export type RunStatus = "ok" | "nan" | "error";

/** The stop reason of a run that the clock (a --budget of training seconds) ended, not its step count. */
export const timeBudgetStop = (seconds: number): string => `time budget ${seconds} s`;
export const stoppedByTimeBudget = (r: Pick<RunResult, "stopReason">): boolean =>
  r.stopReason?.startsWith("time budget ") ?? false;

export interface RunResult {
  schema: typeof RESULT_SCHEMA_VERSION;
  /** Stable id of the config: the same config always gets the same id (resume, merge, dedupe). */
  runId: string;
  status: RunStatus;
  /**
   * Why a run ended early: "early-stop", "max-steps", "time budget S s" (timeBudgetStop), "nan at step N", an error
   * message; null when it ran all epochs.
   */
  stopReason: string | null;
  config: RunConfig;
  params: number;
  /** Test accuracy (fraction of labelled positions predicted exactly) after each epoch. */
  accuracyPerEpoch: number[];
  /** Mean training loss over each epoch. */
  trainLossPerEpoch: number[];
  bestAccuracy: number;
  bestEpoch: number;
  epochsRun: number;
  steps: number;
  wallTimeS: number;
  /** Training tokens (B·L per example) per second of training wall time (eval excluded). */
  trainTokensPerS: number;
  peakBytes: ByteCounts;
  /** Recurrent state per layer in floats for one sequence (the KV cache for softmax attention; src/model/state_size.ts). */
  stateFloats?: StateSize;
  /**
   * Mean and std of the tracked parameters (ReBased's ln_q/ln_k γ and β) after each epoch, by full parameter name;
   * absent for mixers that track none.
   */
  paramStatsPerEpoch?: Record<string, { mean: number[]; std: number[] }>;
  /** The variant each op of the training graph ran (ModelGraph.variants), e.g. { matmul: "blocked", ... }. */
  variants?: Record<string, string>;
  adapter: AdapterSummary;
  env: { deno: string; os: string; gitCommit: string | null; mqarVersion: string };
  startedAt: string;
  finishedAt: string;
}
