// LayerNorm family over the last dimension of row-major [rows, width]:
//   y = xhat·γ + β, xhat = (x − μ)·s with biased variance and
//   s = 1/sqrt(var + eps)            (nn.LayerNorm), or
//   s = 1/(sqrt(var + eps) + eps)    (EPS_OUTSIDE: the ReBased ablation's Normalizer).
// Without NORMALIZE xhat = x (the ReBased Scaler: x·γ (+β)). γ/β are optional (HAS_GAMMA / HAS_BETA).
// Binding numbers come from the host (B_* defines) because the optional buffers shift them.
//
// Entry points, each in two flavours with the same arithmetic per element but different reduction trees:
//   forward_row / backward_dx_row: one invocation per row, serial loops (fast on CPU rasterisers, small widths);
//   forward_wg / backward_dx_wg:   one workgroup per row, strided partial sums + a fixed-order tree (real GPUs).
//   param_partial + param_reduce:  dγ, dβ without atomics: per row-block column sums into a workspace, then a second
//                                  pass adds the block partials in block order into the (accumulating) gradients.

struct Params {
  rows: u32,
  width: u32,
  eps: f32,
  rowsPerBlock: u32,
  blocks: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// forward: x, y, [γ], [β], [mean, rstd]
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
#if HAS_GAMMA
@group(0) @binding(B_FWD_GAMMA) var<storage, read> gamma: array<f32>;
#endif
#if HAS_BETA
@group(0) @binding(B_FWD_BETA) var<storage, read> beta: array<f32>;
#endif
#if NORMALIZE
@group(0) @binding(B_FWD_MEAN) var<storage, read_write> meanOut: array<f32>;
@group(0) @binding(B_FWD_MEAN + 1) var<storage, read_write> rstdOut: array<f32>;
#endif

// backward_dx: dy, dx, [γ], [x, mean, rstd] (x only matters when normalizing)
@group(0) @binding(1) var<storage, read> dyB: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
#if HAS_GAMMA
@group(0) @binding(B_BWD_GAMMA) var<storage, read> gammaB: array<f32>;
#endif
#if NORMALIZE
@group(0) @binding(B_BWD_X) var<storage, read> xB: array<f32>;
@group(0) @binding(B_BWD_X + 1) var<storage, read> meanIn: array<f32>;
@group(0) @binding(B_BWD_X + 2) var<storage, read> rstdIn: array<f32>;
#endif

// param_partial: x, dy, partials, [mean, rstd]; partials = [blocks][width] for dγ then [blocks][width] for dβ.
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;
#if NORMALIZE
@group(0) @binding(B_PART_MEAN) var<storage, read> meanP: array<f32>;
@group(0) @binding(B_PART_MEAN + 1) var<storage, read> rstdP: array<f32>;
#endif

// param_reduce: partials, [dγ], [dβ]
@group(0) @binding(1) var<storage, read> partialsIn: array<f32>;
#if HAS_GAMMA
@group(0) @binding(B_RED_DGAMMA) var<storage, read_write> dgamma: array<f32>;
#endif
#if HAS_BETA
@group(0) @binding(B_RED_DBETA) var<storage, read_write> dbeta: array<f32>;
#endif

fn inv_scale(variance: f32) -> f32 {
#if EPS_OUTSIDE
  return 1.0 / (sqrt(variance + p.eps) + p.eps);
#else
  return inverseSqrt(variance + p.eps);
#endif
}

// 1/σ with σ = sqrt(var + eps), from the saved s: needed by the variance term of dx.
fn inv_sigma(s: f32) -> f32 {
#if EPS_OUTSIDE
  return s / (1.0 - p.eps * s);
#else
  return s;
#endif
}

fn affine(c: u32, v: f32) -> f32 {
  var o = v;
#if HAS_GAMMA
  o = o * gamma[c];
#endif
#if HAS_BETA
  o = o + beta[c];
#endif
  return o;
}

fn grad_in(c: u32, g: f32) -> f32 {
#if HAS_GAMMA
  return g * gammaB[c];
#else
  return g;
#endif
}

fn store_dx(i: u32, v: f32) {
#if ACCUMULATE_DX
  dx[i] = dx[i] + v;
#else
  dx[i] = v;
#endif
}

// Flat index over a 2-D grid (grid1d on the host splits large counts over x and y).
fn flat(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.y * nwg.x + wid.x;
}

@compute @workgroup_size(64)
fn forward_row(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let r = flat(wid, nwg) * 64u + li;
  if (r >= p.rows) {
    return;
  }
  let base = r * p.width;
#if NORMALIZE
  // Two passes (mean, then squared deviations): no cancellation for rows with a large mean.
  var sum = 0.0;
  for (var c = 0u; c < p.width; c++) {
    sum += x[base + c];
  }
  let mu = sum / f32(p.width);
  var sq = 0.0;
  for (var c = 0u; c < p.width; c++) {
    let d = x[base + c] - mu;
    sq = fma(d, d, sq);
  }
  let s = inv_scale(sq / f32(p.width));
  meanOut[r] = mu;
  rstdOut[r] = s;
  for (var c = 0u; c < p.width; c++) {
    y[base + c] = affine(c, (x[base + c] - mu) * s);
  }
#else
  for (var c = 0u; c < p.width; c++) {
    y[base + c] = affine(c, x[base + c]);
  }
#endif
}

@compute @workgroup_size(64)
fn backward_dx_row(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let r = flat(wid, nwg) * 64u + li;
  if (r >= p.rows) {
    return;
  }
  let base = r * p.width;
#if NORMALIZE
  let mu = meanIn[r];
  let s = rstdIn[r];
  var sumG = 0.0;
  var sumGX = 0.0;
  for (var c = 0u; c < p.width; c++) {
    let g = grad_in(c, dyB[base + c]);
    sumG += g;
    sumGX = fma(g, (xB[base + c] - mu) * s, sumGX);
  }
  let meanG = sumG / f32(p.width);
  let meanGX = sumGX / f32(p.width) * inv_sigma(s);
  for (var c = 0u; c < p.width; c++) {
    let g = grad_in(c, dyB[base + c]);
    let xhat = (xB[base + c] - mu) * s;
    store_dx(base + c, s * (g - meanG) - xhat * meanGX);
  }
#else
  for (var c = 0u; c < p.width; c++) {
    store_dx(base + c, grad_in(c, dyB[base + c]));
  }
#endif
}

// WG (a power of two) comes from the host: small on GL, where workgroup arrays are slow to compile.
var<workgroup> reduction: array<vec2<f32>, WG>;

// Sum over the workgroup in a fixed tree order (deterministic). Must be called in uniform control flow.
fn workgroup_sum(li: u32, v: vec2<f32>) -> vec2<f32> {
  reduction[li] = v;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (li < stride) {
      reduction[li] = reduction[li] + reduction[li + stride];
    }
    workgroupBarrier();
  }
  let total = reduction[0];
  workgroupBarrier();
  return total;
}

