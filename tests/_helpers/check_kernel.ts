/**
 * The one helper that checks GPU kernels against the float64 reference (in the spirit of tinygrad's helper_test_op):
 * the reference and the GPU each return named outputs (forward results and gradients); every name must match within
 * `max |gpu - ref| <= atol + rtol * |ref|`.
 */
import { Rng } from "../../src/data/rng.ts";
import { assert } from "./assert.ts";

export interface Tolerance {
  rtol: number;
  atol: number;
}

/** fp32 kernels vs float64: a few ulps per accumulated term. */
export const FP32_TOLERANCE: Tolerance = { rtol: 2e-4, atol: 2e-5 };

export type Values = Record<string, ArrayLike<number>>;

export interface KernelCheck {
  name: string;
  reference: () => Values | Promise<Values>;
  gpu: () => Values | Promise<Values>;
  tolerance?: Tolerance;
  /** Per-output overrides. */
  tolerances?: Record<string, Tolerance>;
}

export interface Mismatch {
  output: string;
  index: number;
  gpu: number;
  ref: number;
  ratio: number;
}

/** Worst element of `actual` vs `expected`: ratio = |a - e| / (atol + rtol|e|), > 1 means out of tolerance. */
export function worstMismatch(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance,
): { index: number; ratio: number } {
  let worst = { index: -1, ratio: 0 };
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    const ratio = Number.isFinite(a) ? Math.abs(a - e) / (tol.atol + tol.rtol * Math.abs(e)) : Infinity;
    if (ratio > worst.ratio || Number.isNaN(ratio)) worst = { index: i, ratio: Number.isNaN(ratio) ? Infinity : ratio };
  }
  return worst;
}

export async function checkKernel(check: KernelCheck): Promise<void> {
  const ref = await check.reference();
  const got = await check.gpu();
  const problems: string[] = [];
  for (const [key, expected] of Object.entries(ref)) {
    const actual = got[key];
    if (!actual) {
      problems.push(`${key}: missing from GPU outputs`);
      continue;
    }
    if (actual.length < expected.length) {
      problems.push(`${key}: GPU gave ${actual.length} values, reference ${expected.length}`);
      continue;
    }
    const tol = check.tolerances?.[key] ?? check.tolerance ?? FP32_TOLERANCE;
    const w = worstMismatch(actual, expected, tol);
    if (w.ratio > 1) {
      problems.push(
        `${key}[${w.index}]: gpu ${actual[w.index]} vs ref ${expected[w.index]} ` +
          `(${w.ratio.toFixed(2)}× tolerance rtol=${tol.rtol} atol=${tol.atol})`,
      );
    }
  }
  assert(problems.length === 0, `${check.name}:\n  ${problems.join("\n  ")}`);
}

/** Normal(0, scale) values from a seeded stream. */
export function randn(n: number, seed: number, scale = 1): Float64Array {
  const rng = new Rng(seed, 7);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = rng.normal() * scale;
  return out;
}

/** Rounds to f32 so the reference sees exactly what the GPU sees. */
export function f32(values: ArrayLike<number>): Float32Array {
  return Float32Array.from(values);
}

export function f64(values: ArrayLike<number>): Float64Array {
  return Float64Array.from(values);
}

/**
 * Central finite differences of a scalar function, to check the reference's analytic gradients.
 * Compares d f / d x[i] for a sample of indices against `analytic`.
 */
export function checkFiniteDifferences(
  name: string,
  f: (x: Float64Array) => number,
  x: Float64Array,
  analytic: ArrayLike<number>,
  options: { eps?: number; rtol?: number; atol?: number; samples?: number } = {},
): void {
  const eps = options.eps ?? 1e-6, rtol = options.rtol ?? 1e-5, atol = options.atol ?? 1e-7;
  const n = x.length;
  const count = Math.min(n, options.samples ?? 32);
  const rng = new Rng(n, 99);
  for (let s = 0; s < count; s++) {
    const i = count === n ? s : rng.int(0, n - 1);
    const orig = x[i];
    x[i] = orig + eps;
    const fp = f(x);
    x[i] = orig - eps;
    const fm = f(x);
    x[i] = orig;
    const fd = (fp - fm) / (2 * eps);
    const err = Math.abs(fd - analytic[i]);
    assert(
      err <= atol + rtol * Math.abs(fd),
      `${name}: d/dx[${i}] finite difference ${fd} vs analytic ${analytic[i]} (err ${err})`,
    );
  }
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
