import type { Tensor } from "../../src/gpu/allocator.ts";
import { type Gpu, readTensor, withGpuErrors, writeTensor } from "../../src/gpu/device.ts";
import { type Dispatch, submit } from "../../src/ops/_dispatch.ts";
import {
  createHyenaGate,
  createHyenaGateBackward,
  createLongConv,
  createLongConvBackward,
  createModulation,
  createModulationBackward,
  createShortFilter,
  createShortFilterBackward,
  createSinActivation,
  createSinActivationBackward,
  type HyenaShape,
  LONG_CONV_BLOCK_TOKENS,
  longConvLoopIterations,
  type LongConvOptions,
  longConvSegments,
  longConvSegmentTokens,
  type MatrixArg,
  selectLongConvVariant,
  SOFTWARE_LOOP_LIMIT,
} from "../../src/ops/hyena.ts";
import {
  columnsRef,
  concatColumnsRef,
  gateBackwardRef,
  gateRef,
  HYENA_FILTER_ORDER,
  longConvBackwardRef,
  longConvRef,
  modulationBackwardRef,
  modulationRef,
  shortFilterBackwardRef,
  shortFilterRef,
  sinActivationBackwardRef,
  sinActivationRef,
} from "../../src/reference/hyena.ts";
import { assert, assertEquals, assertThrows } from "../_helpers/assert.ts";
import {
  checkKernel,
  f32,
  f64,
  FP32_TOLERANCE,
  randn,
  type Tolerance,
  worstMismatch,
} from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

/**
 * Tolerance: FP32_TOLERANCE for every output up to L = 130 (HYENA_TEST_VERBOSE=1 prints each output's worst
 * |gpu - ref| / tolerance). Worst observed on lavapipe: dh 0.16 of it (direct, B = 1, L = 130, d = 64: sums of 130
 * dy·v products), the fft variant's dh 0.07, short filter dweight 0.07, everything else ≤ 0.05. The 4096-token
 * sequence has its own LONG_TOLERANCE.
 */
const TOLERANCE: Tolerance = FP32_TOLERANCE;
/** Value pre-filled into activation gradients (they must be overwritten) and left in the columns nobody writes. */
const JUNK = 123;
const VERBOSE = Boolean(Deno.env.get("HYENA_TEST_VERBOSE"));

const q = (a: Float64Array) => f64(f32(a));
const plusOne = (a: Float64Array) => a.map((v) => v + 1);
const dims = (s: HyenaShape) => `B=${s.batch} L=${s.seqLen} d=${s.channels}`;

/** Prints the worst ratio of each output (HYENA_TEST_VERBOSE=1). */
function report(
  name: string,
  ref: Record<string, ArrayLike<number>>,
  got: Record<string, ArrayLike<number>>,
  tol = TOLERANCE,
) {
  if (!VERBOSE) return;
  const parts = Object.entries(ref).map(([k, e]) => `${k} ${worstMismatch(got[k], e, tol).ratio.toFixed(3)}`);
  console.log(`${name}: ${parts.join(", ")}`);
}

async function check(
  name: string,
  reference: Record<string, ArrayLike<number>>,
  gpu: () => Promise<Record<string, Float32Array>>,
) {
  const got = await gpu();
  report(name, reference, got);
  await checkKernel({ name, reference: () => reference, gpu: () => got, tolerance: TOLERANCE });
}

interface Inputs {
  /** in_proj's output [rows, 3d], the short filter's weight [3d, 1, 3], bias [3d], dL/duc [rows, 3d]. */
  u: Float64Array;
  shortWeight: Float64Array;
  shortBias: Float64Array;
  duc: Float64Array;
  /** The uc the gates read (x1 | x2 | v), dL/dv1, the long conv output the post-gate reads, dL/dv2. */
  gateSrc: Float64Array;
  dv1: Float64Array;
  yIn: Float64Array;
  dv2: Float64Array;
  /** Sin activation over [L, F]. */
  sinX: Float64Array;
  freq: Float64Array;
  sinDy: Float64Array;
  /** Modulation [L, d]. */
  hraw: Float64Array;
  dhIn: Float64Array;
  /** Long conv: v1 [rows, d], h [L, d] ~ N(0, 0.1), D [d], dL/dy [rows, d]. */
  v1: Float64Array;
  h: Float64Array;
  convBias: Float64Array;
  dy: Float64Array;
}

