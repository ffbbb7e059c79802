/**
 * float64 reference for the Hyena mixer's numerical ops (spec §3.7; [Z] zoology/mixers/hyena.py, `Hyena(l_max=L)`,
 * one head, filter order F = 64; kernels/hyena.wgsl, src/ops/hyena.ts), same token-major layout: every activation is
 * [B*L, width] with row b*L + t. The linear layers (in_proj, the filter MLP's four linears, out_proj) are matmuls and not
 * here. With d channels the mixer is
 *
 *   u = in_proj(h)                                             [rows, 3d]
 * 1. short filter, causal depthwise conv (K = 3, +bias, no activation) over all 3d channels:
 *      uc[t, c] = bias[c] + Σ_{k=0..2} w[c, k]·u[t-2+k, c]   (zero history at each sequence start; w is PyTorch's
 *      depthwise Conv1d weight [3d, 1, 3], tap 0 multiplies the oldest token)
 *    x1 = uc[:, 0:d], x2 = uc[:, d:2d], v = uc[:, 2d:3d].
 * 2. pre-gate v1 = v ⊙ x1.
 * 3. implicit filter h [L, d], shared by the batch: z [L, 3] (a parameter, init `hyenaPositionalZ`),
 *      a1 = sin(freq ⊙ (z·W0ᵀ + b0)), a2 = sin(freq ⊙ (a1·W1ᵀ + b1)), a3 = sin(freq ⊙ (a2·W2ᵀ + b2)), hraw = a3·W3ᵀ
 *    (W0 [F, 3], W1, W2 [F, F], W3 [d, F]; one freq [1, F] shared by the three sin layers), then the exponential
 *    modulation h[n, c] = hraw[n, c]·exp(-t_n·|δ_c|), t_n = n/(L-1) (torch.linspace(0, 1, L): t = 0 when L = 1),
 *    δ = linspace(ln(1e-2)/1.5, ln(1e-2)/0.3, d) (a buffer; `hyenaDeltas`).
 * 4. long causal convolution with the D term, per example and channel:
 *      y[t, c] = Σ_{s=0..t} h[t-s, c]·v1[s, c] + bias[c]·v1[t, c]
 *    (zoology computes it as an FFT convolution of size 2L: the same linear convolution). Backward:
 *      dv1[s, c] = Σ_{t≥s} h[t-s, c]·dy[t, c] + bias[c]·dy[s, c],
 *      dh[l, c] = Σ_b Σ_{t≥l} dy[b, t, c]·v1[b, t-l, c],   dbias[c] = Σ_{b,t} dy·v1 (= the lag-0 term of dh).
 * 5. post-gate v2 = y ⊙ x2, then out_proj.
 *
 * `hyenaMixerForwardRef` / `hyenaMixerBackwardRef` compose all of it from u (in_proj's output) to v2 (out_proj's input)
 * and back.
 */
import { linearBackward, linearForward } from "./matmul.ts";

export interface HyenaShape {
  batch: number;
  seqLen: number;
  /** Channels: d for the long conv and the gates, 3d for the short filter. */
  channels: number;
}

/** Width F of the implicit filter's MLP (zoology's filter_order). */
export const HYENA_FILTER_ORDER = 64;
/** Taps of the short filter. */
export const SHORT_FILTER_TAPS = 3;
/** Input features of the implicit filter (emb_dim: t and one complex band). */
export const HYENA_EMB_DIM = 3;

function checkLength(name: string, x: ArrayLike<number>, n: number): void {
  if (x.length !== n) throw new Error(`hyena reference: ${name} has ${x.length} values, expected ${n}`);
}

function checkDims(dims: Record<string, number>): void {
  for (const [name, n] of Object.entries(dims)) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`hyena reference: ${name} must be a positive integer, got ${n}`);
  }
}

function checkShape(shape: HyenaShape): number {
  checkDims({ batch: shape.batch, seqLen: shape.seqLen, channels: shape.channels });
  return shape.batch * shape.seqLen * shape.channels;
}

