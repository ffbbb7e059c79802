// Based / ReBased causal linear attention, exact parallel (quadratic) form (spec §5.1), forward and backward, plus the
// chunked O(L) form (spec §5.3), forward and backward (FEATURE_STATE and PASS_BWD_DQDK_CHUNKED sections below).
// Layout: q, k [B*L, H*F]; v, y, dy [B*L, H*DV]; zinv, dz [B*L, H]; token-major, heads side by side.
// Per (batch b, head h): S_ij = (q_i·k_j)·scale, g = 1 + S + S²/2 (Based) or S² (REBASED),
//   y_i = Σ_{j≤i} g(S_ij) v_j / (Σ_{j≤i} g(S_ij) + eps); the forward saves zinv_i = 1/(z_i + eps).
// Backward folds the division: do_i = dy_i·zinv_i, dz_i = -(dy_i·y_i)·zinv_i;
//   dA_ij = do_i·v_j + dz_i, dS_ij = dA_ij·g'(S_ij), dq_i = scale Σ_{j≤i} dS_ij k_j,
//   dk_j = scale Σ_{i≥j} dS_ij q_i, dv_j = Σ_{i≥j} g(S_ij) do_i.
// Every output is one fixed-order sum owned by one invocation: deterministic without atomics. The dq pass also writes
// dz for the dk/dv pass. Exactly one PASS_* define is set per module (their binding lists differ).
// Parallel variants (same terms, same order, bit-identical results):
//   (neither define): one invocation per row, register accumulators, keys read from global memory (CPU rasterisers,
//                     where barriers are expensive);
//   TILED:            the same with key/query tiles of BS rows staged through workgroup memory;
//   SMEM:             one invocation per (row, output column), scalar accumulators, score tiles in workgroup memory
//                     (real GPUs: 1.6-3.5x faster than TILED on an H200).
// Defines: F, DV, REBASED, ACCUMULATE (backward: add into dq/dk/dv), ROWS_PER_WG, TILED, BS, SMEM, FR, COLS, WG_SIZE.