function makeInputs(s: HyenaShape, seed: number): Inputs {
  const rows = s.batch * s.seqLen, d = s.channels, n = rows * d, L = s.seqLen, F = HYENA_FILTER_ORDER;
  return {
    u: q(randn(3 * n, seed)),
    shortWeight: q(randn(9 * d, seed + 1, 0.5)),
    shortBias: q(randn(3 * d, seed + 2, 0.5)),
    duc: q(randn(3 * n, seed + 3)),
    gateSrc: q(randn(3 * n, seed + 4)),
    dv1: q(randn(n, seed + 5)),
    yIn: q(randn(n, seed + 6)),
    dv2: q(randn(n, seed + 7)),
    // The filter MLP's pre-activations: z·W0ᵀ + b0 with z in [0, 1]², W0 ~ U(±1/√3); later layers ~ N(0, 1).
    sinX: q(randn(L * F, seed + 8, 1.5)),
    freq: q(randn(F, seed + 9, 0.2).map((v) => v + 1)),
    sinDy: q(randn(L * F, seed + 10)),
    hraw: q(randn(L * d, seed + 11, 0.1)),
    dhIn: q(randn(L * d, seed + 12)),
    v1: q(randn(n, seed + 13)),
    h: q(randn(L * d, seed + 14, 0.1)),
    convBias: q(randn(d, seed + 15)),
    dy: q(randn(n, seed + 16)),
  };
}

const OUTPUTS = [
  "uc",
  "du",
  "shortDweight",
  "shortDbias",
  "v1Out",
  "v2Out",
  "dgate",
  "dyOut",
  "sinY",
  "sinDx",
  "dfreq",
  "hOut",
  "dhraw",
  "y",
  "dv",
  "dh",
  "dbias",
] as const;
type Output = typeof OUTPUTS[number];
const PARAM_GRADS: readonly Output[] = ["shortDweight", "shortDbias", "dfreq", "dbias"];

/** The float64 reference of every output, parameter grads +1 (the pre-filled value). */
function reference(s: HyenaShape, x: Inputs): Record<Output, Float64Array> {
  const rows = s.batch * s.seqLen, d = s.channels, L = s.seqLen, wide = { ...s, channels: 3 * d };
  const short = { u: x.u, weight: x.shortWeight, bias: x.shortBias };
  const sb = shortFilterBackwardRef(short, x.duc, wide);
  const col = (c0: number) => columnsRef(x.gateSrc, rows, 3 * d, c0, d);
  const x1 = col(0), x2 = col(d), v = col(2 * d);
  const pre = gateBackwardRef(v, x1, x.dv1), post = gateBackwardRef(x.yIn, x2, x.dv2);
  const sin = sinActivationBackwardRef(x.sinX, x.freq, x.sinDy);
  const conv = { v: x.v1, h: x.h, bias: x.convBias };
  const cb = longConvBackwardRef(conv, x.dy, s);
  return {
    uc: shortFilterRef(short, wide),
    du: sb.du,
    shortDweight: plusOne(sb.dweight),
    shortDbias: plusOne(sb.dbias),
    v1Out: gateRef(v, x1),
    v2Out: gateRef(x.yIn, x2),
    dgate: concatColumnsRef(rows, [{ data: pre.db, width: d }, { data: post.db, width: d }, {
      data: pre.da,
      width: d,
    }]),
    dyOut: post.da,
    sinY: sinActivationRef(x.sinX, x.freq),
    sinDx: sin.dx,
    dfreq: plusOne(sin.dfreq),
    hOut: modulationRef(x.hraw, L, d),
    dhraw: modulationBackwardRef(x.dhIn, L, d),
    y: longConvRef(conv, s),
    dv: cb.dv,
    dh: cb.dh,
    dbias: plusOne(cb.dbias),
  };
}

