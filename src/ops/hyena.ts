/**
 * Hyena mixer ops (spec §3.7; kernels/hyena.wgsl; float64 reference and the math: src/reference/hyena.ts). All
 * activations are token-major [B*L, width] (row b*L + t). With d channels and filter order F = 64 a Hyena mixer is
 * assembled as
 *   forward:  matmul h·W_inᵀ + b_in → u [rows, 3d]; createShortFilter(u → uc [rows, 3d]);
 *             createHyenaGate(a = uc[:, 2d:3d] (v), b = uc[:, 0:d] (x1) → v1 [rows, d]);
 *             implicit filter (shared by the batch, rows = L): matmul z·W0ᵀ + b0 → p0; createSinActivation(p0 → a1);
 *             matmul → p1; sin → a2; matmul → p2; sin → a3; matmul a3·W3ᵀ → hraw [L, d]; createModulation(→ h);
 *             createLongConv(v1, h, D → y [rows, d]); createHyenaGate(a = y, b = uc[:, d:2d] (x2) → v2);
 *             matmul v2·W_outᵀ + b_out.
 *   backward: (out_proj → dv2); createHyenaGateBackward(dv2 → dy, dx2 into duc[:, d:2d]);
 *             createLongConvBackward(dy → dv1, dh, dD); createHyenaGateBackward(dv1 → dv into duc[:, 2d:3d], dx1
 *             into duc[:, 0:d]: one buffer, two column slices); createShortFilterBackward(duc → du, dweight, dbias);
 *             in_proj matmuls. Filter: createModulationBackward(dh → dhraw); W3 matmuls → da3;
 *             createSinActivationBackward(p2, da3 → dp2, dfreq +=); ... down to dz (z is a parameter).
 * The gates are not fused into the long conv: they are O(rows·d) next to its O(L²·d), and as separate ops they read
 * and write the column slices x1, x2, v of uc / duc in place (no split copies).
 * Strided operands are `MatrixView`s (a column slice of a wider row-major matrix, as in src/ops/mamba.ts). Activation
 * gradients overwrite unless an `accumulate` flag is given; parameter gradients (short filter weight/bias, freq, D)
 * accumulate (+=) through fixed-order reductions (no atomics): the same inputs give bit-identical results. dh is an
 * activation gradient (the filter MLP's backward takes it from there): overwritten.
 *
 * Modulation: δ_c = linspace(ln(1e-2)/1.5, ln(1e-2)/0.3, d) and t_n = n/(lMax - 1) are computed in the kernel (f32) from
 * d and lMax (two uniform constants each), so no buffer is needed; hyenaDeltas / hyenaTime (src/reference/hyena.ts)
 * give the same values in float64, hyenaPositionalZ the initial z.
 *
 * Long conv y[t] = Σ_{s≤t} h[t-s]·v[s] + D·v[t], two variants (selectLongConvVariant picks; same results to fp32
 * rounding, not bitwise):
 * - "direct", O(L²) per channel: an invocation owns `blockTokens` (TB) consecutive outputs of one channel group (4
 *   channels as a vec4 when d and every view's stride and column are multiples of 4, else 1 channel) and walks the
 *   steps in chunks of TB with a sliding register window of the filter: TB² fmas per 2·TB loads. The backward's dv is
 *   the same kernel on mirrored positions (dv[s] = Σ_{t≥s} h[t-s]·dy[t] + D·dy[s]); dh[l] = Σ_b Σ_t dy[b, t]·v[b, t-l]
 *   goes through per-example partials [B, L, d] (workspace) and an in-order reduction over the batch, whose lag-0
 *   value is also dD (+=). llvmpipe silently ends an invocation after 65,535 loop iterations: the steps are cut into
 *   segments of `segmentTokens`, one dispatch each, in order (the first writes, the others add); on GPUs one segment.
 * - "fft", O(L log L): zero-padded to N = 2^⌈log2(2L - 1)⌉, radix-4 Stockham FFTs (a radix-2 stage last for odd
 *   log2 N) in global-memory passes, one dispatch per stage, no loops. Two examples of a channel share its filter, so
 *   they travel as one complex sequence v[2q] + i·v[2q+1]. Forward: y = IFFT(FFT(v)·FFT(h)/N) + D·v. Backward:
 *   dv = IFFT(FFT(dy)·conj FFT(h)/N) + D·dy, dh = Re IFFT(Σ_pairs FFT(dy)·conj FFT(v)/N) (pairs in order; the real part
 *   of a pair's product is the sum of its two examples' correlations), dD += dh[0]. Workspace: two (forward) or three
 *   (backward) spectra of `longConvFftWorkspaceLength` floats, two [N, d] ones and the twiddle table [N].
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import { HYENA_DELTA_RANGE, longConvFftSize } from "../reference/hyena.ts";
import { ceilDiv, type Dispatch, grid1d, makeDispatch, makeUniform } from "./_dispatch.ts";
import {
  blocking,
  checkDims,
  type MatrixArg,
  type MatrixView,
  resolveView,
  validate,
  type View,
} from "./_matrix_view.ts";

export interface HyenaShape {
  batch: number;
  seqLen: number;
  /** Channels: d for the long conv and the gates, 3d for the short filter. */
  channels: number;
}

export type { MatrixArg, MatrixView };

