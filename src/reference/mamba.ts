/**
 * float64 reference for the Mamba mixer's numerical ops (spec §3.5; kernels/mamba.wgsl, src/ops/mamba.ts), same
 * token-major layout: every activation is [B*L, width] with row b*L + t. The projections (in_proj, x_proj, dt_proj,
 * out_proj) are matmuls and not here.
 *
 * 1. Causal depthwise conv (K = 4, with bias) then SiLU:
 *      pre[t, c] = bias[c] + Σ_{k=0..3} w[c, k]·x[t-3+k, c]  (zero history at each sequence start; w is PyTorch's
 *      depthwise Conv1d weight [C, 1, 4], tap 0 multiplies the oldest token), xc = SiLU(pre) = pre·sigmoid(pre).
 * 2. δ = softplus(v) = log(1 + e^v), evaluated as max(v, 0) + log1p(e^{-|v|}) (no overflow, exact for v ≪ 0).
 * 3. Selective scan per (b, c) with A = -exp(A_log) [C, N] and the state h[c, ·] of N values (h_{-1} = 0):
 *      a_t[n] = exp(δ_t[c]·A[c, n]),  h_t[n] = a_t[n]·h_{t-1}[n] + δ_t[c]·B_t[n]·x_t[c],
 *      y_t[c] = Σ_n C_t[n]·h_t[n] + D[c]·x_t[c]                        (B_t, C_t: [B*L, N], shared by all channels)
 *    Backward with the adjoint g_t[n] = ∂L/∂h_t[n] = C_t[n]·dy_t[c] + a_{t+1}[n]·g_{t+1}[n] (reverse sweep):
 *      dx_t = dy_t·D + Σ_n g_t[n]·δ_t·B_t[n],   dδ_t = Σ_n g_t[n]·(A[n]·a_t[n]·h_{t-1}[n] + B_t[n]·x_t),
 *      dB_t[n] = Σ_c g_t[c, n]·δ_t[c]·x_t[c],   dC_t[n] = Σ_c dy_t[c]·h_t[c, n],
 *      dA[c, n] = Σ_{b,t} g_t[n]·δ_t·a_t[n]·h_{t-1}[n],  dA_log = dA·A,  dD[c] = Σ_{b,t} dy_t·x_t.
 *    `selectiveScanDirectRef` is the obvious recurrence keeping every state; `selectiveScanForwardRef` /
 *    `selectiveScanBackwardRef` follow the GPU's schedule: segments of S tokens, the forward saves the state at each
 *    segment start (the checkpoints, in the GPU's layout), the backward walks the segments last to first and
 *    recomputes a segment's states from its checkpoint before its reverse sweep.
 * 4. Gate: out = y ⊙ SiLU(z).
 * 5. RMSNorm (weight only): y = x·rstd·w, rstd = 1/sqrt(mean(x²) + eps) over rows of width d.
 */

export interface MambaShape {
  batch: number;
  seqLen: number;
  /** Channels (d_inner for the conv, the gate and the scan). */
  channels: number;
}

export interface ScanShape extends MambaShape {
  /** d_state N. */
  state: number;
}

/** d_conv: taps of the causal depthwise conv. */
export const D_CONV = 4;

function checkLength(name: string, x: ArrayLike<number>, n: number): void {
  if (x.length !== n) throw new Error(`mamba reference: ${name} has ${x.length} values, expected ${n}`);
}

function checkShape(shape: MambaShape | ScanShape): number {
  for (const [name, n] of Object.entries(shape)) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`mamba reference: ${name} must be a positive integer, got ${n}`);
  }
  return shape.batch * shape.seqLen * shape.channels;
}

export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
export const silu = (x: number): number => x * sigmoid(x);
/** d SiLU(u) / du = s·(1 + u·(1 - s)), s = sigmoid(u). */
export const siluGrad = (x: number): number => {
  const s = sigmoid(x);
  return s * (1 + x * (1 - s));
};

// ---------------------------------------------------------------------------------------------------------------------
// 1. Causal depthwise conv + SiLU

