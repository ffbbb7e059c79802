// Mamba mixer ops (src/ops/mamba.ts; float64 reference and the math: src/reference/mamba.ts). Activations are
// token-major [rows = B*L, width] (row b*L + t). Strided inputs/outputs are column slices of a wider matrix: element
// (row, j) of a view sits at row·stride + offset + j (in0/in1: inputs, out0/out1: outputs; see each entry point).
//
//   conv_forward            xc = SiLU(bias + Σ_k w[c, k]·x[t-3+k, c]), per element; x is view in0
//   conv_backward_data      per (channel, block of rows), a sliding window in row order: dx (view out0; overwrite or
//                           ACCUMULATE) and the block's partial Σ dpre·x[t-3+k], Σ dpre
//   conv_backward_params    dweight, dbias += Σ_block partials, blocks in order
//   softplus_forward / softplus_backward   δ = max(v, 0) + log1p(e^{-|v|}); dv = dδ·sigmoid(v)
//   gate_forward / gate_backward           out = y·SiLU(z), z is view in0, dz is view out0
//   scan_forward            one invocation per (b, c) sweeps t over [t0, t1) with the state h[NS] in registers; B is
//                           view in0, C view in1; stores the state at every segment boundary (the checkpoints)
//   scan_bwd_init           zeroes the reverse sweep's carry, stores A = -exp(A_log) and D in the workspace
//   scan_bwd_recompute      per (b, c): the segment's states h_{t0-1} .. h_{t1-1} from its checkpoint into H
//   scan_bwd_reverse        per (b, c): t from t1-1 down to t0, the adjoint g in registers: dx (overwrite or
//                           ACCUMULATE), dδ (overwrite), G = g·δ·x into the workspace, dA, dD summed in the carry
//   scan_bwd_reduce         per (b, t, n): dB = Σ_c G, dC = Σ_c dy·h, channels in order (views out0, out1)
//   scan_bwd_final          dA_log += (Σ_b dA)·A, dD += Σ_b dD, batches in order
//   rms_forward / rms_backward_dx / rms_backward_partial / rms_backward_reduce   RMSNorm (weight only), one
//                           invocation per row; dweight by row-block partials then the blocks in order
// llvmpipe silently ends an invocation after 65535 loop iterations: the scan sweeps are cut into segments (one
// dispatch each, sized by the host). Exactly one PASS_* define is set per module (their binding lists differ); no
// entry binds more than 8 storage buffers. No atomics: every sum has a fixed order (bit-identical reruns).

struct Params {
  batch: u32,
  seqLen: u32,
  channels: u32,
  rows: u32,
  // Scan sweeps: this dispatch's tokens [t0, t1), the checkpoint interval, the segment index.
  t0: u32,
  t1: u32,
  segTokens: u32,
  segment: u32,
  in0Stride: u32,
  in0Offset: u32,
  in1Stride: u32,
  in1Offset: u32,
  out0Stride: u32,
  out0Offset: u32,
  out1Stride: u32,
  out1Offset: u32,
  // Row blocks of the conv / RMSNorm parameter-gradient partials.
  rowsPerBlock: u32,
  numBlocks: u32,
  eps: f32,
  // Scan backward workspace: where G, the carry and the parameters start (H starts at 0).
  wsG: u32,
  wsCarry: u32,
  wsParams: u32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Flat invocation index of a 1-D grid folded over x and y (grid1d).
fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * 64u;
}

fn sigmoid(x: f32) -> f32 {
  return 1.0 / (1.0 + exp(-x));
}

fn silu(x: f32) -> f32 {
  return x * sigmoid(x);
}

fn silu_grad(x: f32) -> f32 {
  let s = sigmoid(x);
  return s * (1.0 + x * (1.0 - s));
}

