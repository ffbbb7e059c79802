// Delta-rule ops of DeltaNet and Gated DeltaNet (src/ops/delta_rule.ts; float64 reference and the math:
// src/reference/delta_rule.ts). Token-major: q, k [rows, H*K], v, o [rows, H*V] (row b*L + t); gates [2, rows·H]: β,
// then (GATED) the log decay g.
//
//   l2_forward / l2_backward      per (row, head) group of `width` values: y = x·r, r = 1/sqrt(Σx² + eps);
//                                 dx = r·(dy − y·(y·dy))
//   gates_forward                 β = sigmoid(b); GATED: g = −exp(A_log[h])·softplus(a + dt_bias[h])
//   gates_backward                db = dβ·β(1 − β)
//   decay_backward                da = dg·(−exp(A_log))·sigmoid(a + dt_bias), dgg = dg·g (the host sums da and dgg over
//                                 rows into dt_bias's and A_log's gradients)
//   delta_forward                 (DELTA: the delta rule's correction −β(S̃k)kᵀ; without it the additive update
//                                 S_t = α·S_{t−1} + β·v·kᵀ of Mamba-2's SSD and gated linear attention)
//                                 one invocation per state row (b, h, i) sweeps t over [t0, t1) with the row S[i, ·]
//                                 of NK values in registers (rows of S evolve independently); stores the row at every
//                                 segment boundary (the checkpoints)
//   delta_backward                per state row and segment (last to first): recomputes the segment's rows from its
//                                 checkpoint into the workspace, then sweeps t down with the adjoint row Ḡ[i, ·] in
//                                 registers: dv (overwrite) and the row's shares of dk, dβ, dα into the workspace
//   delta_backward_reduce         per (b, t, h, column): dq = c·S_tᵀ·do_t, dk, dβ = Σ over rows i in order, dg = α·Σ dα
// NK = K (a define: the state row lives in registers). Layouts with R = B·H·V state rows, r = (b·H + h)·V + i:
//   checkpoints [segments − 1, NK, R]: slot s − 1 = the rows before segment s;
//   workspace: S [span + 1, NK, R] at 0 (slot 0 = S_{t0−1}, slot 1 + τ = S_{t0+τ}), P [span, NK + 2, R] at wsP (dk
//   shares, dβ, dα per token), the adjoint carry [NK, R] at wsCarry.
// llvmpipe silently ends an invocation after 65535 loop iterations: the host sizes segments and forward dispatches so
// that no invocation passes that. Exactly one PASS_* define per module. No atomics: every sum has a fixed order.

struct Params {
  batch: u32,
  seqLen: u32,
  heads: u32,
  keyDim: u32,
  valueDim: u32,
  rows: u32,
  t0: u32,
  t1: u32,
  segTokens: u32,
  segment: u32,
  scale: f32,
  eps: f32,
  // Work items of the elementwise passes (groups for l2, rows·heads for the gates).
  n: u32,
  wsP: u32,
  wsCarry: u32,
  _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * 64u;
}

fn sigmoid(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(-x));
}

// log(1 + u) for u ∈ [0, 1] without losing small u.
fn log1p_small(u: f32) -> f32 {
  let w = 1.0 + u;
  if (w == 1.0) {
    return u;
  }
  return log(w) * (u / (w - 1.0));
}

fn softplus(x: f32) -> f32 {
  return max(x, 0.0) + log1p_small(exp(-abs(x)));
}

#if PASS_L2_FORWARD
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn l2_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = flat_id(gid, nwg);
  if (g >= p.n) {
    return;
  }
  let base = g * p.keyDim;
  var ss = 0.0;
  for (var j = 0u; j < p.keyDim; j++) {
    ss = fma(x[base + j], x[base + j], ss);
  }
  let r = inverseSqrt(ss + p.eps);
  for (var j = 0u; j < p.keyDim; j++) {
    y[base + j] = x[base + j] * r;
  }
}
#endif

#if PASS_L2_BACKWARD
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn l2_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let g = flat_id(gid, nwg);
  if (g >= p.n) {
    return;
  }
  let base = g * p.keyDim;
  var ss = 0.0;
  var xdy = 0.0;
  for (var j = 0u; j < p.keyDim; j++) {
    ss = fma(x[base + j], x[base + j], ss);
    xdy = fma(x[base + j], dy[base + j], xdy);
  }
  let r = inverseSqrt(ss + p.eps);
  // y·dy = r·(x·dy); dx = r·dy − r³·(x·dy)·x.
  let c = r * r * r * xdy;
  for (var j = 0u; j < p.keyDim; j++) {
    dx[base + j] = r * dy[base + j] - c * x[base + j];
  }
}
#endif

