// Hyena mixer ops (src/ops/hyena.ts; float64 reference and the math: src/reference/hyena.ts). Activations are
// token-major [rows = B*L, width] (row b*L + t). Strided inputs/outputs are column slices of a wider matrix: element
// (row, j) of a view sits at row·stride + offset + j (in0/in1: inputs, out0/out1: outputs; see each entry point).
//
//   short_forward          uc = bias + Σ_k w[c, k]·u[t-2+k, c], per element; u is view in0, uc view out0
//   short_backward_data    per (channel, block of rows): du (view out0; overwrite or ACCUMULATE) and the block's
//                          partials Σ dy·u[t-2+k] (k = 0..2), Σ dy
//   short_backward_params  dweight, dbias += Σ_blocks partials, blocks in order
//   gate_forward           out (view out0) = a (view in0) ⊙ b (view in1)
//   gate_backward          da (view out0) = dout·b, db (view out1) = dout·a; SHARED_OUT: da and db are column slices
//                          of one buffer (bound once)
//   sin_forward            y = sin(freq ⊙ x), rows of width p.channels
//   sin_backward_data      per (column, block of rows): dx = dy·freq·cos(freq·x) (overwrite) and the block's partial
//                          Σ dy·x·cos(freq·x)
//   sin_backward_reduce    dfreq += Σ_blocks partials, blocks in order
//   modulate               out[n, c] = in[n, c]·exp(-t_n·|δ_c|) with t_n = n·tScale, δ_c = deltaMin + c·deltaStep
//                          (the forward h = hraw·decay and the backward dhraw = dh·decay alike)
//   long_conv              out[t] = Σ_{s ∈ [s0, s1), s ≤ t} h[t-s]·x[s] (+ bias·x[t] when withBias, + out[t] when
//                          addOld), x view in0, out view out0; REVERSE mirrors every position (t → L-1-t): the
//                          backward's dv[s] = Σ_{t≥s} h[t-s]·dy[t] + bias·dy[s]
//   long_conv_dh           P[b, l] (+)= Σ_{t ∈ [s0, s1), t ≥ l} dy[b, t]·v[b, t-l], dy view in0, v view in1
//   long_conv_reduce       dh[l] = Σ_b P[b, l] (overwrite), batches in order; dbias += dh[0] (the lag-0 term
//                          Σ_{b,t} dy·v)
// The long conv kernels are register-blocked for CPU rasterisers: an invocation owns TB consecutive outputs (TB lags
// for long_conv_dh) of one channel group (VEC4: 4 channels as one vec4, else 1) and sweeps the steps in chunks of TB,
// keeping a sliding window of 2·TB - 1 filter values (v values for dh) in registers: per chunk TB new window loads and
// TB step loads feed TB² fmas. llvmpipe silently ends an invocation after 65535 loop iterations: the host cuts the
// steps into segments [s0, s1), one dispatch each, in order. Exactly one PASS_* define is set per module; no entry
// binds more than 8 storage buffers. No atomics: every sum has a fixed order (bit-identical reruns).

struct Params {
  batch: u32,
  seqLen: u32,
  channels: u32,
  rows: u32,
  // Long conv: this dispatch's steps [s0, s1); whether it adds the D term and the value already in the output.
  s0: u32,
  s1: u32,
  withBias: u32,
  addOld: u32,
  in0Stride: u32,
  in0Offset: u32,
  in1Stride: u32,
  in1Offset: u32,
  out0Stride: u32,
  out0Offset: u32,
  out1Stride: u32,
  out1Offset: u32,
  // Row blocks of the parameter-gradient partials; output blocks per sequence and channel groups of the long conv.
  rowsPerBlock: u32,
  numBlocks: u32,
  blocks: u32,
  groups: u32,
  // Modulation: t_n = n·tScale, δ_c = deltaMin + c·deltaStep.
  tScale: f32,
  deltaMin: f32,
  deltaStep: f32,
  _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// Flat invocation index of a 1-D grid folded over x and y (grid1d).
fn flat_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return gid.x + gid.y * nwg.x * 64u;
}

// ---------------------------------------------------------------------------------------------------------------------
// Short filter (K = 3 taps, tap 0 multiplies u[t-2])

#if PASS_SHORT_FORWARD
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> uc: array<f32>;

fn uin(row: u32, c: u32) -> f32 {
  return u[row * p.in0Stride + p.in0Offset + c];
}