// The conv pre-activation from the window x[t-3], x[t-2], x[t-1], x[t] at sequence position pos (older taps masked).
fn conv_window(w: vec4<f32>, bias: f32, x0: f32, x1: f32, x2: f32, x3: f32, pos: u32) -> f32 {
  var acc = bias;
  if (pos >= 3u) {
    acc = fma(w.x, x0, acc);
  }
  if (pos >= 2u) {
    acc = fma(w.y, x1, acc);
  }
  if (pos >= 1u) {
    acc = fma(w.z, x2, acc);
  }
  return fma(w.w, x3, acc);
}

#if PASS_CONV_FORWARD
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> xc: array<f32>;

// Input element (row, c) of the view; rows before the sequence start are masked by conv_window.
fn xin(row: u32, c: u32) -> f32 {
  return x[row * p.in0Stride + p.in0Offset + c];
}

@compute @workgroup_size(64)
fn conv_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  let c = idx % p.channels;
  let row = idx / p.channels;
  let pos = row % p.seqLen;
  let w = vec4<f32>(weight[c * 4u], weight[c * 4u + 1u], weight[c * 4u + 2u], weight[c * 4u + 3u]);
  var x0 = 0.0;
  var x1 = 0.0;
  var x2 = 0.0;
  if (pos >= 3u) {
    x0 = xin(row - 3u, c);
  }
  if (pos >= 2u) {
    x1 = xin(row - 2u, c);
  }
  if (pos >= 1u) {
    x2 = xin(row - 1u, c);
  }
  xc[idx] = silu(conv_window(w, bias[c], x0, x1, x2, xin(row, c), pos));
}
#endif

#if PASS_CONV_BWD_DATA
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dxc: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
// [numBlocks, C, 5]: Σ dpre·x[t-3+k] for the taps k = 0..3, Σ dpre, over the block's rows.
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;

// x at any row index (zero outside [0, rows)); the uses mask rows of other sequences.
fn xat(row: i32, c: u32) -> f32 {
  if (row < 0 || row >= i32(p.rows)) {
    return 0.0;
  }
  return x[u32(row) * p.in0Stride + p.in0Offset + c];
}

@compute @workgroup_size(64)
fn conv_backward_data(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let block = gid.y;
  if (c >= p.channels || block >= p.numBlocks) {
    return;
  }
  let C = p.channels;
  let L = p.seqLen;
  let r0 = block * p.rowsPerBlock;
  let r1 = min(r0 + p.rowsPerBlock, p.rows);
  let w = vec4<f32>(weight[c * 4u], weight[c * 4u + 1u], weight[c * 4u + 2u], weight[c * 4u + 3u]);
  let b = bias[c];
  let ir0 = i32(r0);
  // Window for row r: x at rows r-3 .. r+3 and dpre (= dxc·SiLU'(pre)) at rows r .. r+3 (0 past the last row).
  var xm3 = xat(ir0 - 3, c);
  var xm2 = xat(ir0 - 2, c);
  var xm1 = xat(ir0 - 1, c);
  var x0 = xat(ir0, c);
  var x1 = xat(ir0 + 1, c);
  var x2 = xat(ir0 + 2, c);
  var x3 = xat(ir0 + 3, c);
  var d0 = 0.0;
  var d1 = 0.0;
  var d2 = 0.0;
  var d3 = 0.0;
  if (r0 < p.rows) {
    d0 = dxc[r0 * C + c] * silu_grad(conv_window(w, b, xm3, xm2, xm1, x0, r0 % L));
  }
  if (r0 + 1u < p.rows) {
    d1 = dxc[(r0 + 1u) * C + c] * silu_grad(conv_window(w, b, xm2, xm1, x0, x1, (r0 + 1u) % L));
  }
  if (r0 + 2u < p.rows) {
    d2 = dxc[(r0 + 2u) * C + c] * silu_grad(conv_window(w, b, xm1, x0, x1, x2, (r0 + 2u) % L));
  }
  if (r0 + 3u < p.rows) {
    d3 = dxc[(r0 + 3u) * C + c] * silu_grad(conv_window(w, b, x0, x1, x2, x3, (r0 + 3u) % L));
  }
  var s0 = 0.0;
  var s1 = 0.0;
  var s2 = 0.0;
  var s3 = 0.0;
  var sb = 0.0;
  var pos = r0 % L;
  for (var r = r0; r < r1; r++) {
    // x[r] feeds the outputs r (tap 3), r+1 (tap 2), r+2 (tap 1), r+3 (tap 0) of its own sequence.
    var g = w.w * d0;
    if (pos + 1u < L) {
      g = fma(w.z, d1, g);
    }
    if (pos + 2u < L) {
      g = fma(w.y, d2, g);
    }
    if (pos + 3u < L) {
      g = fma(w.x, d3, g);
    }
    let o = r * p.out0Stride + p.out0Offset + c;
#if ACCUMULATE
    dx[o] = dx[o] + g;
#else
    dx[o] = g;
#endif
    if (pos >= 3u) {
      s0 = fma(d0, xm3, s0);
    }
    if (pos >= 2u) {
      s1 = fma(d0, xm2, s1);
    }
    if (pos >= 1u) {
      s2 = fma(d0, xm1, s2);
    }
    s3 = fma(d0, x0, s3);
    sb += d0;
    // Slide to row r + 1.
    xm3 = xm2;
    xm2 = xm1;
    xm1 = x0;
    x0 = x1;
    x1 = x2;
    x2 = x3;
    x3 = xat(i32(r) + 4, c);
    d0 = d1;
    d1 = d2;
    d2 = d3;
    d3 = 0.0;
    if (r + 4u < p.rows) {
      d3 = dxc[(r + 4u) * C + c] * silu_grad(conv_window(w, b, x0, x1, x2, x3, (r + 4u) % L));
    }
    pos += 1u;
    if (pos == L) {
      pos = 0u;
    }
  }
  let base = (block * C + c) * 5u;
  partials[base] = s0;
  partials[base + 1u] = s1;
  partials[base + 2u] = s2;
  partials[base + 3u] = s3;
  partials[base + 4u] = sb;
}
#endif

