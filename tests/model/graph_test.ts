/**
 * The whole GPU model against the float64 whole-model reference, for every mixer: the training graph's loss and every
 * parameter gradient (dropout on, same seeds), and the eval graph's loss and correct count (dropout off).
 */
import { generateBatch, type MqarConfig } from "../../src/data/mqar.ts";
import { mixSeed, Rng } from "../../src/data/rng.ts";
import { readTensor } from "../../src/gpu/device.ts";
import { makeModelConfig, MIXERS } from "../../src/model/config.ts";
import { buildModelGraph } from "../../src/model/graph.ts";
import { initParams } from "../../src/model/init.ts";
import { ParamStore } from "../../src/model/parameters.ts";
import { modelBackward, modelForward } from "../../src/reference/model.ts";
import { assertEquals } from "../_helpers/assert.ts";
import { checkKernel } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

/**
 * A tiny shape, and one that spans several workgroups and tiles of every kernel: 132 token rows (matmul row blocks,
 * linear-attention row workgroups of 64), 144-wide projections (several 64-column tiles), L = 66 (attention blocks
 * past one tile), 8 labelled positions per example.
 */
const SHAPES = [
  { D: 24, L: 8, V: 64, B: 2, N: 2 },
  { D: 48, L: 66, V: 160, B: 2, N: 8 },
] as const;
type Shape = { D: number; L: number; V: number; B: number; N: number };
const mqarOf = (s: Shape): MqarConfig => ({
  vocabSize: s.V,
  seqLen: s.L,
  numKvPairs: s.N,
  powerA: 0.01,
  randomNonQueries: false,
  dataSeed: 42,
  trainExamples: 16,
  testExamples: 4,
});
const STEP_SEED = 2024;
// fp32 through ~20 kernels vs float64: gradients of small magnitude need an absolute floor.
const TOLERANCE = { rtol: 2e-3, atol: 2e-5 };

// Mamba-2 splits d_inner into heads of 64 only from d = 32: a multi-head case (B and C broadcast to 2 heads).
// The delta rule's chunked form (the hardware default) forced on the software adapter: 66 tokens = 4 chunks + 2.
const CHUNKED = { delta_rule: "chunked", ssd: "chunked" } as const;
const CASES: [Shape, typeof MIXERS[number], Record<string, string>?][] = [
  ...SHAPES.flatMap((s) => MIXERS.map((m): [Shape, typeof MIXERS[number]] => [s, m])),
  [{ D: 64, L: 10, V: 64, B: 2, N: 2 }, "mamba2"],
  [SHAPES[1], "deltanet", CHUNKED],
  [SHAPES[1], "gated_deltanet", CHUNKED],
  [{ D: 64, L: 66, V: 96, B: 2, N: 4 }, "mamba2", CHUNKED],
];

for (const [shape, mixer, variants] of CASES) {
  {
    const { D, L, V, B, N } = shape;
    const MQAR = mqarOf(shape);
    Deno.test({
      name: `model graph ${mixer}${
        variants ? " (chunked)" : ""
      } d=${D} L=${L}: training loss and all gradients, eval loss and accuracy match float64`,
      ...gpuTest,
      fn: async () => {
        const gpu = await testGpu();
        const release = gpu.allocator.scope();
        try {
          // sliding_window with a window well inside L (its default, 256, would be plain causal attention here).
          const window = mixer === "sliding_window" ? Math.max(1, Math.floor(L / 3)) : undefined;
          const cfg = makeModelConfig({ mixer, dModel: D, seqLen: L, vocabSize: V, window });
          // Init plus noise, so no gradient is trivially zero or symmetric.
          const values = initParams(cfg, 7);
          const rng = new Rng(99);
          for (const v of values.values()) for (let i = 0; i < v.length; i++) v[i] += 0.2 * rng.normal();
          const store = new ParamStore(gpu, cfg, { optimizer: false });
          store.upload(values);
          const batch = generateBatch(MQAR, "train", [3, 5]);
          const train = buildModelGraph(gpu, cfg, store, { training: true, batch: B, labelsPerExample: N, variants });
          const evalGraph = buildModelGraph(gpu, cfg, store, {
            training: false,
            batch: B,
            labelsPerExample: N,
            variants,
          });
          if (variants) {
            assertEquals(
              train.variants["layers.1.mixer." + (mixer === "mamba2" ? "ssd" : "delta_rule")].split("-")[0],
              "chunked",
            );
          }

          const seeds = { embedding: mixSeed(STEP_SEED, 0), attention: [mixSeed(STEP_SEED, 1), mixSeed(STEP_SEED, 2)] };
          await checkKernel({
            name: `${mixer} training step`,
            tolerance: TOLERANCE,
            reference: () => {
              const fwd = modelForward(cfg, values, batch, { training: true, dropoutSeeds: seeds });
              const grads = modelBackward(fwd.cache);
              return { loss: [fwd.loss], ...Object.fromEntries(grads) };
            },
            gpu: async () => {
              train.upload(batch);
              train.setSeed(STEP_SEED);
              train.xent.resetAccumulators();
              train.run();
              const stats = await train.xent.readStats();
              const out: Record<string, ArrayLike<number>> = { loss: [stats.meanLoss] };
              for (const slot of store.slots) out[slot.spec.name] = await readTensor(gpu, slot.grad);
              return out;
            },
          });

          const ref = modelForward(cfg, values, batch, { training: false });
          evalGraph.upload(batch);
          evalGraph.xent.resetAccumulators();
          evalGraph.run();
          const stats = await evalGraph.xent.readStats();
          assertEquals(stats.correct, ref.correct);
          await checkKernel({
            name: `${mixer} eval`,
            tolerance: TOLERANCE,
            reference: () => ({ loss: [ref.loss], logits: ref.logits }),
            gpu: async () => ({ loss: [stats.meanLoss], logits: await readTensor(gpu, evalGraph.xent.logits) }),
          });
        } finally {
          release();
        }
      },
    });
  }
}
