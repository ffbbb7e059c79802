/**
 * RWKV-v4 time-mix ops (kernels/rwkv.wgsl; float64 reference and the math: src/reference/rwkv.ts). All activations are
 * token-major [B*L, C] (row b*L + t), parameters per-channel [C]. A time-mix layer is assembled as
 *   forward:  createTimeShiftMix(x → xk, xv, xr); matmuls xk·W_kᵀ → k, xv·W_vᵀ → v, xr·W_rᵀ → r;
 *             createWkvForward(k, v → y, logD); createRwkvGate(r, y → out); matmul out·W_oᵀ
 *   backward: (output matmul → dout); createRwkvGateBackward(dout → dr, dy); createWkvBackward(dy → gk, gv,
 *             d time_decay, d time_first); the projections' matmuls give dxk, dxv, dxr;
 *             createTimeShiftMixBackward(dxk, dxv, dxr → dx, d time_mix_k/v/r).
 * Activation gradients (dx, gk, gv, dr, dwkv) overwrite; parameter gradients (d mix_*, d time_decay, d time_first)
 * accumulate (+=) through fixed-order reductions (no atomics): the same inputs give bit-identical results.
 *
 * WKV is a sequential scan: one invocation per (b, c) channel walks the sequence (B·C invocations, 64 per workgroup).
 * llvmpipe/lavapipe silently end an invocation after 65,535 loop iterations (the rest of its work is skipped, no
 * error), so on software adapters a sweep is cut into segments of `wkvSegmentTokens` tokens, one dispatch each, encoded
 * in order (forward: increasing t; backward: decreasing t), with the sweep state parked in a small workspace buffer
 * between them. Real GPUs sweep the whole sequence in one dispatch.
 *
 * bf16 (RWKV_FLOAT_MODE=bf16 of the reference code, whose WKV returns y.bfloat16() and bf16 gradients): the gate reads
 * bf16(wkv) and writes bf16(dwkv); the WKV backward writes bf16 gk, gv and adds the bf16-rounded batch-summed
 * d time_decay / d time_first. The WKV forward's y and logD stay fp32.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import { ceilDiv, type Dispatch, grid1d, makeDispatch, makeUniform } from "./_dispatch.ts";
import { blocking as rowBlocking } from "./_matrix_view.ts";

export interface RwkvShape {
  batch: number;
  seqLen: number;
  /** Channels C (the attention width). */
  channels: number;
}

/** A composite dispatch that owns workspace buffers (free them with the op). */
export interface RwkvDispatch extends Dispatch {
  readonly workspace: readonly Tensor[];
}

export interface TimeShiftMixArgs extends RwkvShape {
  /** [B*L, C] */
  x: Tensor;
  /** time_mix_k, time_mix_v, time_mix_r: [C] each (PyTorch [1, 1, C]). */
  mixK: Tensor;
  mixV: Tensor;
  mixR: Tensor;
  /** Outputs [B*L, C]: x·mix_s + x_{t-1}·(1 - mix_s). */
  xk: Tensor;
  xv: Tensor;
  xr: Tensor;
}

export interface TimeShiftMixBackwardArgs extends RwkvShape {
  x: Tensor;
  mixK: Tensor;
  mixV: Tensor;
  mixR: Tensor;
  /** Gradients of xk, xv, xr [B*L, C]. */
  dxk: Tensor;
  dxv: Tensor;
  dxr: Tensor;
  /** Output [B*L, C] (overwritten). */
  dx: Tensor;
  /** [C] each, accumulated (+=). */
  dMixK: Tensor;
  dMixV: Tensor;
  dMixR: Tensor;
}

export interface WkvSegmenting {
  /**
   * Tokens per dispatch of the WKV sweeps; default `wkvSegmentTokens(gpu, seqLen)`. Any positive integer (tests force
   * tiny segments); a value >= seqLen sweeps in one dispatch.
   */
  segmentTokens?: number;
}

export interface WkvForwardArgs extends RwkvShape, WkvSegmenting {
  /** [B*L, C] */
  k: Tensor;
  v: Tensor;
  /** The raw parameter [C]; the kernel uses w = -exp(time_decay). */
  timeDecay: Tensor;
  /** u [C] */
  timeFirst: Tensor;
  /** Output wkv [B*L, C], fp32. */
  y: Tensor;
  /** Output [B*L, C]: log of each output's denominator, kept for the backward. */
  logD: Tensor;
}

