import type { Tensor } from "../../src/gpu/allocator.ts";
import { type Gpu, readTensor, withGpuErrors, writeTensor } from "../../src/gpu/device.ts";
import {
  createAdd,
  createAddInPlace,
  createColumnSum,
  createCopy,
  createCopyColumns,
  createMul,
  createMulBackward,
  createScale,
} from "../../src/ops/elementwise.ts";
import { type Dispatch, submit } from "../../src/ops/_dispatch.ts";
import {
  addRef,
  addScaledRef,
  columnSumRef,
  copyRef,
  mulBackwardRef,
  mulRef,
  scaleRef,
} from "../../src/reference/elementwise.ts";
import { assertEquals, assertThrows } from "../_helpers/assert.ts";
import { checkFiniteDifferences, checkKernel, dot, f32, f64, randn } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

const SIZES = [1, 5, 17, 257, 64 * 192];

/** Tensors created for one test, uploaded from f32-rounded data, freed together. */
class Scratch {
  readonly owned: Tensor[] = [];
  constructor(readonly gpu: Gpu) {}
  tensor(label: string, data: ArrayLike<number> | number): Tensor {
    const n = typeof data === "number" ? data : data.length;
    const t = this.gpu.allocator.tensor(label, [n], "activations");
    if (typeof data !== "number") writeTensor(this.gpu, t, f32(data));
    this.owned.push(t);
    return t;
  }
  async run(name: string, dispatches: readonly Dispatch[]): Promise<void> {
    await withGpuErrors(this.gpu.device, name, () => submit(this.gpu, dispatches));
  }
  free(): void {
    for (const t of this.owned) this.gpu.allocator.free(t);
  }
}

const data = (n: number, seed: number) => f64(f32(randn(n, seed)));

Deno.test({
  name: "elementwise: add, in-place accumulate, scale (out of place, accumulate, in place), mul",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    for (const n of SIZES) {
      const s = new Scratch(gpu);
      const a = data(n, n), b = data(n, n + 1), seedOut = data(n, n + 2);
      const ta = s.tensor("a", a), tb = s.tensor("b", b);
      const tAdd = s.tensor("add", n), tMul = s.tensor("mul", n), tScale = s.tensor("scale", n);
      const tScaleAcc = s.tensor("scaleAcc", seedOut), tResidual = s.tensor("residual", seedOut);
      const tHalved = s.tensor("halved", a);
      const alpha = -0.75;
      const dispatches = await withGpuErrors(gpu.device, `create n=${n}`, () => [
        createAdd(gpu, "add", { a: ta, b: tb, out: tAdd }),
        createMul(gpu, "mul", { a: ta, b: tb, out: tMul }),
        createScale(gpu, "scale", { input: ta, out: tScale, alpha }),
        createScale(gpu, "scaleAcc", { input: ta, out: tScaleAcc, alpha, accumulate: true }),
        createScale(gpu, "scaleInPlace", { input: tHalved, out: tHalved, alpha: 0.5 }),
        createAddInPlace(gpu, "residual", { target: tResidual, source: tb }),
        createAddInPlace(gpu, "residualScaled", { target: tResidual, source: ta, alpha }),
      ]);
      await checkKernel({
        name: `elementwise n=${n}`,
        reference: () => ({
          add: addRef(a, b),
          mul: mulRef(a, b),
          scale: scaleRef(a, alpha),
          scaleAcc: addScaledRef(seedOut, a, alpha),
          halved: scaleRef(a, 0.5),
          residual: addScaledRef(addRef(seedOut, b), a, alpha),
        }),
        gpu: async () => {
          await s.run(`elementwise n=${n}`, dispatches);
          return {
            add: await readTensor(gpu, tAdd),
            mul: await readTensor(gpu, tMul),
            scale: await readTensor(gpu, tScale),
            scaleAcc: await readTensor(gpu, tScaleAcc),
            halved: await readTensor(gpu, tHalved),
            residual: await readTensor(gpu, tResidual),
          };
        },
      });
      s.free();
    }
  },
});

Deno.test({
  name: "elementwise: mul backward (da, db, each overwrite or accumulate)",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const combos = [
      { da: true, db: true, accA: false, accB: false },
      { da: true, db: true, accA: true, accB: false },
      { da: true, db: false, accA: true, accB: false },
      { da: false, db: true, accA: false, accB: true },
    ];
    for (const [ci, c] of combos.entries()) {
      for (const n of [5, 257]) {
        const s = new Scratch(gpu);
        const a = data(n, 10 + n), b = data(n, 11 + n), dy = data(n, 12 + n);
        const daSeed = data(n, 13 + n), dbSeed = data(n, 14 + n);
        const ta = s.tensor("a", a), tb = s.tensor("b", b), tdy = s.tensor("dy", dy);
        const tda = c.da ? s.tensor("da", daSeed) : undefined, tdb = c.db ? s.tensor("db", dbSeed) : undefined;
        const d = await withGpuErrors(gpu.device, "create", () =>
          createMulBackward(gpu, "mulBwd", {
            a: ta,
            b: tb,
            dy: tdy,
            da: tda,
            db: tdb,
            accumulateA: c.accA,
            accumulateB: c.accB,
          }));
        const name = `mul backward combo ${ci} n=${n}`;
        await checkKernel({
          name,
          reference: () => {
            const g = mulBackwardRef(a, b, dy);
            const out: Record<string, Float64Array> = {};
            if (c.da) out.da = c.accA ? addRef(g.da, daSeed) : g.da;
            if (c.db) out.db = c.accB ? addRef(g.db, dbSeed) : g.db;
            return out;
          },
          gpu: async () => {
            await s.run(name, [d]);
            const out: Record<string, Float32Array> = {};
            if (tda) out.da = await readTensor(gpu, tda);
            if (tdb) out.db = await readTensor(gpu, tdb);
            return out;
          },
        });
        s.free();
      }
    }
  },
});

