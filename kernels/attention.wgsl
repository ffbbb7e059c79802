// Causal multi-head softmax attention (spec §3.2), forward and backward, heads side by side in the last dimension:
//   qkv [B*L, 3d]: q = cols [0,d), k = [d,2d), v = [2d,3d); head h uses cols h·dh .. (h+1)·dh of each.
//   s_ij = scale·q_i·k_j + (j > i ? −10000 : 0);  P = softmax_j(s);  out_i = Σ_j drop_ij·P_ij·v_j  → out [B*L, d]
// Backward writes dq, dk, dv into dqkv [B*L, 3d] (overwrite). With D_i = dout_i·out_i (row_dot):
//   dP_ij = drop_ij·(dout_i·v_j);  dS_ij = P_ij·(dP_ij − D_i);  dq_i = scale·Σ_j dS_ij·k_j;  dk_j = scale·Σ_i dS_ij·q_i;
//   dv_j = Σ_i drop_ij·P_ij·dout_i.   (D_i = Σ_j P_ij·dP_ij, the softmax backward's row sum, since out_i = Σ_j drop·P·v_j.)
// Dropout on the probabilities: drop_ij = keep/(1 − p), keep = hash(seed, b, h, i, j) >= threshold; the counter-based
// hash (lowbias32 chain, own copy: src/reference/attention.ts has the same one) lets every pass recompute the mask.
//
// Two variants, one entry point per define:
//   materialized (MAT_*): the [B,H,L,L] scores/probabilities live in `probs`; softmax over all L columns with the
//     additive mask, exactly like the reference code. The backward turns `probs` into dS in place.
//   flash (FLASH_*): one workgroup per query row (per key row for dk/dv), online softmax over tiles of FW keys, only
//     j ≤ i visited: masked columns carry exp(−10000 + s_ij − max) which is exactly 0 in fp32 unless scores differ by
//     more than ~9900. Saves lse per row instead of probabilities; the backward recomputes P from lse.

struct Params {
  B: u32,
  L: u32,
  d: u32,
  H: u32,
  dh: u32,
  scale: f32,       // 1/√dh
  threshold: u32,   // keep when hash >= threshold
  keepScale: f32,   // 1/(1 − p)
}

struct StepParams {
  seed: u32,
  dropoutActive: u32, // 0 in eval or when p = 0
  _pad0: u32,
  _pad1: u32,
}

const MASK_VALUE = -10000.0;
const NEG_BIG = -3.4028235e38;

// lowbias32 (Chris Wellons): a bijection on u32 with good avalanche.
fn hash_u32(x_in: u32) -> u32 {
  var x = x_in;
  x = x ^ (x >> 16u);
  x = x * 0x7feb352du;
  x = x ^ (x >> 15u);
  x = x * 0x846ca68bu;
  x = x ^ (x >> 16u);
  return x;
}

// The golden-ratio offset keeps an all-zero counter away from lowbias32's fixed point 0.
fn hash_step(state: u32, word: u32) -> u32 {
  return hash_u32((state + 0x9e3779b9u) ^ word);
}

fn dropout_row_key(seed: u32, b: u32, h: u32, i: u32) -> u32 {
  return hash_step(hash_step(hash_step(hash_step(0u, seed), b), h), i);
}

// drop_ij for the row whose key is `key`: 0 or 1/(1 − p); 1 when dropout is off.
fn drop_factor(enabled: u32, key: u32, j: u32) -> f32 {
  if (enabled == 0u) {
    return 1.0;
  }
  return select(0.0, p.keepScale, hash_step(key, j) >= p.threshold);
}

fn q_at(b: u32, i: u32, h: u32) -> u32 {
  return (b * p.L + i) * 3u * p.d + h * p.dh;
}

fn k_at(b: u32, j: u32, h: u32) -> u32 {
  return (b * p.L + j) * 3u * p.d + p.d + h * p.dh;
}

fn v_at(b: u32, j: u32, h: u32) -> u32 {
  return (b * p.L + j) * 3u * p.d + 2u * p.d + h * p.dh;
}

