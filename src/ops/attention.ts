/**
 * Causal multi-head softmax attention for the MHA mixer (spec §3.2): qkv [B*L, 3d] (the Wqkv linear's output) → out
 * [B*L, d]; backward: dout [B*L, d] → dqkv [B*L, 3d] (overwrite). Dropout on the attention probabilities uses a
 * counter-based hash of (seed, b, h, i, j) (kernels/attention.wgsl, mirrored in src/reference/attention.ts), so the
 * backward recomputes the mask; the seed and train/eval switch live in a per-step uniform (`setStep`).
 *
 * Variants:
 *   "materialized": keeps the [B, H, L, L] probabilities (B·H·L²·4 bytes, e.g. 512·128²·4 B = 32 MiB at L = 128,
 *     1 GiB at B = 64, L = 2048); the backward overwrites them with dS, so run the forward again before another backward.
 *   "flash": no L×L buffer; one workgroup per query row with an online softmax over key tiles, saving only
 *     log-sum-exp per row (B·H·L floats); the backward recomputes the probabilities (dq pass per query row, dk/dv pass per
 *     key row: no atomics, deterministic). It skips masked keys (j > i), whose weight exp(−10000 + …) is exactly 0 in
 *     fp32 unless scores differ by more than ~9900.
 * Both variants read `out` in the backward (D_i = dout_i·out_i): leave it unchanged between forward and backward.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import {
  ceilDiv,
  checkPowerOfTwo,
  type Dispatch,
  grid1d,
  makeDispatch,
  makeUniform,
  type UniformField,
  writeUniform,
} from "./_dispatch.ts";

export type AttentionVariant = "materialized" | "flash";

export interface AttentionArgs {
  /** [B*L, 3d]: q | k | v, heads side by side within each. */
  qkv: Tensor;
  /** [B*L, d], written by the forward. */
  out: Tensor;
  /** [B*L, d] upstream gradient; with dqkv, enables the backward. */
  dout?: Tensor;
  /** [B*L, 3d] gradient (overwritten). */
  dqkv?: Tensor;
  B: number;
  L: number;
  d: number;
  H: number;
  /** Dropout probability on the attention probabilities in training (spec: 0.1). Default 0. */
  dropout?: number;
  /**
   * Sliding window: query i sees keys i − window ≤ j ≤ i (zoology's SlidingAttn `block_size`, its −10000 mask outside).
   * Default: every j ≤ i.
   */
  window?: number;
  variant?: AttentionVariant;
  /** Invocations per row of the materialized softmax (a power of two); default 8 on CPU rasterisers, 64 on GPUs. */
  softmaxLanes?: number;
  /** Workgroup [x, y] of the materialized variant's blocked kernels; default [8, 1] on CPU rasterisers, [8, 8] on GPUs. */
  blockWorkgroup?: readonly [number, number];
}

export interface AttentionOp {
  /** The variant this op runs (selectAttentionVariant unless one was given). */
  readonly variant: AttentionVariant;
  readonly forward: readonly Dispatch[];
  /** Empty when dout/dqkv are not given. */
  readonly backward: readonly Dispatch[];
  /** Per-step dropout state: the mask is a function of `seed`; `training: false` turns dropout off (eval). */
  setStep(step: { seed: number; training: boolean }): void;
  /** Buffers this op allocated (probabilities or lse, the backward's row dots). */
  readonly workspace: readonly Tensor[];
  free(): void;
}

/** An element is kept when its 32 hash bits are >= this (must match src/reference/attention.ts). */
export function attentionDropoutThreshold(p: number): number {
  if (!(p >= 0 && p < 1)) throw new Error(`attention dropout must be in [0, 1), got ${p}`);
  return Math.min(0xffffffff, Math.round(p * 4294967296));
}

/**
 * The materialised probabilities cost B·H·L²·4 bytes: fine (and fastest) for short sequences, but they break the
 * device's binding limit or dominate memory at long L, where the flash variant keeps memory linear in L.
 */
export function selectAttentionVariant(
  adapter: { limits: Readonly<Record<string, number>> },
  shape: { B: number; L: number; H: number; window?: number },
): AttentionVariant {
  const { B, L, H } = shape, limits = adapter.limits;
  // A window much shorter than L: flash visits only the window's keys (O(L·w)), materialized still fills L×L rows.
  if (shape.window !== undefined && shape.window * 4 < L) return "flash";
  const bytes = B * H * L * L * 4;
  const limit = Math.min(limits.maxStorageBufferBindingSize ?? 2 ** 27, limits.maxBufferSize ?? 2 ** 28);
  return bytes > Math.min(limit, 256 * 2 ** 20) ? "flash" : "materialized";
}