#if PASS_CONV_BWD_PARAMS
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(3) var<storage, read_write> dbias: array<f32>;

@compute @workgroup_size(64)
fn conv_backward_params(@builtin(global_invocation_id) gid: vec3<u32>) {
  let e = gid.x;
  if (e >= p.channels * 5u) {
    return;
  }
  let c = e / 5u;
  let slot = e % 5u;
  var s = 0.0;
  for (var block = 0u; block < p.numBlocks; block++) {
    s += partials[(block * p.channels + c) * 5u + slot];
  }
  // Parameter gradients accumulate (the trainer zeroes them once per optimizer step).
  if (slot < 4u) {
    dweight[c * 4u + slot] += s;
  } else {
    dbias[c] += s;
  }
}
#endif

#if PASS_SOFTPLUS_FORWARD
@group(0) @binding(1) var<storage, read> raw: array<f32>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;

// log(1 + u) for u in [0, 1], accurate for tiny u (Goldberg: log(w)·u/(w - 1) with w = 1 + u rounded).
fn log1p_small(u: f32) -> f32 {
  let w = 1.0 + u;
  if (w == 1.0) {
    return u;
  }
  return log(w) * (u / (w - 1.0));
}

@compute @workgroup_size(64)
fn softplus_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  let v = raw[idx];
  delta[idx] = max(v, 0.0) + log1p_small(exp(-abs(v)));
}
#endif

#if PASS_SOFTPLUS_BACKWARD
@group(0) @binding(1) var<storage, read> raw: array<f32>;
@group(0) @binding(2) var<storage, read> dDelta: array<f32>;
@group(0) @binding(3) var<storage, read_write> dRaw: array<f32>;

@compute @workgroup_size(64)
fn softplus_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  dRaw[idx] = dDelta[idx] * sigmoid(raw[idx]);
}
#endif

#if PASS_GATE_FORWARD
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> z: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn gate_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  let row = idx / p.channels;
  let c = idx % p.channels;
  out[idx] = y[idx] * silu(z[row * p.in0Stride + p.in0Offset + c]);
}
#endif

