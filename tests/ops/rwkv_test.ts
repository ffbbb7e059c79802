import type { Tensor } from "../../src/gpu/allocator.ts";
import { type Gpu, readTensor, readTensorU32, withGpuErrors, writeTensor } from "../../src/gpu/device.ts";
import { submit } from "../../src/ops/_dispatch.ts";
import {
  createRwkvGate,
  createRwkvGateBackward,
  createTimeShiftMix,
  createTimeShiftMixBackward,
  createWkvBackward,
  createWkvForward,
  type RwkvShape,
  WKV_SOFTWARE_SEGMENT_TOKENS,
  wkvSegments,
  wkvSegmentTokens,
} from "../../src/ops/rwkv.ts";
import { Rng } from "../../src/data/rng.ts";
import {
  rwkvGateBackwardRef,
  rwkvGateForwardRef,
  timeShiftMixBackwardRef,
  timeShiftMixForwardRef,
  wkvBackwardRef,
  wkvForwardRef,
} from "../../src/reference/rwkv.ts";
import { assert, assertEquals, assertThrows } from "../_helpers/assert.ts";
import { checkKernel, f32, f64, FP32_TOLERANCE, randn, type Tolerance, type Values } from "../_helpers/check_kernel.ts";
import { gpuTest, testGpu } from "../_helpers/gpu.ts";

/**
 * Tolerances. Everything at ordinary magnitudes (k ~ N(0, 1)), the 70000-token sequence included: FP32_TOLERANCE
 * (worst observed on lavapipe: 0.14 of it). With k spread over ±100, logD is ~100 in size, so its absolute rounding
 * error of ~100·6e-8 becomes a relative error of every weight e^{k - logD}, and d time_decay sums B·L such terms with
 * (t-1-i) factors: LARGE_K_TOLERANCE, five times looser, for the WKV outputs (observed up to 2.4× FP32_TOLERANCE, 0.48×
 * LARGE_K_TOLERANCE). bf16 outputs may land one bf16 step (2^-8..2^-7 relative) away from the reference where the fp32
 * value sits near a rounding boundary: BF16_TOLERANCE.
 */
const LARGE_K_TOLERANCE: Tolerance = { rtol: 1e-3, atol: 1e-4 };
const BF16_TOLERANCE: Tolerance = { rtol: 2 ** -7, atol: 1e-4 };

interface Inputs {
  x: Float64Array;
  mixK: Float64Array;
  mixV: Float64Array;
  mixR: Float64Array;
  dxk: Float64Array;
  dxv: Float64Array;
  dxr: Float64Array;
  k: Float64Array;
  v: Float64Array;
  timeDecay: Float64Array;
  timeFirst: Float64Array;
  gy: Float64Array;
  r: Float64Array;
  wkv: Float64Array;
  dout: Float64Array;
}

function uniform(n: number, seed: number, lo: number, hi: number): Float64Array {
  const rng = new Rng(seed, 3);
  return Float64Array.from({ length: n }, () => lo + (hi - lo) * rng.uniform());
}

/** Random inputs rounded to f32 (the reference sees what the GPU sees); `kRange` spreads k uniformly over ±kRange. */
function makeInputs(s: RwkvShape, seed: number, kRange?: number): Inputs {
  const n = s.batch * s.seqLen * s.channels, C = s.channels;
  const q = (a: Float64Array) => f64(f32(a));
  return {
    x: q(randn(n, seed)),
    mixK: q(uniform(C, seed + 1, 0, 1)),
    mixV: q(uniform(C, seed + 2, 0, 1)),
    mixR: q(uniform(C, seed + 3, 0, 1)),
    dxk: q(randn(n, seed + 4)),
    dxv: q(randn(n, seed + 5)),
    dxr: q(randn(n, seed + 6)),
    k: q(kRange === undefined ? randn(n, seed + 7) : uniform(n, seed + 7, -kRange, kRange)),
    v: q(randn(n, seed + 8)),
    // w = -exp(time_decay) from about -0.05 (long memory) to -20 (forgets at once), like the init's -5..3 spread.
    timeDecay: q(uniform(C, seed + 9, -3, 3)),
    timeFirst: q(randn(C, seed + 10, 0.5)),
    gy: q(randn(n, seed + 11)),
    r: q(randn(n, seed + 12, 2)),
    wkv: q(randn(n, seed + 13)),
    dout: q(randn(n, seed + 14)),
  };
}

