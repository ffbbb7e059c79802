import type { Tensor } from "../../src/gpu/allocator.ts";
import { type Gpu, readTensor, withGpuErrors, writeTensor } from "../../src/gpu/device.ts";
import {
  chunkedFromSeqLen,
  linearAttentionBackward,
  type LinearAttentionConfig,
  linearAttentionForward,
  type LinearAttentionVariant,
  parallelLinearAttentionVariant,
  rowsFitLoopLimit,
  rowsLoopIterations,
  selectLinearAttentionVariant,
  SOFTWARE_LOOP_LIMIT,
} from "../../src/ops/linear_attention.ts";
import { submit } from "../../src/ops/_dispatch.ts";
import {
  featureMap,
  LINEAR_ATTENTION_EPS,
  linearAttentionBackwardRef,
  linearAttentionForwardRef,
  type LinearAttentionKernel,
  linearAttentionRecurrentRef,
  type LinearAttentionShape,
} from "../../src/reference/linear_attention.ts";
import { assert, assertEquals } from "../_helpers/assert.ts";
import { checkFiniteDifferences, checkKernel, dot, f32, f64, randn } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

type Shape = Omit<LinearAttentionShape, "kernel">;

const KERNELS: LinearAttentionKernel[] = ["based", "rebased"];
const PARALLEL_VARIANTS: LinearAttentionVariant[] = ["rows", "tiled", "smem"];
// Every variant, forward and backward; "chunked" is the O(L) form (tested further below).
const VARIANTS: LinearAttentionVariant[] = [...PARALLEL_VARIANTS, "chunked"];
const SHAPES: Shape[] = [
  { batch: 1, seqLen: 1, heads: 1, featureDim: 4, valueDim: 3 },
  { batch: 2, seqLen: 5, heads: 1, featureDim: 3, valueDim: 2 },
  // The paper's head layout: H = 12, f = 16, dv = ⌊64/12⌋ = 5.
  { batch: 1, seqLen: 17, heads: 12, featureDim: 16, valueDim: 5 },
  { batch: 2, seqLen: 33, heads: 12, featureDim: 16, valueDim: 5 },
  // dv = 1 (d = 16), several key tiles.
  { batch: 2, seqLen: 33, heads: 1, featureDim: 16, valueDim: 1 },
  // More rows than one workgroup (64) and the widest dv (d = 512).
  { batch: 1, seqLen: 70, heads: 2, featureDim: 5, valueDim: 42 },
];

interface Inputs {
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  dy: Float64Array;
}

/** f32-representable inputs (so the reference sees exactly what the GPU sees). */
function makeInputs(s: Shape, seed: number): Inputs {
  const rows = s.batch * s.seqLen * s.heads;
  return {
    q: f64(f32(randn(rows * s.featureDim, seed))),
    k: f64(f32(randn(rows * s.featureDim, seed + 1))),
    v: f64(f32(randn(rows * s.valueDim, seed + 2))),
    dy: f64(f32(randn(rows * s.valueDim, seed + 3))),
  };
}

interface GpuSetup {
  tensors: Record<"q" | "k" | "v" | "y" | "zinv" | "dy" | "dq" | "dk" | "dv" | "dz", Tensor>;
  forward: ReturnType<typeof linearAttentionForward>;
  backward: ReturnType<typeof linearAttentionBackward>;
  free(): void;
}

