/**
 * Trains one MQAR run on the GPU (spec §2.5): AdamW (wd on every parameter), cosine LR stepped per epoch, gradient
 * accumulation over micro-batches, evaluation on the test split after every epoch, early stop above a threshold, and the
 * best accuracy over epochs as the score. A training step is encoded and submitted without readbacks; loss is read every
 * few seconds (that is also when NaN/Inf is detected).
 */
import { type Gpu, readTensor } from "../gpu/device.ts";
import { architecture } from "../mixers/registry.ts";
import { mixerPrefix } from "../model/param_spec.ts";
import { epochOrder, generateBatch, type MqarSplit } from "../data/mqar.ts";
import type { ModelConfig } from "../model/config.ts";
import { buildModelGraph, type ModelGraph } from "../model/graph.ts";
import { initParams } from "../model/init.ts";
import { ParamStore } from "../model/parameters.ts";
import type { Tensor } from "../gpu/allocator.ts";
import { cosineLr, frozenParams, modelConfigOf, mqarConfigOf } from "./config.ts";
import { RESULT_SCHEMA_VERSION, type RunConfig, type RunResult, timeBudgetStop } from "./result.ts";
import { runEnvironment } from "./environment.ts";
import { createTrainStep } from "./step.ts";
import { computeRunId } from "./run_id.ts";
import { stateSize } from "../model/state_size.ts";

export interface TrainProgress {
  epoch: number;
  epochs: number;
  step: number;
  stepsPerEpoch: number;
  totalSteps: number;
  lr: number;
  /** Mean training loss since the previous report (null before the first read). */
  loss: number | null;
  tokensPerS: number;
  lastAccuracy: number | null;
}

export interface TrainHooks {
  onProgress?(p: TrainProgress): void;
  onEpoch?(e: { epoch: number; accuracy: number; trainLoss: number; lr: number; seconds: number }): void;
  /** Seconds between loss readbacks (each costs ~10 ms). Default 2. */
  reportEveryS?: number;
  /** Initial parameter values (e.g. a checkpoint) instead of a fresh init. */
  initialParams?: ReadonlyMap<string, Float32Array>;
  /** Stop training (after finishing the current step and evaluating) once this much training time has passed. */
  maxTrainSeconds?: number;
  /** Keep the trained parameters on the GPU for the caller (e.g. `--save`); call `release` when done. */
  keepParams?: boolean;
}

export interface TrainOutcome {
  result: RunResult;
  /** Present with keepParams. */
  params?: ParamStore;
  /** Frees every buffer of the run. */
  release(): void;
}

/** Largest divisor of n that is ≤ max: test batches then cover the split exactly, with no padding. */
export function evalBatchSize(testExamples: number, max: number): number {
  for (let b = Math.min(max, testExamples); b > 1; b--) if (testExamples % b === 0) return b;
  return 1;
}

export class NonFiniteLossError extends Error {
  override name = "NonFiniteLossError";
}

/** Evaluates argmax accuracy over a whole split with a forward-only graph (no dropout). */
export async function evaluate(
  graph: ModelGraph,
  cfg: RunConfig,
  split: MqarSplit = "test",
): Promise<{ accuracy: number; loss: number }> {
  const mqar = mqarConfigOf(cfg);
  const n = split === "test" ? cfg.testExamples : cfg.trainExamples;
  graph.xent.resetAccumulators();
  const indices = new Uint32Array(graph.batch);
  for (let start = 0; start < n; start += graph.batch) {
    for (let i = 0; i < graph.batch; i++) indices[i] = start + i;
    graph.upload(generateBatch(mqar, split, indices));
    graph.run();
  }
  const s = await graph.xent.readStats();
  return { accuracy: s.accCorrect / s.accCount, loss: s.accLossSum / s.accCount };
}

export async function trainRun(gpu: Gpu, cfg: RunConfig, hooks: TrainHooks = {}): Promise<TrainOutcome> {
  const startedAt = new Date();
  const t0 = performance.now();
  const release = gpu.allocator.scope();
  gpu.allocator.ledger.resetPeak();
  const baseline = gpu.allocator.current();
  try {
    return await trainInner(gpu, cfg, hooks, startedAt, t0, baseline, release);
  } catch (e) {
    release();
    throw e;
  }
}