/** A composite dispatch that owns workspace buffers (free them with the op). */
export interface HyenaDispatch extends Dispatch {
  readonly workspace: readonly Tensor[];
}

export interface ShortFilterArgs {
  /** channels = the conv's width (3d in the mixer). */
  shape: HyenaShape;
  /** in_proj's output [rows, C]. */
  u: MatrixArg;
  /** short_filter.weight [C, 1, 3]: tap 0 multiplies u[t-2]. */
  weight: Tensor;
  /** short_filter.bias [C] */
  bias: Tensor;
  /** Output uc [rows, C] (x1 | x2 | v). */
  y: MatrixArg;
}

export interface ShortFilterBackwardArgs {
  shape: HyenaShape;
  u: MatrixArg;
  weight: Tensor;
  /** dL/duc [rows, C], dense. */
  dy: Tensor;
  /** Output [rows, C], overwritten (accumulate: +=). */
  du: MatrixArg;
  /** [C, 1, 3] and [C], accumulated (+=). */
  dweight: Tensor;
  dbias: Tensor;
  accumulate?: boolean;
}

export interface GateArgs {
  /** channels = the gate's width d. */
  shape: HyenaShape;
  /** [rows, d] each (views: v = uc[:, 2d:3d] and x1 = uc[:, 0:d]; or y and x2 = uc[:, d:2d]). */
  a: MatrixArg;
  b: MatrixArg;
  /** Output [rows, d]: a ⊙ b. */
  out: MatrixArg;
}

export interface GateBackwardArgs {
  shape: HyenaShape;
  a: MatrixArg;
  b: MatrixArg;
  /** [rows, d], dense. */
  dout: Tensor;
  /** Outputs, overwritten (accumulate: +=): dout·b and dout·a; may be column slices of one buffer (duc). */
  da: MatrixArg;
  db: MatrixArg;
  accumulate?: boolean;
}

export interface SinShape {
  /** L for the implicit filter. */
  rows: number;
  /** F (64). */
  width: number;
}

export interface SinActivationArgs extends SinShape {
  /** The linear layer's output [rows, F]. */
  x: Tensor;
  /** The Sin frequency [1, F] (shared by the three sin layers). */
  freq: Tensor;
  /** Output [rows, F]: sin(freq ⊙ x). */
  y: Tensor;
}

export interface SinActivationBackwardArgs extends SinShape {
  x: Tensor;
  freq: Tensor;
  /** [rows, F] */
  dy: Tensor;
  /** Output [rows, F], overwritten: dy·freq·cos(freq·x). */
  dx: Tensor;
  /** [F], accumulated (+=) with Σ_rows dy·x·cos(freq·x): the three sin layers add into one gradient. */
  dfreq: Tensor;
}

export interface ModulationShape {
  seqLen: number;
  channels: number;
  /** The length the positional buffers were built for (t_n = n/(lMax - 1)); default seqLen. */
  lMax?: number;
}

export interface ModulationArgs extends ModulationShape {
  /** [L, d] */
  hraw: Tensor;
  /** Output [L, d]: hraw·exp(-t_n·|δ_c|). */
  h: Tensor;
}

export interface ModulationBackwardArgs extends ModulationShape {
  /** [L, d] */
  dh: Tensor;
  /** Output [L, d], overwritten (accumulate: +=): dh·exp(-t_n·|δ_c|). */
  dhraw: Tensor;
  accumulate?: boolean;
}

export interface LongConvOptions {
  /** Default selectLongConvVariant(gpu, shape). */
  variant?: LongConvVariant;
  /** Direct variant: outputs per invocation (TB); default LONG_CONV_BLOCK_TOKENS. */
  blockTokens?: number;
  /** Direct variant: steps per dispatch; default `longConvSegmentTokens(gpu, seqLen, blockTokens)`. */
  segmentTokens?: number;
  /** Direct variant: vec4 channel groups; default whenever d and the views allow it (false: the scalar kernel). */
  vec4?: boolean;
}

export interface LongConvArgs extends LongConvOptions {
  /** channels = d. */
  shape: HyenaShape;
  /** v1 [rows, d]. */
  v: MatrixArg;
  /** The filter h [L, d] (shared by the batch). */
  h: Tensor;
  /** The D term [d] (filter_fn.bias). */
  bias: Tensor;
  /** Output y [rows, d]. */
  y: MatrixArg;
}

export interface LongConvBackwardArgs extends LongConvOptions {
  shape: HyenaShape;
  v: MatrixArg;
  h: Tensor;
  bias: Tensor;
  /** dL/dy [rows, d]. */
  dy: MatrixArg;
  /** Output dv1 [rows, d], overwritten (accumulate: +=). */
  dv: MatrixArg;
  /** Output [L, d], overwritten: Σ over the batch. */
  dh: Tensor;
  /** [d], accumulated (+=). */
  dbias: Tensor;
  accumulate?: boolean;
}

/**
 * "direct": the O(L²) sums, register-blocked; "fft": O(L log L) through radix-2 FFTs of size longConvFftSize(L) in
 * global-memory passes (same results to fp32 rounding of the FFT, not bitwise).
 */
export type LongConvVariant = "direct" | "fft";

const KERNEL = "hyena";
const WG = 64;

