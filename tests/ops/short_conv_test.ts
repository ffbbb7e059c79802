import type { Tensor } from "../../src/gpu/allocator.ts";
import { type Gpu, readTensor, withGpuErrors, writeTensor } from "../../src/gpu/device.ts";
import { matmul } from "../../src/ops/matmul.ts";
import {
  type ShortConvConfig,
  shortConvGateBackward,
  shortConvGateForward,
  shortConvScratchLength,
} from "../../src/ops/short_conv.ts";
import { type Dispatch, submit } from "../../src/ops/_dispatch.ts";
import {
  baseConvBackwardRef,
  baseConvForwardRef,
  type BaseConvParams,
  shortConvGateBackwardRef,
  shortConvGateForwardRef,
  shortConvRef,
} from "../../src/reference/short_conv.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { checkFiniteDifferences, checkKernel, dot, f32, f64, randn } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

const SHAPES: ShortConvConfig[] = [
  { batch: 1, seqLen: 1, width: 1 },
  // L = 1: every row starts a sequence, so no history may leak between examples.
  { batch: 3, seqLen: 1, width: 7 },
  { batch: 2, seqLen: 5, width: 3 },
  { batch: 1, seqLen: 17, width: 64 },
  // Row blocks of 16 that straddle sequence boundaries (rows 0..79, boundary at 40 inside block 2).
  { batch: 2, seqLen: 40, width: 5 },
  { batch: 2, seqLen: 33, width: 192 },
];

interface GateInputs {
  u: Float64Array;
  proj: Float64Array;
  weight: Float64Array;
  bias: Float64Array;
  dy: Float64Array;
}

function gateInputs(s: ShortConvConfig, seed: number): GateInputs {
  const n = s.batch * s.seqLen * s.width;
  return {
    u: f64(f32(randn(n, seed))),
    proj: f64(f32(randn(n, seed + 1))),
    weight: f64(f32(randn(3 * s.width, seed + 2, 0.5))),
    bias: f64(f32(randn(s.width, seed + 3, 0.5))),
    dy: f64(f32(randn(n, seed + 4))),
  };
}

type GateTensors = Record<keyof GateInputs | "y" | "du" | "dproj" | "dweight" | "dbias" | "scratch", Tensor>;

/** Allocates, uploads and creates both ops; pipeline compile errors surface here instead of as all-zero outputs. */
async function gateSetup(gpu: Gpu, s: ShortConvConfig, x: GateInputs, accumulate = false) {
  const a = gpu.allocator, rows = s.batch * s.seqLen, d = s.width;
  const t: GateTensors = {
    u: a.tensor("u", [rows, d], "activations"),
    proj: a.tensor("proj", [rows, d], "activations"),
    weight: a.tensor("conv.weight", [d, 1, 3], "params"),
    bias: a.tensor("conv.bias", [d], "params"),
    dy: a.tensor("dy", [rows, d], "activations"),
    y: a.tensor("y", [rows, d], "activations"),
    du: a.tensor("du", [rows, d], "activations"),
    dproj: a.tensor("dproj", [rows, d], "activations"),
    dweight: a.tensor("conv.weight.grad", [d, 1, 3], "grads"),
    dbias: a.tensor("conv.bias.grad", [d], "grads"),
    scratch: a.tensor("scratch", [shortConvScratchLength(s)], "workspace"),
  };
  for (const name of ["u", "proj", "weight", "bias", "dy"] as const) writeTensor(gpu, t[name], f32(x[name]));
  const ops = await withGpuErrors(gpu.device, "short conv setup", () => ({
    forward: shortConvGateForward(gpu, "conv.fwd", { ...s, ...t }),
    backward: shortConvGateBackward(gpu, "conv.bwd", { ...s, ...t, accumulate }),
  }));
  return { t, ...ops, free: () => Object.values(t).forEach((x) => a.free(x)) };
}

async function readGate(gpu: Gpu, t: GateTensors) {
  return {
    y: await readTensor(gpu, t.y),
    du: await readTensor(gpu, t.du),
    dproj: await readTensor(gpu, t.dproj),
    dweight: await readTensor(gpu, t.dweight),
    dbias: await readTensor(gpu, t.dbias),
  };
}

function gateReference(s: ShortConvConfig, x: GateInputs) {
  const { y } = shortConvGateForwardRef(x.u, x.proj, x.weight, x.bias, s);
  return { y, ...shortConvGateBackwardRef(x.u, x.proj, x.weight, x.bias, x.dy, s) };
}

for (const s of SHAPES) {
  const dims = `B=${s.batch} L=${s.seqLen} d=${s.width}`;
  Deno.test({
    name: `short conv gate: forward+backward ${dims}`,
    ...gpuTest,
    fn: async () => {
      const gpu = await testGpu();
      const x = gateInputs(s, s.batch * 100 + s.seqLen + s.width);
      const g = await gateSetup(gpu, s, x);
      await checkKernel({
        name: `short conv ${dims}`,
        reference: () => gateReference(s, x),
        gpu: async () => {
          submit(gpu, [g.forward, g.backward]);
          return await readGate(gpu, g.t);
        },
      });
      g.free();
    },
  });
}