export interface CausalConvInputs {
  /** [B*L, C] */
  x: ArrayLike<number>;
  /** conv1d.weight [C, 1, 4]: tap k multiplies x[t - 3 + k]. */
  weight: ArrayLike<number>;
  /** conv1d.bias [C] */
  bias: ArrayLike<number>;
}

function checkConv(inputs: CausalConvInputs, shape: MambaShape): number {
  const n = checkShape(shape);
  checkLength("x", inputs.x, n);
  checkLength("weight", inputs.weight, D_CONV * shape.channels);
  checkLength("bias", inputs.bias, shape.channels);
  return n;
}

/** The conv's pre-activation bias + Σ_k w[c, k]·x[t-3+k, c]. */
export function causalConvRef(inputs: CausalConvInputs, shape: MambaShape): Float64Array {
  const n = checkConv(inputs, shape), C = shape.channels, L = shape.seqLen;
  const pre = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % C, t = Math.floor(i / C) % L;
    let acc = inputs.bias[c];
    for (let k = 0; k < D_CONV; k++) {
      const back = D_CONV - 1 - k;
      if (t >= back) acc += inputs.weight[c * D_CONV + k] * inputs.x[i - back * C];
    }
    pre[i] = acc;
  }
  return pre;
}

/** xc = SiLU(causal conv(x)). */
export function causalConvSiluForwardRef(inputs: CausalConvInputs, shape: MambaShape): Float64Array {
  return causalConvRef(inputs, shape).map(silu);
}

export interface CausalConvGrads {
  /** [B*L, C] */
  dx: Float64Array;
  /** [C, 1, 4], summed over all rows. */
  dweight: Float64Array;
  /** [C] */
  dbias: Float64Array;
}

/**
 * Gradients of Σ dxc ⊙ xc: with dpre = dxc·SiLU'(pre), dx[t] = Σ_k w[k]·dpre[t+3-k] (same sequence),
 * dweight[c, k] = Σ_t dpre[t]·x[t-3+k], dbias = Σ_t dpre[t].
 */
export function causalConvSiluBackwardRef(
  inputs: CausalConvInputs,
  dxc: ArrayLike<number>,
  shape: MambaShape,
): CausalConvGrads {
  const n = checkConv(inputs, shape), C = shape.channels, L = shape.seqLen;
  checkLength("dxc", dxc, n);
  const pre = causalConvRef(inputs, shape);
  const dpre = pre.map((u, i) => dxc[i] * siluGrad(u));
  const dx = new Float64Array(n), dweight = new Float64Array(D_CONV * C), dbias = new Float64Array(C);
  for (let i = 0; i < n; i++) {
    const c = i % C, t = Math.floor(i / C) % L;
    dbias[c] += dpre[i];
    for (let k = 0; k < D_CONV; k++) {
      const back = D_CONV - 1 - k;
      if (t >= back) {
        // x[t - back] feeds output t through tap k.
        dweight[c * D_CONV + k] += dpre[i] * inputs.x[i - back * C];
        dx[i - back * C] += inputs.weight[c * D_CONV + k] * dpre[i];
      }
    }
  }
  return { dx, dweight, dbias };
}

// ---------------------------------------------------------------------------------------------------------------------
// 2. Softplus

/** log(1 + e^v) without overflow: max(v, 0) + log1p(e^{-|v|}). */
export const softplus = (v: number): number => Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v)));

export function softplusForwardRef(v: ArrayLike<number>): Float64Array {
  return Float64Array.from(v, softplus);
}

/** dv = dδ·sigmoid(v). */
export function softplusBackwardRef(v: ArrayLike<number>, dDelta: ArrayLike<number>): Float64Array {
  checkLength("dDelta", dDelta, v.length);
  return Float64Array.from(v, (x, i) => dDelta[i] * sigmoid(x));
}

// ---------------------------------------------------------------------------------------------------------------------
// 3. Selective scan