/** llvmpipe silently ends a shader invocation after this many loop iterations (the rest of its work is skipped). */
export const SOFTWARE_LOOP_LIMIT = 65535;
/**
 * Default outputs per direct long-conv invocation. Best of 1, 2, 4, 8 on lavapipe: B = 4, L = 512, d = 64 (vec4)
 * forward 115 / 71 / 40 / 42 ms, backward 240 / 118 / 65 / 84 ms; B = 1, L = 4096, d = 2 (scalar) TB = 2 / 4 / 8
 * forward 60 / 30 / 32 ms, backward 118 / 52 / 59 ms. (vec4 against scalar at d = 64, TB = 4: forward 40 / 57 ms,
 * backward 65 / 135 ms.)
 */
export const LONG_CONV_BLOCK_TOKENS = 4;
/** Fraction of SOFTWARE_LOOP_LIMIT a software segment may use (the count is an upper bound; keep a margin). */
const LOOP_BUDGET = 0.5;

/**
 * Loop iterations of one long-conv invocation (forward, dv or dh pass) over `steps` steps with TB = blockTokens,
 * counting every loop (an upper bound: the compiler may unroll the constant inner ones): the window fill, per chunk the
 * TB step loads with their TB-fma inner loops and the slide, the TB output writes.
 */
export function longConvLoopIterations(blockTokens: number, steps: number): number {
  const T = blockTokens, chunks = Math.ceil(steps / T);
  return 2 * T - 1 + chunks * (T * (T + 1) + 1) + Math.max(0, chunks - 1) * (2 * T - 1) + T;
}

/**
 * Default steps per long-conv dispatch: the whole sequence on GPUs; on software adapters the largest multiple of TB
 * whose loop count stays within LOOP_BUDGET of SOFTWARE_LOOP_LIMIT (4680 tokens at TB = 4).
 */
export function longConvSegmentTokens(
  gpu: { info: { software: boolean } },
  seqLen: number,
  blockTokens = LONG_CONV_BLOCK_TOKENS,
): number {
  if (!gpu.info.software) return seqLen;
  let chunks = Math.floor(SOFTWARE_LOOP_LIMIT * LOOP_BUDGET / (blockTokens * (blockTokens + 1) + 2 * blockTokens));
  while (chunks > 1 && longConvLoopIterations(blockTokens, chunks * blockTokens) > SOFTWARE_LOOP_LIMIT * LOOP_BUDGET) {
    chunks--;
  }
  return Math.min(seqLen, Math.max(1, chunks) * blockTokens);
}

/** The step ranges [begin, end) of the long conv's dispatches, in order. */
export function longConvSegments(seqLen: number, segmentTokens: number): { begin: number; end: number }[] {
  const out = [];
  for (let begin = 0; begin < seqLen; begin += segmentTokens) {
    out.push({ begin, end: Math.min(seqLen, begin + segmentTokens) });
  }
  return out;
}

/** The adapter facts the variant rule reads (a Gpu satisfies it). */
export interface HyenaAdapter {
  info: { software: boolean; backend: string };
}

/**
 * Sequence lengths from which the fft variant beats the direct one over a training step (forward + backward). Measured
 * on lavapipe (2 cores shared with a training job, median of 7, both variants interleaved in one process), direct / fft
 * in ms: B = 16, d = 64: L = 128 28 / 49, 192 52 / 80, 256 81 / 79, 384 148 / 144, 512 260 / 162; B = 2, d = 64:
 * L = 256 23 / 28, 384 32 / 37, 512 48 / 40, 1024 135 / 68; B = 64, d = 64: L = 256 288 / 298, 512 955 / 564;
 * B = 4, d = 256: L = 256 96 / 101, 512 303 / 178. The FFT's cost steps with N = 2^⌈log2(2L - 1)⌉ (1024 for
 * 257 ≤ L ≤ 512). Hardware: not measured (no GPU here); a guess, since the direct form's O(L²) work spreads over
 * B·L/TB·d/4 invocations while each FFT stage is a memory-bound pass.
 */
export const FFT_FROM_SEQ_LEN = { software: 512, hardware: 1024 } as const;

/**
 * The one variant rule of the long conv (its default; what the model and the bench ask): direct below
 * FFT_FROM_SEQ_LEN (software or hardware adapter), fft from there on.
 */
export function selectLongConvVariant(adapter: HyenaAdapter, shape: Pick<HyenaShape, "seqLen">): LongConvVariant {
  const from = adapter.info.software ? FFT_FROM_SEQ_LEN.software : FFT_FROM_SEQ_LEN.hardware;
  return shape.seqLen >= from ? "fft" : "direct";
}

/** Row blocks of the parameter-gradient partials (as in short_conv.ts). */
interface UniformFields {
  batch: number;
  seqLen: number;
  channels: number;
  s0?: number;
  s1?: number;
  withBias?: boolean;
  addOld?: boolean;
  in0?: View;
  in1?: View;
  out0?: View;
  out1?: View;
  rowsPerBlock?: number;
  numBlocks?: number;
  blocks?: number;
  groups?: number;
  tScale?: number;
  deltaMin?: number;
  deltaStep?: number;
}

