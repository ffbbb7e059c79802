/** Batched matmul family: X·Wᵀ+b (linear forward), dY·W (input grad), dYᵀ·X (weight grad). */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import { ceilDiv, type Dispatch, foldGrid2d, grid1d, makeDispatch, makeUniform } from "./_dispatch.ts";

/**
 * "blocked": TM×8 outputs per invocation held in registers, no workgroup memory (CPU rasterisers).
 * "tiled": 64×64 outputs per workgroup staged through workgroup memory (real GPUs).
 */
export const MATMUL_VARIANTS = ["blocked", "tiled"] as const;
export type MatmulVariant = typeof MATMUL_VARIANTS[number];

export interface MatmulArgs {
  /** op(A) is [M,K]. */
  a: Tensor;
  /** op(B) is [K,N]. */
  b: Tensor;
  out: Tensor;
  M: number;
  N: number;
  K: number;
  batch?: number;
  transA?: boolean;
  transB?: boolean;
  /** Added to every row of the result (length N). */
  bias?: Tensor;
  /** out += result instead of out = result (gradient accumulation). */
  accumulate?: boolean;
  alpha?: number;
  /** Element strides between batches; default: dense. A stride of 0 broadcasts (e.g. a shared weight). */
  strideA?: number;
  strideB?: number;
  strideC?: number;
  variant?: MatmulVariant;
  /**
   * Split the k range into this many chunks, each summed into a workspace buffer, then added in split order by a
   * second pass (deterministic). Default: `defaultMatmulSplitK` (long k with few output tiles on GPUs).
   */
  splitK?: number;
  /** Output rows per invocation of the blocked variant: 4 or 8 (default 8). */
  blockRows?: 4 | 8;
  /** Workgroup size [x, y] of the blocked variant (default: 8×1 on CPU rasterisers, 8×8 on GPUs). */
  blockWorkgroup?: readonly [number, number];
}

/**
 * Software rasterisers pay heavily for workgroup barriers and per-lane memory accesses, so they get the
 * register-blocked variant; GPUs get the workgroup-memory tiles. (`args` is accepted for shape-based choices.)
 */
export function selectMatmulVariant(
  adapter: { info: { software: boolean } },
  _shape?: Pick<MatmulArgs, "M" | "N" | "K">,
): MatmulVariant {
  return adapter.info.software ? "blocked" : "tiled";
}

/** Output tile of one workgroup: what decides how many workgroups a matmul has before any split-K. */
function workgroupTile(
  variant: MatmulVariant,
  blockRows: number,
  gpu: Gpu,
  workgroup?: readonly [number, number],
): [number, number] {
  if (variant === "tiled") return [64, 64];
  const [wgX, wgY] = workgroup ?? blockedWorkgroup(gpu);
  return [blockRows * wgY, 8 * wgX];
}

function blockedWorkgroup(gpu: Gpu): readonly [number, number] {
  // One SIMD row of 8 lanes per workgroup keeps enough workgroups for every CPU thread on narrow outputs (N = 64);
  // GPUs want more threads per workgroup.
  return gpu.info.software ? [8, 1] : [8, 8];
}

/** Workspace for split-K partial sums stays small: at most this many floats. */
const SPLIT_K_MAX_FLOATS = 16 * 1024 * 1024;

/**
 * Split-K count: 1 on CPU rasterisers (enough workgroups already keep every thread busy); on GPUs, shapes with few
 * output tiles and a long k (dW = dYᵀ·X with K = rows, dhg with K = vocab) are split into chunks of at least 256 k
 * until there are about 128 workgroups.
 */
export function defaultMatmulSplitK(
  gpu: Gpu,
  variant: MatmulVariant,
  shape: {
    M: number;
    N: number;
    K: number;
    batch?: number;
    blockRows?: number;
    blockWorkgroup?: readonly [number, number];
  },
): number {
  if (gpu.info.software) return 1;
  const [tm, tn] = workgroupTile(variant, shape.blockRows ?? 8, gpu, shape.blockWorkgroup);
  const tiles = ceilDiv(shape.M, tm) * ceilDiv(shape.N, tn) * (shape.batch ?? 1);
  const byParallelism = Math.ceil(128 / tiles);
  const byLength = Math.floor(shape.K / 256);
  const byMemory = Math.floor(SPLIT_K_MAX_FLOATS / (shape.M * shape.N * (shape.batch ?? 1)));
  return Math.max(1, Math.min(byParallelism, byLength, byMemory));
}

const isMultipleOf4 = (n: number) => n % 4 === 0;

