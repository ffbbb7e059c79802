// Causal multi-head softmax attention (spec §3.2), forward and backward, heads side by side in the last dimension:
//   qkv [B*L, 3d]: q = cols [0,d), k = [d,2d), v = [2d,3d); head h uses cols h·dh .. (h+1)·dh of each.
//   s_ij = scale·q_i·k_j + (j > i or j < i − window ? −10000 : 0);  P = softmax_j(s);  out_i = Σ_j drop_ij·P_ij·v_j  → out [B*L, d]
// Backward writes dq, dk, dv into dqkv [B*L, 3d] (overwrite). With D_i = dout_i·out_i (row_dot):
//   dP_ij = drop_ij·(dout_i·v_j);  dS_ij = P_ij·(dP_ij − D_i);  dq_i = scale·Σ_j dS_ij·k_j;  dk_j = scale·Σ_i dS_ij·q_i;
//   dv_j = Σ_i drop_ij·P_ij·dout_i.   (D_i = Σ_j P_ij·dP_ij, the softmax backward's row sum, since out_i = Σ_j drop·P·v_j.)
// Dropout on the probabilities: drop_ij = keep/(1 − p), keep = hash(seed, b, h, i, j) >= threshold; the counter-based
// hash (lowbias32 chain, own copy: src/reference/attention.ts has the same one) lets every pass recompute the mask.
//
// Two variants, one entry point per define:
//   materialized (MAT_*): the [B,H,L,L] scores/probabilities live in `probs` (causal part only, register-blocked
//     products, dropout stored in the sign; see below). The backward turns `probs` into dS in place.
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
  window: u32,      // keys j with i − window ≤ j ≤ i (sliding window); L or more: every j ≤ i
}

struct StepParams {
  seed: u32,
  dropoutActive: u32, // 0 in eval or when p = 0
  _pad0: u32,
  _pad1: u32,
}

const MASK_VALUE = -10000.0;

// First key a query row i sees: max(0, i − window).
fn key_lo(i: u32) -> u32 {
  return i - min(i, p.window);
}

// One past the last query row that sees key j: min(L, j + window + 1).
fn query_end(j: u32) -> u32 {
  return min(p.L, j + min(p.window, p.L) + 1u);
}
const NEG_BIG = -3.4028234e38;

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
// Register-blocked for every adapter: an invocation owns a 4×4 block of one (b, h)'s [L, L] matrix (mat_dot: scores,
// dS) or 4 rows × 4 channels of an [L, dh] result (mat_rows: out, dq; mat_cols: dv, dk), so each value it loads feeds
// four FMAs. Only causal work runs: mat_softmax writes P = 0 for j > i, so blocks wholly above the diagonal are
// skipped and the products sum j ≤ i (rows) or i ≥ j (columns); masked weights are exactly 0 either way (see flash).
// Dropout is hashed once per (i, j), in mat_softmax: a dropped probability is stored negated (−P), from which the
// products read drop·P = max(x, 0)/(1 − p) and dS reads P = |x|.
//
// Operands are rows of [B*L, STRIDE] tensors at column OFFSET + h·dh (qkv: stride 3d, q/k/v at 0/d/2d; out, dout:
// stride d). VEC4 (d and dh multiples of 4) reads them as vec4s.

// Element offset of token t of batch b, head h, in an operand with the given row stride and column offset.
fn operand_at(b: u32, t: u32, h: u32, stride: u32, offset: u32) -> u32 {
  return (b * p.L + t) * stride + offset + h * p.dh;
}

// Probabilities as the products use them: drop·P (dropout decoded from the sign) or, without DROPPED, the value as is.
fn weight(x: f32, dropping: u32) -> f32 {
#if DROPPED
  if (dropping != 0u) {
    return select(0.0, x * p.keepScale, x > 0.0);
  }
#endif
  return x;
}

#if MAT_DOT
#if VEC4
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> bm: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> bm: array<f32>;
#endif
@group(0) @binding(3) var<storage, read_write> probs: array<f32>;

// Four channels from offset o (a multiple of 4 with VEC4).
#if VEC4
fn lda(o: u32) -> vec4<f32> {
  return a[o / 4u];
}
fn ldb(o: u32) -> vec4<f32> {
  return bm[o / 4u];
}
#else
fn lda(o: u32) -> vec4<f32> {
  return vec4<f32>(a[o], a[o + 1u], a[o + 2u], a[o + 3u]);
}
fn ldb(o: u32) -> vec4<f32> {
  return vec4<f32>(bm[o], bm[o + 1u], bm[o + 2u], bm[o + 3u]);
}
#endif
#if DS
@group(0) @binding(4) var<uniform> st: StepParams;
@group(0) @binding(5) var<storage, read> rowD: array<f32>;
#endif