/** Allocates, uploads and creates both ops; pipeline compile errors surface here instead of as all-zero outputs. */
function setup(gpu: Gpu, cfg: LinearAttentionConfig, inputs: Inputs, accumulate = false): Promise<GpuSetup> {
  const rows = cfg.batch * cfg.seqLen;
  const qkShape = [rows, cfg.heads * cfg.featureDim], vShape = [rows, cfg.heads * cfg.valueDim];
  const zShape = [rows, cfg.heads];
  const a = gpu.allocator;
  const tensors = {
    q: a.tensor("q", qkShape, "activations"),
    k: a.tensor("k", qkShape, "activations"),
    v: a.tensor("v", vShape, "activations"),
    y: a.tensor("y", vShape, "activations"),
    zinv: a.tensor("zinv", zShape, "activations"),
    dy: a.tensor("dy", vShape, "activations"),
    dq: a.tensor("dq", qkShape, "activations"),
    dk: a.tensor("dk", qkShape, "activations"),
    dv: a.tensor("dv", vShape, "activations"),
    dz: a.tensor("dz", zShape, "workspace"),
  };
  for (const name of ["q", "k", "v", "dy"] as const) writeTensor(gpu, tensors[name], f32(inputs[name]));
  const free = () => Object.values(tensors).forEach((t) => a.free(t));
  return withGpuErrors(gpu.device, "linear attention setup", () => ({
    tensors,
    forward: linearAttentionForward(gpu, "la.fwd", { ...cfg, ...tensors }),
    backward: linearAttentionBackward(gpu, "la.bwd", { ...cfg, ...tensors, accumulate }),
    free,
  }));
}

async function readAll(gpu: Gpu, t: GpuSetup["tensors"]) {
  return {
    y: await readTensor(gpu, t.y),
    zinv: await readTensor(gpu, t.zinv),
    dq: await readTensor(gpu, t.dq),
    dk: await readTensor(gpu, t.dk),
    dv: await readTensor(gpu, t.dv),
  };
}

function referenceOutputs(shape: LinearAttentionShape, x: Inputs) {
  const fwd = linearAttentionForwardRef(x.q, x.k, x.v, shape);
  const grads = linearAttentionBackwardRef(x.q, x.k, x.v, x.dy, shape);
  return { y: fwd.y, zinv: fwd.z.map((z) => 1 / (z + LINEAR_ATTENTION_EPS)), ...grads };
}

/**
 * fp32 vs float64. y and zinv use the default FP32 tolerance. A gradient's absolute error scales with the largest terms
 * summed into it, not with its own value: dA_ij = zinv_i·dy_i·(v_j − y_i) cancels catastrophically where y_i ≈ v_j
 * (ReBased row 0 has y_0 ≈ v_0 and dq_0 ≈ 0, yet fp32 leaves O(1e-7·|dy||v|/z) there; seen on an H200). So gradient
 * atol grows with the tensor's largest |value|.
 */
function tolerances(ref: Record<string, Float64Array>) {
  const maxAbs = (x: Float64Array) => x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  const grad = (x: Float64Array) => ({ rtol: 2e-4, atol: 2e-5 * (1 + maxAbs(x)) });
  return { dq: grad(ref.dq), dk: grad(ref.dk), dv: grad(ref.dv) };
}

for (const kernel of KERNELS) {
  for (const variant of VARIANTS) {
    for (const s of SHAPES) {
      const dims = `B=${s.batch} L=${s.seqLen} H=${s.heads} f=${s.featureDim} dv=${s.valueDim}`;
      Deno.test({
        name: `linear attention ${kernel} ${variant}: forward+backward ${dims}`,
        ...gpuTest,
        fn: async () => {
          const gpu = await testGpu();
          const shape: LinearAttentionShape = { ...s, kernel };
          const inputs = makeInputs(s, 10 * s.seqLen + s.heads);
          const g = await setup(gpu, { ...shape, variant }, inputs);
          const ref = referenceOutputs(shape, inputs);
          await checkKernel({
            name: `${kernel} ${variant} ${dims}`,
            reference: () => ref,
            gpu: async () => {
              submit(gpu, [g.forward, g.backward]);
              return await readAll(gpu, g.tensors);
            },
            tolerances: tolerances(ref),
          });
          g.free();
        },
      });
    }
  }
}

