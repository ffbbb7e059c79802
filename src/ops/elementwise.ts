/**
 * Generic elementwise ops (kernels/elementwise.wgsl): add, in-place accumulate (residuals), scale, mul (gating) with its
 * backward, copy, and a deterministic column sum for bias gradients. `n` defaults to the element count of the output.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import type { Defines } from "../gpu/wgsl.ts";
import {
  type Binding,
  ceilDiv,
  type Dispatch,
  grid1d,
  makeDispatch,
  makeUniform,
  type UniformField,
} from "./_dispatch.ts";

const WG = 256;

interface ElementwiseParams {
  n: number;
  alpha?: number;
  srcOffset?: number;
  dstOffset?: number;
  rows?: number;
  cols?: number;
  rowsPerBlock?: number;
  blocks?: number;
}

function params(gpu: Gpu, label: string, p: ElementwiseParams): GPUBuffer {
  const fields: UniformField[] = [
    ["u32", p.n],
    ["f32", p.alpha ?? 1],
    ["u32", p.srcOffset ?? 0],
    ["u32", p.dstOffset ?? 0],
    ["u32", p.rows ?? 0],
    ["u32", p.cols ?? 0],
    ["u32", p.rowsPerBlock ?? 0],
    ["u32", p.blocks ?? 0],
  ];
  return makeUniform(gpu, `${label}.params`, fields);
}

function checkCount(label: string, n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new Error(`${label}: bad element count ${n}`);
}

function need(label: string, t: Tensor, n: number, what: string): void {
  if (t.length < n) throw new Error(`${label}: ${what} ${t.label} has ${t.length} elements, needs ${n}`);
}

function distinct(label: string, ...ts: (Tensor | undefined)[]): void {
  const seen = ts.filter((t): t is Tensor => t !== undefined);
  if (new Set(seen.map((t) => t.buffer)).size !== seen.length) {
    throw new Error(`${label}: a written buffer may not alias another binding (use the in-place form)`);
  }
}

function flatDispatch(
  gpu: Gpu,
  label: string,
  entry: string,
  defines: Defines,
  bindings: readonly Binding[],
  n: number,
): Dispatch {
  return makeDispatch(gpu, label, "elementwise", entry, defines, bindings, grid1d(gpu, ceilDiv(n, WG)));
}

/** out = a + b. */
export function createAdd(gpu: Gpu, label: string, args: { a: Tensor; b: Tensor; out: Tensor; n?: number }): Dispatch {
  const n = args.n ?? args.out.length;
  checkCount(label, n);
  for (const [t, what] of [[args.a, "a"], [args.b, "b"], [args.out, "out"]] as const) need(label, t, n, what);
  distinct(label, args.a, args.out);
  distinct(label, args.b, args.out);
  return flatDispatch(gpu, label, "add", {}, [params(gpu, label, { n }), args.a, args.b, args.out], n);
}

/** target += alpha·source (alpha defaults to 1: the residual add). */
export function createAddInPlace(
  gpu: Gpu,
  label: string,
  args: { target: Tensor; source: Tensor; alpha?: number; n?: number },
): Dispatch {
  const n = args.n ?? args.target.length;
  checkCount(label, n);
  need(label, args.target, n, "target");
  need(label, args.source, n, "source");
  distinct(label, args.target, args.source);
  const u = params(gpu, label, { n, alpha: args.alpha ?? 1 });
  return flatDispatch(gpu, label, "add_inplace", {}, [u, args.target, args.source], n);
}

/** out = alpha·input, or out += alpha·input with `accumulate`; in place (input *= alpha) when out is input. */
export function createScale(
  gpu: Gpu,
  label: string,
  args: { input: Tensor; out: Tensor; alpha: number; accumulate?: boolean; n?: number },
): Dispatch {
  const n = args.n ?? args.out.length;
  checkCount(label, n);
  need(label, args.input, n, "input");
  need(label, args.out, n, "out");
  const u = params(gpu, label, { n, alpha: args.alpha });
  if (args.input.buffer === args.out.buffer) {
    if (args.accumulate) throw new Error(`${label}: accumulate into the input itself is not a scale`);
    return flatDispatch(gpu, label, "scale_inplace", {}, [u, args.out], n);
  }
  return flatDispatch(gpu, label, "scale", { ACCUMULATE: Boolean(args.accumulate) }, [u, args.input, args.out], n);
}

/** out = a·b (gating). */
export function createMul(gpu: Gpu, label: string, args: { a: Tensor; b: Tensor; out: Tensor; n?: number }): Dispatch {
  const n = args.n ?? args.out.length;
  checkCount(label, n);
  for (const [t, what] of [[args.a, "a"], [args.b, "b"], [args.out, "out"]] as const) need(label, t, n, what);
  distinct(label, args.a, args.out);
  distinct(label, args.b, args.out);
  return flatDispatch(gpu, label, "mul", {}, [params(gpu, label, { n }), args.a, args.b, args.out], n);
}

export interface MulBackwardArgs {
  a: Tensor;
  b: Tensor;
  dy: Tensor;
  /** da = dy·b (overwrite, or += with accumulateA). Omit when a needs no gradient. */
  da?: Tensor;
  db?: Tensor;
  accumulateA?: boolean;
  accumulateB?: boolean;
  n?: number;
}