#if PASS_GATE_BACKWARD
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> z: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dz: array<f32>;

@compute @workgroup_size(64)
fn gate_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  let row = idx / p.channels;
  let c = idx % p.channels;
  let zv = z[row * p.in0Stride + p.in0Offset + c];
  let s = sigmoid(zv);
  let g = dout[idx];
  dy[idx] = g * (zv * s);
  dz[row * p.out0Stride + p.out0Offset + c] = g * y[idx] * (s * (1.0 + zv * (1.0 - s)));
}
#endif

// ---------------------------------------------------------------------------------------------------------------------
// Selective scan. NS = d_state (a define: the state lives in registers). Layouts with BC = B·C, bc = b·C + c:
//   checkpoints [segments - 1, NS, BC]: slot s - 1 = the state before segment s (s·segTokens tokens in);
//   workspace: H [segTokens + 1, NS, BC] at 0 (slot 0 = h_{t0-1}, slot 1 + i = h_{t0+i}), G [segTokens, NS, BC] at
//   wsG, the carry at wsCarry (g·a [NS, BC], dA [NS, BC], dD [BC], the open block's dA [NS, BC] and dD [BC]), A [C, NS]
//   and D [C] at wsParams.
const SUM_BLOCK = 64u;
// One scan step, shared by the forward and the backward's recompute so that both produce bit-identical states.
fn scan_step(h: f32, dt: f32, a: f32, dtx: f32, b: f32) -> f32 {
  return fma(exp(dt * a), h, dtx * b);
}

#if PASS_SCAN_FORWARD
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> delta: array<f32>;
@group(0) @binding(3) var<storage, read> A_log: array<f32>;
@group(0) @binding(4) var<storage, read> Bm: array<f32>;
@group(0) @binding(5) var<storage, read> Cm: array<f32>;
@group(0) @binding(6) var<storage, read> D: array<f32>;
@group(0) @binding(7) var<storage, read_write> y: array<f32>;
@group(0) @binding(8) var<storage, read_write> checkpoints: array<f32>;

@compute @workgroup_size(64)
fn scan_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let bc = flat_id(gid, nwg);
  let BC = p.batch * p.channels;
  if (bc >= BC) {
    return;
  }
  let C = p.channels;
  let c = bc % C;
  let b = bc / C;
  var A: array<f32, NS>;
  var h: array<f32, NS>;
  let cp = (p.t0 / p.segTokens) * NS;
  for (var n = 0u; n < NS; n++) {
    A[n] = -exp(A_log[c * NS + n]);
    h[n] = 0.0;
    if (p.t0 > 0u) {
      h[n] = checkpoints[(cp - NS + n) * BC + bc];
    }
  }
  let Dc = D[c];
  for (var t = p.t0; t < p.t1; t++) {
    let row = b * p.seqLen + t;
    let i = row * C + c;
    let dt = delta[i];
    let xv = x[i];
    let dtx = dt * xv;
    let bBase = row * p.in0Stride + p.in0Offset;
    let cBase = row * p.in1Stride + p.in1Offset;
    var acc = 0.0;
    for (var n = 0u; n < NS; n++) {
      h[n] = scan_step(h[n], dt, A[n], dtx, Bm[bBase + n]);
      acc = fma(Cm[cBase + n], h[n], acc);
    }
    y[i] = fma(Dc, xv, acc);
    // The state after token t starts segment (t+1)/segTokens: a checkpoint for the backward.
    let next = t + 1u;
    if (next % p.segTokens == 0u && next < p.seqLen) {
      let slot = (next / p.segTokens - 1u) * NS;
      for (var n = 0u; n < NS; n++) {
        checkpoints[(slot + n) * BC + bc] = h[n];
      }
    }
  }
}
#endif

