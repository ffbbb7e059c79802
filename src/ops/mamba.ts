/**
 * Mamba mixer ops (spec §3.5; kernels/mamba.wgsl; float64 reference and the math: src/reference/mamba.ts). All
 * activations are token-major [B*L, width] (row b*L + t). With d_inner Di = 2d, d_state N = 16, dt_rank R = ⌈d/16⌉, a
 * Mamba mixer is assembled as
 *   forward:  matmul h·W_inᵀ → xz [rows, 2Di]; createCausalConvSilu(x = xz[:, 0:Di] → xc);
 *             matmul xc·W_xᵀ → dbc [rows, R + 2N]; matmul dbc[:, 0:R]·W_dtᵀ + b_dt → dtRaw; createSoftplus(→ δ);
 *             createSelectiveScan(xc, δ, A_log, B = dbc[:, R:R+N], C = dbc[:, R+N:R+2N], D → y, checkpoints);
 *             createSiluGate(y, z = xz[:, Di:2Di] → yg); matmul yg·W_outᵀ
 *   backward: (out matmul → dyg); createSiluGateBackward(→ dy, dz into dxz[:, Di:2Di]);
 *             createSelectiveScanBackward(dy → dxc, dδ, dB/dC into ddbc[:, R:R+2N], dA_log, dD);
 *             createSoftplusBackward(dδ → dtRaw grad); dt_proj / x_proj matmuls (ddbc[:, 0:R], dxc += ...);
 *             createCausalConvSiluBackward(dxc → dx into dxz[:, 0:Di], dweight, dbias); in_proj matmul.
 *   The block's norm: createAdd (elementwise.ts) for r = h + r_prev, then createRmsNorm / createRmsNormBackward.
 * Strided operands (x, z, B, C and their gradients) are `MatrixView`s: a column slice of a wider row-major matrix, read
 * and written in place (no split copies). Activation gradients overwrite unless an `accumulate` flag is given;
 * parameter gradients (conv weight/bias, A_log, D, RMSNorm weight) accumulate (+=) through fixed-order reductions (no
 * atomics): the same inputs give bit-identical results.
 *
 * Selective scan: one invocation per (b, c) walks the sequence with the N-value state in registers. The backward needs
 * h_{t-1} at every token in decreasing t, so the sequence is cut into segments of S = `segmentTokens` tokens: the
 * forward saves the state at each segment start (the checkpoints, caller-allocated, `scanCheckpointLength` floats =
 * (⌈L/S⌉ - 1)·N·B·Di); the backward walks the segments last to first and, per segment, recomputes the segment's states
 * from its checkpoint into a workspace (bit-identical to the forward's), sweeps them in decreasing t, and reduces dB,
 * dC over the channels. Backward workspace: `scanWorkspaceLength` floats = (2S + 1)·N·B·Di + (3N + 2)·B·Di + (N + 1)·Di.
 * The default S = ⌈√L⌉ (at least 16) balances the two (both ≈ √L·N·B·Di, against L·B·Di for one activation). On
 * software adapters S is at least 256 (a dispatch costs milliseconds there) and at most 1024 (llvmpipe silently ends an
 * invocation after 65,535 loop iterations), and the forward cuts its sweep into dispatches of at most
 * SCAN_SOFTWARE_FORWARD_TOKENS tokens; on GPUs the forward is one dispatch.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import { ceilDiv, type Dispatch, grid1d, makeDispatch, makeUniform } from "./_dispatch.ts";
import {
  blocking,
  checkDims,
  type MatrixArg,
  type MatrixView,
  type Operand,
  resolveView,
  validate,
  type View,
} from "./_matrix_view.ts";

export interface MambaShape {
  batch: number;
  seqLen: number;
  /** Channels (d_inner for the conv, the gate and the scan). */
  channels: number;
}

export interface ScanShape extends MambaShape {
  /** d_state N. */
  state: number;
}

export type { MatrixArg, MatrixView };

/** A composite dispatch that owns workspace buffers (free them with the op). */
export interface MambaDispatch extends Dispatch {
  readonly workspace: readonly Tensor[];
}

