// Small generic elementwise ops over flat f32 arrays, one element per invocation (coalesced), plus a deterministic
// column sum (bias gradients). Read-write aliasing is not allowed within a dispatch, so in-place forms have their own
// entry points binding a single read_write buffer.
//   add:            out = a + b
//   add_inplace:    target += alpha·source            (residual accumulate: alpha = 1)
//   scale:          out = alpha·a   (ACCUMULATE: out += alpha·a)
//   scale_inplace:  target = alpha·target
//   mul:            out = a·b
//   mul_backward:   da = dy·b, db = dy·a             (each optional, each overwrite or ACCUMULATE_A / ACCUMULATE_B)
//   copy:           dst[dstOffset + i] = src[srcOffset + i]
//   copy_columns:   dst[r·dstStride + dstOffset + c] = src[r·srcStride + srcOffset + c] for c < cols (a column block
//                   of one matrix into another; the strides ride in rowsPerBlock (src) and blocks (dst))
//   colsum_partial: partial[block, n] = Σ_{m in block} x[m, n]       (rows in ascending order)
//   colsum_reduce:  out[n] (+)= Σ_block partial[block, n]           (blocks in ascending order)

struct Params {
  n: u32,
  alpha: f32,
  srcOffset: u32,
  dstOffset: u32,
  rows: u32,
  cols: u32,
  rowsPerBlock: u32,
  blocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in1: array<f32>;
@group(0) @binding(1) var<storage, read_write> inout1: array<f32>;
@group(0) @binding(2) var<storage, read> in2: array<f32>;
@group(0) @binding(2) var<storage, read_write> out2: array<f32>;
@group(0) @binding(3) var<storage, read> in3: array<f32>;
@group(0) @binding(3) var<storage, read_write> out3: array<f32>;
// mul_backward binds dy, then (b, da) and/or (a, db): only what each requested gradient reads.
#if HAS_DA
@group(0) @binding(B_DA) var<storage, read> bForDa: array<f32>;
@group(0) @binding(B_DA + 1) var<storage, read_write> da: array<f32>;
#endif
#if HAS_DB
@group(0) @binding(B_DB) var<storage, read> aForDb: array<f32>;
@group(0) @binding(B_DB + 1) var<storage, read_write> db: array<f32>;
#endif

const WG = 256u;

// Flat element index over a 2-D grid (grid1d on the host splits large counts over x and y).
fn element(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * WG + li;
}

@compute @workgroup_size(WG)
fn add(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = element(wid, nwg, li);
  if (i < p.n) {
    out3[i] = in1[i] + in2[i];
  }
}

@compute @workgroup_size(WG)
fn add_inplace(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = element(wid, nwg, li);
  if (i < p.n) {
    inout1[i] = fma(p.alpha, in2[i], inout1[i]);
  }
}

@compute @workgroup_size(WG)
fn scale(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = element(wid, nwg, li);
  if (i < p.n) {
#if ACCUMULATE
    out2[i] = fma(p.alpha, in1[i], out2[i]);
#else
    out2[i] = p.alpha * in1[i];
#endif
  }
}

@compute @workgroup_size(WG)
fn scale_inplace(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = element(wid, nwg, li);
  if (i < p.n) {
    inout1[i] = p.alpha * inout1[i];
  }
}

@compute @workgroup_size(WG)
fn mul(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = element(wid, nwg, li);
  if (i < p.n) {
    out3[i] = in1[i] * in2[i];
  }
}

@compute @workgroup_size(WG)
fn mul_backward(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = element(wid, nwg, li);
  if (i >= p.n) {
    return;
  }
  let g = in1[i];
#if HAS_DA
#if ACCUMULATE_A
  da[i] = fma(g, bForDa[i], da[i]);
#else
  da[i] = g * bForDa[i];
#endif
#endif
#if HAS_DB
#if ACCUMULATE_B
  db[i] = fma(g, aForDb[i], db[i]);
#else
  db[i] = g * aForDb[i];
#endif
#endif
}

@compute @workgroup_size(WG)
fn copy(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = element(wid, nwg, li);
  if (i < p.n) {
    out2[p.dstOffset + i] = in1[p.srcOffset + i];
  }
}

@compute @workgroup_size(WG)
fn copy_columns(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = element(wid, nwg, li);
  if (i < p.n) {
    let r = i / p.cols;
    let c = i % p.cols;
    out2[r * p.blocks + p.dstOffset + c] = in1[r * p.rowsPerBlock + p.srcOffset + c];
  }
}

// One invocation per (column, row block): neighbouring invocations read neighbouring columns (coalesced).
@compute @workgroup_size(64)
fn colsum_partial(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x;
  let block = gid.y;
  if (col >= p.cols || block >= p.blocks) {
    return;
  }
  let r0 = block * p.rowsPerBlock;
  let r1 = min(r0 + p.rowsPerBlock, p.rows);
  var sum = 0.0;
  for (var r = r0; r < r1; r++) {
    sum += in1[r * p.cols + col];
  }
  out2[block * p.cols + col] = sum;
}

@compute @workgroup_size(64)
fn colsum_reduce(@builtin(global_invocation_id) gid: vec3<u32>) {
  let col = gid.x;
  if (col >= p.cols) {
    return;
  }
  var sum = 0.0;
  for (var b = 0u; b < p.blocks; b++) {
    sum += in1[b * p.cols + col];
  }
#if ACCUMULATE
  out2[col] = out2[col] + sum;
#else
  out2[col] = sum;
#endif
}