export function matmul(gpu: Gpu, label: string, args: MatmulArgs): Dispatch {
  const { a, b, out, M, N, K } = args;
  const batch = args.batch ?? 1;
  const strideA = args.strideA ?? M * K;
  const strideB = args.strideB ?? K * N;
  const strideC = args.strideC ?? M * N;
  const need = (t: Tensor, n: number, what: string) => {
    if (t.length < n) throw new Error(`${label}: ${what} ${t.label} has ${t.length} elements, needs ${n}`);
  };
  need(a, strideA * (batch - 1) + M * K, "A");
  need(b, strideB * (batch - 1) + K * N, "B");
  need(out, strideC * (batch - 1) + M * N, "out");
  if (args.bias) need(args.bias, N, "bias");
  const variant = args.variant ?? selectMatmulVariant(gpu, args);
  if (!MATMUL_VARIANTS.includes(variant)) throw new Error(`${label}: unknown matmul variant ${variant}`);
  const blockRows = args.blockRows ?? 8;
  if (![4, 8].includes(blockRows)) throw new Error(`${label}: blockRows must be 4 or 8, got ${blockRows}`);
  const transA = Boolean(args.transA), transB = Boolean(args.transB);

  // Split-K: chunks are multiples of 4 so every chunk but the last starts and ends on a vec4 boundary along k.
  const wantedSplits = Math.max(1, Math.floor(args.splitK ?? defaultMatmulSplitK(gpu, variant, { ...args, batch })));
  const kChunk = Math.max(4, Math.ceil(Math.ceil(K / wantedSplits) / 4) * 4);
  const splits = K > 0 ? Math.ceil(K / kChunk) : 1;
  const split = splits > 1;

  // vec4 access along an operand's contiguous dimension needs that dimension and the batch offsets aligned to 4.
  const batchAligned = (stride: number) => batch === 1 || isMultipleOf4(stride);
  const vecA = (transA ? isMultipleOf4(M) : isMultipleOf4(K)) && batchAligned(strideA);
  const vecB = (transB ? isMultipleOf4(K) : isMultipleOf4(N)) && batchAligned(strideB);
  const vecC = isMultipleOf4(N) && (split || batchAligned(strideC));

  // Neighbouring workgroups share whichever operand they walk along: walking m first keeps one block of B columns
  // hot in cache while A's rows stream past, which pays when B is the larger operand (N > M, e.g. the LM head's
  // logits, +13% on llvmpipe); otherwise columns go first (linear layers: 15% faster that way). Blocked only.
  const mFastest = variant === "blocked" && N > M;
  const [wgX, wgY] = args.blockWorkgroup ?? blockedWorkgroup(gpu);
  const logical: [number, number] = variant === "tiled"
    ? [ceilDiv(N, 64), ceilDiv(M, 64)]
    : mFastest
    ? [ceilDiv(M, blockRows * wgY), ceilDiv(N, 8 * wgX)]
    : [ceilDiv(N, 8 * wgX), ceilDiv(M, blockRows * wgY)];
  const grid = foldGrid2d(gpu, ...logical);
  const uniform = makeUniform(gpu, `${label}.params`, [
    ["u32", M],
    ["u32", N],
    ["u32", K],
    ["u32", strideA],
    ["u32", strideB],
    ["u32", strideC],
    ["f32", args.alpha ?? 1],
    ["u32", split ? kChunk : Math.max(K, 1)],
    ["u32", splits],
    ["u32", batch],
    ["u32", args.accumulate ? 1 : 0],
    ["u32", mFastest ? 1 : 0],
    ["u32", grid.gridX],
    ["u32", grid.dispX],
  ]);
  const partials = split ? gpu.allocator.tensor(`${label}.splitK`, [splits, batch, M, N], "workspace") : undefined;
  const common = {
    TRANS_A: transA,
    TRANS_B: transB,
    VEC_A: vecA,
    VEC_B: vecB,
    VEC_C: vecC,
    // Only the last chunk can end off a multiple of 4 (chunks are multiples of 4).
    K_TAIL: !isMultipleOf4(K),
    SPLIT_K: split,
    // With split-K the epilogue (alpha, bias, accumulate) runs in the reduce pass.
    HAS_BIAS: !split && Boolean(args.bias),
  };
  const mainBindings = [uniform, a, b, partials ?? out, ...(!split && args.bias ? [args.bias] : [])];
  let main: Dispatch;
  if (variant === "tiled") {
    // BK: 16 normally; 4 on GL llvmpipe, whose shader compiler is very slow on large workgroup arrays.
    const BK = gpu.info.software && gpu.info.backend === "gl" ? 4 : 16;
    main = makeDispatch(gpu, label, "matmul", "main_tiled", { TILED: true, BK, ...common }, mainBindings, [
      ...grid.dispatch,
      batch * splits,
    ]);
  } else {
    main = makeDispatch(
      gpu,
      label,
      "matmul",
      "main_blocked",
      { TM: blockRows, WG_X: wgX, WG_Y: wgY, ...common },
      mainBindings,
      [...grid.dispatch, batch * splits],
    );
  }
  if (!split) return main;
  const reduce = makeDispatch(
    gpu,
    `${label}.reduce`,
    "matmul",
    "main_splitk_reduce",
    { REDUCE: true, HAS_BIAS: Boolean(args.bias) },
    [uniform, partials!, out, ...(args.bias ? [args.bias] : [])],
    grid1d(gpu, ceilDiv(batch * M * N, 64)),
  );
  return {
    label,
    encode(pass) {
      // Separate dispatches in one pass: WebGPU orders the reduce's reads after the partials' writes.
      main.encode(pass);
      reduce.encode(pass);
    },
  };
}