export interface CausalConvSiluArgs {
  shape: MambaShape;
  /** [rows, Di] (view: xz[:, 0:Di]). */
  x: MatrixArg;
  /** conv1d.weight [Di, 1, 4]: tap 0 multiplies x[t-3]. */
  weight: Tensor;
  /** conv1d.bias [Di] */
  bias: Tensor;
  /** Output xc [rows, Di]. */
  y: Tensor;
}

export interface CausalConvSiluBackwardArgs {
  shape: MambaShape;
  x: MatrixArg;
  weight: Tensor;
  bias: Tensor;
  /** dL/dxc [rows, Di]. */
  dy: Tensor;
  /** Output [rows, Di] (view: dxz[:, 0:Di]), overwritten (accumulate: +=). */
  dx: MatrixArg;
  /** [Di, 1, 4] and [Di], accumulated (+=). */
  dweight: Tensor;
  dbias: Tensor;
  accumulate?: boolean;
}

export interface SoftplusArgs {
  shape: MambaShape;
  /** dt_proj's output [rows, Di]. */
  x: Tensor;
  /** Output δ [rows, Di]. */
  y: Tensor;
}

export interface SoftplusBackwardArgs {
  shape: MambaShape;
  x: Tensor;
  /** dL/dδ [rows, Di]. */
  dy: Tensor;
  /** Output [rows, Di] (overwritten): dy·sigmoid(x). */
  dx: Tensor;
}

export interface SiluGateArgs {
  shape: MambaShape;
  /** The scan output [rows, Di]. */
  y: Tensor;
  /** [rows, Di] (view: xz[:, Di:2Di]). */
  z: MatrixArg;
  /** Output [rows, Di]: y·SiLU(z). */
  out: Tensor;
}

export interface SiluGateBackwardArgs {
  shape: MambaShape;
  y: Tensor;
  z: MatrixArg;
  /** [rows, Di] */
  dout: Tensor;
  /** Outputs, overwritten: dout·SiLU(z) [rows, Di] and dout·y·SiLU'(z) (view: dxz[:, Di:2Di]). */
  dy: Tensor;
  dz: MatrixArg;
}

export interface ScanSegmenting {
  /**
   * Tokens per segment (the checkpoint interval and the backward's unit); default `scanSegmentTokens(gpu, seqLen)`.
   * The forward and the backward of one graph must use the same value. At most SCAN_SOFTWARE_MAX_SEGMENT_TOKENS on
   * software adapters.
   */
  segmentTokens?: number;
}

export interface SelectiveScanArgs extends ScanSegmenting {
  shape: ScanShape;
  /** xc [rows, Di]. */
  x: Tensor;
  /** δ [rows, Di] (after softplus). */
  delta: Tensor;
  /** A_log [Di, N]: the kernel uses A = -exp(A_log). */
  A_log: Tensor;
  /** B_t, C_t [rows, N] (views: x_proj's output at columns R and R + N, row stride R + 2N). */
  B: MatrixArg;
  C: MatrixArg;
  /** D [Di] */
  D: Tensor;
  /** Output [rows, Di]. */
  y: Tensor;
  /** Output, kept for the backward: `scanCheckpointLength(shape, segmentTokens)` floats. */
  checkpoints: Tensor;
  /** Segments per forward dispatch; default all on GPUs, ⌊SCAN_SOFTWARE_FORWARD_TOKENS / S⌋ on software adapters. */
  segmentsPerDispatch?: number;
}

export interface SelectiveScanBackwardArgs extends ScanSegmenting {
  shape: ScanShape;
  x: Tensor;
  delta: Tensor;
  A_log: Tensor;
  B: MatrixArg;
  C: MatrixArg;
  D: Tensor;
  /** The forward's checkpoints. */
  checkpoints: Tensor;
  /** dL/dy [rows, Di]. */
  dy: Tensor;
  /** The scan's share of dxc [rows, Di]: overwritten (accumulate: +=). */
  dx: Tensor;
  /** [rows, Di], overwritten. */
  dDelta: Tensor;
  /** [rows, N] each, overwritten (views into x_proj's output gradient; dB and dC may share one buffer). */
  dB: MatrixArg;
  dC: MatrixArg;
  /** [Di, N] and [Di], accumulated (+=). */
  dA_log: Tensor;
  dD: Tensor;
  accumulate?: boolean;
}