const OUTPUTS = [
  "xk",
  "xv",
  "xr",
  "dx",
  "dMixK",
  "dMixV",
  "dMixR",
  "y",
  "logD",
  "gk",
  "gv",
  "dTimeDecay",
  "dTimeFirst",
  "out",
  "dr",
  "dwkv",
] as const;
type Output = typeof OUTPUTS[number];
const PARAM_GRADS: readonly Output[] = ["dMixK", "dMixV", "dMixR", "dTimeDecay", "dTimeFirst"];

interface Options {
  bf16?: boolean;
  segmentTokens?: number;
}

/**
 * All six ops on one shape: allocations, uploads, creation (compile errors surface here). Parameter grads are
 * pre-filled with 1 (they must accumulate), activation grads with 123 (they must be overwritten).
 */
async function setup(gpu: Gpu, s: RwkvShape, x: Inputs, opts: Options = {}) {
  const release = gpu.allocator.scope();
  const a = gpu.allocator, rows = s.batch * s.seqLen, C = s.channels;
  const act = (name: string) => a.tensor(name, [rows, C], "activations");
  const vec = (name: string, cat: "params" | "grads") => a.tensor(name, [C], cat);
  const t: Record<keyof Inputs | Output, Tensor> = {
    x: act("x"),
    mixK: vec("time_mix_k", "params"),
    mixV: vec("time_mix_v", "params"),
    mixR: vec("time_mix_r", "params"),
    dxk: act("dxk"),
    dxv: act("dxv"),
    dxr: act("dxr"),
    k: act("k"),
    v: act("v"),
    timeDecay: vec("time_decay", "params"),
    timeFirst: vec("time_first", "params"),
    gy: act("gy"),
    r: act("r"),
    wkv: act("wkv"),
    dout: act("dout"),
    xk: act("xk"),
    xv: act("xv"),
    xr: act("xr"),
    dx: act("dx"),
    dMixK: vec("time_mix_k.grad", "grads"),
    dMixV: vec("time_mix_v.grad", "grads"),
    dMixR: vec("time_mix_r.grad", "grads"),
    y: act("y"),
    logD: act("logD"),
    gk: act("gk"),
    gv: act("gv"),
    dTimeDecay: vec("time_decay.grad", "grads"),
    dTimeFirst: vec("time_first.grad", "grads"),
    out: act("out"),
    dr: act("dr"),
    dwkv: act("dwkv"),
  };
  for (const name of Object.keys(x) as (keyof Inputs)[]) writeTensor(gpu, t[name], f32(x[name]));
  const reset = () => {
    for (const name of OUTPUTS) {
      writeTensor(gpu, t[name], new Float32Array(t[name].length).fill(PARAM_GRADS.includes(name) ? 1 : 123));
    }
  };
  reset();
  const seg = opts.segmentTokens === undefined ? {} : { segmentTokens: opts.segmentTokens };
  const ops = await withGpuErrors(gpu.device, "rwkv setup", () => ({
    shift: createTimeShiftMix(gpu, "shift", { ...s, ...t }),
    shiftBackward: createTimeShiftMixBackward(gpu, "shift.bwd", { ...s, ...t }),
    wkv: createWkvForward(gpu, "wkv", { ...s, ...t, ...seg }),
    wkvBackward: createWkvBackward(gpu, "wkv.bwd", { ...s, ...t, ...seg, bf16: opts.bf16 }),
    gate: createRwkvGate(gpu, "gate", { ...s, ...t, bf16: opts.bf16 }),
    gateBackward: createRwkvGateBackward(gpu, "gate.bwd", { ...s, ...t, bf16: opts.bf16 }),
  }));
  const run = async (): Promise<Record<Output, Float32Array>> => {
    reset();
    submit(gpu, Object.values(ops));
    const out = {} as Record<Output, Float32Array>;
    for (const name of OUTPUTS) out[name] = await readTensor(gpu, t[name]);
    return out;
  };
  return { t, ...ops, run, release };
}

