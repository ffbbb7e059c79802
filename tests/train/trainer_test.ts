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
    // The record says the state size: BaseConv's 2 cached inputs of d = 32, the KV cache of L = 16 tokens.
    assertEquals(result.stateFloats, { perLayer: [2 * 32, 2 * 32 * 16], total: 2 * 32 + 2 * 32 * 16 });
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

Deno.test({
  name: "trainer: ReBased records its ln_q/ln_k γ and β mean and std after every epoch; records list the variants",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const cfg = resolveRunConfig({
      mixer: "rebased",
      dModel: 24,
      seqLen: 16,
      numKvPairs: 2,
      vocabSize: 64,
      trainExamples: 128,
      testExamples: 32,
      batchSize: 32,
      epochs: 2,
    });
    const { result } = await trainRun(gpu, cfg);
    const stats = result.paramStatsPerEpoch!;
    const prefix = "backbone.layers.1.sequence_mixer.mixer.";
    assertEquals(
      Object.keys(stats).sort(),
      ["ln_k.bias", "ln_k.weight", "ln_q.bias", "ln_q.weight"].map((n) => prefix + n),
    );
    for (const s of Object.values(stats)) assertEquals([s.mean.length, s.std.length], [2, 2]);
    // γ starts at 1, β at 0; after a few small AdamW steps they have moved only a little.
    assert(Math.abs(stats[`${prefix}ln_q.weight`].mean[0] - 1) < 0.05, String(stats[`${prefix}ln_q.weight`].mean));
    assert(Math.abs(stats[`${prefix}ln_k.bias`].mean[1]) < 0.05);
    assert(stats[`${prefix}ln_q.weight`].std[1] > 0, "the features moved apart");
    assertEquals(result.variants?.matmul, gpu.info.software ? "blocked" : "tiled");
    assert(result.variants?.["layers.1.mixer.attn"], JSON.stringify(result.variants));
    const based = await trainRun(gpu, { ...cfg, mixer: "based" });
    assertEquals(based.result.paramStatsPerEpoch, undefined);
  },
});
