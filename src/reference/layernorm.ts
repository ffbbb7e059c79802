/** float64 reference for the LayerNorm family (kernels/layernorm.wgsl): LayerNorm, Normalizer and Scaler. */

export interface LayerNormRefOptions {
  normalize?: boolean;
  gamma?: boolean;
  beta?: boolean;
  eps?: number;
  /** s = 1/(sqrt(var + eps) + eps) instead of 1/sqrt(var + eps). */
  epsOutside?: boolean;
}

interface Resolved {
  normalize: boolean;
  gamma: boolean;
  beta: boolean;
  eps: number;
  epsOutside: boolean;
}

const resolve = (o: LayerNormRefOptions): Resolved => ({
  normalize: o.normalize ?? true,
  gamma: o.gamma ?? true,
  beta: o.beta ?? true,
  eps: o.eps ?? 1e-5,
  epsOutside: o.epsOutside ?? false,
});

/** Per-row mean, s (the factor applied to x − μ) and σ = sqrt(var + eps), biased variance. */
function rowStats(x: ArrayLike<number>, r: number, width: number, o: Resolved) {
  let sum = 0;
  for (let c = 0; c < width; c++) sum += x[r * width + c];
  const mean = sum / width;
  let sq = 0;
  for (let c = 0; c < width; c++) sq += (x[r * width + c] - mean) ** 2;
  const sigma = Math.sqrt(sq / width + o.eps);
  return { mean, sigma, s: o.epsOutside ? 1 / (sigma + o.eps) : 1 / sigma };
}

/** y = xhat·γ + β over rows of [rows, width]; also the per-row mean and s the kernel saves (zeros when not normalizing). */
export function layerNormForwardRef(
  x: ArrayLike<number>,
  gamma: ArrayLike<number> | undefined,
  beta: ArrayLike<number> | undefined,
  rows: number,
  width: number,
  options: LayerNormRefOptions = {},
): { y: Float64Array; mean: Float64Array; rstd: Float64Array } {
  const o = resolve(options);
  const y = new Float64Array(rows * width), mean = new Float64Array(rows), rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    const st = o.normalize ? rowStats(x, r, width, o) : { mean: 0, s: 1 };
    mean[r] = st.mean;
    rstd[r] = st.s;
    for (let c = 0; c < width; c++) {
      let v = (x[r * width + c] - st.mean) * st.s;
      if (o.gamma) v *= gamma![c];
      if (o.beta) v += beta![c];
      y[r * width + c] = v;
    }
  }
  return { y, mean, rstd };
}

/**
 * Gradients given dy. With g = dy·γ and xhat = (x − μ)·s:
 *   dx = s·(g − mean(g)) − xhat·mean(g·xhat)/σ   (reduces to s·(g − mean g − xhat·mean(g xhat)) when s = 1/σ),
 *   dγ = Σ_rows dy·xhat, dβ = Σ_rows dy. Without normalization dx = g and xhat = x.
 */
export function layerNormBackwardRef(
  x: ArrayLike<number>,
  gamma: ArrayLike<number> | undefined,
  dy: ArrayLike<number>,
  rows: number,
  width: number,
  options: LayerNormRefOptions = {},
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const o = resolve(options);
  const dx = new Float64Array(rows * width), dgamma = new Float64Array(width), dbeta = new Float64Array(width);
  const g = new Float64Array(width), xhat = new Float64Array(width);
  for (let r = 0; r < rows; r++) {
    const st = o.normalize ? rowStats(x, r, width, o) : { mean: 0, s: 1, sigma: 1 };
    let sumG = 0, sumGX = 0;
    for (let c = 0; c < width; c++) {
      const i = r * width + c;
      xhat[c] = (x[i] - st.mean) * st.s;
      g[c] = o.gamma ? dy[i] * gamma![c] : dy[i];
      sumG += g[c];
      sumGX += g[c] * xhat[c];
      dgamma[c] += dy[i] * xhat[c];
      dbeta[c] += dy[i];
    }
    for (let c = 0; c < width; c++) {
      dx[r * width + c] = o.normalize ? st.s * (g[c] - sumG / width) - xhat[c] * (sumGX / width) / st.sigma : g[c];
    }
  }
  return { dx, dgamma, dbeta };
}