export interface ScanInputs {
  /** xc [B*L, C] */
  x: ArrayLike<number>;
  /** δ [B*L, C] (after softplus) */
  delta: ArrayLike<number>;
  /** A_log [C, N]: A = -exp(A_log). */
  A_log: ArrayLike<number>;
  /** B_t, C_t [B*L, N] (dense here; on the GPU strided columns of x_proj's output). */
  B: ArrayLike<number>;
  C: ArrayLike<number>;
  /** D [C] */
  D: ArrayLike<number>;
}

function checkScan(inputs: ScanInputs, shape: ScanShape): number {
  const n = checkShape(shape), rows = shape.batch * shape.seqLen, N = shape.state;
  checkLength("x", inputs.x, n);
  checkLength("delta", inputs.delta, n);
  checkLength("A_log", inputs.A_log, shape.channels * N);
  checkLength("B", inputs.B, rows * N);
  checkLength("C", inputs.C, rows * N);
  checkLength("D", inputs.D, shape.channels);
  return n;
}

/** A = -exp(A_log), [C, N]. */
export function scanA(A_log: ArrayLike<number>): Float64Array {
  return Float64Array.from(A_log, (v) => -Math.exp(v));
}

/** Mamba's A_log init: log(1..N) in every row, [C, N]. */
export function mambaALogInit(channels: number, state: number): Float64Array {
  return Float64Array.from({ length: channels * state }, (_, i) => Math.log(1 + (i % state)));
}

/** The obvious recurrence: y and every state h_t, [B*L, C, N] (row-major: (row·C + c)·N + n). */
export function selectiveScanDirectRef(inputs: ScanInputs, shape: ScanShape): { y: Float64Array; h: Float64Array } {
  const n = checkScan(inputs, shape), C = shape.channels, L = shape.seqLen, N = shape.state;
  const A = scanA(inputs.A_log);
  const y = new Float64Array(n), h = new Float64Array(n * N);
  for (let b = 0; b < shape.batch; b++) {
    for (let c = 0; c < C; c++) {
      for (let t = 0; t < L; t++) {
        const row = b * L + t, i = row * C + c;
        let acc = inputs.D[c] * inputs.x[i];
        for (let s = 0; s < N; s++) {
          const prev = t > 0 ? h[(i - C) * N + s] : 0;
          const cur = Math.exp(inputs.delta[i] * A[c * N + s]) * prev +
            inputs.delta[i] * inputs.B[row * N + s] * inputs.x[i];
          h[i * N + s] = cur;
          acc += inputs.C[row * N + s] * cur;
        }
        y[i] = acc;
      }
    }
  }
  return { y, h };
}

/** The token ranges [begin, end) of S-token segments in increasing order. */
export function scanSegmentRanges(seqLen: number, segmentTokens: number): { begin: number; end: number }[] {
  if (!Number.isInteger(segmentTokens) || segmentTokens < 1) {
    throw new Error(`mamba reference: segmentTokens must be a positive integer, got ${segmentTokens}`);
  }
  const out = [];
  for (let begin = 0; begin < seqLen; begin += segmentTokens) {
    out.push({ begin, end: Math.min(seqLen, begin + segmentTokens) });
  }
  return out;
}

/**
 * Floats of the checkpoints the forward saves for the backward: the state at the start of every segment but the first,
 * [segments - 1, N, B*C] (at least 1: a GPU binding cannot be empty).
 */
export function scanCheckpointLength(shape: ScanShape, segmentTokens: number): number {
  const segments = scanSegmentRanges(shape.seqLen, segmentTokens).length;
  return Math.max(1, (segments - 1) * shape.state * shape.batch * shape.channels);
}

export interface ScanSchedule {
  /** Tokens per segment (the checkpoint interval); default the whole sequence. */
  segmentTokens?: number;
}

/**
 * y and the checkpoints, segment by segment like the GPU: checkpoint slot s - 1 holds the state before segment s,
 * element (slot·N + n)·B·C + b·C + c.
 */