// ---------------------------------------------------------------------------------------------------------------------
// Buffers and initial values

/**
 * t_n = n/(lMax - 1) for n < L (torch.linspace(0, 1, lMax)[:L]; 0 when lMax = 1). zoology builds its positional buffers
 * for l_max and slices the first L; this project always runs with L = l_max.
 */
export function hyenaTime(seqLen: number, lMax = seqLen): Float64Array {
  checkDims({ seqLen, lMax });
  if (seqLen > lMax) throw new Error(`hyena reference: seqLen ${seqLen} exceeds lMax ${lMax}`);
  return Float64Array.from({ length: seqLen }, (_, n) => (lMax > 1 ? n / (lMax - 1) : 0));
}

/**
 * The initial z [L, 3]: [t_n, cos(2π·1e-4·n/lMax), -sin(2π·1e-4·n/lMax)] (PositionalEmbedding with emb_dim 3: one band
 * at frequency linspace(1e-4, 0, 1) = 1e-4, z = exp(-i·f·2πn/lMax)).
 */
export function hyenaPositionalZ(seqLen: number, lMax = seqLen): Float64Array {
  const t = hyenaTime(seqLen, lMax), z = new Float64Array(seqLen * HYENA_EMB_DIM);
  for (let n = 0; n < seqLen; n++) {
    const w = 1e-4 * 2 * Math.PI * n / lMax;
    z[n * 3] = t[n];
    z[n * 3 + 1] = Math.cos(w);
    z[n * 3 + 2] = -Math.sin(w);
  }
  return z;
}

/** The decay rates' range: δ_0 = ln(1e-2)/1.5 (slow), δ_{d-1} = ln(1e-2)/0.3 (fast). */
export const HYENA_DELTA_RANGE = { min: Math.log(1e-2) / 1.5, max: Math.log(1e-2) / 0.3 } as const;

/** δ = linspace(ln(1e-2)/1.5, ln(1e-2)/0.3, d) (torch.linspace: the start alone when d = 1). */
export function hyenaDeltas(channels: number): Float64Array {
  checkDims({ channels });
  const { min, max } = HYENA_DELTA_RANGE;
  const step = channels > 1 ? (max - min) / (channels - 1) : 0;
  return Float64Array.from({ length: channels }, (_, c) => min + c * step);
}

// ---------------------------------------------------------------------------------------------------------------------
// 1. Short filter

export interface ShortFilterInputs {
  /** [B*L, C] (C = 3d in the mixer) */
  u: ArrayLike<number>;
  /** short_filter.weight [C, 1, 3]: tap k multiplies u[t - 2 + k]. */
  weight: ArrayLike<number>;
  /** short_filter.bias [C] */
  bias: ArrayLike<number>;
}

function checkShortFilter(x: ShortFilterInputs, shape: HyenaShape): number {
  const n = checkShape(shape);
  checkLength("u", x.u, n);
  checkLength("weight", x.weight, SHORT_FILTER_TAPS * shape.channels);
  checkLength("bias", x.bias, shape.channels);
  return n;
}

/** uc = bias + Σ_k w[c, k]·u[t-2+k, c], causal within each sequence. */
export function shortFilterRef(x: ShortFilterInputs, shape: HyenaShape): Float64Array {
  const n = checkShortFilter(x, shape), C = shape.channels, L = shape.seqLen, K = SHORT_FILTER_TAPS;
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % C, t = Math.floor(i / C) % L;
    let acc = x.bias[c];
    for (let k = 0; k < K; k++) {
      const back = K - 1 - k;
      if (t >= back) acc += x.weight[c * K + k] * x.u[i - back * C];
    }
    out[i] = acc;
  }
  return out;
}

export interface ShortFilterGrads {
  /** [B*L, C] */
  du: Float64Array;
  /** [C, 1, 3] and [C], summed over all rows. */
  dweight: Float64Array;
  dbias: Float64Array;
}

