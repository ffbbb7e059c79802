/**
 * float64 reference for Based / ReBased causal linear attention (spec §3.3, §3.4, §5), same layout as
 * kernels/linear_attention.wgsl: q, k [B*L, H*f], v and y [B*L, H*dv], token-major with heads side by side.
 *
 * Per (batch, head): S_ij = (q_i·k_j)·f^(-1/2), a_ij = g(S_ij) for j ≤ i,
 * o_i = Σ a_ij v_j, z_i = Σ a_ij, y_i = o_i / (z_i + eps).
 * Based: g(S) = 1 + S + S²/2. ReBased: g(S) = S² (the quadratic kernel (q·k)², not an elementwise square).
 */

export type LinearAttentionKernel = "based" | "rebased";

/** The denominator eps of [R]'s Based and ReBased mixers (the fla kernel default of 1e-6 is not what they use). */
export const LINEAR_ATTENTION_EPS = 1e-12;

export interface LinearAttentionShape {
  batch: number;
  seqLen: number;
  heads: number;
  /** f: query/key features per head (16 in the paper). */
  featureDim: number;
  /** dv: value features per head (⌊d/12⌋ in the paper). */
  valueDim: number;
  kernel: LinearAttentionKernel;
  /** Added to the denominator; default LINEAR_ATTENTION_EPS. */
  eps?: number;
}

export function scoreKernel(kernel: LinearAttentionKernel, s: number): number {
  return kernel === "based" ? 1 + s + 0.5 * s * s : s * s;
}

export function scoreKernelDerivative(kernel: LinearAttentionKernel, s: number): number {
  return kernel === "based" ? 1 + s : 2 * s;
}

export interface LinearAttentionForward {
  /** [B*L, H*dv] */
  y: Float64Array;
  /** Numerator o_i = Σ g(S_ij) v_j, [B*L, H*dv]. */
  o: Float64Array;
  /** Denominator without eps, z_i = Σ g(S_ij), [B*L, H]. */
  z: Float64Array;
}

export interface LinearAttentionGrads {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
}

/** Visits every (batch, head) with the element offsets of its token t in q/k and in v/y, and of its z entry. */
function layout(shape: LinearAttentionShape) {
  const { heads: H, featureDim: f, valueDim: dv, seqLen: L } = shape;
  return {
    qk: (b: number, t: number, h: number) => (b * L + t) * H * f + h * f,
    vy: (b: number, t: number, h: number) => (b * L + t) * H * dv + h * dv,
    z: (b: number, t: number, h: number) => (b * L + t) * H + h,
  };
}

function score(q: ArrayLike<number>, k: ArrayLike<number>, qi: number, kj: number, f: number): number {
  let s = 0;
  for (let a = 0; a < f; a++) s += q[qi + a] * k[kj + a];
  return s / Math.sqrt(f);
}

function checkLengths(shape: LinearAttentionShape, named: Record<string, [ArrayLike<number>, "qk" | "v"]>): void {
  const { batch: B, seqLen: L, heads: H, featureDim: f, valueDim: dv } = shape;
  for (const [name, [x, kind]] of Object.entries(named)) {
    const n = B * L * H * (kind === "qk" ? f : dv);
    if (x.length !== n) throw new Error(`linear attention reference: ${name} has ${x.length} values, expected ${n}`);
  }
}

/** Exact causal parallel (quadratic) form. */
export function linearAttentionForwardRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  shape: LinearAttentionShape,
): LinearAttentionForward {
  checkLengths(shape, { q: [q, "qk"], k: [k, "qk"], v: [v, "v"] });
  const { batch: B, seqLen: L, heads: H, featureDim: f, valueDim: dv, kernel } = shape;
  const eps = shape.eps ?? LINEAR_ATTENTION_EPS;
  const at = layout(shape);
  const y = new Float64Array(B * L * H * dv), o = new Float64Array(y.length), z = new Float64Array(B * L * H);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < L; i++) {
        const oi = at.vy(b, i, h);
        let zi = 0;
        for (let j = 0; j <= i; j++) {
          const a = scoreKernel(kernel, score(q, k, at.qk(b, i, h), at.qk(b, j, h), f));
          zi += a;
          const vj = at.vy(b, j, h);
          for (let c = 0; c < dv; c++) o[oi + c] += a * v[vj + c];
        }
        z[at.z(b, i, h)] = zi;
        for (let c = 0; c < dv; c++) y[oi + c] = o[oi + c] / (zi + eps);
      }
    }
  }
  return { y, o, z };
}