export interface WkvBackwardArgs extends RwkvShape, WkvSegmenting {
  k: Tensor;
  v: Tensor;
  timeDecay: Tensor;
  timeFirst: Tensor;
  /** The forward's y and logD. */
  y: Tensor;
  logD: Tensor;
  /** dL/dwkv [B*L, C]. */
  gy: Tensor;
  /** Outputs [B*L, C] (overwritten). */
  gk: Tensor;
  gv: Tensor;
  /** [C], accumulated (+=). */
  dTimeDecay: Tensor;
  dTimeFirst: Tensor;
  /** Round gk, gv and the batch-summed parameter gradients to bfloat16. Default false. */
  bf16?: boolean;
}

export interface RwkvGateArgs extends RwkvShape {
  /** Receptance [B*L, C]. */
  r: Tensor;
  /** The WKV output y [B*L, C]. */
  wkv: Tensor;
  /** Output [B*L, C]: sigmoid(r)·wkv. */
  out: Tensor;
  /** Read wkv as bf16(wkv). Default false. */
  bf16?: boolean;
}

export interface RwkvGateBackwardArgs extends RwkvShape {
  r: Tensor;
  wkv: Tensor;
  /** [B*L, C] */
  dout: Tensor;
  /** Outputs [B*L, C] (overwritten): dout·wkv·s(1-s) and dout·s, s = sigmoid(r). */
  dr: Tensor;
  dwkv: Tensor;
  /** dr uses bf16(wkv); dwkv is rounded to bf16. Default false. */
  bf16?: boolean;
}

const KERNEL = "rwkv";
const WG = 64;

/** WKV tokens per dispatch on software adapters: far below llvmpipe's 65,535 loop iterations per invocation. */
export const WKV_SOFTWARE_SEGMENT_TOKENS = 4096;

/** Default WKV segment: `WKV_SOFTWARE_SEGMENT_TOKENS` on CPU rasterisers, the whole sequence on GPUs. */
export function wkvSegmentTokens(gpu: { info: { software: boolean } }, seqLen: number): number {
  return gpu.info.software ? Math.min(seqLen, WKV_SOFTWARE_SEGMENT_TOKENS) : seqLen;
}

/** The token ranges [begin, end) of a WKV sweep in increasing order. */
export function wkvSegments(seqLen: number, segmentTokens: number): { begin: number; end: number }[] {
  const out = [];
  for (let begin = 0; begin < seqLen; begin += segmentTokens) {
    out.push({ begin, end: Math.min(seqLen, begin + segmentTokens) });
  }
  return out;
}

/** Row blocks of the time-shift mix-gradient partials (as in short_conv.ts). */
function blocking(s: RwkvShape): { rowsPerBlock: number; numBlocks: number } {
  return rowBlocking(s.batch * s.seqLen);
}

function validate(
  label: string,
  s: RwkvShape,
  tensors: Record<string, [Tensor, number]>,
  written: readonly string[],
): void {
  for (const [name, n] of Object.entries({ batch: s.batch, seqLen: s.seqLen, channels: s.channels })) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`${label}: ${name} must be a positive integer, got ${n}`);
  }
  for (const [name, [t, n]] of Object.entries(tensors)) {
    if (t.length < n) throw new Error(`${label}: ${name} ${t.label} has ${t.length} elements, needs ${n}`);
  }
  // A written buffer may not be bound twice (WebGPU rejects read + read_write of one buffer in a dispatch).
  for (const w of written) {
    for (const [name, [t]] of Object.entries(tensors)) {
      if (name !== w && t.buffer === tensors[w][0].buffer) {
        throw new Error(`${label}: ${w} ${tensors[w][0].label} may not alias ${name}`);
      }
    }
  }
}

function segmentOption(label: string, args: WkvSegmenting & RwkvShape, gpu: Gpu): number {
  const tokens = args.segmentTokens ?? wkvSegmentTokens(gpu, args.seqLen);
  if (!Number.isInteger(tokens) || tokens < 1) {
    throw new Error(`${label}: segmentTokens must be a positive integer, got ${tokens}`);
  }
  return tokens;
}

function params(gpu: Gpu, label: string, s: RwkvShape, segment = { begin: 0, end: s.seqLen }): GPUBuffer {
  const { rowsPerBlock, numBlocks } = blocking(s);
  return makeUniform(gpu, `${label}.params`, [
    ["u32", s.batch],
    ["u32", s.seqLen],
    ["u32", s.channels],
    ["u32", s.batch * s.seqLen],
    ["u32", segment.begin],
    ["u32", segment.end],
    ["u32", rowsPerBlock],
    ["u32", numBlocks],
  ]);
}