// Offset of head h of token i in a [B*L, d] tensor (out, dout).
fn o_at(b: u32, i: u32, h: u32) -> u32 {
  return (b * p.L + i) * p.d + h * p.dh;
}

@group(0) @binding(0) var<uniform> p: Params;

// ---------------------------------------------------------------- shared: D_i = dout_i · out_i per (b, h, i)
#if ROW_DOT
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> rowD: array<f32>;

@compute @workgroup_size(64)
fn row_dot(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let row = (wid.y * nwg.x + wid.x) * 64u + li; // (b·H + h)·L + i
  if (row >= p.B * p.H * p.L) {
    return;
  }
  let bh = row / p.L;
  let o = o_at(bh / p.H, row % p.L, bh % p.H);
  var acc = 0.0;
  for (var c = 0u; c < p.dh; c++) {
    acc = fma(dout[o + c], out[o + c], acc);
  }
  rowD[row] = acc;
}
#endif

// ---------------------------------------------------------------- materialized variant
#if MAT_SCORES
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;

// probs[b,h,i,j] = scale·q_i·k_j + mask (pre-softmax scores).
@compute @workgroup_size(16, 16)
fn mat_scores(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let i = gid.y;
  let bh = gid.z;
  if (i >= p.L || j >= p.L) {
    return;
  }
  let b = bh / p.H;
  let h = bh % p.H;
  let qo = q_at(b, i, h);
  let ko = k_at(b, j, h);
  var acc = 0.0;
  for (var c = 0u; c < p.dh; c++) {
    acc = fma(qkv[qo + c], qkv[ko + c], acc);
  }
  var s = acc * p.scale;
  if (j > i) {
    s = s + MASK_VALUE;
  }
  probs[(bh * p.L + i) * p.L + j] = s;
}
#endif

#if MAT_SOFTMAX
@group(0) @binding(1) var<storage, read_write> probs: array<f32>;

var<workgroup> red: array<f32, RW>;

fn reduce(li: u32, value: f32, isMax: bool) -> f32 {
  workgroupBarrier(); // earlier readers of red[0] are done
  red[li] = value;
  for (var stride = RW / 2u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (li < stride) {
      if (isMax) {
        red[li] = max(red[li], red[li + stride]);
      } else {
        red[li] = red[li] + red[li + stride];
      }
    }
  }
  workgroupBarrier();
  return red[0];
}

// One workgroup per row (b, h, i): softmax over all L columns, in place.
@compute @workgroup_size(RW)
fn mat_softmax(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= p.B * p.H * p.L) {
    return;
  }
  let base = row * p.L;
  var m = NEG_BIG;
  for (var j = li; j < p.L; j += RW) {
    m = max(m, probs[base + j]);
  }
  m = reduce(li, m, true);
  var s = 0.0;
  for (var j = li; j < p.L; j += RW) {
    s += exp(probs[base + j] - m);
  }
  s = reduce(li, s, false);
  for (var j = li; j < p.L; j += RW) {
    probs[base + j] = exp(probs[base + j] - m) / s;
  }
}
#endif

#if MAT_PV
@group(0) @binding(1) var<uniform> st: StepParams;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> probs: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// out[b, i, h·dh + c] = Σ_j drop_ij·P_ij·v_j[c]; one invocation per (i, c), z = b·H + h.
@compute @workgroup_size(64)
fn mat_pv(@builtin(global_invocation_id) gid: vec3<u32>) {
  let idx = gid.x;
  let bh = gid.z;
  if (idx >= p.L * p.dh) {
    return;
  }
  let i = idx / p.dh;
  let c = idx % p.dh;
  let b = bh / p.H;
  let h = bh % p.H;
  let key = dropout_row_key(st.seed, b, h, i);
  let prow = (bh * p.L + i) * p.L;
  var acc = 0.0;
  for (var j = 0u; j < p.L; j++) {
    let w = probs[prow + j] * drop_factor(st.dropoutActive, key, j);
    acc = fma(w, qkv[v_at(b, j, h) + c], acc);
  }
  out[o_at(b, i, h) + c] = acc;
}
#endif