export interface RmsNormShape {
  rows: number;
  width: number;
  /** Default 1e-5. */
  eps?: number;
}

export interface RmsNormArgs extends RmsNormShape {
  /** [rows, width] */
  x: Tensor;
  /** [width] */
  weight: Tensor;
  /** Output [rows, width]. */
  y: Tensor;
  /** Output [rows]: 1/sqrt(mean(x²) + eps), kept for the backward. */
  rstd: Tensor;
}

export interface RmsNormBackwardArgs extends RmsNormShape {
  x: Tensor;
  weight: Tensor;
  rstd: Tensor;
  dy: Tensor;
  /** [rows, width]: overwritten, or accumulated into with `accumulate` (the residual stream's gradient). */
  dx: Tensor;
  /** [width], accumulated (+=). */
  dweight: Tensor;
  accumulate?: boolean;
}

const KERNEL = "mamba";
const WG = 64;

/** Longest backward segment on software adapters (≈ 50 loop iterations per token at N = 16, far below 65,535). */
export const SCAN_SOFTWARE_MAX_SEGMENT_TOKENS = 1024;
/** Tokens per forward dispatch on software adapters (whole segments; at least one segment). */
export const SCAN_SOFTWARE_FORWARD_TOKENS = 1024;
/** Shortest default segment on software adapters (see scanSegmentTokens). */
export const SCAN_SOFTWARE_MIN_SEGMENT_TOKENS = 256;
const MIN_SEGMENT_TOKENS = 16;

/**
 * Default segment, at most the sequence: ⌈√L⌉ tokens (the memory optimum), at least 16 on GPUs; on software adapters at
 * least SCAN_SOFTWARE_MIN_SEGMENT_TOKENS (each dispatch costs milliseconds there: one segment for L ≤ 256) and at most
 * SCAN_SOFTWARE_MAX_SEGMENT_TOKENS.
 */
export function scanSegmentTokens(
  gpu: { info: { software: boolean }; limits?: Readonly<Record<string, number>> },
  seqLen: number,
  shape?: Omit<ScanShape, "seqLen">,
): number {
  const root = Math.ceil(Math.sqrt(seqLen));
  const preferred = gpu.info.software
    ? Math.min(seqLen, SCAN_SOFTWARE_MAX_SEGMENT_TOKENS, Math.max(SCAN_SOFTWARE_MIN_SEGMENT_TOKENS, root))
    : Math.min(seqLen, Math.max(MIN_SEGMENT_TOKENS, root));
  if (!shape || !gpu.limits) return preferred;
  // The backward's workspace holds 2S + 1 states of the whole batch: shorter segments where it would pass the largest
  // buffer the adapter binds.
  const bytes = Math.min(gpu.limits.maxStorageBufferBindingSize ?? Infinity, gpu.limits.maxBufferSize ?? Infinity);
  const maxFloats = Math.floor(bytes / 4);
  const full = { ...shape, seqLen };
  let S = preferred;
  while (S > 1 && scanWorkspaceLength(full, S) > maxFloats) S = Math.max(1, Math.floor(S / 2));
  if (scanWorkspaceLength(full, S) > maxFloats) {
    throw new Error(
      `selective scan: even 1-token segments need a ${scanWorkspaceLength(full, 1) * 4}-byte workspace, more than ` +
        `this adapter binds (${bytes}): lower the batch`,
    );
  }
  return S;
}

/** The token ranges [begin, end) of S-token segments in increasing order. */
export function scanSegmentRanges(seqLen: number, segmentTokens: number): { begin: number; end: number }[] {
  const out = [];
  for (let begin = 0; begin < seqLen; begin += segmentTokens) {
    out.push({ begin, end: Math.min(seqLen, begin + segmentTokens) });
  }
  return out;
}