function sequence(label: string, passes: readonly Dispatch[], workspace: readonly Tensor[]): RwkvDispatch {
  return {
    label,
    workspace,
    encode(pass) {
      for (const p of passes) p.encode(pass);
    },
  };
}

const elements = (s: RwkvShape) => s.batch * s.seqLen * s.channels;

/** xk, xv, xr from x in one dispatch (one invocation per element). */
export function createTimeShiftMix(gpu: Gpu, label: string, args: TimeShiftMixArgs): Dispatch {
  const n = elements(args), C = args.channels;
  validate(label, args, {
    x: [args.x, n],
    mixK: [args.mixK, C],
    mixV: [args.mixV, C],
    mixR: [args.mixR, C],
    xk: [args.xk, n],
    xv: [args.xv, n],
    xr: [args.xr, n],
  }, ["xk", "xv", "xr"]);
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "time_shift_forward",
    { PASS_SHIFT_FORWARD: true },
    [params(gpu, label, args), args.x, args.mixK, args.mixV, args.mixR, args.xk, args.xv, args.xr],
    grid1d(gpu, ceilDiv(n, WG)),
  );
}

/**
 * Three dispatches: dx (per element), the mix gradients' per-row-block partials (rows in order), their reduction over
 * the blocks in order into d mix_k/v/r (+=). Workspace: the partials [blocks, 3, C].
 */
export function createTimeShiftMixBackward(gpu: Gpu, label: string, args: TimeShiftMixBackwardArgs): RwkvDispatch {
  const n = elements(args), C = args.channels;
  validate(label, args, {
    x: [args.x, n],
    mixK: [args.mixK, C],
    mixV: [args.mixV, C],
    mixR: [args.mixR, C],
    dxk: [args.dxk, n],
    dxv: [args.dxv, n],
    dxr: [args.dxr, n],
    dx: [args.dx, n],
    dMixK: [args.dMixK, C],
    dMixV: [args.dMixV, C],
    dMixR: [args.dMixR, C],
  }, ["dx", "dMixK", "dMixV", "dMixR"]);
  const { numBlocks } = blocking(args);
  const partials = gpu.allocator.tensor(`${label}.partials`, [numBlocks, 3, C], "workspace");
  const u = params(gpu, label, args);
  const dx = makeDispatch(
    gpu,
    `${label}.dx`,
    KERNEL,
    "time_shift_backward_dx",
    { PASS_SHIFT_BWD_DX: true },
    [u, args.dxk, args.dxv, args.dxr, args.mixK, args.mixV, args.mixR, args.dx],
    grid1d(gpu, ceilDiv(n, WG)),
  );
  const partial = makeDispatch(
    gpu,
    `${label}.partial`,
    KERNEL,
    "time_shift_backward_partial",
    { PASS_SHIFT_BWD_PARTIAL: true },
    [u, args.x, args.dxk, args.dxv, args.dxr, partials],
    [ceilDiv(C, WG), numBlocks],
  );
  const reduce = makeDispatch(
    gpu,
    `${label}.reduce`,
    KERNEL,
    "time_shift_backward_reduce",
    { PASS_SHIFT_BWD_REDUCE: true },
    [u, partials, args.dMixK, args.dMixV, args.dMixR],
    [ceilDiv(3 * C, WG)],
  );
  return sequence(label, [dx, partial, reduce], [partials]);
}

/** One dispatch per segment in increasing t; workspace: the carried state [3, B*C] (a, b, p). */
export function createWkvForward(gpu: Gpu, label: string, args: WkvForwardArgs): RwkvDispatch {
  const n = elements(args), C = args.channels, bc = args.batch * C;
  validate(label, args, {
    k: [args.k, n],
    v: [args.v, n],
    timeDecay: [args.timeDecay, C],
    timeFirst: [args.timeFirst, C],
    y: [args.y, n],
    logD: [args.logD, n],
  }, ["y", "logD"]);
  const segments = wkvSegments(args.seqLen, segmentOption(label, args, gpu));
  const state = gpu.allocator.tensor(`${label}.state`, [3, bc], "workspace");
  const passes = segments.map((segment) =>
    makeDispatch(
      gpu,
      `${label}.${segment.begin}`,
      KERNEL,
      "wkv_forward",
      { PASS_WKV_FORWARD: true },
      [
        params(gpu, `${label}.${segment.begin}`, args, segment),
        args.k,
        args.v,
        args.timeDecay,
        args.timeFirst,
        args.y,
        args.logD,
        state,
      ],
      grid1d(gpu, ceilDiv(bc, WG)),
    )
  );
  return sequence(label, passes, [state]);
}