#if MAT_DV
@group(0) @binding(1) var<uniform> st: StepParams;
@group(0) @binding(2) var<storage, read> probs: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> dqkv: array<f32>;

// dv_j[c] = Σ_i drop_ij·P_ij·dout_i[c]; one invocation per (j, c), z = b·H + h.
@compute @workgroup_size(64)
fn mat_dv(@builtin(global_invocation_id) gid: vec3<u32>) {
  let idx = gid.x;
  let bh = gid.z;
  if (idx >= p.L * p.dh) {
    return;
  }
  let j = idx / p.dh;
  let c = idx % p.dh;
  let b = bh / p.H;
  let h = bh % p.H;
  var acc = 0.0;
  for (var i = 0u; i < p.L; i++) {
    let key = dropout_row_key(st.seed, b, h, i);
    let w = probs[(bh * p.L + i) * p.L + j] * drop_factor(st.dropoutActive, key, j);
    acc = fma(w, dout[o_at(b, i, h) + c], acc);
  }
  dqkv[v_at(b, j, h) + c] = acc;
}
#endif

#if MAT_DS
@group(0) @binding(1) var<uniform> st: StepParams;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read> rowD: array<f32>;
@group(0) @binding(5) var<storage, read_write> probs: array<f32>;

// probs[b,h,i,j] ← dS_ij = P_ij·(drop_ij·dout_i·v_j − D_i), in place (runs after mat_dv, the last reader of P).
@compute @workgroup_size(16, 16)
fn mat_ds(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let i = gid.y;
  let bh = gid.z;
  if (i >= p.L || j >= p.L) {
    return;
  }
  let b = bh / p.H;
  let h = bh % p.H;
  let go = o_at(b, i, h);
  let vo = v_at(b, j, h);
  var acc = 0.0;
  for (var c = 0u; c < p.dh; c++) {
    acc = fma(dout[go + c], qkv[vo + c], acc);
  }
  let dp = acc * drop_factor(st.dropoutActive, dropout_row_key(st.seed, b, h, i), j);
  let idx = (bh * p.L + i) * p.L + j;
  probs[idx] = probs[idx] * (dp - rowD[bh * p.L + i]);
}
#endif

#if MAT_DQDK
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> dscores: array<f32>;
@group(0) @binding(3) var<storage, read_write> dqkv: array<f32>;

// dq_r[c] = scale·Σ_j dS_rj·k_j[c] and dk_r[c] = scale·Σ_i dS_ir·q_i[c]; one invocation per (r, c), z = b·H + h.
@compute @workgroup_size(64)
fn mat_dqdk(@builtin(global_invocation_id) gid: vec3<u32>) {
  let idx = gid.x;
  let bh = gid.z;
  if (idx >= p.L * p.dh) {
    return;
  }
  let r = idx / p.dh;
  let c = idx % p.dh;
  let b = bh / p.H;
  let h = bh % p.H;
  let base = bh * p.L * p.L;
  var dq = 0.0;
  var dk = 0.0;
  for (var t = 0u; t < p.L; t++) {
    dq = fma(dscores[base + r * p.L + t], qkv[k_at(b, t, h) + c], dq);
    dk = fma(dscores[base + t * p.L + r], qkv[q_at(b, t, h) + c], dk);
  }
  dqkv[q_at(b, r, h) + c] = dq * p.scale;
  dqkv[k_at(b, r, h) + c] = dk * p.scale;
}
#endif

// ---------------------------------------------------------------- flash variant (FW keys per tile, CPT = ⌈DH/FW⌉)
#if FLASH_FWD
@group(0) @binding(1) var<uniform> st: StepParams;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;

var<workgroup> qRow: array<f32, DH>;
var<workgroup> weights: array<f32, FW>; // drop_ij·exp(s_ij − m) for the current tile
var<workgroup> red: array<f32, FW>;