Deno.test({
  name: "elementwise: copy a column block between matrices of other widths (gather and scatter)",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    for (const [rows, cols, srcStride, srcOffset, dstStride, dstOffset] of [[1, 1, 1, 0, 1, 0], [7, 3, 9, 4, 5, 1]]) {
      const s = new Scratch(gpu);
      const src = data(rows * srcStride, 30 + rows), dst = data(rows * dstStride, 31 + rows);
      const tsrc = s.tensor("src", src), tdst = s.tensor("dst", dst);
      const d = createCopyColumns(gpu, "cols", {
        src: tsrc,
        dst: tdst,
        rows,
        cols,
        srcStride,
        srcOffset,
        dstStride,
        dstOffset,
      });
      await s.run(`copy columns ${rows}x${cols}`, [d]);
      const want = Float32Array.from(f32(dst));
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) want[r * dstStride + dstOffset + c] = f32(src)[r * srcStride + srcOffset + c];
      }
      assertEquals(Array.from(await readTensor(gpu, tdst)), Array.from(want));
      s.free();
    }
  },
});

Deno.test({
  name: "elementwise: copy with offsets",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    for (const [n, srcOffset, dstOffset] of [[1, 0, 0], [17, 3, 5], [300, 1, 0]]) {
      const s = new Scratch(gpu);
      const src = data(n + srcOffset + 2, 20 + n), dst = data(n + dstOffset + 3, 21 + n);
      const tsrc = s.tensor("src", src), tdst = s.tensor("dst", dst);
      const d = createCopy(gpu, "copy", { src: tsrc, dst: tdst, n, srcOffset, dstOffset });
      const name = `copy n=${n} +${srcOffset} -> +${dstOffset}`;
      await s.run(name, [d]);
      // A copy is exact: compare bits, including the untouched elements around the window.
      assertEquals(
        Array.from(await readTensor(gpu, tdst)),
        Array.from(f32(copyRef(src, dst, n, srcOffset, dstOffset))),
      );
      s.free();
    }
  },
});

Deno.test({
  name: "elementwise: column sum (bias gradient) accumulate/overwrite, odd shapes, bit-identical reruns",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const shapes: [number, number, number | undefined][] = [
      [1, 1, undefined],
      [5, 17, undefined],
      [17, 5, 4],
      [33, 64, undefined],
      [7, 192, 2],
      [300, 3, undefined],
      [130, 65, 1],
    ];
    for (const [rows, cols, rowsPerBlock] of shapes) {
      for (const accumulate of [true, false]) {
        const s = new Scratch(gpu);
        const x = data(rows * cols, rows * 31 + cols), seedOut = data(cols, cols);
        const tx = s.tensor("x", x), tout = s.tensor("out", seedOut);
        const d = createColumnSum(gpu, "colsum", { input: tx, out: tout, rows, cols, accumulate, rowsPerBlock });
        s.owned.push(d.workspace);
        const name = `colsum ${rows}x${cols} rowsPerBlock=${rowsPerBlock ?? "default"} accumulate=${accumulate}`;
        await checkKernel({
          name,
          reference: () => ({
            out: accumulate ? addRef(columnSumRef(x, rows, cols), seedOut) : columnSumRef(x, rows, cols),
          }),
          gpu: async () => {
            await s.run(name, [d]);
            return { out: await readTensor(gpu, tout) };
          },
        });
        if (!accumulate) {
          const first = Array.from(await readTensor(gpu, tout));
          await s.run(name, [d]);
          assertEquals(Array.from(await readTensor(gpu, tout)), first, `${name}: rerun differs`);
        }
        s.free();
      }
    }
  },
});

Deno.test({
  name: "elementwise: aliasing a written buffer is rejected",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const s = new Scratch(gpu);
    const t = s.tensor("t", 8), u = s.tensor("u", 8);
    assertThrows(() => createAdd(gpu, "add", { a: t, b: u, out: t }), /alias/);
    assertThrows(() => createMulBackward(gpu, "mb", { a: t, b: u, dy: u, da: u }), /alias/);
    assertThrows(() => createAddInPlace(gpu, "acc", { target: t, source: t }), /alias/);
    s.free();
  },
});

Deno.test("elementwise reference: mul and column-sum gradients match finite differences", () => {
  const n = 9, rows = 4, cols = 3;
  const a = randn(n, 30), b = randn(n, 31), dy = randn(n, 32);
  const g = mulBackwardRef(a, b, dy);
  checkFiniteDifferences("mul da", (v) => dot(mulRef(v, b), dy), a, g.da);
  checkFiniteDifferences("mul db", (v) => dot(mulRef(a, v), dy), b, g.db);
  // d/dx Σ_n w[n]·colsum(x)[n] = w broadcast over rows: the bias-gradient identity db = colsum(dy).
  const x = randn(rows * cols, 33), w = randn(cols, 34);
  const expected = Float64Array.from({ length: rows * cols }, (_, i) => w[i % cols]);
  checkFiniteDifferences("colsum", (v) => dot(columnSumRef(v, rows, cols), w), x, expected);
  checkFiniteDifferences("scale", (v) => dot(scaleRef(v, -1.5), dy), a, scaleRef(dy, -1.5));
  checkFiniteDifferences("add", (v) => dot(addRef(v, b), dy), a, dy);
});