#if PASS_SCAN_BWD_INIT
@group(0) @binding(1) var<storage, read> A_log: array<f32>;
@group(0) @binding(2) var<storage, read> D: array<f32>;
@group(0) @binding(3) var<storage, read_write> ws: array<f32>;

@compute @workgroup_size(64)
fn scan_bwd_init(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let bc = flat_id(gid, nwg);
  let BC = p.batch * p.channels;
  if (bc >= BC) {
    return;
  }
  for (var n = 0u; n < 3u * NS + 2u; n++) {
    ws[p.wsCarry + n * BC + bc] = 0.0;
  }
  if (bc < p.channels) {
    for (var n = 0u; n < NS; n++) {
      ws[p.wsParams + bc * NS + n] = -exp(A_log[bc * NS + n]);
    }
    ws[p.wsParams + p.channels * NS + bc] = D[bc];
  }
}
#endif

#if PASS_SCAN_BWD_RECOMPUTE
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> delta: array<f32>;
@group(0) @binding(3) var<storage, read> Bm: array<f32>;
@group(0) @binding(4) var<storage, read> checkpoints: array<f32>;
@group(0) @binding(5) var<storage, read_write> ws: array<f32>;

@compute @workgroup_size(64)
fn scan_bwd_recompute(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let bc = flat_id(gid, nwg);
  let BC = p.batch * p.channels;
  if (bc >= BC) {
    return;
  }
  let C = p.channels;
  let c = bc % C;
  let b = bc / C;
  var A: array<f32, NS>;
  var h: array<f32, NS>;
  for (var n = 0u; n < NS; n++) {
    A[n] = ws[p.wsParams + c * NS + n];
    h[n] = 0.0;
    if (p.segment > 0u) {
      h[n] = checkpoints[((p.segment - 1u) * NS + n) * BC + bc];
    }
    ws[n * BC + bc] = h[n];
  }
  for (var t = p.t0; t < p.t1; t++) {
    let row = b * p.seqLen + t;
    let i = row * C + c;
    let dt = delta[i];
    let dtx = dt * x[i];
    let bBase = row * p.in0Stride + p.in0Offset;
    let slot = (t - p.t0 + 1u) * NS;
    for (var n = 0u; n < NS; n++) {
      h[n] = scan_step(h[n], dt, A[n], dtx, Bm[bBase + n]);
      ws[(slot + n) * BC + bc] = h[n];
    }
  }
}
#endif

#if PASS_SCAN_BWD_REVERSE
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> delta: array<f32>;
@group(0) @binding(3) var<storage, read> Bm: array<f32>;
@group(0) @binding(4) var<storage, read> Cm: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> ws: array<f32>;
@group(0) @binding(7) var<storage, read_write> dx: array<f32>;
@group(0) @binding(8) var<storage, read_write> dDelta: array<f32>;