/** du[t] = Σ_k w[k]·dy[t+2-k] (same sequence), dweight[c, k] = Σ_t dy[t]·u[t-2+k], dbias = Σ_t dy[t]. */
export function shortFilterBackwardRef(
  x: ShortFilterInputs,
  dy: ArrayLike<number>,
  shape: HyenaShape,
): ShortFilterGrads {
  const n = checkShortFilter(x, shape), C = shape.channels, L = shape.seqLen, K = SHORT_FILTER_TAPS;
  checkLength("dy", dy, n);
  const du = new Float64Array(n), dweight = new Float64Array(K * C), dbias = new Float64Array(C);
  for (let i = 0; i < n; i++) {
    const c = i % C, t = Math.floor(i / C) % L;
    dbias[c] += dy[i];
    for (let k = 0; k < K; k++) {
      const back = K - 1 - k;
      if (t >= back) {
        dweight[c * K + k] += dy[i] * x.u[i - back * C];
        du[i - back * C] += x.weight[c * K + k] * dy[i];
      }
    }
  }
  return { du, dweight, dbias };
}

// ---------------------------------------------------------------------------------------------------------------------
// 2 and 5. Gates

export function gateRef(a: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  checkLength("b", b, a.length);
  return Float64Array.from(a, (v, i) => v * b[i]);
}

/** Gradients of out = a ⊙ b: da = dout·b, db = dout·a. */
export function gateBackwardRef(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  dout: ArrayLike<number>,
): { da: Float64Array; db: Float64Array } {
  checkLength("b", b, a.length);
  checkLength("dout", dout, a.length);
  return { da: Float64Array.from(dout, (g, i) => g * b[i]), db: Float64Array.from(dout, (g, i) => g * a[i]) };
}

// ---------------------------------------------------------------------------------------------------------------------
// 3. Implicit filter: sin activation and exponential modulation

/** y = sin(freq ⊙ x) over rows of width F (freq [F]). */
export function sinActivationRef(x: ArrayLike<number>, freq: ArrayLike<number>): Float64Array {
  const F = freq.length;
  if (F < 1 || x.length % F !== 0) throw new Error(`hyena reference: x has ${x.length} values, not rows of ${F}`);
  return Float64Array.from(x, (v, i) => Math.sin(freq[i % F] * v));
}

/** dx = dy·freq·cos(freq·x) and dfreq[j] = Σ_rows dy·x·cos(freq·x). */
export function sinActivationBackwardRef(
  x: ArrayLike<number>,
  freq: ArrayLike<number>,
  dy: ArrayLike<number>,
): { dx: Float64Array; dfreq: Float64Array } {
  const F = freq.length;
  if (F < 1 || x.length % F !== 0) throw new Error(`hyena reference: x has ${x.length} values, not rows of ${F}`);
  checkLength("dy", dy, x.length);
  const dx = new Float64Array(x.length), dfreq = new Float64Array(F);
  for (let i = 0; i < x.length; i++) {
    const j = i % F, c = Math.cos(freq[j] * x[i]);
    dx[i] = dy[i] * freq[j] * c;
    dfreq[j] += dy[i] * x[i] * c;
  }
  return { dx, dfreq };
}

/** The decay exp(-t_n·|δ_c|) [L, d]. */
export function modulationDecayRef(seqLen: number, channels: number, lMax = seqLen): Float64Array {
  const t = hyenaTime(seqLen, lMax), delta = hyenaDeltas(channels);
  const out = new Float64Array(seqLen * channels);
  for (let n = 0; n < seqLen; n++) {
    for (let c = 0; c < channels; c++) out[n * channels + c] = Math.exp(-t[n] * Math.abs(delta[c]));
  }
  return out;
}