Deno.test({
  name: "short conv gate: accumulate flags, parameter grads +=, bit-identical reruns",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const s: ShortConvConfig = { batch: 3, seqLen: 29, width: 24 };
    const x = gateInputs(s, 900);
    const g = await gateSetup(gpu, s, x, true);
    const ones = (t: Tensor) => writeTensor(gpu, t, new Float32Array(t.length).fill(1));
    const reset = () => [g.t.du, g.t.dproj, g.t.dweight, g.t.dbias].forEach(ones);
    reset();
    submit(gpu, [g.forward, g.backward]);
    const first = await readGate(gpu, g.t);
    const ref = gateReference(s, x);
    const plusOne = (v: Float64Array) => v.map((e) => e + 1);
    await checkKernel({
      name: "accumulate",
      reference: () => ({
        y: ref.y,
        du: plusOne(ref.du),
        dproj: plusOne(ref.dproj),
        dweight: plusOne(ref.dweight),
        dbias: plusOne(ref.dbias),
      }),
      gpu: () => first,
    });
    // A second backward without resetting adds the same gradients again (parameter grads always accumulate).
    submit(gpu, [g.backward]);
    await checkKernel({
      name: "accumulate twice",
      reference: () => ({ dweight: ref.dweight.map((e) => 2 * e + 1), dbias: ref.dbias.map((e) => 2 * e + 1) }),
      gpu: async () => ({ dweight: await readTensor(gpu, g.t.dweight), dbias: await readTensor(gpu, g.t.dbias) }),
    });
    reset();
    submit(gpu, [g.forward, g.backward]);
    const second = await readGate(gpu, g.t);
    for (const name of Object.keys(first) as (keyof typeof first)[]) {
      assertEquals(Array.from(second[name]), Array.from(first[name]), `${name} rerun`);
    }
    g.free();
  },
});

/** The full BaseConv layer on the GPU: matmul projection + gate, backward per the recipe in src/ops/short_conv.ts. */
Deno.test({
  name: "BaseConv layer (matmul projection + gate) matches the float64 layer reference, d=64 and d=192",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    for (const s of [{ batch: 2, seqLen: 17, width: 64 }, { batch: 1, seqLen: 5, width: 192 }]) {
      const rows = s.batch * s.seqLen, d = s.width, a = gpu.allocator;
      const seed = 40 + d;
      const u = f64(f32(randn(rows * d, seed))), dy = f64(f32(randn(rows * d, seed + 1)));
      const params: BaseConvParams = {
        projWeight: f64(f32(randn(d * d, seed + 2, 1 / Math.sqrt(d)))),
        projBias: f64(f32(randn(d, seed + 3, 0.1))),
        convWeight: f64(f32(randn(3 * d, seed + 4, 0.5))),
        convBias: f64(f32(randn(d, seed + 5, 0.5))),
      };
      const t = {
        u: a.tensor("u", [rows, d], "activations"),
        proj: a.tensor("proj", [rows, d], "activations"),
        y: a.tensor("y", [rows, d], "activations"),
        dy: a.tensor("dy", [rows, d], "activations"),
        du: a.tensor("du", [rows, d], "activations"),
        dproj: a.tensor("dproj", [rows, d], "activations"),
        ones: a.tensor("ones", [rows], "workspace"),
        pw: a.tensor("projection.weight", [d, d], "params"),
        pb: a.tensor("projection.bias", [d], "params"),
        cw: a.tensor("conv.weight", [d, 1, 3], "params"),
        cb: a.tensor("conv.bias", [d], "params"),
        dpw: a.tensor("projection.weight.grad", [d, d], "grads"),
        dpb: a.tensor("projection.bias.grad", [d], "grads"),
        dcw: a.tensor("conv.weight.grad", [d, 1, 3], "grads"),
        dcb: a.tensor("conv.bias.grad", [d], "grads"),
        scratch: a.tensor("scratch", [shortConvScratchLength(s)], "workspace"),
      };
      writeTensor(gpu, t.u, f32(u));
      writeTensor(gpu, t.dy, f32(dy));
      writeTensor(gpu, t.ones, new Float32Array(rows).fill(1));
      writeTensor(gpu, t.pw, f32(params.projWeight));
      writeTensor(gpu, t.pb, f32(params.projBias));
      writeTensor(gpu, t.cw, f32(params.convWeight));
      writeTensor(gpu, t.cb, f32(params.convBias));
      const steps: Dispatch[] = await withGpuErrors(gpu.device, "BaseConv layer setup", () => [
        matmul(gpu, "proj", { a: t.u, b: t.pw, bias: t.pb, out: t.proj, M: rows, N: d, K: d, transB: true }),
        shortConvGateForward(gpu, "gate", { ...s, u: t.u, proj: t.proj, weight: t.cw, bias: t.cb, y: t.y }),
        shortConvGateBackward(gpu, "gate.bwd", {
          ...s,
          u: t.u,
          proj: t.proj,
          weight: t.cw,
          bias: t.cb,
          dy: t.dy,
          du: t.du,
          dproj: t.dproj,
          dweight: t.dcw,
          dbias: t.dcb,
          scratch: t.scratch,
        }),
        // The projection's share of du is added after the gate's du is written.
        matmul(gpu, "proj.dx", { a: t.dproj, b: t.pw, out: t.du, M: rows, N: d, K: d, accumulate: true }),
        matmul(gpu, "proj.dw", { a: t.dproj, b: t.u, out: t.dpw, M: d, N: d, K: rows, transA: true, accumulate: true }),
        // Bias gradient = column sums of dproj = ones[1, rows]·dproj.
        matmul(gpu, "proj.db", { a: t.ones, b: t.dproj, out: t.dpb, M: 1, N: d, K: rows, accumulate: true }),
      ]);
      await checkKernel({
        name: `BaseConv B=${s.batch} L=${s.seqLen} d=${d}`,
        reference: () => {
          const fwd = baseConvForwardRef(u, params, s);
          const grads = baseConvBackwardRef(u, params, dy, s);
          return {
            y: fwd.y,
            du: grads.du,
            dprojWeight: grads.dprojWeight,
            dprojBias: grads.dprojBias,
            dconvWeight: grads.dconvWeight,
            dconvBias: grads.dconvBias,
          };
        },
        gpu: async () => {
          submit(gpu, steps);
          return {
            y: await readTensor(gpu, t.y),
            du: await readTensor(gpu, t.du),
            dprojWeight: await readTensor(gpu, t.dpw),
            dprojBias: await readTensor(gpu, t.dpb),
            dconvWeight: await readTensor(gpu, t.dcw),
            dconvBias: await readTensor(gpu, t.dcb),
          };
        },
      });
      Object.values(t).forEach((x) => a.free(x));
    }
  },
});