// Token t with g_t = C_t·dy_t + a_{t+1}·g_{t+1} (the carry holds a_{t+1}·g_{t+1}) and h_{t-1} = H[t - t0]:
//   dx_t = dy_t·D + Σ_n g_t δ_t B_t,  dδ_t = Σ_n g_t (A a_t h_{t-1} + B_t x_t),  G_t = g_t δ_t x_t (for dB),
//   dA += g_t δ_t a_t h_{t-1},  dD += dy_t x_t.
// dA and dD are summed per block of SUM_BLOCK tokens (absolute positions, so the order does not depend on the
// segments) and the block sums added to the totals: rounding error ~(SUM_BLOCK + L/SUM_BLOCK)·ε instead of L·ε.
@compute @workgroup_size(64)
fn scan_bwd_reverse(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let bc = flat_id(gid, nwg);
  let BC = p.batch * p.channels;
  if (bc >= BC) {
    return;
  }
  let C = p.channels;
  let c = bc % C;
  let b = bc / C;
  var A: array<f32, NS>;
  var ga: array<f32, NS>;
  var dA: array<f32, NS>;
  var dAPart: array<f32, NS>;
  for (var n = 0u; n < NS; n++) {
    A[n] = ws[p.wsParams + c * NS + n];
    ga[n] = ws[p.wsCarry + n * BC + bc];
    dA[n] = ws[p.wsCarry + (NS + n) * BC + bc];
    dAPart[n] = ws[p.wsCarry + (2u * NS + 1u + n) * BC + bc];
  }
  let Dc = ws[p.wsParams + C * NS + c];
  var dD = ws[p.wsCarry + 2u * NS * BC + bc];
  var dDPart = ws[p.wsCarry + (3u * NS + 1u) * BC + bc];
  for (var t = p.t1; t > p.t0; t--) {
    let tt = t - 1u - p.t0;
    let row = b * p.seqLen + t - 1u;
    let i = row * C + c;
    let dt = delta[i];
    let xv = x[i];
    let dyv = dy[i];
    let dtx = dt * xv;
    let bBase = row * p.in0Stride + p.in0Offset;
    let cBase = row * p.in1Stride + p.in1Offset;
    var dxv = dyv * Dc;
    var ddt = 0.0;
    for (var n = 0u; n < NS; n++) {
      let g = fma(Cm[cBase + n], dyv, ga[n]);
      let a = exp(dt * A[n]);
      let ah = a * ws[(tt * NS + n) * BC + bc];
      let bn = Bm[bBase + n];
      ddt = fma(g, fma(A[n], ah, bn * xv), ddt);
      dxv = fma(g * dt, bn, dxv);
      dAPart[n] = fma(g * dt, ah, dAPart[n]);
      ws[p.wsG + (tt * NS + n) * BC + bc] = g * dtx;
      ga[n] = a * g;
    }
    dDPart = fma(dyv, xv, dDPart);
    // Tokens [t - 1, t - 1 + SUM_BLOCK) are done: fold their partial sums into the totals.
    if ((t - 1u) % SUM_BLOCK == 0u) {
      for (var n = 0u; n < NS; n++) {
        dA[n] += dAPart[n];
        dAPart[n] = 0.0;
      }
      dD += dDPart;
      dDPart = 0.0;
    }
#if ACCUMULATE
    dx[i] = dx[i] + dxv;
#else
    dx[i] = dxv;
#endif
    dDelta[i] = ddt;
  }
  for (var n = 0u; n < NS; n++) {
    ws[p.wsCarry + n * BC + bc] = ga[n];
    ws[p.wsCarry + (NS + n) * BC + bc] = dA[n];
    ws[p.wsCarry + (2u * NS + 1u + n) * BC + bc] = dAPart[n];
  }
  ws[p.wsCarry + 2u * NS * BC + bc] = dD;
  ws[p.wsCarry + (3u * NS + 1u) * BC + bc] = dDPart;
}
#endif

#if PASS_SCAN_BWD_REDUCE
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> ws: array<f32>;
@group(0) @binding(3) var<storage, read_write> dB: array<f32>;
#if !SHARED_DBC
@group(0) @binding(4) var<storage, read_write> dC: array<f32>;
#endif

// One invocation per (b, token of the segment, n); the channels are summed in order.
@compute @workgroup_size(64)
fn scan_bwd_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = flat_id(gid, nwg);
  let span = p.t1 - p.t0;
  if (e >= p.batch * span * NS) {
    return;
  }
  let C = p.channels;
  let BC = p.batch * C;
  let n = e % NS;
  let tt = (e / NS) % span;
  let b = e / (NS * span);
  let row = b * p.seqLen + p.t0 + tt;
  var sB = 0.0;
  var sC = 0.0;
  let gBase = p.wsG + (tt * NS + n) * BC + b * C;
  let hBase = ((tt + 1u) * NS + n) * BC + b * C;
  for (var c = 0u; c < C; c++) {
    sB += ws[gBase + c];
    sC = fma(dy[row * C + c], ws[hBase + c], sC);
  }
  dB[row * p.out0Stride + p.out0Offset + n] = sB;
#if SHARED_DBC
  dB[row * p.out1Stride + p.out1Offset + n] = sC;
