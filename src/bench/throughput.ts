/**
 * Model throughput benchmark: for each mixer × d_model × seq_len, the real training graph (forward + backward + AdamW,
 * src/model/graph.ts) is timed on random MQAR batches uploaded exactly as the trainer uploads them, with no readback
 * inside the timed loop (one wait for the GPU per repeat); then a forward-only graph for inference. Reports the median
 * tokens/s over repeats, the allocator's exact peak bytes per category, the analytic FLOPs and bytes (analytic.ts) and,
 * where timestamp queries work, per-kernel times (kernel_timing.ts).
 *
 * A reference matmul (GFLOP/s of a fixed 256³ product) is timed just before each case: the regression gate divides
 * tokens/s by it, so a slower or busier machine does not read as a regression.
 */
import type { ByteCounts } from "../gpu/allocator.ts";
import { CATEGORIES } from "../gpu/allocator.ts";
import type { AdapterSummary, Gpu } from "../gpu/device.ts";
import { writeTensor } from "../gpu/device.ts";
import { stateSize } from "../model/state_size.ts";
import { generateBatch, type MqarBatch, type MqarConfig, validateMqarConfig } from "../data/mqar.ts";
import { defaultNumKvPairs } from "../data/mqar.ts";
import { mixSeed, Rng } from "../data/rng.ts";
import { type Dispatch, dispatchCounter, submit } from "../ops/_dispatch.ts";
import type { AdamWOp } from "../ops/adamw.ts";
import { matmul } from "../ops/matmul.ts";
import { hasWindow, makeModelConfig, type MixerName, type ModelConfig } from "../model/config.ts";
import { buildModelGraph, type ModelGraph } from "../model/graph.ts";
import { initParams } from "../model/init.ts";
import { ParamStore } from "../model/parameters.ts";
import { runEnvironment } from "../train/environment.ts";
import type { RunResult } from "../train/result.ts";
import { createTrainStep } from "../train/step.ts";
import { analyticBuffers, type AnalyticBytes, analyticFlops, type LinearAttentionForm } from "./analytic.ts";
import {
  type KernelProfile,
  profileDispatches,
  type ProfilePhase,
  timestampsAvailable,
  unavailableProfile,
} from "./kernel_timing.ts";

export const BENCH_SCHEMA = "mqar-bench/1";

export interface BenchSettings {
  mixers: MixerName[];
  dModels: number[];
  seqLens: number[];
  /** Requested micro-batch (examples); reduced per case when a buffer would not fit the device. */
  batchSize: number;
  /** Timed steps per repeat (one wait for the GPU at the end of each repeat). */
  steps: number;
  /** Repeats; the reported rate is their median. */
  repeats: number;
  /** Untimed steps before timing (first-use costs). */
  warmup: number;
  vocabSize: number;
  /** Sliding window of the mixers that have one (others ignore it); null: their default. */
  window: number | null;
  /** Labelled positions per example; null: the sweep's default N for each L (L/4, 16 at L = 128). */
  kvPairs: number | null;
  seed: number;
  lr: number;
  /** Time a forward-only graph too. */
  inference: boolean;
  /** Per-kernel timestamp profile of one training step. */
  profile: boolean;
  /** Profiled steps (median per kernel); null: 1 on software adapters, 3 otherwise. */
  profilePasses: number | null;
  /** Reduce the batch until the analytic bytes (params..activations) fit this many bytes; null: no total budget. */
  maxMemoryBytes: number | null;
  /** Ops' variants forced by op name (GraphOptions.variants); null: the adapter's select rules. */
  variants: Record<string, string> | null;
}

export const BENCH_DEFAULTS: BenchSettings = {
  mixers: ["conv_attention", "based", "rebased"],
  dModels: [64],
  seqLens: [256, 512],
  batchSize: 8,
  steps: 2,
  repeats: 3,
  warmup: 1,
  vocabSize: 8192,
  window: null,
  kvPairs: null,
  seed: 42,
  lr: 1e-3,
  inference: true,
  profile: true,
  profilePasses: null,
  maxMemoryBytes: null,
  variants: null,
};

