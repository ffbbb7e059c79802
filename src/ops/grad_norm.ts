/**
 * Global gradient norm over several tensors, fully on the GPU: sqrt(Σ_t Σ g²) and the clip factor
 * min(1, maxNorm/(norm + 1e-6)) land in a small `result` tensor, which AdamW can read (no readback for clipping).
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import {
  ceilDiv,
  type Dispatch,
  grid1d,
  makeDispatch,
  makeUniform,
  type UniformField,
  writeUniform,
} from "./_dispatch.ts";

/** Where each value lives in `GradNormOp.result`. */
export const GRAD_NORM_SLOTS = { norm: 0, clip: 1, sumSquares: 2 } as const;

export interface GradNormArgs {
  grads: readonly Tensor[];
  /** Clip threshold; omitted or null: the clip factor is 1. */
  maxNorm?: number | null;
  /** Elements summed per invocation in stage 1 (default 16). */
  itemsPerThread?: number;
}

export interface GradNormOp {
  /** Stage 1 (one per gradient tensor), then the single-workgroup final pass. Encode in order. */
  readonly dispatches: readonly Dispatch[];
  /** [norm, clip factor, Σ g²] (see GRAD_NORM_SLOTS); category workspace. */
  readonly result: Tensor;
  /** Changes the clip threshold for later submits (null: no clipping, factor 1). */
  setMaxNorm(maxNorm: number | null): void;
  free(): void;
}

const WG = 256;

export function createGradNorm(gpu: Gpu, label: string, args: GradNormArgs): GradNormOp {
  if (args.grads.length === 0) throw new Error(`${label}: no gradient tensors`);
  const items = args.itemsPerThread ?? 16;
  const chunk = WG * items;
  const defines = { WG, ITEMS: items };
  const uniforms: GPUBuffer[] = [];
  const partialCounts = args.grads.map((g) => ceilDiv(g.length, chunk));
  const totalPartials = partialCounts.reduce((a, b) => a + b, 0);
  const partials = gpu.allocator.tensor(`${label}.partials`, [Math.max(1, totalPartials)], "workspace");
  const result = gpu.allocator.tensor(`${label}.result`, [4], "workspace");
  const dispatches: Dispatch[] = [];
  let offset = 0;
  args.grads.forEach((grad, t) => {
    const groups = partialCounts[t];
    const uniform = makeUniform(gpu, `${label}.partial${t}`, [
      ["u32", grad.length],
      ["u32", offset],
      ["u32", groups],
      ["u32", 0],
    ]);
    uniforms.push(uniform);
    dispatches.push(
      makeDispatch(gpu, `${label}.partial.${grad.label}`, "grad_norm", "partial_sums", defines, [
        uniform,
        grad,
        partials,
      ], grid1d(gpu, groups)),
    );
    offset += groups;
  });
  const finalFields = (maxNorm: number | null | undefined): UniformField[] => [
    ["u32", totalPartials],
    ["u32", maxNorm == null ? 0 : 1],
    ["f32", maxNorm ?? 0],
    ["u32", 0],
  ];
  if (args.maxNorm != null && !(args.maxNorm > 0)) throw new Error(`${label}: maxNorm must be > 0`);
  const finalUniform = makeUniform(gpu, `${label}.final`, finalFields(args.maxNorm));
  uniforms.push(finalUniform);
  dispatches.push(
    makeDispatch(gpu, `${label}.finalize`, "grad_norm", "finalize", { ...defines, FINALIZE: true }, [
      finalUniform,
      partials,
      result,
    ], [1]),
  );
  return {
    dispatches,
    result,
    setMaxNorm(maxNorm) {
      if (maxNorm !== null && !(maxNorm > 0)) throw new Error(`${label}: maxNorm must be > 0`);
      writeUniform(gpu, finalUniform, finalFields(maxNorm));
    },
    free() {
      for (const u of uniforms) gpu.allocator.free(u);
      gpu.allocator.free(partials);
      gpu.allocator.free(result);
    },
  };
}