@compute @workgroup_size(64)
fn short_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  let c = idx % p.channels;
  let row = idx / p.channels;
  let pos = row % p.seqLen;
  var acc = bias[c];
  if (pos >= 2u) {
    acc = fma(weight[c * 3u], uin(row - 2u, c), acc);
  }
  if (pos >= 1u) {
    acc = fma(weight[c * 3u + 1u], uin(row - 1u, c), acc);
  }
  acc = fma(weight[c * 3u + 2u], uin(row, c), acc);
  uc[row * p.out0Stride + p.out0Offset + c] = acc;
}
#endif

#if PASS_SHORT_BWD_DATA
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> du: array<f32>;
// [numBlocks, C, 4]: Σ dy·u[t-2+k] for the taps k = 0..2, Σ dy, over the block's rows.
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

@compute @workgroup_size(64)
fn short_backward_data(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let block = gid.y;
  if (c >= p.channels || block >= p.numBlocks) {
    return;
  }
  let C = p.channels;
  let L = p.seqLen;
  let r0 = block * p.rowsPerBlock;
  let r1 = min(r0 + p.rowsPerBlock, p.rows);
  let w0 = weight[c * 3u];
  let w1 = weight[c * 3u + 1u];
  let w2 = weight[c * 3u + 2u];
  var s0 = 0.0;
  var s1 = 0.0;
  var s2 = 0.0;
  var sb = 0.0;
  for (var r = r0; r < r1; r++) {
    let pos = r % L;
    let g = dy[r * C + c];
    // u[r] feeds the outputs r (tap 2), r+1 (tap 1), r+2 (tap 0) of its own sequence.
    var acc = w2 * g;
    if (pos + 1u < L) {
      acc = fma(w1, dy[(r + 1u) * C + c], acc);
    }
    if (pos + 2u < L) {
      acc = fma(w0, dy[(r + 2u) * C + c], acc);
    }
    let o = r * p.out0Stride + p.out0Offset + c;
#if ACCUMULATE
    du[o] = du[o] + acc;
#else
    du[o] = acc;
#endif
    let ui = r * p.in0Stride + p.in0Offset + c;
    if (pos >= 2u) {
      s0 = fma(g, u[ui - 2u * p.in0Stride], s0);
    }
    if (pos >= 1u) {
      s1 = fma(g, u[ui - p.in0Stride], s1);
    }
    s2 = fma(g, u[ui], s2);
    sb += g;
  }
  let base = (block * C + c) * 4u;
  partials[base] = s0;
  partials[base + 1u] = s1;
  partials[base + 2u] = s2;
  partials[base + 3u] = sb;
}
#endif

#if PASS_SHORT_BWD_PARAMS
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(3) var<storage, read_write> dbias: array<f32>;

@compute @workgroup_size(64)
fn short_backward_params(@builtin(global_invocation_id) gid: vec3<u32>) {
  let e = gid.x;
  if (e >= p.channels * 4u) {
    return;
  }
  let c = e / 4u;
  let slot = e % 4u;
  var s = 0.0;
  for (var block = 0u; block < p.numBlocks; block++) {
    s += partials[(block * p.channels + c) * 4u + slot];
  }
  if (slot == 3u) {
    dbias[c] = dbias[c] + s;
  } else {
    dweight[c * 3u + slot] = dweight[c * 3u + slot] + s;
  }
}
#endif

// ---------------------------------------------------------------------------------------------------------------------
// Gates

#if PASS_GATE_FORWARD
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn gate_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  let row = idx / p.channels;
  let c = idx % p.channels;
  out[row * p.out0Stride + p.out0Offset + c] = a[row * p.in0Stride + p.in0Offset + c] *
    b[row * p.in1Stride + p.in1Offset + c];
}
#endif

#if PASS_GATE_BACKWARD
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> da: array<f32>;
#if !SHARED_OUT
@group(0) @binding(5) var<storage, read_write> db: array<f32>;
#endif

@compute @workgroup_size(64)
fn gate_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  let row = idx / p.channels;
  let c = idx % p.channels;
  let g = dout[idx];
  let ga = g * b[row * p.in1Stride + p.in1Offset + c];
  let gb = g * a[row * p.in0Stride + p.in0Offset + c];
  let oa = row * p.out0Stride + p.out0Offset + c;
  let ob = row * p.out1Stride + p.out1Offset + c;
#if ACCUMULATE
  da[oa] = da[oa] + ga;