struct Params {
  batch: u32,
  seqLen: u32,
  heads: u32,
  // f^(-1/2)
  scale: f32,
  eps: f32,
  // Chunked form: this dispatch's chunks [chunkBegin, chunkEnd) and state-column tile (backward).
  chunkBegin: u32,
  chunkEnd: u32,
  tile: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn kernel_g(s: f32) -> f32 {
#if REBASED
  return s * s;
#else
  return 1.0 + s + 0.5 * s * s;
#endif
}

fn kernel_g_prime(s: f32) -> f32 {
#if REBASED
  return 2.0 * s;
#else
  return 1.0 + s;
#endif
}

// Offsets of token t of batch b, head h.
fn qk_offset(b: u32, t: u32, h: u32) -> u32 {
  return ((b * p.seqLen + t) * p.heads + h) * F;
}

fn v_offset(b: u32, t: u32, h: u32) -> u32 {
  return ((b * p.seqLen + t) * p.heads + h) * DV;
}

fn z_index(b: u32, t: u32, h: u32) -> u32 {
  return (b * p.seqLen + t) * p.heads + h;
}

// q and k rows (and dq, dk): vec4s for the rows variant with several rows per invocation (ROW_BLOCK, F a multiple of
// 4), scalars otherwise.
#if ROW_BLOCK
alias QK = vec4<f32>;
#else
alias QK = f32;
#endif

#if PASS_FORWARD
@group(0) @binding(1) var<storage, read> q: array<QK>;
@group(0) @binding(2) var<storage, read> k: array<QK>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> zinv: array<f32>;
#endif

#if PASS_BWD_DQ
@group(0) @binding(1) var<storage, read> q: array<QK>;
@group(0) @binding(2) var<storage, read> k: array<QK>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> y: array<f32>;
@group(0) @binding(5) var<storage, read> zinv: array<f32>;
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<QK>;
@group(0) @binding(8) var<storage, read_write> dz: array<f32>;
#endif

#if PASS_BWD_DKDV
@group(0) @binding(1) var<storage, read> q: array<QK>;
@group(0) @binding(2) var<storage, read> k: array<QK>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> zinv: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read> dz: array<f32>;
@group(0) @binding(7) var<storage, read_write> dk: array<QK>;
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;
#endif

#if TILED
#if PASS_BWD_DKDV
// Query tile for the dk/dv sweep: scaled q, do = dy·zinv, dz.
#if PACKED
var<workgroup> q_tile: array<mat4x4<f32>, (BS * F + 15u) / 16u>;

fn q_tile_ld(i: u32) -> f32 {
  return q_tile[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn q_tile_st(i: u32, x: f32) {
  q_tile[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> q_tile: array<f32, BS * F>;

fn q_tile_ld(i: u32) -> f32 {
  return q_tile[i];
}

fn q_tile_st(i: u32, x: f32) {
  q_tile[i] = x;
}
#endif
#if PACKED
var<workgroup> do_tile: array<mat4x4<f32>, (BS * DV + 15u) / 16u>;

fn do_tile_ld(i: u32) -> f32 {
  return do_tile[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn do_tile_st(i: u32, x: f32) {
  do_tile[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> do_tile: array<f32, BS * DV>;

fn do_tile_ld(i: u32) -> f32 {
  return do_tile[i];
}

fn do_tile_st(i: u32, x: f32) {
  do_tile[i] = x;
}
#endif
#if PACKED
var<workgroup> dz_tile: array<mat4x4<f32>, (BS + 15u) / 16u>;

fn dz_tile_ld(i: u32) -> f32 {
  return dz_tile[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn dz_tile_st(i: u32, x: f32) {
  dz_tile[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> dz_tile: array<f32, BS>;

fn dz_tile_ld(i: u32) -> f32 {
  return dz_tile[i];
}

fn dz_tile_st(i: u32, x: f32) {
  dz_tile[i] = x;
}
#endif
#else
// Key tile for the forward and dq sweeps.
#if PACKED
var<workgroup> k_tile: array<mat4x4<f32>, (BS * F + 15u) / 16u>;

fn k_tile_ld(i: u32) -> f32 {
  return k_tile[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn k_tile_st(i: u32, x: f32) {
  k_tile[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> k_tile: array<f32, BS * F>;

fn k_tile_ld(i: u32) -> f32 {
  return k_tile[i];
}

fn k_tile_st(i: u32, x: f32) {
  k_tile[i] = x;
}
#endif
#if PACKED
var<workgroup> v_tile: array<mat4x4<f32>, (BS * DV + 15u) / 16u>;

fn v_tile_ld(i: u32) -> f32 {
  return v_tile[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn v_tile_st(i: u32, x: f32) {
  v_tile[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> v_tile: array<f32, BS * DV>;

fn v_tile_ld(i: u32) -> f32 {
  return v_tile[i];
}

fn v_tile_st(i: u32, x: f32) {
  v_tile[i] = x;
}
#endif

// Stages keys j0 .. j0+BS-1 (clamped to the sequence; rows past it are never read).
fn load_key_tile(b: u32, h: u32, j0: u32, li: u32) {
  for (var e = li; e < BS * F; e += ROWS_PER_WG) {
    let j = min(j0 + e / F, p.seqLen - 1u);
    k_tile_st(e, k[qk_offset(b, j, h) + e % F]);
  }
  for (var e = li; e < BS * DV; e += ROWS_PER_WG) {
    let j = min(j0 + e / DV, p.seqLen - 1u);
    v_tile_st(e, v[v_offset(b, j, h) + e % DV]);
  }
}
#endif
#endif

#if PASS_FORWARD
#if !SMEM
#if !ROW_BLOCK
@compute @workgroup_size(ROWS_PER_WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let row0 = wid.x * ROWS_PER_WG;
  let i = row0 + li;
  let inRange = i < p.seqLen;
  // Inactive rows still run (they take part in barriers) but read a valid row and see no keys.
  let iSafe = min(i, p.seqLen - 1u);
  let keyEnd = select(0u, i + 1u, inRange);
  let qOff = qk_offset(b, iSafe, h);
  var qs: array<f32, F>;
  for (var a = 0u; a < F; a++) {
    qs[a] = q[qOff + a] * p.scale;
  }
  var o: array<f32, DV>;
  var z = 0.0;
#if TILED
  let rowEnd = min(row0 + ROWS_PER_WG, p.seqLen);
  for (var j0 = 0u; j0 < rowEnd; j0 += BS) {
    load_key_tile(b, h, j0, li);
    workgroupBarrier();
    let count = min(BS, keyEnd - min(keyEnd, j0));
    for (var jj = 0u; jj < count; jj++) {
      var s = 0.0;
      for (var a = 0u; a < F; a++) {
        s = fma(qs[a], k_tile_ld(jj * F + a), s);
      }
      let w = kernel_g(s);
      z += w;
      for (var c = 0u; c < DV; c++) {
        o[c] = fma(w, v_tile_ld(jj * DV + c), o[c]);
      }
    }
    workgroupBarrier();
  }
#else
  for (var j = 0u; j < keyEnd; j++) {
    let kOff = qk_offset(b, j, h);
    var s = 0.0;
    for (var a = 0u; a < F; a++) {
      s = fma(qs[a], k[kOff + a], s);
    }
    let w = kernel_g(s);
    z += w;
    let vOff = v_offset(b, j, h);
    for (var c = 0u; c < DV; c++) {
      o[c] = fma(w, v[vOff + c], o[c]);
    }
  }
#endif
  if (inRange) {
    let inv = 1.0 / (z + p.eps);
    let yOff = v_offset(b, i, h);
    for (var c = 0u; c < DV; c++) {
      y[yOff + c] = o[c] * inv;
    }
    zinv[z_index(b, i, h)] = inv;
  }
}
#endif
#endif
#endif


#if PASS_BWD_DQ
#if !SMEM
#if !ROW_BLOCK
@compute @workgroup_size(ROWS_PER_WG)
fn backward_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let row0 = wid.x * ROWS_PER_WG;
  let i = row0 + li;
  let inRange = i < p.seqLen;
  let iSafe = min(i, p.seqLen - 1u);
  let keyEnd = select(0u, i + 1u, inRange);
  let qOff = qk_offset(b, iSafe, h);
  let vOff = v_offset(b, iSafe, h);
  let zi = z_index(b, iSafe, h);
  var qs: array<f32, F>;
  for (var a = 0u; a < F; a++) {
    qs[a] = q[qOff + a] * p.scale;
  }
  let inv = zinv[zi];
  var dOut: array<f32, DV>;
  var dyDotY = 0.0;
  for (var c = 0u; c < DV; c++) {
    let g = dy[vOff + c];
    dOut[c] = g * inv;
    dyDotY = fma(g, y[vOff + c], dyDotY);
  }
  let dzi = -dyDotY * inv;
  if (inRange) {
    dz[zi] = dzi;
  }
  var acc: array<f32, F>;
#if TILED
  let rowEnd = min(row0 + ROWS_PER_WG, p.seqLen);
  for (var j0 = 0u; j0 < rowEnd; j0 += BS) {
    load_key_tile(b, h, j0, li);
    workgroupBarrier();
    let count = min(BS, keyEnd - min(keyEnd, j0));
    for (var jj = 0u; jj < count; jj++) {
      var s = 0.0;
      for (var a = 0u; a < F; a++) {
        s = fma(qs[a], k_tile_ld(jj * F + a), s);
      }
      var dA = dzi;
      for (var c = 0u; c < DV; c++) {
        dA = fma(dOut[c], v_tile_ld(jj * DV + c), dA);
      }
      let dS = dA * kernel_g_prime(s);
      for (var a = 0u; a < F; a++) {
        acc[a] = fma(dS, k_tile_ld(jj * F + a), acc[a]);
      }
    }
    workgroupBarrier();
  }
#else
  for (var j = 0u; j < keyEnd; j++) {
    let kOff = qk_offset(b, j, h);
    var s = 0.0;
    for (var a = 0u; a < F; a++) {
      s = fma(qs[a], k[kOff + a], s);
    }
    let vjOff = v_offset(b, j, h);
    var dA = dzi;
    for (var c = 0u; c < DV; c++) {
      dA = fma(dOut[c], v[vjOff + c], dA);
    }
    let dS = dA * kernel_g_prime(s);
    for (var a = 0u; a < F; a++) {
      acc[a] = fma(dS, k[kOff + a], acc[a]);
    }
  }
#endif
  if (inRange) {
    for (var a = 0u; a < F; a++) {
      var g = acc[a] * p.scale;
#if ACCUMULATE
      g += dq[qOff + a];
#endif
      dq[qOff + a] = g;
    }
  }
}
#endif
#endif
#endif

#if PASS_BWD_DKDV
#if !SMEM
#if !ROW_BLOCK
@compute @workgroup_size(ROWS_PER_WG)
fn backward_dkdv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let row0 = wid.x * ROWS_PER_WG;
  let j = row0 + li;
  let inRange = j < p.seqLen;
  let jSafe = min(j, p.seqLen - 1u);
  // Queries i in [queryStart, L) see key j.
  let queryStart = select(p.seqLen, j, inRange);
  let kOff = qk_offset(b, jSafe, h);
  let vOff = v_offset(b, jSafe, h);
  var kr: array<f32, F>;
  for (var a = 0u; a < F; a++) {
    kr[a] = k[kOff + a];
  }
  var vr: array<f32, DV>;
  for (var c = 0u; c < DV; c++) {
    vr[c] = v[vOff + c];
  }
  var dkAcc: array<f32, F>;
  var dvAcc: array<f32, DV>;
#if TILED
  for (var i0 = row0; i0 < p.seqLen; i0 += BS) {
    for (var e = li; e < BS * F; e += ROWS_PER_WG) {
      let i = min(i0 + e / F, p.seqLen - 1u);
      q_tile_st(e, q[qk_offset(b, i, h) + e % F] * p.scale);
    }
    for (var e = li; e < BS * DV; e += ROWS_PER_WG) {
      let i = min(i0 + e / DV, p.seqLen - 1u);
      do_tile_st(e, dy[v_offset(b, i, h) + e % DV] * zinv[z_index(b, i, h)]);
    }
    for (var e = li; e < BS; e += ROWS_PER_WG) {
      dz_tile_st(e, dz[z_index(b, min(i0 + e, p.seqLen - 1u), h)]);
    }
    workgroupBarrier();
    let tileEnd = min(i0 + BS, p.seqLen);
    let first = min(max(queryStart, i0), tileEnd) - i0;
    for (var ii = first; ii < tileEnd - i0; ii++) {
      var s = 0.0;
      for (var a = 0u; a < F; a++) {
        s = fma(q_tile_ld(ii * F + a), kr[a], s);
      }
      let w = kernel_g(s);
      var dA = dz_tile_ld(ii);
      for (var c = 0u; c < DV; c++) {
        dA = fma(do_tile_ld(ii * DV + c), vr[c], dA);
      }
      let dS = dA * kernel_g_prime(s);
      for (var a = 0u; a < F; a++) {
        dkAcc[a] = fma(dS, q_tile_ld(ii * F + a), dkAcc[a]);
      }
      for (var c = 0u; c < DV; c++) {
        dvAcc[c] = fma(w, do_tile_ld(ii * DV + c), dvAcc[c]);
      }
    }
    workgroupBarrier();
  }
#else
  for (var i = queryStart; i < p.seqLen; i++) {
    let qOff = qk_offset(b, i, h);
    var qs: array<f32, F>;
    var s = 0.0;
    for (var a = 0u; a < F; a++) {
      qs[a] = q[qOff + a] * p.scale;
      s = fma(qs[a], kr[a], s);
    }
    let w = kernel_g(s);
    let inv = zinv[z_index(b, i, h)];
    let dyOff = v_offset(b, i, h);
    var dOut: array<f32, DV>;
    var dA = dz[z_index(b, i, h)];
    for (var c = 0u; c < DV; c++) {
      dOut[c] = dy[dyOff + c] * inv;
      dA = fma(dOut[c], vr[c], dA);
    }
    let dS = dA * kernel_g_prime(s);
    for (var a = 0u; a < F; a++) {
      dkAcc[a] = fma(dS, qs[a], dkAcc[a]);
    }
    for (var c = 0u; c < DV; c++) {
      dvAcc[c] = fma(w, dOut[c], dvAcc[c]);
    }
  }
#endif
  if (inRange) {
    for (var a = 0u; a < F; a++) {
      var g = dkAcc[a];
#if ACCUMULATE
      g += dk[kOff + a];
#endif
      dk[kOff + a] = g;
    }
    for (var c = 0u; c < DV; c++) {
      var g = dvAcc[c];
#if ACCUMULATE
      g += dv[vOff + c];
#endif
      dv[vOff + c] = g;
    }
  }
}
#endif
#endif
#endif

#if ROW_BLOCK
// ---------------------------------------------------------------- rows variant, RB rows per invocation (F4 = F/4)
// Each invocation owns RB consecutive rows (query rows; key rows for dk/dv) and reads every other row once for all of
// them, as vec4s: on CPU rasterisers lane-varying scalar loads become gathers, which is what the one-row kernels
// spend their time on (forward 30 → 10 ms at B = 8, L = 256, H = 12 on lavapipe). Rows past their causal limit add
// exact zeros (fma(0, x, acc) = acc) and every dot product is the same sequential fma chain, so each sum has the same
// terms in the same order as the other parallel variants: bit-identical results.

// s + a·b over the four components in order (the one-row kernels' `s = fma(q[a], k[a], s)` chain).
fn fma_chain(a: vec4<f32>, b: vec4<f32>, s: f32) -> f32 {
  return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, fma(a.x, b.x, s))));
}

#if PASS_FORWARD
@compute @workgroup_size(ROWS_PER_WG)
fn forward_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let i0 = (wid.x * ROWS_PER_WG + li) * RB;
  if (i0 >= p.seqLen) {
    return;
  }
  var qs: array<array<vec4<f32>, F4>, RB>;
  for (var r = 0u; r < RB; r++) {
    let qOff = qk_offset(b, min(i0 + r, p.seqLen - 1u), h) / 4u;
    for (var a = 0u; a < F4; a++) {
      qs[r][a] = q[qOff + a] * p.scale;
    }
  }
  var o: array<array<f32, DV>, RB>;
  var z: array<f32, RB>;
  let keyEnd = min(i0 + RB, p.seqLen);
  for (var j = 0u; j < keyEnd; j++) {
    let kOff = qk_offset(b, j, h) / 4u;
    var kr: array<vec4<f32>, F4>;
    for (var a = 0u; a < F4; a++) {
      kr[a] = k[kOff + a];
    }
    let vOff = v_offset(b, j, h);
    var vr: array<f32, DV>;
    for (var c = 0u; c < DV; c++) {
      vr[c] = v[vOff + c];
    }
    for (var r = 0u; r < RB; r++) {
      var s = 0.0;
      for (var a = 0u; a < F4; a++) {
        s = fma_chain(qs[r][a], kr[a], s);
      }
      let w = select(0.0, kernel_g(s), j <= i0 + r);
      z[r] += w;
      for (var c = 0u; c < DV; c++) {
        o[r][c] = fma(w, vr[c], o[r][c]);
      }
    }
  }
  for (var r = 0u; r < RB; r++) {
    let i = i0 + r;
    if (i < p.seqLen) {
      let inv = 1.0 / (z[r] + p.eps);
      let yOff = v_offset(b, i, h);
      for (var c = 0u; c < DV; c++) {
        y[yOff + c] = o[r][c] * inv;
      }
      zinv[z_index(b, i, h)] = inv;
    }
  }
}
#endif

#if PASS_BWD_DQ
@compute @workgroup_size(ROWS_PER_WG)
fn backward_dq_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let i0 = (wid.x * ROWS_PER_WG + li) * RB;
  if (i0 >= p.seqLen) {
    return;
  }
  var qs: array<array<vec4<f32>, F4>, RB>;
  var dOut: array<array<f32, DV>, RB>;
  var dzr: array<f32, RB>;
  for (var r = 0u; r < RB; r++) {
    let i = min(i0 + r, p.seqLen - 1u);
    let qOff = qk_offset(b, i, h) / 4u;
    for (var a = 0u; a < F4; a++) {
      qs[r][a] = q[qOff + a] * p.scale;
    }
    let vOff = v_offset(b, i, h);
    let zi = z_index(b, i, h);
    let inv = zinv[zi];
    var dyDotY = 0.0;
    for (var c = 0u; c < DV; c++) {
      let g = dy[vOff + c];
      dOut[r][c] = g * inv;
      dyDotY = fma(g, y[vOff + c], dyDotY);
    }
    dzr[r] = -dyDotY * inv;
    if (i0 + r < p.seqLen) {
      dz[zi] = dzr[r];
    }
  }
  var acc: array<array<vec4<f32>, F4>, RB>;
  let keyEnd = min(i0 + RB, p.seqLen);
  for (var j = 0u; j < keyEnd; j++) {
    let kOff = qk_offset(b, j, h) / 4u;
    var kr: array<vec4<f32>, F4>;
    for (var a = 0u; a < F4; a++) {
      kr[a] = k[kOff + a];
    }
    let vOff = v_offset(b, j, h);
    var vr: array<f32, DV>;
    for (var c = 0u; c < DV; c++) {
      vr[c] = v[vOff + c];
    }
    for (var r = 0u; r < RB; r++) {
      var s = 0.0;
      for (var a = 0u; a < F4; a++) {
        s = fma_chain(qs[r][a], kr[a], s);
      }
      var dA = dzr[r];
      for (var c = 0u; c < DV; c++) {
        dA = fma(dOut[r][c], vr[c], dA);
      }
      let dS = select(0.0, dA * kernel_g_prime(s), j <= i0 + r);
      for (var a = 0u; a < F4; a++) {
        acc[r][a] = fma(vec4<f32>(dS), kr[a], acc[r][a]);
      }
    }
  }
  for (var r = 0u; r < RB; r++) {
    let i = i0 + r;
    if (i < p.seqLen) {
      let qOff = qk_offset(b, i, h) / 4u;
      for (var a = 0u; a < F4; a++) {
        var g = acc[r][a] * p.scale;
#if ACCUMULATE
        g += dq[qOff + a];
#endif
        dq[qOff + a] = g;
      }
    }
  }
}
#endif

#if PASS_BWD_DKDV
@compute @workgroup_size(ROWS_PER_WG)
fn backward_dkdv_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let j0 = (wid.x * ROWS_PER_WG + li) * RB;
  if (j0 >= p.seqLen) {
    return;
  }
  var kr: array<array<vec4<f32>, F4>, RB>;
  var vr: array<array<f32, DV>, RB>;
  for (var r = 0u; r < RB; r++) {
    let j = min(j0 + r, p.seqLen - 1u);
    let kOff = qk_offset(b, j, h) / 4u;
    for (var a = 0u; a < F4; a++) {
      kr[r][a] = k[kOff + a];
    }
    let vOff = v_offset(b, j, h);
    for (var c = 0u; c < DV; c++) {
      vr[r][c] = v[vOff + c];
    }
  }
  var dkAcc: array<array<vec4<f32>, F4>, RB>;
  var dvAcc: array<array<f32, DV>, RB>;
  // Queries i ≥ j see key j.
  for (var i = j0; i < p.seqLen; i++) {
    let qOff = qk_offset(b, i, h) / 4u;
    var qs: array<vec4<f32>, F4>;
    for (var a = 0u; a < F4; a++) {
      qs[a] = q[qOff + a] * p.scale;
    }
    let zi = z_index(b, i, h);
    let inv = zinv[zi];
    let dzi = dz[zi];
    let dyOff = v_offset(b, i, h);
    var dOut: array<f32, DV>;
    for (var c = 0u; c < DV; c++) {
      dOut[c] = dy[dyOff + c] * inv;
    }
    for (var r = 0u; r < RB; r++) {
      var s = 0.0;
      for (var a = 0u; a < F4; a++) {
        s = fma_chain(qs[a], kr[r][a], s);
      }
      let sees = i >= j0 + r;
      let w = select(0.0, kernel_g(s), sees);
      var dA = dzi;
      for (var c = 0u; c < DV; c++) {
        dA = fma(dOut[c], vr[r][c], dA);
      }
      let dS = select(0.0, dA * kernel_g_prime(s), sees);
      for (var a = 0u; a < F4; a++) {
        dkAcc[r][a] = fma(vec4<f32>(dS), qs[a], dkAcc[r][a]);
      }
      for (var c = 0u; c < DV; c++) {
        dvAcc[r][c] = fma(w, dOut[c], dvAcc[r][c]);
      }
    }
  }
  for (var r = 0u; r < RB; r++) {
    let j = j0 + r;
    if (j < p.seqLen) {
      let kOff = qk_offset(b, j, h) / 4u;
      for (var a = 0u; a < F4; a++) {
        var g = dkAcc[r][a];
#if ACCUMULATE
        g += dk[kOff + a];
#endif
        dk[kOff + a] = g;
      }
      let vOff = v_offset(b, j, h);
      for (var c = 0u; c < DV; c++) {
        var g = dvAcc[r][c];
#if ACCUMULATE
        g += dv[vOff + c];
#endif
        dv[vOff + c] = g;
      }
    }
  }
}
#endif
#endif

#if FEATURE_STATE
// A loop bound: on GL (RUNTIME_BOUNDS) hidden behind the uniform so that the compiler cannot see its value. Mesa's GL
// path unrolls constant-bound loops and then compiles the unrolled code for minutes per pipeline (llvmpipe); the
// Vulkan path keeps the constants, where unrolling pays.
fn rt(n: u32) -> u32 {
#if RUNTIME_BOUNDS
  return select(n, 0u, p.seqLen == 0u);
#else
  return n;
#endif
}

// Chunked O(L) form (spec §5.3), fused: one workgroup walks the sequence of one (batch, head) in chunks of CHUNK
// tokens (all of it, or one segment per dispatch: see load_state) and carries its state in workgroup memory, so memory
// per token stays constant and every output is one fixed-order sum (deterministic, no atomics). The state is M = Σ_{partners j in the chunks already passed}
// φ(partner_j) vec_jᵀ, [DPHI, SW], over SW vector columns. Features, packed symmetrically (DPHI of them): Based
// [1, x_a, x_a x_b (a ≤ b)], ReBased [x_a x_b (a ≤ b)]. The kernel's coefficients sit on the row side only:
// φrow(x)·φ(y) = g(x·y) with the diagonal pairs weighted DIAG_COEF and the off-diagonal pairs OFF_COEF (Based ½ and
// 1, ReBased 1 and 2). Work is spread so that invocations differ in registers, not in the workgroup addresses they
// read (one invocation per chunk row for the outputs, one per feature row for the state update): CPU rasterisers run
// invocations as SIMD lanes and turn lane-varying addresses and branches into slow gathers and masked code (3x here);
// on GPUs these uniform reads are broadcasts. Defines: F, DPHI, SW, CHUNK, CHUNK_WG, REBASED, RUNTIME_BOUNDS.
#if REBASED
const DIAG_COEF = 1.0;
const OFF_COEF = 2.0;
const LEAD = 0u;
#else
const DIAG_COEF = 0.5;
const OFF_COEF = 1.0;
const LEAD = 1u + F;
#endif

// On GL (PACKED) these workgroup arrays are arrays of mat4x4 behind accessors: naga zero-initialises workgroup memory
// with one constructor argument per element and Mesa's GL compiler takes time quadratic in their count (a 1,024-vec4
// array: 65 s on llvmpipe), so 4 vec4s (or 16 floats) per element cut it. Vulkan keeps the plain arrays.
// SW state columns stored as SW4 = SWP/4 vec4s per feature row (SWP: SW rounded up to 4; the padding columns stay 0):
// CPU rasterisers turn each workgroup-memory read into per-lane loads, so one vec4 read instead of four scalar ones
// cuts the state reads' cost (lavapipe forward 23 → 18 µs per token at dv = 5).
#if PACKED
var<workgroup> state: array<mat4x4<f32>, (DPHI * SW4 + 3u) / 4u>;

fn state_ld(i: u32) -> vec4<f32> {
  return state[i >> 2u][i & 3u];
}

fn state_st(i: u32, v: vec4<f32>) {
  state[i >> 2u][i & 3u] = v;
}

fn state_st1(i: u32, c: u32, x: f32) {
  state[i >> 2u][i & 3u][c] = x;
}
#else
var<workgroup> state: array<vec4<f32>, DPHI * SW4>;

fn state_ld(i: u32) -> vec4<f32> {
  return state[i];
}

fn state_st(i: u32, v: vec4<f32>) {
  state[i] = v;
}

fn state_st1(i: u32, c: u32, x: f32) {
  state[i][c] = x;
}
#endif
// The current chunk's partners (zero past the sequence, so they add nothing) with a ones column at index F, and their
// vectors. The ones column writes every feature as a product x_a·x_b (Based: 1 = x_F·x_F, x_a = x_a·x_F).
const PF = F + 1u;
#if PACKED
var<workgroup> partner_chunk: array<mat4x4<f32>, (CHUNK * PF + 15u) / 16u>;

fn partner_chunk_ld(i: u32) -> f32 {
  return partner_chunk[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn partner_chunk_st(i: u32, x: f32) {
  partner_chunk[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> partner_chunk: array<f32, CHUNK * PF>;

fn partner_chunk_ld(i: u32) -> f32 {
  return partner_chunk[i];
}

fn partner_chunk_st(i: u32, x: f32) {
  partner_chunk[i] = x;
}
#endif
#if PACKED
var<workgroup> partner_vec: array<mat4x4<f32>, (CHUNK * SW4 + 3u) / 4u>;

fn partner_vec_ld(i: u32) -> vec4<f32> {
  return partner_vec[i >> 2u][i & 3u];
}

fn partner_vec_st(i: u32, v: vec4<f32>) {
  partner_vec[i >> 2u][i & 3u] = v;
}

fn partner_vec_st1(i: u32, c: u32, x: f32) {
  partner_vec[i >> 2u][i & 3u][c] = x;
}
#else
var<workgroup> partner_vec: array<vec4<f32>, CHUNK * SW4>;

fn partner_vec_ld(i: u32) -> vec4<f32> {
  return partner_vec[i];
}

fn partner_vec_st(i: u32, v: vec4<f32>) {
  partner_vec[i] = v;
}

fn partner_vec_st1(i: u32, c: u32, x: f32) {
  partner_vec[i][c] = x;
}
#endif
// The partners again as vec4s (zero past F) for the same-chunk dot products: one vec4 read instead of four scalar ones.
const F4 = (F + 3u) / 4u;
#if PACKED
var<workgroup> partner4: array<mat4x4<f32>, (CHUNK * F4 + 3u) / 4u>;

fn partner4_ld(i: u32) -> vec4<f32> {
  return partner4[i >> 2u][i & 3u];
}

fn partner4_st(i: u32, v: vec4<f32>) {
  partner4[i >> 2u][i & 3u] = v;
}

fn partner4_st1(i: u32, c: u32, x: f32) {
  partner4[i >> 2u][i & 3u][c] = x;
}
#else
var<workgroup> partner4: array<vec4<f32>, CHUNK * F4>;

fn partner4_ld(i: u32) -> vec4<f32> {
  return partner4[i];
}

fn partner4_st(i: u32, v: vec4<f32>) {
  partner4[i] = v;
}

fn partner4_st1(i: u32, c: u32, x: f32) {
  partner4[i][c] = x;
}
#endif

// The partners transposed, four rows per vec4 ([PF, CHUNK/4]): the state update reads a feature's factor for four
// partner rows in one load instead of four lane-varying ones.
const CHUNK4 = CHUNK / 4u;
#if PACKED
var<workgroup> partnerT: array<mat4x4<f32>, (PF * CHUNK4 + 3u) / 4u>;

fn partnerT_ld(i: u32) -> vec4<f32> {
  return partnerT[i >> 2u][i & 3u];
}

fn partnerT_st(i: u32, v: vec4<f32>) {
  partnerT[i >> 2u][i & 3u] = v;
}

fn partnerT_st1(i: u32, c: u32, x: f32) {
  partnerT[i >> 2u][i & 3u][c] = x;
}
#else
var<workgroup> partnerT: array<vec4<f32>, PF * CHUNK4>;

fn partnerT_ld(i: u32) -> vec4<f32> {
  return partnerT[i];
}

fn partnerT_st(i: u32, v: vec4<f32>) {
  partnerT[i] = v;
}

fn partnerT_st1(i: u32, c: u32, x: f32) {
  partnerT[i][c] = x;
}
#endif

// Packs partner row r (written by this invocation) into partner4 and partnerT.
fn pack_partner4(r: u32) {
  for (var a = 0u; a < rt(PF); a++) {
    partnerT_st1(a * CHUNK4 + r / 4u, r % 4u, partner_chunk_ld(r * PF + a));
  }
  for (var k4 = 0u; k4 < rt(F4); k4++) {
    var v = vec4<f32>(0.0);
    for (var t = 0u; t < 4u; t++) {
      let a = 4u * k4 + t;
      if (a < F) {
        v[t] = partner_chunk_ld(r * PF + a);
      }
    }
    partner4_st(r * F4 + k4, v);
  }
}

// x as vec4s, zero past F.
fn pack4(x: array<f32, F>) -> array<vec4<f32>, F4> {
  var out: array<vec4<f32>, F4>;
  // Zeroed explicitly: lavapipe does not re-zero arrays declared in a loop body (this inlines into one).
  for (var k4 = 0u; k4 < rt(F4); k4++) {
    out[k4] = vec4<f32>(0.0);
  }
  for (var a = 0u; a < rt(F); a++) {
    out[a / 4u][a % 4u] = x[a];
  }
  return out;
}
// (a, b) of the features this invocation updates: e = li + m·CHUNK_WG for m < FEATURE_ITERS.
const FEATURE_ITERS = (DPHI + CHUNK_WG - 1u) / CHUNK_WG;
var<private> feature_pair: array<vec2<u32>, FEATURE_ITERS>;

// The state between dispatches: llvmpipe silently ends an invocation after 65535 loop iterations in total, so on CPU
// rasterisers a sweep is cut into segments of chunks, one dispatch each, and the state of workgroup `slot` is parked
// in `carry` ([slot, DPHI·SW4] vec4s, constant size per sequence) from one segment to the next.
fn load_state(li: u32, slot: u32, fresh: bool) {
  for (var e = li; e < DPHI * SW4; e += CHUNK_WG) {
    state_st(e, select(carry[slot * DPHI * SW4 + e], vec4<f32>(0.0), fresh));
  }
}

fn store_state(li: u32, slot: u32) {
  // The last update's feature rows belong to other invocations than these elements.
  workgroupBarrier();
  for (var e = li; e < DPHI * SW4; e += CHUNK_WG) {
    carry[slot * DPHI * SW4 + e] = state_ld(e);
  }
}

// Packed pair index -> (a, b), a ≤ b, row-major over the upper triangle.
fn decode_pair(pairIndex: u32) -> vec2<u32> {
  var pair = pairIndex;
  var a = 0u;
  while (pair >= F - a) {
    pair -= F - a;
    a++;
  }
  return vec2<u32>(a, a + pair);
}

// Decodes once per invocation the features update_state gives it.
fn init_feature_pairs(li: u32) {
  for (var m = 0u; m < rt(FEATURE_ITERS); m++) {
    let e = li + m * CHUNK_WG;
    var pair = vec2<u32>(F, F);
#if REBASED
    if (e < DPHI) {
      pair = decode_pair(e);
    }
#else
    if (e >= 1u) {
      pair.x = e - 1u;
    }
    if (e >= LEAD && e < DPHI) {
      pair = decode_pair(e - LEAD);
    }
#endif
    feature_pair[m] = pair;
  }
}

// M += Σ_{s in chunk} φ(partner_s) vec_sᵀ, one invocation per feature row e (no other invocation touches it). The
// chunk's vectors are copied to registers first: each invocation reads them once per feature row it owns, and CPU
// rasterisers turn every workgroup-memory read into per-lane loads (lavapipe: forward 29 → 23, backward 69 → 56 µs per
// token at H = 12, f = 16, dv = 5).
fn update_state(li: u32) {
  var vecs: array<vec4<f32>, CHUNK * SW4>;
  for (var i = 0u; i < rt(CHUNK * SW4); i++) {
    vecs[i] = partner_vec_ld(i);
  }
  for (var m = 0u; m < rt(FEATURE_ITERS); m++) {
    let e = li + m * CHUNK_WG;
    if (e < DPHI) {
      let pair = feature_pair[m];
      var delta: array<vec4<f32>, SW4>;
      for (var c = 0u; c < rt(SW4); c++) {
        delta[c] = vec4<f32>(0.0);
      }
      for (var s4 = 0u; s4 < rt(CHUNK4); s4++) {
        // φ of partner rows 4·s4 .. 4·s4 + 3, added in row order as before.
        let phi = partnerT_ld(pair.x * CHUNK4 + s4) * partnerT_ld(pair.y * CHUNK4 + s4);
        let s = 4u * s4;
        for (var c = 0u; c < rt(SW4); c++) {
          var d = fma(vec4<f32>(phi.x), vecs[s * SW4 + c], delta[c]);
          d = fma(vec4<f32>(phi.y), vecs[(s + 1u) * SW4 + c], d);
          d = fma(vec4<f32>(phi.z), vecs[(s + 2u) * SW4 + c], d);
          delta[c] = fma(vec4<f32>(phi.w), vecs[(s + 3u) * SW4 + c], d);
        }
      }
      for (var c = 0u; c < rt(SW4); c++) {
        state_st(e * SW4 + c, state_ld(e * SW4 + c) + delta[c]);
      }
    }
  }
}
#endif

#if PASS_FWD_CHUNKED
// Chunked forward, one workgroup per (value-column tile, head, batch): rows are queries q̃, partners are keys k with
// vectors [v_j, 1] (DVT value columns; the appended ones column makes the last state column the denominator state:
// n0, z1, z2 of §5.3). Per chunk:
//   o_i = φrow(q̃_i)ᵀ M + Σ_{j in chunk, j ≤ i} g(q̃_i·k_j) [v_j, 1],  then  M += Σ_{j in chunk} φ(k_j) [v_j, 1]ᵀ;
// y_i = o_i / (z_i + eps). Defines (besides FEATURE_STATE's): DV, DVT (SW = DVT + 1).
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> zinv: array<f32>;
@group(0) @binding(6) var<storage, read_write> carry: array<vec4<f32>>;

@compute @workgroup_size(CHUNK_WG)
fn forward_chunked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let col0 = wid.x * DVT;
  let h = wid.y;
  let b = wid.z;
  let cols = min(DVT, DV - col0);
  let slot = (b * p.heads + h) * ((DV + DVT - 1u) / DVT) + wid.x;
  init_feature_pairs(li);
  load_state(li, slot, p.chunkBegin == 0u);
  let chunks = (p.seqLen + CHUNK - 1u) / CHUNK;
  for (var n = p.chunkBegin; n < p.chunkEnd; n++) {
    let t0 = n * CHUNK;
    // The previous chunk's state update must finish before its partner tiles are overwritten.
    workgroupBarrier();
    for (var r = li; r < rt(CHUNK); r += CHUNK_WG) {
      let t = t0 + r;
      let valid = t < p.seqLen;
      let tSafe = min(t, p.seqLen - 1u);
      let kOff = qk_offset(b, tSafe, h);
      for (var a = 0u; a < rt(F); a++) {
        partner_chunk_st(r * PF + a, select(0.0, k[kOff + a], valid));
      }
      partner_chunk_st(r * PF + F, 1.0);
      pack_partner4(r);
      let vOff = v_offset(b, tSafe, h) + col0;
      for (var c = 0u; c < rt(SWP); c++) {
        let x = select(v[vOff + min(c, cols - 1u)], 1.0, c == DVT);
        partner_vec_st1(r * SW4 + c / 4u, c % 4u, select(0.0, x, valid && (c < cols || c == DVT)));
      }
    }
    workgroupBarrier();
    for (var r = li; r < rt(CHUNK); r += CHUNK_WG) {
      let t = t0 + r;
      let qOff = qk_offset(b, min(t, p.seqLen - 1u), h);
      var x: array<f32, F>;
      for (var a = 0u; a < rt(F); a++) {
        x[a] = q[qOff + a] * p.scale;
      }
      // Earlier chunks: φrow(q̃)ᵀ M, features generated in packing order.
      var acc: array<vec4<f32>, SW4>;
      var feat = 0u;
#if REBASED
      for (var c = 0u; c < rt(SW4); c++) {
        acc[c] = vec4<f32>(0.0);
      }
#else
      for (var c = 0u; c < rt(SW4); c++) {
        acc[c] = state_ld(c);
      }
      for (var a = 0u; a < rt(F); a++) {
        for (var c = 0u; c < rt(SW4); c++) {
          acc[c] = fma(vec4<f32>(x[a]), state_ld((1u + a) * SW4 + c), acc[c]);
        }
      }
      feat = LEAD;
#endif
      // Column groups outermost, so the accumulator is one register through the feature loop.
      let first = feat;
      for (var c = 0u; c < rt(SW4); c++) {
        var sum = acc[c];
        feat = first;
        for (var a = 0u; a < rt(F); a++) {
          for (var bb = a; bb < rt(F); bb++) {
            let w = select(OFF_COEF, DIAG_COEF, bb == a) * x[a] * x[bb];
            sum = fma(vec4<f32>(w), state_ld(feat * SW4 + c), sum);
            feat++;
          }
        }
        acc[c] = sum;
      }
      // This chunk, causal (j ≤ r).
      let x4 = pack4(x);
      for (var j = 0u; j < rt(CHUNK); j++) {
        var s = 0.0;
        for (var k4 = 0u; k4 < rt(F4); k4++) {
          s += dot(x4[k4], partner4_ld(j * F4 + k4));
        }
        let w = vec4<f32>(select(0.0, kernel_g(s), j <= r));
        for (var c = 0u; c < rt(SW4); c++) {
          acc[c] = fma(w, partner_vec_ld(j * SW4 + c), acc[c]);
        }
      }
      if (t < p.seqLen) {
        let inv = 1.0 / (acc[DVT / 4u][DVT % 4u] + p.eps);
        let yOff = v_offset(b, t, h) + col0;
        for (var c = 0u; c < cols; c++) {
          y[yOff + c] = acc[c / 4u][c % 4u] * inv;
        }
        if (wid.x == 0u) {
          zinv[z_index(b, t, h)] = inv;
        }
      }
    }
    // The outputs above read the state that the update changes.
    workgroupBarrier();
    update_state(li);
  }
  if (p.chunkEnd < chunks) {
    store_state(li, slot);
  }
}
#endif

#if PASS_BWD_CHUNKED
// Chunked backward (spec §5.3, the [RF] fused_chunk_based_bwd pattern, packed): the division is folded in as in the
// parallel backward, u_i = [do_i, dz_i] with do_i = dy_i·zinv_i, dz_i = -(dy_i·y_i)·zinv_i, V_j = [v_j, 1], so that
// dA_ij = u_i·V_j and, with φ the packed features of the forward (φrow carries the kernel's coefficients),
//   dq̃_i = J_φrow(q̃_i)ᵀ M u_i + Σ_{j in chunk, j ≤ i} g'(S_ij) (u_i·V_j) k_j,     M = Σ_{j in earlier chunks} φ(k_j) V_jᵀ,
//   dk_j = J_φrow(k_j)ᵀ D V_j + Σ_{i in chunk, i ≥ j} g'(S_ij) (V_j·u_i) q̃_i,     D = Σ_{i in later chunks} φ(q̃_i) u_iᵀ,
//   dv_j = φrow(k_j)ᵀ D[:, :dv] + Σ_{i in chunk, i ≥ j} g(S_ij) do_i,           dq = f^(-1/2)·dq̃
// (g(x·y) = φrow(x)·φ(y) is symmetric, so the coefficients may sit on either side). One workgroup per (head, batch):
// !BACKWARDS sweeps forwards computing dq ("rows" q̃ with vectors u, "partners" k with vectors V); BACKWARDS sweeps
// backwards computing dk and dv (rows k with V, partners q̃ with u). Each carries its state through the sequence in
// workgroup memory (constant memory per token; every output a fixed-order sum, no atomics). The state's columns
// (dv + 1, the last one dz / ones) are processed in tiles of SW columns, one full sweep (of one or more segment
// dispatches) per tile: dq̃ and dk are linear in the columns (M u = Σ_tiles M[:, tile] u[tile], and u_i·V_j likewise),
// so each tile's sweep adds its share to dq / dk, which only this workgroup writes. One invocation per chunk row for
// the outputs, one per feature row of the state for its update (see FEATURE_STATE). The dq sweep also writes dz
// (scratch, the parallel backward's contract). Defines (besides FEATURE_STATE's): DV, BACKWARDS, ACCUMULATE.
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> y: array<f32>;
@group(0) @binding(5) var<storage, read> zinv: array<f32>;
@group(0) @binding(6) var<storage, read> dy: array<f32>;
#if BACKWARDS
@group(0) @binding(7) var<storage, read_write> dk: array<f32>;
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;
const forwards = false;
#else
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;
@group(0) @binding(8) var<storage, read_write> dz: array<f32>;
const forwards = true;
#endif
@group(0) @binding(9) var<storage, read_write> carry: array<vec4<f32>>;

// The current chunk's rows (same tokens as its partners) and their vectors.
#if PACKED
var<workgroup> row_chunk: array<mat4x4<f32>, (CHUNK * F + 15u) / 16u>;

fn row_chunk_ld(i: u32) -> f32 {
  return row_chunk[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn row_chunk_st(i: u32, x: f32) {
  row_chunk[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> row_chunk: array<f32, CHUNK * F>;

fn row_chunk_ld(i: u32) -> f32 {
  return row_chunk[i];
}

fn row_chunk_st(i: u32, x: f32) {
  row_chunk[i] = x;
}
#endif
#if PACKED
var<workgroup> row_vec: array<mat4x4<f32>, (CHUNK * SW4 + 3u) / 4u>;

fn row_vec_ld(i: u32) -> vec4<f32> {
  return row_vec[i >> 2u][i & 3u];
}

fn row_vec_st(i: u32, v: vec4<f32>) {
  row_vec[i >> 2u][i & 3u] = v;
}

fn row_vec_st1(i: u32, c: u32, x: f32) {
  row_vec[i >> 2u][i & 3u][c] = x;
}
#else
var<workgroup> row_vec: array<vec4<f32>, CHUNK * SW4>;

fn row_vec_ld(i: u32) -> vec4<f32> {
  return row_vec[i];
}

fn row_vec_st(i: u32, v: vec4<f32>) {
  row_vec[i] = v;
}

fn row_vec_st1(i: u32, c: u32, x: f32) {
  row_vec[i][c] = x;
}
#endif

@compute @workgroup_size(CHUNK_WG)
fn backward_chunked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.x;
  let b = wid.y;
  let slot = b * p.heads + h;
  let chunks = (p.seqLen + CHUNK - 1u) / CHUNK;
  // Extended columns col0 .. col0+cols-1 of [dv columns, dz / ones column].
  let col0 = p.tile * SW;
  let cols = min(SW, DV + 1u - col0);
  init_feature_pairs(li);
  // The backwards sweep visits its segments, and the chunks in each, from the end.
  load_state(li, slot, select(p.chunkEnd == chunks, p.chunkBegin == 0u, forwards));
  for (var n = p.chunkBegin; n < p.chunkEnd; n++) {
    let t0 = select(p.chunkBegin + p.chunkEnd - 1u - n, n, forwards) * CHUNK;
    // The previous chunk's state update must finish before its tiles are overwritten.
    workgroupBarrier();
    for (var r = li; r < rt(CHUNK); r += CHUNK_WG) {
      let t = t0 + r;
      let valid = t < p.seqLen;
      let tSafe = min(t, p.seqLen - 1u);
      let qkOff = qk_offset(b, tSafe, h);
      // Partner rows past the sequence are zero, and so are their vectors: they add nothing.
      for (var a = 0u; a < rt(F); a++) {
        let qs = q[qkOff + a] * p.scale;
        let kv = k[qkOff + a];
        row_chunk_st(r * F + a, select(kv, qs, forwards));
        partner_chunk_st(r * PF + a, select(0.0, select(qs, kv, forwards), valid));
      }
      partner_chunk_st(r * PF + F, 1.0);
      pack_partner4(r);
      let vOff = v_offset(b, tSafe, h);
      let inv = zinv[z_index(b, tSafe, h)];
      // dz in the same order as the parallel variants.
      var dyDotY = 0.0;
      for (var c = 0u; c < rt(DV); c++) {
        dyDotY = fma(dy[vOff + c], y[vOff + c], dyDotY);
      }
      let dzr = -dyDotY * inv;
#if !BACKWARDS
      if (p.tile == 0u && valid) {
        dz[z_index(b, t, h)] = dzr;
      }
#endif
      for (var c = 0u; c < rt(SWP); c++) {
        let col = col0 + c;
        let cSafe = min(col, DV - 1u);
        let isLast = col == DV;
        let vc = select(v[vOff + cSafe], 1.0, isLast);
        let uc = select(dy[vOff + cSafe] * inv, dzr, isLast);
        let inTile = c < cols;
        row_vec_st1(r * SW4 + c / 4u, c % 4u, select(0.0, select(vc, uc, forwards), inTile));
        partner_vec_st1(r * SW4 + c / 4u, c % 4u, select(0.0, select(uc, vc, forwards), inTile && valid));
      }
    }
    workgroupBarrier();
    for (var r = li; r < rt(CHUNK); r += CHUNK_WG) {
      let t = t0 + r;
      var x: array<f32, F>;
      var dx: array<f32, F>;
      for (var a = 0u; a < rt(F); a++) {
        x[a] = row_chunk_ld(r * F + a);
        dx[a] = 0.0;
      }
      var u: array<vec4<f32>, SW4>;
      for (var c = 0u; c < rt(SW4); c++) {
        u[c] = row_vec_ld(r * SW4 + c);
      }
#if BACKWARDS
      // dv: φrow(k)ᵀ D over this tile's columns (the dz column's value is never written).
      var dvAcc: array<vec4<f32>, SW4>;
      for (var c = 0u; c < rt(SW4); c++) {
        dvAcc[c] = vec4<f32>(0.0);
      }
#endif
      // Earlier-chunk part: w_e = state[e, :]·u, then dx += J_φrow(x)ᵀ w; features in packing order.
      var feat = 0u;
#if !REBASED
#if BACKWARDS
      // Feature 1: no x dependence.
      for (var c = 0u; c < rt(SW4); c++) {
        dvAcc[c] += state_ld(c);
      }
#endif
      // Features x_a: derivative 1.
      for (var a = 0u; a < rt(F); a++) {
        var w = 0.0;
        for (var c = 0u; c < rt(SW4); c++) {
          let m = state_ld((1u + a) * SW4 + c);
          w += dot(m, u[c]);
#if BACKWARDS
          dvAcc[c] = fma(vec4<f32>(x[a]), m, dvAcc[c]);
#endif
        }
        dx[a] += w;
      }
      feat = LEAD;
#endif
      // Features coef·x_a·x_bb (a ≤ bb): ∂/∂x_a = coef·x_bb and ∂/∂x_bb = coef·x_a (2·coef·x_a on the diagonal).
      for (var a = 0u; a < rt(F); a++) {
        let xa = x[a];
        var dxa = 0.0;
        for (var bb = a; bb < rt(F); bb++) {
          let coef = select(OFF_COEF, DIAG_COEF, bb == a);
#if BACKWARDS
          let phi = coef * xa * x[bb];
#endif
          var w = 0.0;
          for (var c = 0u; c < rt(SW4); c++) {
            let m = state_ld(feat * SW4 + c);
            w += dot(m, u[c]);
#if BACKWARDS
            dvAcc[c] = fma(vec4<f32>(phi), m, dvAcc[c]);
#endif
          }
          let cw = coef * w;
          dxa = fma(cw, x[bb], dxa);
          dx[bb] = fma(cw, xa, dx[bb]);
          feat++;
        }
        dx[a] += dxa;
      }
      // Same-chunk part, parallel form (forwards: partners s ≤ r; backwards: s ≥ r).
      let x4 = pack4(x);
      var dx4: array<vec4<f32>, F4>;
      for (var k4 = 0u; k4 < rt(F4); k4++) {
        dx4[k4] = vec4<f32>(0.0); // see pack4
      }
      for (var s = 0u; s < rt(CHUNK); s++) {
        var score = 0.0;
        for (var k4 = 0u; k4 < rt(F4); k4++) {
          score += dot(x4[k4], partner4_ld(s * F4 + k4));
        }
        var dA = 0.0;
        for (var c = 0u; c < rt(SW4); c++) {
          dA += dot(u[c], partner_vec_ld(s * SW4 + c));
        }
        let visible = select(s >= r, s <= r, forwards);
        let wg = vec4<f32>(select(0.0, dA * kernel_g_prime(score), visible));
        for (var k4 = 0u; k4 < rt(F4); k4++) {
          dx4[k4] = fma(wg, partner4_ld(s * F4 + k4), dx4[k4]);
        }
#if BACKWARDS
        let g = vec4<f32>(select(0.0, kernel_g(score), visible));
        for (var c = 0u; c < rt(SW4); c++) {
          dvAcc[c] = fma(g, partner_vec_ld(s * SW4 + c), dvAcc[c]);
        }
#endif
      }
      for (var a = 0u; a < rt(F); a++) {
        dx[a] += dx4[a / 4u][a % 4u];
      }
      if (t < p.seqLen) {
        let off = qk_offset(b, t, h);
        // The first tile overwrites (unless accumulating), later tiles add their share.
        var add = p.tile > 0u;
#if ACCUMULATE
        add = true;
#endif
#if BACKWARDS
        for (var a = 0u; a < rt(F); a++) {
          dk[off + a] = select(dx[a], dk[off + a] + dx[a], add);
        }
        let vOff = v_offset(b, t, h) + col0;
        for (var c = 0u; c < min(cols, DV - min(col0, DV)); c++) {
          var g = dvAcc[c / 4u][c % 4u];
#if ACCUMULATE
          g += dv[vOff + c];
#endif
          dv[vOff + c] = g;
        }
#else
        for (var a = 0u; a < rt(F); a++) {
          let g = dx[a] * p.scale;
          dq[off + a] = select(g, dq[off + a] + g, add);
        }
#endif
      }
    }
    // The outputs above read the state that the update below changes.
    workgroupBarrier();
    update_state(li);
  }
  if (select(p.chunkBegin > 0u, p.chunkEnd < chunks, forwards)) {
    store_state(li, slot);
  }
}
#endif

#if SMEM
// "smem" variant (spec §5.4): one invocation per (row, output column), so every accumulator is a scalar register, and
// the score tiles g(S) / dS pass through workgroup memory. FR rows per workgroup, COLS columns per row (forward: DV
// values + the denominator; dq: F; dk/dv: F + DV), WG_SIZE = FR·COLS. Key (or query) tiles of BS rows, stored with a
// row stride of F + 1 so the score loop's column reads spread over memory banks. It adds the same terms in the same
// order as the "rows" variant (masked entries add exact zeros), so the results are bit-identical to it.
const KSTRIDE = F + 1u;

fn smem_row_col(li: u32) -> vec2<u32> {
  return vec2<u32>(li / COLS, li % COLS);
}
#endif

#if SMEM
#if PASS_FORWARD
#if PACKED
var<workgroup> sq: array<mat4x4<f32>, (FR * F + 15u) / 16u>;

fn sq_ld(i: u32) -> f32 {
  return sq[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sq_st(i: u32, x: f32) {
  sq[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sq: array<f32, FR * F>;

fn sq_ld(i: u32) -> f32 {
  return sq[i];
}

fn sq_st(i: u32, x: f32) {
  sq[i] = x;
}
#endif
#if PACKED
var<workgroup> sk: array<mat4x4<f32>, (BS * KSTRIDE + 15u) / 16u>;

fn sk_ld(i: u32) -> f32 {
  return sk[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sk_st(i: u32, x: f32) {
  sk[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sk: array<f32, BS * KSTRIDE>;

fn sk_ld(i: u32) -> f32 {
  return sk[i];
}

fn sk_st(i: u32, x: f32) {
  sk[i] = x;
}
#endif
#if PACKED
var<workgroup> sv: array<mat4x4<f32>, (BS * DV + 15u) / 16u>;

fn sv_ld(i: u32) -> f32 {
  return sv[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sv_st(i: u32, x: f32) {
  sv[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sv: array<f32, BS * DV>;

fn sv_ld(i: u32) -> f32 {
  return sv[i];
}

fn sv_st(i: u32, x: f32) {
  sv[i] = x;
}
#endif
#if PACKED
var<workgroup> sg: array<mat4x4<f32>, (FR * BS + 15u) / 16u>;

fn sg_ld(i: u32) -> f32 {
  return sg[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sg_st(i: u32, x: f32) {
  sg[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sg: array<f32, FR * BS>;

fn sg_ld(i: u32) -> f32 {
  return sg[i];
}

fn sg_st(i: u32, x: f32) {
  sg[i] = x;
}
#endif
#if PACKED
var<workgroup> sout: array<mat4x4<f32>, (FR * COLS + 15u) / 16u>;

fn sout_ld(i: u32) -> f32 {
  return sout[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sout_st(i: u32, x: f32) {
  sout[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sout: array<f32, FR * COLS>;

fn sout_ld(i: u32) -> f32 {
  return sout[i];
}

fn sout_st(i: u32, x: f32) {
  sout[i] = x;
}
#endif

@compute @workgroup_size(WG_SIZE)
fn forward_smem(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let i0 = wid.x * FR;
  let rc = smem_row_col(li);
  for (var e = li; e < FR * F; e += WG_SIZE) {
    let i = min(i0 + e / F, p.seqLen - 1u);
    sq_st(e, q[qk_offset(b, i, h) + e % F] * p.scale);
  }
  let rowEnd = min(i0 + FR, p.seqLen);
  var acc = 0.0;
  for (var j0 = 0u; j0 < rowEnd; j0 += BS) {
    workgroupBarrier();
    for (var e = li; e < BS * F; e += WG_SIZE) {
      let j = min(j0 + e / F, p.seqLen - 1u);
      sk_st((e / F) * KSTRIDE + e % F, k[qk_offset(b, j, h) + e % F]);
    }
    for (var e = li; e < BS * DV; e += WG_SIZE) {
      let j = min(j0 + e / DV, p.seqLen - 1u);
      sv_st(e, v[v_offset(b, j, h) + e % DV]);
    }
    workgroupBarrier();
    for (var e = li; e < FR * BS; e += WG_SIZE) {
      let r = e / BS;
      let jj = e % BS;
      var s = 0.0;
      for (var a = 0u; a < F; a++) {
        s = fma(sq_ld(r * F + a), sk_ld(jj * KSTRIDE + a), s);
      }
      // Causal mask; rows past the sequence see nothing.
      let visible = j0 + jj <= i0 + r && i0 + r < p.seqLen;
      sg_st(e, select(0.0, kernel_g(s), visible));
    }
    workgroupBarrier();
    let count = min(BS, rowEnd - j0);
    let c = min(rc.y, DV - 1u);
    let isDenominator = rc.y == DV;
    for (var jj = 0u; jj < count; jj++) {
      acc = fma(sg_ld(rc.x * BS + jj), select(sv_ld(jj * DV + c), 1.0, isDenominator), acc);
    }
  }
  sout_st(li, acc);
  workgroupBarrier();
  let i = i0 + rc.x;
  if (i < p.seqLen) {
    let inv = 1.0 / (sout_ld(rc.x * COLS + DV) + p.eps);
    if (rc.y < DV) {
      y[v_offset(b, i, h) + rc.y] = acc * inv;
    } else {
      zinv[z_index(b, i, h)] = inv;
    }
  }
}
#endif

#if PASS_BWD_DQ
#if PACKED
var<workgroup> sq: array<mat4x4<f32>, (FR * F + 15u) / 16u>;

fn sq_ld(i: u32) -> f32 {
  return sq[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sq_st(i: u32, x: f32) {
  sq[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sq: array<f32, FR * F>;

fn sq_ld(i: u32) -> f32 {
  return sq[i];
}

fn sq_st(i: u32, x: f32) {
  sq[i] = x;
}
#endif
#if PACKED
var<workgroup> sdo: array<mat4x4<f32>, (FR * DV + 15u) / 16u>;

fn sdo_ld(i: u32) -> f32 {
  return sdo[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sdo_st(i: u32, x: f32) {
  sdo[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sdo: array<f32, FR * DV>;

fn sdo_ld(i: u32) -> f32 {
  return sdo[i];
}

fn sdo_st(i: u32, x: f32) {
  sdo[i] = x;
}
#endif
#if PACKED
var<workgroup> sdz: array<mat4x4<f32>, (FR + 15u) / 16u>;

fn sdz_ld(i: u32) -> f32 {
  return sdz[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sdz_st(i: u32, x: f32) {
  sdz[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sdz: array<f32, FR>;

fn sdz_ld(i: u32) -> f32 {
  return sdz[i];
}

fn sdz_st(i: u32, x: f32) {
  sdz[i] = x;
}
#endif
#if PACKED
var<workgroup> sk: array<mat4x4<f32>, (BS * KSTRIDE + 15u) / 16u>;

fn sk_ld(i: u32) -> f32 {
  return sk[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sk_st(i: u32, x: f32) {
  sk[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sk: array<f32, BS * KSTRIDE>;

fn sk_ld(i: u32) -> f32 {
  return sk[i];
}

fn sk_st(i: u32, x: f32) {
  sk[i] = x;
}
#endif
#if PACKED
var<workgroup> sv: array<mat4x4<f32>, (BS * DV + 15u) / 16u>;

fn sv_ld(i: u32) -> f32 {
  return sv[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sv_st(i: u32, x: f32) {
  sv[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sv: array<f32, BS * DV>;

fn sv_ld(i: u32) -> f32 {
  return sv[i];
}

fn sv_st(i: u32, x: f32) {
  sv[i] = x;
}
#endif
#if PACKED
var<workgroup> sds: array<mat4x4<f32>, (FR * BS + 15u) / 16u>;

fn sds_ld(i: u32) -> f32 {
  return sds[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sds_st(i: u32, x: f32) {
  sds[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sds: array<f32, FR * BS>;

fn sds_ld(i: u32) -> f32 {
  return sds[i];
}

fn sds_st(i: u32, x: f32) {
  sds[i] = x;
}
#endif

@compute @workgroup_size(WG_SIZE)
fn backward_dq_smem(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let i0 = wid.x * FR;
  let rc = smem_row_col(li);
  for (var e = li; e < FR * F; e += WG_SIZE) {
    let i = min(i0 + e / F, p.seqLen - 1u);
    sq_st(e, q[qk_offset(b, i, h) + e % F] * p.scale);
  }
  for (var e = li; e < FR * DV; e += WG_SIZE) {
    let i = min(i0 + e / DV, p.seqLen - 1u);
    sdo_st(e, dy[v_offset(b, i, h) + e % DV] * zinv[z_index(b, i, h)]);
  }
  // dz_i = -(dy_i·y_i)·zinv_i, one invocation per row, in the same order as the other variants.
  if (rc.y == 0u) {
    let i = min(i0 + rc.x, p.seqLen - 1u);
    let off = v_offset(b, i, h);
    var dyDotY = 0.0;
    for (var c = 0u; c < DV; c++) {
      dyDotY = fma(dy[off + c], y[off + c], dyDotY);
    }
    let dzi = -dyDotY * zinv[z_index(b, i, h)];
    sdz_st(rc.x, dzi);
    if (i0 + rc.x < p.seqLen) {
      dz[z_index(b, i, h)] = dzi;
    }
  }
  let rowEnd = min(i0 + FR, p.seqLen);
  var acc = 0.0;
  for (var j0 = 0u; j0 < rowEnd; j0 += BS) {
    workgroupBarrier();
    for (var e = li; e < BS * F; e += WG_SIZE) {
      let j = min(j0 + e / F, p.seqLen - 1u);
      sk_st((e / F) * KSTRIDE + e % F, k[qk_offset(b, j, h) + e % F]);
    }
    for (var e = li; e < BS * DV; e += WG_SIZE) {
      let j = min(j0 + e / DV, p.seqLen - 1u);
      sv_st(e, v[v_offset(b, j, h) + e % DV]);
    }
    workgroupBarrier();
    for (var e = li; e < FR * BS; e += WG_SIZE) {
      let r = e / BS;
      let jj = e % BS;
      var s = 0.0;
      for (var a = 0u; a < F; a++) {
        s = fma(sq_ld(r * F + a), sk_ld(jj * KSTRIDE + a), s);
      }
      var dA = sdz_ld(r);
      for (var c = 0u; c < DV; c++) {
        dA = fma(sdo_ld(r * DV + c), sv_ld(jj * DV + c), dA);
      }
      let visible = j0 + jj <= i0 + r && i0 + r < p.seqLen;
      sds_st(e, select(0.0, dA * kernel_g_prime(s), visible));
    }
    workgroupBarrier();
    let count = min(BS, rowEnd - j0);
    for (var jj = 0u; jj < count; jj++) {
      acc = fma(sds_ld(rc.x * BS + jj), sk_ld(jj * KSTRIDE + rc.y), acc);
    }
  }
  let i = i0 + rc.x;
  if (i < p.seqLen) {
    let off = qk_offset(b, i, h) + rc.y;
    var g = acc * p.scale;
#if ACCUMULATE
    g += dq[off];
#endif
    dq[off] = g;
  }
}
#endif

#if PASS_BWD_DKDV
#if PACKED
var<workgroup> sk: array<mat4x4<f32>, (FR * F + 15u) / 16u>;

fn sk_ld(i: u32) -> f32 {
  return sk[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sk_st(i: u32, x: f32) {
  sk[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sk: array<f32, FR * F>;

fn sk_ld(i: u32) -> f32 {
  return sk[i];
}

fn sk_st(i: u32, x: f32) {
  sk[i] = x;
}
#endif
#if PACKED
var<workgroup> sv: array<mat4x4<f32>, (FR * DV + 15u) / 16u>;

fn sv_ld(i: u32) -> f32 {
  return sv[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sv_st(i: u32, x: f32) {
  sv[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sv: array<f32, FR * DV>;

fn sv_ld(i: u32) -> f32 {
  return sv[i];
}

fn sv_st(i: u32, x: f32) {
  sv[i] = x;
}
#endif
#if PACKED
var<workgroup> sq: array<mat4x4<f32>, (BS * KSTRIDE + 15u) / 16u>;

fn sq_ld(i: u32) -> f32 {
  return sq[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sq_st(i: u32, x: f32) {
  sq[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sq: array<f32, BS * KSTRIDE>;

fn sq_ld(i: u32) -> f32 {
  return sq[i];
}

fn sq_st(i: u32, x: f32) {
  sq[i] = x;
}
#endif
#if PACKED
var<workgroup> sdo: array<mat4x4<f32>, (BS * DV + 15u) / 16u>;

fn sdo_ld(i: u32) -> f32 {
  return sdo[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sdo_st(i: u32, x: f32) {
  sdo[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sdo: array<f32, BS * DV>;

fn sdo_ld(i: u32) -> f32 {
  return sdo[i];
}

fn sdo_st(i: u32, x: f32) {
  sdo[i] = x;
}
#endif
#if PACKED
var<workgroup> sdz: array<mat4x4<f32>, (BS + 15u) / 16u>;

fn sdz_ld(i: u32) -> f32 {
  return sdz[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sdz_st(i: u32, x: f32) {
  sdz[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sdz: array<f32, BS>;

fn sdz_ld(i: u32) -> f32 {
  return sdz[i];
}

fn sdz_st(i: u32, x: f32) {
  sdz[i] = x;
}
#endif
#if PACKED
var<workgroup> sg: array<mat4x4<f32>, (FR * BS + 15u) / 16u>;

fn sg_ld(i: u32) -> f32 {
  return sg[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sg_st(i: u32, x: f32) {
  sg[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sg: array<f32, FR * BS>;

fn sg_ld(i: u32) -> f32 {
  return sg[i];
}

fn sg_st(i: u32, x: f32) {
  sg[i] = x;
}
#endif
#if PACKED
var<workgroup> sds: array<mat4x4<f32>, (FR * BS + 15u) / 16u>;

fn sds_ld(i: u32) -> f32 {
  return sds[i >> 4u][(i >> 2u) & 3u][i & 3u];
}

fn sds_st(i: u32, x: f32) {
  sds[i >> 4u][(i >> 2u) & 3u][i & 3u] = x;
}
#else
var<workgroup> sds: array<f32, FR * BS>;

fn sds_ld(i: u32) -> f32 {
  return sds[i];
}

fn sds_st(i: u32, x: f32) {
  sds[i] = x;
}
#endif

@compute @workgroup_size(WG_SIZE)
fn backward_dkdv_smem(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let j0 = wid.x * FR;
  let rc = smem_row_col(li);
  for (var e = li; e < FR * F; e += WG_SIZE) {
    let j = min(j0 + e / F, p.seqLen - 1u);
    sk_st(e, k[qk_offset(b, j, h) + e % F]);
  }
  for (var e = li; e < FR * DV; e += WG_SIZE) {
    let j = min(j0 + e / DV, p.seqLen - 1u);
    sv_st(e, v[v_offset(b, j, h) + e % DV]);
  }
  var acc = 0.0;
  for (var i0 = j0; i0 < p.seqLen; i0 += BS) {
    workgroupBarrier();
    for (var e = li; e < BS * F; e += WG_SIZE) {
      let i = min(i0 + e / F, p.seqLen - 1u);
      sq_st((e / F) * KSTRIDE + e % F, q[qk_offset(b, i, h) + e % F] * p.scale);
    }
    for (var e = li; e < BS * DV; e += WG_SIZE) {
      let i = min(i0 + e / DV, p.seqLen - 1u);
      sdo_st(e, dy[v_offset(b, i, h) + e % DV] * zinv[z_index(b, i, h)]);
    }
    for (var e = li; e < BS; e += WG_SIZE) {
      sdz_st(e, dz[z_index(b, min(i0 + e, p.seqLen - 1u), h)]);
    }
    workgroupBarrier();
    for (var e = li; e < FR * BS; e += WG_SIZE) {
      let r = e / BS;
      let ii = e % BS;
      var s = 0.0;
      for (var a = 0u; a < F; a++) {
        s = fma(sq_ld(ii * KSTRIDE + a), sk_ld(r * F + a), s);
      }
      var dA = sdz_ld(ii);
      for (var c = 0u; c < DV; c++) {
        dA = fma(sdo_ld(ii * DV + c), sv_ld(r * DV + c), dA);
      }
      let visible = i0 + ii >= j0 + r && i0 + ii < p.seqLen && j0 + r < p.seqLen;
      sg_st(e, select(0.0, kernel_g(s), visible));
      sds_st(e, select(0.0, dA * kernel_g_prime(s), visible));
    }
    workgroupBarrier();
    let count = min(BS, p.seqLen - i0);
    if (rc.y < F) {
      for (var ii = 0u; ii < count; ii++) {
        acc = fma(sds_ld(rc.x * BS + ii), sq_ld(ii * KSTRIDE + rc.y), acc);
      }
    } else {
      let c = rc.y - F;
      for (var ii = 0u; ii < count; ii++) {
        acc = fma(sg_ld(rc.x * BS + ii), sdo_ld(ii * DV + c), acc);
      }
    }
  }
  let j = j0 + rc.x;
  if (j < p.seqLen) {
    if (rc.y < F) {
      let off = qk_offset(b, j, h) + rc.y;
      var g = acc;
#if ACCUMULATE
      g += dk[off];
#endif
      dk[off] = g;
    } else {
      let off = v_offset(b, j, h) + rc.y - F;
      var g = acc;
#if ACCUMULATE
      g += dv[off];
#endif
      dv[off] = g;
    }
  }
}
#endif
#endif
