/**
 * The bench on the GPU at tiny shapes: measured peak bytes equal the allocator's sums and the analytic buffers exactly,
 * the kernel profile covers every dispatch, and a 1-mixer bench run writes well-formed JSON/CSV/MD/JSONL.
 */
import { join } from "node:path";
import { makeModelConfig, MIXERS } from "../../src/model/config.ts";
import { stateSize } from "../../src/model/state_size.ts";
import type { Gpu } from "../../src/gpu/device.ts";
import { analyticBuffers, analyticFlops } from "../../src/bench/analytic.ts";
import { ParamStore } from "../../src/model/parameters.ts";
import { buildModelGraph } from "../../src/model/graph.ts";
import { kernelGroup, profileDispatches } from "../../src/bench/kernel_timing.ts";
import { BENCH_FILES, writeBenchOutputs } from "../../src/bench/output.ts";
import {
  BENCH_DEFAULTS,
  BENCH_SCHEMA,
  type BenchReport,
  type BenchSettings,
  buildRig,
  countStepTraffic,
  runBench,
} from "../../src/bench/throughput.ts";
import { chunkedFromSeqLen } from "../../src/ops/linear_attention.ts";
import { parseResultLine } from "../../src/sweep/results_file.ts";
import { throughputRows } from "../../src/report/report.ts";
import { assert, assertAlmostEquals, assertEquals } from "../_helpers/assert.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

const TINY: BenchSettings = {
  ...BENCH_DEFAULTS,
  mixers: ["based"],
  dModels: [16],
  seqLens: [16],
  batchSize: 2,
  steps: 2,
  repeats: 1,
  warmup: 1,
  vocabSize: 64,
  profilePasses: 1,
};

Deno.test({
  name: "every mixer's rig allocates exactly the analytic params/grads/optimizer/activations bytes",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    for (const mixer of MIXERS) {
      const cfg = makeModelConfig({ mixer, dModel: 24, seqLen: 8, vocabSize: 32 });
      for (const training of [true, false]) {
        const release = gpu.allocator.scope();
        const before = gpu.allocator.current();
        try {
          buildRig(gpu, cfg, training, { batch: 3, labelsPerExample: 2, seed: 1 });
          const now = gpu.allocator.current();
          const expected = analyticBuffers(cfg, { batch: 3, labelsPerExample: 2, training });
          for (const k of ["params", "grads", "optimizer", "activations"] as const) {
            assertEquals(now[k] - before[k], expected.byCategory[k], `${mixer} training=${training} ${k}`);
          }
        } finally {
          release();
        }
      }
    }
  },
});

Deno.test({
  name: "per-step traffic: every dispatch of the graph and AdamW, its submits and uploads, the same on every step",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const cfg = makeModelConfig({ mixer: "rebased", dModel: 16, seqLen: 16, vocabSize: 64 });
    const uploads = { train: 0 };
    for (const training of [true, false]) {
      const release = gpu.allocator.scope();
      try {
        const rig = buildRig(gpu, cfg, training, { batch: 2, labelsPerExample: 4, seed: 1 });
        const first = countStepTraffic(gpu, () => rig.step());
        const second = countStepTraffic(gpu, () => rig.step());
        assertEquals(second, first, `training=${training}: deterministic`);
        if (training) uploads.train = first.uploadBytes;
        else assert(first.uploadBytes < uploads.train, `inference ${first.uploadBytes} B, training ${uploads.train} B`);
        // A Dispatch may encode several kernels: count what the phases encode into a pass that records nothing.
        let kernels = 0;
        const pass = {
          setPipeline() {},
          setBindGroup() {},
          dispatchWorkgroups() {
            kernels++;
          },
        } as unknown as GPUComputePassEncoder;
        for (const phase of rig.phases()) for (const d of phase.dispatches) d.encode(pass);
        assertEquals(first.dispatches, kernels, `training=${training}: dispatches`);
        assertEquals(first.submits, training ? 2 : 1, `training=${training}: submits`);
        // At least the batch's tokens (u32 each) go up every step, and training adds its labels and seeds.
        assert(first.uploadBytes >= 2 * 16 * 4, `training=${training}: ${first.uploadBytes} bytes`);
        // The queue's own methods are back.
        assert(!Object.hasOwn(gpu.device.queue, "writeBuffer") && !Object.hasOwn(gpu.device.queue, "submit"));
        await gpu.device.queue.onSubmittedWorkDone();
      } finally {
        release();
      }
    }
  },
});

async function tinyReport(gpu: Gpu): Promise<BenchReport> {
  return await runBench(gpu, TINY);
}

