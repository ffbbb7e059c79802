import { Rng } from "../../src/data/rng.ts";
import { readTensor, withGpuErrors, writeTensor } from "../../src/gpu/device.ts";
import {
  buildEmbeddingIndex,
  createEmbeddingBackward,
  createEmbeddingForward,
  embeddingIndexLayout,
} from "../../src/ops/embedding.ts";
import { submit } from "../../src/ops/_dispatch.ts";
import { embeddingBackwardRef, embeddingForwardRef } from "../../src/reference/embedding.ts";
import { assert, assertEquals, assertThrows } from "../_helpers/assert.ts";
import { checkFiniteDifferences, checkKernel, dot, f32, f64, randn } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

/** MQAR-like ids: about half the positions hold the filler token 0, the rest are spread over the vocabulary. */
function randomIds(n: number, vocab: number, seed: number): Uint32Array {
  const rng = new Rng(seed, 3);
  return Uint32Array.from({ length: n }, () => (rng.uniform() < 0.5 ? 0 : rng.int(0, vocab - 1)));
}

Deno.test("embedding index: structure on a small example", () => {
  const ids = [3, 1, 3, 0, 3, 3, 1];
  const layout = embeddingIndexLayout(ids.length, 5, 2);
  const index = buildEmbeddingIndex(ids, layout);
  const U = index[0], C = index[1];
  assertEquals(U, 3);
  assertEquals(Array.from(index.subarray(layout.offTokens, layout.offTokens + U)), [0, 1, 3]);
  // token 0: [3]; token 1: [1, 6]; token 3: [0, 2] [4, 5] (chunk 2)
  assertEquals(C, 4);
  assertEquals(Array.from(index.subarray(layout.offTokenChunks, layout.offTokenChunks + U + 1)), [0, 1, 2, 4]);
  assertEquals(Array.from(index.subarray(layout.offChunkStarts, layout.offChunkStarts + C + 1)), [0, 1, 3, 5, 7]);
  assertEquals(Array.from(index.subarray(layout.offPositions, layout.offPositions + ids.length)), [
    3,
    1,
    6,
    0,
    2,
    4,
    5,
  ]);
  assertThrows(() => buildEmbeddingIndex([0, 5, 1, 1, 1, 1, 1], layout), /outside/);
  assertThrows(() => buildEmbeddingIndex([0, 1], layout), /ids/);
});

Deno.test("embedding index: random ids cover every position once, sorted, within the worst-case layout", () => {
  for (const [n, vocab, chunk] of [[1, 1, 64], [40, 7, 3], [500, 8192, 4], [2048, 50, 64], [300, 300, 1]]) {
    const ids = randomIds(n, vocab, n + vocab);
    const layout = embeddingIndexLayout(n, vocab, chunk);
    const index = buildEmbeddingIndex(ids, layout);
    const U = index[0], C = index[1];
    assert(U <= layout.maxUnique && C <= layout.maxChunks, `U=${U} C=${C} exceed the layout`);
    const seen = new Uint8Array(n);
    let previousToken = -1;
    for (let u = 0; u < U; u++) {
      const token = index[layout.offTokens + u];
      assert(token > previousToken, "tokens ascending and unique");
      previousToken = token;
      let previousPosition = -1;
      for (let k = index[layout.offTokenChunks + u]; k < index[layout.offTokenChunks + u + 1]; k++) {
        const s = index[layout.offChunkStarts + k], e = index[layout.offChunkStarts + k + 1];
        assert(e > s && e - s <= chunk, `chunk ${k} has ${e - s} positions`);
        for (let j = s; j < e; j++) {
          const t = index[layout.offPositions + j];
          assertEquals(ids[t], token);
          assert(t > previousPosition, "positions ascending within a token");
          previousPosition = t;
          seen[t]++;
        }
      }
    }
    assert(seen.every((v) => v === 1), "every position exactly once");
  }
});

const SHAPES: { batch: number; seqLen: number; dim: number; vocab: number; chunk?: number }[] = [
  { batch: 1, seqLen: 1, dim: 1, vocab: 1 },
  { batch: 2, seqLen: 5, dim: 17, vocab: 7 },
  { batch: 3, seqLen: 17, dim: 5, vocab: 50, chunk: 3 },
  { batch: 4, seqLen: 16, dim: 64, vocab: 300 },
  { batch: 2, seqLen: 9, dim: 192, vocab: 40, chunk: 1 },
];

