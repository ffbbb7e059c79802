/**
 * LayerNorm over the last dimension of [rows, width], plus the ReBased ablation transforms (spec §3.4) through flags:
 * - LayerNorm (default):            y = (x − μ)/sqrt(var + eps)·γ + β
 * - Normalizer (`epsOutside`):      y = (x − μ)/(sqrt(var + eps) + eps), usually without γ/β
 * - Scaler (`normalize: false`):    y = x·γ (+ β)
 * Forward saves per-row mean and s (= 1/sqrt(var + eps), or 1/(sqrt(var + eps) + eps)) for backward.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Defines } from "../gpu/wgsl.ts";
import { type Binding, ceilDiv, type Dispatch, grid1d, makeDispatch, makeUniform } from "./_dispatch.ts";
import { defaultRowsPerBlock } from "./elementwise.ts";

export type LayerNormVariant = "row" | "workgroup";

export interface LayerNormFlags {
  /** Subtract the mean and divide by the standard deviation (default true); false gives the Scaler. */
  normalize?: boolean;
  /** Multiply by γ (default true). */
  gamma?: boolean;
  /** Add β (default true). */
  beta?: boolean;
  /** Default 1e-5. */
  eps?: number;
  /** Divide by sqrt(var + eps) + eps instead of sqrt(var + eps) (the paper's Normalizer). */
  epsOutside?: boolean;
  /** "row": one invocation per row (CPU rasterisers, small widths); "workgroup": one workgroup per row. */
  variant?: LayerNormVariant;
}

export interface LayerNormForwardArgs extends LayerNormFlags {
  x: Tensor;
  /** [rows, width]; may not alias x. */
  y: Tensor;
  /** [width], required when `gamma` is on. */
  gammaParam?: Tensor;
  /** [width], required when `beta` is on. */
  betaParam?: Tensor;
  /** [rows] per-row mean, written when `normalize` is on. */
  mean?: Tensor;
  /** [rows] per-row s, written when `normalize` is on. */
  rstd?: Tensor;
  rows: number;
  width: number;
}

export interface LayerNormBackwardArgs extends LayerNormFlags {
  /** The forward input. */
  x: Tensor;
  dy: Tensor;
  /** Overwritten, or accumulated into when `accumulateDx`. Omit to compute only the parameter gradients. */
  dx?: Tensor;
  accumulateDx?: boolean;
  gammaParam?: Tensor;
  /** Saved by the forward pass (required when `normalize` is on). */
  mean?: Tensor;
  rstd?: Tensor;
  /** [width] gradients, always accumulated (+=). Omit one to skip it. */
  dgamma?: Tensor;
  dbeta?: Tensor;
  rows: number;
  width: number;
  /** Rows summed per partial in the dγ/dβ first pass; default ≈ sqrt(rows). */
  rowsPerBlock?: number;
}

/** Several dispatches recorded as one (WebGPU orders dispatches within a pass, including their storage writes). */
export interface LayerNormBackward extends Dispatch {
  /** The dγ/dβ partial-sum workspace [2, blocks, width] (allocated here), or undefined when no parameter grads. */
  readonly workspace?: Tensor;
}

interface ResolvedFlags {
  normalize: boolean;
  gamma: boolean;
  beta: boolean;
  eps: number;
  epsOutside: boolean;
  variant: LayerNormVariant;
}

function resolveFlags(gpu: Gpu, flags: LayerNormFlags, width: number): ResolvedFlags {
  const eps = flags.eps ?? 1e-5;
  if (!(eps >= 0)) throw new Error(`layernorm: eps must be >= 0, got ${eps}`);
  return {
    normalize: flags.normalize ?? true,
    gamma: flags.gamma ?? true,
    beta: flags.beta ?? true,
    eps,
    epsOutside: flags.epsOutside ?? false,
    // Serial rows win on CPU rasterisers (no barriers) and on narrow rows (a workgroup would mostly idle).
    variant: flags.variant ?? (gpu.info.software || width < 32 ? "row" : "workgroup"),
  };
}

/** All binding numbers (the optional buffers shift them); one define set serves every entry point. */
function layerNormDefines(gpu: Gpu, f: ResolvedFlags, accumulateDx: boolean): Defines {
  const g = f.gamma ? 1 : 0, b = f.beta ? 1 : 0;
  return {
    NORMALIZE: f.normalize,
    HAS_GAMMA: f.gamma,
    HAS_BETA: f.beta,
    EPS_OUTSIDE: f.epsOutside,
    ACCUMULATE_DX: accumulateDx,
    WG: gpu.info.backend === "gl" ? 32 : 64,
    B_FWD_GAMMA: 3,
    B_FWD_BETA: 3 + g,
    B_FWD_MEAN: 3 + g + b,
    B_BWD_GAMMA: 3,
    B_BWD_X: 3 + g,
    B_PART_MEAN: 4,
    B_RED_DGAMMA: 2,
    B_RED_DBETA: 2 + g,
  };
}

function need(label: string, t: Tensor | undefined, n: number, what: string): Tensor {
  if (!t) throw new Error(`${label}: ${what} is required with these flags`);
  if (t.length < n) throw new Error(`${label}: ${what} ${t.label} has ${t.length} elements, needs ${n}`);
  return t;
}