/**
 * Every op on one shape, as the mixer wires them: the gates read x1, x2, v as column slices of uc and write dx1, dx2,
 * dv into column slices of one duc buffer. Parameter grads are pre-filled with 1 (they must accumulate), activation
 * grads and outputs with JUNK (they must be overwritten).
 */
async function setup(gpu: Gpu, s: HyenaShape, x: Inputs, conv: LongConvOptions = {}) {
  const release = gpu.allocator.scope();
  const a = gpu.allocator, rows = s.batch * s.seqLen, d = s.channels, L = s.seqLen, F = HYENA_FILTER_ORDER;
  const wide = { ...s, channels: 3 * d };
  const act = (name: string, width: number) => a.tensor(name, [rows, width], "activations");
  const t: Record<keyof Inputs | Output, Tensor> = {
    u: act("u", 3 * d),
    shortWeight: a.tensor("short_filter.weight", [3 * d, 1, 3], "params"),
    shortBias: a.tensor("short_filter.bias", [3 * d], "params"),
    duc: act("duc", 3 * d),
    gateSrc: act("uc.gates", 3 * d),
    dv1: act("dv1", d),
    yIn: act("y.in", d),
    dv2: act("dv2", d),
    sinX: a.tensor("sin.x", [L, F], "activations"),
    freq: a.tensor("freq", [F], "params"),
    sinDy: a.tensor("sin.dy", [L, F], "activations"),
    hraw: a.tensor("hraw", [L, d], "activations"),
    dhIn: a.tensor("dh.in", [L, d], "activations"),
    v1: act("v1", d),
    h: a.tensor("h", [L, d], "activations"),
    convBias: a.tensor("filter_fn.bias", [d], "params"),
    dy: act("dy", d),
    uc: act("uc", 3 * d),
    du: act("du", 3 * d),
    shortDweight: a.tensor("short_filter.weight.grad", [3 * d, 1, 3], "grads"),
    shortDbias: a.tensor("short_filter.bias.grad", [3 * d], "grads"),
    v1Out: act("v1.out", d),
    v2Out: act("v2.out", d),
    dgate: act("duc.gates", 3 * d),
    dyOut: act("dy.out", d),
    sinY: a.tensor("sin.y", [L, F], "activations"),
    sinDx: a.tensor("sin.dx", [L, F], "activations"),
    dfreq: a.tensor("freq.grad", [F], "grads"),
    hOut: a.tensor("h.out", [L, d], "activations"),
    dhraw: a.tensor("dhraw", [L, d], "activations"),
    y: act("y", d),
    dv: act("dv", d),
    dh: a.tensor("dh", [L, d], "activations"),
    dbias: a.tensor("filter_fn.bias.grad", [d], "grads"),
  };
  for (const name of Object.keys(x) as (keyof Inputs)[]) writeTensor(gpu, t[name], f32(x[name]));
  const reset = () => {
    for (const name of OUTPUTS) {
      writeTensor(gpu, t[name], new Float32Array(t[name].length).fill(PARAM_GRADS.includes(name) ? 1 : JUNK));
    }
  };
  const colOf = (tensor: Tensor, column: number): MatrixArg => ({ tensor, column, rowStride: 3 * d });
  const ops: Dispatch[] = await withGpuErrors(gpu.device, "hyena setup", () => [
    createShortFilter(gpu, "short", { shape: wide, u: t.u, weight: t.shortWeight, bias: t.shortBias, y: t.uc }),
    createShortFilterBackward(gpu, "short.bwd", {
      shape: wide,
      u: t.u,
      weight: t.shortWeight,
      dy: t.duc,
      du: t.du,
      dweight: t.shortDweight,
      dbias: t.shortDbias,
    }),
    createHyenaGate(gpu, "pregate", {
      shape: s,
      a: colOf(t.gateSrc, 2 * d),
      b: colOf(t.gateSrc, 0),
      out: t.v1Out,
    }),
    createHyenaGate(gpu, "postgate", { shape: s, a: t.yIn, b: colOf(t.gateSrc, d), out: t.v2Out }),
    createHyenaGateBackward(gpu, "pregate.bwd", {
      shape: s,
      a: colOf(t.gateSrc, 2 * d),
      b: colOf(t.gateSrc, 0),
      dout: t.dv1,
      da: colOf(t.dgate, 2 * d),
      db: colOf(t.dgate, 0),
    }),
    createHyenaGateBackward(gpu, "postgate.bwd", {
      shape: s,
      a: t.yIn,
      b: colOf(t.gateSrc, d),
      dout: t.dv2,
      da: t.dyOut,
      db: colOf(t.dgate, d),
    }),
    createSinActivation(gpu, "sin", { rows: L, width: F, x: t.sinX, freq: t.freq, y: t.sinY }),
    createSinActivationBackward(gpu, "sin.bwd", {
      rows: L,
      width: F,
      x: t.sinX,
      freq: t.freq,
      dy: t.sinDy,
      dx: t.sinDx,
      dfreq: t.dfreq,
    }),
    createModulation(gpu, "mod", { seqLen: L, channels: d, hraw: t.hraw, h: t.hOut }),
    createModulationBackward(gpu, "mod.bwd", { seqLen: L, channels: d, dh: t.dhIn, dhraw: t.dhraw }),
    createLongConv(gpu, "conv", { ...conv, shape: s, v: t.v1, h: t.h, bias: t.convBias, y: t.y }),
    createLongConvBackward(gpu, "conv.bwd", {
      ...conv,
      shape: s,
      v: t.v1,
      h: t.h,
      bias: t.convBias,
      dy: t.dy,
      dv: t.dv,
      dh: t.dh,
      dbias: t.dbias,
    }),
  ]);
  const run = async (): Promise<Record<Output, Float32Array>> => {
    reset();
    submit(gpu, ops);
    const out = {} as Record<Output, Float32Array>;
    for (const name of OUTPUTS) out[name] = await readTensor(gpu, t[name]);
    return out;
  };
  return { t, run, release };
}