// A 4×4 block of A_i·B_j over the dh channels: scores (A = q, B = k) → probs = scale·q_i·k_j; with DS (A = dout,
// B = v) → probs ← dS_ij = P_ij·(drop_ij·dout_i·v_j − D_i) in place (after mat_cols read P for dv).
@compute @workgroup_size(WGX, WGY)
fn mat_dot(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j0 = gid.x * 4u;
  let i0 = gid.y * 4u;
  let bh = gid.z;
  // Blocks wholly above the diagonal or wholly left of the window stay as mat_softmax leaves them: 0.
  if (i0 >= p.L || j0 >= p.L || j0 > i0 + 3u || j0 + 3u + min(p.window, p.L) < i0) {
    return;
  }
  let b = bh / p.H;
  let h = bh % p.H;
  let last = p.L - 1u;
  let a0 = operand_at(b, i0, h, A_STRIDE, A_OFFSET);
  let a1 = operand_at(b, min(i0 + 1u, last), h, A_STRIDE, A_OFFSET);
  let a2 = operand_at(b, min(i0 + 2u, last), h, A_STRIDE, A_OFFSET);
  let a3 = operand_at(b, min(i0 + 3u, last), h, A_STRIDE, A_OFFSET);
  let b0 = operand_at(b, j0, h, B_STRIDE, B_OFFSET);
  let b1 = operand_at(b, min(j0 + 1u, last), h, B_STRIDE, B_OFFSET);
  let b2 = operand_at(b, min(j0 + 2u, last), h, B_STRIDE, B_OFFSET);
  let b3 = operand_at(b, min(j0 + 3u, last), h, B_STRIDE, B_OFFSET);
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  let whole = p.dh & ~3u;
  for (var c = 0u; c < whole; c += 4u) {
    let x0 = lda(a0 + c);
    let x1 = lda(a1 + c);
    let x2 = lda(a2 + c);
    let x3 = lda(a3 + c);
    let y0 = ldb(b0 + c);
    let y1 = ldb(b1 + c);
    let y2 = ldb(b2 + c);
    let y3 = ldb(b3 + c);
    acc0 += vec4<f32>(dot(x0, y0), dot(x0, y1), dot(x0, y2), dot(x0, y3));
    acc1 += vec4<f32>(dot(x1, y0), dot(x1, y1), dot(x1, y2), dot(x1, y3));
    acc2 += vec4<f32>(dot(x2, y0), dot(x2, y1), dot(x2, y2), dot(x2, y3));
    acc3 += vec4<f32>(dot(x3, y0), dot(x3, y1), dot(x3, y2), dot(x3, y3));
  }
#if !VEC4
  for (var c = whole; c < p.dh; c++) {
    let y = vec4<f32>(bm[b0 + c], bm[b1 + c], bm[b2 + c], bm[b3 + c]);
    acc0 += a[a0 + c] * y;
    acc1 += a[a1 + c] * y;
    acc2 += a[a2 + c] * y;
    acc3 += a[a3 + c] * y;
  }
#endif
  store_block(b, h, bh, i0, j0, 0u, acc0);
  store_block(b, h, bh, i0, j0, 1u, acc1);
  store_block(b, h, bh, i0, j0, 2u, acc2);
  store_block(b, h, bh, i0, j0, 3u, acc3);
}

fn store_block(b: u32, h: u32, bh: u32, i0: u32, j0: u32, r: u32, acc: vec4<f32>) {
  let i = i0 + r;
  if (i >= p.L) {
    return;
  }
  let row = (bh * p.L + i) * p.L;
#if DS
  let dropping = st.dropoutActive;
  let key = dropout_row_key(st.seed, b, h, i);
  let d = rowD[bh * p.L + i];
#endif
  for (var t = 0u; t < 4u; t++) {
    let j = j0 + t;
    if (j < p.L) {
#if DS
      let x = probs[row + j];
      var prob = x;
      var dp = acc[t];
      if (dropping != 0u) {
        prob = abs(x);
        dp = select(0.0, dp * p.keepScale, x > 0.0);
      }
      probs[row + j] = prob * (dp - d);
#else
      probs[row + j] = acc[t] * p.scale;
#endif
    }
  }
}
#endif

#if MAT_SOFTMAX
@group(0) @binding(1) var<uniform> st: StepParams;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;

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

// One workgroup per row (b, h, i), in place: P_ij = softmax over j ≤ i of the scores, stored as −P_ij where dropout
// drops it; 0 for j > i.
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
  let i = row % p.L;
  let bh = row / p.L;
  let base = row * p.L;
  let lo = key_lo(i);
  var m = NEG_BIG;
  for (var j = lo + li; j <= i; j += RW) {
    m = max(m, probs[base + j]);
  }
  m = reduce(li, m, true);
  var s = 0.0;
  for (var j = lo + li; j <= i; j += RW) {
    s += exp(probs[base + j] - m);
  }
  s = reduce(li, s, false);
  let dropping = st.dropoutActive;
  let key = dropout_row_key(st.seed, bh / p.H, bh % p.H, i);
  for (var j = li; j < p.L; j += RW) {
    var x = 0.0;
    if (j <= i && j >= lo) {
      x = exp(probs[base + j] - m) / s;
      if (dropping != 0u && hash_step(key, j) < p.threshold) {
        x = -x;
      }
    }
    probs[base + j] = x;
  }
}
#endif