function params(gpu: Gpu, label: string, f: UniformFields): GPUBuffer {
  const view = (v?: View): [["u32", number], ["u32", number]] => [["u32", v?.rowStride ?? 0], ["u32", v?.column ?? 0]];
  return makeUniform(gpu, `${label}.params`, [
    ["u32", f.batch],
    ["u32", f.seqLen],
    ["u32", f.channels],
    ["u32", f.batch * f.seqLen],
    ["u32", f.s0 ?? 0],
    ["u32", f.s1 ?? f.seqLen],
    ["u32", f.withBias ? 1 : 0],
    ["u32", f.addOld ? 1 : 0],
    ...view(f.in0),
    ...view(f.in1),
    ...view(f.out0),
    ...view(f.out1),
    ["u32", f.rowsPerBlock ?? 0],
    ["u32", f.numBlocks ?? 0],
    ["u32", f.blocks ?? 0],
    ["u32", f.groups ?? 0],
    ["f32", f.tScale ?? 0],
    ["f32", f.deltaMin ?? 0],
    ["f32", f.deltaStep ?? 0],
    ["u32", 0],
  ]);
}

function sequence(label: string, passes: readonly Dispatch[], workspace: readonly Tensor[]): HyenaDispatch {
  return {
    label,
    workspace,
    encode(pass) {
      for (const p of passes) p.encode(pass);
    },
  };
}

const rowsOf = (s: HyenaShape) => s.batch * s.seqLen;
const elements = (s: HyenaShape) => s.batch * s.seqLen * s.channels;

function checkShape(label: string, s: HyenaShape): void {
  checkDims(label, { batch: s.batch, seqLen: s.seqLen, channels: s.channels });
}

// ---------------------------------------------------------------------------------------------------------------------
// Short filter

/** uc = bias + Σ_k w[c, k]·u[t-2+k, c] (causal per sequence, no activation), one invocation per element. */
export function createShortFilter(gpu: Gpu, label: string, args: ShortFilterArgs): Dispatch {
  const s = args.shape;
  checkShape(label, s);
  const n = elements(s), C = s.channels, rows = rowsOf(s);
  const u = resolveView(label, "u", args.u, rows, C), y = resolveView(label, "y", args.y, rows, C);
  validate(label, { u: [u, "view"], weight: [args.weight, 3 * C], bias: [args.bias, C], y: [y, "view"] }, ["y"]);
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "short_forward",
    { PASS_SHORT_FORWARD: true },
    [params(gpu, label, { ...s, in0: u, out0: y }), u.tensor, args.weight, args.bias, y.tensor],
    grid1d(gpu, ceilDiv(n, WG)),
  );
}

/**
 * Two dispatches: du with the block partials of the parameter gradients (per channel and block of rows, rows in
 * order), then their reduction over the blocks in order into dweight, dbias (+=). Workspace: [blocks, C, 4].
 */
export function createShortFilterBackward(gpu: Gpu, label: string, args: ShortFilterBackwardArgs): HyenaDispatch {
  const s = args.shape;
  checkShape(label, s);
  const n = elements(s), C = s.channels, rows = rowsOf(s);
  const u = resolveView(label, "u", args.u, rows, C), du = resolveView(label, "du", args.du, rows, C);
  validate(label, {
    u: [u, "view"],
    weight: [args.weight, 3 * C],
    dy: [args.dy, n],
    du: [du, "view"],
    dweight: [args.dweight, 3 * C],
    dbias: [args.dbias, C],
  }, ["du", "dweight", "dbias"]);
  const { rowsPerBlock, numBlocks } = blocking(rows);
  const partials = gpu.allocator.tensor(`${label}.partials`, [numBlocks, C, 4], "workspace");
  const uni = params(gpu, label, { ...s, in0: u, out0: du, rowsPerBlock, numBlocks });
  const data = makeDispatch(
    gpu,
    `${label}.data`,
    KERNEL,
    "short_backward_data",
    { PASS_SHORT_BWD_DATA: true, ACCUMULATE: Boolean(args.accumulate) },
    [uni, u.tensor, args.dy, args.weight, du.tensor, partials],
    [ceilDiv(C, WG), numBlocks],
  );
  const reduce = makeDispatch(
    gpu,
    `${label}.params`,
    KERNEL,
    "short_backward_params",
    { PASS_SHORT_BWD_PARAMS: true },
    [uni, partials, args.dweight, args.dbias],
    [ceilDiv(4 * C, WG)],
  );
  return sequence(label, [data, reduce], [partials]);
}

// ---------------------------------------------------------------------------------------------------------------------
// Gates

/** out = a ⊙ b (the pre-gate v ⊙ x1 and the post-gate y ⊙ x2), one invocation per element. */
export function createHyenaGate(gpu: Gpu, label: string, args: GateArgs): Dispatch {
  const s = args.shape;
  checkShape(label, s);
  const rows = rowsOf(s), d = s.channels;
  const a = resolveView(label, "a", args.a, rows, d), b = resolveView(label, "b", args.b, rows, d);
  const out = resolveView(label, "out", args.out, rows, d);
  validate(label, { a: [a, "view"], b: [b, "view"], out: [out, "view"] }, ["out"]);
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "gate_forward",
    { PASS_GATE_FORWARD: true },
    [params(gpu, label, { ...s, in0: a, in1: b, out0: out }), a.tensor, b.tensor, out.tensor],
    grid1d(gpu, ceilDiv(elements(s), WG)),
  );
}