const SHAPES: HyenaShape[] = [
  { batch: 1, seqLen: 1, channels: 1 },
  { batch: 2, seqLen: 5, channels: 3 },
  { batch: 2, seqLen: 33, channels: 10 },
  { batch: 1, seqLen: 130, channels: 64 },
];

for (const s of SHAPES) {
  Deno.test({
    name: `hyena ops: forward and every gradient vs float64, ${dims(s)}`,
    ...gpuTest,
    fn: async () => {
      const gpu = await testGpu();
      const x = makeInputs(s, 10 * s.batch + s.seqLen + s.channels);
      const g = await setup(gpu, s, x);
      const first = await g.run();
      await check(dims(s), reference(s, x), () => Promise.resolve(first));
      // Fixed-order reductions: a rerun is bit-identical.
      const second = await g.run();
      for (const name of OUTPUTS) assertEquals(second[name], first[name], `${name} differs between runs`);
      g.release();
    },
  });
}

// ---------------------------------------------------------------------------------------------------------------------
// Long conv variants, schedules and strided views

/**
 * The long conv and its backward alone, with v, y, dy, dv as column slices of wider matrices (`layout`: stride and
 * column of each) whose other columns hold JUNK, and dv pre-filled with 1 when `accumulate`.
 */
interface ViewLayout {
  stride: number;
  column: number;
}
const DENSE = (d: number): ViewLayout => ({ stride: d, column: 0 });