#if SHARED_OUT
  da[ob] = da[ob] + gb;
#else
  db[ob] = db[ob] + gb;
#endif
#else
  da[oa] = ga;
#if SHARED_OUT
  da[ob] = gb;
#else
  db[ob] = gb;
#endif
#endif
}
#endif

// ---------------------------------------------------------------------------------------------------------------------
// Sin activation of the implicit filter (one freq shared by its three sin layers)

#if PASS_SIN_FORWARD
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> freq: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn sin_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  y[idx] = sin(freq[idx % p.channels] * x[idx]);
}
#endif

#if PASS_SIN_BWD_DATA
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> freq: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;
// [numBlocks, F]: Σ dy·x·cos(freq·x) over the block's rows.
@group(0) @binding(5) var<storage, read_write> partials: array<f32>;

@compute @workgroup_size(64)
fn sin_backward_data(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let block = gid.y;
  if (j >= p.channels || block >= p.numBlocks) {
    return;
  }
  let F = p.channels;
  let f = freq[j];
  let r0 = block * p.rowsPerBlock;
  let r1 = min(r0 + p.rowsPerBlock, p.rows);
  var s = 0.0;
  for (var r = r0; r < r1; r++) {
    let i = r * F + j;
    let xv = x[i];
    let gc = dy[i] * cos(f * xv);
    dx[i] = gc * f;
    s = fma(gc, xv, s);
  }
  partials[block * F + j] = s;
}
#endif

#if PASS_SIN_BWD_REDUCE
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> dfreq: array<f32>;

@compute @workgroup_size(64)
fn sin_backward_reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= p.channels) {
    return;
  }
  var s = 0.0;
  for (var block = 0u; block < p.numBlocks; block++) {
    s += partials[block * p.channels + j];
  }
  dfreq[j] = dfreq[j] + s;
}
#endif

// ---------------------------------------------------------------------------------------------------------------------
// Exponential modulation

#if PASS_MODULATE
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn modulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  let n = idx / p.channels;
  let c = idx % p.channels;
  let t = f32(n) * p.tScale;
  let delta = p.deltaMin + f32(c) * p.deltaStep;
  let v = src[idx] * exp(-t * abs(delta));
#if ACCUMULATE
  dst[idx] = dst[idx] + v;
#else
  dst[idx] = v;
#endif
}
#endif

// ---------------------------------------------------------------------------------------------------------------------
// Long convolution, direct form. Channel groups of W channels: V = vec4<f32> (VEC4: channels, view strides and offsets
// multiples of 4; view indices are in units of V) or f32. TB outputs per invocation.

#if TB
#if VEC4
alias V = vec4<f32>;
const W = 4u;
#else
alias V = f32;
const W = 1u;
#endif

const WIN = 2u * TB - 1u;
#endif

#if PASS_LONG_CONV
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read> h: array<V>;
@group(0) @binding(3) var<storage, read> bias: array<V>;
@group(0) @binding(4) var<storage, read_write> out: array<V>;

// Physical sequence position of logical position i (REVERSE: the backward's anti-causal sum as a causal one).
fn phys(i: u32) -> u32 {
#if REVERSE
  return p.seqLen - 1u - i;
#else
  return i;
#endif
}

// The filter at `lag` (0 outside [0, L): negative lags are the causal mask).
fn h_at(lag: i32, g: u32) -> V {
  if (lag < 0 || lag >= i32(p.seqLen)) {
    return V(0.0);
  }
  return h[u32(lag) * p.groups + g];
}

fn x_at(row: u32, g: u32) -> V {
  return x[(row * p.in0Stride + p.in0Offset) / W + g];
}