/** The float64 reference of every output, parameter grads +1 (the pre-filled value). */
function reference(s: RwkvShape, x: Inputs, opts: Options = {}): Record<Output, Float64Array> {
  const plusOne = (v: Float64Array) => v.map((e) => e + 1);
  const shift = timeShiftMixBackwardRef(x, x, s);
  const wkvIn = { k: x.k, v: x.v, timeDecay: x.timeDecay, timeFirst: x.timeFirst };
  const wkv = wkvBackwardRef(wkvIn, x.gy, s, opts);
  return {
    ...timeShiftMixForwardRef(x, s),
    dx: shift.dx,
    dMixK: plusOne(shift.dMixK),
    dMixV: plusOne(shift.dMixV),
    dMixR: plusOne(shift.dMixR),
    ...wkvForwardRef(wkvIn, s),
    gk: wkv.gk,
    gv: wkv.gv,
    dTimeDecay: plusOne(wkv.dTimeDecay),
    dTimeFirst: plusOne(wkv.dTimeFirst),
    out: rwkvGateForwardRef(x.r, x.wkv, opts),
    ...rwkvGateBackwardRef(x.r, x.wkv, x.dout, opts),
  };
}

const WKV_OUTPUTS: readonly Output[] = ["y", "logD", "gk", "gv", "dTimeDecay", "dTimeFirst"];
const wkvTolerances = (tol: Tolerance) => Object.fromEntries(WKV_OUTPUTS.map((o) => [o, tol]));

const dims = (s: RwkvShape) => `B=${s.batch} L=${s.seqLen} C=${s.channels}`;

const SHAPES: RwkvShape[] = [
  { batch: 1, seqLen: 1, channels: 1 },
  { batch: 2, seqLen: 5, channels: 3 },
  { batch: 3, seqLen: 17, channels: 7 },
  { batch: 2, seqLen: 64, channels: 64 },
];

for (const s of SHAPES) {
  Deno.test({
    name: `rwkv ops: forward and every gradient vs float64, ${dims(s)}`,
    ...gpuTest,
    fn: async () => {
      const gpu = await testGpu();
      const x = makeInputs(s, 10 * s.batch + s.seqLen + s.channels);
      const g = await setup(gpu, s, x);
      await checkKernel({
        name: dims(s),
        reference: () => reference(s, x),
        gpu: g.run,
        tolerance: FP32_TOLERANCE,
      });
      g.release();
    },
  });
}

Deno.test({
  name: "rwkv ops: WKV stays finite and accurate for k up to ±100 (e^k overflows float32 without the log-space state)",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    for (const s of [{ batch: 3, seqLen: 17, channels: 7 }, { batch: 2, seqLen: 64, channels: 64 }]) {
      const x = makeInputs(s, 500 + s.seqLen, 100);
      assert(x.k.some((k) => k > 89) && x.k.some((k) => k < -89), "k reaches beyond float32's exp range");
      const g = await setup(gpu, s, x);
      await checkKernel({
        name: `large k ${dims(s)}`,
        reference: () => reference(s, x),
        gpu: g.run,
        tolerance: FP32_TOLERANCE,
        tolerances: wkvTolerances(LARGE_K_TOLERANCE),
      });
      g.release();
    }
  },
});

Deno.test({
  name: "rwkv ops: tiny WKV segments (3 tokens at L = 17) give bit-identical results; reruns are bit-identical",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const s = { batch: 3, seqLen: 17, channels: 7 };
    assertEquals(wkvSegments(17, 3).length, 6);
    const x = makeInputs(s, 77);
    const whole = await setup(gpu, s, x, { segmentTokens: 17 });
    const first = await whole.run(), again = await whole.run();
    whole.release();
    const tiny = await setup(gpu, s, x, { segmentTokens: 3 });
    const segmented = await tiny.run();
    tiny.release();
    for (const name of OUTPUTS) {
      assertEquals(Array.from(again[name]), Array.from(first[name]), `${name}: rerun`);
      assertEquals(Array.from(segmented[name]), Array.from(first[name]), `${name}: segmentTokens 3`);
    }
    await checkKernel({
      name: "segmented vs reference",
      reference: () => reference(s, x),
      gpu: () => segmented,
      tolerance: FP32_TOLERANCE,
    });
  },
});