Deno.test({
  name: "linear attention: accumulate adds into dq/dk/dv, reruns are bit-identical, variants agree",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const s: Shape = { batch: 2, seqLen: 37, heads: 3, featureDim: 16, valueDim: 5 };
    for (const kernel of KERNELS) {
      const shape: LinearAttentionShape = { ...s, kernel };
      const inputs = makeInputs(s, 500);
      const ref = referenceOutputs(shape, inputs);
      const results: Record<string, Float32Array>[] = [];
      for (const variant of PARALLEL_VARIANTS) {
        const g = await setup(gpu, { ...shape, variant }, inputs, true);
        for (const name of ["dq", "dk", "dv"] as const) {
          writeTensor(gpu, g.tensors[name], new Float32Array(g.tensors[name].length).fill(1));
        }
        submit(gpu, [g.forward, g.backward]);
        const first = await readAll(gpu, g.tensors);
        await checkKernel({
          name: `${kernel} ${variant} accumulate`,
          reference: () => ({
            ...ref,
            dq: ref.dq.map((x) => x + 1),
            dk: ref.dk.map((x) => x + 1),
            dv: ref.dv.map((x) => x + 1),
          }),
          gpu: () => first,
          tolerances: tolerances(ref),
        });
        // Rerun with the gradients zeroed again: every output must be bit-identical.
        for (const name of ["dq", "dk", "dv"] as const) {
          writeTensor(gpu, g.tensors[name], new Float32Array(g.tensors[name].length).fill(1));
        }
        submit(gpu, [g.forward, g.backward]);
        const second = await readAll(gpu, g.tensors);
        for (const name of Object.keys(first) as (keyof typeof first)[]) {
          assertEquals(Array.from(second[name]), Array.from(first[name]), `${kernel} ${variant} ${name} rerun`);
        }
        results.push(first);
        g.free();
      }
      // All parallel variants add the same terms in the same order.
      for (let v = 1; v < results.length; v++) {
        for (const name of Object.keys(results[0])) {
          const what = `${kernel} ${PARALLEL_VARIANTS[v]} vs rows ${name}`;
          assertEquals(Array.from(results[v][name]), Array.from(results[0][name]), what);
        }
      }
    }
  },
});

Deno.test({
  name: "linear attention: odd workgroup and key-tile sizes (tile edges inside the causal boundary)",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const s: Shape = { batch: 2, seqLen: 37, heads: 2, featureDim: 6, valueDim: 3 };
    const tunings: Partial<LinearAttentionConfig>[] = [
      { variant: "tiled", rowsPerWorkgroup: 16, keyTile: 5 },
      { variant: "tiled", rowsPerWorkgroup: 7, keyTile: 64 },
      { variant: "rows", rowsPerWorkgroup: 8 },
      { variant: "smem", threadsPerWorkgroup: 40, keyTile: 5 },
      // Fewer invocations than columns: one row per workgroup.
      { variant: "smem", threadsPerWorkgroup: 1, keyTile: 64 },
    ];
    for (const kernel of KERNELS) {
      const shape: LinearAttentionShape = { ...s, kernel };
      const inputs = makeInputs(s, 600);
      const ref = referenceOutputs(shape, inputs);
      for (const tuning of tunings) {
        const g = await setup(gpu, { ...shape, ...tuning }, inputs);
        await checkKernel({
          name: `${kernel} ${JSON.stringify(tuning)}`,
          reference: () => ref,
          gpu: async () => {
            submit(gpu, [g.forward, g.backward]);
            return await readAll(gpu, g.tensors);
          },
          tolerances: tolerances(ref),
        });
        g.free();
      }
    }
  },
});