#if MAT_PRODUCT
@group(0) @binding(1) var<uniform> st: StepParams;
@group(0) @binding(2) var<storage, read> probs: array<f32>;
#if VEC4
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;
#else
@group(0) @binding(3) var<storage, read> x: array<f32>;
#endif
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// Four channels from offset o (a multiple of 4 with VEC4; without, the channels past dh are read but never stored).
#if VEC4
fn ldx(o: u32) -> vec4<f32> {
  return x[o / 4u];
}
#else
fn ldx(o: u32) -> vec4<f32> {
  return vec4<f32>(x[o], x[o + 1u], x[o + 2u], x[o + 3u]);
}
#endif

fn store_rows(b: u32, h: u32, t: u32, c: u32, acc: vec4<f32>) {
  if (t >= p.L) {
    return;
  }
  let o = operand_at(b, t, h, Y_STRIDE, Y_OFFSET) + c;
  let v = acc * select(1.0, p.scale, SCALED);
  for (var k = 0u; k < 4u; k++) {
    if (c + k < p.dh) {
      y[o + k] = v[k];
    }
  }
}
#endif

#if MAT_ROWS
// y_i = α·Σ_{j ≤ i} W_ij·x_j for 4 rows i × 4 channels: out = (drop·P)·v (DROPPED), dq = scale·dS·k.
@compute @workgroup_size(WGX, WGY)
fn mat_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x * 4u;
  let i0 = gid.y * 4u;
  let bh = gid.z;
  if (c >= p.dh || i0 >= p.L) {
    return;
  }
  let b = bh / p.H;
  let h = bh % p.H;
  let last = p.L - 1u;
  let w0 = (bh * p.L + i0) * p.L;
  let w1 = (bh * p.L + min(i0 + 1u, last)) * p.L;
  let w2 = (bh * p.L + min(i0 + 2u, last)) * p.L;
  let w3 = (bh * p.L + min(i0 + 3u, last)) * p.L;
  let dropping = st.dropoutActive;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  let end = min(i0 + 3u, last);
  for (var j = key_lo(i0); j <= end; j++) {
    let v = ldx(operand_at(b, j, h, X_STRIDE, X_OFFSET) + c);
    acc0 = fma(vec4<f32>(weight(probs[w0 + j], dropping)), v, acc0);
    acc1 = fma(vec4<f32>(weight(probs[w1 + j], dropping)), v, acc1);
    acc2 = fma(vec4<f32>(weight(probs[w2 + j], dropping)), v, acc2);
    acc3 = fma(vec4<f32>(weight(probs[w3 + j], dropping)), v, acc3);
  }
  store_rows(b, h, i0, c, acc0);
  store_rows(b, h, i0 + 1u, c, acc1);
  store_rows(b, h, i0 + 2u, c, acc2);
  store_rows(b, h, i0 + 3u, c, acc3);
}
#endif

#if MAT_COLS
// y_j = α·Σ_{i ≥ j} W_ij·x_i for 4 columns j × 4 channels: dv = (drop·P)ᵀ·dout (DROPPED), dk = scale·dSᵀ·q.
@compute @workgroup_size(WGX, WGY)
fn mat_cols(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x * 4u;
  let j0 = gid.y * 4u;
  let bh = gid.z;
  if (c >= p.dh || j0 >= p.L) {
    return;
  }
  let b = bh / p.H;
  let h = bh % p.H;
  let last = p.L - 1u;
  let j1 = min(j0 + 1u, last);
  let j2 = min(j0 + 2u, last);
  let j3 = min(j0 + 3u, last);
  let dropping = st.dropoutActive;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  var acc2 = vec4<f32>(0.0);
  var acc3 = vec4<f32>(0.0);
  let iEnd = query_end(min(j0 + 3u, last));
  for (var i = j0; i < iEnd; i++) {
    let v = ldx(operand_at(b, i, h, X_STRIDE, X_OFFSET) + c);
    let row = (bh * p.L + i) * p.L;
    acc0 = fma(vec4<f32>(weight(probs[row + j0], dropping)), v, acc0);
    acc1 = fma(vec4<f32>(weight(probs[row + j1], dropping)), v, acc1);
    acc2 = fma(vec4<f32>(weight(probs[row + j2], dropping)), v, acc2);
    acc3 = fma(vec4<f32>(weight(probs[row + j3], dropping)), v, acc3);
  }
  store_rows(b, h, j0, c, acc0);
  store_rows(b, h, j0 + 1u, c, acc1);
  store_rows(b, h, j0 + 2u, c, acc2);
  store_rows(b, h, j0 + 3u, c, acc3);
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
  for (var j0 = key_lo(i); j0 <= i; j0 += FW) {
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
  for (var j0 = key_lo(i); j0 <= i; j0 += FW) {
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
  let iEnd = query_end(j);
  for (var i0 = j; i0 < iEnd; i0 += FW) {
    workgroupBarrier();
    let i = i0 + li;
    var pd = 0.0;
    var ds = 0.0;
    if (i < iEnd) {
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
    let count = min(FW, iEnd - i0);
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