for (const shape of SHAPES) {
  const { batch, seqLen, dim, vocab } = shape;
  const name = `embedding B=${batch} L=${seqLen} d=${dim} V=${vocab} chunk=${shape.chunk ?? 64}`;
  Deno.test({
    name: `${name}: forward+backward over two batches with different ids, deterministic`,
    ...gpuTest,
    fn: async () => {
      const gpu = await testGpu();
      const a = gpu.allocator;
      const n = batch * seqLen;
      const word = f64(f32(randn(vocab * dim, 1))), pos = f64(f32(randn(seqLen * dim, 2)));
      const layout = embeddingIndexLayout(n, vocab, shape.chunk);
      const tIds = a.tensor("ids", [n], "activations"), tIndex = a.tensor("index", [layout.words], "activations");
      const tWord = a.tensor("word", [vocab, dim], "params"), tPos = a.tensor("pos", [seqLen, dim], "params");
      const tOut = a.tensor("out", [n, dim], "activations"), tdOut = a.tensor("dOut", [n, dim], "activations");
      const tdWord = a.tensor("dWord", [vocab, dim], "grads"), tdPos = a.tensor("dPos", [seqLen, dim], "grads");
      writeTensor(gpu, tWord, f32(word));
      writeTensor(gpu, tPos, f32(pos));
      const [forward, backward] = await withGpuErrors(gpu.device, name, () =>
        [
          createEmbeddingForward(gpu, "emb", { ...shape, ids: tIds, wordEmb: tWord, posEmb: tPos, out: tOut }),
          createEmbeddingBackward(gpu, "emb.bwd", {
            ...shape,
            dOut: tdOut,
            index: tIndex,
            dWordEmb: tdWord,
            dPosEmb: tdPos,
          }),
        ] as const);
      // Gradients accumulate: seed them, then add two batches (the second with fewer distinct ids, so stale index
      // entries past U/C from the first batch must be ignored).
      let dWordExpected = f64(f32(randn(vocab * dim, 3))), dPosExpected = f64(f32(randn(seqLen * dim, 4)));
      writeTensor(gpu, tdWord, f32(dWordExpected));
      writeTensor(gpu, tdPos, f32(dPosExpected));
      for (const [step, ids] of [randomIds(n, vocab, 5), randomIds(n, Math.min(vocab, 3), 6)].entries()) {
        const dOut = f64(f32(randn(n * dim, 10 + step)));
        writeTensor(gpu, tIds, ids);
        writeTensor(gpu, tIndex, buildEmbeddingIndex(ids, layout));
        writeTensor(gpu, tdOut, f32(dOut));
        const g = embeddingBackwardRef(ids, dOut, seqLen, dim, vocab);
        dWordExpected = dWordExpected.map((v, i) => v + g.dWord[i]);
        dPosExpected = dPosExpected.map((v, i) => v + g.dPos[i]);
        await checkKernel({
          name: `${name} step ${step}`,
          reference: () => ({
            out: embeddingForwardRef(ids, word, pos, seqLen, dim, vocab),
            dWord: dWordExpected,
            dPos: dPosExpected,
          }),
          gpu: async () => {
            await withGpuErrors(gpu.device, name, () => submit(gpu, [forward, backward]));
            return {
              out: await readTensor(gpu, tOut),
              dWord: await readTensor(gpu, tdWord),
              dPos: await readTensor(gpu, tdPos),
            };
          },
        });
      }
      // Determinism: the same batch from zeroed gradients twice gives identical bits.
      const runFromZero = async () => {
        writeTensor(gpu, tdWord, new Float32Array(vocab * dim));
        writeTensor(gpu, tdPos, new Float32Array(seqLen * dim));
        submit(gpu, [forward, backward]);
        return [Array.from(await readTensor(gpu, tdWord)), Array.from(await readTensor(gpu, tdPos))];
      };
      assertEquals(await runFromZero(), await runFromZero());
      for (const t of [tIds, tIndex, tWord, tPos, tOut, tdOut, tdWord, tdPos, backward.workspace]) a.free(t);
    },
  });
}

Deno.test("embedding reference: gradients match finite differences", () => {
  const batch = 2, seqLen = 3, dim = 4, vocab = 5;
  const ids = [4, 0, 4, 1, 4, 2];
  const word = randn(vocab * dim, 20), pos = randn(seqLen * dim, 21), dOut = randn(batch * seqLen * dim, 22);
  const g = embeddingBackwardRef(ids, dOut, seqLen, dim, vocab);
  checkFiniteDifferences(
    "dWord",
    (v) => dot(embeddingForwardRef(ids, v, pos, seqLen, dim, vocab), dOut),
    word,
    g.dWord,
  );
  checkFiniteDifferences("dPos", (v) => dot(embeddingForwardRef(ids, word, v, seqLen, dim, vocab), dOut), pos, g.dPos);
  // Token 3 never occurs: its gradient row is exactly zero.
  assertEquals(Array.from(g.dWord.subarray(3 * dim, 4 * dim)), [0, 0, 0, 0]);
});