const ROW_WG = 64; // softmax rows, row dots
const FLASH_WG = 64; // keys (queries) per flash tile

export function createAttention(gpu: Gpu, label: string, args: AttentionArgs): AttentionOp {
  const { B, L, d, H } = args;
  for (const [name, n] of [["B", B], ["L", L], ["d", d], ["H", H]] as const) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`${label}: ${name}=${n} must be a positive integer`);
  }
  if (d % H !== 0) throw new Error(`${label}: d=${d} is not divisible by H=${H}`);
  const dh = d / H;
  const need = (t: Tensor | undefined, n: number, what: string) => {
    if (t && t.length < n) throw new Error(`${label}: ${what} ${t.label} has ${t.length} elements, needs ${n}`);
  };
  need(args.qkv, B * L * 3 * d, "qkv");
  need(args.out, B * L * d, "out");
  need(args.dout, B * L * d, "dout");
  need(args.dqkv, B * L * 3 * d, "dqkv");
  const p = args.dropout ?? 0;
  const window = args.window ?? L;
  if (!Number.isInteger(window) || window < 0) {
    throw new Error(`${label}: window=${args.window} must be a non-negative integer`);
  }
  const threshold = attentionDropoutThreshold(p);
  const variant = args.variant ?? selectAttentionVariant(gpu, { B, L, H, window: args.window });
  const rowCount = B * H * L;
  const alloc = gpu.allocator;
  const params = makeUniform(gpu, `${label}.params`, [
    ["u32", B],
    ["u32", L],
    ["u32", d],
    ["u32", H],
    ["u32", dh],
    ["f32", 1 / Math.sqrt(dh)],
    ["u32", threshold],
    ["f32", 1 / (1 - p)],
    ["u32", Math.min(window, L)],
  ]);
  const stepFields = (seed: number, training: boolean): UniformField[] => [
    ["u32", seed >>> 0],
    ["u32", training && p > 0 ? 1 : 0],
    ["u32", 0],
    ["u32", 0],
  ];
  const step = makeUniform(gpu, `${label}.step`, stepFields(0, false));
  const workspace: Tensor[] = [];
  const hasBackward = Boolean(args.dout && args.dqkv);
  const rowD = hasBackward ? alloc.tensor(`${label}.rowD`, [B, H, L], "activations") : undefined;
  if (rowD) workspace.push(rowD);
  const forward: Dispatch[] = [];
  const backward: Dispatch[] = [];
  // `entry[:name]`: the kernel's entry point, and the dispatch's name in labels when it differs (mat_dot:mat_ds).
  const dispatch = (
    entryName: string,
    define: string,
    extra: Record<string, number | boolean>,
    bindings: (Tensor | GPUBuffer)[],
    wg: readonly [number, number?, number?],
  ) => {
    const [entry, name = entry] = entryName.split(":");
    return makeDispatch(gpu, `${label}.${name}`, "attention", entry, { [define]: true, ...extra }, [
      params,
      ...bindings,
    ], wg);
  };
  const maxZ = gpu.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  if (hasBackward) {
    backward.push(
      dispatch("row_dot", "ROW_DOT", {}, [args.dout!, args.out, rowD!], grid1d(gpu, ceilDiv(rowCount, 64))),
    );
  }

  if (variant === "materialized") {
    if (B * H > maxZ) throw new Error(`${label}: B·H=${B * H} exceeds the z workgroup limit ${maxZ}`);
    const probs = alloc.tensor(`${label}.probs`, [B, H, L, L], "activations");
    workspace.push(probs);
    // 4×4 outputs per invocation; one SIMD row of 8 lanes per workgroup on CPU rasterisers, 8×8 on GPUs.
    const [wgx, wgy] = args.blockWorkgroup ?? (gpu.info.software ? [8, 1] : [8, 8]);
    const blocked = { VEC4: d % 4 === 0 && dh % 4 === 0, WGX: wgx, WGY: wgy };
    const blocks = ceilDiv(L, 4);
    // Lanes per softmax row: 8 on CPU rasterisers, where each barrier of the tree reduction is expensive (5.5 ms with
    // 64 lanes, 1.9 ms with 8 for 2048 rows of 256 on lavapipe).
    const softmaxLanes = args.softmaxLanes ?? (gpu.info.software ? 8 : ROW_WG);
    checkPowerOfTwo(label, "softmaxLanes", softmaxLanes);
    const square = [ceilDiv(blocks, wgx), ceilDiv(blocks, wgy), B * H] as const;
    const perChannel = [ceilDiv(ceilDiv(dh, 4), wgx), ceilDiv(blocks, wgy), B * H] as const;
    const operand = (stride: number, offset: number, prefix: "A" | "B" | "X" | "Y") => ({
      [`${prefix}_STRIDE`]: stride,
      [`${prefix}_OFFSET`]: offset,
    });
    const qkvAt = (part: 0 | 1 | 2, prefix: "A" | "B" | "X" | "Y") => operand(3 * d, part * d, prefix);
    const rows = (extra: Record<string, number | boolean>) => ({
      ...blocked,
      ...extra,
      MAT_PRODUCT: true,
      MAT_ROWS: true,
    });
    forward.push(
      dispatch("mat_dot:mat_scores", "MAT_DOT", { ...blocked, ...qkvAt(0, "A"), ...qkvAt(1, "B") }, [
        args.qkv,
        args.qkv,
        probs,
      ], square),
      dispatch("mat_softmax", "MAT_SOFTMAX", { RW: softmaxLanes }, [step, probs], grid1d(gpu, rowCount)),
      dispatch(
        "mat_rows:mat_pv",
        "MAT_ROWS",
        rows({ ...qkvAt(2, "X"), ...operand(d, 0, "Y"), DROPPED: true, SCALED: false }),
        [step, probs, args.qkv, args.out],
        perChannel,
      ),
    );
    if (hasBackward) {
      const cols = (extra: Record<string, number | boolean>) => ({
        ...blocked,
        ...extra,
        MAT_PRODUCT: true,
        MAT_COLS: true,
      });
      backward.push(
        // dv first: it is the last reader of P before mat_dot (DS) turns probs into dS.
        dispatch(
          "mat_cols:mat_dv",
          "MAT_COLS",
          cols({ ...operand(d, 0, "X"), ...qkvAt(2, "Y"), DROPPED: true, SCALED: false }),
          [step, probs, args.dout!, args.dqkv!],
          perChannel,
        ),
        dispatch(
          "mat_dot:mat_ds",
          "MAT_DOT",
          { ...blocked, ...operand(d, 0, "A"), ...qkvAt(2, "B"), DS: true },
          [args.dout!, args.qkv, probs, step, rowD!],
          square,
        ),
        dispatch(
          "mat_rows:mat_dq",
          "MAT_ROWS",
          rows({ ...qkvAt(1, "X"), ...qkvAt(0, "Y"), DROPPED: false, SCALED: true }),
          [step, probs, args.qkv, args.dqkv!],
          perChannel,
        ),
        dispatch(
          "mat_cols:mat_dk",
          "MAT_COLS",
          cols({ ...qkvAt(0, "X"), ...qkvAt(1, "Y"), DROPPED: false, SCALED: true }),
          [step, probs, args.qkv, args.dqkv!],
          perChannel,
        ),
      );
    }
  } else {
    const lse = alloc.tensor(`${label}.lse`, [B, H, L], "activations");
    workspace.push(lse);
    const flashDefines = { DH: dh, FW: FLASH_WG, CPT: ceilDiv(dh, FLASH_WG) };
    forward.push(
      dispatch("flash_fwd", "FLASH_FWD", flashDefines, [step, args.qkv, args.out, lse], grid1d(gpu, rowCount)),
    );
    if (hasBackward) {
      backward.push(
        dispatch(
          "flash_dq",
          "FLASH_DQ",
          flashDefines,
          [step, args.qkv, args.dout!, lse, rowD!, args.dqkv!],
          grid1d(gpu, rowCount),
        ),
        dispatch(
          "flash_dkdv",
          "FLASH_DKDV",
          flashDefines,
          [step, args.qkv, args.dout!, lse, rowD!, args.dqkv!],
          grid1d(gpu, rowCount),
        ),
      );
    }
  }

  return {
    variant,
    forward,
    backward,
    workspace,
    setStep({ seed, training }) {
      if (!Number.isInteger(seed)) throw new Error(`${label}: dropout seed must be an integer`);
      writeUniform(gpu, step, stepFields(seed, training));
    },
    free() {
      for (const t of workspace) alloc.free(t);
      alloc.free(params);
      alloc.free(step);
    },
  };
}