interface ConvCase {
  s: HyenaShape;
  opts: LongConvOptions;
  layouts?: { v: ViewLayout; y: ViewLayout; dy: ViewLayout; dv: ViewLayout };
  accumulate?: boolean;
}

/** Spreads a dense [rows, d] matrix into the columns of a [rows, stride] one filled with JUNK. */
function spread(m: ArrayLike<number>, rows: number, d: number, l: ViewLayout): Float32Array {
  const out = new Float32Array(rows * l.stride).fill(JUNK);
  for (let r = 0; r < rows; r++) for (let j = 0; j < d; j++) out[r * l.stride + l.column + j] = m[r * d + j];
  return out;
}

async function runConv(gpu: Gpu, c: ConvCase, x: Inputs): Promise<Record<string, Float32Array>> {
  const release = gpu.allocator.scope();
  const { s } = c, rows = s.batch * s.seqLen, d = s.channels, L = s.seqLen, a = gpu.allocator;
  const lay = c.layouts ?? { v: DENSE(d), y: DENSE(d), dy: DENSE(d), dv: DENSE(d) };
  const wide = (name: string, l: ViewLayout, data: Float32Array) => {
    const t = a.tensor(name, [rows, l.stride], "activations");
    writeTensor(gpu, t, data);
    return { tensor: t, column: l.column, rowStride: l.stride };
  };
  const v = wide("v", lay.v, spread(x.v1, rows, d, lay.v));
  const dy = wide("dy", lay.dy, spread(x.dy, rows, d, lay.dy));
  const y = wide("y", lay.y, new Float32Array(rows * lay.y.stride).fill(JUNK));
  const dvInit = spread(new Float64Array(rows * d).fill(c.accumulate ? 1 : JUNK), rows, d, lay.dv);
  const dv = wide("dv", lay.dv, dvInit);
  const h = a.tensor("h", [L, d], "activations"), bias = a.tensor("bias", [d], "params");
  const dh = a.tensor("dh", [L, d], "activations"), dbias = a.tensor("bias.grad", [d], "grads");
  writeTensor(gpu, h, f32(x.h));
  writeTensor(gpu, bias, f32(x.convBias));
  writeTensor(gpu, dh, new Float32Array(L * d).fill(JUNK));
  writeTensor(gpu, dbias, new Float32Array(d).fill(1));
  const ops = await withGpuErrors(gpu.device, "long conv setup", () => [
    createLongConv(gpu, "conv", { ...c.opts, shape: s, v, h, bias, y }),
    createLongConvBackward(gpu, "conv.bwd", {
      ...c.opts,
      shape: s,
      v,
      h,
      bias,
      dy,
      dv,
      dh,
      dbias,
      accumulate: c.accumulate,
    }),
  ]);
  submit(gpu, ops);
  const out = {
    yWide: await readTensor(gpu, y.tensor),
    dvWide: await readTensor(gpu, dv.tensor),
    dh: await readTensor(gpu, dh),
    dbias: await readTensor(gpu, dbias),
  };
  release();
  return out;
}

/** The wide y and dv as the reference has them: the slices computed, every other column JUNK. */
function convReference(c: ConvCase, x: Inputs) {
  const { s } = c, rows = s.batch * s.seqLen, d = s.channels;
  const lay = c.layouts ?? { v: DENSE(d), y: DENSE(d), dy: DENSE(d), dv: DENSE(d) };
  const conv = { v: x.v1, h: x.h, bias: x.convBias };
  const g = longConvBackwardRef(conv, x.dy, s);
  return {
    yWide: f64(spread(longConvRef(conv, s), rows, d, lay.y)),
    dvWide: f64(spread(c.accumulate ? plusOne(g.dv) : g.dv, rows, d, lay.dv)),
    dh: g.dh,
    dbias: plusOne(g.dbias),
  };
}

