/**
 * Based / ReBased causal linear attention (exact parallel form, spec §5.1): forward y = Σ g(S) v / (Σ g(S) + eps) and
 * its backward (dq; dk, dv), see kernels/linear_attention.wgsl.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import { ceilDiv, type Dispatch, makeDispatch, makeUniform } from "./_dispatch.ts";

export type LinearAttentionKernel = "based" | "rebased";
/**
 * "rows": one invocation per row reading keys from global memory; "tiled": keys staged through workgroup memory;
 * "chunked": forward only, the O(L) fused chunk form of spec §5.3 (f ≤ 16); its backward uses the default parallel
 * variant of the adapter.
 */
export type LinearAttentionVariant = "rows" | "tiled" | "chunked";

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

/** Software rasterisers pay heavily for workgroup barriers, so they read keys straight from global memory. */
export function defaultLinearAttentionVariant(gpu: Gpu): LinearAttentionVariant {
  return gpu.info.software ? "rows" : "tiled";
}

const ROWS_PER_WG = 64;

function validate(label: string, cfg: LinearAttentionConfig, tensors: Record<string, [Tensor, number]>): void {
  for (const [name, n] of Object.entries({ batch: cfg.batch, seqLen: cfg.seqLen, heads: cfg.heads })) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`${label}: ${name} must be a positive integer, got ${n}`);
  }
  for (const [name, n] of Object.entries({ featureDim: cfg.featureDim, valueDim: cfg.valueDim })) {
    // They size register arrays; 64 keeps an invocation's accumulators in registers on real GPUs.
    if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`${label}: ${name} must be in [1, 64], got ${n}`);
  }
  if (cfg.kernel !== "based" && cfg.kernel !== "rebased") throw new Error(`${label}: unknown kernel ${cfg.kernel}`);
  for (const [name, [t, per]] of Object.entries(tensors)) {
    const n = cfg.batch * cfg.seqLen * cfg.heads * per;
    if (t.length < n) throw new Error(`${label}: ${name} ${t.label} has ${t.length} elements, needs ${n}`);
  }
}

function common(gpu: Gpu, label: string, cfg: LinearAttentionConfig) {
  const requested = cfg.variant ?? defaultLinearAttentionVariant(gpu);
  const variant = requested === "chunked" ? defaultLinearAttentionVariant(gpu) : requested;
  const uniform = makeUniform(gpu, `${label}.params`, [
    ["u32", cfg.batch],
    ["u32", cfg.seqLen],
    ["u32", cfg.heads],
    ["f32", 1 / Math.sqrt(cfg.featureDim)],
    ["f32", cfg.eps ?? DEFAULT_LINEAR_ATTENTION_EPS],
  ]);
  const defines = {
    F: cfg.featureDim,
    DV: cfg.valueDim,
    REBASED: cfg.kernel === "rebased",
    ROWS_PER_WG,
    TILED: variant === "tiled",
    // Small on GL, whose compiler unrolls the zero-initialisation of workgroup arrays.
    BS: gpu.info.backend === "gl" ? 8 : 32,
  };
  const workgroups: [number, number, number] = [ceilDiv(cfg.seqLen, ROWS_PER_WG), cfg.heads, cfg.batch];
  return { uniform, defines, workgroups };
}

export function linearAttentionForward(gpu: Gpu, label: string, args: LinearAttentionForwardArgs): Dispatch {
  const f = args.featureDim, dv = args.valueDim;
  validate(label, args, { q: [args.q, f], k: [args.k, f], v: [args.v, dv], y: [args.y, dv], zinv: [args.zinv, 1] });
  const { uniform, defines, workgroups } = common(gpu, label, args);
  if (args.variant === "chunked") return chunkedForward(gpu, label, args, uniform);
  return makeDispatch(
    gpu,
    label,
    "linear_attention",
    "forward",
    { ...defines, PASS_FORWARD: true },
    [uniform, args.q, args.k, args.v, args.y, args.zinv],
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
  const columns = Math.min(dv, CHUNK_COLUMNS);
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
  const { uniform, defines, workgroups } = common(gpu, label, args);
  const passDefines = { ...defines, ACCUMULATE: Boolean(args.accumulate) };
  const dqPass = makeDispatch(
    gpu,
    `${label}.dq`,
    "linear_attention",
    "backward_dq",
    { ...passDefines, PASS_BWD_DQ: true },
    [uniform, args.q, args.k, args.v, args.y, args.zinv, args.dy, args.dq, args.dz],
    workgroups,
  );
  const dkdvPass = makeDispatch(
    gpu,
    `${label}.dkdv`,
    "linear_attention",
    "backward_dkdv",
    { ...passDefines, PASS_BWD_DKDV: true },
    [uniform, args.q, args.k, args.v, args.zinv, args.dy, args.dz, args.dk, args.dv],
    workgroups,
  );
  return {
    label,
    encode(pass) {
      dqPass.encode(pass);
      dkdvPass.encode(pass);
    },
  };
}
