/**
 * Shared helpers for kernel micro-benchmarks: one device per process, the matmul shapes that matter for MQAR training,
 * and a timing loop that always waits for the GPU (queue.onSubmittedWorkDone) after several dispatches, so the fixed
 * per-wait cost (~10 ms on software adapters) does not dominate.
 */
import type { Tensor } from "../src/gpu/allocator.ts";
import { acquireGpu, type Gpu, writeTensor } from "../src/gpu/device.ts";
import { type Dispatch, submit } from "../src/ops/_dispatch.ts";
import { matmul, type MatmulArgs, type MatmulVariant } from "../src/ops/matmul.ts";
import { Rng } from "../src/data/rng.ts";

let cached: Promise<Gpu> | undefined;

export function benchGpu(): Promise<Gpu> {
  cached ??= acquireGpu();
  return cached;
}

export interface MatmulCase {
  name: string;
  M: number;
  N: number;
  K: number;
  transA?: boolean;
  transB?: boolean;
  bias?: boolean;
  accumulate?: boolean;
}

/**
 * MQAR training (d = 64, vocab 8192, micro-batch 64 × L 64 = 4096 rows, 512 labelled rows) plus a square reference.
 * The LM head is tied: logits = hg·Embᵀ, dhg = dlogits·Emb, dEmb += dlogitsᵀ·hg.
 */
export const MATMUL_CASES: readonly MatmulCase[] = [
  { name: "square 512³", M: 512, N: 512, K: 512 },
  { name: "lm-head logits (transB)", M: 512, N: 8192, K: 64, transB: true },
  { name: "lm-head dhg (K=8192)", M: 512, N: 64, K: 8192 },
  { name: "lm-head dEmb (transA, K=512)", M: 8192, N: 64, K: 512, transA: true, accumulate: true },
  { name: "linear fwd 4096×64→192", M: 4096, N: 192, K: 64, transB: true, bias: true },
  { name: "linear dx 4096×192→64", M: 4096, N: 64, K: 192 },
  { name: "linear dW (transA, K=4096)", M: 192, N: 64, K: 4096, transA: true, accumulate: true },
];

export const flopsOf = (c: MatmulCase): number => 2 * c.M * c.N * c.K;

export function caseLabel(c: MatmulCase): string {
  const ops = [c.transA ? "Aᵀ" : "A", c.transB ? "Bᵀ" : "B"].join("·");
  return `${c.name} [${c.M}×${c.N}×${c.K}] ${ops}`;
}

/** Values in [-1, 1) from a seeded stream: never zeros, which could hide unwritten outputs or run unrealistically fast. */
export function randomValues(n: number, seed: number): Float32Array {
  const rng = new Rng(seed, 31);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.nextU32() / 2147483648 - 1;
  return out;
}

export interface PreparedMatmul {
  readonly dispatch: Dispatch;
  readonly args: MatmulArgs;
  readonly tensors: readonly Tensor[];
  free(): void;
}

/** Allocates random inputs for `c` and creates its matmul dispatch (pipeline compiled here, outside any timing). */
export function prepareMatmul(
  gpu: Gpu,
  c: MatmulCase,
  variant?: MatmulVariant,
  options: Partial<Pick<MatmulArgs, "splitK" | "blockRows" | "blockWorkgroup">> = {},
): PreparedMatmul {
  const alloc = gpu.allocator;
  const { M, N, K } = c;
  const a = alloc.tensor("bench.a", c.transA ? [K, M] : [M, K], "workspace");
  const b = alloc.tensor("bench.b", c.transB ? [N, K] : [K, N], "workspace");
  const out = alloc.tensor("bench.out", [M, N], "workspace");
  const bias = c.bias ? alloc.tensor("bench.bias", [N], "workspace") : undefined;
  writeTensor(gpu, a, randomValues(M * K, 1));
  writeTensor(gpu, b, randomValues(K * N, 2));
  if (bias) writeTensor(gpu, bias, randomValues(N, 3));
  const args: MatmulArgs = {
    a,
    b,
    out,
    bias,
    M,
    N,
    K,
    transA: c.transA,
    transB: c.transB,
    accumulate: c.accumulate,
    variant,
    ...options,
  };
  const dispatch = matmul(gpu, `bench.${c.name}`, args);
  const tensors = bias ? [a, b, out, bias] : [a, b, out];
  return { dispatch, args, tensors, free: () => tensors.forEach((t) => alloc.free(t)) };
}

/**
 * Dispatches per timed wait: enough work that the wait's fixed cost is small (about 1 GFLOP per wait on a CPU
 * rasteriser, 200 GFLOP on a GPU), at least 2.
 */
export function repeatsFor(gpu: Gpu, c: MatmulCase): number {
  const target = gpu.info.software ? 1e9 : 2e11;
  return Math.max(2, Math.min(4096, Math.round(target / flopsOf(c))));
}

/** Encodes `repeats` dispatches (one compute pass, one submit) and waits until the GPU has finished them. */
export async function runAndWait(gpu: Gpu, dispatch: Dispatch, repeats: number): Promise<void> {
  submit(gpu, new Array(repeats).fill(dispatch));
  await gpu.device.queue.onSubmittedWorkDone();
}

/** Seconds per dispatch over one timed wait of `repeats` dispatches. */
export async function secondsPerDispatch(gpu: Gpu, dispatch: Dispatch, repeats: number): Promise<number> {
  const t0 = performance.now();
  await runAndWait(gpu, dispatch, repeats);
  return (performance.now() - t0) / 1000 / repeats;
}

/**
 * CPU seconds used by all threads of this process (Linux /proc; undefined elsewhere). On a CPU rasteriser the work runs
 * on the driver's threads inside this process, so work per CPU-second stays meaningful while other processes compete
 * for the cores, unlike wall-clock rates.
 */
export function processCpuSeconds(): number | undefined {
  try {
    let ns = 0;
    for (const task of Deno.readDirSync("/proc/self/task")) {
      try {
        ns += Number(Deno.readTextFileSync(`/proc/self/task/${task.name}/schedstat`).split(" ")[0]);
      } catch {
        // the thread ended between listing and reading
      }
    }
    return ns / 1e9;
  } catch {
    return undefined;
  }
}

export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}
