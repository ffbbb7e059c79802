// RWKV-v4 time-mix ops (src/ops/rwkv.ts; float64 reference: src/reference/rwkv.ts). Activations [rows = B*L, C]
// token-major (row b*L + t), parameters per channel [C].
//
//   time_shift_forward          x_s = x·mix_s + xx·(1 - mix_s), s = k, v, r; xx_t = x_{t-1} in the sequence, xx_0 = 0
//   time_shift_backward_dx      dx_t = Σ_s dx_s[t]·mix_s + dx_s[t+1]·(1 - mix_s)            (overwrite)
//   time_shift_backward_partial per (channel, block of rows): Σ dx_s[t]·(x_t - xx_t), rows in order
//   time_shift_backward_reduce  d mix_s += Σ_block partials, blocks in order
//   wkv_forward                 one invocation per (b, c) sweeps t over the segment [t0, t1) with the log-space state
//                               (a, b, p) of the CUDA kernel, parked in `state` between segments; writes y and logD
//   wkv_backward_init           zeroes the reverse sweep's state, stores w = -exp(time_decay) and u per (b, c)
//   wkv_backward                one invocation per (b, c) sweeps t from t1-1 down to t0: gk, gv (overwrite) and the
//                               per-(b, c) sums of d time_first and d w in the state
//   wkv_backward_reduce         per channel: Σ_b in order; d time_decay += (Σ dw)·w, d time_first += Σ du
//   gate_forward / gate_backward  out = sigmoid(r)·wkv
// llvmpipe silently ends an invocation after 65535 loop iterations, hence the WKV segments (one dispatch each).
// BF16 (gate, WKV backward): RWKV_FLOAT_MODE=bf16 rounding, see src/reference/rwkv.ts.
// Exactly one PASS_* define is set per module (their binding lists differ); no entry binds more than 8 storage buffers.

struct Params {
  batch: u32,
  seqLen: u32,
  channels: u32,
  rows: u32,
  // WKV sweeps: this dispatch's tokens [t0, t1).
  t0: u32,
  t1: u32,
  // Time-shift backward: the row blocks of the mix-gradient partials.
  rowsPerBlock: u32,
  numBlocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// The CUDA kernel's "minus infinity" for the running max exponent: e^{NEG_BIG - q} underflows to 0.
const NEG_BIG = -1e38;

// Round to nearest even on the upper 16 bits of the float32 pattern (bfloat16), NaN passed through.
fn round_bf16(x: f32) -> f32 {
  let bits = bitcast<u32>(x);
  if ((bits & 0x7fffffffu) > 0x7f800000u) {
    return x;
  }
  return bitcast<f32>((bits + 0x7fffu + ((bits >> 16u) & 1u)) & 0xffff0000u);
}

fn maybe_bf16(x: f32) -> f32 {
#if BF16
  return round_bf16(x);
#else
  return x;
#endif
}

// Flat invocation index of a 1-D grid folded over x and y (grid1d).
fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * 64u;
}

fn sigmoid(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(-x));
}

#if PASS_SHIFT_FORWARD
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mixK: array<f32>;
@group(0) @binding(3) var<storage, read> mixV: array<f32>;
@group(0) @binding(4) var<storage, read> mixR: array<f32>;
@group(0) @binding(5) var<storage, read_write> xk: array<f32>;
@group(0) @binding(6) var<storage, read_write> xv: array<f32>;
@group(0) @binding(7) var<storage, read_write> xr: array<f32>;

@compute @workgroup_size(64)
fn time_shift_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  let c = idx % p.channels;
  let t = (idx / p.channels) % p.seqLen;
  let xc = x[idx];
  var xp = 0.0;
  if (t > 0u) {
    xp = x[idx - p.channels];
  }
  let mk = mixK[c];
  let mv = mixV[c];
  let mr = mixR[c];
  xk[idx] = xc * mk + xp * (1.0 - mk);
  xv[idx] = xc * mv + xp * (1.0 - mv);
  xr[idx] = xc * mr + xp * (1.0 - mr);
}
#endif

