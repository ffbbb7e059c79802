/** `mqar data` → `mqar eval --data` gives what `mqar eval` gives on the same split and weights. */
import { capture } from "../_helpers/console.ts";
import { main } from "../../main.ts";
import { assert, assertAlmostEquals, assertEquals } from "../_helpers/assert.ts";
import { makeModelConfig } from "../../src/model/config.ts";
import { initParams } from "../../src/model/init.ts";
import { Rng } from "../../src/data/rng.ts";
import { toStateDict, writeSafetensors } from "../../src/train/safetensors.ts";
import { resolveRunConfig } from "../../src/train/config.ts";
import { gpuTest } from "../_helpers/gpu.ts";

Deno.test({
  name: "mqar data + eval --data: the same accuracy and loss as eval on the split; bad lines are one-line errors",
  ...gpuTest,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "mqar-data-" });
    try {
      const run = resolveRunConfig({
        mixer: "rebased",
        dModel: 24,
        seqLen: 16,
        numKvPairs: 2,
        vocabSize: 64,
        trainExamples: 64,
        testExamples: 48,
        batchSize: 16,
      });
      const cfg = makeModelConfig({ mixer: "rebased", dModel: 24, seqLen: 16, vocabSize: 64 });
      const values = initParams(cfg, 3);
      const rng = new Rng(5);
      for (const v of values.values()) for (let i = 0; i < v.length; i++) v[i] += 0.3 * rng.normal();
      const { tensors, metadata } = toStateDict(cfg, values);
      const ckpt = `${dir}/m.safetensors`;
      await writeSafetensors(ckpt, tensors, { ...metadata, config: JSON.stringify(run) });

      const runFile = await json(dir, run);
      const data = await capture(() => main(["data", "--config", runFile, "--out", `${dir}/test.jsonl`]));
      assertEquals(data.code, 0, data.err);
      assertEquals((await Deno.readTextFile(`${dir}/test.jsonl`)).trim().split("\n").length, 48);
      const viaSplit = await capture(() => main(["eval", "--checkpoint", ckpt, "--json"]));
      const viaData = await capture(() =>
        main(["eval", "--checkpoint", ckpt, "--data", `${dir}/test.jsonl`, "--json"])
      );
      assertEquals([viaSplit.code, viaData.code], [0, 0], viaSplit.err + viaData.err);
      const a = JSON.parse(viaSplit.out), b = JSON.parse(viaData.out);
      assertEquals(b.examples, 48);
      assertEquals(b.labels, 96);
      assertEquals(b.accuracy, a.accuracy);
      assertAlmostEquals(b.loss, a.loss, 1e-5);
      assert(a.loss > 0);

      // A data file written for another L, a line with a token outside the vocabulary: one line each, exit 2.
      await Deno.writeTextFile(`${dir}/bad.jsonl`, '{"input_ids": [1, 2], "labels": [5, -100]}\n');
      const bad = await capture(() => main(["eval", "--checkpoint", ckpt, "--data", `${dir}/bad.jsonl`]));
      assertEquals(bad.code, 2);
      assertEquals(bad.err.trim().split("\n").length, 1, bad.err);
      assert(bad.err.includes("bad.jsonl:1: input_ids: 2 tokens, expected seqLen = 16"), bad.err);
      const both = await capture(() => main(["eval", "--checkpoint", ckpt, "--data", "x", "--split", "test"]));
      assertEquals(both.code, 2);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

async function json(dir: string, value: unknown): Promise<string> {
  const path = `${dir}/run.json`;
  await Deno.writeTextFile(path, JSON.stringify(value));
  return path;
}