/** Gradients of Σ dy ⊙ y with respect to q, k, v (spec §5.1 backward, division folded into do and dz). */
export function linearAttentionBackwardRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  dy: ArrayLike<number>,
  shape: LinearAttentionShape,
): LinearAttentionGrads {
  checkLengths(shape, { q: [q, "qk"], k: [k, "qk"], v: [v, "v"], dy: [dy, "v"] });
  const { batch: B, seqLen: L, heads: H, featureDim: f, valueDim: dv, kernel } = shape;
  const eps = shape.eps ?? LINEAR_ATTENTION_EPS;
  const scale = 1 / Math.sqrt(f);
  const at = layout(shape);
  const { y, z } = linearAttentionForwardRef(q, k, v, shape);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dvOut = new Float64Array(v.length);
  // do_i = dy_i / (z_i + eps) and dz_i = -(dy_i·y_i) / (z_i + eps): the gradients of the numerator and denominator.
  const dO = new Float64Array(y.length), dZ = new Float64Array(z.length);
  for (let r = 0; r < z.length; r++) {
    const inv = 1 / (z[r] + eps);
    let dot = 0;
    for (let c = 0; c < dv; c++) {
      dO[r * dv + c] = dy[r * dv + c] * inv;
      dot += dy[r * dv + c] * y[r * dv + c];
    }
    dZ[r] = -dot * inv;
  }
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < L; i++) {
        const qi = at.qk(b, i, h), oi = at.vy(b, i, h), zi = at.z(b, i, h);
        for (let j = 0; j <= i; j++) {
          const kj = at.qk(b, j, h), vj = at.vy(b, j, h);
          const s = score(q, k, qi, kj, f);
          let dA = dZ[zi];
          for (let c = 0; c < dv; c++) dA += dO[oi + c] * v[vj + c];
          const dS = dA * scoreKernelDerivative(kernel, s);
          for (let a = 0; a < f; a++) {
            dq[qi + a] += scale * dS * k[kj + a];
            dk[kj + a] += scale * dS * q[qi + a];
          }
          const g = scoreKernel(kernel, s);
          for (let c = 0; c < dv; c++) dvOut[vj + c] += g * dO[oi + c];
        }
      }
    }
  }
  return { dq, dk, dv: dvOut };
}

/**
 * Explicit feature map φ with φ(q)·φ(k) = g((q·k)/√f), unpacked (full outer product, no symmetric packing):
 * ReBased φ(x) = vec(x⊗x)/√f (f² features); Based φ(x) = [1, x/f^(1/4), vec(x⊗x)/(√2·√f)] (1 + f + f² features).
 */
export function featureMap(
  kernel: LinearAttentionKernel,
  x: ArrayLike<number>,
  offset: number,
  f: number,
): Float64Array {
  const quadScale = kernel === "based" ? 1 / Math.sqrt(2 * f) : 1 / Math.sqrt(f);
  const lead = kernel === "based" ? 1 + f : 0;
  const out = new Float64Array(lead + f * f);
  if (kernel === "based") {
    out[0] = 1;
    for (let a = 0; a < f; a++) out[1 + a] = x[offset + a] / Math.pow(f, 0.25);
  }
  for (let a = 0; a < f; a++) {
    for (let c = 0; c < f; c++) out[lead + a * f + c] = x[offset + a] * x[offset + c] * quadScale;
  }
  return out;
}

/**
 * Recurrent form (spec §5.2) with an explicit feature map: Z_t = Σ_{j≤t} φ(k_j), M_t = Σ_{j≤t} φ(k_j) v_jᵀ,
 * y_t = φ(q_t)ᵀM_t / (φ(q_t)·Z_t + eps). `phi` defaults to `featureMap(kernel, ...)`; tests pass other maps.
 */
export function linearAttentionRecurrentRef(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  shape: LinearAttentionShape,
  phi: (x: ArrayLike<number>, offset: number) => Float64Array = (x, offset) =>
    featureMap(shape.kernel, x, offset, shape.featureDim),
): { y: Float64Array; z: Float64Array } {
  checkLengths(shape, { q: [q, "qk"], k: [k, "qk"], v: [v, "v"] });
  const { batch: B, seqLen: L, heads: H, valueDim: dv } = shape;
  const eps = shape.eps ?? LINEAR_ATTENTION_EPS;
  const at = layout(shape);
  const y = new Float64Array(B * L * H * dv), z = new Float64Array(B * L * H);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      let Z: Float64Array | undefined, M: Float64Array | undefined;
      for (let t = 0; t < L; t++) {
        const pk = phi(k, at.qk(b, t, h)), pq = phi(q, at.qk(b, t, h));
        Z ??= new Float64Array(pk.length);
        M ??= new Float64Array(pk.length * dv);
        const vt = at.vy(b, t, h);
        for (let e = 0; e < pk.length; e++) {
          Z[e] += pk[e];
          for (let c = 0; c < dv; c++) M[e * dv + c] += pk[e] * v[vt + c];
        }
        let zt = 0;
        for (let e = 0; e < pq.length; e++) zt += pq[e] * Z[e];
        z[at.z(b, t, h)] = zt;
        for (let c = 0; c < dv; c++) {
          let num = 0;
          for (let e = 0; e < pq.length; e++) num += pq[e] * M[e * dv + c];
          y[vt + c] = num / (zt + eps);
        }
      }
    }
  }
  return { y, z };
}