#if PASS_SHIFT_BWD_DX
@group(0) @binding(1) var<storage, read> dxk: array<f32>;
@group(0) @binding(2) var<storage, read> dxv: array<f32>;
@group(0) @binding(3) var<storage, read> dxr: array<f32>;
@group(0) @binding(4) var<storage, read> mixK: array<f32>;
@group(0) @binding(5) var<storage, read> mixV: array<f32>;
@group(0) @binding(6) var<storage, read> mixR: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(64)
fn time_shift_backward_dx(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  let c = idx % p.channels;
  let t = (idx / p.channels) % p.seqLen;
  let mk = mixK[c];
  let mv = mixV[c];
  let mr = mixR[c];
  var g = dxk[idx] * mk + dxv[idx] * mv + dxr[idx] * mr;
  // x_t is also the shifted input of token t+1 of the same sequence.
  if (t + 1u < p.seqLen) {
    let nxt = idx + p.channels;
    g += dxk[nxt] * (1.0 - mk) + dxv[nxt] * (1.0 - mv) + dxr[nxt] * (1.0 - mr);
  }
  dx[idx] = g;
}
#endif

#if PASS_SHIFT_BWD_PARTIAL
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dxk: array<f32>;
@group(0) @binding(3) var<storage, read> dxv: array<f32>;
@group(0) @binding(4) var<storage, read> dxr: array<f32>;
// [numBlocks, 3, C]: the block's Σ dx_s·(x - xx) for s = k, v, r.
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

@compute @workgroup_size(64)
fn time_shift_backward_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let block = gid.y;
  if (c >= p.channels || block >= p.numBlocks) {
    return;
  }
  let C = p.channels;
  let r0 = block * p.rowsPerBlock;
  let r1 = min(r0 + p.rowsPerBlock, p.rows);
  var pos = r0 % p.seqLen;
  var xPrev = 0.0;
  if (pos > 0u) {
    xPrev = x[(r0 - 1u) * C + c];
  }
  var sk = 0.0;
  var sv = 0.0;
  var sr = 0.0;
  for (var r = r0; r < r1; r++) {
    let idx = r * C + c;
    let xc = x[idx];
    let diff = xc - select(xPrev, 0.0, pos == 0u);
    sk = fma(dxk[idx], diff, sk);
    sv = fma(dxv[idx], diff, sv);
    sr = fma(dxr[idx], diff, sr);
    xPrev = xc;
    pos += 1u;
    if (pos == p.seqLen) {
      pos = 0u;
    }
  }
  let base = block * 3u * C + c;
  partials[base] = sk;
  partials[base + C] = sv;
  partials[base + 2u * C] = sr;
}
#endif

#if PASS_SHIFT_BWD_REDUCE
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> dMixK: array<f32>;
@group(0) @binding(3) var<storage, read_write> dMixV: array<f32>;
@group(0) @binding(4) var<storage, read_write> dMixR: array<f32>;

@compute @workgroup_size(64)
fn time_shift_backward_reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
  let e = gid.x;
  if (e >= 3u * p.channels) {
    return;
  }
  let s = e / p.channels;
  let c = e % p.channels;
  var sum = 0.0;
  for (var block = 0u; block < p.numBlocks; block++) {
    sum += partials[block * 3u * p.channels + e];
  }
  // Parameter gradients accumulate (the trainer zeroes them once per optimizer step).
  if (s == 0u) {
    dMixK[c] += sum;
  } else if (s == 1u) {
    dMixV[c] += sum;
  } else {
    dMixR[c] += sum;
  }
}
#endif

#if PASS_WKV_FORWARD
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> timeDecay: array<f32>;
@group(0) @binding(4) var<storage, read> timeFirst: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read_write> logD: array<f32>;
// [3, B*C]: a, b, p after the previous segment.
@group(0) @binding(7) var<storage, read_write> state: array<f32>;

