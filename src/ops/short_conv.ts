/**
 * BaseConv gate (spec §3.1): y = conv(u) ⊙ proj + u with a depthwise causal 3-tap conv (+bias), and its backward.
 * See kernels/short_conv.wgsl. The projection proj = u·W_pᵀ + b_p is the matmul op's job, so a full BaseConv layer is:
 *   forward:  matmul(u, W_p, b_p → proj); shortConvGateForward(u, proj → y)
 *   backward: shortConvGateBackward(dy → du, dproj, dweight, dbias);
 *             matmul(dproj, W_p → du, accumulate: true)   (the projection's share of du, added after this op)
 *             matmul(dprojᵀ, u → dW_p, accumulate: true) and db_p += column sums of dproj.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import { ceilDiv, type Dispatch, grid1d, makeDispatch, makeUniform } from "./_dispatch.ts";
import { blocking as rowBlocking } from "./_matrix_view.ts";

export interface ShortConvConfig {
  batch: number;
  seqLen: number;
  /** Channels d. */
  width: number;
}

export interface ShortConvForwardArgs extends ShortConvConfig {
  /** [B*L, d] */
  u: Tensor;
  /** [B*L, d]: u·W_pᵀ + b_p. */
  proj: Tensor;
  /** conv.weight [d, 1, 3] (tap 0 multiplies u[t-2]). */
  weight: Tensor;
  /** conv.bias [d] */
  bias: Tensor;
  /** Output [B*L, d]. */
  y: Tensor;
}

export interface ShortConvBackwardArgs extends ShortConvConfig {
  u: Tensor;
  proj: Tensor;
  weight: Tensor;
  bias: Tensor;
  /** [B*L, d] */
  dy: Tensor;
  /** Output [B*L, d]: gradient through the conv path and the skip (not through proj). */
  du: Tensor;
  /** Output [B*L, d]: dy ⊙ conv(u). */
  dproj: Tensor;
  /** [d, 1, 3], accumulated (+=). */
  dweight: Tensor;
  /** [d], accumulated (+=). */
  dbias: Tensor;
  /** Workspace of shortConvScratchLength(config) elements for per-block partial sums. */
  scratch: Tensor;
  /** du/dproj += instead of =. */
  accumulate?: boolean;
}

/** Row blocks of the parameter-gradient reduction: enough for parallelism, few enough to keep the scratch small. */
function blocking(cfg: ShortConvConfig): { rowsPerBlock: number; numBlocks: number } {
  return rowBlocking(cfg.batch * cfg.seqLen);
}

/** Elements of the backward scratch tensor: [numBlocks, d, 4] partial sums (3 taps + bias). */
export function shortConvScratchLength(cfg: ShortConvConfig): number {
  return blocking(cfg).numBlocks * cfg.width * 4;
}

function validate(label: string, cfg: ShortConvConfig, tensors: Record<string, [Tensor, number]>): void {
  for (const [name, n] of Object.entries({ batch: cfg.batch, seqLen: cfg.seqLen, width: cfg.width })) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`${label}: ${name} must be a positive integer, got ${n}`);
  }
  for (const [name, [t, n]] of Object.entries(tensors)) {
    if (t.length < n) throw new Error(`${label}: ${name} ${t.label} has ${t.length} elements, needs ${n}`);
  }
}

function uniform(gpu: Gpu, label: string, cfg: ShortConvConfig): GPUBuffer {
  const { rowsPerBlock, numBlocks } = blocking(cfg);
  return makeUniform(gpu, `${label}.params`, [
    ["u32", cfg.batch * cfg.seqLen],
    ["u32", cfg.seqLen],
    ["u32", cfg.width],
    ["u32", rowsPerBlock],
    ["u32", numBlocks],
  ]);
}

export function shortConvGateForward(gpu: Gpu, label: string, args: ShortConvForwardArgs): Dispatch {
  const n = args.batch * args.seqLen * args.width, d = args.width;
  validate(label, args, {
    u: [args.u, n],
    proj: [args.proj, n],
    weight: [args.weight, 3 * d],
    bias: [args.bias, d],
    y: [args.y, n],
  });
  return makeDispatch(
    gpu,
    label,
    "short_conv",
    "forward",
    { PASS_FORWARD: true },
    [uniform(gpu, label, args), args.u, args.proj, args.weight, args.bias, args.y],
    grid1d(gpu, ceilDiv(n, 64)),
  );
}

/** Two dispatches encoded in order: data gradients with per-block partials, then the parameter reduction. */
export function shortConvGateBackward(gpu: Gpu, label: string, args: ShortConvBackwardArgs): Dispatch {
  const n = args.batch * args.seqLen * args.width, d = args.width;
  validate(label, args, {
    u: [args.u, n],
    proj: [args.proj, n],
    weight: [args.weight, 3 * d],
    bias: [args.bias, d],
    dy: [args.dy, n],
    du: [args.du, n],
    dproj: [args.dproj, n],
    dweight: [args.dweight, 3 * d],
    dbias: [args.dbias, d],
    scratch: [args.scratch, shortConvScratchLength(args)],
  });
  const params = uniform(gpu, label, args);
  const dataPass = makeDispatch(
    gpu,
    `${label}.data`,
    "short_conv",
    "backward_data",
    { PASS_BWD_DATA: true, ACCUMULATE: Boolean(args.accumulate) },
    [params, args.u, args.proj, args.dy, args.weight, args.bias, args.du, args.dproj, args.scratch],
    [ceilDiv(d, 64), blocking(args).numBlocks],
  );
  const paramPass = makeDispatch(
    gpu,
    `${label}.params`,
    "short_conv",
    "backward_params",
    { PASS_BWD_PARAMS: true },
    [params, args.scratch, args.dweight, args.dbias],
    [ceilDiv(4 * d, 64)],
  );
  return {
    label,
    encode(pass) {
      dataPass.encode(pass);
      paramPass.encode(pass);
    },
  };
}