/**
 * Floats of the checkpoints the forward saves: the state before every segment but the first, [segments - 1, N, B·Di]
 * (at least 1: a binding cannot be empty).
 */
export function scanCheckpointLength(shape: ScanShape, segmentTokens: number): number {
  const segments = ceilDiv(shape.seqLen, segmentTokens);
  return Math.max(1, (segments - 1) * shape.state * shape.batch * shape.channels);
}

/** Floats of the backward's workspace: H, G, the carry and A, D (see the module comment). */
export function scanWorkspaceLength(shape: ScanShape, segmentTokens: number): number {
  const N = shape.state, BC = shape.batch * shape.channels;
  const S = Math.min(segmentTokens, shape.seqLen);
  return (2 * S + 1) * N * BC + (3 * N + 2) * BC + (N + 1) * shape.channels;
}

/** Row blocks of the parameter-gradient partials (as in short_conv.ts). */
interface UniformFields {
  shape: MambaShape;
  t0?: number;
  t1?: number;
  segTokens?: number;
  segment?: number;
  in0?: View;
  in1?: View;
  out0?: View;
  out1?: View;
  rowsPerBlock?: number;
  numBlocks?: number;
  eps?: number;
  wsG?: number;
  wsCarry?: number;
  wsParams?: number;
}

function params(gpu: Gpu, label: string, f: UniformFields): GPUBuffer {
  const s = f.shape;
  const view = (v?: View): [["u32", number], ["u32", number]] => [["u32", v?.rowStride ?? 0], ["u32", v?.column ?? 0]];
  return makeUniform(gpu, `${label}.params`, [
    ["u32", s.batch],
    ["u32", s.seqLen],
    ["u32", s.channels],
    ["u32", s.batch * s.seqLen],
    ["u32", f.t0 ?? 0],
    ["u32", f.t1 ?? s.seqLen],
    ["u32", f.segTokens ?? s.seqLen],
    ["u32", f.segment ?? 0],
    ...view(f.in0),
    ...view(f.in1),
    ...view(f.out0),
    ...view(f.out1),
    ["u32", f.rowsPerBlock ?? 0],
    ["u32", f.numBlocks ?? 0],
    ["f32", f.eps ?? 0],
    ["u32", f.wsG ?? 0],
    ["u32", f.wsCarry ?? 0],
    ["u32", f.wsParams ?? 0],
    ["u32", 0],
    ["u32", 0],
  ]);
}

function sequence(label: string, passes: readonly Dispatch[], workspace: readonly Tensor[]): MambaDispatch {
  return {
    label,
    workspace,
    encode(pass) {
      for (const p of passes) p.encode(pass);
    },
  };
}

const rowsOf = (s: MambaShape) => s.batch * s.seqLen;
const elements = (s: MambaShape) => s.batch * s.seqLen * s.channels;

function checkShape(label: string, s: MambaShape): void {
  checkDims(label, { batch: s.batch, seqLen: s.seqLen, channels: s.channels });
}

// ---------------------------------------------------------------------------------------------------------------------
// Causal conv + SiLU

/** xc = SiLU(causal depthwise conv(x) + bias), one invocation per element. */
export function createCausalConvSilu(gpu: Gpu, label: string, args: CausalConvSiluArgs): Dispatch {
  const s = args.shape;
  checkShape(label, s);
  const n = elements(s), C = s.channels;
  const x = resolveView(label, "x", args.x, rowsOf(s), C);
  validate(label, { x: [x, "view"], weight: [args.weight, 4 * C], bias: [args.bias, C], y: [args.y, n] }, ["y"]);
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "conv_forward",
    { PASS_CONV_FORWARD: true },
    [params(gpu, label, { shape: s, in0: x }), x.tensor, args.weight, args.bias, args.y],
    grid1d(gpu, ceilDiv(n, WG)),
  );
}

/**
 * Two dispatches: dx with the block partials of the parameter gradients (per channel and block of rows, rows in
 * order), then their reduction over the blocks in order into dweight, dbias (+=). Workspace: [blocks, Di, 5].
 */
