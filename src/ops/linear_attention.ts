/**
 * Based / ReBased causal linear attention (exact parallel form, spec §5.1): forward y = Σ g(S) v / (Σ g(S) + eps) and
 * its backward (dq; dk, dv), see kernels/linear_attention.wgsl.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import { ceilDiv, type Dispatch, makeDispatch, makeUniform } from "./_dispatch.ts";

export type LinearAttentionKernel = "based" | "rebased";
/**
 * Parallel (exact O(L²)) variants, all summing the same terms in the same order (bit-identical results):
 * "rows": one invocation per row with register accumulators, keys read from global memory (CPU rasterisers);
 * "tiled": the same with key tiles staged through workgroup memory;
 * "smem": one invocation per (row, output column) with scalar accumulators, score tiles in workgroup memory (GPUs).
 * "chunked": forward only, the O(L) fused chunk form of spec §5.3 (f ≤ 16); its backward uses the default parallel
 * variant of the adapter.
 */
export type LinearAttentionVariant = "rows" | "tiled" | "smem" | "chunked";

/** [R]'s denominator eps for Based and ReBased. */
export const DEFAULT_LINEAR_ATTENTION_EPS = 1e-12;

export interface LinearAttentionConfig {
  batch: number;
  seqLen: number;
  heads: number;
  /** f: query/key features per head (16 in the paper). */
  featureDim: number;
  /** dv: value features per head (⌊d/12⌋ in the paper). */
  valueDim: number;
  kernel: LinearAttentionKernel;
  /** Default DEFAULT_LINEAR_ATTENTION_EPS. */
  eps?: number;
  variant?: LinearAttentionVariant;
  /** Rows (query rows, or key rows for dk/dv) per workgroup of the rows and tiled variants; default 64. */
  rowsPerWorkgroup?: number;
  /** Rows staged per step through workgroup memory by the tiled and smem variants; default 32 (8 on GL). */
  keyTile?: number;
  /** Invocations per workgroup of the smem variant (rows per workgroup = this / columns per row); default 512. */
  threadsPerWorkgroup?: number;
}

export interface LinearAttentionForwardArgs extends LinearAttentionConfig {
  /** [B*L, H*f] */
  q: Tensor;
  /** [B*L, H*f] */
  k: Tensor;
  /** [B*L, H*dv] */
  v: Tensor;
  /** Output [B*L, H*dv]. */
  y: Tensor;
  /** Output [B*L, H]: 1/(z + eps), saved for the backward pass (and for attention maps: a_ij = g(S_ij)·zinv_i). */
  zinv: Tensor;
}

export interface LinearAttentionBackwardArgs extends LinearAttentionConfig {
  q: Tensor;
  k: Tensor;
  v: Tensor;
  /** The forward's y and zinv. */
  y: Tensor;
  zinv: Tensor;
  /** [B*L, H*dv] */
  dy: Tensor;
  /** Outputs, shaped like q, k, v. */
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
  /** Scratch [B*L, H]: the dq pass writes dz_i = -(dy_i·y_i)/(z_i+eps) there for the dk/dv pass. */
  dz: Tensor;
  /** dq/dk/dv += instead of =. */
  accumulate?: boolean;
}

/**
 * Software rasterisers pay heavily for workgroup barriers, so they read keys straight from global memory; real GPUs get
 * scalar accumulators and score tiles in workgroup memory.
 */
export function defaultLinearAttentionVariant(gpu: Gpu): LinearAttentionVariant {
  return gpu.info.software ? "rows" : "smem";
}

const DEFAULT_ROWS_PER_WG = 64;
// Best of 128..1024 on an H200 (B=512, L=256 and L ≤ 2048 shapes); capped by the device's invocation limit.
const DEFAULT_SMEM_THREADS = 512;

