/**
 * Based / ReBased causal linear attention: forward y = Σ g(S) v / (Σ g(S) + eps) and its backward (dq; dk, dv), in the
 * exact parallel form (spec §5.1, O(L²) per sequence) or the chunked form (spec §5.3, O(L)); see
 * kernels/linear_attention.wgsl.
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
 * "chunked": the O(L) fused chunk form of spec §5.3, forward and backward (f ≤ 16): one workgroup carries the state
 * of one (batch, head) through the sequence, so memory per token is constant. Same math, different summation order:
 * agrees with the parallel variants to fp32 rounding, not bitwise.
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
  /** Chunked variant: value columns per workgroup of the forward and dv sweeps; default 16 (4 on GL). */
  chunkColumns?: number;
  /**
   * Chunked variant: query/key features whose gradient one workgroup of the dq/dk sweep owns (its state is this many
   * ·(f+1)·(dv+1) floats); default as many as fit in workgroup memory.
   */
  chunkFeatures?: number;
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

/**
 * Sequence lengths from which the chunked variant is faster than the adapter's default parallel variant for a whole
 * training step (forward + backward). Software: measured on lavapipe (2 shared cores; see the op's tests/report).
 * Hardware: not measured yet; an estimate, since the chunked sweeps are sequential over L/16 chunks with only
 * O(batch·heads) workgroups in flight, while the parallel smem variant fills the GPU.
 */
export const CHUNKED_FROM_SEQ_LEN = { software: 256, hardware: 1024 } as const;

/**
 * The variant a model should train with at sequence length `seqLen`: chunked (O(L)) from CHUNKED_FROM_SEQ_LEN on, when
 * its state fits (f ≤ 16); otherwise the adapter's default parallel variant.
 */