/** da = dout·b, db = dout·a (overwrite, or += with accumulate), one invocation per element. */
export function createHyenaGateBackward(gpu: Gpu, label: string, args: GateBackwardArgs): Dispatch {
  const s = args.shape;
  checkShape(label, s);
  const rows = rowsOf(s), d = s.channels;
  const a = resolveView(label, "a", args.a, rows, d), b = resolveView(label, "b", args.b, rows, d);
  const da = resolveView(label, "da", args.da, rows, d), db = resolveView(label, "db", args.db, rows, d);
  const shared = da.tensor.buffer === db.tensor.buffer;
  if (shared) {
    const [lo, hi] = da.column < db.column ? [da, db] : [db, da];
    if (da.rowStride !== db.rowStride || lo.column + d > hi.column) {
      throw new Error(`${label}: da and db share ${da.tensor.label}: give both the same row stride, disjoint columns`);
    }
  }
  validate(
    label,
    {
      a: [a, "view"],
      b: [b, "view"],
      dout: [args.dout, elements(s)],
      da: [da, "view"],
      db: [db, "view"],
    },
    ["da", "db"],
    [["da", "db"]],
  );
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "gate_backward",
    { PASS_GATE_BACKWARD: true, SHARED_OUT: shared, ACCUMULATE: Boolean(args.accumulate) },
    [
      params(gpu, label, { ...s, in0: a, in1: b, out0: da, out1: db }),
      a.tensor,
      b.tensor,
      args.dout,
      da.tensor,
      ...(shared ? [] : [db.tensor]),
    ],
    grid1d(gpu, ceilDiv(elements(s), WG)),
  );
}

// ---------------------------------------------------------------------------------------------------------------------
// Sin activation

function sinShape(label: string, s: SinShape): HyenaShape {
  checkDims(label, { rows: s.rows, width: s.width });
  return { batch: 1, seqLen: s.rows, channels: s.width };
}

/** y = sin(freq ⊙ x), one invocation per element. */
export function createSinActivation(gpu: Gpu, label: string, args: SinActivationArgs): Dispatch {
  const s = sinShape(label, args), n = args.rows * args.width;
  validate(label, { x: [args.x, n], freq: [args.freq, args.width], y: [args.y, n] }, ["y"]);
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "sin_forward",
    { PASS_SIN_FORWARD: true },
    [params(gpu, label, s), args.x, args.freq, args.y],
    grid1d(gpu, ceilDiv(n, WG)),
  );
}

/**
 * Two dispatches: dx (overwrite) with per-(column, row block) partials of dfreq, then their reduction over the blocks
 * in order (dfreq +=). Workspace: [blocks, F].
 */
export function createSinActivationBackward(gpu: Gpu, label: string, args: SinActivationBackwardArgs): HyenaDispatch {
  const s = sinShape(label, args), n = args.rows * args.width, F = args.width;
  validate(label, {
    x: [args.x, n],
    freq: [args.freq, F],
    dy: [args.dy, n],
    dx: [args.dx, n],
    dfreq: [args.dfreq, F],
  }, ["dx", "dfreq"]);
  const { rowsPerBlock, numBlocks } = blocking(args.rows);
  const partials = gpu.allocator.tensor(`${label}.partials`, [numBlocks, F], "workspace");
  const uni = params(gpu, label, { ...s, rowsPerBlock, numBlocks });
  const data = makeDispatch(
    gpu,
    `${label}.data`,
    KERNEL,
    "sin_backward_data",
    { PASS_SIN_BWD_DATA: true },
    [uni, args.x, args.freq, args.dy, args.dx, partials],
    [ceilDiv(F, WG), numBlocks],
  );
  const reduce = makeDispatch(
    gpu,
    `${label}.reduce`,
    KERNEL,
    "sin_backward_reduce",
    { PASS_SIN_BWD_REDUCE: true },
    [uni, partials, args.dfreq],
    [ceilDiv(F, WG)],
  );
  return sequence(label, [data, reduce], [partials]);
}

// ---------------------------------------------------------------------------------------------------------------------
// Exponential modulation

function modulation(
  gpu: Gpu,
  label: string,
  s: ModulationShape,
  src: Tensor,
  dst: Tensor,
  accumulate: boolean,
): Dispatch {
  const lMax = s.lMax ?? s.seqLen;
  checkDims(label, { seqLen: s.seqLen, channels: s.channels, lMax });
  if (s.seqLen > lMax) throw new Error(`${label}: seqLen ${s.seqLen} exceeds lMax ${lMax}`);
  const n = s.seqLen * s.channels;
  validate(label, { src: [src, n], dst: [dst, n] }, ["dst"]);
  const { min, max } = HYENA_DELTA_RANGE;
  const uni = params(gpu, label, {
    batch: 1,
    seqLen: s.seqLen,
    channels: s.channels,
    tScale: lMax > 1 ? 1 / (lMax - 1) : 0,
    deltaMin: min,
    deltaStep: s.channels > 1 ? (max - min) / (s.channels - 1) : 0,
  });
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "modulate",
    { PASS_MODULATE: true, ACCUMULATE: accumulate },
    [uni, src, dst],
    grid1d(gpu, ceilDiv(n, WG)),
  );
}

