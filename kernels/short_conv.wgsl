// BaseConv gate (spec §3.1): y = conv(u) ⊙ proj + u, with
//   conv(u)[t,c] = bias[c] + w[c,0]·u[t-2,c] + w[c,1]·u[t-1,c] + w[c,2]·u[t,c]   (zero history per sequence).
// u, proj, y, dy, du, dproj: [rows = B*L, d] token-major; w: PyTorch conv.weight [d, 1, 3]; bias [d].
// proj = u·W_pᵀ + b_p comes from the matmul op; its share of du is added there.
// Backward in two passes, deterministic without atomics:
//   backward_data:   one invocation per (channel, block of rows) walks its rows in order with a sliding window, writes
//                    du (conv path + skip) and dproj = dy ⊙ conv(u), and its block's partial parameter sums;
//   backward_params: one invocation per (channel, tap or bias) adds the block partials in block order into the grads.
// Exactly one PASS_* define is set per module (their binding lists differ). ACCUMULATE: du/dproj += instead of =.

struct Params {
  rows: u32,
  seqLen: u32,
  width: u32,
  rowsPerBlock: u32,
  numBlocks: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

#if PASS_FORWARD
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> proj: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  // 2-D grid when rows*d exceeds the per-dimension workgroup limit.
  let idx = gid.x + gid.y * nwg.x * 64u;
  if (idx >= p.rows * p.width) {
    return;
  }
  let c = idx % p.width;
  let pos = (idx / p.width) % p.seqLen;
  let uCur = u[idx];
  var conv = fma(weight[c * 3u + 2u], uCur, bias[c]);
  if (pos >= 1u) {
    conv = fma(weight[c * 3u + 1u], u[idx - p.width], conv);
  }
  if (pos >= 2u) {
    conv = fma(weight[c * 3u], u[idx - 2u * p.width], conv);
  }
  y[idx] = fma(conv, proj[idx], uCur);
}
#endif

#if PASS_BWD_DATA
@group(0) @binding(1) var<storage, read> u: array<f32>;
@group(0) @binding(2) var<storage, read> proj: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> weight: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> du: array<f32>;
@group(0) @binding(7) var<storage, read_write> dproj: array<f32>;
// [numBlocks, d, 4]: Σ g·u[t-2], Σ g·u[t-1], Σ g·u[t], Σ g over the block's rows, g = dy ⊙ proj.
@group(0) @binding(8) var<storage, read_write> partials: array<f32>;

// Gradient reaching the conv output at flat index idx.
fn conv_grad(idx: u32) -> f32 {
  return dy[idx] * proj[idx];
}

@compute @workgroup_size(64)
fn backward_data(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let block = gid.y;
  if (c >= p.width || block >= p.numBlocks) {
    return;
  }
  let d = p.width;
  let t0 = block * p.rowsPerBlock;
  let t1 = min(t0 + p.rowsPerBlock, p.rows);
  let w0 = weight[c * 3u];
  let w1 = weight[c * 3u + 1u];
  let w2 = weight[c * 3u + 2u];
  let b = bias[c];
  // Sliding window: u at t-2, t-1 and conv gradients at t, t+1 (t+2 is loaded each step). Loads ignore sequence
  // boundaries; the uses are masked by the position in the sequence instead.
  var uPrev2 = 0.0;
  var uPrev1 = 0.0;
  if (t0 >= 2u) {
    uPrev2 = u[(t0 - 2u) * d + c];
  }
  if (t0 >= 1u) {
    uPrev1 = u[(t0 - 1u) * d + c];
  }
  var g0 = conv_grad(t0 * d + c);
  var g1 = 0.0;
  if (t0 + 1u < p.rows) {
    g1 = conv_grad((t0 + 1u) * d + c);
  }
  var pos = t0 % p.seqLen;
  var sumW0 = 0.0;
  var sumW1 = 0.0;
  var sumW2 = 0.0;
  var sumB = 0.0;
  for (var t = t0; t < t1; t++) {
    let idx = t * d + c;
    var g2 = 0.0;
    if (t + 2u < p.rows) {
      g2 = conv_grad(idx + 2u * d);
    }
    let uCur = u[idx];
    let u2 = select(0.0, uPrev2, pos >= 2u);
    let u1 = select(0.0, uPrev1, pos >= 1u);
    // u[t] feeds conv outputs t (tap 2), t+1 (tap 1), t+2 (tap 0) of the same sequence.
    let g1Same = select(0.0, g1, pos + 1u < p.seqLen);
    let g2Same = select(0.0, g2, pos + 2u < p.seqLen);
    let dyCur = dy[idx];
    var duVal = dyCur + w2 * g0 + w1 * g1Same + w0 * g2Same;
    var dprojVal = dyCur * (b + w0 * u2 + w1 * u1 + w2 * uCur);
#if ACCUMULATE
    duVal += du[idx];
    dprojVal += dproj[idx];
#endif
    du[idx] = duVal;
    dproj[idx] = dprojVal;
    sumW0 = fma(g0, u2, sumW0);
    sumW1 = fma(g0, u1, sumW1);
    sumW2 = fma(g0, uCur, sumW2);
    sumB += g0;
    uPrev2 = uPrev1;
    uPrev1 = uCur;
    g0 = g1;
    g1 = g2;
    pos += 1u;
    if (pos == p.seqLen) {
      pos = 0u;
    }
  }
  let outBase = (block * d + c) * 4u;
  partials[outBase] = sumW0;
  partials[outBase + 1u] = sumW1;
  partials[outBase + 2u] = sumW2;
  partials[outBase + 3u] = sumB;
}
#endif

#if PASS_BWD_PARAMS
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> dweight: array<f32>;
@group(0) @binding(3) var<storage, read_write> dbias: array<f32>;

@compute @workgroup_size(64)
fn backward_params(@builtin(global_invocation_id) gid: vec3<u32>) {
  let e = gid.x;
  if (e >= p.width * 4u) {
    return;
  }
  let c = e / 4u;
  let slot = e % 4u;
  var s = 0.0;
  for (var block = 0u; block < p.numBlocks; block++) {
    s += partials[(block * p.width + c) * 4u + slot];
  }
  // Parameter gradients always accumulate (the trainer zeroes them once per optimizer step).
  if (slot < 3u) {
    dweight[c * 3u + slot] += s;
  } else {
    dbias[c] += s;
  }
}
#endif
