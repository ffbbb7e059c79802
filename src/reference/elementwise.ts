/** float64 references for the elementwise ops (kernels/elementwise.wgsl). */

export function addRef(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from(a, (v, i) => v + b[i]);
}

/** target + alpha·source (the in-place accumulate). */
export function addScaledRef(target: ArrayLike<number>, source: ArrayLike<number>, alpha = 1): Float64Array {
  return Float64Array.from(target, (v, i) => v + alpha * source[i]);
}

export function scaleRef(a: ArrayLike<number>, alpha: number): Float64Array {
  return Float64Array.from(a, (v) => alpha * v);
}

export function mulRef(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from(a, (v, i) => v * b[i]);
}

/** Gradients of y = a·b given dy. */
export function mulBackwardRef(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  dy: ArrayLike<number>,
): { da: Float64Array; db: Float64Array } {
  return { da: Float64Array.from(dy, (g, i) => g * b[i]), db: Float64Array.from(dy, (g, i) => g * a[i]) };
}

/** out[n] = Σ_m x[m, n] over rows of [rows, cols]. */
export function columnSumRef(x: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(cols);
  for (let m = 0; m < rows; m++) for (let n = 0; n < cols; n++) out[n] += x[m * cols + n];
  return out;
}

/** dst with src[srcOffset .. srcOffset + n) written at dstOffset. */
export function copyRef(
  src: ArrayLike<number>,
  dst: ArrayLike<number>,
  n: number,
  srcOffset = 0,
  dstOffset = 0,
): Float64Array {
  const out = Float64Array.from(dst);
  for (let i = 0; i < n; i++) out[dstOffset + i] = src[srcOffset + i];
  return out;
}