function validate(label: string, cfg: LinearAttentionConfig, tensors: Record<string, [Tensor, number]>): void {
  for (const [name, n] of Object.entries({ batch: cfg.batch, seqLen: cfg.seqLen, heads: cfg.heads })) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`${label}: ${name} must be a positive integer, got ${n}`);
  }
  for (const [name, n] of Object.entries({ featureDim: cfg.featureDim, valueDim: cfg.valueDim })) {
    // They size per-invocation register arrays in the rows/tiled variants.
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`${label}: ${name} must be in [1, 64], got ${n}`);
  }
  if (cfg.kernel !== "based" && cfg.kernel !== "rebased") throw new Error(`${label}: unknown kernel ${cfg.kernel}`);
  const tuning = { rowsPerWorkgroup: cfg.rowsPerWorkgroup, keyTile: cfg.keyTile, threads: cfg.threadsPerWorkgroup };
  for (const [name, n] of Object.entries(tuning)) {
    if (n !== undefined && (!Number.isInteger(n) || n < 1 || n > 1024)) {
      throw new Error(`${label}: ${name} must be in [1, 1024], got ${n}`);
    }
  }
  for (const [name, [t, per]] of Object.entries(tensors)) {
    const n = cfg.batch * cfg.seqLen * cfg.heads * per;
    if (t.length < n) throw new Error(`${label}: ${name} ${t.label} has ${t.length} elements, needs ${n}`);
  }
}

function makeParams(gpu: Gpu, label: string, cfg: LinearAttentionConfig): GPUBuffer {
  return makeUniform(gpu, `${label}.params`, [
    ["u32", cfg.batch],
    ["u32", cfg.seqLen],
    ["u32", cfg.heads],
    ["f32", 1 / Math.sqrt(cfg.featureDim)],
    ["f32", cfg.eps ?? DEFAULT_LINEAR_ATTENTION_EPS],
  ]);
}

type Pass = "forward" | "backward_dq" | "backward_dkdv";
const PASS_DEFINE: Record<Pass, string> = {
  forward: "PASS_FORWARD",
  backward_dq: "PASS_BWD_DQ",
  backward_dkdv: "PASS_BWD_DKDV",
};

/** Entry point, defines and grid of one pass of a parallel variant ("chunked" backward falls back to the default). */
function parallelPass(gpu: Gpu, cfg: LinearAttentionConfig, pass: Pass, accumulate: boolean) {
  const requested = cfg.variant ?? defaultLinearAttentionVariant(gpu);
  const variant = requested === "chunked" ? defaultLinearAttentionVariant(gpu) : requested;
  const f = cfg.featureDim, dv = cfg.valueDim;
  const defines: Record<string, number | boolean> = {
    F: f,
    DV: dv,
    REBASED: cfg.kernel === "rebased",
    ACCUMULATE: accumulate,
    [PASS_DEFINE[pass]]: true,
    // Small on GL, whose compiler unrolls the zero-initialisation of workgroup arrays.
    BS: cfg.keyTile ?? (gpu.info.backend === "gl" ? 8 : 32),
  };
  if (variant === "smem") {
    // One invocation per (row, output column): forward DV values + denominator, dq F, dk/dv F + DV.
    const cols = pass === "forward" ? dv + 1 : pass === "backward_dq" ? f : f + dv;
    const limit = gpu.limits.maxComputeInvocationsPerWorkgroup ?? 256;
    // GL compiles workgroup arrays slowly (it unrolls their zero-initialisation), so it gets small workgroups.
    const fallback = gpu.info.backend === "gl" ? 64 : DEFAULT_SMEM_THREADS;
    const threads = Math.min(cfg.threadsPerWorkgroup ?? fallback, limit);
    const rows = Math.max(1, Math.min(64, Math.floor(threads / cols)));
    if (rows * cols > limit) throw new Error(`linear attention: ${cols} columns per row exceed ${limit} invocations`);
    Object.assign(defines, { SMEM: true, FR: rows, COLS: cols, WG_SIZE: rows * cols });
    return {
      entry: `${pass}_smem`,
      defines,
      workgroups: [ceilDiv(cfg.seqLen, rows), cfg.heads, cfg.batch] as [number, number, number],
    };
  }
  const rowsPerWorkgroup = cfg.rowsPerWorkgroup ?? DEFAULT_ROWS_PER_WG;
  Object.assign(defines, { ROWS_PER_WG: rowsPerWorkgroup, TILED: variant === "tiled" });
  return {
    entry: pass,
    defines,
    workgroups: [ceilDiv(cfg.seqLen, rowsPerWorkgroup), cfg.heads, cfg.batch] as [number, number, number],
  };
}