function checkShape(label: string, rows: number, width: number): void {
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(width) || width < 1) {
    throw new Error(`${label}: bad shape rows=${rows} width=${width}`);
  }
}

function rowDispatchSize(gpu: Gpu, variant: LayerNormVariant, rows: number): [number, number] {
  return grid1d(gpu, variant === "row" ? ceilDiv(rows, 64) : rows);
}

export function createLayerNormForward(gpu: Gpu, label: string, args: LayerNormForwardArgs): Dispatch {
  const { rows, width } = args;
  checkShape(label, rows, width);
  const f = resolveFlags(gpu, args, width);
  const n = rows * width;
  const bindings: Binding[] = [];
  const uniform = makeUniform(gpu, `${label}.params`, [
    ["u32", rows],
    ["u32", width],
    ["f32", f.eps],
    ["u32", 0],
    ["u32", 0],
  ]);
  bindings.push(uniform, need(label, args.x, n, "x"), need(label, args.y, n, "y"));
  if (args.x === args.y) throw new Error(`${label}: y may not alias x`);
  if (f.gamma) bindings.push(need(label, args.gammaParam, width, "gammaParam"));
  if (f.beta) bindings.push(need(label, args.betaParam, width, "betaParam"));
  if (f.normalize) bindings.push(need(label, args.mean, rows, "mean"), need(label, args.rstd, rows, "rstd"));
  return makeDispatch(
    gpu,
    label,
    "layernorm",
    f.variant === "row" ? "forward_row" : "forward_wg",
    layerNormDefines(gpu, f, false),
    bindings,
    rowDispatchSize(gpu, f.variant, rows),
  );
}

export function createLayerNormBackward(gpu: Gpu, label: string, args: LayerNormBackwardArgs): LayerNormBackward {
  const { rows, width } = args;
  checkShape(label, rows, width);
  const f = resolveFlags(gpu, args, width);
  const n = rows * width;
  const rowsPerBlock = args.rowsPerBlock ?? defaultRowsPerBlock(rows);
  if (!Number.isInteger(rowsPerBlock) || rowsPerBlock < 1) {
    throw new Error(`${label}: bad rowsPerBlock ${rowsPerBlock}`);
  }
  const blocks = ceilDiv(rows, rowsPerBlock);
  const uniform = makeUniform(gpu, `${label}.params`, [
    ["u32", rows],
    ["u32", width],
    ["f32", f.eps],
    ["u32", rowsPerBlock],
    ["u32", blocks],
  ]);
  const defines = layerNormDefines(gpu, f, Boolean(args.accumulateDx));
  const x = need(label, args.x, n, "x"), dy = need(label, args.dy, n, "dy");
  const stats = f.normalize ? [need(label, args.mean, rows, "mean"), need(label, args.rstd, rows, "rstd")] : [];
  const parts: Dispatch[] = [];

  if (args.dx) {
    const dx = need(label, args.dx, n, "dx");
    if (dx === dy || dx === x) throw new Error(`${label}: dx may not alias x or dy`);
    const gamma = f.gamma ? [need(label, args.gammaParam, width, "gammaParam")] : [];
    parts.push(makeDispatch(
      gpu,
      `${label}.dx`,
      "layernorm",
      f.variant === "row" ? "backward_dx_row" : "backward_dx_wg",
      defines,
      [uniform, dy, dx, ...gamma, ...(f.normalize ? [x, ...stats] : [])],
      rowDispatchSize(gpu, f.variant, rows),
    ));
  }

  const wantGamma = f.gamma && args.dgamma !== undefined;
  const wantBeta = f.beta && args.dbeta !== undefined;
  if (args.dgamma && !f.gamma) throw new Error(`${label}: dgamma given but gamma is off`);
  if (args.dbeta && !f.beta) throw new Error(`${label}: dbeta given but beta is off`);
  let workspace: Tensor | undefined;
  if ((wantGamma || wantBeta) && rows > 0) {
    // The reduce pass binds every enabled parameter gradient, so both must be given when both are enabled.
    if (f.gamma !== wantGamma || f.beta !== wantBeta) {
      throw new Error(`${label}: give dgamma and dbeta for every enabled parameter (gamma=${f.gamma} beta=${f.beta})`);
    }
    workspace = gpu.allocator.tensor(`${label}.partials`, [2, blocks, width], "workspace");
    parts.push(makeDispatch(
      gpu,
      `${label}.param_partial`,
      "layernorm",
      "param_partial",
      defines,
      [uniform, x, dy, workspace, ...stats],
      [ceilDiv(width, 64), blocks],
    ));
    const grads = [
      ...(wantGamma ? [need(label, args.dgamma, width, "dgamma")] : []),
      ...(wantBeta ? [need(label, args.dbeta, width, "dbeta")] : []),
    ];
    parts.push(makeDispatch(
      gpu,
      `${label}.param_reduce`,
      "layernorm",
      "param_reduce",
      defines,
      [uniform, workspace, ...grads],
      [ceilDiv(width, 64)],
    ));
  }
  return {
    label,
    workspace,
    encode(pass) {
      for (const d of parts) d.encode(pass);
    },
  };
}
