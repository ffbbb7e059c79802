/**
 * The §5.5 analysis: attention matrices extracted from the GPU graph's activations equal the ones of the float64
 * reference; the previous-token conv stays fixed through training; `mqar analyze` end to end and its refusals.
 */
import { capture } from "../_helpers/console.ts";
import { main } from "../../main.ts";
import { assert, assertEquals, assertThrows } from "../_helpers/assert.ts";
import { generateBatch, type MqarConfig } from "../../src/data/mqar.ts";
import { readTensor } from "../../src/gpu/device.ts";
import type { Tensor } from "../../src/gpu/allocator.ts";
import { makeModelConfig } from "../../src/model/config.ts";
import { buildModelGraph } from "../../src/model/graph.ts";
import { initParams } from "../../src/model/init.ts";
import { ParamStore } from "../../src/model/parameters.ts";
import { Rng } from "../../src/data/rng.ts";
import { modelForward } from "../../src/reference/model.ts";
import { architecture } from "../../src/mixers/registry.ts";
import { resolveRunConfig } from "../../src/train/config.ts";
import { trainRun } from "../../src/train/trainer.ts";
import { toStateDict, writeSafetensors } from "../../src/train/safetensors.ts";
import { checkKernel } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

const MQAR: MqarConfig = {
  vocabSize: 96,
  seqLen: 40,
  numKvPairs: 6,
  powerA: 0.01,
  randomNonQueries: false,
  dataSeed: 42,
  trainExamples: 64,
  testExamples: 32,
};

for (const mixer of ["conv_attention", "based", "rebased", "rebased_x2"] as const) {
  Deno.test({
    name: `attention map ${mixer}: extracted from GPU activations equals the float64 reference; rows sum to 1`,
    ...gpuTest,
    fn: async () => {
      const gpu = await testGpu();
      const release = gpu.allocator.scope();
      try {
        const cfg = makeModelConfig({ mixer, dModel: 48, seqLen: MQAR.seqLen, vocabSize: MQAR.vocabSize });
        const values = initParams(cfg, 11);
        const rng = new Rng(3);
        for (const v of values.values()) for (let i = 0; i < v.length; i++) v[i] += 0.2 * rng.normal();
        const store = new ParamStore(gpu, cfg, { optimizer: false });
        store.upload(values);
        const arena = new Map<string, Tensor>();
        const graph = buildModelGraph(gpu, cfg, store, { training: false, batch: 2, labelsPerExample: 6, arena });
        const batch = generateBatch(MQAR, "test", [0, 1]);
        graph.upload(batch);
        graph.run();
        const map = architecture(mixer).layers[1].attentionMap!;
        const gpuActs = new Map<string, Float32Array>();
        for (const n of map.activations(cfg)) gpuActs.set(n, await readTensor(gpu, arena.get(`layers.1.mixer.${n}`)!));
        const ref = modelForward(cfg, values, batch, { training: false }).cache.activations;
        const L = MQAR.seqLen;
        for (const b of [0, 1]) {
          const got = map.matrix(cfg, (n) => gpuActs.get(n)!, b);
          const want = map.matrix(cfg, (n) => ref[`layers.1.mixer.${n}`], b);
          assertEquals(got.length, map.heads(cfg));
          await checkKernel({
            name: `${mixer} attention map example ${b}`,
            tolerance: { rtol: 2e-3, atol: 1e-5 },
            reference: () => Object.fromEntries(want.map((m, h) => [`head${h}`, m])),
            gpu: () => Object.fromEntries(got.map((m, h) => [`head${h}`, m])),
          });
          for (const m of want) {
            for (let i = 0; i < L; i++) {
              let row = 0;
              for (let j = 0; j < L; j++) {
                if (j > i) assertEquals(m[i * L + j], 0);
                row += m[i * L + j];
              }
              assert(Math.abs(row - 1) < 1e-6, `row ${i} sums to ${row}`); // the denominator eps 1e-12
            }
          }
        }
      } finally {
        release();
      }
    },
  });
}

