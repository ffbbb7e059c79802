/**
 * float64 reference for causal multi-head softmax attention (spec §3.2, the explicit-einsum path of MHA):
 *   qkv [B*L, 3d]: q = cols [0,d), k = [d,2d), v = [2d,3d); head h uses cols h·dh .. (h+1)·dh of each, dh = d/H.
 *   s_ij = (q_i·k_j)/√dh + (j > i ? −10000 : 0)     (additive mask, not −∞, exactly as the reference code)
 *   P_i = softmax_j(s_i)  over all j in [0, L)
 *   out_i = Σ_j drop_ij·P_ij·v_j,  drop_ij = keep_ij/(1 − p) in training, 1 otherwise
 * keep_ij comes from the counter-based hash below, shared bit for bit with kernels/attention.wgsl, so the backward
 * pass (and this reference) recompute the same mask from (seed, b, h, i, j) without storing it.
 */

export const CAUSAL_MASK_VALUE = -10000;

/** lowbias32 (Chris Wellons' integer hash): a bijection on u32 with good avalanche. Must match attention.wgsl. */
export function hashU32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** One chaining step: the golden-ratio offset keeps the all-zero counter away from lowbias32's fixed point 0. */
export function hashStep(state: number, word: number): number {
  return hashU32((((state + 0x9e3779b9) >>> 0) ^ (word >>> 0)) >>> 0);
}

/** Per-row part of the dropout counter (computed once per query row). */
export function dropoutRowKey(seed: number, b: number, h: number, i: number): number {
  return hashStep(hashStep(hashStep(hashStep(0, seed), b), h), i);
}

/** 32 random bits for attention-probability (b, h, i, j) under `seed`. */
export function dropoutBits(seed: number, b: number, h: number, i: number, j: number): number {
  return hashStep(dropoutRowKey(seed, b, h, i), j);
}

/** An element is kept when its bits are >= threshold, so P(keep) = 1 − threshold/2³². Must match the op. */
export function dropoutThreshold(p: number): number {
  if (!(p >= 0 && p < 1)) throw new Error(`dropout probability must be in [0, 1), got ${p}`);
  return Math.min(0xffffffff, Math.round(p * 4294967296));
}

export interface AttentionShape {
  B: number;
  L: number;
  d: number;
  H: number;
  /** Sliding window: keys j < i − window get the mask too (zoology's SlidingAttn); default none. */
  window?: number;
}

export interface AttentionDropout {
  /** Dropout probability on the attention probabilities (0 = off). */
  p: number;
  seed: number;
}

/** drop_ij for every (b, h, i, j): 0 or 1/(1−p); all ones without dropout. Layout [B, H, L, L]. */
export function dropoutFactors(shape: AttentionShape, dropout?: AttentionDropout): Float64Array {
  const { B, L, H } = shape;
  const out = new Float64Array(B * H * L * L).fill(1);
  if (!dropout || dropout.p === 0) return out;
  const threshold = dropoutThreshold(dropout.p);
  const keepScale = 1 / (1 - dropout.p);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < L; i++) {
        const key = dropoutRowKey(dropout.seed, b, h, i);
        const o = ((b * H + h) * L + i) * L;
        for (let j = 0; j < L; j++) out[o + j] = hashStep(key, j) >= threshold ? keepScale : 0;
      }
    }
  }
  return out;
}

function checkShape({ B, L, d, H }: AttentionShape): number {
  if (d % H !== 0) throw new Error(`attention: d=${d} is not divisible by H=${H}`);
  if (B < 1 || L < 1 || H < 1) throw new Error(`attention: bad shape B=${B} L=${L} H=${H}`);
  return d / H;
}

/** Returns out [B*L, d] and the pre-dropout probabilities [B, H, L, L]. */
export function attentionForwardRef(
  qkv: ArrayLike<number>,
  shape: AttentionShape,
  dropout?: AttentionDropout,
): { out: Float64Array; probs: Float64Array } {
  const { B, L, d, H } = shape;
  const dh = checkShape(shape);
  const scale = 1 / Math.sqrt(dh);
  const drop = dropoutFactors(shape, dropout);
  const out = new Float64Array(B * L * d);
  const probs = new Float64Array(B * H * L * L);
  const s = new Float64Array(L);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < L; i++) {
        const qo = (b * L + i) * 3 * d + h * dh;
        let max = -Infinity;
        for (let j = 0; j < L; j++) {
          const ko = (b * L + j) * 3 * d + d + h * dh;
          let dot = 0;
          for (let c = 0; c < dh; c++) dot += qkv[qo + c] * qkv[ko + c];
          const masked = j > i || (shape.window !== undefined && j < i - shape.window);
          s[j] = dot * scale + (masked ? CAUSAL_MASK_VALUE : 0);
          max = Math.max(max, s[j]);
        }
        let sum = 0;
        for (let j = 0; j < L; j++) sum += Math.exp(s[j] - max);
        const po = ((b * H + h) * L + i) * L;
        const oo = (b * L + i) * d + h * dh;
        for (let j = 0; j < L; j++) {
          const pij = Math.exp(s[j] - max) / sum;
          probs[po + j] = pij;
          const w = pij * drop[po + j];
          const vo = (b * L + j) * 3 * d + 2 * d + h * dh;
          for (let c = 0; c < dh; c++) out[oo + c] += w * qkv[vo + c];
        }
      }
    }
  }
  return { out, probs };
}

/** Gradient with respect to qkv [B*L, 3d] of Σ dout ⊙ out, for the same dropout mask. */
export function attentionBackwardRef(
  qkv: ArrayLike<number>,
  dout: ArrayLike<number>,
  shape: AttentionShape,
  dropout?: AttentionDropout,
): Float64Array {
  const { B, L, d, H } = shape;
  const dh = checkShape(shape);
  const scale = 1 / Math.sqrt(dh);
  const { probs } = attentionForwardRef(qkv, shape, dropout);
  const drop = dropoutFactors(shape, dropout);
  const dqkv = new Float64Array(B * L * 3 * d);
  const dp = new Float64Array(L);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < L; i++) {
        const po = ((b * H + h) * L + i) * L;
        const go = (b * L + i) * d + h * dh;
        const qo = (b * L + i) * 3 * d + h * dh;
        // dP_ij = drop_ij·(dout_i·v_j); dv_j += drop_ij·P_ij·dout_i
        let rowDot = 0;
        for (let j = 0; j < L; j++) {
          const vo = (b * L + j) * 3 * d + 2 * d + h * dh;
          let dot = 0;
          for (let c = 0; c < dh; c++) dot += dout[go + c] * qkv[vo + c];
          dp[j] = dot * drop[po + j];
          rowDot += probs[po + j] * dp[j];
          const w = probs[po + j] * drop[po + j];
          for (let c = 0; c < dh; c++) dqkv[vo + c] += w * dout[go + c];
        }
        // Softmax backward: dS_ij = P_ij·(dP_ij − Σ_j' P_ij'·dP_ij'); the mask is a constant, so it passes dS through.
        for (let j = 0; j < L; j++) {
          const ds = probs[po + j] * (dp[j] - rowDot) * scale;
          const ko = (b * L + j) * 3 * d + d + h * dh;
          for (let c = 0; c < dh; c++) {
            dqkv[qo + c] += ds * qkv[ko + c];
            dqkv[ko + c] += ds * qkv[qo + c];
          }
        }
      }
    }
  }
  return dqkv;
}
