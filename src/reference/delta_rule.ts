/**
 * float64 reference of the delta-rule ops (DeltaNet and Gated DeltaNet; kernels/delta_rule.wgsl, src/ops/delta_rule.ts),
 * token-major like every activation: q, k [B*L, H*K], v, o [B*L, H*V], β, g [B*L, H] (row b*L + t, head h at columns
 * h*K.., h*V.., h). The projections and short convs are matmuls and the Mamba conv op, not here.
 *
 * 1. L2 norm per head (fla's l2norm): y = x·r, r = 1/sqrt(Σ x² + eps), eps = 1e-6; dx = r·(dy − y·(y·dy)).
 * 2. Gates: β = sigmoid(b); Gated DeltaNet's log decay g = −exp(A_log[h])·softplus(a + dt_bias[h]), α = exp(g);
 *    Mamba-2's β = dt = softplus(x + dt_bias[h]) and g = −exp(A_log[h])·dt.
 * 3. The delta rule per (b, h), the state S [V, K] (S_{-1} = 0), c = scale (fla's default K^-1/2):
 *      S̃_t = α_t·S_{t−1} (α = 1 without a gate),  e_t = v_t − S̃_t·k_t,
 *      S_t = S̃_t + β_t·e_t·k_tᵀ  (= α_t·S_{t−1}(I − β_t k_t k_tᵀ) + β_t v_t k_tᵀ),  o_t = c·S_t·q_t.
 *    Rows of S evolve independently (row i sees only v_t[i]); the backward, with Ḡ = ∂L/∂S_t from later tokens:
 *      Ḡ += c·do_t·q_tᵀ;  dq_t = c·S_tᵀ·do_t;  dβ_t = e_t·(Ḡ·k_t);  ē = β_t·Ḡ·k_t;  dv_t = ē;
 *      dk_t = β_t·Ḡᵀ·e_t − S̃_tᵀ·ē;  G̃ = Ḡ − ē·k_tᵀ;  dα_t = ⟨G̃, S_{t−1}⟩;  Ḡ ← α_t·G̃ (for S_{t−1}); dg = α·dα.
 *    The "additive" update drops the correction: S_t = S̃_t + β_t·v_t·k_tᵀ (Mamba-2's SSD with β = dt, k = B, q = C,
 *    c = 1; gated linear attention), the same formulas with e = v and without the −S̃ᵀ·ē and −ē·kᵀ terms.
 */

export interface DeltaShape {
  batch: number;
  seqLen: number;
  heads: number;
  /** Key (and query) dim per head, K. */
  keyDim: number;
  /** Value dim per head, V. */
  valueDim: number;
}

export const L2_NORM_EPS = 1e-6;

export interface DeltaInputs {
  /** [rows, H*K], already L2-normalised where the model does it. */
  q: ArrayLike<number>;
  k: ArrayLike<number>;
  /** [rows, H*V]. */
  v: ArrayLike<number>;
  /** [rows, H], in (0, 1). */
  beta: ArrayLike<number>;
  /** [rows, H] log decay (≤ 0); absent: no gate (DeltaNet). */
  g?: ArrayLike<number>;
  /** "delta" (default) or "additive": S_t = α·S_{t−1} + β·v·kᵀ (no correction; e = v below). */
  update?: "delta" | "additive";
}

export interface DeltaGrads {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  dbeta: Float64Array;
  /** Present when the inputs have a gate. */
  dg?: Float64Array;
}

function checkShape(s: DeltaShape): void {
  for (const [name, n] of Object.entries(s)) {
    if (!Number.isInteger(n) || n < 1) {
      throw new Error(`delta rule reference: ${name} must be a positive integer, got ${n}`);
    }
  }
}

function checkLength(name: string, x: ArrayLike<number>, n: number): void {
  if (x.length !== n) throw new Error(`delta rule reference: ${name} has ${x.length} values, expected ${n}`);
}

/** fla's default query scale, K^-1/2. */
export const deltaScale = (keyDim: number): number => 1 / Math.sqrt(keyDim);

export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
const softplus = (x: number): number => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));

// ---- 1. L2 norm --------------------------------------------------------------------------------------------------

/** Per group of `width` consecutive values (a head of a row): y and r. */
export function l2NormForwardRef(x: ArrayLike<number>, width: number): { y: Float64Array; r: Float64Array } {
  if (x.length % width !== 0) throw new Error(`delta rule reference: ${x.length} values are not groups of ${width}`);
  const groups = x.length / width, y = new Float64Array(x.length), r = new Float64Array(groups);
  for (let gI = 0; gI < groups; gI++) {
    let ss = 0;
    for (let j = 0; j < width; j++) ss += x[gI * width + j] ** 2;
    r[gI] = 1 / Math.sqrt(ss + L2_NORM_EPS);
    for (let j = 0; j < width; j++) y[gI * width + j] = x[gI * width + j] * r[gI];
  }
  return { y, r };
}