// gates [2, rows·H]: β in the first block, the log decay g in the second (GATED only; one binding for both keeps
// the sweeps within 8 storage buffers).
#if PASS_GATES_FORWARD
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> gates: array<f32>;
#if GATED
@group(0) @binding(3) var<storage, read> a: array<f32>;
@group(0) @binding(4) var<storage, read> A_log: array<f32>;
@group(0) @binding(5) var<storage, read> dtBias: array<f32>;
#endif

@compute @workgroup_size(64)
fn gates_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.n) {
    return;
  }
  gates[idx] = sigmoid(b[idx]);
#if GATED
  let h = idx % p.heads;
  gates[p.n + idx] = -exp(A_log[h]) * softplus(a[idx] + dtBias[h]);
#endif
}
#endif

#if PASS_GATES_BACKWARD
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> dgates: array<f32>;
@group(0) @binding(3) var<storage, read_write> db: array<f32>;

@compute @workgroup_size(64)
fn gates_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.n) {
    return;
  }
  let s = sigmoid(b[idx]);
  db[idx] = dgates[idx] * s * (1.0 - s);
}
#endif

#if PASS_DECAY_BACKWARD
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> A_log: array<f32>;
@group(0) @binding(3) var<storage, read> dtBias: array<f32>;
@group(0) @binding(4) var<storage, read> dgates: array<f32>;
@group(0) @binding(5) var<storage, read_write> da: array<f32>;
// dg·g per (row, head): the host sums it over rows into A_log's gradient (∂g/∂A_log = g).
@group(0) @binding(6) var<storage, read_write> dgg: array<f32>;

@compute @workgroup_size(64)
fn decay_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.n) {
    return;
  }
  let h = idx % p.heads;
  let A = exp(A_log[h]);
  let pre = a[idx] + dtBias[h];
  let dg = dgates[p.n + idx];
  da[idx] = dg * -A * sigmoid(pre);
  dgg[idx] = dg * (-A * softplus(pre));
}
#endif

// Mamba-2's gates: β = dt = softplus(x + dt_bias[h]) (x: in_proj's dt columns), g = −exp(A_log[h])·dt.
#if PASS_DT_GATES_FORWARD
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> A_log: array<f32>;
@group(0) @binding(3) var<storage, read> dtBias: array<f32>;
@group(0) @binding(4) var<storage, read_write> gates: array<f32>;

@compute @workgroup_size(64)
fn dt_gates_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.n) {
    return;
  }
  let h = idx % p.heads;
  let dt = softplus(x[idx] + dtBias[h]);
  gates[idx] = dt;
  gates[p.n + idx] = -exp(A_log[h]) * dt;
}
#endif

// dx = (dβ − exp(A_log)·dg)·sigmoid(x + dt_bias); dgg = dg·g (the host sums dx and dgg over rows into dt_bias's and
// A_log's gradients).
#if PASS_DT_GATES_BACKWARD
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> A_log: array<f32>;
@group(0) @binding(3) var<storage, read> dtBias: array<f32>;
@group(0) @binding(4) var<storage, read> dgates: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> dgg: array<f32>;

@compute @workgroup_size(64)
fn dt_gates_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.n) {
    return;
  }
  let h = idx % p.heads;
  let A = exp(A_log[h]);
  let pre = x[idx] + dtBias[h];
  let dg = dgates[p.n + idx];
  dx[idx] = (dgates[idx] - A * dg) * sigmoid(pre);
  dgg[idx] = dg * (-A * softplus(pre));
}
#endif

// Mamba-2's inputs around the additive update (H heads of P = valueDim channels, one group of N = keyDim states):
//   ssd_skip_forward     out = y + D[h]·x, per element of [rows, H·P]
//   ssd_inputs_backward  per row, the gradient of the conv output xBC [rows, H·P + 2N]: x's columns dx = dv + D[h]·dy,
//                        B's and C's the sums over heads of dk and dq ([rows, H·N], heads in order); and per (row, head)
//                        Σ_p dy·x, which the host sums over rows into D's gradient
#if PASS_SSD_SKIP_FORWARD
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> D: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn ssd_skip_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.n) {
    return;
  }
  let h = (idx / p.valueDim) % p.heads;
  out[idx] = fma(D[h], x[idx], y[idx]);
}
#endif

#if PASS_SSD_INPUTS_BACKWARD
@group(0) @binding(1) var<storage, read> dv: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> D: array<f32>;
@group(0) @binding(5) var<storage, read> dk: array<f32>;
@group(0) @binding(6) var<storage, read> dq: array<f32>;
@group(0) @binding(7) var<storage, read_write> dxbc: array<f32>;
@group(0) @binding(8) var<storage, read_write> dDrows: array<f32>;