export function createCausalConvSiluBackward(
  gpu: Gpu,
  label: string,
  args: CausalConvSiluBackwardArgs,
): MambaDispatch {
  const s = args.shape;
  checkShape(label, s);
  const n = elements(s), C = s.channels, rows = rowsOf(s);
  const x = resolveView(label, "x", args.x, rows, C), dx = resolveView(label, "dx", args.dx, rows, C);
  validate(label, {
    x: [x, "view"],
    weight: [args.weight, 4 * C],
    bias: [args.bias, C],
    dy: [args.dy, n],
    dx: [dx, "view"],
    dweight: [args.dweight, 4 * C],
    dbias: [args.dbias, C],
  }, ["dx", "dweight", "dbias"]);
  const { rowsPerBlock, numBlocks } = blocking(rows);
  const partials = gpu.allocator.tensor(`${label}.partials`, [numBlocks, C, 5], "workspace");
  const u = params(gpu, label, { shape: s, in0: x, out0: dx, rowsPerBlock, numBlocks });
  const data = makeDispatch(
    gpu,
    `${label}.data`,
    KERNEL,
    "conv_backward_data",
    { PASS_CONV_BWD_DATA: true, ACCUMULATE: Boolean(args.accumulate) },
    [u, x.tensor, args.dy, args.weight, args.bias, dx.tensor, partials],
    [ceilDiv(C, WG), numBlocks],
  );
  const reduce = makeDispatch(
    gpu,
    `${label}.params`,
    KERNEL,
    "conv_backward_params",
    { PASS_CONV_BWD_PARAMS: true },
    [u, partials, args.dweight, args.dbias],
    [ceilDiv(5 * C, WG)],
  );
  return sequence(label, [data, reduce], [partials]);
}

// ---------------------------------------------------------------------------------------------------------------------
// Softplus

/** δ = softplus(x) = max(x, 0) + log1p(e^{-|x|}), one invocation per element. */
export function createSoftplus(gpu: Gpu, label: string, args: SoftplusArgs): Dispatch {
  const s = args.shape;
  checkShape(label, s);
  const n = elements(s);
  validate(label, { x: [args.x, n], y: [args.y, n] }, ["y"]);
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "softplus_forward",
    { PASS_SOFTPLUS_FORWARD: true },
    [params(gpu, label, { shape: s }), args.x, args.y],
    grid1d(gpu, ceilDiv(n, WG)),
  );
}

/** dx = dy·sigmoid(x) (overwrite), one invocation per element. */
export function createSoftplusBackward(gpu: Gpu, label: string, args: SoftplusBackwardArgs): Dispatch {
  const s = args.shape;
  checkShape(label, s);
  const n = elements(s);
  validate(label, { x: [args.x, n], dy: [args.dy, n], dx: [args.dx, n] }, ["dx"]);
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "softplus_backward",
    { PASS_SOFTPLUS_BACKWARD: true },
    [params(gpu, label, { shape: s }), args.x, args.dy, args.dx],
    grid1d(gpu, ceilDiv(n, WG)),
  );
}

// ---------------------------------------------------------------------------------------------------------------------
// Gate

/** out = y·SiLU(z), one invocation per element. */
export function createSiluGate(gpu: Gpu, label: string, args: SiluGateArgs): Dispatch {
  const s = args.shape;
  checkShape(label, s);
  const n = elements(s);
  const z = resolveView(label, "z", args.z, rowsOf(s), s.channels);
  validate(label, { y: [args.y, n], z: [z, "view"], out: [args.out, n] }, ["out"]);
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "gate_forward",
    { PASS_GATE_FORWARD: true },
    [params(gpu, label, { shape: s, in0: z }), args.y, z.tensor, args.out],
    grid1d(gpu, ceilDiv(n, WG)),
  );
}