export function l2NormBackwardRef(x: ArrayLike<number>, dy: ArrayLike<number>, width: number): Float64Array {
  checkLength("dy", dy, x.length);
  const { y, r } = l2NormForwardRef(x, width), dx = new Float64Array(x.length);
  for (let gI = 0; gI < r.length; gI++) {
    let dot = 0;
    for (let j = 0; j < width; j++) dot += y[gI * width + j] * dy[gI * width + j];
    for (let j = 0; j < width; j++) {
      const i = gI * width + j;
      dx[i] = r[gI] * (dy[i] - y[i] * dot);
    }
  }
  return dx;
}

// ---- 2. Gates ----------------------------------------------------------------------------------------------------

export interface GateInputs {
  /** b_proj's output [rows, H]. */
  b: ArrayLike<number>;
  /** a_proj's output [rows, H], with A_log, dt_bias [H]: present for Gated DeltaNet. */
  a?: ArrayLike<number>;
  A_log?: ArrayLike<number>;
  dtBias?: ArrayLike<number>;
}

export function deltaGatesForwardRef(x: GateInputs, heads: number): { beta: Float64Array; g?: Float64Array } {
  const beta = Float64Array.from(x.b, sigmoid);
  if (!x.a) return { beta };
  const { A_log, dtBias } = gateParams(x, heads);
  const g = Float64Array.from(x.a, (a, i) => -Math.exp(A_log[i % heads]) * softplus(a + dtBias[i % heads]));
  return { beta, g };
}

function gateParams(x: GateInputs, heads: number) {
  if (!x.A_log || !x.dtBias) throw new Error("delta rule reference: a gate needs A_log and dtBias");
  checkLength("A_log", x.A_log, heads);
  checkLength("dtBias", x.dtBias, heads);
  return { A_log: x.A_log, dtBias: x.dtBias };
}

/** db, and with a gate da, dA_log, ddt_bias (sums over rows). */
export function deltaGatesBackwardRef(
  x: GateInputs,
  heads: number,
  dbeta: ArrayLike<number>,
  dg?: ArrayLike<number>,
): { db: Float64Array; da?: Float64Array; dA_log?: Float64Array; dDtBias?: Float64Array } {
  const db = Float64Array.from(x.b, (b, i) => dbeta[i] * sigmoid(b) * (1 - sigmoid(b)));
  if (!x.a || !dg) return { db };
  const { A_log, dtBias } = gateParams(x, heads);
  const da = new Float64Array(x.a.length), dA_log = new Float64Array(heads), dDtBias = new Float64Array(heads);
  for (let i = 0; i < x.a.length; i++) {
    const h = i % heads, pre = x.a[i] + dtBias[h], A = Math.exp(A_log[h]);
    const g = -A * softplus(pre);
    da[i] = dg[i] * -A * sigmoid(pre);
    dDtBias[h] += da[i];
    dA_log[h] += dg[i] * g;
  }
  return { db, da, dA_log, dDtBias };
}

/** Mamba-2's gates: β = dt = softplus(x + dt_bias), g = −exp(A_log)·dt. */
export function dtGatesForwardRef(
  x: ArrayLike<number>,
  A_log: ArrayLike<number>,
  dtBias: ArrayLike<number>,
  heads: number,
): { beta: Float64Array; g: Float64Array } {
  checkLength("A_log", A_log, heads);
  checkLength("dtBias", dtBias, heads);
  const beta = Float64Array.from(x, (v, i) => softplus(v + dtBias[i % heads]));
  return { beta, g: beta.map((dt, i) => -Math.exp(A_log[i % heads]) * dt) };
}

/** dx = (dβ − exp(A_log)·dg)·sigmoid(x + dt_bias); dA_log = Σ dg·g; ddt_bias = Σ dx. */
export function dtGatesBackwardRef(
  x: ArrayLike<number>,
  A_log: ArrayLike<number>,
  dtBias: ArrayLike<number>,
  heads: number,
  dbeta: ArrayLike<number>,
  dg: ArrayLike<number>,
): { dx: Float64Array; dA_log: Float64Array; dDtBias: Float64Array } {
  const { g } = dtGatesForwardRef(x, A_log, dtBias, heads);
  const dx = new Float64Array(x.length), dA_log = new Float64Array(heads), dDtBias = new Float64Array(heads);
  for (let i = 0; i < x.length; i++) {
    const h = i % heads;
    dx[i] = (dbeta[i] - Math.exp(A_log[h]) * dg[i]) * sigmoid(x[i] + dtBias[h]);
    dDtBias[h] += dx[i];
    dA_log[h] += dg[i] * g[i];
  }
  return { dx, dA_log, dDtBias };
}

