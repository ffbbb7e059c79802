/**
 * Operand plumbing shared by the Mamba and Hyena ops: column views of row-major matrices, their validation (lengths,
 * no aliased written bindings), and the row blocking of the two-pass parameter-gradient reductions (also RWKV's and
 * the short conv's).
 */
import type { Tensor } from "../gpu/allocator.ts";
import { ceilDiv } from "./_dispatch.ts";

/** Columns [column, column + width) of a row-major matrix whose rows are `rowStride` floats apart. */
export interface MatrixView {
  tensor: Tensor;
  /** First column; default 0. */
  column?: number;
  /** Floats from one row to the next; default the op's width (a dense matrix). */
  rowStride?: number;
}

/** A dense [rows, width] tensor or a column slice of a wider one. */
export type MatrixArg = Tensor | MatrixView;

const MAX_BLOCKS = 1024;
const MIN_ROWS_PER_BLOCK = 16;

export function blocking(rows: number): { rowsPerBlock: number; numBlocks: number } {
  const rowsPerBlock = Math.max(MIN_ROWS_PER_BLOCK, ceilDiv(rows, MAX_BLOCKS));
  return { rowsPerBlock, numBlocks: Math.max(1, ceilDiv(rows, rowsPerBlock)) };
}

export interface View {
  tensor: Tensor;
  column: number;
  rowStride: number;
}

export type Operand = [Tensor, number] | [View, "view"];

export function resolveView(label: string, name: string, arg: MatrixArg, rows: number, width: number): View {
  const view = "buffer" in arg ? { tensor: arg } : arg;
  const column = view.column ?? 0, rowStride = view.rowStride ?? width;
  if (!Number.isInteger(column) || column < 0 || !Number.isInteger(rowStride) || column + width > rowStride) {
    throw new Error(`${label}: ${name} column ${column} + width ${width} must fit in row stride ${rowStride}`);
  }
  const need = (rows - 1) * rowStride + column + width;
  if (view.tensor.length < need) {
    throw new Error(`${label}: ${name} ${view.tensor.label} has ${view.tensor.length} elements, needs ${need}`);
  }
  return { tensor: view.tensor, column, rowStride };
}

export function checkDims(label: string, dims: Record<string, number>): void {
  for (const [name, n] of Object.entries(dims)) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`${label}: ${name} must be a positive integer, got ${n}`);
  }
}

/**
 * Lengths of dense operands, and no written buffer bound twice (WebGPU rejects a read_write binding that aliases
 * another binding of the dispatch); `mayShare` pairs of written operands are allowed to share a buffer.
 */
export function validate(
  label: string,
  operands: Record<string, Operand>,
  written: readonly string[],
  mayShare: readonly [string, string][] = [],
): void {
  const tensorOf = (o: Operand): Tensor => ("buffer" in o[0] ? o[0] : o[0].tensor);
  for (const [name, [t, n]] of Object.entries(operands)) {
    if ("buffer" in t && typeof n === "number" && t.length < n) {
      throw new Error(`${label}: ${name} ${t.label} has ${t.length} elements, needs ${n}`);
    }
  }
  for (const w of written) {
    for (const [name, o] of Object.entries(operands)) {
      if (name === w || mayShare.some(([a, b]) => (a === w && b === name) || (b === w && a === name))) continue;
      if (tensorOf(o).buffer === tensorOf(operands[w]).buffer) {
        throw new Error(`${label}: ${w} ${tensorOf(operands[w]).label} may not alias ${name}`);
      }
    }
  }
}
