import { Rng } from "../../src/data/rng.ts";
import { readTensor, readTensorU32, withGpuErrors, writeTensor } from "../../src/gpu/device.ts";
import type { MatmulVariant } from "../../src/ops/matmul.ts";
import { createLmHeadXent, writeLabelledPositions } from "../../src/ops/cross_entropy.ts";
import { submit } from "../../src/ops/_dispatch.ts";
import {
  gatherRowsRef,
  lmHeadXentBackwardRef,
  lmHeadXentForwardRef,
  scatterRowsRef,
  softmaxXentBackwardRef,
  softmaxXentRef,
} from "../../src/reference/cross_entropy.ts";
import { matmulRef } from "../../src/reference/matmul.ts";
import { assert, assertAlmostEquals, assertEquals, assertThrows } from "../_helpers/assert.ts";
import {
  checkFiniteDifferences,
  checkKernel,
  dot,
  f32,
  f64,
  randn,
  type Tolerance,
  type Values,
} from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

interface Case {
  B: number;
  L: number;
  d: number;
  V: number;
  /** Labelled positions per example. */
  N: number;
  accumulateDHidden?: boolean;
  duplicates?: boolean;
  variant?: MatmulVariant;
  /** Lanes per row of the loss pass (default: the adapter's). */
  rowWorkgroup?: number;
  /** Labelled rows per chunk (default: all in one chunk at these sizes). */
  chunkRows?: number;
}

// Odd shapes, the paper's widths (64, 192) and the real vocabulary (8192) with few labelled rows.
const CASES: Case[] = [
  { B: 1, L: 1, d: 1, V: 1, N: 1 },
  { B: 1, L: 5, d: 8, V: 37, N: 2 },
  { B: 2, L: 17, d: 64, V: 300, N: 5, accumulateDHidden: true },
  { B: 2, L: 17, d: 64, V: 300, N: 5, variant: "tiled", rowWorkgroup: 256 },
  { B: 1, L: 17, d: 64, V: 8192, N: 4, rowWorkgroup: 256 },
  { B: 1, L: 17, d: 64, V: 37, N: 4, rowWorkgroup: 64 },
  { B: 3, L: 5, d: 192, V: 17, N: 3 },
  { B: 1, L: 17, d: 64, V: 8192, N: 4 },
  { B: 2, L: 5, d: 8, V: 33, N: 3, duplicates: true },
  // Several chunks (the last one short), also with duplicate positions straddling a chunk edge.
  { B: 2, L: 17, d: 64, V: 300, N: 5, chunkRows: 3 },
  { B: 2, L: 5, d: 8, V: 33, N: 3, duplicates: true, chunkRows: 2, accumulateDHidden: true },
  { B: 1, L: 17, d: 64, V: 8192, N: 4, chunkRows: 1 },
];

function labelledPositions(c: Case, seed: number): Uint32Array {
  const rng = new Rng(seed, 3);
  const out: number[] = [];
  for (let b = 0; b < c.B; b++) {
    const slots = Array.from({ length: c.L }, (_, t) => t);
    rng.shuffle(slots);
    const chosen = slots.slice(0, Math.min(c.N, c.L));
    // Duplicates: repeat the first chosen slot (gather copies, scatter must sum both rows back).
    if (c.duplicates) chosen.push(chosen[0]);
    while (chosen.length < c.N) chosen.push(chosen[0]);
    for (const t of chosen.sort((x, y) => x - y)) out.push(b * c.L + t);
  }
  return Uint32Array.from(out);
}

function maxAbs(x: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]));
  return m;
}

/** Bit-exact (checkKernel divides by atol + rtol|ref|, so atol cannot be 0). */
const EXACT: Tolerance = { rtol: 0, atol: 1e-30 };

/** fp32 tolerance with the absolute part scaled to the output's magnitude (softmax gradients are ~1/V). */
function scaled(ref: ArrayLike<number>): Tolerance {
  return { rtol: 2e-4, atol: 2e-5 * Math.max(maxAbs(ref), 1e-6) };
}

