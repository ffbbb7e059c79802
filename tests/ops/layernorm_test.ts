import type { Tensor } from "../../src/gpu/allocator.ts";
import { type Gpu, readTensor, withGpuErrors, writeTensor } from "../../src/gpu/device.ts";
import { createLayerNormBackward, createLayerNormForward, type LayerNormVariant } from "../../src/ops/layernorm.ts";
import { submit } from "../../src/ops/_dispatch.ts";
import { layerNormBackwardRef, layerNormForwardRef, type LayerNormRefOptions } from "../../src/reference/layernorm.ts";
import { assertAlmostEquals, assertEquals } from "../_helpers/assert.ts";
import { checkFiniteDifferences, checkKernel, dot, f32, f64, randn } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

interface Case {
  rows: number;
  width: number;
  flags: LayerNormRefOptions;
  variant: LayerNormVariant;
  accumulateDx?: boolean;
  rowsPerBlock?: number;
}

const MODES: Record<string, LayerNormRefOptions> = {
  layernorm: {},
  "layernorm eps-outside": { epsOutside: true },
  "normalizer (no affine, eps outside)": { gamma: false, beta: false, epsOutside: true },
  "norm without affine": { gamma: false, beta: false },
  "norm with gamma only": { beta: false },
  "scaler gamma": { normalize: false, beta: false },
  "scaler gamma+beta": { normalize: false },
  "scaler beta only": { normalize: false, gamma: false },
};

function describe(c: Case): string {
  const mode = Object.entries(MODES).find(([, f]) => f === c.flags)?.[0] ?? "custom";
  return `${mode} ${c.variant} rows=${c.rows} width=${c.width}${c.accumulateDx ? " accumulate-dx" : ""}` +
    (c.rowsPerBlock ? ` rowsPerBlock=${c.rowsPerBlock}` : "");
}

/** Inputs rounded to f32 so the reference sees what the GPU sees; x has a row offset to exercise the two-pass mean. */
function inputs(c: Case, seed: number) {
  const x = f64(f32(randn(c.rows * c.width, seed, 2).map((v, i) => v + 3 * Math.floor(i / c.width) - 5)));
  const gamma = f64(f32(randn(c.width, seed + 1, 0.3).map((v) => v + 1)));
  const beta = f64(f32(randn(c.width, seed + 2, 0.3)));
  const dy = f64(f32(randn(c.rows * c.width, seed + 3)));
  const dxSeed = f64(f32(randn(c.rows * c.width, seed + 4)));
  return { x, gamma, beta, dy, dxSeed };
}

