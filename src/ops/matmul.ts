/** Batched matmul family: X·Wᵀ+b (linear forward), dY·W (input grad), dYᵀ·X (weight grad). */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import { ceilDiv, type Dispatch, makeDispatch, makeUniform } from "./_dispatch.ts";

export type MatmulVariant = "blocked" | "tiled";

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
}

/** Software rasterisers pay heavily for workgroup barriers, so they get the register-blocked variant. */
export function defaultMatmulVariant(gpu: Gpu): MatmulVariant {
  return gpu.info.software ? "blocked" : "tiled";
}

const TM = 4;
const TN = 4;

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
  const variant = args.variant ?? defaultMatmulVariant(gpu);
  const uniform = makeUniform(gpu, `${label}.params`, [
    ["u32", M],
    ["u32", N],
    ["u32", K],
    ["u32", strideA],
    ["u32", strideB],
    ["u32", strideC],
    ["f32", args.alpha ?? 1],
    ["u32", 0],
  ]);
  const defines = {
    BK: gpu.info.software && gpu.info.backend === "gl" ? 4 : 16,
    TM,
    TN,
    TRANS_A: Boolean(args.transA),
    TRANS_B: Boolean(args.transB),
    HAS_BIAS: Boolean(args.bias),
    ACCUMULATE: Boolean(args.accumulate),
  };
  const bindings = [uniform, a, b, out, ...(args.bias ? [args.bias] : [])];
  const workgroups: [number, number, number] = variant === "tiled"
    ? [ceilDiv(N, 64), ceilDiv(M, 64), batch]
    : [ceilDiv(N, 8 * TN), ceilDiv(M, 8 * TM), batch];
  return makeDispatch(
    gpu,
    label,
    "matmul",
    variant === "tiled" ? "main_tiled" : "main_blocked",
    defines,
    bindings,
    workgroups,
  );
}