Deno.test({
  name: "linear attention rows variant: several rows per invocation (block edges inside the causal boundary)",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const s: Shape = { batch: 2, seqLen: 37, heads: 2, featureDim: 8, valueDim: 3 };
    const tunings: Partial<LinearAttentionConfig>[] = [
      { variant: "rows", rowBlock: 1 },
      { variant: "rows", rowBlock: 3, rowsPerWorkgroup: 5 },
      { variant: "rows", rowBlock: 8, rowsPerWorkgroup: 8 },
    ];
    for (const kernel of KERNELS) {
      const shape: LinearAttentionShape = { ...s, kernel };
      const inputs = makeInputs(s, 700);
      const ref = referenceOutputs(shape, inputs);
      const results: Record<string, Float32Array>[] = [];
      for (const tuning of tunings) {
        const g = await setup(gpu, { ...shape, ...tuning }, inputs);
        submit(gpu, [g.forward, g.backward]);
        const out = await readAll(gpu, g.tensors);
        await checkKernel({
          name: `${kernel} ${JSON.stringify(tuning)}`,
          reference: () => ref,
          gpu: () => out,
          tolerances: tolerances(ref),
        });
        results.push(out);
        g.free();
      }
      // The same sums in the same order whatever the block.
      for (let t = 1; t < results.length; t++) {
        for (const name of Object.keys(results[0])) {
          assertEquals(Array.from(results[t][name]), Array.from(results[0][name]), `${kernel} block ${t} ${name}`);
        }
      }
    }
  },
});

/** Random gradients already in dq/dk/dv (accumulate adds to them): written before every run. */
function prefill(gpu: Gpu, g: GpuSetup, seed: number): Record<"dq" | "dk" | "dv", Float32Array> {
  const out = {} as Record<"dq" | "dk" | "dv", Float32Array>;
  (["dq", "dk", "dv"] as const).forEach((name, i) => {
    out[name] = f32(randn(g.tensors[name].length, seed + i));
    writeTensor(gpu, g.tensors[name], out[name]);
  });
  return out;
}

/**
 * Chunked forward + backward (accumulating into random gradients) vs the float64 reference, then a rerun that must be
 * bit-identical. Lengths around and between the 16-token chunks, the paper's head layout (H = 12, f = 16) and smaller
 * f, dv = 1, 5 and 42 (d = 16, 64 and 512).
 */
async function checkChunked(gpu: Gpu, kernel: LinearAttentionKernel, s: Shape, tuning: Partial<LinearAttentionConfig>) {
  const shape: LinearAttentionShape = { ...s, kernel };
  const inputs = makeInputs(s, 31 * s.seqLen + s.valueDim);
  const ref = referenceOutputs(shape, inputs);
  const g = await setup(gpu, { ...shape, variant: "chunked", ...tuning }, inputs, true);
  const name = `${kernel} chunked B=${s.batch} L=${s.seqLen} H=${s.heads} f=${s.featureDim} dv=${s.valueDim} ` +
    JSON.stringify(tuning);
  const initial = prefill(gpu, g, 900);
  submit(gpu, [g.forward, g.backward]);
  const first = await readAll(gpu, g.tensors);
  const plus = (x: Float64Array, y: Float32Array) => x.map((v, i) => v + y[i]);
  await checkKernel({
    name,
    reference: () => ({
      ...ref,
      dq: plus(ref.dq, initial.dq),
      dk: plus(ref.dk, initial.dk),
      dv: plus(ref.dv, initial.dv),
    }),
    gpu: () => first,
    tolerances: tolerances(ref),
  });
  prefill(gpu, g, 900);
  submit(gpu, [g.forward, g.backward]);
  const second = await readAll(gpu, g.tensors);
  for (const key of Object.keys(first) as (keyof typeof first)[]) {
    assertEquals(Array.from(second[key]), Array.from(first[key]), `${name}: ${key} differs on a rerun`);
  }
  g.free();
}

const CHUNKED_SHAPES: Shape[] = [
  { batch: 1, seqLen: 1, heads: 12, featureDim: 16, valueDim: 1 },
  { batch: 2, seqLen: 5, heads: 1, featureDim: 16, valueDim: 5 },
  { batch: 1, seqLen: 17, heads: 12, featureDim: 5, valueDim: 42 },
  { batch: 2, seqLen: 33, heads: 12, featureDim: 16, valueDim: 5 },
  { batch: 1, seqLen: 70, heads: 1, featureDim: 16, valueDim: 42 },
  { batch: 2, seqLen: 70, heads: 12, featureDim: 16, valueDim: 1 },
];