export function selectiveScanForwardRef(
  inputs: ScanInputs,
  shape: ScanShape,
  schedule: ScanSchedule = {},
): { y: Float64Array; checkpoints: Float64Array } {
  const n = checkScan(inputs, shape), C = shape.channels, L = shape.seqLen, N = shape.state;
  const S = schedule.segmentTokens ?? L, BC = shape.batch * C;
  const segments = scanSegmentRanges(L, S);
  const A = scanA(inputs.A_log);
  const y = new Float64Array(n), checkpoints = new Float64Array(scanCheckpointLength(shape, S));
  const h = new Float64Array(N);
  for (let b = 0; b < shape.batch; b++) {
    for (let c = 0; c < C; c++) {
      const bc = b * C + c;
      h.fill(0);
      segments.forEach(({ begin, end }, s) => {
        if (s > 0) { for (let k = 0; k < N; k++) checkpoints[((s - 1) * N + k) * BC + bc] = h[k]; }
        for (let t = begin; t < end; t++) {
          const row = b * L + t, i = row * C + c, dt = inputs.delta[i], xv = inputs.x[i];
          let acc = 0;
          for (let k = 0; k < N; k++) {
            h[k] = Math.exp(dt * A[c * N + k]) * h[k] + dt * xv * inputs.B[row * N + k];
            acc += inputs.C[row * N + k] * h[k];
          }
          y[i] = acc + inputs.D[c] * xv;
        }
      });
    }
  }
  return { y, checkpoints };
}

export interface ScanGrads {
  /** The scan's share of dxc [B*L, C]. */
  dx: Float64Array;
  /** [B*L, C] */
  dDelta: Float64Array;
  /** [B*L, N], summed over the channels. */
  dB: Float64Array;
  dC: Float64Array;
  /** [C, N], summed over batch and time (dA·A). */
  dA_log: Float64Array;
  /** [C] */
  dD: Float64Array;
}

/**
 * Gradients of Σ dy ⊙ y (module comment, 3), scheduled like the GPU: segments last to first; per segment the states
 * h_{t0-1} .. h_{t1-1} are recomputed from the segment's checkpoint, then swept in decreasing t with the adjoint
 * carried over from the later segment as a_{t1}·g_{t1}.
 */
export function selectiveScanBackwardRef(
  inputs: ScanInputs,
  dy: ArrayLike<number>,
  shape: ScanShape,
  schedule: ScanSchedule = {},
): ScanGrads {
  const n = checkScan(inputs, shape), C = shape.channels, L = shape.seqLen, N = shape.state;
  checkLength("dy", dy, n);
  const rows = shape.batch * L, S = schedule.segmentTokens ?? L, BC = shape.batch * C;
  const segments = scanSegmentRanges(L, S);
  const { checkpoints } = selectiveScanForwardRef(inputs, shape, schedule);
  const A = scanA(inputs.A_log);
  const dx = new Float64Array(n), dDelta = new Float64Array(n);
  const dB = new Float64Array(rows * N), dC = new Float64Array(rows * N);
  const dA = new Float64Array(C * N), dD = new Float64Array(C);
  const H = new Float64Array((S + 1) * N), g = new Float64Array(N);
  for (let b = 0; b < shape.batch; b++) {
    for (let c = 0; c < C; c++) {
      const bc = b * C + c;
      // g holds a_{t+1}·g_{t+1}, zero past the end of the sequence.
      g.fill(0);
      for (let s = segments.length - 1; s >= 0; s--) {
        const { begin, end } = segments[s];
        for (let k = 0; k < N; k++) H[k] = s > 0 ? checkpoints[((s - 1) * N + k) * BC + bc] : 0;
        for (let t = begin; t < end; t++) {
          const row = b * L + t, i = row * C + c, tt = t - begin;
          for (let k = 0; k < N; k++) {
            H[(tt + 1) * N + k] = Math.exp(inputs.delta[i] * A[c * N + k]) * H[tt * N + k] +
              inputs.delta[i] * inputs.x[i] * inputs.B[row * N + k];
          }
        }
        for (let t = end - 1; t >= begin; t--) {
          const row = b * L + t, i = row * C + c, tt = t - begin;
          const dt = inputs.delta[i], xv = inputs.x[i], dyv = dy[i];
          let dxv = dyv * inputs.D[c], ddt = 0;
          for (let k = 0; k < N; k++) {
            const gk = inputs.C[row * N + k] * dyv + g[k];
            const a = Math.exp(dt * A[c * N + k]), hPrev = H[tt * N + k], Bk = inputs.B[row * N + k];
            ddt += gk * (A[c * N + k] * a * hPrev + Bk * xv);
            dxv += gk * dt * Bk;
            dA[c * N + k] += gk * dt * a * hPrev;
            dB[row * N + k] += gk * dt * xv;
            dC[row * N + k] += dyv * H[(tt + 1) * N + k];
            g[k] = a * gk;
          }
          dD[c] += dyv * xv;
          dx[i] = dxv;
          dDelta[i] = ddt;
        }
      }
    }
  }
  return { dx, dDelta, dB, dC, dA_log: dA.map((v, i) => v * A[i]), dD };
}