/** h = hraw·exp(-t_n·|δ_c|), hraw [L, d]. */
export function modulationRef(hraw: ArrayLike<number>, seqLen: number, channels: number, lMax = seqLen): Float64Array {
  checkLength("hraw", hraw, seqLen * channels);
  const decay = modulationDecayRef(seqLen, channels, lMax);
  return Float64Array.from(hraw, (v, i) => v * decay[i]);
}

/** dhraw = dh·exp(-t_n·|δ_c|) (δ is not trained). */
export function modulationBackwardRef(dh: ArrayLike<number>, seqLen: number, channels: number, lMax = seqLen) {
  return modulationRef(dh, seqLen, channels, lMax);
}

// ---------------------------------------------------------------------------------------------------------------------
// 4. Long causal convolution with the D term

export interface LongConvInputs {
  /** v1 [B*L, d] */
  v: ArrayLike<number>;
  /** The filter h [L, d], shared by the batch. */
  h: ArrayLike<number>;
  /** The D term [d] (zoology's filter_fn.bias). */
  bias: ArrayLike<number>;
}

function checkLongConv(x: LongConvInputs, shape: HyenaShape): number {
  const n = checkShape(shape);
  checkLength("v", x.v, n);
  checkLength("h", x.h, shape.seqLen * shape.channels);
  checkLength("bias", x.bias, shape.channels);
  return n;
}

/** y[t] = Σ_{s≤t} h[t-s]·v[s] + bias·v[t]: the obvious double loop, O(L²) per channel. */
export function longConvRef(x: LongConvInputs, shape: HyenaShape): Float64Array {
  const n = checkLongConv(x, shape), { batch: B, seqLen: L, channels: C } = shape;
  const y = new Float64Array(n);
  for (let b = 0; b < B; b++) {
    const base = b * L * C;
    for (let c = 0; c < C; c++) {
      for (let t = 0; t < L; t++) {
        let acc = 0;
        for (let s = 0; s <= t; s++) acc += x.h[(t - s) * C + c] * x.v[base + s * C + c];
        y[base + t * C + c] = acc + x.bias[c] * x.v[base + t * C + c];
      }
    }
  }
  return y;
}

export interface LongConvGrads {
  /** [B*L, d] */
  dv: Float64Array;
  /** [L, d]: summed over the batch. */
  dh: Float64Array;
  /** [d] */
  dbias: Float64Array;
}

/** dv[s] = Σ_{t≥s} h[t-s]·dy[t] + bias·dy[s]; dh[l] = Σ_b Σ_{t≥l} dy[t]·v[t-l]; dbias = Σ_{b,t} dy·v. */
export function longConvBackwardRef(x: LongConvInputs, dy: ArrayLike<number>, shape: HyenaShape): LongConvGrads {
  const n = checkLongConv(x, shape), { batch: B, seqLen: L, channels: C } = shape;
  checkLength("dy", dy, n);
  const dv = new Float64Array(n), dh = new Float64Array(L * C), dbias = new Float64Array(C);
  for (let b = 0; b < B; b++) {
    const base = b * L * C;
    for (let c = 0; c < C; c++) {
      for (let s = 0; s < L; s++) {
        let acc = 0;
        for (let t = s; t < L; t++) acc += x.h[(t - s) * C + c] * dy[base + t * C + c];
        dv[base + s * C + c] = acc + x.bias[c] * dy[base + s * C + c];
      }
      for (let l = 0; l < L; l++) {
        let acc = 0;
        for (let t = l; t < L; t++) acc += dy[base + t * C + c] * x.v[base + (t - l) * C + c];
        dh[l * C + c] += acc;
      }
      for (let t = 0; t < L; t++) dbias[c] += dy[base + t * C + c] * x.v[base + t * C + c];
    }
  }
  return { dv, dh, dbias };
}