#else
  dC[row * p.out1Stride + p.out1Offset + n] = sC;
#endif
}
#endif

#if PASS_SCAN_BWD_FINAL
@group(0) @binding(1) var<storage, read> ws: array<f32>;
@group(0) @binding(2) var<storage, read_write> dA_log: array<f32>;
@group(0) @binding(3) var<storage, read_write> dD: array<f32>;

@compute @workgroup_size(64)
fn scan_bwd_final(@builtin(global_invocation_id) gid: vec3<u32>) {
  let e = gid.x;
  let C = p.channels;
  let BC = p.batch * C;
  if (e >= C * (NS + 1u)) {
    return;
  }
  if (e < C * NS) {
    let c = e / NS;
    let n = e % NS;
    var s = 0.0;
    for (var b = 0u; b < p.batch; b++) {
      s += ws[p.wsCarry + (NS + n) * BC + b * C + c];
    }
    // A = -exp(A_log), so dA_log = dA·A.
    dA_log[e] += s * ws[p.wsParams + e];
  } else {
    let c = e - C * NS;
    var s = 0.0;
    for (var b = 0u; b < p.batch; b++) {
      s += ws[p.wsCarry + 2u * NS * BC + b * C + c];
    }
    dD[c] += s;
  }
}
#endif

// ---------------------------------------------------------------------------------------------------------------------
// RMSNorm over rows of width `channels`: y = x·rstd·w, rstd = 1/sqrt(mean(x²) + eps).

#if PASS_RMS_FORWARD
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;

@compute @workgroup_size(64)
fn rms_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = flat_id(gid, nwg);
  if (r >= p.rows) {
    return;
  }
  let W = p.channels;
  let base = r * W;
  var sq = 0.0;
  for (var c = 0u; c < W; c++) {
    let v = x[base + c];
    sq = fma(v, v, sq);
  }
  let s = inverseSqrt(sq / f32(W) + p.eps);
  rstd[r] = s;
  for (var c = 0u; c < W; c++) {
    y[base + c] = x[base + c] * s * weight[c];
  }
}
#endif

#if PASS_RMS_BWD_DX
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

// dx = rstd·(g - xhat·mean(g·xhat)), g = dy·w, xhat = x·rstd.
@compute @workgroup_size(64)
fn rms_backward_dx(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = flat_id(gid, nwg);
  if (r >= p.rows) {
    return;
  }
  let W = p.channels;
  let base = r * W;
  let s = rstd[r];
  var sum = 0.0;
  for (var c = 0u; c < W; c++) {
    sum = fma(dy[base + c] * weight[c], x[base + c] * s, sum);
  }
  let m = sum / f32(W);
  for (var c = 0u; c < W; c++) {
    let v = s * (dy[base + c] * weight[c] - x[base + c] * s * m);
#if ACCUMULATE
    dx[base + c] = dx[base + c] + v;
#else
    dx[base + c] = v;
#endif
  }
}
#endif

#if PASS_RMS_BWD_PARTIAL
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
// [numBlocks, width]: Σ dy·xhat over the block's rows.
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;

@compute @workgroup_size(64)
fn rms_backward_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let block = gid.y;
  if (c >= p.channels || block >= p.numBlocks) {
    return;
  }
  let W = p.channels;
  let r0 = block * p.rowsPerBlock;
  let r1 = min(r0 + p.rowsPerBlock, p.rows);
  var s = 0.0;
  for (var r = r0; r < r1; r++) {
    s = fma(dy[r * W + c], x[r * W + c] * rstd[r], s);
  }
  partials[block * W + c] = s;
}
#endif

#if PASS_RMS_BWD_REDUCE
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> dweight: array<f32>;

@compute @workgroup_size(64)
fn rms_backward_reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.channels) {
    return;
  }
  var s = 0.0;
  for (var block = 0u; block < p.numBlocks; block++) {
    s += partials[block * p.channels + c];
  }
  dweight[c] += s;
}
#endif