export function chooseLinearAttentionVariant(gpu: Gpu, seqLen: number, featureDim = 16): LinearAttentionVariant {
  const from = gpu.info.software ? CHUNKED_FROM_SEQ_LEN.software : CHUNKED_FROM_SEQ_LEN.hardware;
  return seqLen >= from && featureDim <= 16 ? "chunked" : defaultLinearAttentionVariant(gpu);
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
  const tuning = {
    rowsPerWorkgroup: cfg.rowsPerWorkgroup,
    keyTile: cfg.keyTile,
    threads: cfg.threadsPerWorkgroup,
    chunkColumns: cfg.chunkColumns,
    chunkFeatures: cfg.chunkFeatures,
  };
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

/** Entry point, defines and grid of one pass of a parallel variant. */
function parallelPass(gpu: Gpu, cfg: LinearAttentionConfig, pass: Pass, accumulate: boolean) {
  const variant = cfg.variant ?? defaultLinearAttentionVariant(gpu);
  if (variant === "chunked") throw new Error("linear attention: parallelPass called for the chunked variant");
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

/** Tokens per chunk (fla's BT), value columns per workgroup (fla's BV) and invocations per workgroup of the chunked form. */
const CHUNK = 16;
const CHUNK_COLUMNS = 16;
const CHUNK_WG = 64;

/** Symmetrically packed feature count: ReBased f(f+1)/2, Based 1 + f + f(f+1)/2 (136 / 153 for f = 16). */
export function packedFeatureCount(kernel: LinearAttentionKernel, f: number): number {
  return (kernel === "based" ? 1 + f : 0) + (f * (f + 1)) / 2;
}

function workgroupMemoryLimit(gpu: Gpu): number {
  return gpu.limits.maxComputeWorkgroupStorageSize ?? 16384;
}

function checkChunkedFeatureDim(label: string, f: number): void {
  // fla's BK = 16; the forward's packed state (153 features at f = 16) must fit workgroup memory.
  if (f > 16) throw new Error(`${label}: the chunked variant needs featureDim ≤ 16, got ${f}`);
}

/**
 * The forward (PASS_FWD_CHUNKED) or dv (PASS_BWD_DV_CHUNKED) sweep: one workgroup per (value-column tile, head,
 * batch) carrying the packed feature state [DPHI, columns (+1)] through the sequence.
 */
function featureStatePass(
  gpu: Gpu,
  label: string,
  cfg: LinearAttentionConfig,
  pass: "forward" | "dv",
  accumulate = false,
) {
  const f = cfg.featureDim, dv = cfg.valueDim;
  checkChunkedFeatureDim(label, f);
  // Fewer columns on GL, whose compiler unrolls the zero-initialisation of workgroup arrays (slow to compile).
  const columns = Math.min(dv, cfg.chunkColumns ?? (gpu.info.backend === "gl" ? 4 : CHUNK_COLUMNS));
  const features = packedFeatureCount(cfg.kernel, f);
  // The forward carries a ones column (the denominator) and normalises through an output tile.
  const nc = pass === "forward" ? columns + 1 : columns;
  // state [features, nc], row and partner chunks [CHUNK, f], values (and outputs) [CHUNK, nc], scores [CHUNK, CHUNK].
  const floats = features * nc + 2 * CHUNK * f + (pass === "forward" ? 2 : 1) * CHUNK * nc + CHUNK * CHUNK;
  const limit = workgroupMemoryLimit(gpu);
  if (4 * floats > limit) {
    throw new Error(`${label}: chunked state needs ${4 * floats} B of workgroup memory, limit ${limit}`);
  }
  return {
    entry: pass === "forward" ? "forward_chunked" : "backward_dv_chunked",
    defines: {
      F: f,
      DV: dv,
      DVT: columns,
      DPHI: features,
      CHUNK,
      CHUNK_WG,
      REBASED: cfg.kernel === "rebased",
      ACCUMULATE: accumulate,
      FEATURE_STATE: true,
      [pass === "forward" ? "PASS_FWD_CHUNKED" : "PASS_BWD_DV_CHUNKED"]: true,
    },
    workgroups: [ceilDiv(dv, columns), cfg.heads, cfg.batch] as [number, number, number],
  };
}

/**
 * The dq/dk sweep of the chunked backward: NA workgroups per (head, batch) sweep forwards for dq and NA backwards for
 * dk, each owning `block` features of the gradient and their unpacked state [block, f (+1), dv + 1].
 */
function dqdkPass(gpu: Gpu, label: string, cfg: LinearAttentionConfig, accumulate: boolean) {
  const f = cfg.featureDim, dv = cfg.valueDim;
  checkChunkedFeatureDim(label, f);
  const nc = dv + 1;
  const stateRows = cfg.kernel === "based" ? f + 1 : f;
  // row and partner chunks [CHUNK, f], their vectors [CHUNK, dv + 1], weights [CHUNK, CHUNK].
  const fixedFloats = 2 * CHUNK * f + 2 * CHUNK * nc + CHUNK * CHUNK;
  // Small on GL, whose compiler unrolls the zero-initialisation of workgroup arrays.
  const budget = gpu.info.backend === "gl" ? Math.min(8192, workgroupMemoryLimit(gpu)) : workgroupMemoryLimit(gpu);
  const fitting = Math.floor((budget / 4 - fixedFloats) / (stateRows * nc));
  const wanted = Math.min(f, cfg.chunkFeatures ?? fitting);
  if (wanted < 1 || 4 * (fixedFloats + wanted * stateRows * nc) > workgroupMemoryLimit(gpu)) {
    throw new Error(`${label}: the chunked dq/dk state does not fit workgroup memory (f=${f}, dv=${dv})`);
  }
  // Balance the blocks: 16 features with room for 7 give 3 blocks of 6, 6, 4 rather than 7, 7, 2.
  const blocks = ceilDiv(f, wanted);
  const block = ceilDiv(f, blocks);
  return {
    entry: "backward_dqdk_chunked",
    defines: {
      F: f,
      DV: dv,
      APW: block,
      NA: blocks,
      CHUNK,
      CHUNK_WG,
      REBASED: cfg.kernel === "rebased",
      ACCUMULATE: accumulate,
      PASS_BWD_DQDK_CHUNKED: true,
    },
    workgroups: [2 * blocks, cfg.heads, cfg.batch] as [number, number, number],
  };
}

function chunkedForward(gpu: Gpu, label: string, args: LinearAttentionForwardArgs, uniform: GPUBuffer): Dispatch {
  const { entry, defines, workgroups } = featureStatePass(gpu, label, args, "forward");
  return makeDispatch(
    gpu,
    label,
    "linear_attention",
    entry,
    defines,
    [uniform, args.q, args.k, args.v, args.y, args.zinv],
    workgroups,
  );
}

/** Two dispatches encoded in order: dq (which also writes dz), then dk/dv; chunked: dq+dk, then dv. */
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
  const passes = args.variant === "chunked" ? chunkedBackwardPasses(gpu, label, args, params, accumulate) : [
    parallelBackwardPass(gpu, label, args, params, "backward_dq", accumulate),
    parallelBackwardPass(gpu, label, args, params, "backward_dkdv", accumulate),
  ];
  return {
    label,
    encode(pass) {
      for (const p of passes) p.encode(pass);
    },
  };
}

function parallelBackwardPass(
  gpu: Gpu,
  label: string,
  args: LinearAttentionBackwardArgs,
  params: GPUBuffer,
  pass: "backward_dq" | "backward_dkdv",
  accumulate: boolean,
): Dispatch {
  const { entry, defines, workgroups } = parallelPass(gpu, args, pass, accumulate);
  const bindings = pass === "backward_dq"
    ? [params, args.q, args.k, args.v, args.y, args.zinv, args.dy, args.dq, args.dz]
    : [params, args.q, args.k, args.v, args.zinv, args.dy, args.dz, args.dk, args.dv];
  return makeDispatch(
    gpu,
    `${label}.${pass === "backward_dq" ? "dq" : "dkdv"}`,
    "linear_attention",
    entry,
    defines,
    bindings,
    workgroups,
  );
}

/** dq and dk (which also writes dz) in one dispatch, dv in another; they are independent of each other. */
function chunkedBackwardPasses(
  gpu: Gpu,
  label: string,
  args: LinearAttentionBackwardArgs,
  params: GPUBuffer,
  accumulate: boolean,
): Dispatch[] {
  const dqdk = dqdkPass(gpu, label, args, accumulate);
  const dv = featureStatePass(gpu, label, args, "dv", accumulate);
  return [
    makeDispatch(
      gpu,
      `${label}.dqdk`,
      "linear_attention",
      dqdk.entry,
      dqdk.defines,
      [params, args.q, args.k, args.v, args.y, args.zinv, args.dy, args.dq, args.dk, args.dz],
      dqdk.workgroups,
    ),
    makeDispatch(
      gpu,
      `${label}.dv`,
      "linear_attention",
      dv.entry,
      dv.defines,
      [params, args.q, args.k, args.zinv, args.dy, args.dv],
      dv.workgroups,
    ),
  ];
}