@compute @workgroup_size(64)
fn long_conv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  let G = p.groups;
  if (idx >= G * p.blocks * p.batch) {
    return;
  }
  let g = idx % G;
  let blk = (idx / G) % p.blocks;
  let b = idx / (G * p.blocks);
  let L = p.seqLen;
  let o0 = blk * TB;
  // Steps past the block's last output only meet negative lags.
  let sEnd = min(p.s1, min(o0 + TB, L));
  if (p.s0 >= sEnd && p.withBias == 0u) {
    return;
  }
  let rowBase = b * L;
  var acc: array<V, TB>;
  // hw[m] = h at lag (o0 - sb) + m - (TB - 1): output j and step sb + i meet at m = j - i + TB - 1.
  var hw: array<V, WIN>;
  var sb = p.s0;
  let base = i32(o0) - i32(TB - 1u);
  for (var m = 0u; m < WIN; m++) {
    hw[m] = h_at(base - i32(sb) + i32(m), g);
  }
  loop {
    if (sb >= sEnd) {
      break;
    }
    for (var i = 0u; i < TB; i++) {
      let s = sb + i;
      var xv = V(0.0);
      if (s < sEnd) {
        xv = x_at(rowBase + phys(s), g);
      }
      for (var j = 0u; j < TB; j++) {
        acc[j] = fma(hw[j + TB - 1u - i], xv, acc[j]);
      }
    }
    sb += TB;
    if (sb >= sEnd) {
      break;
    }
    // Slide by TB: the lower TB - 1 values move up, TB new lags enter at the bottom.
    for (var k = 0u; k + 1u < TB; k++) {
      hw[WIN - 1u - k] = hw[WIN - 1u - k - TB];
    }
    for (var m = 0u; m < TB; m++) {
      hw[m] = h_at(base - i32(sb) + i32(m), g);
    }
  }
  var bv = V(0.0);
  if (p.withBias != 0u) {
    bv = bias[g];
  }
  for (var j = 0u; j < TB; j++) {
    let t = o0 + j;
    if (t < L) {
      let row = rowBase + phys(t);
      var r = acc[j];
      if (p.withBias != 0u) {
        r = fma(bv, x_at(row, g), r);
      }
      let o = (row * p.out0Stride + p.out0Offset) / W + g;
      if (p.addOld != 0u) {
        r = out[o] + r;
      }
      out[o] = r;
    }
  }
}
#endif

#if PASS_LONG_CONV_DH
@group(0) @binding(1) var<storage, read> dy: array<V>;
@group(0) @binding(2) var<storage, read> v: array<V>;
// [B, L, C]: each example's share of dh.
@group(0) @binding(3) var<storage, read_write> partial: array<V>;

// v[b, pos] (0 outside [0, L): negative positions are the causal mask).
fn v_at(rowBase: u32, pos: i32, g: u32) -> V {
  if (pos < 0 || pos >= i32(p.seqLen)) {
    return V(0.0);
  }
  return v[((rowBase + u32(pos)) * p.in1Stride + p.in1Offset) / W + g];
}

@compute @workgroup_size(64)
fn long_conv_dh(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  let G = p.groups;
  if (idx >= G * p.blocks * p.batch) {
    return;
  }
  let g = idx % G;
  let blk = (idx / G) % p.blocks;
  let b = idx / (G * p.blocks);
  let L = p.seqLen;
  let l0 = blk * TB;
  let rowBase = b * L;
  // Steps t < l0 only meet negative positions t - l.
  let tEnd = min(p.s1, L);
  var tb = max(p.s0, l0);
  if (tb >= tEnd && p.addOld != 0u) {
    return;
  }
  var acc: array<V, TB>;
  // vw[m] = v at position (tb - l0) + m - (TB - 1): lag l0 + j and step tb + i meet at m = i - j + TB - 1.
  var vw: array<V, WIN>;
  let base = -i32(l0) - i32(TB - 1u);
  for (var m = 0u; m < WIN; m++) {
    vw[m] = v_at(rowBase, base + i32(tb) + i32(m), g);
  }
  loop {
    if (tb >= tEnd) {
      break;
    }
    for (var i = 0u; i < TB; i++) {
      let t = tb + i;
      var gv = V(0.0);
      if (t < tEnd) {
        gv = dy[((rowBase + t) * p.in0Stride + p.in0Offset) / W + g];
      }
      for (var j = 0u; j < TB; j++) {
        acc[j] = fma(gv, vw[i + TB - 1u - j], acc[j]);
      }
    }
    tb += TB;
    if (tb >= tEnd) {
      break;
    }
    // Slide by TB: the upper TB - 1 values move down, TB new positions enter at the top.
    for (var k = 0u; k + 1u < TB; k++) {
      vw[k] = vw[k + TB];
    }
    for (var m = TB - 1u; m < WIN; m++) {
      vw[m] = v_at(rowBase, base + i32(tb) + i32(m), g);
    }
  }
  for (var j = 0u; j < TB; j++) {
    let l = l0 + j;
    if (l < L) {
      let o = (rowBase + l) * G + g;
      if (p.addOld != 0u) {
        partial[o] = partial[o] + acc[j];
      } else {
        partial[o] = acc[j];
      }
    }
  }
}
#endif