Deno.test({
  name: "tiny bench: peak bytes are the allocator's exact sums; rates, FLOPs and per-token figures are consistent",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const liveBefore = gpu.allocator.liveCount();
    const report = await tinyReport(gpu);
    assertEquals(gpu.allocator.liveCount(), liveBefore, "the bench frees every buffer it allocated");
    assertEquals(report.schema, BENCH_SCHEMA);
    assertEquals(report.cases.length, 1);
    const c = report.cases[0];
    assertEquals([c.id, c.status, c.batch, c.numKvPairs, c.note], ["based/d16/L16", "ok", 2, 4, null]);
    const cfg = makeModelConfig({ mixer: "based", dModel: 16, seqLen: 16, vocabSize: 64 });
    for (const [phase, training] of [["train", true], ["inference", false]] as const) {
      const peak = c.peakBytes[phase]!;
      const analytic = analyticBuffers(cfg, { batch: 2, labelsPerExample: 4, training });
      for (const k of ["params", "grads", "optimizer", "activations"] as const) {
        assertEquals(peak[k], analytic.byCategory[k], `${phase} ${k}`);
      }
      // Nothing is freed inside a case, so the peak of the sum is the sum of the category peaks.
      assertEquals(peak.total, peak.params + peak.grads + peak.optimizer + peak.activations + peak.workspace);
      assert(peak.workspace > 0);
      for (const k of Object.keys(peak) as (keyof typeof peak)[]) {
        assertEquals(c.peakBytesPerToken[phase]![k], peak[k] / 32);
      }
    }
    assertEquals(
      c.params,
      analyticBuffers(cfg, { batch: 1, labelsPerExample: 1, training: false }).buffers
        .filter((b) => b.category === "params").reduce((s, b) => s + b.elements, 0),
    );
    // The state size params reports (Based: φ(k)ᵀ[v 1] per head, plus BaseConv's cached inputs).
    assertEquals(c.stateFloats, stateSize(cfg).total);
    assert(c.stateFloats! > 0);
    const t = c.train!;
    assertEquals(t.repeats.length, 1);
    assert(t.tokensPerS > 0 && t.min <= t.tokensPerS && t.tokensPerS <= t.max);
    assertAlmostEquals(t.secondsPerStep, 32 / t.tokensPerS, 1e-9);
    assertAlmostEquals(c.achievedGflops.train!, (t.tokensPerS * c.analytic.flopsPerToken.train) / 1e9, 1e-9);
    assert(c.inference!.tokensPerS > 0);
    assert(t.perStep.dispatches > c.inference!.perStep.dispatches && c.inference!.perStep.dispatches > 0);
    assert(c.trainLoss !== null && c.trainLoss > 0 && c.trainLoss < 10, `loss ${c.trainLoss}`);
    assert(c.referenceGflops !== null && c.referenceGflops > 0);
    if (gpu.features.has("timestamp-query")) {
      const k = c.kernels!;
      assert(k.available);
      assertAlmostEquals(k.kernels.reduce((s, x) => s + x.ms, 0), k.totalMs, 1e-9);
      assertAlmostEquals(k.kernels.reduce((s, x) => s + x.share, 0), 1, 1e-9);
      assertEquals(new Set(k.kernels.map((x) => x.phase)), new Set(["forward", "backward", "optimizer"]));
    }
  },
});

Deno.test({
  name: "kernel profile: one entry per dispatch label and phase, calls add up to the dispatch count",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const release = gpu.allocator.scope();
    try {
      const cfg = makeModelConfig({ mixer: "conv_attention", dModel: 8, seqLen: 8, vocabSize: 32 });
      const rig = buildRig(gpu, cfg, true, { batch: 1, labelsPerExample: 2, seed: 3 });
      const phases = rig.phases();
      const n = phases.reduce((s, p) => s + p.dispatches.length, 0);
      const fake = { ...gpu, features: new Set<never>() } as Gpu;
      const off = await profileDispatches(fake, phases);
      assertEquals([off.available, off.kernels.length], [false, 0]);
      assert(off.note!.includes("timestamp"));
      if (!gpu.features.has("timestamp-query")) return;
      const p = await profileDispatches(gpu, phases, { passes: 2, beforePass: () => rig.prepare() });
      assertEquals(p.passes, 2);
      assertEquals(p.kernels.reduce((s, k) => s + k.calls, 0), n);
      assertEquals(p.groups.reduce((s, g) => s + g.calls, 0), n);
      assert(p.kernels.every((k, i) => i === 0 || p.kernels[i - 1].ms >= k.ms), "sorted slowest first");
      assert(p.groups.some((g) => g.group === "adamw" && g.calls === rig.adamw!.dispatches.length));
    } finally {
      release();
    }
  },
});

