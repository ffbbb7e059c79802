/**
 * float64 reference for the RWKV-v4 time-mix ops (kernels/rwkv.wgsl, src/ops/rwkv.ts), same token-major layout:
 * every activation is [B*L, C] with row b*L + t, every parameter a per-channel vector [C].
 *
 * 1. Time-shift mix: xx_t = x_{t-1} within the sequence (xx_0 = 0); x_s = x·mix_s + xx·(1 - mix_s) for s = k, v, r.
 * 2. WKV (RWKV-v4's "wkv" kernel) per channel c with w = -exp(time_decay[c]) < 0, u = time_first[c]:
 *      y_t = (Σ_{i<t} e^{(t-1-i)w + k_i} v_i + e^{u+k_t} v_t) / (Σ_{i<t} e^{(t-1-i)w + k_i} + e^{u+k_t})
 *    computed with the log-space recurrence of the CUDA kernel (state a, b, p: numerator and denominator scaled by
 *    e^{-p}); logD_t = log of the full denominator is saved for the backward.
 * 3. Gate: out = sigmoid(r)·wkv.
 * 4. bf16 mode (RWKV_FLOAT_MODE=bf16 in the reference code): the WKV output is handed on as bfloat16, so the gate reads
 *    bf16(wkv), the gradient reaching WKV is bf16, and WKV's gradients (gk, gv, batch-summed d time_decay / d
 *    time_first) are returned as bf16. `roundBf16` rounds the float32 bit pattern to nearest even.
 */

export interface RwkvShape {
  batch: number;
  seqLen: number;
  /** Channels C (the attention width). */
  channels: number;
}

export interface BfOption {
  /** Round like RWKV_FLOAT_MODE=bf16 (see the module comment); default false. */
  bf16?: boolean;
}

function checkLength(name: string, x: ArrayLike<number>, n: number): void {
  if (x.length !== n) throw new Error(`rwkv reference: ${name} has ${x.length} values, expected ${n}`);
}

function checkShape(shape: RwkvShape): number {
  for (const [name, n] of Object.entries(shape)) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`rwkv reference: ${name} must be a positive integer, got ${n}`);
  }
  return shape.batch * shape.seqLen * shape.channels;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/**
 * Rounds to bfloat16 (returned as a number): x is first rounded to float32 (what a GPU holds), then its bit pattern to
 * the upper 16 bits, round to nearest, ties to even. Overflow goes to ±Infinity; NaN stays NaN.
 */
export function roundBf16(x: number): number {
  f32Scratch[0] = x;
  const bits = u32Scratch[0];
  if ((bits & 0x7fffffff) > 0x7f800000) return NaN;
  u32Scratch[0] = (bits + 0x7fff + ((bits >>> 16) & 1)) & 0xffff0000;
  return f32Scratch[0];
}

// ---------------------------------------------------------------------------------------------------------------------
// Time-shift mix

export interface TimeShiftMixInputs {
  /** [B*L, C] */
  x: ArrayLike<number>;
  /** time_mix_k, time_mix_v, time_mix_r: [C] each. */
  mixK: ArrayLike<number>;
  mixV: ArrayLike<number>;
  mixR: ArrayLike<number>;
}

function checkMix(inputs: TimeShiftMixInputs, shape: RwkvShape): number {
  const n = checkShape(shape);
  checkLength("x", inputs.x, n);
  checkLength("mixK", inputs.mixK, shape.channels);
  checkLength("mixV", inputs.mixV, shape.channels);
  checkLength("mixR", inputs.mixR, shape.channels);
  return n;
}

/** xx = x shifted one token later within each sequence (zero at t = 0). */
export function timeShiftRef(x: ArrayLike<number>, shape: RwkvShape): Float64Array {
  const n = checkShape(shape), C = shape.channels, L = shape.seqLen;
  checkLength("x", x, n);
  const xx = new Float64Array(n);
  for (let row = 0; row < shape.batch * L; row++) {
    if (row % L === 0) continue;
    for (let c = 0; c < C; c++) xx[row * C + c] = x[(row - 1) * C + c];
  }
  return xx;
}

/** x_s = x·mix_s + xx·(1 - mix_s) for s = k, v, r. */
export function timeShiftMixForwardRef(
  inputs: TimeShiftMixInputs,
  shape: RwkvShape,
): { xk: Float64Array; xv: Float64Array; xr: Float64Array } {
  const n = checkMix(inputs, shape), C = shape.channels;
  const xx = timeShiftRef(inputs.x, shape);
  const mixOne = (mix: ArrayLike<number>) => {
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = inputs.x[i] * mix[i % C] + xx[i] * (1 - mix[i % C]);
    return out;
  };
  return { xk: mixOne(inputs.mixK), xv: mixOne(inputs.mixV), xr: mixOne(inputs.mixR) };
}