for (const kernel of KERNELS) {
  Deno.test({
    name: `linear attention chunked ${kernel}: forward + accumulating backward vs float64, reruns bit-identical`,
    ...gpuTest,
    fn: async () => {
      const gpu = await testGpu();
      for (const s of CHUNKED_SHAPES) await checkChunked(gpu, kernel, s, {});
    },
  });
}

Deno.test({
  name: "linear attention chunked: column tiles and segments (state carried between dispatches)",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const cases: [Shape, Partial<LinearAttentionConfig>][] = [
      // Forward tiles of 4 value columns (11, the last one of 2), backward tiles of 4 of the 43 state columns (the
      // last one of 3), a partial last chunk.
      [{ batch: 1, seqLen: 37, heads: 2, featureDim: 16, valueDim: 42 }, { chunkColumns: 4 }],
      // One or two chunks per dispatch: the state goes through the workspace at the segment boundaries, both ways.
      [{ batch: 2, seqLen: 70, heads: 3, featureDim: 16, valueDim: 5 }, { segmentChunks: 1 }],
      [{ batch: 1, seqLen: 70, heads: 2, featureDim: 5, valueDim: 42 }, { segmentChunks: 2 }],
    ];
    for (const kernel of KERNELS) {
      for (const [s, tuning] of cases) await checkChunked(gpu, kernel, s, tuning);
    }
  },
});

Deno.test({
  name: "linear attention chunked: exact at L = 1100 with the default segments (llvmpipe's loop limit)",
  ...gpuTest,
  fn: async () => {
    // On CPU rasterisers 69 chunks make five dispatches per sweep; the parallel variants stop short of such lengths
    // there once L·dv exceeds what llvmpipe's 65535-iteration loop limit lets one invocation finish.
    const gpu = await testGpu();
    for (const kernel of KERNELS) {
      await checkChunked(gpu, kernel, { batch: 1, seqLen: 1100, heads: 1, featureDim: 16, valueDim: 5 }, {});
    }
    // The widest state (Based, 153 features, 17 columns per tile): each segment stays within the limit too.
    await checkChunked(gpu, "based", { batch: 1, seqLen: 600, heads: 1, featureDim: 16, valueDim: 42 }, {});
  },
});

Deno.test("linear attention: the rows variant's loop count bound (llvmpipe's 65535-iteration limit)", () => {
  const cfg = { seqLen: 512, featureDim: 16, valueDim: 42 };
  // One row per invocation: L·(F + DV) forward, plus the prologue/epilogue loops.
  assertEquals(rowsLoopIterations(cfg, "forward", 1), 512 * 58 + 2 * 58);
  // More rows per invocation, more iterations per key (the 42-column loops are not unrolled): 4 rows pass the limit
  // at L = 512 (measured: stopped early), 1 row does not (measured: correct).
  assert(rowsLoopIterations(cfg, "forward", 4) > SOFTWARE_LOOP_LIMIT);
  assert(rowsLoopIterations(cfg, "forward", 1) <= SOFTWARE_LOOP_LIMIT);
  assert(rowsFitLoopLimit(cfg));
  assert(!rowsFitLoopLimit({ ...cfg, seqLen: 1024 }));
  for (const pass of ["forward", "backward_dq", "backward_dkdv"] as const) {
    assert(rowsLoopIterations({ ...cfg, seqLen: 1024 }, pass, 2) > rowsLoopIterations(cfg, pass, 2));
  }
});