Deno.test({
  name: "rwkv ops: one sequence of 70000 tokens (past llvmpipe's 65535-iteration loop limit), default segments",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const s = { batch: 1, seqLen: 70_000, channels: 2 };
    if (gpu.info.software) assertEquals(wkvSegmentTokens(gpu, s.seqLen), WKV_SOFTWARE_SEGMENT_TOKENS);
    const x = makeInputs(s, 4242);
    // Channel 0 remembers ~e^3 ≈ 20 tokens, channel 1 forgets almost at once.
    x.timeDecay.set([-3, 2]);
    const g = await setup(gpu, s, x);
    const got = await g.run();
    g.release();
    const ref = reference(s, x);
    const pick = (v: Record<Output, ArrayLike<number>>): Values =>
      Object.fromEntries(
        ["xk", "dx", "dMixK", "dMixV", "dMixR", ...WKV_OUTPUTS].map((o) => [o, v[o as Output]]),
      );
    await checkKernel({
      name: "L=70000",
      reference: () => pick(ref),
      gpu: () => pick(got),
      tolerance: FP32_TOLERANCE,
    });
    // The end of the sequence was reached (a truncated sweep would leave the pre-filled 123 there).
    assert(got.y[got.y.length - 1] !== 123 && got.gk[0] !== 123, "the sweeps cover the whole sequence");
  },
});

Deno.test({
  name: "rwkv ops: bf16 mode matches the bf16 reference; the rounded outputs are bfloat16 values",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const s = { batch: 3, seqLen: 17, channels: 7 };
    const x = makeInputs(s, 31);
    const g = await setup(gpu, s, x, { bf16: true, segmentTokens: 5 });
    const got = await g.run();
    await checkKernel({
      name: "bf16",
      reference: () => reference(s, x, { bf16: true }),
      gpu: () => got,
      tolerance: FP32_TOLERANCE,
      tolerances: {
        gk: BF16_TOLERANCE,
        gv: BF16_TOLERANCE,
        dTimeDecay: BF16_TOLERANCE,
        dTimeFirst: BF16_TOLERANCE,
        dwkv: BF16_TOLERANCE,
      },
    });
    for (const name of ["gk", "gv", "dwkv"] as const) {
      const bits = await readTensorU32(gpu, g.t[name]);
      assert(bits.every((b) => (b & 0xffff) === 0), `${name} holds bfloat16 values`);
    }
    // The parameter grads hold 1 + bf16(Σ): from zeroed grads, one backward leaves exactly the rounded sums.
    for (const name of ["dTimeDecay", "dTimeFirst"] as const) writeTensor(gpu, g.t[name], new Float32Array(s.channels));
    submit(gpu, [g.wkvBackward]);
    for (const name of ["dTimeDecay", "dTimeFirst"] as const) {
      const bits = await readTensorU32(gpu, g.t[name]);
      assert(bits.every((b) => (b & 0xffff) === 0), `${name} holds bfloat16 values`);
    }
    // The unrounded fp32 mode differs: the rounding really happens.
    const plain = await setup(gpu, s, x, { segmentTokens: 5 });
    const fp32 = await plain.run();
    assert(fp32.gk.some((v, i) => v !== got.gk[i]), "bf16 changes gk");
    assert(fp32.out.some((v, i) => v !== got.out[i]), "bf16 changes the gate output");
    plain.release();
    g.release();
  },
});

Deno.test({
  name: "rwkv ops: argument validation",
  ...gpuTest,
  fn: async () => {
    const gpu = await testGpu();
    const release = gpu.allocator.scope();
    const s = { batch: 2, seqLen: 5, channels: 3 };
    const a = gpu.allocator;
    const act = (n: string) => a.tensor(n, [10, 3], "activations");
    const vec = (n: string) => a.tensor(n, [3], "params");
    const k = act("k"), v = act("v"), y = act("y"), logD = act("logD"), td = vec("td"), tf = vec("tf");
    const base = { ...s, k, v, timeDecay: td, timeFirst: tf, y, logD };
    assertThrows(() => createWkvForward(gpu, "w", { ...base, segmentTokens: 0 }), /segmentTokens/);
    assertThrows(() => createWkvForward(gpu, "w", { ...base, y: k }), /alias/);
    assertThrows(() => createWkvForward(gpu, "w", { ...base, seqLen: 6 }), /needs 36/);
    assertThrows(() => createWkvForward(gpu, "w", { ...base, batch: 0 }), /batch/);
    assertThrows(() => createRwkvGate(gpu, "g", { ...s, r: k, wkv: v, out: v }), /alias/);
    assertEquals(wkvSegmentTokens({ info: { software: false } }, 70_000), 70_000);
    assertEquals(wkvSegmentTokens({ info: { software: true } }, 70_000), WKV_SOFTWARE_SEGMENT_TOKENS);
    assertEquals(wkvSegmentTokens({ info: { software: true } }, 100), 100);
    assertEquals(wkvSegments(7, 3), [{ begin: 0, end: 3 }, { begin: 3, end: 6 }, { begin: 6, end: 7 }]);
    release();
  },
});