/** dy = dout·SiLU(z), dz = dout·y·SiLU'(z) (both overwritten), one invocation per element. */
export function createSiluGateBackward(gpu: Gpu, label: string, args: SiluGateBackwardArgs): Dispatch {
  const s = args.shape;
  checkShape(label, s);
  const n = elements(s), rows = rowsOf(s);
  const z = resolveView(label, "z", args.z, rows, s.channels), dz = resolveView(label, "dz", args.dz, rows, s.channels);
  validate(label, {
    y: [args.y, n],
    z: [z, "view"],
    dout: [args.dout, n],
    dy: [args.dy, n],
    dz: [dz, "view"],
  }, ["dy", "dz"]);
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "gate_backward",
    { PASS_GATE_BACKWARD: true },
    [params(gpu, label, { shape: s, in0: z, out0: dz }), args.y, z.tensor, args.dout, args.dy, dz.tensor],
    grid1d(gpu, ceilDiv(n, WG)),
  );
}

// ---------------------------------------------------------------------------------------------------------------------
// Selective scan

function checkScanShape(label: string, s: ScanShape): void {
  checkDims(label, { batch: s.batch, seqLen: s.seqLen, channels: s.channels, state: s.state });
}

function segmentOption(gpu: Gpu, label: string, s: ScanShape, args: ScanSegmenting): number {
  const tokens = args.segmentTokens ?? scanSegmentTokens(gpu, s.seqLen);
  if (!Number.isInteger(tokens) || tokens < 1) {
    throw new Error(`${label}: segmentTokens must be a positive integer, got ${tokens}`);
  }
  if (gpu.info.software && Math.min(tokens, s.seqLen) > SCAN_SOFTWARE_MAX_SEGMENT_TOKENS) {
    throw new Error(
      `${label}: segmentTokens ${tokens} exceeds ${SCAN_SOFTWARE_MAX_SEGMENT_TOKENS} on a software adapter ` +
        `(llvmpipe ends an invocation after 65,535 loop iterations)`,
    );
  }
  return tokens;
}

function scanOperands(label: string, args: SelectiveScanArgs | SelectiveScanBackwardArgs, S: number) {
  const s = args.shape, rows = rowsOf(s), n = elements(s), N = s.state, C = s.channels;
  const B = resolveView(label, "B", args.B, rows, N), Cv = resolveView(label, "C", args.C, rows, N);
  const operands: Record<string, Operand> = {
    x: [args.x, n],
    delta: [args.delta, n],
    A_log: [args.A_log, C * N],
    B: [B, "view"],
    C: [Cv, "view"],
    D: [args.D, C],
    checkpoints: [args.checkpoints, scanCheckpointLength(s, S)],
  };
  return { B, Cv, operands };
}

/**
 * y and the checkpoints: one dispatch per `segmentsPerDispatch` segments in increasing t, each invocation (b, c)
 * carrying its state from the previous dispatch through the checkpoints.
 */
export function createSelectiveScan(gpu: Gpu, label: string, args: SelectiveScanArgs): Dispatch {
  const s = args.shape;
  checkScanShape(label, s);
  const S = segmentOption(gpu, label, s, args), BC = s.batch * s.channels;
  const { B, Cv, operands } = scanOperands(label, args, S);
  validate(label, { ...operands, y: [args.y, elements(s)] }, ["y", "checkpoints"]);
  const segments = scanSegmentRanges(s.seqLen, S);
  const perDispatch = args.segmentsPerDispatch ??
    (gpu.info.software ? Math.max(1, Math.floor(SCAN_SOFTWARE_FORWARD_TOKENS / S)) : segments.length);
  if (!Number.isInteger(perDispatch) || perDispatch < 1) {
    throw new Error(`${label}: segmentsPerDispatch must be a positive integer, got ${perDispatch}`);
  }
  const passes: Dispatch[] = [];
  for (let first = 0; first < segments.length; first += perDispatch) {
    const t0 = segments[first].begin;
    const t1 = segments[Math.min(segments.length, first + perDispatch) - 1].end;
    const l = `${label}.${t0}`;
    passes.push(makeDispatch(
      gpu,
      l,
      KERNEL,
      "scan_forward",
      { PASS_SCAN_FORWARD: true, NS: s.state },
      [
        params(gpu, l, { shape: s, t0, t1, segTokens: S, in0: B, in1: Cv }),
        args.x,
        args.delta,
        args.A_log,
        B.tensor,
        Cv.tensor,
        args.D,
        args.y,
        args.checkpoints,
      ],
      grid1d(gpu, ceilDiv(BC, WG)),
    ));
  }
  return sequence(label, passes, []);
}