for (const c of CASES) {
  const rows = c.B * c.L;
  Deno.test({
    name: `cross_entropy: tied head B=${c.B} L=${c.L} d=${c.d} V=${c.V} N=${c.N}` +
      `${c.accumulateDHidden ? " accumulate-dh" : ""}${c.duplicates ? " duplicate positions" : ""}` +
      `${c.variant ? ` matmul ${c.variant}` : ""}${c.chunkRows ? ` chunks of ${c.chunkRows}` : ""}`,
    ...gpuTest,
    fn: async () => {
      const gpu = await testGpu();
      const alloc = gpu.allocator;
      const positions = labelledPositions(c, rows * 31 + c.V);
      const P = positions.length;
      const rng = new Rng(P, c.V);
      const targets = Uint32Array.from({ length: P }, () => rng.int(0, c.V - 1));
      const h = f64(f32(randn(rows * c.d, 1)));
      const emb = f64(f32(randn(c.V * c.d, 2, 2 / Math.sqrt(c.d))));
      const dEmb0 = f64(f32(randn(c.V * c.d, 3, 0.01)));
      const dh0 = f64(f32(randn(rows * c.d, 4, 0.01)));
      const scale = 1 / (3 * P); // as if this were one of three micro-batches of the optimizer step
      const t = {
        h: alloc.tensor("h", [rows, c.d], "activations"),
        emb: alloc.tensor("emb", [c.V, c.d], "params"),
        pos: alloc.tensor("positions", [P], "activations"),
        tgt: alloc.tensor("targets", [P], "activations"),
        dh: alloc.tensor("dh", [rows, c.d], "activations"),
        dEmb: alloc.tensor("dEmb", [c.V, c.d], "grads"),
      };
      writeTensor(gpu, t.h, f32(h));
      writeTensor(gpu, t.emb, f32(emb));
      writeLabelledPositions(gpu, t.pos, positions, rows);
      writeTensor(gpu, t.tgt, targets);
      const op = await withGpuErrors(gpu.device, "createLmHeadXent", () =>
        createLmHeadXent(gpu, "xent", {
          hidden: t.h,
          emb: t.emb,
          positions: t.pos,
          targets: t.tgt,
          dHidden: t.dh,
          dEmb: t.dEmb,
          rows,
          d: c.d,
          V: c.V,
          P,
          gradScale: scale,
          accumulateDHidden: c.accumulateDHidden,
          matmulVariant: c.variant,
          rowWorkgroup: c.rowWorkgroup,
          chunkRows: c.chunkRows,
        }));
      // Several chunks reuse one logits buffer (the last chunk's are left): hg/logits/dlogits are checked per row
      // only when one chunk holds them all.
      const chunked = op.chunkRows < P;
      if (c.chunkRows) assert(chunked, "the case should use several chunks");
      const shape = { rows, d: c.d, V: c.V };
      const fwd = lmHeadXentForwardRef(h, emb, positions, targets, shape);
      const bwd = lmHeadXentBackwardRef(h, emb, positions, targets, shape, scale);
      const refDh = c.accumulateDHidden ? bwd.dh.map((v, i) => v + dh0[i]) : bwd.dh;
      const refDEmb = bwd.dEmb.map((v, i) => v + dEmb0[i]);
      const runOnce = async (): Promise<Values> => {
        writeTensor(gpu, t.dh, f32(dh0)); // garbage for overwrite mode, the base for accumulate mode
        writeTensor(gpu, t.dEmb, f32(dEmb0));
        op.resetAccumulators();
        submit(gpu, op.forward);
        const logits = chunked ? undefined : await readTensor(gpu, op.logits);
        const rowLoss = await readTensor(gpu, op.rowLoss);
        const stats = await op.readStats();
        submit(gpu, op.backward);
        const perRow: Values = chunked ? {} : {
          hg: await readTensor(gpu, op.hg),
          logits: logits!,
          dlogits: await readTensor(gpu, op.logits),
        };
        return {
          ...perRow,
          rowLoss,
          loss: [stats.meanLoss],
          correct: [stats.correct],
          dh: await readTensor(gpu, t.dh),
          dEmb: await readTensor(gpu, t.dEmb),
        };
      };
      let first: Values = {};
      await checkKernel({
        name: `xent ${JSON.stringify(c)}`,
        reference: () => ({
          ...(chunked ? {} : { hg: gatherRowsRef(h, positions, c.d), logits: fwd.logits, dlogits: bwd.dlogits }),
          rowLoss: fwd.rowLoss,
          loss: [fwd.loss],
          correct: [fwd.correctCount],
          dh: refDh,
          dEmb: refDEmb,
        }),
        gpu: async () => (first = await runOnce()),
        tolerances: {
          hg: EXACT,
          correct: EXACT,
          dlogits: scaled(bwd.dlogits),
          dh: scaled(refDh),
          dEmb: scaled(refDEmb),
        },
      });
      // Deterministic: the whole chain again gives bit-identical outputs.
      const again = await runOnce();
      for (const key of Object.keys(first)) assertEquals(Array.from(again[key]), Array.from(first[key]), key);
      op.free();
      for (const x of Object.values(t)) alloc.free(x);
    },
  });
}