@compute @workgroup_size(64)
fn wkv_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let bc = flat_id(gid, nwg);
  let n = p.batch * p.channels;
  if (bc >= n) {
    return;
  }
  let C = p.channels;
  let c = bc % C;
  let b = bc / C;
  let w = -exp(timeDecay[c]);
  let u = timeFirst[c];
  var num = 0.0;
  var den = 0.0;
  var mx = NEG_BIG;
  if (p.t0 > 0u) {
    num = state[bc];
    den = state[n + bc];
    mx = state[2u * n + bc];
  }
  var idx = (b * p.seqLen + p.t0) * C + c;
  for (var t = p.t0; t < p.t1; t++) {
    let kt = k[idx];
    let vt = v[idx];
    // Output: the past (scaled by e^{-mx}) plus the current token with the bonus u.
    var ww = u + kt;
    var q = max(mx, ww);
    var e1 = exp(mx - q);
    var e2 = exp(ww - q);
    let full = e1 * den + e2;
    y[idx] = (e1 * num + e2 * vt) / full;
    logD[idx] = q + log(full);
    // State: decay the past once, add the current token.
    ww = w + mx;
    q = max(ww, kt);
    e1 = exp(ww - q);
    e2 = exp(kt - q);
    num = e1 * num + e2 * vt;
    den = e1 * den + e2;
    mx = q;
    idx += C;
  }
  if (p.t1 < p.seqLen) {
    state[bc] = num;
    state[n + bc] = den;
    state[2u * n + bc] = mx;
  }
}
#endif

// Slots of the backward state [9, B*C]: the four scaled sums over later tokens, their log scale, the per-(b, c)
// gradient sums, and the channel's w and u.
const S_R = 0u;
const S_S = 1u;
const S_RP = 2u;
const S_SP = 3u;
const S_RHO = 4u;
const S_DU = 5u;
const S_DW = 6u;
const S_W = 7u;
const S_U = 8u;

#if PASS_WKV_BWD_INIT
@group(0) @binding(1) var<storage, read> timeDecay: array<f32>;
@group(0) @binding(2) var<storage, read> timeFirst: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<f32>;

@compute @workgroup_size(64)
fn wkv_backward_init(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let bc = flat_id(gid, nwg);
  let n = p.batch * p.channels;
  if (bc >= n) {
    return;
  }
  let c = bc % p.channels;
  for (var slot = 0u; slot < S_RHO; slot++) {
    state[slot * n + bc] = 0.0;
  }
  state[S_RHO * n + bc] = NEG_BIG;
  state[S_DU * n + bc] = 0.0;
  state[S_DW * n + bc] = 0.0;
  state[S_W * n + bc] = -exp(timeDecay[c]);
  state[S_U * n + bc] = timeFirst[c];
}
#endif

#if PASS_WKV_BACKWARD
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> y: array<f32>;
@group(0) @binding(4) var<storage, read> logD: array<f32>;
@group(0) @binding(5) var<storage, read> gy: array<f32>;
@group(0) @binding(6) var<storage, read_write> gk: array<f32>;
@group(0) @binding(7) var<storage, read_write> gv: array<f32>;
@group(0) @binding(8) var<storage, read_write> state: array<f32>;

