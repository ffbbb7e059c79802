import { resolveRunConfig } from "../../src/train/config.ts";
import { evalBatchSize, evaluate, trainRun } from "../../src/train/trainer.ts";
import { initParams } from "../../src/model/init.ts";
import { buildModelGraph } from "../../src/model/graph.ts";
import { ParamStore } from "../../src/model/parameters.ts";
import { modelConfigOf } from "../../src/train/config.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

// A tiny MQAR that softmax attention learns in well under a minute on a 2-core CPU with a software adapter.
const TINY = {
  mixer: "conv_attention",
  dModel: 32,
  seqLen: 16,
  numKvPairs: 2,
  vocabSize: 64,
  trainExamples: 16000,
  testExamples: 256,
  batchSize: 32,
  lr: 1e-2,
  epochs: 3,
  earlyStopAccuracy: 0.97,
} as const;

Deno.test({
  name: "trainer: conv_attention learns a tiny MQAR to > 0.95 test accuracy (end to end)",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const before = gpu.allocator.liveCount();
    const { result } = await trainRun(gpu, resolveRunConfig(TINY));
    assertEquals(result.status, "ok");
    assert(result.bestAccuracy > 0.95, `best accuracy ${result.bestAccuracy} (per epoch ${result.accuracyPerEpoch})`);
    assert(result.trainLossPerEpoch[0] < Math.log(64), `first-epoch loss ${result.trainLossPerEpoch[0]}`);
    assert(result.peakBytes.params > 0 && result.peakBytes.activations > 0 && result.peakBytes.optimizer > 0);
    assertEquals(result.peakBytes.grads, result.peakBytes.params);
    assertEquals(result.peakBytes.optimizer, 2 * result.peakBytes.params);
    assertEquals(gpu.allocator.liveCount(), before, "a finished run frees every buffer it allocated");
  },
});

Deno.test({
  name: "trainer: a non-finite loss stops the run and reports the step",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const cfg = resolveRunConfig({ ...TINY, trainExamples: 64, epochs: 1 });
    const params = initParams(modelConfigOf(cfg), cfg.seed);
    params.get("backbone.ln_f.weight")![3] = NaN;
    const { result } = await trainRun(gpu, cfg, { initialParams: params });
    assertEquals(result.status, "nan");
    assert(/at step \d+/.test(result.stopReason ?? ""), `stop reason: ${result.stopReason}`);
  },
});

Deno.test({
  name: "trainer: kept parameters evaluate to the accuracy the run reported; eval batch divides the split",
  ...gpuTest,
  fn: async () => {
    assertEquals(evalBatchSize(3000, 512), 500);
    assertEquals(evalBatchSize(997, 64), 1);
    assertEquals(evalBatchSize(10, 64), 10);
    const gpu = await testGpu();
    const cfg = resolveRunConfig({ ...TINY, trainExamples: 640, testExamples: 96, epochs: 1 });
    const outcome = await trainRun(gpu, cfg, { keepParams: true });
    try {
      const weights = await outcome.params!.download();
      const store = new ParamStore(gpu, modelConfigOf(cfg), { optimizer: false });
      store.upload(weights);
      const graph = buildModelGraph(gpu, modelConfigOf(cfg), store, {
        training: false,
        batch: 32,
        labelsPerExample: cfg.numKvPairs,
      });
      const { accuracy } = await evaluate(graph, cfg, "test");
      assertEquals(accuracy, outcome.result.accuracyPerEpoch[0]);
    } finally {
      outcome.release();
    }
  },
});