Deno.test({
  name: "cross_entropy: accumulators sum across submits until reset; ties pick the lowest index",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const alloc = gpu.allocator;
    const rows = 6, d = 4, V = 300, P = 3;
    const positions = Uint32Array.from([0, 2, 5]);
    // Row 2 of h is zero, so its logits all tie at 0: argmax must be column 0 (target 0 counts as correct there).
    const h = f64(f32(randn(rows * d, 9)));
    for (let c = 0; c < d; c++) h[2 * d + c] = 0;
    const emb = f64(f32(randn(V * d, 10)));
    const t = {
      h: alloc.tensor("h", [rows, d], "activations"),
      emb: alloc.tensor("emb", [V, d], "params"),
      pos: alloc.tensor("positions", [P], "activations"),
      tgt: alloc.tensor("targets", [P], "activations"),
    };
    writeTensor(gpu, t.h, f32(h));
    writeTensor(gpu, t.emb, f32(emb));
    writeLabelledPositions(gpu, t.pos, positions, rows);
    const op = createLmHeadXent(gpu, "xent", {
      hidden: t.h,
      emb: t.emb,
      positions: t.pos,
      targets: t.tgt,
      rows,
      d,
      V,
      P,
    });
    assertEquals(op.backward.length, 0);
    op.resetAccumulators();
    const batches = [[7, 0, 11], [299, 1, 0], [5, 0, 5]];
    let lossSum = 0, correct = 0;
    for (const targets of batches) {
      writeTensor(gpu, t.tgt, Uint32Array.from(targets));
      submit(gpu, op.forward); // no readback between submits
      const ref = lmHeadXentForwardRef(h, emb, positions, targets, { rows, d, V });
      lossSum += ref.lossSum;
      correct += ref.correctCount;
    }
    const last = lmHeadXentForwardRef(h, emb, positions, batches[2], { rows, d, V });
    assertEquals(last.rowCorrect[1], 1, "tie on a zero row resolves to index 0");
    assertAlmostEquals(last.rowLoss[1], Math.log(V), 1e-12);
    const stats = await op.readStats();
    assertEquals(stats.accCount, 3 * P);
    assertEquals(stats.accCorrect, correct);
    assertEquals(stats.correct, last.correctCount);
    assertAlmostEquals(stats.accLossSum, lossSum, 2e-4 * lossSum);
    assertAlmostEquals(stats.meanLoss, last.loss, 2e-4 * last.loss);
    assertEquals((await readTensorU32(gpu, op.stats))[1], last.correctCount);
    op.resetAccumulators();
    submit(gpu, op.forward);
    const after = await op.readStats();
    assertEquals(after.accCount, P);
    assertAlmostEquals(after.accLossSum, last.lossSum, 2e-4 * last.lossSum);
    op.free();
    for (const x of Object.values(t)) alloc.free(x);
  },
});

Deno.test({
  name: "cross_entropy: writeLabelledPositions rejects unsorted or out-of-range positions",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const t = gpu.allocator.tensor("positions", [3], "activations");
    assertThrows(() => writeLabelledPositions(gpu, t, [0, 3, 2], 10), /sorted/);
    assertThrows(() => writeLabelledPositions(gpu, t, [0, 3, 10], 10), /outside/);
    writeLabelledPositions(gpu, t, [1, 1, 9], 10);
    gpu.allocator.free(t);
  },
});

Deno.test("cross_entropy reference: gradients of the whole chain match finite differences", () => {
  const rows = 7, d = 5, V = 11;
  const positions = [1, 1, 4, 6];
  const targets = [3, 0, 10, 3];
  const h = randn(rows * d, 21), emb = randn(V * d, 22);
  const scale = 0.37;
  const shape = { rows, d, V };
  const loss = (hh: Float64Array, ee: Float64Array) =>
    scale * lmHeadXentForwardRef(hh, ee, positions, targets, shape).lossSum;
  const g = lmHeadXentBackwardRef(h, emb, positions, targets, shape, scale);
  checkFiniteDifferences("dh", (x) => loss(x, emb), h, g.dh, { samples: rows * d });
  checkFiniteDifferences("dEmb", (x) => loss(h, x), emb, g.dEmb, { samples: V * d });
  const logits = randn(positions.length * V, 23);
  const dl = softmaxXentBackwardRef(logits, targets, V, scale);
  checkFiniteDifferences("dlogits", (x) => scale * softmaxXentRef(x, targets, V).lossSum, logits, dl);
  // The scatter is the adjoint of the gather: <gather(h), y> = <h, scatter(y)>.
  const y = randn(positions.length * d, 24);
  assertAlmostEquals(dot(gatherRowsRef(h, positions, d), y), dot(h, scatterRowsRef(y, positions, rows, d)), 1e-12);
  // Mean loss is the plain mean of per-row losses, and the logits are hg·Embᵀ.
  const r = lmHeadXentForwardRef(h, emb, positions, targets, shape);
  assertAlmostEquals(r.loss, r.lossSum / positions.length, 1e-14);
  const direct = matmulRef(gatherRowsRef(h, positions, d), emb, positions.length, V, d, { transB: true });
  assert(direct.every((v, i) => v === r.logits[i]));
});