// Invocation (row, c), c < H·P + 2N + H: a column of dxbc, or (the last H) a head's Σ_p dy·x.
@compute @workgroup_size(64)
fn ssd_inputs_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  let H = p.heads;
  let P = p.valueDim;
  let N = p.keyDim;
  let HP = H * P;
  let W = HP + 2u * N;
  if (idx >= p.rows * (W + H)) {
    return;
  }
  let row = idx / (W + H);
  let c = idx % (W + H);
  if (c < HP) {
    let i = row * HP + c;
    dxbc[row * W + c] = fma(D[c / P], dy[i], dv[i]);
  } else if (c < W) {
    let n = (c - HP) % N;
    var acc = 0.0;
    for (var h = 0u; h < H; h++) {
      if (c < HP + N) {
        acc += dk[(row * H + h) * N + n];
      } else {
        acc += dq[(row * H + h) * N + n];
      }
    }
    dxbc[row * W + c] = acc;
  } else {
    let h = c - W;
    var acc = 0.0;
    for (var j = 0u; j < P; j++) {
      acc = fma(dy[row * HP + h * P + j], x[row * HP + h * P + j], acc);
    }
    dDrows[row * H + h] = acc;
  }
}
#endif

// ---- the delta rule ----------------------------------------------------------------------------------------------

// State rows R = B·H·V: one invocation each in the sweeps.
fn state_rows() -> u32 {
  return p.batch * p.heads * p.valueDim;
}

// α_t = exp(g_t) of (row, head) gh, from the second block of `gates` (1 without a gate). SWEEP is set with the three
// delta passes, which all bind `gates`.
#if SWEEP
fn decay(gh: u32) -> f32 {
#if GATED
  return exp(gates[p.rows * p.heads + gh]);
#else
  return 1.0;
#endif
}
#endif

#if STATE_STEP
// One token's first half, in place: S̃ = α·S_{t−1} and, for the delta rule, S̃·k (0 for the additive update). Shared by
// the forward and the backward's recompute so both produce bit-identical rows.
fn decay_read(s: ptr<function, array<f32, NK>>, kb: u32, alpha: f32) -> f32 {
  var sk = 0.0;
  for (var j = 0u; j < NK; j++) {
    (*s)[j] = alpha * (*s)[j];
    if (DELTA) {
      sk = fma((*s)[j], k[kb + j], sk);
    }
  }
  return sk;
}
#endif

#if PASS_DELTA_FORWARD
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> gates: array<f32>;
@group(0) @binding(5) var<storage, read_write> o: array<f32>;
@group(0) @binding(6) var<storage, read_write> checkpoints: array<f32>;

@compute @workgroup_size(64)
fn delta_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = flat_id(gid, nwg);
  let R = state_rows();
  if (r >= R) {
    return;
  }
  let H = p.heads;
  let V = p.valueDim;
  let i = r % V;
  let bh = r / V;
  let h = bh % H;
  let b = bh / H;
  var s: array<f32, NK>;
  let cp = p.t0 / p.segTokens;
  for (var j = 0u; j < NK; j++) {
    s[j] = 0.0;
    if (p.t0 > 0u) {
      s[j] = checkpoints[((cp - 1u) * NK + j) * R + r];
    }
  }
  for (var t = p.t0; t < p.t1; t++) {
    let gh = (b * p.seqLen + t) * H + h;
    let kb = gh * NK;
    let alpha = decay(gh);
    let u = gates[gh] * (v[gh * V + i] - decay_read(&s, kb, alpha));
    var oq = 0.0;
    for (var j = 0u; j < NK; j++) {
      s[j] = fma(u, k[kb + j], s[j]);
      oq = fma(s[j], q[kb + j], oq);
    }
    o[gh * V + i] = p.scale * oq;
    let next = t + 1u;
    if (next % p.segTokens == 0u && next < p.seqLen) {
      let slot = next / p.segTokens - 1u;
      for (var j = 0u; j < NK; j++) {
        checkpoints[(slot * NK + j) * R + r] = s[j];
      }
    }
  }
}
#endif

#if PASS_DELTA_BACKWARD
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> gates: array<f32>;
@group(0) @binding(5) var<storage, read> checkpoints: array<f32>;
@group(0) @binding(6) var<storage, read> dout: array<f32>;
@group(0) @binding(7) var<storage, read_write> dv: array<f32>;
@group(0) @binding(8) var<storage, read_write> ws: array<f32>;