async function runCase(gpu: Gpu, c: Case, seed: number): Promise<void> {
  const { rows, width, flags } = c;
  const { x, gamma, beta, dy, dxSeed } = inputs(c, seed);
  const normalize = flags.normalize ?? true, hasGamma = flags.gamma ?? true, hasBeta = flags.beta ?? true;
  const a = gpu.allocator;
  const owned: Tensor[] = [];
  const t = (label: string, shape: number[], data?: Float64Array) => {
    const tensor = a.tensor(label, shape, label.startsWith("d") ? "grads" : "activations");
    if (data) writeTensor(gpu, tensor, f32(data));
    owned.push(tensor);
    return tensor;
  };
  const tx = t("x", [rows, width], x), ty = t("y", [rows, width]), tdy = t("dy", [rows, width], dy);
  const tdx = t("dx", [rows, width], c.accumulateDx ? dxSeed : undefined);
  const tGamma = hasGamma ? t("gamma", [width], gamma) : undefined;
  const tBeta = hasBeta ? t("beta", [width], beta) : undefined;
  // Parameter gradients accumulate: seed them with ones to check the +=.
  const ones = new Float64Array(width).fill(1);
  const tdGamma = hasGamma ? t("dgamma", [width], ones) : undefined;
  const tdBeta = hasBeta ? t("dbeta", [width], ones) : undefined;
  const tMean = normalize ? t("mean", [rows]) : undefined, tRstd = normalize ? t("rstd", [rows]) : undefined;
  const common = { ...flags, variant: c.variant, rows, width, gammaParam: tGamma, mean: tMean, rstd: tRstd };
  // Validation errors would otherwise only show up as untouched outputs.
  const [forward, backward] = await withGpuErrors(gpu.device, describe(c), () =>
    [
      createLayerNormForward(gpu, "ln.fwd", { ...common, x: tx, y: ty, betaParam: tBeta }),
      createLayerNormBackward(gpu, "ln.bwd", {
        ...common,
        x: tx,
        dy: tdy,
        dx: tdx,
        accumulateDx: c.accumulateDx,
        dgamma: tdGamma,
        dbeta: tdBeta,
        rowsPerBlock: c.rowsPerBlock,
      }),
    ] as const);
  if (backward.workspace) owned.push(backward.workspace);

  await checkKernel({
    name: describe(c),
    reference: () => {
      const fwd = layerNormForwardRef(x, gamma, beta, rows, width, flags);
      const g = layerNormBackwardRef(x, gamma, dy, rows, width, flags);
      const out: Record<string, Float64Array> = {
        y: fwd.y,
        dx: c.accumulateDx ? g.dx.map((v, i) => v + dxSeed[i]) : g.dx,
      };
      if (normalize) Object.assign(out, { mean: fwd.mean, rstd: fwd.rstd });
      if (hasGamma) out.dgamma = g.dgamma.map((v) => v + 1);
      if (hasBeta) out.dbeta = g.dbeta.map((v) => v + 1);
      return out;
    },
    gpu: async () => {
      await withGpuErrors(gpu.device, describe(c), () => submit(gpu, [forward, backward]));
      const out: Record<string, Float32Array> = { y: await readTensor(gpu, ty), dx: await readTensor(gpu, tdx) };
      if (tMean && tRstd) {
        Object.assign(out, { mean: await readTensor(gpu, tMean), rstd: await readTensor(gpu, tRstd) });
      }
      if (tdGamma) out.dgamma = await readTensor(gpu, tdGamma);
      if (tdBeta) out.dbeta = await readTensor(gpu, tdBeta);
      return out;
    },
    // Default FP32_TOLERANCE (rtol 2e-4, atol 2e-5) for every output.
  });
  for (const tensor of owned) a.free(tensor);
}

const WIDTHS = [1, 5, 17, 64, 192, 512];
const VARIANTS: LayerNormVariant[] = ["row", "workgroup"];

for (const variant of VARIANTS) {
  Deno.test({
    name: `layernorm ${variant}: forward+backward, widths ${WIDTHS.join("/")}`,
    ...gpuTest,
    fn: async () => {
      const gpu = await testGpu();
      for (const [i, width] of WIDTHS.entries()) {
        const rows = width >= 192 ? 5 : 17;
        await runCase(gpu, { rows, width, flags: MODES.layernorm, variant, accumulateDx: i % 2 === 1 }, 10 + i);
      }
    },
  });

  Deno.test({
    name: `layernorm ${variant}: ReBased ablation transforms (normalizer, scaler, partial affine)`,
    ...gpuTest,
    fn: async () => {
      const gpu = await testGpu();
      let seed = 100;
      for (const flags of Object.values(MODES)) {
        for (const width of [17, 192]) {
          await runCase(gpu, { rows: 9, width, flags, variant }, seed++);
        }
      }
    },
  });
}

Deno.test({
  name: "layernorm: multi-block dγ/dβ reduction and one row, odd row counts",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    await runCase(gpu, { rows: 37, width: 5, flags: MODES.layernorm, variant: "row", rowsPerBlock: 8 }, 200);
    await runCase(gpu, { rows: 37, width: 64, flags: MODES.layernorm, variant: "workgroup", rowsPerBlock: 1 }, 201);
    await runCase(gpu, { rows: 1, width: 192, flags: MODES.layernorm, variant: "workgroup" }, 202);
    await runCase(gpu, { rows: 1, width: 17, flags: MODES["scaler gamma+beta"], variant: "row" }, 203);
  },
});