/** Gradients of y = a·b: da = dy·b, db = dy·a, in one pass. */
export function createMulBackward(gpu: Gpu, label: string, args: MulBackwardArgs): Dispatch {
  const n = args.n ?? args.dy.length;
  checkCount(label, n);
  if (!args.da && !args.db) throw new Error(`${label}: neither da nor db requested`);
  for (const [t, what] of [[args.a, "a"], [args.b, "b"], [args.dy, "dy"]] as const) need(label, t, n, what);
  if (args.da) need(label, args.da, n, "da");
  if (args.db) need(label, args.db, n, "db");
  distinct(label, args.a, args.da, args.db);
  distinct(label, args.b, args.da, args.db);
  distinct(label, args.dy, args.da, args.db);
  const defines = {
    HAS_DA: Boolean(args.da),
    HAS_DB: Boolean(args.db),
    ACCUMULATE_A: Boolean(args.accumulateA),
    ACCUMULATE_B: Boolean(args.accumulateB),
    B_DA: 2,
    B_DB: args.da ? 4 : 2,
  };
  const bindings = [params(gpu, label, { n }), args.dy];
  if (args.da) bindings.push(args.b, args.da);
  if (args.db) bindings.push(args.a, args.db);
  return flatDispatch(gpu, label, "mul_backward", defines, bindings, n);
}

/** dst[dstOffset + i] = src[srcOffset + i] for i < n (offsets in elements). */
export function createCopy(
  gpu: Gpu,
  label: string,
  args: { src: Tensor; dst: Tensor; n?: number; srcOffset?: number; dstOffset?: number },
): Dispatch {
  const srcOffset = args.srcOffset ?? 0, dstOffset = args.dstOffset ?? 0;
  const n = args.n ?? Math.min(args.src.length - srcOffset, args.dst.length - dstOffset);
  checkCount(label, n);
  need(label, args.src, srcOffset + n, "src");
  need(label, args.dst, dstOffset + n, "dst");
  distinct(label, args.src, args.dst);
  const u = params(gpu, label, { n, srcOffset, dstOffset });
  return flatDispatch(gpu, label, "copy", {}, [u, args.src, args.dst], n);
}

/**
 * Copies a block of `cols` columns of `rows` rows between row-major matrices of other widths:
 * dst[r·dstStride + dstOffset + c] = src[r·srcStride + srcOffset + c]. The rest of dst is left as it is.
 */
export function createCopyColumns(
  gpu: Gpu,
  label: string,
  args: {
    src: Tensor;
    dst: Tensor;
    rows: number;
    cols: number;
    srcStride: number;
    srcOffset?: number;
    dstStride: number;
    dstOffset?: number;
  },
): Dispatch {
  const { rows, cols } = args, srcOffset = args.srcOffset ?? 0, dstOffset = args.dstOffset ?? 0;
  const n = rows * cols;
  checkCount(label, n);
  if (srcOffset + cols > args.srcStride || dstOffset + cols > args.dstStride) {
    throw new Error(`${label}: ${cols} columns at offsets ${srcOffset}/${dstOffset} pass the row strides`);
  }
  need(label, args.src, (rows - 1) * args.srcStride + srcOffset + cols, "src");
  need(label, args.dst, (rows - 1) * args.dstStride + dstOffset + cols, "dst");
  distinct(label, args.src, args.dst);
  const u = params(gpu, label, {
    n,
    srcOffset,
    dstOffset,
    rows,
    cols,
    rowsPerBlock: args.srcStride,
    blocks: args.dstStride,
  });
  return flatDispatch(gpu, label, "copy_columns", {}, [u, args.src, args.dst], n);
}

export interface ColumnSumArgs {
  /** [rows, cols] row-major. */
  input: Tensor;
  /** [cols]: out[n] += Σ_m input[m, n] (or = with accumulate: false). */
  out: Tensor;
  rows: number;
  cols: number;
  /** Default true: bias gradients accumulate. */
  accumulate?: boolean;
  /** Rows summed per partial in the first pass; default ≈ sqrt(rows). */
  rowsPerBlock?: number;
}

export interface ColumnSum extends Dispatch {
  /** The partial-sum workspace [blocks, cols], allocated here. */
  readonly workspace: Tensor;
}

/** Default row-block size for two-pass column sums: about sqrt(rows), so both passes stay short. */
export function defaultRowsPerBlock(rows: number): number {
  return Math.max(16, 2 ** Math.ceil(Math.log2(Math.sqrt(Math.max(1, rows)))));
}

/** Deterministic column sum (bias gradient): per-row-block partials, then the blocks in order. No atomics. */
export function createColumnSum(gpu: Gpu, label: string, args: ColumnSumArgs): ColumnSum {
  const { rows, cols } = args;
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(cols) || cols < 1) {
    throw new Error(`${label}: bad shape rows=${rows} cols=${cols}`);
  }
  need(label, args.input, rows * cols, "input");
  need(label, args.out, cols, "out");
  distinct(label, args.input, args.out);
  const rowsPerBlock = args.rowsPerBlock ?? defaultRowsPerBlock(rows);
  if (!Number.isInteger(rowsPerBlock) || rowsPerBlock < 1) {
    throw new Error(`${label}: bad rowsPerBlock ${rowsPerBlock}`);
  }
  const blocks = ceilDiv(rows, rowsPerBlock);
  const u = params(gpu, label, { n: rows * cols, rows, cols, rowsPerBlock, blocks });
  const workspace = gpu.allocator.tensor(`${label}.partials`, [Math.max(1, blocks), cols], "workspace");
  const defines = { ACCUMULATE: args.accumulate ?? true };
  const partial = makeDispatch(gpu, `${label}.partial`, "elementwise", "colsum_partial", defines, [
    u,
    args.input,
    workspace,
  ], [ceilDiv(cols, 64), blocks]);
  const reduce = makeDispatch(gpu, `${label}.reduce`, "elementwise", "colsum_reduce", defines, [
    u,
    workspace,
    args.out,
  ], [ceilDiv(cols, 64)]);
  return {
    label,
    workspace,
    encode(pass) {
      partial.encode(pass);
      reduce.encode(pass);
    },
  };
}