/** In-place radix-2 FFT of (re, im) of a power-of-two length; `inverse` uses e^{+2πi/N} (no 1/N scaling). */
export function fftRef(re: Float64Array, im: Float64Array, inverse = false): void {
  const N = re.length;
  if (im.length !== N || N < 1 || (N & (N - 1)) !== 0) throw new Error(`hyena reference: FFT length ${N}`);
  for (let i = 1, j = 0; i < N; i++) {
    let bit = N >> 1;
    for (; j & bit; bit >>= 1) j ^= bit;
    j ^= bit;
    if (i < j) {
      [re[i], re[j]] = [re[j], re[i]];
      [im[i], im[j]] = [im[j], im[i]];
    }
  }
  for (let len = 2; len <= N; len <<= 1) {
    const ang = (inverse ? 2 : -2) * Math.PI / len;
    for (let i = 0; i < N; i += len) {
      for (let k = 0; k < len / 2; k++) {
        const wr = Math.cos(ang * k), wi = Math.sin(ang * k);
        const a = i + k, b = a + len / 2;
        const xr = re[b] * wr - im[b] * wi, xi = re[b] * wi + im[b] * wr;
        re[b] = re[a] - xr;
        im[b] = im[a] - xi;
        re[a] += xr;
        im[a] += xi;
      }
    }
  }
}

/**
 * The FFT size of the long conv: the smallest power of two ≥ 2L - 1, the least zero padding for which the circular
 * convolution is the linear one on [0, L) (zoology uses a real FFT of size 2L: the same result).
 */
export function longConvFftSize(seqLen: number): number {
  let n = 1;
  while (n < 2 * seqLen - 1) n *= 2;
  return n;
}

/** y as zoology computes it: irfft(rfft(v, N)·rfft(h, N))[:L] + bias·v, zero-padded to N = longConvFftSize(L). */
export function longConvFftRef(x: LongConvInputs, shape: HyenaShape): Float64Array {
  const n = checkLongConv(x, shape), { batch: B, seqLen: L, channels: C } = shape;
  const N = longConvFftSize(L), y = new Float64Array(n);
  for (let c = 0; c < C; c++) {
    const hr = new Float64Array(N), hi = new Float64Array(N);
    for (let l = 0; l < L; l++) hr[l] = x.h[l * C + c];
    fftRef(hr, hi);
    for (let b = 0; b < B; b++) {
      const base = b * L * C, vr = new Float64Array(N), vi = new Float64Array(N);
      for (let s = 0; s < L; s++) vr[s] = x.v[base + s * C + c];
      fftRef(vr, vi);
      for (let k = 0; k < N; k++) {
        const r = vr[k] * hr[k] - vi[k] * hi[k], i = vr[k] * hi[k] + vi[k] * hr[k];
        vr[k] = r;
        vi[k] = i;
      }
      fftRef(vr, vi, true);
      for (let t = 0; t < L; t++) y[base + t * C + c] = vr[t] / N + x.bias[c] * x.v[base + t * C + c];
    }
  }
  return y;
}

// ---------------------------------------------------------------------------------------------------------------------
// The implicit filter and the whole mixer (u → v2)

export interface HyenaFilterParams {
  /** z [L, 3] (filter_fn.pos_emb.z). */
  z: ArrayLike<number>;
  /** implicit_filter.0: W0 [F, 3], b0 [F]; .2: W1 [F, F], b1; .4: W2 [F, F], b2; .6: W3 [d, F] (no bias). */
  w0: ArrayLike<number>;
  b0: ArrayLike<number>;
  w1: ArrayLike<number>;
  b1: ArrayLike<number>;
  w2: ArrayLike<number>;
  b2: ArrayLike<number>;
  w3: ArrayLike<number>;
  /** The Sin frequency [1, F], shared by the three sin layers. */
  freq: ArrayLike<number>;
}

export interface HyenaFilterForward {
  /** The sin layers' pre-activations (linear outputs, [L, F]) and outputs. */
  pre: [Float64Array, Float64Array, Float64Array];
  act: [Float64Array, Float64Array, Float64Array];
  /** [L, d] before and after the modulation. */
  hraw: Float64Array;
  h: Float64Array;
}