const caseName = (c: ConvCase) =>
  `${dims(c.s)} ${c.opts.variant ?? "default"}${c.opts.vec4 === false ? " scalar" : ""}` +
  `${c.opts.blockTokens ? ` TB=${c.opts.blockTokens}` : ""}${
    c.opts.segmentTokens ? ` S=${c.opts.segmentTokens}` : ""
  }` +
  `${c.layouts ? " strided" : ""}${c.accumulate ? " accumulate" : ""}`;

Deno.test({
  name: "hyena ops: long conv, both variants, odd batches, blockings, segments, strided views and accumulate",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const s64 = { batch: 2, seqLen: 130, channels: 64 };
    const strided4 = {
      v: { stride: 16, column: 4 },
      y: { stride: 16, column: 8 },
      dy: { stride: 16, column: 8 },
      dv: {
        stride: 12,
        column: 4,
      },
    };
    const strided1 = {
      v: { stride: 11, column: 1 },
      y: { stride: 9, column: 0 },
      dy: { stride: 10, column: 2 },
      dv: {
        stride: 13,
        column: 5,
      },
    };
    const cases: ConvCase[] = [
      ...SHAPES.map((s) => ({ s, opts: { variant: "fft" as const } })),
      { s: { batch: 3, seqLen: 33, channels: 10 }, opts: { variant: "fft" } },
      { s: { batch: 3, seqLen: 33, channels: 10 }, opts: { variant: "direct" } },
      { s: s64, opts: { variant: "direct", blockTokens: 1 } },
      { s: s64, opts: { variant: "direct", blockTokens: 3, segmentTokens: 37 } },
      { s: s64, opts: { variant: "direct", blockTokens: 8, segmentTokens: 64, vec4: false } },
      { s: { batch: 3, seqLen: 37, channels: 8 }, opts: { variant: "direct" }, layouts: strided4, accumulate: true },
      { s: { batch: 3, seqLen: 37, channels: 8 }, opts: { variant: "fft" }, layouts: strided4, accumulate: true },
      { s: { batch: 2, seqLen: 21, channels: 8 }, opts: { variant: "direct" }, layouts: strided1 },
      { s: { batch: 2, seqLen: 21, channels: 8 }, opts: { variant: "fft" }, layouts: strided1 },
    ];
    for (const c of cases) {
      const x = makeInputs(c.s, 7 + c.s.seqLen + c.s.channels);
      await check(caseName(c), convReference(c, x), () => runConv(gpu, c, x));
    }
  },
});

/**
 * One long sequence, B = 1, L = 4096, d = 2: the direct variant's default schedule (one segment), the same cut into 5
 * segments of 1000 steps, and the fft variant (N = 8192), each against float64 and fft against direct. With TB = 4 an
 * unsegmented invocation runs L/4 = 1024 outer iterations (its inner loops have constant bounds; the upper-bound count
 * of longConvLoopIterations is ~29k): below llvmpipe's 65,535 even unsegmented (L = 16384 unsegmented also measured
 * correct), so the segments are exercised by forcing them here and at L = 130 above. Sums of up to 4096 terms (dh:
 * of dy·v products ~ N(0, 1), |dh| up to ~200): LONG_TOLERANCE, 10× FP32_TOLERANCE's atol (worst observed: direct dh
 * 0.45 of it, fft 0.07).
 */
const LONG_TOLERANCE: Tolerance = { rtol: 2e-4, atol: 2e-4 };

Deno.test({
  name: "hyena ops: long conv over one 4096-token sequence (direct, segmented, fft) vs float64",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const s = { batch: 1, seqLen: 4096, channels: 2 };
    const x = makeInputs(s, 4096);
    const c0: ConvCase = { s, opts: { variant: "direct" } };
    const ref = convReference(c0, x);
    const schedules = [{ variant: "direct" }, { variant: "direct", segmentTokens: 1000 }, { variant: "fft" }] as const;
    const results: Record<string, Float32Array>[] = [];
    for (const opts of schedules) {
      const c = { s, opts };
      const got = await runConv(gpu, c, x);
      report(caseName(c), ref, got, LONG_TOLERANCE);
      await checkKernel({ name: caseName(c), reference: () => ref, gpu: () => got, tolerance: LONG_TOLERANCE });
      results.push(got);
    }
    // The fft variant against the direct one.
    await checkKernel({
      name: "fft vs direct, L=4096",
      reference: () => results[0],
      gpu: () => results[2],
      tolerance: LONG_TOLERANCE,
    });
  },
});