export interface TimeShiftMixGrads {
  /** [B*L, C] */
  dx: Float64Array;
  /** [C] each, summed over all rows. */
  dMixK: Float64Array;
  dMixV: Float64Array;
  dMixR: Float64Array;
}

/**
 * Gradients of Σ_s dx_s ⊙ x_s: dx_t = Σ_s dx_s[t]·mix_s + dx_s[t+1]·(1 - mix_s) (t+1 in the same sequence);
 * d mix_s = Σ_t dx_s[t]·(x_t - xx_t).
 */
export function timeShiftMixBackwardRef(
  inputs: TimeShiftMixInputs,
  grads: { dxk: ArrayLike<number>; dxv: ArrayLike<number>; dxr: ArrayLike<number> },
  shape: RwkvShape,
): TimeShiftMixGrads {
  const n = checkMix(inputs, shape), C = shape.channels, L = shape.seqLen;
  const xx = timeShiftRef(inputs.x, shape);
  const dx = new Float64Array(n);
  const out = { dMixK: new Float64Array(C), dMixV: new Float64Array(C), dMixR: new Float64Array(C) };
  const parts = [
    [grads.dxk, inputs.mixK, out.dMixK],
    [grads.dxv, inputs.mixV, out.dMixV],
    [grads.dxr, inputs.mixR, out.dMixR],
  ] as const;
  for (const [g, mix, dMix] of parts) {
    checkLength("dx_s", g, n);
    for (let i = 0; i < n; i++) {
      const c = i % C, t = Math.floor(i / C) % L;
      dx[i] += g[i] * mix[c];
      if (t + 1 < L) dx[i] += g[i + C] * (1 - mix[c]);
      dMix[c] += g[i] * (inputs.x[i] - xx[i]);
    }
  }
  return { dx, ...out };
}

// ---------------------------------------------------------------------------------------------------------------------
// WKV

export interface WkvInputs {
  /** [B*L, C] */
  k: ArrayLike<number>;
  /** [B*L, C] */
  v: ArrayLike<number>;
  /** The raw parameter [C]: w = -exp(time_decay). */
  timeDecay: ArrayLike<number>;
  /** u [C] */
  timeFirst: ArrayLike<number>;
}

function checkWkv(inputs: WkvInputs, shape: RwkvShape): number {
  const n = checkShape(shape);
  checkLength("k", inputs.k, n);
  checkLength("v", inputs.v, n);
  checkLength("timeDecay", inputs.timeDecay, shape.channels);
  checkLength("timeFirst", inputs.timeFirst, shape.channels);
  return n;
}

/** Start value of the running max exponent p (the CUDA kernel's -1e38: e^{p - q} underflows to 0). */
export const WKV_NEG_BIG = -1e38;

/** y = wkv_t and logD_t = log(denominator of y_t), by the stabilised forward recurrence. */
export function wkvForwardRef(inputs: WkvInputs, shape: RwkvShape): { y: Float64Array; logD: Float64Array } {
  const n = checkWkv(inputs, shape), C = shape.channels, L = shape.seqLen;
  const { k, v } = inputs;
  const y = new Float64Array(n), logD = new Float64Array(n);
  for (let b = 0; b < shape.batch; b++) {
    for (let c = 0; c < C; c++) {
      const w = -Math.exp(inputs.timeDecay[c]), u = inputs.timeFirst[c];
      let a = 0, den = 0, p = WKV_NEG_BIG;
      for (let t = 0; t < L; t++) {
        const i = (b * L + t) * C + c, kt = k[i], vt = v[i];
        let ww = u + kt;
        let q = Math.max(p, ww);
        let e1 = Math.exp(p - q), e2 = Math.exp(ww - q);
        const full = e1 * den + e2;
        y[i] = (e1 * a + e2 * vt) / full;
        logD[i] = q + Math.log(full);
        ww = w + p;
        q = Math.max(ww, kt);
        e1 = Math.exp(ww - q);
        e2 = Math.exp(kt - q);
        a = e1 * a + e2 * vt;
        den = e1 * den + e2;
        p = q;
      }
    }
  }
  return { y, logD };
}

export interface WkvGrads {
  /** [B*L, C] */
  gk: Float64Array;
  gv: Float64Array;
  /** [C], summed over batch and time. */
  dTimeDecay: Float64Array;
  dTimeFirst: Float64Array;
}