// ---------------------------------------------------------------------------------------------------------------------
// 4. Gate

/** out = y ⊙ SiLU(z). */
export function siluGateForwardRef(y: ArrayLike<number>, z: ArrayLike<number>): Float64Array {
  checkLength("z", z, y.length);
  return Float64Array.from(y, (v, i) => v * silu(z[i]));
}

/** dy = dout·SiLU(z), dz = dout·y·SiLU'(z). */
export function siluGateBackwardRef(
  y: ArrayLike<number>,
  z: ArrayLike<number>,
  dout: ArrayLike<number>,
): { dy: Float64Array; dz: Float64Array } {
  checkLength("z", z, y.length);
  checkLength("dout", dout, y.length);
  return {
    dy: Float64Array.from(z, (v, i) => dout[i] * silu(v)),
    dz: Float64Array.from(z, (v, i) => dout[i] * y[i] * siluGrad(v)),
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// 5. RMSNorm

export interface RmsNormShape {
  rows: number;
  width: number;
  /** Default 1e-5. */
  eps?: number;
}

function checkRms(x: ArrayLike<number>, weight: ArrayLike<number>, shape: RmsNormShape): number {
  checkLength("x", x, shape.rows * shape.width);
  checkLength("weight", weight, shape.width);
  return shape.eps ?? 1e-5;
}

/** y = x·rstd·w with rstd = 1/sqrt(mean(x²) + eps) per row (saved for the backward). */
export function rmsNormForwardRef(
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  shape: RmsNormShape,
): { y: Float64Array; rstd: Float64Array } {
  const eps = checkRms(x, weight, shape), W = shape.width;
  const y = new Float64Array(shape.rows * W), rstd = new Float64Array(shape.rows);
  for (let r = 0; r < shape.rows; r++) {
    let sq = 0;
    for (let c = 0; c < W; c++) sq += x[r * W + c] ** 2;
    rstd[r] = 1 / Math.sqrt(sq / W + eps);
    for (let c = 0; c < W; c++) y[r * W + c] = x[r * W + c] * rstd[r] * weight[c];
  }
  return { y, rstd };
}

/** With xhat = x·rstd and g = dy·w: dx = rstd·(g - xhat·mean(g·xhat)) per row, dweight = Σ_rows dy·xhat. */
export function rmsNormBackwardRef(
  x: ArrayLike<number>,
  weight: ArrayLike<number>,
  dy: ArrayLike<number>,
  shape: RmsNormShape,
): { dx: Float64Array; dweight: Float64Array } {
  checkLength("dy", dy, shape.rows * shape.width);
  const { rstd } = rmsNormForwardRef(x, weight, shape), W = shape.width;
  const dx = new Float64Array(shape.rows * W), dweight = new Float64Array(W);
  for (let r = 0; r < shape.rows; r++) {
    let dot = 0;
    for (let c = 0; c < W; c++) dot += dy[r * W + c] * weight[c] * x[r * W + c] * rstd[r];
    const mean = dot / W;
    for (let c = 0; c < W; c++) {
      const xhat = x[r * W + c] * rstd[r];
      dx[r * W + c] = rstd[r] * (dy[r * W + c] * weight[c] - xhat * mean);
      dweight[c] += dy[r * W + c] * xhat;
    }
  }
  return { dx, dweight };
}
