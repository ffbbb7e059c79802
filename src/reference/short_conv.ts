/**
 * float64 reference for the BaseConv layer (spec §3.1), same layout as kernels/short_conv.wgsl:
 * u [B*L, d] token-major;
 *   u_conv[t,c] = b_c + w[c,0]·u[t-2,c] + w[c,1]·u[t-1,c] + w[c,2]·u[t,c]   (causal, zero history per sequence)
 *   u_proj      = u·W_pᵀ + b_p
 *   y           = u_conv ⊙ u_proj + u
 * Conv weights are stored like PyTorch's depthwise conv.weight [d, 1, 3] (tap 0 multiplies the oldest token).
 */
import { linearBackward, linearForward } from "./matmul.ts";

export const SHORT_CONV_TAPS = 3;

export interface ShortConvShape {
  batch: number;
  seqLen: number;
  /** Channels d. */
  width: number;
}

function checkLength(name: string, x: ArrayLike<number>, n: number): void {
  if (x.length !== n) throw new Error(`short conv reference: ${name} has ${x.length} values, expected ${n}`);
}

/** Depthwise causal 3-tap convolution with bias; history never crosses from one sequence into the previous one. */
export function shortConvRef(
  u: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
  shape: ShortConvShape,
): Float64Array {
  const { batch: B, seqLen: L, width: d } = shape;
  checkLength("u", u, B * L * d);
  checkLength("weight", weight, d * SHORT_CONV_TAPS);
  checkLength("bias", bias, d);
  const out = new Float64Array(B * L * d);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < L; t++) {
      for (let c = 0; c < d; c++) {
        let s = bias[c];
        for (let tap = 0; tap < SHORT_CONV_TAPS; tap++) {
          const src = t - (SHORT_CONV_TAPS - 1) + tap;
          if (src >= 0) s += weight[c * SHORT_CONV_TAPS + tap] * u[(b * L + src) * d + c];
        }
        out[(b * L + t) * d + c] = s;
      }
    }
  }
  return out;
}

/** The gate kernel's forward: y = conv(u) ⊙ proj + u, with proj given. */
export function shortConvGateForwardRef(
  u: ArrayLike<number>,
  proj: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
  shape: ShortConvShape,
): { y: Float64Array; uConv: Float64Array } {
  checkLength("proj", proj, u.length);
  const uConv = shortConvRef(u, weight, bias, shape);
  const y = new Float64Array(u.length);
  for (let i = 0; i < y.length; i++) y[i] = uConv[i] * proj[i] + u[i];
  return { y, uConv };
}

export interface ShortConvGateGrads {
  /** Gradient through the conv path and the skip only (not through proj's dependence on u). */
  du: Float64Array;
  dproj: Float64Array;
  /** [d, 3] */
  dweight: Float64Array;
  /** [d] */
  dbias: Float64Array;
}

/** Gradients of Σ dy ⊙ (conv(u) ⊙ proj + u) with proj treated as an independent input. */
export function shortConvGateBackwardRef(
  u: ArrayLike<number>,
  proj: ArrayLike<number>,
  weight: ArrayLike<number>,
  bias: ArrayLike<number>,
  dy: ArrayLike<number>,
  shape: ShortConvShape,
): ShortConvGateGrads {
  const { batch: B, seqLen: L, width: d } = shape;
  checkLength("dy", dy, u.length);
  const uConv = shortConvRef(u, weight, bias, shape);
  const du = Float64Array.from(dy); // the skip "+ u"
  const dproj = new Float64Array(u.length);
  const dweight = new Float64Array(d * SHORT_CONV_TAPS), dbias = new Float64Array(d);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < L; t++) {
      for (let c = 0; c < d; c++) {
        const i = (b * L + t) * d + c;
        dproj[i] = dy[i] * uConv[i];
        const gConv = dy[i] * proj[i];
        dbias[c] += gConv;
        for (let tap = 0; tap < SHORT_CONV_TAPS; tap++) {
          const src = t - (SHORT_CONV_TAPS - 1) + tap;
          if (src < 0) continue;
          const s = (b * L + src) * d + c;
          dweight[c * SHORT_CONV_TAPS + tap] += gConv * u[s];
          du[s] += gConv * weight[c * SHORT_CONV_TAPS + tap];
        }
      }
    }
  }
  return { du, dproj, dweight, dbias };
}

/** Parameters of one BaseConv layer, named after [R]'s state_dict entries. */
export interface BaseConvParams {
  /** projection.weight [d, d] */
  projWeight: ArrayLike<number>;
  /** projection.bias [d] */
  projBias: ArrayLike<number>;
  /** conv.weight [d, 1, 3] */
  convWeight: ArrayLike<number>;
  /** conv.bias [d] */
  convBias: ArrayLike<number>;
}

export interface BaseConvForward {
  y: Float64Array;
  uConv: Float64Array;
  uProj: Float64Array;
}

export interface BaseConvGrads {
  du: Float64Array;
  dprojWeight: Float64Array;
  dprojBias: Float64Array;
  dconvWeight: Float64Array;
  dconvBias: Float64Array;
}

/** The whole BaseConv layer: y = conv(u) ⊙ (u·W_pᵀ + b_p) + u. */
export function baseConvForwardRef(
  u: ArrayLike<number>,
  params: BaseConvParams,
  shape: ShortConvShape,
): BaseConvForward {
  const { batch: B, seqLen: L, width: d } = shape;
  const uProj = linearForward(u, params.projWeight, Float64Array.from(params.projBias), B * L, d, d);
  const { y, uConv } = shortConvGateForwardRef(u, uProj, params.convWeight, params.convBias, shape);
  return { y, uConv, uProj };
}

/** All gradients of Σ dy ⊙ BaseConv(u), including the projection's contribution to du. */
export function baseConvBackwardRef(
  u: ArrayLike<number>,
  params: BaseConvParams,
  dy: ArrayLike<number>,
  shape: ShortConvShape,
): BaseConvGrads {
  const { batch: B, seqLen: L, width: d } = shape;
  const uProj = linearForward(u, params.projWeight, Float64Array.from(params.projBias), B * L, d, d);
  const gate = shortConvGateBackwardRef(u, uProj, params.convWeight, params.convBias, dy, shape);
  const lin = linearBackward(u, params.projWeight, gate.dproj, B * L, d, d);
  const du = gate.du;
  for (let i = 0; i < du.length; i++) du[i] += lin.dx[i];
  return { du, dprojWeight: lin.dw, dprojBias: lin.db, dconvWeight: gate.dweight, dconvBias: gate.dbias };
}
