/** float64 reference for the matmul family (row-major, same conventions as kernels/matmul.wgsl). */

export interface MatmulRefOptions {
  transA?: boolean;
  transB?: boolean;
  bias?: Float64Array;
  batch?: number;
}

/** C[b] = op(A[b])·op(B[b]) + bias, op(A) [M,K], op(B) [K,N]. */
export function matmulRef(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
  options: MatmulRefOptions = {},
): Float64Array {
  const batch = options.batch ?? 1;
  const out = new Float64Array(batch * M * N);
  for (let bt = 0; bt < batch; bt++) {
    const oa = bt * M * K, ob = bt * K * N, oc = bt * M * N;
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        let s = options.bias ? options.bias[n] : 0;
        for (let k = 0; k < K; k++) {
          const av = options.transA ? a[oa + k * M + m] : a[oa + m * K + k];
          const bv = options.transB ? b[ob + n * K + k] : b[ob + k * N + n];
          s += av * bv;
        }
        out[oc + m * N + n] = s;
      }
    }
  }
  return out;
}

/** y = x·Wᵀ + b with x [M,K], W [N,K] (PyTorch Linear). */
export function linearForward(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  b: Float64Array | undefined,
  M: number,
  N: number,
  K: number,
): Float64Array {
  return matmulRef(x, w, M, N, K, { transB: true, bias: b });
}

/** Gradients of y = x·Wᵀ + b given dy [M,N]. */
export function linearBackward(
  x: ArrayLike<number>,
  w: ArrayLike<number>,
  dy: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
): { dx: Float64Array; dw: Float64Array; db: Float64Array } {
  const dx = matmulRef(dy, w, M, K, N); // [M,N]·[N,K]
  const dw = matmulRef(dy, x, N, K, M, { transA: true }); // [N,M]·[M,K]
  const db = new Float64Array(N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) db[n] += dy[m * N + n];
  return { dx, dw, db };
}