fn reduce(li: u32, value: f32, isMax: bool) -> f32 {
  workgroupBarrier();
  red[li] = value;
  for (var stride = FW / 2u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (li < stride) {
      if (isMax) {
        red[li] = max(red[li], red[li + stride]);
      } else {
        red[li] = red[li] + red[li + stride];
      }
    }
  }
  workgroupBarrier();
  return red[0];
}

// One workgroup per query row (b, h, i): online softmax over key tiles j0..j0+FW−1 (j ≤ i only).
@compute @workgroup_size(FW)
fn flash_fwd(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= p.B * p.H * p.L) {
    return;
  }
  let bh = row / p.L;
  let i = row % p.L;
  let b = bh / p.H;
  let h = bh % p.H;
  let qo = q_at(b, i, h);
  for (var c = li; c < p.dh; c += FW) {
    qRow[c] = qkv[qo + c];
  }
  let key = dropout_row_key(st.seed, b, h, i);
  var m = NEG_BIG;
  var l = 0.0;
  var acc: array<f32, CPT>;
  for (var j0 = 0u; j0 <= i; j0 += FW) {
    workgroupBarrier(); // qRow loaded; the previous tile's weights consumed
    let j = j0 + li;
    var s = NEG_BIG;
    if (j <= i) {
      let ko = k_at(b, j, h);
      var dot = 0.0;
      for (var c = 0u; c < p.dh; c++) {
        dot = fma(qRow[c], qkv[ko + c], dot);
      }
      s = dot * p.scale;
    }
    let mNew = max(m, reduce(li, s, true));
    var e = 0.0;
    if (j <= i) {
      e = exp(s - mNew);
    }
    weights[li] = e * drop_factor(st.dropoutActive, key, j);
    let alpha = exp(m - mNew);
    l = l * alpha + reduce(li, e, false); // its barriers also publish `weights`
    m = mNew;
    let count = min(FW, i + 1u - j0);
    for (var k = 0u; k < CPT; k++) {
      let c = li + k * FW;
      if (c < p.dh) {
        var a = acc[k] * alpha;
        for (var t = 0u; t < count; t++) {
          a = fma(weights[t], qkv[v_at(b, j0 + t, h) + c], a);
        }
        acc[k] = a;
      }
    }
  }
  let oo = o_at(b, i, h);
  for (var k = 0u; k < CPT; k++) {
    let c = li + k * FW;
    if (c < p.dh) {
      out[oo + c] = acc[k] / l;
    }
  }
  if (li == 0u) {
    lse[row] = m + log(l);
  }
}
#endif

#if FLASH_DQ
@group(0) @binding(1) var<uniform> st: StepParams;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> rowD: array<f32>;
@group(0) @binding(6) var<storage, read_write> dqkv: array<f32>;

var<workgroup> qRow: array<f32, DH>;
var<workgroup> gRow: array<f32, DH>;
var<workgroup> dsTile: array<f32, FW>;