/** h = hraw·exp(-t_n·|δ_c|) (δ and t computed in the kernel), one invocation per element. */
export function createModulation(gpu: Gpu, label: string, args: ModulationArgs): Dispatch {
  return modulation(gpu, label, args, args.hraw, args.h, false);
}

/** dhraw = dh·exp(-t_n·|δ_c|) (overwrite, or += with accumulate): δ is a buffer, not trained. */
export function createModulationBackward(gpu: Gpu, label: string, args: ModulationBackwardArgs): Dispatch {
  return modulation(gpu, label, args, args.dh, args.dhraw, Boolean(args.accumulate));
}

// ---------------------------------------------------------------------------------------------------------------------
// Long convolution

interface LongConvPlan {
  TB: number;
  segments: { begin: number; end: number }[];
  vec4: boolean;
  groups: number;
  blocks: number;
  grid: [number, number];
}

function longConvPlan(gpu: Gpu, label: string, s: HyenaShape, opts: LongConvOptions, views: View[]): LongConvPlan {
  checkShape(label, s);
  const TB = opts.blockTokens ?? LONG_CONV_BLOCK_TOKENS;
  if (!Number.isInteger(TB) || TB < 1 || TB > 16) {
    throw new Error(`${label}: blockTokens must be an integer in [1, 16], got ${TB}`);
  }
  const S = opts.segmentTokens ?? longConvSegmentTokens(gpu, s.seqLen, TB);
  if (!Number.isInteger(S) || S < 1) throw new Error(`${label}: segmentTokens must be a positive integer, got ${S}`);
  const aligned = s.channels % 4 === 0 && views.every((v) => v.column % 4 === 0 && v.rowStride % 4 === 0);
  if (opts.vec4 && !aligned) {
    throw new Error(`${label}: vec4 needs channels and every view's column and row stride to be multiples of 4`);
  }
  const vec4 = opts.vec4 ?? aligned;
  const groups = vec4 ? s.channels / 4 : s.channels, blocks = ceilDiv(s.seqLen, TB);
  return {
    TB,
    segments: longConvSegments(s.seqLen, S),
    vec4,
    groups,
    blocks,
    grid: grid1d(gpu, ceilDiv(groups * blocks * s.batch, WG)),
  };
}

/** y = Σ_{s≤t} h[t-s]·v[s] + D·v: one dispatch per segment of steps, in order. */
export function createLongConv(gpu: Gpu, label: string, args: LongConvArgs): HyenaDispatch {
  const s = args.shape;
  checkShape(label, s);
  const rows = rowsOf(s), d = s.channels;
  const v = resolveView(label, "v", args.v, rows, d), y = resolveView(label, "y", args.y, rows, d);
  validate(label, { v: [v, "view"], h: [args.h, s.seqLen * d], bias: [args.bias, d], y: [y, "view"] }, ["y"]);
  if ((args.variant ?? selectLongConvVariant(gpu, s)) === "fft") {
    return longConvFft(gpu, label, s, v, args.h, args.bias, y);
  }
  const plan = longConvPlan(gpu, label, s, args, [v, y]);
  const defines = { PASS_LONG_CONV: true, TB: plan.TB, VEC4: plan.vec4, REVERSE: false };
  const passes = plan.segments.map(({ begin, end }, k) => {
    const l = `${label}.${begin}`;
    const uni = params(gpu, l, {
      ...s,
      s0: begin,
      s1: end,
      withBias: k === 0,
      addOld: k > 0,
      in0: v,
      out0: y,
      blocks: plan.blocks,
      groups: plan.groups,
    });
    return makeDispatch(gpu, l, KERNEL, "long_conv", defines, [uni, v.tensor, args.h, args.bias, y.tensor], plan.grid);
  });
  return sequence(label, passes, []);
}

/**
 * dv (the mirrored long conv, one dispatch per segment), the per-example partials of dh (one dispatch per segment),
 * then their reduction over the batch in order into dh (overwrite) and dD (+= its lag-0 value). Workspace: the
 * partials [B, L, d].
 */