// ---- 3. The delta rule -------------------------------------------------------------------------------------------

function checkInputs(x: DeltaInputs, s: DeltaShape): void {
  checkShape(s);
  const rows = s.batch * s.seqLen, H = s.heads;
  checkLength("q", x.q, rows * H * s.keyDim);
  checkLength("k", x.k, rows * H * s.keyDim);
  checkLength("v", x.v, rows * H * s.valueDim);
  checkLength("beta", x.beta, rows * H);
  if (x.g) checkLength("g", x.g, rows * H);
}

/**
 * The recurrence, keeping S_{t−1} and S_t of every token for the backward: states[(b, h)][t + 1] = S_t, [V·K] each.
 */
function sweep(x: DeltaInputs, s: DeltaShape, scale: number) {
  const delta = x.update !== "additive";
  const { batch: B, seqLen: L, heads: H, keyDim: K, valueDim: V } = s;
  const o = new Float64Array(B * L * H * V);
  const states: Float64Array[][] = [];
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const seq: Float64Array[] = [new Float64Array(V * K)];
      for (let t = 0; t < L; t++) {
        const row = b * L + t, prev = seq[t], S = new Float64Array(V * K);
        const alpha = x.g ? Math.exp(x.g[row * H + h]) : 1, beta = x.beta[row * H + h];
        const kOff = (row * H + h) * K, vOff = (row * H + h) * V;
        for (let i = 0; i < V; i++) {
          let sk = 0;
          if (delta) { for (let j = 0; j < K; j++) sk += alpha * prev[i * K + j] * x.k[kOff + j]; }
          const e = x.v[vOff + i] - sk;
          let oq = 0;
          for (let j = 0; j < K; j++) {
            S[i * K + j] = alpha * prev[i * K + j] + beta * e * x.k[kOff + j];
            oq += S[i * K + j] * x.q[kOff + j];
          }
          o[vOff + i] = scale * oq;
        }
        seq.push(S);
      }
      states.push(seq);
    }
  }
  return { o, states };
}

export function deltaRuleForwardRef(x: DeltaInputs, s: DeltaShape, scale = deltaScale(s.keyDim)): Float64Array {
  checkInputs(x, s);
  return sweep(x, s, scale).o;
}

export function deltaRuleBackwardRef(
  x: DeltaInputs,
  dout: ArrayLike<number>,
  s: DeltaShape,
  scale = deltaScale(s.keyDim),
): DeltaGrads {
  checkInputs(x, s);
  const { batch: B, seqLen: L, heads: H, keyDim: K, valueDim: V } = s;
  checkLength("dout", dout, B * L * H * V);
  const { states } = sweep(x, s, scale);
  const delta = x.update !== "additive";
  const dq = new Float64Array(B * L * H * K), dk = new Float64Array(dq.length);
  const dv = new Float64Array(B * L * H * V), dbeta = new Float64Array(B * L * H);
  const dg = x.g ? new Float64Array(B * L * H) : undefined;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const seq = states[b * H + h], G = new Float64Array(V * K);
      for (let t = L - 1; t >= 0; t--) {
        const row = b * L + t, prev = seq[t], S = seq[t + 1];
        const alpha = x.g ? Math.exp(x.g[row * H + h]) : 1, beta = x.beta[row * H + h];
        const kOff = (row * H + h) * K, vOff = (row * H + h) * V, gi = row * H + h;
        let dalpha = 0;
        for (let i = 0; i < V; i++) {
          const d = dout[vOff + i];
          let sk = 0, gk = 0;
          for (let j = 0; j < K; j++) {
            G[i * K + j] += scale * d * x.q[kOff + j];
            dq[kOff + j] += scale * d * S[i * K + j];
            if (delta) sk += alpha * prev[i * K + j] * x.k[kOff + j];
            gk += G[i * K + j] * x.k[kOff + j];
          }
          const e = x.v[vOff + i] - sk, ebar = beta * gk;
          dbeta[gi] += e * gk;
          dv[vOff + i] = ebar;
          for (let j = 0; j < K; j++) {
            dk[kOff + j] += beta * e * G[i * K + j] - (delta ? alpha * prev[i * K + j] * ebar : 0);
            const gTilde = G[i * K + j] - (delta ? ebar * x.k[kOff + j] : 0);
            dalpha += gTilde * prev[i * K + j];
            G[i * K + j] = alpha * gTilde;
          }
        }
        if (dg) dg[gi] = dalpha * alpha;
      }
    }
  }
  return { dq, dk, dv, dbeta, ...(dg ? { dg } : {}) };
}