// One workgroup per query row (b, h, i): dq_i = scale·Σ_{j≤i} dS_ij·k_j, P recomputed from lse.
@compute @workgroup_size(FW)
fn flash_dq(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= p.B * p.H * p.L) {
    return;
  }
  let bh = row / p.L;
  let i = row % p.L;
  let b = bh / p.H;
  let h = bh % p.H;
  let qo = q_at(b, i, h);
  let go = o_at(b, i, h);
  for (var c = li; c < p.dh; c += FW) {
    qRow[c] = qkv[qo + c];
    gRow[c] = dout[go + c];
  }
  let key = dropout_row_key(st.seed, b, h, i);
  let rowLse = lse[row];
  let rowDot = rowD[row];
  var acc: array<f32, CPT>;
  for (var j0 = 0u; j0 <= i; j0 += FW) {
    workgroupBarrier();
    let j = j0 + li;
    var ds = 0.0;
    if (j <= i) {
      let ko = k_at(b, j, h);
      let vo = v_at(b, j, h);
      var sDot = 0.0;
      var pDot = 0.0;
      for (var c = 0u; c < p.dh; c++) {
        sDot = fma(qRow[c], qkv[ko + c], sDot);
        pDot = fma(gRow[c], qkv[vo + c], pDot);
      }
      let prob = exp(sDot * p.scale - rowLse);
      ds = prob * (pDot * drop_factor(st.dropoutActive, key, j) - rowDot);
    }
    dsTile[li] = ds;
    workgroupBarrier();
    let count = min(FW, i + 1u - j0);
    for (var k = 0u; k < CPT; k++) {
      let c = li + k * FW;
      if (c < p.dh) {
        var a = acc[k];
        for (var t = 0u; t < count; t++) {
          a = fma(dsTile[t], qkv[k_at(b, j0 + t, h) + c], a);
        }
        acc[k] = a;
      }
    }
  }
  for (var k = 0u; k < CPT; k++) {
    let c = li + k * FW;
    if (c < p.dh) {
      dqkv[qo + c] = acc[k] * p.scale;
    }
  }
}
#endif

#if FLASH_DKDV
@group(0) @binding(1) var<uniform> st: StepParams;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> rowD: array<f32>;
@group(0) @binding(6) var<storage, read_write> dqkv: array<f32>;

var<workgroup> kRow: array<f32, DH>;
var<workgroup> vRow: array<f32, DH>;
var<workgroup> pdTile: array<f32, FW>; // drop_ij·P_ij
var<workgroup> dsTile: array<f32, FW>;

// One workgroup per key row (b, h, j): dk_j = scale·Σ_{i≥j} dS_ij·q_i, dv_j = Σ_{i≥j} drop_ij·P_ij·dout_i.
@compute @workgroup_size(FW)
fn flash_dkdv(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= p.B * p.H * p.L) {
    return;
  }
  let bh = row / p.L;
  let j = row % p.L;
  let b = bh / p.H;
  let h = bh % p.H;
  let ko = k_at(b, j, h);
  let vo = v_at(b, j, h);
  for (var c = li; c < p.dh; c += FW) {
    kRow[c] = qkv[ko + c];
    vRow[c] = qkv[vo + c];
  }
  var accK: array<f32, CPT>;
  var accV: array<f32, CPT>;
  for (var i0 = j; i0 < p.L; i0 += FW) {
    workgroupBarrier();
    let i = i0 + li;
    var pd = 0.0;
    var ds = 0.0;
    if (i < p.L) {
      let qo = q_at(b, i, h);
      let go = o_at(b, i, h);
      var sDot = 0.0;
      var pDot = 0.0;
      for (var c = 0u; c < p.dh; c++) {
        sDot = fma(qkv[qo + c], kRow[c], sDot);
        pDot = fma(dout[go + c], vRow[c], pDot);
      }
      let r = bh * p.L + i;
      let prob = exp(sDot * p.scale - lse[r]);
      let f = drop_factor(st.dropoutActive, dropout_row_key(st.seed, b, h, i), j);
      pd = prob * f;
      ds = prob * (pDot * f - rowD[r]);
    }
    pdTile[li] = pd;
    dsTile[li] = ds;
    workgroupBarrier();
    let count = min(FW, p.L - i0);
    for (var k = 0u; k < CPT; k++) {
      let c = li + k * FW;
      if (c < p.dh) {
        var ak = accK[k];
        var av = accV[k];
        for (var t = 0u; t < count; t++) {
          ak = fma(dsTile[t], qkv[q_at(b, i0 + t, h) + c], ak);
          av = fma(pdTile[t], dout[o_at(b, i0 + t, h) + c], av);
        }
        accK[k] = ak;
        accV[k] = av;
      }
    }
  }
  for (var k = 0u; k < CPT; k++) {
    let c = li + k * FW;
    if (c < p.dh) {
      dqkv[ko + c] = accK[k] * p.scale;
      dqkv[vo + c] = accV[k];
    }
  }
}
#endif