Deno.test("short conv reference: gate and layer gradients match finite differences", () => {
  const s: ShortConvConfig = { batch: 2, seqLen: 5, width: 3 };
  const x = gateInputs(s, 31);
  const gate = shortConvGateBackwardRef(x.u, x.proj, x.weight, x.bias, x.dy, s);
  const gateLoss = (u: Float64Array, proj: Float64Array, w: Float64Array, b: Float64Array) =>
    dot(shortConvGateForwardRef(u, proj, w, b, s).y, x.dy);
  checkFiniteDifferences("gate du", (u) => gateLoss(u, x.proj, x.weight, x.bias), x.u, gate.du);
  checkFiniteDifferences("gate dproj", (p) => gateLoss(x.u, p, x.weight, x.bias), x.proj, gate.dproj);
  checkFiniteDifferences("gate dweight", (w) => gateLoss(x.u, x.proj, w, x.bias), x.weight, gate.dweight);
  checkFiniteDifferences("gate dbias", (b) => gateLoss(x.u, x.proj, x.weight, b), x.bias, gate.dbias);

  const d = s.width;
  const p = {
    projWeight: randn(d * d, 32, 0.5),
    projBias: randn(d, 33),
    convWeight: randn(3 * d, 34),
    convBias: randn(d, 35),
  };
  const layer = baseConvBackwardRef(x.u, p, x.dy, s);
  const loss = (q: BaseConvParams, u = x.u) => dot(baseConvForwardRef(u, q, s).y, x.dy);
  checkFiniteDifferences("layer du", (u) => loss(p, u), x.u, layer.du);
  checkFiniteDifferences("layer dprojWeight", (w) => loss({ ...p, projWeight: w }), p.projWeight, layer.dprojWeight);
  checkFiniteDifferences("layer dprojBias", (b) => loss({ ...p, projBias: b }), p.projBias, layer.dprojBias);
  checkFiniteDifferences("layer dconvWeight", (w) => loss({ ...p, convWeight: w }), p.convWeight, layer.dconvWeight);
  checkFiniteDifferences("layer dconvBias", (b) => loss({ ...p, convBias: b }), p.convBias, layer.dconvBias);
});

Deno.test("short conv reference: PyTorch tap order and no history across sequences", () => {
  // One channel, w = [w0, w1, w2] on [u[t-2], u[t-1], u[t]], bias 0.5.
  const u = [1, 10, 100, 1000, 2, 20, 200];
  const conv = shortConvRef(u, [3, 5, 7], [0.5], { batch: 1, seqLen: 7, width: 1 });
  assertEquals(Array.from(conv.slice(0, 4)), [0.5 + 7, 0.5 + 5 + 70, 0.5 + 3 + 50 + 700, 0.5 + 30 + 500 + 7000]);
  // Two sequences of length 4 and 3 would be wrong shapes; use B = 2, L = 3 on the first 6 values.
  const two = shortConvRef(u.slice(0, 6), [3, 5, 7], [0.5], { batch: 2, seqLen: 3, width: 1 });
  const first = shortConvRef(u.slice(0, 3), [3, 5, 7], [0.5], { batch: 1, seqLen: 3, width: 1 });
  const second = shortConvRef(u.slice(3, 6), [3, 5, 7], [0.5], { batch: 1, seqLen: 3, width: 1 });
  assertEquals(Array.from(two), [...first, ...second]);
  assert(two[3] === 0.5 + 7 * 1000, "the second sequence starts with zero history");
});