async function trainInner(
  gpu: Gpu,
  cfg: RunConfig,
  hooks: TrainHooks,
  startedAt: Date,
  t0: number,
  baseline: ReturnType<Gpu["allocator"]["current"]>,
  release: () => void,
): Promise<TrainOutcome> {
  const modelCfg: ModelConfig = modelConfigOf(cfg);
  const mqar = mqarConfigOf(cfg);
  const params = new ParamStore(gpu, modelCfg);
  // Fixed parameters (the previous-token conv of fixPrevTokenConv) take their values and stay out of AdamW.
  const frozen = frozenParams(cfg) ?? new Map<string, Float32Array>();
  const initial = new Map(hooks.initialParams ?? initParams(modelCfg, cfg.seed));
  for (const [name, value] of frozen) initial.set(name, value);
  params.upload(initial);
  const arena = new Map<string, Tensor>();
  const micro = cfg.microBatchSize;
  const accum = cfg.batchSize / micro;
  const trainStep = createTrainStep(gpu, modelCfg, params, {
    microBatch: micro,
    accumulation: accum,
    labelsPerExample: cfg.numKvPairs,
    weightDecay: cfg.weightDecay,
    arena,
    frozen: new Set(frozen.keys()),
  });
  const trainGraph = trainStep.graph;
  const evalGraph = buildModelGraph(gpu, modelCfg, params, {
    training: false,
    batch: evalBatchSize(cfg.testExamples, micro),
    labelsPerExample: cfg.numKvPairs,
    arena,
  });

  // Parameters whose statistics the record keeps per epoch (the descriptors say which).
  const arch = architecture(modelCfg.mixer);
  const tracked = arch.layers.flatMap((layer, i) =>
    (layer.trackedParams?.(modelCfg) ?? []).map((name) => mixerPrefix(modelCfg, i) + name)
  );
  const paramStats: Record<string, { mean: number[]; std: number[] }> = {};
  const recordParamStats = async () => {
    for (const name of tracked) {
      const v = await readTensor(gpu, params.get(name).param);
      let sum = 0;
      for (const x of v) sum += x;
      const mean = sum / v.length;
      let sq = 0;
      for (const x of v) sq += (x - mean) ** 2;
      paramStats[name] ??= { mean: [], std: [] };
      paramStats[name].mean.push(mean);
      paramStats[name].std.push(Math.sqrt(sq / v.length));
    }
  };

  const stepsPerEpoch = Math.floor(cfg.trainExamples / cfg.batchSize);
  if (stepsPerEpoch < 1) {
    throw new Error(`trainExamples ${cfg.trainExamples} is smaller than one batch of ${cfg.batchSize}`);
  }
  const totalSteps = Math.min(stepsPerEpoch * cfg.epochs, cfg.maxSteps ?? Infinity);
  const accuracyPerEpoch: number[] = [];
  const trainLossPerEpoch: number[] = [];
  let step = 0;
  let trainSeconds = 0;
  let tokens = 0;
  let stopReason: string | null = null;
  let status: RunResult["status"] = "ok";
  const reportEvery = (hooks.reportEveryS ?? 2) * 1000;
  const indices = new Uint32Array(micro);

  outer: for (let epoch = 0; epoch < cfg.epochs; epoch++) {
    const lr = cosineLr(cfg.lr, epoch, cfg.epochs);
    const order = epochOrder(cfg.trainExamples, cfg.seed, epoch);
    const epochStart = performance.now();
    let lastReport = epochStart;
    let epochLossSum = 0, epochLossCount = 0;
    let windowTokens = 0;
    trainGraph.xent.resetAccumulators();
    const readLoss = async (): Promise<number> => {
      const s = await trainGraph.xent.readStats();
      trainGraph.xent.resetAccumulators();
      epochLossSum += s.accLossSum;
      epochLossCount += s.accCount;
      const mean = s.accCount > 0 ? s.accLossSum / s.accCount : NaN;
      if (s.accCount > 0 && !Number.isFinite(mean)) throw new NonFiniteLossError(`loss is ${mean} at step ${step}`);
      return mean;
    };
    let stepsThisEpoch = 0;
    for (let s = 0; s < stepsPerEpoch; s++) {
      if (step >= totalSteps) {
        stopReason = `max-steps ${totalSteps}`;
        break;
      }
      if (
        hooks.maxTrainSeconds !== undefined &&
        trainSeconds + (performance.now() - epochStart) / 1000 >= hooks.maxTrainSeconds
      ) {
        stopReason = timeBudgetStop(hooks.maxTrainSeconds);
        break;
      }
      step++;
      trainStep.run(step, lr, (m) => {
        const base = s * cfg.batchSize + m * micro;
        for (let i = 0; i < micro; i++) indices[i] = order[base + i];
        return generateBatch(mqar, "train", indices);
      }, cfg.seed);
      stepsThisEpoch++;
      tokens += cfg.batchSize * cfg.seqLen;
      windowTokens += cfg.batchSize * cfg.seqLen;
      const now = performance.now();
      if (now - lastReport >= reportEvery) {
        try {
          const loss = await readLoss();
          const t = performance.now();
          hooks.onProgress?.({
            epoch,
            epochs: cfg.epochs,
            step,
            stepsPerEpoch,
            totalSteps,
            lr,
            loss,
            tokensPerS: windowTokens / ((t - lastReport) / 1000),
            lastAccuracy: accuracyPerEpoch.at(-1) ?? null,
          });
          lastReport = t;
          windowTokens = 0;
        } catch (e) {
          if (!(e instanceof NonFiniteLossError)) throw e;
          status = "nan";
          stopReason = e.message;
          break outer;
        }
      }
    }
    try {
      await readLoss(); // also waits for the epoch's work, so the timing below is GPU time, not submit time
    } catch (e) {
      if (!(e instanceof NonFiniteLossError)) throw e;
      status = "nan";
      stopReason = e.message;
      break;
    }
    trainSeconds += (performance.now() - epochStart) / 1000;
    if (stepsThisEpoch === 0) break;
    const { accuracy } = await evaluate(evalGraph, cfg, "test");
    await recordParamStats();
    const trainLoss = epochLossCount > 0 ? epochLossSum / epochLossCount : NaN;
    accuracyPerEpoch.push(accuracy);
    trainLossPerEpoch.push(trainLoss);
    hooks.onEpoch?.({ epoch, accuracy, trainLoss, lr, seconds: (performance.now() - epochStart) / 1000 });
    if (accuracy > cfg.earlyStopAccuracy) {
      stopReason = `early-stop: accuracy ${accuracy.toFixed(4)} > ${cfg.earlyStopAccuracy} after epoch ${epoch + 1}`;
      break;
    }
    if (stopReason) break;
  }

  const peak = gpu.allocator.peak();
  const peakBytes = { ...peak };
  for (const k of Object.keys(peakBytes) as (keyof typeof peakBytes)[]) peakBytes[k] -= baseline[k];
  let best = -1, bestEpoch = -1;
  accuracyPerEpoch.forEach((a, i) => {
    if (a > best) [best, bestEpoch] = [a, i];
  });
  const result: RunResult = {
    schema: RESULT_SCHEMA_VERSION,
    runId: computeRunId(cfg),
    status,
    stopReason,
    config: cfg,
    params: params.count(),
    accuracyPerEpoch,
    trainLossPerEpoch,
    bestAccuracy: Math.max(0, best),
    bestEpoch,
    epochsRun: accuracyPerEpoch.length,
    steps: step,
    wallTimeS: (performance.now() - t0) / 1000,
    trainTokensPerS: trainSeconds > 0 ? tokens / trainSeconds : 0,
    peakBytes,
    stateFloats: stateSize(modelCfg),
    ...(tracked.length ? { paramStatsPerEpoch: paramStats } : {}),
    variants: { ...trainGraph.variants },
    adapter: gpu.info,
    env: await runEnvironment(),
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
  };
  if (!hooks.keepParams) {
    release();
    return { result, release: () => {} };
  }
  return { result, params, release };
}