/**
 * An init dispatch (carry zeroed, A and D into the workspace); per segment, last to first: recompute its states from
 * the checkpoint, the reverse sweep (dx, dδ, the carry), the channel reduction of dB, dC for its tokens; then the
 * batch reduction into dA_log, dD (+=). Workspace: `scanWorkspaceLength(shape, segmentTokens)` floats.
 */
export function createSelectiveScanBackward(
  gpu: Gpu,
  label: string,
  args: SelectiveScanBackwardArgs,
): MambaDispatch {
  const s = args.shape;
  checkScanShape(label, s);
  const S = segmentOption(gpu, label, s, args), N = s.state, C = s.channels, BC = s.batch * C, rows = rowsOf(s);
  const n = elements(s);
  const { B, Cv, operands } = scanOperands(label, args, S);
  const dB = resolveView(label, "dB", args.dB, rows, N), dC = resolveView(label, "dC", args.dC, rows, N);
  const shared = dB.tensor.buffer === dC.tensor.buffer;
  if (shared) {
    const [lo, hi] = dB.column < dC.column ? [dB, dC] : [dC, dB];
    if (dB.rowStride !== dC.rowStride || lo.column + N > hi.column) {
      throw new Error(`${label}: dB and dC share ${dB.tensor.label}: give both the same row stride, disjoint columns`);
    }
  }
  validate(
    label,
    {
      ...operands,
      dy: [args.dy, n],
      dx: [args.dx, n],
      dDelta: [args.dDelta, n],
      dB: [dB, "view"],
      dC: [dC, "view"],
      dA_log: [args.dA_log, C * N],
      dD: [args.dD, C],
    },
    ["dx", "dDelta", "dB", "dC", "dA_log", "dD"],
    [["dB", "dC"]],
  );
  const segments = scanSegmentRanges(s.seqLen, S);
  const span = Math.min(S, s.seqLen);
  const wsG = (span + 1) * N * BC, wsCarry = wsG + span * N * BC, wsParams = wsCarry + (3 * N + 2) * BC;
  const ws = gpu.allocator.tensor(`${label}.workspace`, [scanWorkspaceLength(s, S)], "workspace");
  const offsets = { wsG, wsCarry, wsParams };
  const grid = grid1d(gpu, ceilDiv(BC, WG));
  const defines = { NS: N };
  const u = params(gpu, label, { shape: s, segTokens: S, ...offsets });
  const passes: Dispatch[] = [
    makeDispatch(gpu, `${label}.init`, KERNEL, "scan_bwd_init", { ...defines, PASS_SCAN_BWD_INIT: true }, [
      u,
      args.A_log,
      args.D,
      ws,
    ], grid),
  ];
  for (let k = segments.length - 1; k >= 0; k--) {
    const { begin: t0, end: t1 } = segments[k], l = `${label}.${t0}`;
    const su = params(gpu, l, {
      shape: s,
      t0,
      t1,
      segTokens: S,
      segment: k,
      in0: B,
      in1: Cv,
      out0: dB,
      out1: dC,
      ...offsets,
    });
    passes.push(
      makeDispatch(
        gpu,
        `${l}.recompute`,
        KERNEL,
        "scan_bwd_recompute",
        { ...defines, PASS_SCAN_BWD_RECOMPUTE: true },
        [su, args.x, args.delta, B.tensor, args.checkpoints, ws],
        grid,
      ),
      makeDispatch(
        gpu,
        `${l}.reverse`,
        KERNEL,
        "scan_bwd_reverse",
        { ...defines, PASS_SCAN_BWD_REVERSE: true, ACCUMULATE: Boolean(args.accumulate) },
        [su, args.x, args.delta, B.tensor, Cv.tensor, args.dy, ws, args.dx, args.dDelta],
        grid,
      ),
      makeDispatch(
        gpu,
        `${l}.reduce`,
        KERNEL,
        "scan_bwd_reduce",
        { ...defines, PASS_SCAN_BWD_REDUCE: true, SHARED_DBC: shared },
        [su, args.dy, ws, dB.tensor, ...(shared ? [] : [dC.tensor])],
        grid1d(gpu, ceilDiv(s.batch * (t1 - t0) * N, WG)),
      ),
    );
  }
  passes.push(
    makeDispatch(gpu, `${label}.final`, KERNEL, "scan_bwd_final", { ...defines, PASS_SCAN_BWD_FINAL: true }, [
      u,
      ws,
      args.dA_log,
      args.dD,
    ], [ceilDiv(C * (N + 1), WG)]),
  );
  return sequence(label, passes, [ws]);
}