Deno.test("hyena ops: long conv schedule helpers and the variant rule", () => {
  const sw = { info: { software: true, backend: "vulkan" } }, hw = { info: { software: false, backend: "vulkan" } };
  // Software segments keep the upper-bound loop count within half of llvmpipe's limit; GPUs sweep in one dispatch.
  for (const tb of [1, 2, 4, 8]) {
    const S = longConvSegmentTokens(sw, 1 << 20, tb);
    assert(S % tb === 0 && longConvLoopIterations(tb, S) <= SOFTWARE_LOOP_LIMIT / 2, `TB=${tb}: ${S}`);
    assert(longConvLoopIterations(tb, S + tb) > SOFTWARE_LOOP_LIMIT / 2, `TB=${tb}: ${S} is not the largest`);
  }
  assertEquals(longConvSegmentTokens(sw, 1 << 20), 4680);
  assertEquals(longConvSegmentTokens(sw, 300), 300);
  assertEquals(longConvSegmentTokens(hw, 1 << 20), 1 << 20);
  assertEquals(LONG_CONV_BLOCK_TOKENS, 4);
  assertEquals(longConvSegments(10, 4), [{ begin: 0, end: 4 }, { begin: 4, end: 8 }, { begin: 8, end: 10 }]);
  const shape = (seqLen: number) => ({ batch: 8, seqLen, channels: 64 });
  assertEquals([256, 511, 512, 4096].map((L) => selectLongConvVariant(sw, shape(L))), [
    "direct",
    "direct",
    "fft",
    "fft",
  ]);
  assertEquals([512, 1023, 1024].map((L) => selectLongConvVariant(hw, shape(L))), ["direct", "direct", "fft"]);
});

Deno.test({
  name: "hyena ops: shapes, views and aliasing are validated",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const release = gpu.allocator.scope();
    const a = gpu.allocator, s = { batch: 2, seqLen: 5, channels: 4 };
    const m = (name: string, width: number) => a.tensor(name, [10, width], "activations");
    const v = m("v", 4), y = m("y", 4), uc = m("uc", 12), h = a.tensor("h", [5, 4], "activations");
    const bias = a.tensor("bias", [4], "params");
    assertThrows(() => createLongConv(gpu, "c", { shape: s, v, h, bias, y: v }), /may not alias/);
    assertThrows(() => createLongConv(gpu, "c", { shape: { ...s, seqLen: 0 }, v, h, bias, y }), /positive integer/);
    assertThrows(
      () => createLongConv(gpu, "c", { shape: s, v: { tensor: uc, column: 9, rowStride: 12 }, h, bias, y }),
      /must fit in row stride/,
    );
    assertThrows(
      () => createLongConv(gpu, "c", { shape: s, v: { tensor: uc, column: 2, rowStride: 12 }, h, bias, y, vec4: true }),
      /vec4 needs/,
    );
    assertThrows(() => createLongConv(gpu, "c", { shape: s, v, h, bias, y, blockTokens: 0 }), /blockTokens/);
    assertThrows(() => createLongConv(gpu, "c", { shape: { ...s, seqLen: 6 }, v, h, bias, y }), /elements, needs/);
    // da and db may share duc only as disjoint column slices of one row stride.
    const dout = m("dout", 4);
    assertThrows(() =>
      createHyenaGateBackward(gpu, "g", {
        shape: s,
        a: v,
        b: y,
        dout,
        da: { tensor: uc, column: 0, rowStride: 12 },
        db: { tensor: uc, column: 2, rowStride: 12 },
      }), /disjoint columns/);
    assertThrows(
      () =>
        createModulation(gpu, "mod", {
          seqLen: 5,
          channels: 4,
          lMax: 4,
          hraw: h,
          h: a.tensor("h2", [5, 4], "activations"),
        }),
      /exceeds lMax/,
    );
    release();
  },
});