export function createLongConvBackward(gpu: Gpu, label: string, args: LongConvBackwardArgs): HyenaDispatch {
  const s = args.shape;
  checkShape(label, s);
  const rows = rowsOf(s), d = s.channels, L = s.seqLen;
  const v = resolveView(label, "v", args.v, rows, d), dy = resolveView(label, "dy", args.dy, rows, d);
  const dv = resolveView(label, "dv", args.dv, rows, d);
  validate(label, {
    v: [v, "view"],
    h: [args.h, L * d],
    bias: [args.bias, d],
    dy: [dy, "view"],
    dv: [dv, "view"],
    dh: [args.dh, L * d],
    dbias: [args.dbias, d],
  }, ["dv", "dh", "dbias"]);
  if ((args.variant ?? selectLongConvVariant(gpu, s)) === "fft") {
    return longConvFftBackward(
      gpu,
      label,
      s,
      { v, dy, dv, h: args.h, bias: args.bias, dh: args.dh, dbias: args.dbias },
      {
        accumulate: Boolean(args.accumulate),
      },
    );
  }
  const plan = longConvPlan(gpu, label, s, args, [v, dy, dv]);
  const partial = gpu.allocator.tensor(`${label}.partial`, [s.batch, L, d], "workspace");
  const common = { ...s, blocks: plan.blocks, groups: plan.groups };
  const passes: Dispatch[] = [];
  plan.segments.forEach(({ begin, end }, k) => {
    const l = `${label}.dv.${begin}`;
    const uni = params(gpu, l, {
      ...common,
      s0: begin,
      s1: end,
      withBias: k === 0,
      addOld: k > 0 || Boolean(args.accumulate),
      in0: dy,
      out0: dv,
    });
    passes.push(makeDispatch(
      gpu,
      l,
      KERNEL,
      "long_conv",
      { PASS_LONG_CONV: true, TB: plan.TB, VEC4: plan.vec4, REVERSE: true },
      [uni, dy.tensor, args.h, args.bias, dv.tensor],
      plan.grid,
    ));
  });
  plan.segments.forEach(({ begin, end }, k) => {
    const l = `${label}.dh.${begin}`;
    const uni = params(gpu, l, { ...common, s0: begin, s1: end, addOld: k > 0, in0: dy, in1: v });
    passes.push(makeDispatch(
      gpu,
      l,
      KERNEL,
      "long_conv_dh",
      { PASS_LONG_CONV_DH: true, TB: plan.TB, VEC4: plan.vec4 },
      [uni, dy.tensor, v.tensor, partial],
      plan.grid,
    ));
  });
  passes.push(makeDispatch(
    gpu,
    `${label}.reduce`,
    KERNEL,
    "long_conv_reduce",
    { PASS_LONG_CONV_REDUCE: true, TB: plan.TB, VEC4: plan.vec4 },
    [params(gpu, `${label}.reduce`, common), partial, args.dh, args.dbias],
    grid1d(gpu, ceilDiv(L * plan.groups, WG)),
  ));
  return sequence(label, passes, [partial]);
}

// ---------------------------------------------------------------------------------------------------------------------
// Long convolution, FFT variant

/** Floats of one FFT workspace of the fft variant: [N, ⌈B/2⌉·d] complex values (the forward uses two, the backward three). */
export function longConvFftWorkspaceLength(shape: HyenaShape): number {
  return 2 * longConvFftSize(shape.seqLen) * Math.ceil(shape.batch / 2) * shape.channels;
}

interface FftContext {
  gpu: Gpu;
  label: string;
  s: HyenaShape;
  N: number;
  /** Complex sequences of the batch pairs: ⌈B/2⌉·d. */
  S: number;
  twiddle: Tensor;
  passes: Dispatch[];
}

function fftContext(gpu: Gpu, label: string, s: HyenaShape): FftContext {
  const N = longConvFftSize(s.seqLen), max = gpu.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  if (N / 2 > max) throw new Error(`${label}: the fft variant's ${N}-point FFT needs N/2 <= ${max} workgroups`);
  const table = new Float32Array(2 * N);
  for (let j = 0; j < N; j++) {
    table[2 * j] = Math.cos(-2 * Math.PI * j / N);
    table[2 * j + 1] = Math.sin(-2 * Math.PI * j / N);
  }
  const twiddle = gpu.allocator.tensor(`${label}.twiddle`, [N, 2], "workspace");
  gpu.device.queue.writeBuffer(twiddle.buffer, 0, table);
  return { gpu, label, s, N, S: Math.ceil(s.batch / 2) * s.channels, twiddle, passes: [] };
}

function fftParams(ctx: FftContext, label: string, f: Partial<UniformFields>): GPUBuffer {
  return params(ctx.gpu, label, {
    ...ctx.s,
    s0: ctx.N,
    s1: ctx.S,
    groups: Math.ceil(ctx.s.batch / 2),
    tScale: 1 / ctx.N,
    ...f,
  });
}

function fftPass(
  ctx: FftContext,
  name: string,
  entry: string,
  defines: Record<string, boolean>,
  bindings: (Tensor | GPUBuffer)[],
  invocations: number,
  f: Partial<UniformFields> = {},
): void {
  const l = `${ctx.label}.${name}`;
  ctx.passes.push(makeDispatch(
    ctx.gpu,
    l,
    KERNEL,
    entry,
    defines,
    [fftParams(ctx, l, f), ...bindings],
    grid1d(ctx.gpu, ceilDiv(invocations, WG)),
  ));
}

/**
 * The Stockham stages of S sequences from `src` (radix 4, one radix-2 stage last when log2(N) is odd), ping-ponging
 * between a and b; returns the result's buffer.
 */
function fftStages(ctx: FftContext, name: string, S: number, src: Tensor, a: Tensor, b: Tensor, inverse: boolean) {
  let cur = src;
  for (let stride = 1; stride < ctx.N;) {
    const radix4 = stride * 4 <= ctx.N, dst = cur === a ? b : a, l = `${ctx.label}.${name}.${stride}`;
    const butterflies = ctx.N / (radix4 ? 4 : 2);
    ctx.passes.push(makeDispatch(
      ctx.gpu,
      l,
      KERNEL,
      "fft_stage",
      { PASS_FFT_STAGE: true, INVERSE: inverse, RADIX4: radix4 },
      [fftParams(ctx, l, { s1: S, blocks: Math.log2(stride) }), cur, dst, ctx.twiddle],
      [ceilDiv(S, WG), butterflies],
    ));
    cur = dst;
    stride *= radix4 ? 4 : 2;
  }
  return cur;
}