// ---------------------------------------------------------------------------------------------------------------------
// RMSNorm

function rmsEps(label: string, shape: RmsNormShape): number {
  checkDims(label, { rows: shape.rows, width: shape.width });
  const eps = shape.eps ?? 1e-5;
  if (!(eps >= 0)) throw new Error(`${label}: eps must be >= 0, got ${eps}`);
  return eps;
}

/** y = x·rstd·w and rstd per row, one invocation per row (serial loops: CPU rasterisers, small widths). */
export function createRmsNorm(gpu: Gpu, label: string, args: RmsNormArgs): Dispatch {
  const eps = rmsEps(label, args), n = args.rows * args.width;
  validate(label, {
    x: [args.x, n],
    weight: [args.weight, args.width],
    y: [args.y, n],
    rstd: [args.rstd, args.rows],
  }, ["y", "rstd"]);
  const shape = { batch: 1, seqLen: args.rows, channels: args.width };
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "rms_forward",
    { PASS_RMS_FORWARD: true },
    [params(gpu, label, { shape, eps }), args.x, args.weight, args.y, args.rstd],
    grid1d(gpu, ceilDiv(args.rows, WG)),
  );
}

/**
 * Three dispatches: dx per row (overwrite or accumulate), dweight's per-row-block partials (rows in order), their
 * reduction over the blocks in order (+=). Workspace: the partials [blocks, width].
 */
export function createRmsNormBackward(gpu: Gpu, label: string, args: RmsNormBackwardArgs): MambaDispatch {
  const eps = rmsEps(label, args), n = args.rows * args.width, W = args.width;
  validate(label, {
    x: [args.x, n],
    weight: [args.weight, W],
    rstd: [args.rstd, args.rows],
    dy: [args.dy, n],
    dx: [args.dx, n],
    dweight: [args.dweight, W],
  }, ["dx", "dweight"]);
  const { rowsPerBlock, numBlocks } = blocking(args.rows);
  const shape = { batch: 1, seqLen: args.rows, channels: W };
  const u = params(gpu, label, { shape, eps, rowsPerBlock, numBlocks });
  const partials = gpu.allocator.tensor(`${label}.partials`, [numBlocks, W], "workspace");
  const dx = makeDispatch(
    gpu,
    `${label}.dx`,
    KERNEL,
    "rms_backward_dx",
    { PASS_RMS_BWD_DX: true, ACCUMULATE: Boolean(args.accumulate) },
    [u, args.x, args.weight, args.dy, args.rstd, args.dx],
    grid1d(gpu, ceilDiv(args.rows, WG)),
  );
  const partial = makeDispatch(
    gpu,
    `${label}.partial`,
    KERNEL,
    "rms_backward_partial",
    { PASS_RMS_BWD_PARTIAL: true },
    [u, args.x, args.dy, args.rstd, partials],
    [ceilDiv(W, WG), numBlocks],
  );
  const reduce = makeDispatch(
    gpu,
    `${label}.reduce`,
    KERNEL,
    "rms_backward_reduce",
    { PASS_RMS_BWD_REDUCE: true },
    [u, partials, args.dweight],
    [ceilDiv(W, WG)],
  );
  return sequence(label, [dx, partial, reduce], [partials]);
}