// For token i, with the sums over t > i (e^{-rho} scale)
//   R = Σ gy_t e^{(t-1-i)w - logD_t}, S = Σ gy_t y_t e^{...}, R' and S' the same weighted by (t-1-i):
//   gv_i = d + e^{k_i+rho} R,  gk_i = d (v_i - y_i) + e^{k_i+rho} (v_i R - S),  d = gy_i e^{u+k_i-logD_i},
//   du += d (v_i - y_i),  dw += e^{k_i+rho} (v_i R' - S').
// Then token i is folded in for token i-1 on the new scale rho' = max(-logD_i, w + rho):
//   R' ← (R' + R) f, S' ← (S' + S) f, R ← gy_i g + R f, S ← gy_i y_i g + S f,
//   with f = e^{w+rho-rho'}, g = e^{-logD_i-rho'}.
// Every exponent is <= 0 up to rounding (rho is the largest exponent (t-1-i)w - logD_t and logD_t >= (t-1-i)w + k_i).
@compute @workgroup_size(64)
fn wkv_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let bc = flat_id(gid, nwg);
  let n = p.batch * p.channels;
  if (bc >= n) {
    return;
  }
  let C = p.channels;
  let c = bc % C;
  let b = bc / C;
  let w = state[S_W * n + bc];
  let u = state[S_U * n + bc];
  var R = state[S_R * n + bc];
  var S = state[S_S * n + bc];
  var Rp = state[S_RP * n + bc];
  var Sp = state[S_SP * n + bc];
  var rho = state[S_RHO * n + bc];
  var du = state[S_DU * n + bc];
  var dw = state[S_DW * n + bc];
  // One past the segment's last token; the loop steps back before reading.
  var idx = (b * p.seqLen + p.t1) * C + c;
  for (var t = p.t1; t > p.t0; t--) {
    idx -= C;
    let kt = k[idx];
    let vt = v[idx];
    let yt = y[idx];
    let ld = logD[idx];
    let g0 = gy[idx];
    let e = exp(kt + rho);
    let d = g0 * exp(u + kt - ld);
    let dv = d * (vt - yt);
    gv[idx] = maybe_bf16(d + e * R);
    gk[idx] = maybe_bf16(dv + e * (vt * R - S));
    du += dv;
    dw += e * (vt * Rp - Sp);
    let rhoNext = max(-ld, w + rho);
    let f = exp(w + rho - rhoNext);
    let g = exp(-ld - rhoNext);
    Rp = (Rp + R) * f;
    Sp = (Sp + S) * f;
    R = g0 * g + R * f;
    S = g0 * yt * g + S * f;
    rho = rhoNext;
  }
  state[S_R * n + bc] = R;
  state[S_S * n + bc] = S;
  state[S_RP * n + bc] = Rp;
  state[S_SP * n + bc] = Sp;
  state[S_RHO * n + bc] = rho;
  state[S_DU * n + bc] = du;
  state[S_DW * n + bc] = dw;
}
#endif

#if PASS_WKV_BWD_REDUCE
@group(0) @binding(1) var<storage, read> state: array<f32>;
@group(0) @binding(2) var<storage, read_write> dTimeDecay: array<f32>;
@group(0) @binding(3) var<storage, read_write> dTimeFirst: array<f32>;

@compute @workgroup_size(64)
fn wkv_backward_reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.channels) {
    return;
  }
  let n = p.batch * p.channels;
  var du = 0.0;
  var dw = 0.0;
  for (var b = 0u; b < p.batch; b++) {
    du += state[S_DU * n + b * p.channels + c];
    dw += state[S_DW * n + b * p.channels + c];
  }
  // w = -exp(time_decay), so d time_decay = dw · w.
  dTimeDecay[c] += maybe_bf16(dw * state[S_W * n + c]);
  dTimeFirst[c] += maybe_bf16(du);
}
#endif

#if PASS_GATE_FORWARD
@group(0) @binding(1) var<storage, read> r: array<f32>;
@group(0) @binding(2) var<storage, read> wkv: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn gate_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  out[idx] = sigmoid(r[idx]) * maybe_bf16(wkv[idx]);
}
#endif

#if PASS_GATE_BACKWARD
@group(0) @binding(1) var<storage, read> r: array<f32>;
@group(0) @binding(2) var<storage, read> wkv: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> dr: array<f32>;
@group(0) @binding(5) var<storage, read_write> dwkv: array<f32>;

@compute @workgroup_size(64)
fn gate_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  let s = sigmoid(r[idx]);
  let g = dout[idx];
  dwkv[idx] = maybe_bf16(g * s);
  dr[idx] = g * maybe_bf16(wkv[idx]) * s * (1.0 - s);
}
#endif