/** The filter's spectrum [N, d] from h, in one of a, b. */
function filterSpectrum(ctx: FftContext, h: Tensor, a: Tensor, b: Tensor): Tensor {
  const d = ctx.s.channels;
  fftPass(ctx, "h.pack", "fft_pack_filter", { PASS_FFT_PACK_FILTER: true }, [h, a], ctx.N * d);
  return fftStages(ctx, "h.fft", d, a, b, a, false);
}

/** The spectrum [N, S] of the batch pairs of x (a view), in one of a, b. */
function pairSpectrum(ctx: FftContext, name: string, x: View, a: Tensor, b: Tensor): Tensor {
  fftPass(ctx, `${name}.pack`, "fft_pack_pairs", { PASS_FFT_PACK_PAIRS: true }, [x.tensor, a], ctx.N * ctx.S, {
    in0: x,
  });
  return fftStages(ctx, `${name}.fft`, ctx.S, a, b, a, false);
}

/** out = irfft-like inverse of src ⊙ H (CONJ: ⊙ conj H) / N, unpacked per example, + D·x. */
function filterAndUnpack(
  ctx: FftContext,
  name: string,
  spec: Tensor,
  H: Tensor,
  x: View,
  bias: Tensor,
  out: View,
  bufs: [Tensor, Tensor],
  conj: boolean,
  addOld: boolean,
): void {
  const [a, b] = bufs;
  fftPass(ctx, `${name}.mul`, "fft_mul", { PASS_FFT_MUL: true, CONJ: conj }, [spec, H, a], ctx.N * ctx.S);
  const res = fftStages(ctx, `${name}.ifft`, ctx.S, a, b, a, true);
  fftPass(
    ctx,
    `${name}.unpack`,
    "fft_unpack_pairs",
    { PASS_FFT_UNPACK_PAIRS: true },
    [res, x.tensor, bias, out.tensor],
    elements(ctx.s),
    { in1: x, out0: out, addOld },
  );
}

function fftBuffers(ctx: FftContext, count: number): { big: Tensor[]; small: Tensor[] } {
  const big = Array.from(
    { length: count },
    (_, i) => ctx.gpu.allocator.tensor(`${ctx.label}.spec${i}`, [ctx.N, ctx.S, 2], "workspace"),
  );
  const small = [0, 1].map((i) =>
    ctx.gpu.allocator.tensor(`${ctx.label}.filter${i}`, [ctx.N, ctx.s.channels, 2], "workspace")
  );
  return { big, small };
}

/**
 * The fft variant's forward: H = FFT(h) (d sequences), V = FFT(v pairs), y = IFFT(V·H/N) + D·v: 3·log2(N) stage
 * dispatches. Workspace: two [N, ⌈B/2⌉·d] spectra, two [N, d], the twiddle table.
 */
function longConvFft(gpu: Gpu, label: string, s: HyenaShape, v: View, h: Tensor, bias: Tensor, y: View): HyenaDispatch {
  const ctx = fftContext(gpu, label, s);
  const { big, small } = fftBuffers(ctx, 2);
  const H = filterSpectrum(ctx, h, small[0], small[1]);
  const V = pairSpectrum(ctx, "v", v, big[0], big[1]);
  const free = V === big[0] ? big[1] : big[0];
  filterAndUnpack(ctx, "y", V, H, v, bias, y, [free, V], false, false);
  return sequence(label, ctx.passes, [...big, ...small, ctx.twiddle]);
}

/**
 * The fft variant's backward: H, DY = FFT(dy pairs); dv = IFFT(DY·conj(H)/N) + D·dy; V = FFT(v pairs);
 * dh = Re IFFT(Σ_pairs DY·conj(V)/N) (pairs in order), dD += dh[0]. Workspace: three [N, ⌈B/2⌉·d] spectra, two [N, d],
 * the twiddle table.
 */
function longConvFftBackward(
  gpu: Gpu,
  label: string,
  s: HyenaShape,
  t: { v: View; dy: View; dv: View; h: Tensor; bias: Tensor; dh: Tensor; dbias: Tensor },
  opts: { accumulate: boolean },
): HyenaDispatch {
  const ctx = fftContext(gpu, label, s), d = s.channels;
  const { big, small } = fftBuffers(ctx, 3);
  const H = filterSpectrum(ctx, t.h, small[0], small[1]);
  const DY = pairSpectrum(ctx, "dy", t.dy, big[0], big[1]);
  const [f0, f1] = [...big].filter((b) => b !== DY);
  filterAndUnpack(ctx, "dv", DY, H, t.dy, t.bias, t.dv, [f0, f1], true, opts.accumulate);
  const V = pairSpectrum(ctx, "v", t.v, f0, f1);
  fftPass(ctx, "dh.reduce", "fft_pair_reduce", { PASS_FFT_PAIR_REDUCE: true }, [DY, V, small[0]], ctx.N * d);
  const G = fftStages(ctx, "dh.ifft", d, small[0], small[1], small[0], true);
  fftPass(ctx, "dh.unpack", "fft_unpack_filter", { PASS_FFT_UNPACK_FILTER: true }, [G, t.dh, t.dbias], s.seqLen * d);
  return sequence(label, ctx.passes, [...big, ...small, ctx.twiddle]);
}