export interface HyenaFilterGrads {
  z: Float64Array;
  w0: Float64Array;
  b0: Float64Array;
  w1: Float64Array;
  b1: Float64Array;
  w2: Float64Array;
  b2: Float64Array;
  w3: Float64Array;
  freq: Float64Array;
}

const f64 = (a: ArrayLike<number>) => Float64Array.from(a);

/** h [L, d] from the filter MLP (F = freq.length) and the modulation. */
export function hyenaFilterForwardRef(
  p: HyenaFilterParams,
  seqLen: number,
  channels: number,
  lMax = seqLen,
): HyenaFilterForward {
  const L = seqLen, F = p.freq.length, E = HYENA_EMB_DIM;
  checkDims({ seqLen, channels, F });
  checkLength("z", p.z, L * E);
  checkLength("w0", p.w0, F * E);
  checkLength("w3", p.w3, channels * F);
  const pre0 = linearForward(p.z, p.w0, f64(p.b0), L, F, E);
  const a1 = sinActivationRef(pre0, p.freq);
  const pre1 = linearForward(a1, p.w1, f64(p.b1), L, F, F);
  const a2 = sinActivationRef(pre1, p.freq);
  const pre2 = linearForward(a2, p.w2, f64(p.b2), L, F, F);
  const a3 = sinActivationRef(pre2, p.freq);
  const hraw = linearForward(a3, p.w3, undefined, L, channels, F);
  return { pre: [pre0, pre1, pre2], act: [a1, a2, a3], hraw, h: modulationRef(hraw, L, channels, lMax) };
}

/** Gradients of the filter's parameters (z included) from dh [L, d]. */
export function hyenaFilterBackwardRef(
  p: HyenaFilterParams,
  fwd: HyenaFilterForward,
  dh: ArrayLike<number>,
  seqLen: number,
  channels: number,
  lMax = seqLen,
): HyenaFilterGrads {
  const L = seqLen, F = p.freq.length, E = HYENA_EMB_DIM;
  checkLength("dh", dh, L * channels);
  const dhraw = modulationBackwardRef(dh, L, channels, lMax);
  const l3 = linearBackward(fwd.act[2], p.w3, dhraw, L, channels, F);
  const s2 = sinActivationBackwardRef(fwd.pre[2], p.freq, l3.dx);
  const l2 = linearBackward(fwd.act[1], p.w2, s2.dx, L, F, F);
  const s1 = sinActivationBackwardRef(fwd.pre[1], p.freq, l2.dx);
  const l1 = linearBackward(fwd.act[0], p.w1, s1.dx, L, F, F);
  const s0 = sinActivationBackwardRef(fwd.pre[0], p.freq, l1.dx);
  const l0 = linearBackward(p.z, p.w0, s0.dx, L, F, E);
  return {
    z: l0.dx,
    w0: l0.dw,
    b0: l0.db,
    w1: l1.dw,
    b1: l1.db,
    w2: l2.dw,
    b2: l2.db,
    w3: l3.dw,
    freq: Float64Array.from(s0.dfreq, (v, j) => v + s1.dfreq[j] + s2.dfreq[j]),
  };
}

export interface HyenaMixerParams extends HyenaFilterParams {
  /** short_filter.weight [3d, 1, 3], short_filter.bias [3d]. */
  shortWeight: ArrayLike<number>;
  shortBias: ArrayLike<number>;
  /** The D term [d] (filter_fn.bias). */
  bias: ArrayLike<number>;
}

export interface HyenaMixerForward {
  /** Short filter output [rows, 3d] = x1 | x2 | v. */
  uc: Float64Array;
  x1: Float64Array;
  x2: Float64Array;
  v: Float64Array;
  /** v ⊙ x1, the long conv's output y, and v2 = y ⊙ x2 (out_proj's input), each [rows, d]. */
  v1: Float64Array;
  y: Float64Array;
  v2: Float64Array;
  filter: HyenaFilterForward;
}