Deno.test({
  name: "linear attention rows variant at L = 512, dv = 42: rows per invocation shrink to fit the loop limit",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const s: Shape = { batch: 1, seqLen: 512, heads: 1, featureDim: 16, valueDim: 42 };
    const shape: LinearAttentionShape = { ...s, kernel: "rebased" };
    const inputs = makeInputs(s, 800);
    const ref = referenceOutputs(shape, inputs);
    const g = await setup(gpu, { ...shape, variant: "rows" }, inputs);
    await checkKernel({
      name: "rows L=512 dv=42",
      reference: () => ref,
      gpu: async () => {
        submit(gpu, [g.forward, g.backward]);
        return await readAll(gpu, g.tensors);
      },
      tolerances: tolerances(ref),
    });
    g.free();
  },
});

Deno.test({
  name: "linear attention: selectLinearAttentionVariant picks chunked from its threshold on, when f ≤ 16",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const parallel = parallelLinearAttentionVariant(gpu);
    for (const valueDim of [1, 5, 42]) {
      const from = chunkedFromSeqLen(gpu, valueDim);
      const choose = (seqLen: number, featureDim = 16) =>
        selectLinearAttentionVariant(gpu, { seqLen, featureDim, valueDim });
      if (!Number.isFinite(from)) {
        assertEquals(choose(1 << 20), parallel, "never chunked on this backend");
        continue;
      }
      // Below the threshold: parallel, unless the rows variant's loops would pass llvmpipe's limit.
      const fits = !gpu.info.software || rowsFitLoopLimit({ seqLen: from - 1, featureDim: 16, valueDim });
      assertEquals(choose(from - 1), fits ? parallel : "chunked");
      assertEquals(choose(from), "chunked");
      assertEquals(choose(4 * from, 4), "chunked");
      assertEquals(choose(4 * from, 17), parallel);
    }
    if (gpu.info.software && gpu.info.backend !== "gl") {
      // f = 8, dv = 100: the one-row dk/dv loop runs 216 iterations per key, past 65535 from L = 304 on, before the
      // wide heads' threshold.
      const wide = { featureDim: 8, valueDim: 100 };
      assert(320 < chunkedFromSeqLen(gpu, 100));
      assertEquals(selectLinearAttentionVariant(gpu, { seqLen: 250, ...wide }), parallel);
      assertEquals(selectLinearAttentionVariant(gpu, { seqLen: 320, ...wide }), "chunked");
    }
    const s: Shape = { batch: 1, seqLen: 4, heads: 1, featureDim: 17, valueDim: 2 };
    const g = await setup(gpu, { ...s, kernel: "based" }, makeInputs(s, 3));
    let message = "";
    try {
      linearAttentionForward(gpu, "f = 17", { ...s, kernel: "based", variant: "chunked", ...g.tensors });
    } catch (e) {
      message = (e as Error).message;
    }
    g.free();
    assert(/featureDim ≤ 16/.test(message), `expected the chunked variant to reject f = 17, got "${message}"`);
  },
});

Deno.test("linear attention reference: gradients match finite differences (based, rebased)", () => {
  for (const kernel of KERNELS) {
    const shape: LinearAttentionShape = { batch: 2, seqLen: 5, heads: 2, featureDim: 3, valueDim: 2, kernel };
    const x = makeInputs(shape, 77);
    const g = linearAttentionBackwardRef(x.q, x.k, x.v, x.dy, shape);
    const loss = (q: Float64Array, k: Float64Array, v: Float64Array) =>
      dot(linearAttentionForwardRef(q, k, v, shape).y, x.dy);
    const opts = { eps: 1e-6, rtol: 1e-5, atol: 1e-7, samples: 60 };
    checkFiniteDifferences(`${kernel} dq`, (q) => loss(q, x.k, x.v), x.q, g.dq, opts);
    checkFiniteDifferences(`${kernel} dk`, (k) => loss(x.q, k, x.v), x.k, g.dk, opts);
    checkFiniteDifferences(`${kernel} dv`, (v) => loss(x.q, x.k, v), x.v, g.dv, opts);
  }
});