Deno.test({
  name: "hyena ops: short filter and gates on strided views, accumulate",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const release = gpu.allocator.scope();
    const s = { batch: 2, seqLen: 7, channels: 6 }, rows = 14, C = 6, a = gpu.allocator;
    // channels 2: u, duc, gateSrc are [rows, 6] and the short filter parameters [6, 1, 3], [6].
    const x = makeInputs({ ...s, channels: 2 }, 77);
    const lu = { stride: 9, column: 2 }, ly = { stride: 8, column: 1 }, ldu = { stride: 10, column: 4 };
    const wide = (name: string, l: ViewLayout, data: Float32Array) => {
      const t = a.tensor(name, [rows, l.stride], "activations");
      writeTensor(gpu, t, data);
      return { tensor: t, column: l.column, rowStride: l.stride };
    };
    const u = wide("u", lu, spread(x.u, rows, C, lu));
    const y = wide("uc", ly, new Float32Array(rows * ly.stride).fill(JUNK));
    const du = wide("du", ldu, spread(new Float64Array(rows * C).fill(1), rows, C, ldu));
    const dense = (name: string, data: ArrayLike<number>) => {
      const t = a.tensor(name, [data.length], "activations");
      writeTensor(gpu, t, f32(data));
      return t;
    };
    const weight = dense("w", x.shortWeight), bias = dense("b", x.shortBias), dy = dense("dy", x.duc);
    const dweight = dense("dw", new Float64Array(3 * C).fill(1)), dbias = dense("db", new Float64Array(C).fill(1));
    // Gate backward with accumulate: da into a dense buffer, db into a column slice, both pre-filled with 1.
    const gateA = x.duc.map((v) => 0.5 * v);
    const ga = dense("ga", gateA), gDout = dense("gdout", x.gateSrc);
    const gda = dense("gda", new Float64Array(rows * C).fill(1));
    const gdb = wide("gdb", ldu, spread(new Float64Array(rows * C).fill(1), rows, C, ldu));
    const ops = await withGpuErrors(gpu.device, "strided setup", () => [
      createShortFilter(gpu, "short", { shape: s, u, weight, bias, y }),
      createShortFilterBackward(gpu, "short.bwd", { shape: s, u, weight, dy, du, dweight, dbias, accumulate: true }),
      createHyenaGateBackward(gpu, "gate.bwd", {
        shape: s,
        a: ga,
        b: u,
        dout: gDout,
        da: gda,
        db: gdb,
        accumulate: true,
      }),
    ]);
    submit(gpu, ops);
    const short = { u: x.u, weight: x.shortWeight, bias: x.shortBias };
    const g = shortFilterBackwardRef(short, x.duc, s);
    const gate = gateBackwardRef(gateA, x.u, x.gateSrc);
    await checkKernel({
      name: "strided short filter and gate",
      reference: () => ({
        y: f64(spread(shortFilterRef(short, s), rows, C, ly)),
        du: f64(spread(plusOne(g.du), rows, C, ldu)),
        dweight: plusOne(g.dweight),
        dbias: plusOne(g.dbias),
        gda: plusOne(gate.da),
        gdb: f64(spread(plusOne(gate.db), rows, C, ldu)),
      }),
      gpu: async () => ({
        y: await readTensor(gpu, y.tensor),
        du: await readTensor(gpu, du.tensor),
        dweight: await readTensor(gpu, dweight),
        dbias: await readTensor(gpu, dbias),
        gda: await readTensor(gpu, gda),
        gdb: await readTensor(gpu, gdb.tensor),
      }),
      tolerance: TOLERANCE,
    });
    release();
  },
});