#if PASS_LONG_CONV_REDUCE
@group(0) @binding(1) var<storage, read> partial: array<V>;
@group(0) @binding(2) var<storage, read_write> dh: array<V>;
@group(0) @binding(3) var<storage, read_write> dbias: array<V>;

@compute @workgroup_size(64)
fn long_conv_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = flat_id(gid, nwg);
  let G = p.groups;
  let L = p.seqLen;
  if (e >= L * G) {
    return;
  }
  var s = V(0.0);
  for (var b = 0u; b < p.batch; b++) {
    s += partial[b * L * G + e];
  }
  dh[e] = s;
  if (e < G) {
    dbias[e] = dbias[e] + s;
  }
}
#endif

// ---------------------------------------------------------------------------------------------------------------------
// Long convolution, FFT form (the "fft" variant). Spectra are complex vec2<f32> in [N, S] layout (frequency k, sequence
// j at k·S + j; N = a power of two ≥ 2L - 1, so the circular convolution of the zero-padded sequences is the linear
// one on [0, L)). Two examples 2q, 2q+1 of channel c share the filter, so they travel as one complex sequence
// v[2q] + i·v[2q+1] (sequence j = q·d + c, S = ⌈B/2⌉·d): the real and imaginary parts of the result are their two
// outputs. Uniform fields: s0 = N, s1 = S, blocks = the stage's stride, groups = pairs, tScale = 1/N.
//   fft_pack_pairs     X[k, q·d + c] = (x[2q, k, c], x[2q+1, k, c]) for k < L, 0 beyond; x is view in0
//   fft_pack_filter    X[k, c] = (h[k, c], 0) for k < L, 0 beyond
//   fft_stage          one Stockham stage of stride s = 2^blocks, radix 4 (RADIX4: x[r + k·N/4], k < 4, with
//                      r = q + s·p, into y[q + s·(4p + k)] times e^{-2πi·k·p·s/N}) or 2 (x[r], x[r + N/2] into
//                      y[q + s·2p], y[q + s·(2p + 1)]); twiddles from the table; INVERSE: conjugate twiddles and W4
//   fft_mul            Y[k, j] = X[k, j]·H[k, c]/N (CONJ: conj(H), the backward's correlation)
//   fft_unpack_pairs   out[b, t, c] = Re/Im X[t, (b/2)·d + c] + bias·x[b, t, c] (+ out when addOld); x view in1,
//                      out view out0
//   fft_pair_reduce    G[k, c] = Σ_q A[k, q·d + c]·conj(B[k, q·d + c])/N, pairs in order: per pair the spectrum of
//                      corr(dy_2q, v_2q) + corr(dy_2q+1, v_2q+1) in its real part (the imaginary cross terms are
//                      Hermitian and land in the imaginary part of the inverse)
//   fft_unpack_filter  dh[l, c] = Re X[l, c] (overwrite); dbias += dh[0]

fn cmul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  return vec2<f32>(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}

#if PASS_FFT_PACK_PAIRS
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> spec: array<vec2<f32>>;

@compute @workgroup_size(64)
fn fft_pack_pairs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  let S = p.s1;
  if (idx >= p.s0 * S) {
    return;
  }
  let j = idx % S;
  let k = idx / S;
  let c = j % p.channels;
  let b0 = 2u * (j / p.channels);
  var z = vec2<f32>(0.0);
  if (k < p.seqLen) {
    z.x = x[(b0 * p.seqLen + k) * p.in0Stride + p.in0Offset + c];
    if (b0 + 1u < p.batch) {
      z.y = x[((b0 + 1u) * p.seqLen + k) * p.in0Stride + p.in0Offset + c];
    }
  }
  spec[idx] = z;
}
#endif

#if PASS_FFT_PACK_FILTER
@group(0) @binding(1) var<storage, read> h: array<f32>;
@group(0) @binding(2) var<storage, read_write> spec: array<vec2<f32>>;

@compute @workgroup_size(64)
fn fft_pack_filter(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.s0 * p.channels) {
    return;
  }
  var z = vec2<f32>(0.0);
  if (idx / p.channels < p.seqLen) {
    z.x = h[idx];
  }
  spec[idx] = z;
}
#endif

#if PASS_FFT_STAGE
@group(0) @binding(1) var<storage, read> src: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec2<f32>>;
// e^{-2πi·j/N}, j < N.
@group(0) @binding(3) var<storage, read> twiddle: array<vec2<f32>>;