export interface HyenaMixerGrads extends HyenaFilterGrads {
  /** dL/du [rows, 3d] (in_proj's output). */
  du: Float64Array;
  shortWeight: Float64Array;
  shortBias: Float64Array;
  bias: Float64Array;
}

/** Columns [c0, c0 + width) of a row-major [rows, stride] matrix. */
export function columnsRef(
  m: ArrayLike<number>,
  rows: number,
  stride: number,
  c0: number,
  width: number,
): Float64Array {
  const out = new Float64Array(rows * width);
  for (let r = 0; r < rows; r++) for (let j = 0; j < width; j++) out[r * width + j] = m[r * stride + c0 + j];
  return out;
}

/** Dense blocks [rows, width_k] side by side. */
export function concatColumnsRef(rows: number, blocks: readonly { data: ArrayLike<number>; width: number }[]) {
  const stride = blocks.reduce((s, b) => s + b.width, 0), out = new Float64Array(rows * stride);
  let c0 = 0;
  for (const b of blocks) {
    for (let r = 0; r < rows; r++) for (let j = 0; j < b.width; j++) out[r * stride + c0 + j] = b.data[r * b.width + j];
    c0 += b.width;
  }
  return out;
}

/** The mixer from u = in_proj(h) [B*L, 3d] to v2 [B*L, d] (out_proj's input); `shape.channels` = d. */
export function hyenaMixerForwardRef(
  u: ArrayLike<number>,
  p: HyenaMixerParams,
  shape: HyenaShape,
  lMax = shape.seqLen,
): HyenaMixerForward {
  const n = checkShape(shape), d = shape.channels, rows = shape.batch * shape.seqLen;
  checkLength("u", u, 3 * n);
  const wide = { ...shape, channels: 3 * d };
  const uc = shortFilterRef({ u, weight: p.shortWeight, bias: p.shortBias }, wide);
  const x1 = columnsRef(uc, rows, 3 * d, 0, d), x2 = columnsRef(uc, rows, 3 * d, d, d);
  const v = columnsRef(uc, rows, 3 * d, 2 * d, d);
  const v1 = gateRef(v, x1);
  const filter = hyenaFilterForwardRef(p, shape.seqLen, d, lMax);
  const y = longConvRef({ v: v1, h: filter.h, bias: p.bias }, shape);
  return { uc, x1, x2, v, v1, y, v2: gateRef(y, x2), filter };
}

/** Every gradient of the mixer from dv2 [B*L, d]. */
export function hyenaMixerBackwardRef(
  u: ArrayLike<number>,
  p: HyenaMixerParams,
  fwd: HyenaMixerForward,
  dv2: ArrayLike<number>,
  shape: HyenaShape,
  lMax = shape.seqLen,
): HyenaMixerGrads {
  const n = checkShape(shape), d = shape.channels, rows = shape.batch * shape.seqLen;
  checkLength("dv2", dv2, n);
  const post = gateBackwardRef(fwd.y, fwd.x2, dv2);
  const conv = longConvBackwardRef({ v: fwd.v1, h: fwd.filter.h, bias: p.bias }, post.da, shape);
  const pre = gateBackwardRef(fwd.v, fwd.x1, conv.dv);
  const duc = concatColumnsRef(rows, [{ data: pre.db, width: d }, { data: post.db, width: d }, {
    data: pre.da,
    width: d,
  }]);
  const short = shortFilterBackwardRef({ u, weight: p.shortWeight, bias: p.shortBias }, duc, {
    ...shape,
    channels: 3 * d,
  });
  const filter = hyenaFilterBackwardRef(p, fwd.filter, conv.dh, shape.seqLen, d, lMax);
  return { ...filter, du: short.du, shortWeight: short.dweight, shortBias: short.dbias, bias: conv.dbias };
}