Deno.test({
  name: "layernorm: repeated runs are bit-identical (dx, dγ, dβ)",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const rows = 33, width = 192;
    const x = f32(randn(rows * width, 300)), dy = f32(randn(rows * width, 301));
    const a = gpu.allocator;
    const tx = a.tensor("x", [rows, width], "activations"), tdy = a.tensor("dy", [rows, width], "activations");
    const ty = a.tensor("y", [rows, width], "activations"), tdx = a.tensor("dx", [rows, width], "activations");
    const tg = a.tensor("g", [width], "params"), tb = a.tensor("b", [width], "params");
    const tdg = a.tensor("dg", [width], "grads"), tdb = a.tensor("db", [width], "grads");
    const tm = a.tensor("m", [rows], "activations"), ts = a.tensor("s", [rows], "activations");
    writeTensor(gpu, tx, x);
    writeTensor(gpu, tdy, dy);
    writeTensor(gpu, tg, new Float32Array(width).fill(1.5));
    for (const variant of VARIANTS) {
      const common = { variant, rows, width, x: tx, gammaParam: tg, mean: tm, rstd: ts, rowsPerBlock: 4 };
      const fwd = createLayerNormForward(gpu, "fwd", { ...common, y: ty, betaParam: tb });
      const bwd = createLayerNormBackward(gpu, "bwd", { ...common, dy: tdy, dx: tdx, dgamma: tdg, dbeta: tdb });
      const run = async () => {
        writeTensor(gpu, tdg, new Float32Array(width));
        writeTensor(gpu, tdb, new Float32Array(width));
        submit(gpu, [fwd, bwd]);
        return [
          await readTensor(gpu, ty),
          await readTensor(gpu, tdx),
          await readTensor(gpu, tdg),
          await readTensor(gpu, tdb),
        ]
          .map((v) => Array.from(v));
      };
      const first = await run();
      assertEquals(await run(), first);
      if (bwd.workspace) a.free(bwd.workspace);
    }
    for (const t of [tx, tdy, ty, tdx, tg, tb, tdg, tdb, tm, ts]) a.free(t);
  },
});

Deno.test("layernorm reference: gradients match finite differences in every mode", () => {
  const rows = 3, width = 7;
  const x = randn(rows * width, 400, 1.5), gamma = randn(width, 401, 0.5).map((v) => v + 1);
  const beta = randn(width, 402), dy = randn(rows * width, 403);
  for (const [mode, flags] of Object.entries(MODES)) {
    // A larger eps makes the eps-outside term visible to the finite differences.
    for (const eps of [1e-5, 0.3]) {
      const o = { ...flags, eps };
      const g = layerNormBackwardRef(x, gamma, dy, rows, width, o);
      const loss = (xv: Float64Array, gv: Float64Array, bv: Float64Array) =>
        dot(layerNormForwardRef(xv, gv, bv, rows, width, o).y, dy);
      checkFiniteDifferences(`${mode} eps=${eps} dx`, (v) => loss(v, gamma, beta), x, g.dx, { rtol: 1e-5, atol: 1e-6 });
      if (flags.gamma ?? true) checkFiniteDifferences(`${mode} dγ`, (v) => loss(x, v, beta), gamma, g.dgamma);
      if (flags.beta ?? true) checkFiniteDifferences(`${mode} dβ`, (v) => loss(x, gamma, v), beta, g.dbeta);
    }
  }
});

Deno.test("layernorm reference: forward matches the definitions", () => {
  const x = f64([1, 2, 3, 6]);
  const ln = layerNormForwardRef(x, undefined, undefined, 1, 4, { gamma: false, beta: false, eps: 0 });
  // mean 3, biased variance (4 + 1 + 0 + 9)/4 = 3.5
  const sd = Math.sqrt(3.5);
  [-2 / sd, -1 / sd, 0, 3 / sd].forEach((v, i) => assertAlmostEquals(ln.y[i], v, 1e-12));
  const nz = layerNormForwardRef(x, undefined, undefined, 1, 4, {
    gamma: false,
    beta: false,
    eps: 0.5,
    epsOutside: true,
  });
  assertAlmostEquals(nz.y[3], 3 / (Math.sqrt(4) + 0.5), 1e-12);
  const sc = layerNormForwardRef(x, f64([2, 2, 2, 2]), f64([1, 1, 1, 1]), 1, 4, { normalize: false });
  assertEquals(Array.from(sc.y), [3, 5, 7, 13]);
});