Deno.test({
  name: "the bench counts linear-attention FLOPs in the form the model runs on this adapter",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const cfg = (mixer: "based" | "rebased" | "conv_attention", seqLen: number) =>
      makeModelConfig({ mixer, dModel: 64, seqLen, vocabSize: 8192 });
    const form = (c: ReturnType<typeof cfg>) =>
      analyticFlops(c, { batch: 1, labelsPerExample: 1, adapter: gpu }).terms.find((t) => t.kind === "linear_attention")
        ?.form ?? null;
    assertEquals(form(cfg("conv_attention", 4096)), null);
    assertEquals(form(cfg("based", 64)), "parallel");
    // d = 64: dv = 5 value columns per head.
    const from = chunkedFromSeqLen(gpu, 5);
    const L = Number.isFinite(from) ? from : 4096;
    assertEquals(form(cfg("rebased", L)), Number.isFinite(from) ? "chunked" : "parallel");
    // The graph runs what the cost model counts, and says so.
    const release = gpu.allocator.scope();
    try {
      const c = cfg("rebased", L);
      const params = new ParamStore(gpu, c, { optimizer: false });
      const graph = buildModelGraph(gpu, c, params, { training: false, batch: 1, labelsPerExample: 1 });
      assertEquals(graph.variants["layers.1.mixer.attn"], Number.isFinite(from) ? "chunked" : "rows");
    } finally {
      release();
    }
  },
});

Deno.test("kernelGroup folds layer indices, LM-head chunks and AdamW's per-tensor labels", () => {
  assertEquals(kernelGroup("layers.1.mixer.attn.mat_pv"), "layers.*.mixer.attn.mat_pv");
  assertEquals(kernelGroup("lm_head.logits.3"), "lm_head.logits");
  assertEquals(kernelGroup("layers.0.norm1.bwd"), "layers.*.norm1.bwd");
  assertEquals(kernelGroup("adamw.backbone.layers.0.norm1.weight"), "adamw");
  assertEquals(kernelGroup("lm_head.logits"), "lm_head.logits");
});

Deno.test({
  name: "tiny bench end to end: bench.json, bench.csv, bench.md, kernels.csv and report-readable records",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const report = await tinyReport(gpu);
    const dir = await Deno.makeTempDir({ prefix: "mqar-bench-test-" });
    try {
      const paths = await writeBenchOutputs(dir, report);
      assertEquals(paths.map((p) => p.slice(dir.length + 1)).sort(), Object.values(BENCH_FILES).sort());
      const json = JSON.parse(await Deno.readTextFile(join(dir, BENCH_FILES.json)));
      assertEquals(json.schema, BENCH_SCHEMA);
      assertEquals(json.cases[0].peakBytes, report.cases[0].peakBytes);
      const csv = (await Deno.readTextFile(join(dir, BENCH_FILES.csv))).trimEnd().split("\n");
      assertEquals(csv.length, 2);
      const header = csv[0].split(","), row = csv[1].split(",");
      assertEquals(row.length, header.length);
      const cell = (name: string) => row[header.indexOf(name)];
      assertEquals(cell("mixer"), "based");
      assertEquals(Number(cell("peak_bytes_train_total")), report.cases[0].peakBytes.train!.total);
      assertEquals(Number(cell("train_tokens_per_s")), report.cases[0].train!.tokensPerS);
      const md = await Deno.readTextFile(join(dir, BENCH_FILES.markdown));
      assert(md.includes("| mixer | d | L | B | state floats | train tok/s |"), md);
      assertEquals(Number(cell("state_floats")), report.cases[0].stateFloats);
      assert(md.includes("| based | 16 | 16 | 2 |"), md);
      const kernels = (await Deno.readTextFile(join(dir, BENCH_FILES.kernels))).trimEnd().split("\n");
      assertEquals(kernels[0], "mixer,d_model,seq_len,batch,rank,label,group,phase,calls,ms,share");
      if (gpu.features.has("timestamp-query")) assert(kernels.length > 10);
      const lines = (await Deno.readTextFile(join(dir, BENCH_FILES.results))).trimEnd().split("\n");
      assertEquals(lines.length, 1);
      const parsed = parseResultLine(lines[0]);
      assert(parsed.ok, parsed.ok ? "" : parsed.reason);
      const rows = throughputRows([parsed.result]);
      assertEquals(rows.length, 1);
      assertEquals(rows[0].tokensPerSMean, report.cases[0].train!.tokensPerS);
      assertEquals(rows[0].peakBytesMax.total, report.cases[0].peakBytes.train!.total);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a case whose buffers do not fit even at batch 1 is skipped with a note, not run",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    // A per-buffer limit below one [1, 1, 32, 32] probability matrix (4 KiB).
    const small = { ...gpu, limits: { ...gpu.limits, maxStorageBufferBindingSize: 4000 } } as Gpu;
    const report = await runBench(small, { ...TINY, mixers: ["attention"], seqLens: [32], inference: false });
    const c = report.cases[0];
    assertEquals([c.status, c.batch, c.train], ["skipped", 0, null]);
    assert(c.note!.startsWith("skipped: even at batch 1"), c.note!);
  },
});