@compute @workgroup_size(64)
fn delta_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = flat_id(gid, nwg);
  let R = state_rows();
  if (r >= R) {
    return;
  }
  let H = p.heads;
  let V = p.valueDim;
  let i = r % V;
  let bh = r / V;
  let h = bh % H;
  let b = bh / H;
  // Recompute: the same operations in the same order as delta_forward.
  var s: array<f32, NK>;
  for (var j = 0u; j < NK; j++) {
    s[j] = 0.0;
    if (p.segment > 0u) {
      s[j] = checkpoints[((p.segment - 1u) * NK + j) * R + r];
    }
    ws[j * R + r] = s[j];
  }
  for (var t = p.t0; t < p.t1; t++) {
    let gh = (b * p.seqLen + t) * H + h;
    let kb = gh * NK;
    let alpha = decay(gh);
    let u = gates[gh] * (v[gh * V + i] - decay_read(&s, kb, alpha));
    let slot = (t - p.t0 + 1u) * NK;
    for (var j = 0u; j < NK; j++) {
      s[j] = fma(u, k[kb + j], s[j]);
      ws[(slot + j) * R + r] = s[j];
    }
  }
  // Reverse sweep with the adjoint row G = ∂L/∂S_t[i, ·] (zero after the last token).
  var G: array<f32, NK>;
  for (var j = 0u; j < NK; j++) {
    G[j] = 0.0;
    if (p.t1 < p.seqLen) {
      G[j] = ws[p.wsCarry + j * R + r];
    }
  }
  let PW = NK + 2u;
  for (var t = p.t1; t > p.t0; t--) {
    let tt = t - 1u;
    let gh = (b * p.seqLen + tt) * H + h;
    let kb = gh * NK;
    let alpha = decay(gh);
    let bt = gates[gh];
    let cd = p.scale * dout[gh * V + i];
    let prev = (tt - p.t0) * NK;
    var sk = 0.0;
    var gk = 0.0;
    for (var j = 0u; j < NK; j++) {
      G[j] = fma(cd, q[kb + j], G[j]);
      if (DELTA) {
        sk = fma(alpha * ws[(prev + j) * R + r], k[kb + j], sk);
      }
      gk = fma(G[j], k[kb + j], gk);
    }
    let e = v[gh * V + i] - sk;
    let ebar = bt * gk;
    dv[gh * V + i] = ebar;
    let pb = p.wsP + (tt - p.t0) * PW * R + r;
    var dalpha = 0.0;
    for (var j = 0u; j < NK; j++) {
      let sp = ws[(prev + j) * R + r];
      var dkj = bt * e * G[j];
      var gt = G[j];
      if (DELTA) {
        dkj -= alpha * sp * ebar;
        gt -= ebar * k[kb + j];
      }
      ws[pb + j * R] = dkj;
      dalpha = fma(gt, sp, dalpha);
      G[j] = alpha * gt;
    }
    ws[pb + NK * R] = e * gk;
    ws[pb + (NK + 1u) * R] = dalpha;
  }
  for (var j = 0u; j < NK; j++) {
    ws[p.wsCarry + j * R + r] = G[j];
  }
}
#endif

#if PASS_DELTA_BWD_REDUCE
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> ws: array<f32>;
@group(0) @binding(3) var<storage, read_write> dq: array<f32>;
@group(0) @binding(4) var<storage, read_write> dk: array<f32>;
// [2, rows·H] like gates: dβ, then dg (GATED).
@group(0) @binding(5) var<storage, read_write> dgates: array<f32>;
#if GATED
// Bound only with a gate: an unused binding would drop out of the pipeline's layout.
@group(0) @binding(6) var<storage, read> gates: array<f32>;
#endif

// Invocation (b, τ, h, c), c < 2·NK + 1 (+ 1 GATED): column c of dq (c < NK), dk (NK ≤ c < 2NK), dβ (2NK), dg (2NK + 1) at token
// t0 + τ, summed over the head's V state rows in order.
@compute @workgroup_size(64)
fn delta_backward_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  let W = 2u * NK + select(1u, 2u, GATED);
  let span = p.t1 - p.t0;
  let H = p.heads;
  let V = p.valueDim;
  if (idx >= p.batch * span * H * W) {
    return;
  }
  let c = idx % W;
  let h = (idx / W) % H;
  let tau = (idx / (W * H)) % span;
  let b = idx / (W * H * span);
  let R = p.batch * H * V;
  let gh = (b * p.seqLen + p.t0 + tau) * H + h;
  let r0 = (b * H + h) * V;
  var acc = 0.0;
  if (c < NK) {
    // dq_t[c] = c·Σ_i do_t[i]·S_t[i, c] (S_t in slot τ + 1).
    let base = ((tau + 1u) * NK + c) * R + r0;
    for (var i = 0u; i < V; i++) {
      acc = fma(dout[gh * V + i], ws[base + i], acc);
    }
    dq[gh * NK + c] = p.scale * acc;
    return;
  }
  let pc = c - NK;
  let base = p.wsP + (tau * (NK + 2u) + pc) * R + r0;
  for (var i = 0u; i < V; i++) {
    acc += ws[base + i];
  }
  if (pc < NK) {
    dk[gh * NK + pc] = acc;
  } else if (pc == NK) {
    dgates[gh] = acc;
  } else if (GATED) {
    dgates[p.rows * H + gh] = decay(gh) * acc;
  }
}
#endif