/**
 * An init dispatch (state zeroed, w and u per (b, c)), one reverse-sweep dispatch per segment in decreasing t, then a
 * per-channel reduction over the batch in order into d time_decay / d time_first (+=). Workspace: the state [9, B*C].
 */
export function createWkvBackward(gpu: Gpu, label: string, args: WkvBackwardArgs): RwkvDispatch {
  const n = elements(args), C = args.channels, bc = args.batch * C;
  validate(label, args, {
    k: [args.k, n],
    v: [args.v, n],
    timeDecay: [args.timeDecay, C],
    timeFirst: [args.timeFirst, C],
    y: [args.y, n],
    logD: [args.logD, n],
    gy: [args.gy, n],
    gk: [args.gk, n],
    gv: [args.gv, n],
    dTimeDecay: [args.dTimeDecay, C],
    dTimeFirst: [args.dTimeFirst, C],
  }, ["gk", "gv", "dTimeDecay", "dTimeFirst"]);
  const segments = wkvSegments(args.seqLen, segmentOption(label, args, gpu)).reverse();
  const state = gpu.allocator.tensor(`${label}.state`, [9, bc], "workspace");
  const bf16 = Boolean(args.bf16);
  const u = params(gpu, label, args);
  const grid = grid1d(gpu, ceilDiv(bc, WG));
  const init = makeDispatch(gpu, `${label}.init`, KERNEL, "wkv_backward_init", { PASS_WKV_BWD_INIT: true }, [
    u,
    args.timeDecay,
    args.timeFirst,
    state,
  ], grid);
  const sweeps = segments.map((segment) =>
    makeDispatch(
      gpu,
      `${label}.${segment.begin}`,
      KERNEL,
      "wkv_backward",
      { PASS_WKV_BACKWARD: true, BF16: bf16 },
      [
        params(gpu, `${label}.${segment.begin}`, args, segment),
        args.k,
        args.v,
        args.y,
        args.logD,
        args.gy,
        args.gk,
        args.gv,
        state,
      ],
      grid,
    )
  );
  const reduce = makeDispatch(
    gpu,
    `${label}.reduce`,
    KERNEL,
    "wkv_backward_reduce",
    { PASS_WKV_BWD_REDUCE: true, BF16: bf16 },
    [u, state, args.dTimeDecay, args.dTimeFirst],
    [ceilDiv(C, WG)],
  );
  return sequence(label, [init, ...sweeps, reduce], [state]);
}

/** out = sigmoid(r)·wkv (bf16: sigmoid(r)·bf16(wkv)), one invocation per element. */
export function createRwkvGate(gpu: Gpu, label: string, args: RwkvGateArgs): Dispatch {
  const n = elements(args);
  validate(label, args, { r: [args.r, n], wkv: [args.wkv, n], out: [args.out, n] }, ["out"]);
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "gate_forward",
    { PASS_GATE_FORWARD: true, BF16: Boolean(args.bf16) },
    [params(gpu, label, args), args.r, args.wkv, args.out],
    grid1d(gpu, ceilDiv(n, WG)),
  );
}

/** dr = dout·wkv·s(1-s), dwkv = dout·s with s = sigmoid(r), one invocation per element (bf16: RwkvGateBackwardArgs). */
export function createRwkvGateBackward(gpu: Gpu, label: string, args: RwkvGateBackwardArgs): Dispatch {
  const n = elements(args);
  validate(label, args, {
    r: [args.r, n],
    wkv: [args.wkv, n],
    dout: [args.dout, n],
    dr: [args.dr, n],
    dwkv: [args.dwkv, n],
  }, ["dr", "dwkv"]);
  return makeDispatch(
    gpu,
    label,
    KERNEL,
    "gate_backward",
    { PASS_GATE_BACKWARD: true, BF16: Boolean(args.bf16) },
    [params(gpu, label, args), args.r, args.wkv, args.dout, args.dr, args.dwkv],
    grid1d(gpu, ceilDiv(n, WG)),
  );
}
