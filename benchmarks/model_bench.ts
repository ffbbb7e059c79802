/**
 * `deno bench -A benchmarks/model_bench.ts`: one training step (forward + backward + AdamW, a fresh MQAR batch
 * uploaded, then a wait for the GPU) and one forward-only step of every mixer at a small fixed shape:
 * d_model 64, L 64, batch 4, V 8192, N 16. Graphs are built (pipelines compiled) before timing. For sweeps over shapes,
 * memory and per-kernel times use `mqar bench`.
 */
import { acquireGpu } from "../src/gpu/device.ts";
import { makeModelConfig, MIXERS } from "../src/model/config.ts";
import { buildRig } from "../src/bench/throughput.ts";

const SHAPE = { dModel: 64, seqLen: 64, batch: 4, labelsPerExample: 16 };
const gpu = await acquireGpu();
const name = `d=${SHAPE.dModel} L=${SHAPE.seqLen} B=${SHAPE.batch}`;

for (const mixer of MIXERS) {
  const cfg = makeModelConfig({ mixer, dModel: SHAPE.dModel, seqLen: SHAPE.seqLen });
  const options = { batch: SHAPE.batch, labelsPerExample: SHAPE.labelsPerExample, seed: 42 };
  // Both rigs stay allocated for the whole run: a few MiB each at this shape.
  const train = buildRig(gpu, cfg, true, options);
  const infer = buildRig(gpu, cfg, false, options);
  Deno.bench({
    name: `${mixer} training step`,
    group: "training step",
    baseline: mixer === "attention",
    // CPU rasterisers take tens of ms per step: a fixed count keeps the file to a minute or so there.
    ...(gpu.info.software ? { n: 10, warmup: 2 } : {}),
    async fn() {
      train.step();
      await gpu.device.queue.onSubmittedWorkDone();
    },
  });
  Deno.bench({
    name: `${mixer} forward (inference)`,
    group: "forward",
    baseline: mixer === "attention",
    ...(gpu.info.software ? { n: 10, warmup: 2 } : {}),
    async fn() {
      infer.step();
      await gpu.device.queue.onSubmittedWorkDone();
    },
  });
}
console.log(`model_bench: ${gpu.info.description} (${gpu.info.backend}), ${name}`);