// Multiplication by ±i (the 4-point DFT's W4 = ∓i).
fn times_i(a: vec2<f32>) -> vec2<f32> {
  return vec2<f32>(-a.y, a.x);
}

fn tw(j: u32) -> vec2<f32> {
  let w = twiddle[j];
#if INVERSE
  return vec2<f32>(w.x, -w.y);
#else
  return w;
#endif
}

// gid.x = sequence j, gid.y = butterfly i; the stride s = 2^blocks (shifts, no divisions).
@compute @workgroup_size(64)
fn fft_stage(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let S = p.s1;
  let N = p.s0;
  if (j >= S) {
    return;
  }
  let i = gid.y;
  let pp = i >> p.blocks;
  let q = i & ((1u << p.blocks) - 1u);
  let s = 1u << p.blocks;
#if RADIX4
  let quarter = N / 4u;
  let r = q + s * pp;
  let a = src[r * S + j];
  let b = src[(r + quarter) * S + j];
  let c = src[(r + 2u * quarter) * S + j];
  let d = src[(r + 3u * quarter) * S + j];
  let apc = a + c;
  let amc = a - c;
  let bpd = b + d;
#if INVERSE
  let jbmd = -times_i(b - d);
#else
  let jbmd = times_i(b - d);
#endif
  let o = q + 4u * s * pp;
  dst[o * S + j] = apc + bpd;
  dst[(o + s) * S + j] = cmul(amc - jbmd, tw(pp * s));
  dst[(o + 2u * s) * S + j] = cmul(apc - bpd, tw(2u * pp * s));
  dst[(o + 3u * s) * S + j] = cmul(amc + jbmd, tw(3u * pp * s));
#else
  let r = q + s * pp;
  let a = src[r * S + j];
  let b = src[(r + N / 2u) * S + j];
  let o = q + 2u * s * pp;
  dst[o * S + j] = a + b;
  dst[(o + s) * S + j] = cmul(a - b, tw(pp * s));
#endif
}
#endif

#if PASS_FFT_MUL
@group(0) @binding(1) var<storage, read> src: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> filt: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> dst: array<vec2<f32>>;

@compute @workgroup_size(64)
fn fft_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  let S = p.s1;
  if (idx >= p.s0 * S) {
    return;
  }
  var w = filt[(idx / S) * p.channels + (idx % S) % p.channels];
#if CONJ
  w.y = -w.y;
#endif
  dst[idx] = cmul(src[idx], w) * p.tScale;
}
#endif

#if PASS_FFT_UNPACK_PAIRS
@group(0) @binding(1) var<storage, read> spec: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn fft_unpack_pairs(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.rows * p.channels) {
    return;
  }
  let c = idx % p.channels;
  let row = idx / p.channels;
  let b = row / p.seqLen;
  let t = row % p.seqLen;
  let z = spec[t * p.s1 + (b / 2u) * p.channels + c];
  var r = select(z.y, z.x, b % 2u == 0u);
  r = fma(bias[c], x[row * p.in1Stride + p.in1Offset + c], r);
  let o = row * p.out0Stride + p.out0Offset + c;
  if (p.addOld != 0u) {
    r = out[o] + r;
  }
  out[o] = r;
}
#endif

#if PASS_FFT_PAIR_REDUCE
@group(0) @binding(1) var<storage, read> specA: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> specB: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> g: array<vec2<f32>>;

@compute @workgroup_size(64)
fn fft_pair_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  let d = p.channels;
  if (idx >= p.s0 * d) {
    return;
  }
  let base = (idx / d) * p.s1 + idx % d;
  var s = vec2<f32>(0.0);
  for (var q = 0u; q < p.groups; q++) {
    let bq = specB[base + q * d];
    s += cmul(specA[base + q * d], vec2<f32>(bq.x, -bq.y));
  }
  g[idx] = s * p.tScale;
}
#endif

#if PASS_FFT_UNPACK_FILTER
@group(0) @binding(1) var<storage, read> spec: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> dh: array<f32>;
@group(0) @binding(3) var<storage, read_write> dbias: array<f32>;

@compute @workgroup_size(64)
fn fft_unpack_filter(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = flat_id(gid, nwg);
  if (idx >= p.seqLen * p.channels) {
    return;
  }
  let r = spec[idx].x;
  dh[idx] = r;
  if (idx < p.channels) {
    dbias[idx] = dbias[idx] + r;
  }
}
#endif