export function linearAttentionForward(gpu: Gpu, label: string, args: LinearAttentionForwardArgs): Dispatch {
  const f = args.featureDim, dv = args.valueDim;
  validate(label, args, { q: [args.q, f], k: [args.k, f], v: [args.v, dv], y: [args.y, dv], zinv: [args.zinv, 1] });
  const params = makeParams(gpu, label, args);
  if (args.variant === "chunked") return chunkedForward(gpu, label, args, params);
  const { entry, defines, workgroups } = parallelPass(gpu, args, "forward", false);
  return makeDispatch(
    gpu,
    label,
    "linear_attention",
    entry,
    defines,
    [params, args.q, args.k, args.v, args.y, args.zinv],
    workgroups,
  );
}

/** Tokens per chunk (fla's BT) and value columns per workgroup (fla's BV) of the chunked forward. */
const CHUNK = 16;
const CHUNK_COLUMNS = 16;

/** Symmetrically packed feature count: ReBased f(f+1)/2, Based 1 + f + f(f+1)/2 (136 / 153 for f = 16). */
export function packedFeatureCount(kernel: LinearAttentionKernel, f: number): number {
  return (kernel === "based" ? 1 + f : 0) + (f * (f + 1)) / 2;
}

function chunkedForward(gpu: Gpu, label: string, args: LinearAttentionForwardArgs, uniform: GPUBuffer): Dispatch {
  const f = args.featureDim, dv = args.valueDim;
  if (f > 16) throw new Error(`${label}: the chunked variant needs featureDim ≤ 16, got ${f}`);
  // Fewer columns on GL, whose compiler unrolls the zero-initialisation of workgroup arrays (slow to compile).
  const columns = Math.min(dv, gpu.info.backend === "gl" ? 4 : CHUNK_COLUMNS);
  const features = packedFeatureCount(args.kernel, f);
  // state [features, columns+1], q/k chunks, v and o chunks [CHUNK, columns+1], scores [CHUNK, CHUNK].
  const bytes = 4 * (features * (columns + 1) + 2 * CHUNK * f + 2 * CHUNK * (columns + 1) + CHUNK * CHUNK);
  const limit = gpu.limits.maxComputeWorkgroupStorageSize ?? 16384;
  if (bytes > limit) throw new Error(`${label}: chunked state needs ${bytes} B of workgroup memory, limit ${limit}`);
  return makeDispatch(
    gpu,
    label,
    "linear_attention",
    "forward_chunked",
    {
      F: f,
      DV: dv,
      DVT: columns,
      DPHI: features,
      CHUNK,
      CHUNK_WG: 64,
      REBASED: args.kernel === "rebased",
      PASS_FWD_CHUNKED: true,
    },
    [uniform, args.q, args.k, args.v, args.y, args.zinv],
    [ceilDiv(dv, columns), args.heads, args.batch],
  );
}

/** Two dispatches encoded in order: dq (which also writes dz), then dk/dv. */
export function linearAttentionBackward(gpu: Gpu, label: string, args: LinearAttentionBackwardArgs): Dispatch {
  const f = args.featureDim, dv = args.valueDim;
  validate(label, args, {
    q: [args.q, f],
    k: [args.k, f],
    v: [args.v, dv],
    y: [args.y, dv],
    zinv: [args.zinv, 1],
    dy: [args.dy, dv],
    dq: [args.dq, f],
    dk: [args.dk, f],
    dv: [args.dv, dv],
    dz: [args.dz, 1],
  });
  const params = makeParams(gpu, label, args);
  const accumulate = Boolean(args.accumulate);
  const dq = parallelPass(gpu, args, "backward_dq", accumulate);
  const dqPass = makeDispatch(
    gpu,
    `${label}.dq`,
    "linear_attention",
    dq.entry,
    dq.defines,
    [params, args.q, args.k, args.v, args.y, args.zinv, args.dy, args.dq, args.dz],
    dq.workgroups,
  );
  const dkdv = parallelPass(gpu, args, "backward_dkdv", accumulate);
  const dkdvPass = makeDispatch(
    gpu,
    `${label}.dkdv`,
    "linear_attention",
    dkdv.entry,
    dkdv.defines,
    [params, args.q, args.k, args.v, args.zinv, args.dy, args.dz, args.dk, args.dv],
    dkdv.workgroups,
  );
  return {
    label,
    encode(pass) {
      dqPass.encode(pass);
      dkdvPass.encode(pass);
    },
  };
}