Deno.test({
  name: "fixPrevTokenConv: layer 0's conv copies the previous token and stays frozen; refused without such a conv",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const cfg = resolveRunConfig({
      mixer: "based",
      dModel: 24,
      seqLen: 16,
      numKvPairs: 2,
      vocabSize: 64,
      trainExamples: 128,
      testExamples: 32,
      batchSize: 32,
      epochs: 2,
      lr: 1e-2,
      fixPrevTokenConv: true,
    });
    const outcome = await trainRun(gpu, cfg, { keepParams: true });
    try {
      const p = await outcome.params!.download();
      const w = p.get("backbone.layers.0.sequence_mixer.mixer.conv.conv.weight")!;
      assertEquals([...w.slice(0, 6)], [0, 1, 0, 0, 1, 0]);
      assert(w.every((v, i) => v === (i % 3 === 1 ? 1 : 0)), "weight unchanged by training and weight decay");
      assert(p.get("backbone.layers.0.sequence_mixer.mixer.conv.conv.bias")!.every((v) => v === 0));
      const init = initParams(makeModelConfig({ mixer: "based", dModel: 24, seqLen: 16, vocabSize: 64 }), cfg.seed);
      const proj = "backbone.layers.0.sequence_mixer.mixer.projection.weight";
      assert(p.get(proj)!.some((v, i) => v !== init.get(proj)![i]), "the rest of the model trains");
    } finally {
      outcome.release();
    }
    for (const mixer of ["attention", "rwkv"]) {
      assertThrows(
        () => resolveRunConfig({ mixer, fixPrevTokenConv: true }),
        /fixPrevTokenConv: \w+ has no short convolution in layer 0 to fix; mixers with one: conv_attention, based/,
      );
    }
  },
});

Deno.test({
  name: "mqar analyze: IoU, figures and JSON for a checkpoint; one-line refusals",
  ...gpuTest,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqar-analyze-" });
    try {
      const save = async (mixer: string) => {
        const run = resolveRunConfig({
          mixer,
          dModel: 24,
          seqLen: 32,
          numKvPairs: 4,
          vocabSize: 64,
          trainExamples: 64,
          testExamples: 16,
          batchSize: 16,
        });
        const cfg = makeModelConfig({ mixer: run.mixer as "based", dModel: 24, seqLen: 32, vocabSize: 64 });
        const { tensors, metadata } = toStateDict(cfg, initParams(cfg, 1));
        const path = `${dir}/${mixer}.safetensors`;
        await writeSafetensors(path, tensors, { ...metadata, config: JSON.stringify(run) });
        return path;
      };
      const rebasedCkpt = await save("rebased"), rwkvCkpt = await save("rwkv");
      const r = await capture(() =>
        main(["analyze", "--checkpoint", rebasedCkpt, "--examples", "16", "--out", `${dir}/a`, "--json"])
      );
      assertEquals(r.code, 0, r.err);
      const s = JSON.parse(r.out);
      assertEquals([s.mixer, s.examples], ["rebased", 16]);
      for (const v of ["soft-value", "soft-key", "top1-value", "top1-key", "soft-value-best-head"]) {
        assert(s.iouVariants[v] >= 0 && s.iouVariants[v] <= 1, `${v}: ${s.iouVariants[v]}`);
      }
      const files = [...Deno.readDirSync(`${dir}/a`)].map((e) => e.name).sort();
      assertEquals(files, ["attention-heads.svg", "attention-mean.svg", "iou.json", "iou.md", "last-query.svg"]);
      const heads = await Deno.readTextFile(`${dir}/a/attention-heads.svg`);
      assertEquals(heads.match(/>head \d+</g)?.length, 12);

      const rwkv = await capture(() => main(["analyze", "--checkpoint", rwkvCkpt, "--out", `${dir}/b`]));
      assertEquals(rwkv.code, 2);
      assert(/rwkv's layer 1 \(RWKVTimeMixer\) has no attention matrix; mixers with one: attention/.test(rwkv.err));
      const many = await capture(() =>
        main(["analyze", "--checkpoint", `${dir}/rebased.safetensors`, "--examples", "99", "--out", `${dir}/c`])
      );
      assertEquals(many.code, 2);
      assert(many.err.includes("--examples: got 99, at most the test split's 16"), many.err);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