Deno.test("linear attention reference: scores are 1 + s + s²/2 (based) and s² (rebased) with s = q·k/√f", () => {
  // One token: y = v·g(s)/(g(s) + eps), z = g(s). Two tokens pin the causal weights of the second row.
  const f = 4;
  const q = [1, 2, 0, -1, 0.5, 0, 1, 1], k = [2, 0, 1, 1, -1, 1, 0, 2], v = [3, 5];
  const s = (i: number, j: number) => {
    let x = 0;
    for (let a = 0; a < f; a++) x += q[i * f + a] * k[j * f + a];
    return x / 2;
  };
  for (const kernel of KERNELS) {
    const g = (x: number) => kernel === "based" ? 1 + x + x * x / 2 : x * x;
    const out = linearAttentionForwardRef(q, k, v, {
      batch: 1,
      seqLen: 2,
      heads: 1,
      featureDim: f,
      valueDim: 1,
      kernel,
    });
    const z1 = g(s(1, 0)) + g(s(1, 1));
    assert(Math.abs(out.z[0] - g(s(0, 0))) < 1e-12, `${kernel} z0`);
    assert(Math.abs(out.z[1] - z1) < 1e-12, `${kernel} z1`);
    assert(Math.abs(out.y[1] - (g(s(1, 0)) * 3 + g(s(1, 1)) * 5) / (z1 + 1e-12)) < 1e-12, `${kernel} y1`);
  }
});

Deno.test("linear attention reference: parallel form equals the recurrent form with the outer-product feature map", () => {
  const maxDiff = (a: Float64Array, b: Float64Array) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
  for (const kernel of KERNELS) {
    const shape: LinearAttentionShape = { batch: 2, seqLen: 9, heads: 3, featureDim: 4, valueDim: 3, kernel };
    const x = makeInputs(shape, 123);
    const parallel = linearAttentionForwardRef(x.q, x.k, x.v, shape);
    const recurrent = linearAttentionRecurrentRef(x.q, x.k, x.v, shape);
    assert(maxDiff(parallel.y, recurrent.y) < 1e-10, `${kernel}: y differs by ${maxDiff(parallel.y, recurrent.y)}`);
    assert(maxDiff(parallel.z, recurrent.z) < 1e-10, `${kernel}: z differs by ${maxDiff(parallel.z, recurrent.z)}`);
    assertEquals(featureMap(kernel, x.q, 0, 4).length, kernel === "based" ? 1 + 4 + 16 : 16);
  }
  // The elementwise square φ(x) = x⊙x/f^(1/2) is a different kernel (Σ q_a² k_a² / f, not (q·k)²/f): the parallel
  // ReBased form must disagree with it, so the check above really pins the outer-product map.
  const shape: LinearAttentionShape = { batch: 1, seqLen: 9, heads: 2, featureDim: 4, valueDim: 3, kernel: "rebased" };
  const x = makeInputs(shape, 321);
  const elementwise = linearAttentionRecurrentRef(x.q, x.k, x.v, shape, (v, offset) => {
    const out = new Float64Array(4);
    for (let a = 0; a < 4; a++) out[a] = v[offset + a] * v[offset + a] / Math.sqrt(Math.sqrt(4));
    return out;
  });
  const parallel = linearAttentionForwardRef(x.q, x.k, x.v, shape);
  assert(maxDiff(parallel.y, elementwise.y) > 1e-2, "elementwise square should not match the ReBased kernel");
});

Deno.test({
  name: "linear attention: rejects tensors too small for the shape",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const s: Shape = { batch: 1, seqLen: 4, heads: 2, featureDim: 3, valueDim: 2 };
    const g = await setup(gpu, { ...s, kernel: "based" }, makeInputs(s, 1));
    let message = "";
    try {
      linearAttentionForward(gpu, "too long", { ...s, kernel: "based", seqLen: 5, ...g.tensors });
    } catch (e) {
      message = (e as Error).message;
    }
    g.free();
    assert(/needs/.test(message), `expected a size error, got "${message}"`);
  },
});