/**
 * Gradients of Σ gy ⊙ wkv in O(L) per (b, c): one reverse sweep with the four sums over later tokens t > i
 *   R_i = Σ gy_t e^{(t-1-i)w - logD_t},  S_i = Σ gy_t y_t e^{(t-1-i)w - logD_t},
 *   R'_i, S'_i: the same weighted by (t-1-i),
 * kept on a common log scale rho_i (= the largest exponent (t-1-i)w - logD_t, so k_i + rho_i <= 0), then
 *   gv_i = d_i + e^{k_i} R_i,  gk_i = d_i (v_i - y_i) + e^{k_i} (v_i R_i - S_i),   d_i = gy_i e^{u + k_i - logD_i},
 *   d u = Σ d_i (v_i - y_i),  d w = Σ e^{k_i} (v_i R'_i - S'_i),  d time_decay = d w · w.
 */
export function wkvBackwardRef(
  inputs: WkvInputs,
  gy: ArrayLike<number>,
  shape: RwkvShape,
  options: BfOption = {},
): WkvGrads {
  const n = checkWkv(inputs, shape), C = shape.channels, L = shape.seqLen;
  checkLength("gy", gy, n);
  const { k, v } = inputs;
  const { y, logD } = wkvForwardRef(inputs, shape);
  const gk = new Float64Array(n), gv = new Float64Array(n);
  const dTimeDecay = new Float64Array(C), dTimeFirst = new Float64Array(C);
  for (let c = 0; c < C; c++) {
    const w = -Math.exp(inputs.timeDecay[c]), u = inputs.timeFirst[c];
    let du = 0, dw = 0;
    for (let b = 0; b < shape.batch; b++) {
      // The sums over tokens after the current one, scaled by e^{-rho}; empty at the end of the sequence.
      let R = 0, S = 0, Rp = 0, Sp = 0, rho = -Infinity;
      for (let t = L - 1; t >= 0; t--) {
        const i = (b * L + t) * C + c;
        const E = Math.exp(k[i] + rho); // 0 while rho = -Infinity
        const d = gy[i] * Math.exp(u + k[i] - logD[i]);
        gv[i] = d + E * R;
        gk[i] = d * (v[i] - y[i]) + E * (v[i] * R - S);
        du += d * (v[i] - y[i]);
        dw += E * (v[i] * Rp - Sp);
        // Fold token t into the sums seen by token t-1.
        const rhoNext = Math.max(-logD[i], w + rho);
        const f = Math.exp(w + rho - rhoNext);
        const g = Math.exp(-logD[i] - rhoNext);
        Rp = (Rp + R) * f;
        Sp = (Sp + S) * f;
        R = gy[i] * g + R * f;
        S = gy[i] * y[i] * g + S * f;
        rho = rhoNext;
      }
    }
    dTimeDecay[c] = dw * w;
    dTimeFirst[c] = du;
  }
  if (options.bf16) {
    for (const out of [gk, gv, dTimeDecay, dTimeFirst]) for (let i = 0; i < out.length; i++) out[i] = roundBf16(out[i]);
  }
  return { gk, gv, dTimeDecay, dTimeFirst };
}

// ---------------------------------------------------------------------------------------------------------------------
// Gate

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** out = sigmoid(r)·wkv (bf16: sigmoid(r)·bf16(wkv)). */
export function rwkvGateForwardRef(r: ArrayLike<number>, wkv: ArrayLike<number>, options: BfOption = {}): Float64Array {
  checkLength("wkv", wkv, r.length);
  const out = new Float64Array(r.length);
  for (let i = 0; i < r.length; i++) out[i] = sigmoid(r[i]) * (options.bf16 ? roundBf16(wkv[i]) : wkv[i]);
  return out;
}

/** d wkv = dout·s (bf16: rounded), d r = dout·wkv·s(1-s) (bf16: with bf16(wkv)), s = sigmoid(r). */
export function rwkvGateBackwardRef(
  r: ArrayLike<number>,
  wkv: ArrayLike<number>,
  dout: ArrayLike<number>,
  options: BfOption = {},
): { dr: Float64Array; dwkv: Float64Array } {
  checkLength("wkv", wkv, r.length);
  checkLength("dout", dout, r.length);
  const dr = new Float64Array(r.length), dwkv = new Float64Array(r.length);
  for (let i = 0; i < r.length; i++) {
    const s = sigmoid(r[i]), y = options.bf16 ? roundBf16(wkv[i]) : wkv[i];
    dwkv[i] = options.bf16 ? roundBf16(dout[i] * s) : dout[i] * s;
    dr[i] = dout[i] * y * s * (1 - s);
  }
  return { dr, dwkv };
}