@compute @workgroup_size(WG)
fn forward_wg(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let r = flat(wid, nwg);
  if (r >= p.rows) {
    return;
  }
  let base = r * p.width;
#if NORMALIZE
  var sum = 0.0;
  for (var c = li; c < p.width; c += WG) {
    sum += x[base + c];
  }
  let mu = workgroup_sum(li, vec2<f32>(sum, 0.0)).x / f32(p.width);
  var sq = 0.0;
  for (var c = li; c < p.width; c += WG) {
    let d = x[base + c] - mu;
    sq = fma(d, d, sq);
  }
  let s = inv_scale(workgroup_sum(li, vec2<f32>(sq, 0.0)).x / f32(p.width));
  if (li == 0u) {
    meanOut[r] = mu;
    rstdOut[r] = s;
  }
  for (var c = li; c < p.width; c += WG) {
    y[base + c] = affine(c, (x[base + c] - mu) * s);
  }
#else
  for (var c = li; c < p.width; c += WG) {
    y[base + c] = affine(c, x[base + c]);
  }
#endif
}

@compute @workgroup_size(WG)
fn backward_dx_wg(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let r = flat(wid, nwg);
  if (r >= p.rows) {
    return;
  }
  let base = r * p.width;
#if NORMALIZE
  let mu = meanIn[r];
  let s = rstdIn[r];
  var sums = vec2<f32>(0.0, 0.0);
  for (var c = li; c < p.width; c += WG) {
    let g = grad_in(c, dyB[base + c]);
    sums += vec2<f32>(g, g * ((xB[base + c] - mu) * s));
  }
  let total = workgroup_sum(li, sums);
  let meanG = total.x / f32(p.width);
  let meanGX = total.y / f32(p.width) * inv_sigma(s);
  for (var c = li; c < p.width; c += WG) {
    let g = grad_in(c, dyB[base + c]);
    let xhat = (xB[base + c] - mu) * s;
    store_dx(base + c, s * (g - meanG) - xhat * meanGX);
  }
#else
  for (var c = li; c < p.width; c += WG) {
    store_dx(base + c, grad_in(c, dyB[base + c]));
  }
#endif
}

// One invocation per (column, row block); neighbouring invocations read neighbouring columns (coalesced).
@compute @workgroup_size(64)
fn param_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  let block = gid.y;
  if (c >= p.width || block >= p.blocks) {
    return;
  }
  let r0 = block * p.rowsPerBlock;
  let r1 = min(r0 + p.rowsPerBlock, p.rows);
  var sumGamma = 0.0;
  var sumBeta = 0.0;
  for (var r = r0; r < r1; r++) {
    let g = dy[r * p.width + c];
#if NORMALIZE
    let xhat = (x[r * p.width + c] - meanP[r]) * rstdP[r];
#else
    let xhat = x[r * p.width + c];
#endif
    sumGamma = fma(g, xhat, sumGamma);
    sumBeta += g;
  }
  partials[block * p.width + c] = sumGamma;
  partials[(p.blocks + block) * p.width + c] = sumBeta;
}

@compute @workgroup_size(64)
fn param_reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= p.width) {
    return;
  }
#if HAS_GAMMA
  var sumGamma = 0.0;
  for (var b = 0u; b < p.blocks; b++) {
    sumGamma += partialsIn[b * p.width + c];
  }
  dgamma[c] = dgamma[c] + sumGamma;
#endif
#if HAS_BETA
  var sumBeta = 0.0;
  for (var b = 0u; b < p.blocks; b++) {
    sumBeta += partialsIn[(p.blocks + b) * p.width + c];
  }
  dbeta[c] = dbeta[c] + sumBeta;
#endif
}