export interface Rate {
  /** Median over repeats. */
  tokensPerS: number;
  min: number;
  max: number;
  /** tokens/s of each repeat, in order. */
  repeats: number[];
  stepsPerRepeat: number;
  /** Median seconds per step. */
  secondsPerStep: number;
  /** What one step asks of the device, counted on a warm-up step: deterministic for a config and adapter. */
  perStep: StepTraffic;
}

export interface StepTraffic {
  /** Compute dispatches encoded. */
  dispatches: number;
  /** Command buffers submitted. */
  submits: number;
  /** Bytes written by queue.writeBuffer (batches, uniforms, seeds). */
  uploadBytes: number;
}

/**
 * Runs `fn` (one step) and counts what it encodes and uploads: dispatches through the ops' counter, submits and
 * writeBuffer bytes by shadowing the queue's methods for the duration (restored afterwards).
 */
export function countStepTraffic(gpu: Gpu, fn: () => void): StepTraffic {
  const queue = gpu.device.queue as GPUQueue & Record<string, unknown>;
  const writeBuffer = queue.writeBuffer, submit = queue.submit;
  let uploadBytes = 0, submits = 0;
  queue.writeBuffer = function (buffer, offset, data, dataOffset?: number, size?: number) {
    const unit = ArrayBuffer.isView(data) && "BYTES_PER_ELEMENT" in data
      ? (data as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT
      : 1;
    uploadBytes += size !== undefined ? size * unit : data.byteLength - (dataOffset ?? 0) * unit;
    return writeBuffer.call(queue, buffer, offset, data, dataOffset, size);
  };
  queue.submit = function (buffers) {
    submits++;
    return submit.call(queue, buffers);
  };
  const before = dispatchCounter.encoded;
  try {
    fn();
  } finally {
    Reflect.deleteProperty(queue, "writeBuffer");
    Reflect.deleteProperty(queue, "submit");
    if (queue.writeBuffer !== writeBuffer) queue.writeBuffer = writeBuffer;
    if (queue.submit !== submit) queue.submit = submit;
  }
  return { dispatches: dispatchCounter.encoded - before, submits, uploadBytes };
}

/** Floating-point bytes per token (bytes / (B·L)), by category. */
export type BytesPerToken = Record<keyof ByteCounts, number>;

export interface BenchCaseResult {
  /** "based/d64/L256": the key the gate matches cases by. */
  id: string;
  mixer: MixerName;
  dModel: number;
  seqLen: number;
  numKvPairs: number;
  vocabSize: number;
  requestedBatch: number;
  /** The micro-batch actually run (0 when skipped). */
  batch: number;
  status: "ok" | "skipped" | "error";
  /** Why the batch was reduced, the case skipped or failed. */
  note: string | null;
  /** The variant each op of the training graph ran (ModelGraph.variants); null when the case did not run. */
  variants: Record<string, string> | null;
  params: number;
  /** Recurrent state of one sequence, both layers, in floats (src/model/state_size.ts; null if a layer does not say). */
  stateFloats: number | null;
  /** GFLOP/s of the reference matmul measured just before this case. */
  referenceGflops: number | null;
  train: Rate | null;
  inference: Rate | null;
  /** Mean training loss over every step run (one readback after timing): a finite number shows real work was done. */
  trainLoss: number | null;
  /** MQAR batch generation on the CPU (not part of the timed loop), tokens/s. */
  dataTokensPerS: number | null;
  peakBytes: { train: ByteCounts | null; inference: ByteCounts | null };
  peakBytesPerToken: { train: BytesPerToken | null; inference: BytesPerToken | null };
  analytic: {
    /** The Based/ReBased attention form the model ran (its FLOPs are counted in that form); null without one. */
    linearAttention: LinearAttentionForm | null;
    flopsPerToken: { forward: number; backward: number; train: number };
    flopsPerStep: { forward: number; backward: number; train: number };
    flopTerms: { name: string; kind: string; forward: number; backward: number }[];
    /** Bytes of the four deterministic categories (see analytic.ts): what the measured peak should show. */
    bytes: { train: AnalyticSummary; inference: AnalyticSummary };
  };
  /** tokens/s × analytic FLOPs per token. */
  achievedGflops: { train: number | null; inference: number | null };
  kernels: KernelProfile | null;
}

export interface AnalyticSummary {
  params: number;
  grads: number;
  optimizer: number;
  activations: number;
  total: number;
  activationsPerToken: number;
  largestBuffer: { name: string; bytes: number };
}

export interface BenchReport {
  schema: typeof BENCH_SCHEMA;
  createdAt: string;
  wallTimeS: number;
  adapter: AdapterSummary;
  features: string[];
  limits: { maxBufferSize: number | null; maxStorageBufferBindingSize: number | null };
  env: RunResult["env"];
  settings: BenchSettings;
  reference: { name: string; flops: number; gflops: number | null };
  cases: BenchCaseResult[];
  notes: string[];
}

export interface BenchHooks {
  /** Progress lines (stderr in the CLI). */
  log?(line: string): void;
  onCase?(result: BenchCaseResult): void;
}

const REFERENCE = { name: "matmul 256×256×256 (fp32)", M: 256, N: 256, K: 256 };
const REFERENCE_FLOPS = 2 * REFERENCE.M * REFERENCE.N * REFERENCE.K;

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const waitForGpu = (gpu: Gpu) => gpu.device.queue.onSubmittedWorkDone();

/**
 * GFLOP/s of the reference matmul: warm-up, then the median of 3 timings of enough dispatches (one submit, one wait)
 * to take ~0.1 s, so the fixed cost of a wait stays small.
 */
export async function measureReferenceGflops(gpu: Gpu): Promise<number> {
  const release = gpu.allocator.scope();
  try {
    const { M, N, K } = REFERENCE;
    const a = gpu.allocator.tensor("bench.ref.a", [M, K], "workspace");
    const b = gpu.allocator.tensor("bench.ref.b", [K, N], "workspace");
    const out = gpu.allocator.tensor("bench.ref.out", [M, N], "workspace");
    const rng = new Rng(7, 7);
    const fill = (n: number) => Float32Array.from({ length: n }, () => rng.nextU32() / 2147483648 - 1);
    writeTensor(gpu, a, fill(M * K));
    writeTensor(gpu, b, fill(K * N));
    const dispatch = matmul(gpu, "bench.reference", { a, b, out, M, N, K });
    const time = async (repeats: number) => {
      const t0 = performance.now();
      submit(gpu, new Array<Dispatch>(repeats).fill(dispatch));
      await waitForGpu(gpu);
      return (performance.now() - t0) / 1000;
    };
    const once = await time(1); // warm-up and estimate
    const repeats = Math.max(2, Math.min(1 << 14, Math.round(0.1 / Math.max(once, 1e-6))));
    const rates: number[] = [];
    for (let r = 0; r < 3; r++) rates.push((REFERENCE_FLOPS * repeats) / (await time(repeats)) / 1e9);
    return median(rates);
  } finally {
    release();
  }
}

/** The MQAR data config of a bench case: the paper's generator at this L, N and V. */
export function benchMqarConfig(cfg: ModelConfig, numKvPairs: number, examples: number): MqarConfig {
  return {
    vocabSize: cfg.vocabSize,
    seqLen: cfg.seqLen,
    numKvPairs,
    powerA: 0.01,
    randomNonQueries: false,
    dataSeed: 42,
    trainExamples: Math.max(1, examples),
    testExamples: 1,
  };
}

export interface RigOptions {
  batch: number;
  labelsPerExample: number;
  seed: number;
  lr?: number;
  /** Distinct batches cycled through (generated up front). Default 2. */
  poolSize?: number;
  variants?: Readonly<Record<string, string>>;
}

export interface Rig {
  readonly cfg: ModelConfig;
  readonly graph: ModelGraph;
  readonly params: ParamStore;
  readonly adamw: AdamWOp | null;
  /** Seconds spent generating the batch pool on the CPU, and the tokens it holds. */
  readonly dataSeconds: number;
  readonly dataTokens: number;
  readonly tokensPerStep: number;
  /** Encodes and submits one step (training: forward + backward + AdamW), no wait, no readback. */
  step(): void;
  /** The step as profiling phases. */
  phases(): ProfilePhase[];
  /** Uploads/sets what the next step needs without submitting (for the profiler). */
  prepare(): void;
}

/**
 * Builds the training (AdamW) or forward-only rig of `cfg` in the caller's allocator scope: parameters initialised as
 * in training, a pool of MQAR batches generated up front, a step that does what the trainer's step does.
 */
export function buildRig(gpu: Gpu, cfg: ModelConfig, training: boolean, options: RigOptions): Rig {
  const { batch, labelsPerExample, seed } = options;
  const lr = options.lr ?? BENCH_DEFAULTS.lr;
  const poolSize = options.poolSize ?? 2;
  const params = new ParamStore(gpu, cfg, { optimizer: training });
  params.upload(initParams(cfg, seed));
  // Training: the trainer's own step object (src/train/step.ts); inference: a forward-only graph.
  const variants = options.variants;
  const trainStep = training
    ? createTrainStep(gpu, cfg, params, { microBatch: batch, labelsPerExample, variants })
    : null;
  const graph = trainStep?.graph ?? buildModelGraph(gpu, cfg, params, { training, batch, labelsPerExample, variants });
  const adamw = trainStep?.adamw ?? null;
  const mqar = validateMqarConfig(benchMqarConfig(cfg, labelsPerExample, poolSize * batch));
  const t0 = performance.now();
  const pool: MqarBatch[] = [];
  for (let k = 0; k < poolSize; k++) {
    pool.push(generateBatch(mqar, "train", Uint32Array.from({ length: batch }, (_, i) => k * batch + i)));
  }
  const dataSeconds = (performance.now() - t0) / 1000;
  let n = 0;
  // The profiler replays the graph's own dispatches: prepare uploads a batch and sets that step's uniforms.
  const prepare = () => {
    graph.upload(pool[n % poolSize]);
    if (training) {
      graph.setSeed(mixSeed(seed, n, 0));
      adamw!.setStep(n + 1, lr);
    }
    n++;
  };
  return {
    cfg,
    graph,
    params,
    adamw,
    dataSeconds,
    dataTokens: poolSize * batch * cfg.seqLen,
    tokensPerStep: batch * cfg.seqLen,
    step() {
      if (trainStep) {
        trainStep.run(++n, lr, () => pool[(n - 1) % poolSize], seed);
      } else {
        prepare();
        graph.run();
      }
    },
    prepare,
    phases() {
      const phases: ProfilePhase[] = [{ name: "forward", dispatches: graph.forward }];
      if (training) {
        phases.push({ name: "backward", dispatches: graph.backward });
        phases.push({ name: "optimizer", dispatches: adamw!.dispatches });
      }
      return phases;
    },
  };
}

/** Warm-up, then `repeats` timings of `steps` steps each (one wait per timing). */
export async function timeRig(
  gpu: Gpu,
  rig: Rig,
  s: Pick<BenchSettings, "steps" | "repeats" | "warmup">,
): Promise<Rate> {
  // The first warm-up step (or one extra step when there is none) is the one whose traffic is counted.
  const perStep = countStepTraffic(gpu, () => rig.step());
  for (let i = 1; i < s.warmup; i++) rig.step();
  await waitForGpu(gpu);
  const rates: number[] = [];
  const stepSeconds: number[] = [];
  for (let r = 0; r < s.repeats; r++) {
    const t0 = performance.now();
    for (let i = 0; i < s.steps; i++) rig.step();
    await waitForGpu(gpu);
    const seconds = (performance.now() - t0) / 1000;
    rates.push((rig.tokensPerStep * s.steps) / seconds);
    stepSeconds.push(seconds / s.steps);
  }
  return {
    tokensPerS: median(rates),
    min: Math.min(...rates),
    max: Math.max(...rates),
    repeats: rates,
    stepsPerRepeat: s.steps,
    secondsPerStep: median(stepSeconds),
    perStep,
  };
}

/** The largest buffer that one binding may hold on this device (storage buffers are bound whole). */
export function bufferLimit(gpu: Pick<Gpu, "limits">): number {
  const limits = [gpu.limits.maxBufferSize, gpu.limits.maxStorageBufferBindingSize].filter((v) =>
    typeof v === "number" && v > 0
  );
  return limits.length ? Math.min(...limits) : 128 * 2 ** 20;
}

export interface BatchPlan {
  /** null: not even one example fits. */
  batch: number | null;
  note: string | null;
}

const MIB = 2 ** 20;
const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;

/**
 * Halves the batch until every analytic buffer fits `bufferLimit` and the analytic total fits `maxMemoryBytes`; says
 * why it reduced or gave up.
 */
export function planBatch(
  cfg: ModelConfig,
  requested: number,
  labelsPerExample: number,
  limit: number,
  maxMemoryBytes: number | null,
  software = true,
): BatchPlan {
  const limits = { maxStorageBufferBindingSize: limit, maxBufferSize: limit };
  const why = (b: AnalyticBytes): string | null => {
    if (b.largest.bytes > limit) {
      return `buffer ${b.largest.name} needs ${mib(b.largest.bytes)} > the device's per-buffer limit ${mib(limit)}`;
    }
    if (maxMemoryBytes !== null && b.total > maxMemoryBytes) {
      return `analytic memory ${mib(b.total)} > the --max-memory-mib budget ${mib(maxMemoryBytes)}`;
    }
    return null;
  };
  const first = why(analyticBuffers(cfg, { batch: requested, labelsPerExample, training: true, limits, software }));
  if (!first) return { batch: requested, note: null };
  for (let b = Math.floor(requested / 2); b >= 1; b = Math.floor(b / 2)) {
    if (!why(analyticBuffers(cfg, { batch: b, labelsPerExample, training: true, limits, software }))) {
      return { batch: b, note: `batch reduced from ${requested} to ${b}: at ${requested}, ${first}` };
    }
  }
  const atOne = why(analyticBuffers(cfg, { batch: 1, labelsPerExample, training: true, limits, software }));
  return { batch: null, note: `skipped: even at batch 1, ${atOne}` };
}

function subtract(a: ByteCounts, b: ByteCounts): ByteCounts {
  const out = { ...a };
  for (const k of Object.keys(out) as (keyof ByteCounts)[]) out[k] -= b[k];
  return out;
}

function divide(a: ByteCounts, tokens: number): BytesPerToken {
  const out = {} as BytesPerToken;
  for (const k of Object.keys(a) as (keyof ByteCounts)[]) out[k] = a[k] / tokens;
  return out;
}

function summarise(b: AnalyticBytes, tokens: number): AnalyticSummary {
  return {
    ...b.byCategory,
    total: b.total,
    activationsPerToken: b.byCategory.activations / tokens,
    largestBuffer: { name: b.largest.name, bytes: b.largest.bytes },
  };
}

/**
 * Runs `fn` in a fresh allocator scope with a reset peak; returns its value and the scope's peak bytes by category.
 * WebGPU reports out-of-memory and validation errors asynchronously (a failed buffer would otherwise time as a fast
 * no-op), so `fn` runs inside error scopes and any error fails the case.
 */
async function measured<T>(gpu: Gpu, what: string, fn: () => Promise<T>): Promise<{ value: T; peak: ByteCounts }> {
  const release = gpu.allocator.scope();
  gpu.allocator.ledger.resetPeak();
  const base = gpu.allocator.current();
  const device = gpu.device;
  device.pushErrorScope("validation");
  device.pushErrorScope("out-of-memory");
  let value: T;
  try {
    value = await fn();
  } catch (e) {
    await device.popErrorScope().catch(() => null);
    await device.popErrorScope().catch(() => null);
    release();
    throw e;
  }
  const oom = await device.popErrorScope();
  const invalid = await device.popErrorScope();
  const peak = subtract(gpu.allocator.peak(), base);
  release();
  const err = oom ?? invalid;
  if (err) throw new Error(`${what}: GPU ${oom ? "out of memory" : "validation error"}: ${err.message}`);
  return { value, peak };
}

export function caseId(mixer: string, dModel: number, seqLen: number): string {
  return `${mixer}/d${dModel}/L${seqLen}`;
}

/** The window field of a case's model config: --window for mixers with a sliding window, nothing for the rest. */
export function benchWindow(settings: Pick<BenchSettings, "window">, mixer: string): { window?: number } {
  return settings.window !== null && hasWindow(mixer) ? { window: settings.window } : {};
}

/** Benchmarks one mixer × d × L. Never throws for a case-level failure: the result says "error" with the message. */
export async function benchCase(
  gpu: Gpu,
  settings: BenchSettings,
  mixer: MixerName,
  dModel: number,
  seqLen: number,
  hooks: BenchHooks = {},
): Promise<BenchCaseResult> {
  const cfg = makeModelConfig({
    mixer,
    dModel,
    seqLen,
    vocabSize: settings.vocabSize,
    ...benchWindow(settings, mixer),
  });
  const N = settings.kvPairs ?? defaultNumKvPairs(seqLen);
  validateMqarConfig(benchMqarConfig(cfg, N, 1));
  const plan = planBatch(cfg, settings.batchSize, N, bufferLimit(gpu), settings.maxMemoryBytes, gpu.info.software);
  const B = plan.batch ?? 1;
  // The cost model asks the ops' variant rules about this adapter, as the graph does.
  const flops = analyticFlops(cfg, { batch: B, labelsPerExample: N, adapter: gpu });
  const linearAttention = (flops.terms.find((t) => t.kind === "linear_attention")?.form ?? null) as
    | LinearAttentionForm
    | null;
  const tokens = B * seqLen;
  const bytesTrain = analyticBuffers(cfg, {
    batch: B,
    labelsPerExample: N,
    training: true,
    adapter: gpu,
  });
  const bytesInfer = analyticBuffers(cfg, {
    batch: B,
    labelsPerExample: N,
    training: false,
    adapter: gpu,
  });
  const result: BenchCaseResult = {
    id: caseId(mixer, dModel, seqLen),
    mixer,
    dModel,
    seqLen,
    numKvPairs: N,
    vocabSize: cfg.vocabSize,
    requestedBatch: settings.batchSize,
    batch: plan.batch ?? 0,
    status: plan.batch === null ? "skipped" : "ok",
    note: plan.note,
    variants: null,
    params: bytesTrain.buffers.filter((b) => b.category === "params").reduce((s, b) => s + b.elements, 0),
    stateFloats: stateSize(cfg).total,
    referenceGflops: null,
    train: null,
    inference: null,
    trainLoss: null,
    dataTokensPerS: null,
    peakBytes: { train: null, inference: null },
    peakBytesPerToken: { train: null, inference: null },
    analytic: {
      linearAttention,
      flopsPerToken: flops.perToken,
      flopsPerStep: { forward: flops.forward, backward: flops.backward, train: flops.train },
      flopTerms: flops.terms.map((t) => ({ ...t })),
      bytes: { train: summarise(bytesTrain, tokens), inference: summarise(bytesInfer, tokens) },
    },
    achievedGflops: { train: null, inference: null },
    kernels: null,
  };
  if (plan.batch === null) return result;
  const log = hooks.log ?? (() => {});
  try {
    result.referenceGflops = await measureReferenceGflops(gpu);
    const rigOptions = {
      batch: B,
      labelsPerExample: N,
      seed: settings.seed,
      lr: settings.lr,
      variants: settings.variants ?? undefined,
    };
    const train = await measured(gpu, "training", async () => {
      const rig = buildRig(gpu, cfg, true, rigOptions);
      result.variants = { ...rig.graph.variants };
      const rate = await timeRig(gpu, rig, settings);
      const stats = await rig.graph.xent.readStats();
      const loss = stats.accCount > 0 ? stats.accLossSum / stats.accCount : NaN;
      let kernels: KernelProfile | null = null;
      if (settings.profile) {
        kernels = timestampsAvailable(gpu)
          ? await profileDispatches(gpu, rig.phases(), {
            passes: settings.profilePasses ?? (gpu.info.software ? 1 : 3),
            beforePass: () => rig.prepare(),
          })
          : unavailableProfile("timestamp-query is not available on this adapter: per-kernel times unavailable");
      }
      return { rate, loss, kernels, dataSeconds: rig.dataSeconds, dataTokens: rig.dataTokens };
    });
    result.train = train.value.rate;
    result.trainLoss = Number.isFinite(train.value.loss) ? train.value.loss : null;
    if (result.trainLoss === null) {
      result.note = [result.note, `training loss is not finite (${train.value.loss})`].filter(Boolean).join("; ");
    }
    result.kernels = train.value.kernels;
    result.dataTokensPerS = train.value.dataSeconds > 0 ? train.value.dataTokens / train.value.dataSeconds : null;
    result.peakBytes.train = train.peak;
    result.peakBytesPerToken.train = divide(train.peak, tokens);
    result.achievedGflops.train = (train.value.rate.tokensPerS * flops.perToken.train) / 1e9;
    log(`  train ${Math.round(train.value.rate.tokensPerS)} tok/s (batch ${B})`);
    if (settings.inference) {
      const infer = await measured(gpu, "inference", async () => {
        const rig = buildRig(gpu, cfg, false, rigOptions);
        return await timeRig(gpu, rig, settings);
      });
      result.inference = infer.value;
      result.peakBytes.inference = infer.peak;
      result.peakBytesPerToken.inference = divide(infer.peak, tokens);
      result.achievedGflops.inference = (infer.value.tokensPerS * flops.perToken.forward) / 1e9;
      log(`  inference ${Math.round(infer.value.tokensPerS)} tok/s`);
    }
  } catch (e) {
    result.status = "error";
    result.note = [result.note, (e as Error).message].filter(Boolean).join("; ");
  }
  return result;
}

/** Every case of the grid, in order mixer-major: d, then L. */
export async function runBench(gpu: Gpu, settings: BenchSettings, hooks: BenchHooks = {}): Promise<BenchReport> {
  const t0 = performance.now();
  const createdAt = new Date().toISOString();
  const cases: BenchCaseResult[] = [];
  const notes: string[] = [];
  if (gpu.info.software) {
    notes.push(
      `software adapter (${gpu.info.description}): rates are CPU-bound and move with other load on the machine; ` +
        "compare runs through the reference-normalised figures",
    );
  }
  if (settings.profile && !timestampsAvailable(gpu)) {
    notes.push("timestamp-query is unavailable on this adapter: no per-kernel times");
  }
  for (const mixer of settings.mixers) {
    for (const d of settings.dModels) {
      for (const L of settings.seqLens) {
        hooks.log?.(`bench ${caseId(mixer, d, L)}: batch ${settings.batchSize}`);
        const r = await benchCase(gpu, settings, mixer, d, L, hooks);
        if (r.note) hooks.log?.(`  note: ${r.note}`);
        cases.push(r);
        hooks.onCase?.(r);
      }
    }
  }
  const refs = cases.map((c) => c.referenceGflops).filter((v): v is number => v !== null);
  return {
    schema: BENCH_SCHEMA,
    createdAt,
    wallTimeS: (performance.now() - t0) / 1000,
    adapter: gpu.info,
    features: [...gpu.features].sort(),
    limits: {
      maxBufferSize: gpu.limits.maxBufferSize ?? null,
      maxStorageBufferBindingSize: gpu.limits.maxStorageBufferBindingSize ?? null,
    },
    env: await runEnvironment(),
    settings,
    reference: { name: REFERENCE.name, flops: REFERENCE_FLOPS, gflops: refs.length ? median(refs) : null },
    cases,
    notes,
  };
}

/** The byte categories in report order. */
export const BYTE_KEYS: readonly (keyof ByteCounts)[] = ["total", ...CATEGORIES];
