// Based / ReBased causal linear attention, exact parallel (quadratic) form (spec §5.1), forward and backward, plus a
// chunked O(L) forward (spec §5.3).
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
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
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

#if PASS_FORWARD
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> zinv: array<f32>;
#endif

#if PASS_BWD_DQ
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> y: array<f32>;
@group(0) @binding(5) var<storage, read> zinv: array<f32>;
@group(0) @binding(6) var<storage, read> dy: array<f32>;
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;
@group(0) @binding(8) var<storage, read_write> dz: array<f32>;
#endif

#if PASS_BWD_DKDV
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> zinv: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read> dz: array<f32>;
@group(0) @binding(7) var<storage, read_write> dk: array<f32>;
@group(0) @binding(8) var<storage, read_write> dv: array<f32>;
#endif

#if TILED
#if PASS_BWD_DKDV
// Query tile for the dk/dv sweep: scaled q, do = dy·zinv, dz.
var<workgroup> q_tile: array<f32, BS * F>;
var<workgroup> do_tile: array<f32, BS * DV>;
var<workgroup> dz_tile: array<f32, BS>;
#else
// Key tile for the forward and dq sweeps.
var<workgroup> k_tile: array<f32, BS * F>;
var<workgroup> v_tile: array<f32, BS * DV>;

// Stages keys j0 .. j0+BS-1 (clamped to the sequence; rows past it are never read).
fn load_key_tile(b: u32, h: u32, j0: u32, li: u32) {
  for (var e = li; e < BS * F; e += ROWS_PER_WG) {
    let j = min(j0 + e / F, p.seqLen - 1u);
    k_tile[e] = k[qk_offset(b, j, h) + e % F];
  }
  for (var e = li; e < BS * DV; e += ROWS_PER_WG) {
    let j = min(j0 + e / DV, p.seqLen - 1u);
    v_tile[e] = v[v_offset(b, j, h) + e % DV];
  }
}
#endif
#endif

#if PASS_FORWARD
#if !SMEM
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
        s = fma(qs[a], k_tile[jj * F + a], s);
      }
      let w = kernel_g(s);
      z += w;
      for (var c = 0u; c < DV; c++) {
        o[c] = fma(w, v_tile[jj * DV + c], o[c]);
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

#if PASS_BWD_DQ
#if !SMEM
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
        s = fma(qs[a], k_tile[jj * F + a], s);
      }
      var dA = dzi;
      for (var c = 0u; c < DV; c++) {
        dA = fma(dOut[c], v_tile[jj * DV + c], dA);
      }
      let dS = dA * kernel_g_prime(s);
      for (var a = 0u; a < F; a++) {
        acc[a] = fma(dS, k_tile[jj * F + a], acc[a]);
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

#if PASS_BWD_DKDV
#if !SMEM
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
      q_tile[e] = q[qk_offset(b, i, h) + e % F] * p.scale;
    }
    for (var e = li; e < BS * DV; e += ROWS_PER_WG) {
      let i = min(i0 + e / DV, p.seqLen - 1u);
      do_tile[e] = dy[v_offset(b, i, h) + e % DV] * zinv[z_index(b, i, h)];
    }
    for (var e = li; e < BS; e += ROWS_PER_WG) {
      dz_tile[e] = dz[z_index(b, min(i0 + e, p.seqLen - 1u), h)];
    }
    workgroupBarrier();
    let tileEnd = min(i0 + BS, p.seqLen);
    let first = min(max(queryStart, i0), tileEnd) - i0;
    for (var ii = first; ii < tileEnd - i0; ii++) {
      var s = 0.0;
      for (var a = 0u; a < F; a++) {
        s = fma(q_tile[ii * F + a], kr[a], s);
      }
      let w = kernel_g(s);
      var dA = dz_tile[ii];
      for (var c = 0u; c < DV; c++) {
        dA = fma(do_tile[ii * DV + c], vr[c], dA);
      }
      let dS = dA * kernel_g_prime(s);
      for (var a = 0u; a < F; a++) {
        dkAcc[a] = fma(dS, q_tile[ii * F + a], dkAcc[a]);
      }
      for (var c = 0u; c < DV; c++) {
        dvAcc[c] = fma(w, do_tile[ii * DV + c], dvAcc[c]);
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

#if PASS_FWD_CHUNKED
// Chunked forward (spec §5.3), fused: one workgroup per (value-column tile, head, batch) walks the sequence in chunks
// of CHUNK tokens and carries the state M = Σ_{j<chunk} φ(k_j) [v_j, 1]ᵀ in workgroup memory; the appended ones column
// makes M's last column the denominator state Z (n0, z1, z2 of §5.3). Per chunk:
//   o_i = φq(q̃_i)ᵀ M  +  Σ_{j in chunk, j≤i} g(q̃_i·k_j) [v_j, 1]        then   M += Σ_{j in chunk} φk(k_j) [v_j, 1]ᵀ.
// Features, packed symmetrically (DPHI of them): Based [1, x_a, x_a x_b (a≤b)], ReBased [x_a x_b (a≤b)]. The kernel's
// coefficients sit on the query side only: φq·φk = g(q̃·k) with the diagonal pair weighted DIAG_COEF and the off-diagonal
// pairs OFF_COEF (Based ½ and 1, ReBased 1 and 2).
// Defines: F, DV, DVT (value columns per workgroup), DPHI, CHUNK, CHUNK_WG, REBASED.
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> zinv: array<f32>;

// DVT value columns plus the ones column.
const NC = DVT + 1u;
#if REBASED
const DIAG_COEF = 1.0;
const OFF_COEF = 2.0;
const LEAD = 0u;
#else
const DIAG_COEF = 0.5;
const OFF_COEF = 1.0;
const LEAD = 1u + F;
#endif

var<workgroup> state: array<f32, DPHI * NC>;
var<workgroup> q_chunk: array<f32, CHUNK * F>;
var<workgroup> k_chunk: array<f32, CHUNK * F>;
var<workgroup> v_chunk: array<f32, CHUNK * NC>;
var<workgroup> scores: array<f32, CHUNK * CHUNK>;
var<workgroup> o_chunk: array<f32, CHUNK * NC>;

// φk(k_j)[e] for chunk row j.
fn key_feature(j: u32, e: u32) -> f32 {
#if !REBASED
  if (e == 0u) {
    return 1.0;
  }
  if (e <= F) {
    return k_chunk[j * F + e - 1u];
  }
#endif
  // Decode the packed pair index into (a, b), a ≤ b, row-major over the upper triangle.
  var pair = e - LEAD;
  var a = 0u;
  while (pair >= F - a) {
    pair -= F - a;
    a++;
  }
  return k_chunk[j * F + a] * k_chunk[j * F + a + pair];
}

@compute @workgroup_size(CHUNK_WG)
fn forward_chunked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let col0 = wid.x * DVT;
  let h = wid.y;
  let b = wid.z;
  let cols = min(DVT, DV - col0);
  for (var e = li; e < DPHI * NC; e += CHUNK_WG) {
    state[e] = 0.0;
  }
  for (var t0 = 0u; t0 < p.seqLen; t0 += CHUNK) {
    // The previous chunk's state update must finish before its tiles are overwritten.
    workgroupBarrier();
    for (var e = li; e < CHUNK * F; e += CHUNK_WG) {
      let t = t0 + e / F;
      let tSafe = min(t, p.seqLen - 1u);
      let off = qk_offset(b, tSafe, h) + e % F;
      q_chunk[e] = q[off] * p.scale;
      // Rows past the sequence get k = 0 and v = 0 (including the ones column): they add nothing to the state.
      k_chunk[e] = select(0.0, k[off], t < p.seqLen);
    }
    for (var e = li; e < CHUNK * NC; e += CHUNK_WG) {
      let t = t0 + e / NC;
      let c = e % NC;
      var value = 0.0;
      if (t < p.seqLen) {
        if (c == DVT) {
          value = 1.0;
        } else if (c < cols) {
          value = v[v_offset(b, t, h) + col0 + c];
        }
      }
      v_chunk[e] = value;
    }
    workgroupBarrier();
    for (var e = li; e < CHUNK * CHUNK; e += CHUNK_WG) {
      let i = e / CHUNK;
      let j = e % CHUNK;
      var s = 0.0;
      for (var a = 0u; a < F; a++) {
        s = fma(q_chunk[i * F + a], k_chunk[j * F + a], s);
      }
      scores[e] = select(0.0, kernel_g(s), j <= i);
    }
    workgroupBarrier();
    for (var e = li; e < CHUNK * NC; e += CHUNK_WG) {
      let i = e / NC;
      let c = e % NC;
      // Inter-chunk part: φq(q̃_i)·M[:, c], features generated on the fly in packing order.
      var acc = 0.0;
      var feat = 0u;
#if !REBASED
      acc = state[c];
      for (var a = 0u; a < F; a++) {
        acc = fma(q_chunk[i * F + a], state[(1u + a) * NC + c], acc);
      }
      feat = LEAD;
#endif
      for (var a = 0u; a < F; a++) {
        let qa = q_chunk[i * F + a];
        acc = fma(DIAG_COEF * qa * qa, state[feat * NC + c], acc);
        feat++;
        for (var bb = a + 1u; bb < F; bb++) {
          acc = fma(OFF_COEF * qa * q_chunk[i * F + bb], state[feat * NC + c], acc);
          feat++;
        }
      }
      // Intra-chunk part, causal.
      for (var j = 0u; j <= i; j++) {
        acc = fma(scores[i * CHUNK + j], v_chunk[j * NC + c], acc);
      }
      o_chunk[e] = acc;
    }
    workgroupBarrier();
    for (var e = li; e < CHUNK * DVT; e += CHUNK_WG) {
      let i = e / DVT;
      let c = e % DVT;
      let t = t0 + i;
      if (t < p.seqLen && c < cols) {
        let inv = 1.0 / (o_chunk[i * NC + DVT] + p.eps);
        y[v_offset(b, t, h) + col0 + c] = o_chunk[i * NC + c] * inv;
        if (wid.x == 0u && c == 0u) {
          zinv[z_index(b, t, h)] = inv;
        }
      }
    }
    // State update; each invocation owns whole feature rows of M, so no other invocation touches them.
    for (var e = li; e < DPHI; e += CHUNK_WG) {
      // Explicitly zeroed: a declaration inside a loop is not re-zeroed by every compiler.
      var delta: array<f32, NC>;
      for (var c = 0u; c < NC; c++) {
        delta[c] = 0.0;
      }
      for (var j = 0u; j < CHUNK; j++) {
        let phi = key_feature(j, e);
        for (var c = 0u; c < NC; c++) {
          delta[c] = fma(phi, v_chunk[j * NC + c], delta[c]);
        }
      }
      for (var c = 0u; c < NC; c++) {
        state[e * NC + c] += delta[c];
      }
    }
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
var<workgroup> sq: array<f32, FR * F>;
var<workgroup> sk: array<f32, BS * KSTRIDE>;
var<workgroup> sv: array<f32, BS * DV>;
var<workgroup> sg: array<f32, FR * BS>;
var<workgroup> sout: array<f32, FR * COLS>;

@compute @workgroup_size(WG_SIZE)
fn forward_smem(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let i0 = wid.x * FR;
  let rc = smem_row_col(li);
  for (var e = li; e < FR * F; e += WG_SIZE) {
    let i = min(i0 + e / F, p.seqLen - 1u);
    sq[e] = q[qk_offset(b, i, h) + e % F] * p.scale;
  }
  let rowEnd = min(i0 + FR, p.seqLen);
  var acc = 0.0;
  for (var j0 = 0u; j0 < rowEnd; j0 += BS) {
    workgroupBarrier();
    for (var e = li; e < BS * F; e += WG_SIZE) {
      let j = min(j0 + e / F, p.seqLen - 1u);
      sk[(e / F) * KSTRIDE + e % F] = k[qk_offset(b, j, h) + e % F];
    }
    for (var e = li; e < BS * DV; e += WG_SIZE) {
      let j = min(j0 + e / DV, p.seqLen - 1u);
      sv[e] = v[v_offset(b, j, h) + e % DV];
    }
    workgroupBarrier();
    for (var e = li; e < FR * BS; e += WG_SIZE) {
      let r = e / BS;
      let jj = e % BS;
      var s = 0.0;
      for (var a = 0u; a < F; a++) {
        s = fma(sq[r * F + a], sk[jj * KSTRIDE + a], s);
      }
      // Causal mask; rows past the sequence see nothing.
      let visible = j0 + jj <= i0 + r && i0 + r < p.seqLen;
      sg[e] = select(0.0, kernel_g(s), visible);
    }
    workgroupBarrier();
    let count = min(BS, rowEnd - j0);
    let c = min(rc.y, DV - 1u);
    let isDenominator = rc.y == DV;
    for (var jj = 0u; jj < count; jj++) {
      acc = fma(sg[rc.x * BS + jj], select(sv[jj * DV + c], 1.0, isDenominator), acc);
    }
  }
  sout[li] = acc;
  workgroupBarrier();
  let i = i0 + rc.x;
  if (i < p.seqLen) {
    let inv = 1.0 / (sout[rc.x * COLS + DV] + p.eps);
    if (rc.y < DV) {
      y[v_offset(b, i, h) + rc.y] = acc * inv;
    } else {
      zinv[z_index(b, i, h)] = inv;
    }
  }
}
#endif

#if PASS_BWD_DQ
var<workgroup> sq: array<f32, FR * F>;
var<workgroup> sdo: array<f32, FR * DV>;
var<workgroup> sdz: array<f32, FR>;
var<workgroup> sk: array<f32, BS * KSTRIDE>;
var<workgroup> sv: array<f32, BS * DV>;
var<workgroup> sds: array<f32, FR * BS>;

@compute @workgroup_size(WG_SIZE)
fn backward_dq_smem(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let i0 = wid.x * FR;
  let rc = smem_row_col(li);
  for (var e = li; e < FR * F; e += WG_SIZE) {
    let i = min(i0 + e / F, p.seqLen - 1u);
    sq[e] = q[qk_offset(b, i, h) + e % F] * p.scale;
  }
  for (var e = li; e < FR * DV; e += WG_SIZE) {
    let i = min(i0 + e / DV, p.seqLen - 1u);
    sdo[e] = dy[v_offset(b, i, h) + e % DV] * zinv[z_index(b, i, h)];
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
    sdz[rc.x] = dzi;
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
      sk[(e / F) * KSTRIDE + e % F] = k[qk_offset(b, j, h) + e % F];
    }
    for (var e = li; e < BS * DV; e += WG_SIZE) {
      let j = min(j0 + e / DV, p.seqLen - 1u);
      sv[e] = v[v_offset(b, j, h) + e % DV];
    }
    workgroupBarrier();
    for (var e = li; e < FR * BS; e += WG_SIZE) {
      let r = e / BS;
      let jj = e % BS;
      var s = 0.0;
      for (var a = 0u; a < F; a++) {
        s = fma(sq[r * F + a], sk[jj * KSTRIDE + a], s);
      }
      var dA = sdz[r];
      for (var c = 0u; c < DV; c++) {
        dA = fma(sdo[r * DV + c], sv[jj * DV + c], dA);
      }
      let visible = j0 + jj <= i0 + r && i0 + r < p.seqLen;
      sds[e] = select(0.0, dA * kernel_g_prime(s), visible);
    }
    workgroupBarrier();
    let count = min(BS, rowEnd - j0);
    for (var jj = 0u; jj < count; jj++) {
      acc = fma(sds[rc.x * BS + jj], sk[jj * KSTRIDE + rc.y], acc);
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
var<workgroup> sk: array<f32, FR * F>;
var<workgroup> sv: array<f32, FR * DV>;
var<workgroup> sq: array<f32, BS * KSTRIDE>;
var<workgroup> sdo: array<f32, BS * DV>;
var<workgroup> sdz: array<f32, BS>;
var<workgroup> sg: array<f32, FR * BS>;
var<workgroup> sds: array<f32, FR * BS>;

@compute @workgroup_size(WG_SIZE)
fn backward_dkdv_smem(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wid.y;
  let b = wid.z;
  let j0 = wid.x * FR;
  let rc = smem_row_col(li);
  for (var e = li; e < FR * F; e += WG_SIZE) {
    let j = min(j0 + e / F, p.seqLen - 1u);
    sk[e] = k[qk_offset(b, j, h) + e % F];
  }
  for (var e = li; e < FR * DV; e += WG_SIZE) {
    let j = min(j0 + e / DV, p.seqLen - 1u);
    sv[e] = v[v_offset(b, j, h) + e % DV];
  }
  var acc = 0.0;
  for (var i0 = j0; i0 < p.seqLen; i0 += BS) {
    workgroupBarrier();
    for (var e = li; e < BS * F; e += WG_SIZE) {
      let i = min(i0 + e / F, p.seqLen - 1u);
      sq[(e / F) * KSTRIDE + e % F] = q[qk_offset(b, i, h) + e % F] * p.scale;
    }
    for (var e = li; e < BS * DV; e += WG_SIZE) {
      let i = min(i0 + e / DV, p.seqLen - 1u);
      sdo[e] = dy[v_offset(b, i, h) + e % DV] * zinv[z_index(b, i, h)];
    }
    for (var e = li; e < BS; e += WG_SIZE) {
      sdz[e] = dz[z_index(b, min(i0 + e, p.seqLen - 1u), h)];
    }
    workgroupBarrier();
    for (var e = li; e < FR * BS; e += WG_SIZE) {
      let r = e / BS;
      let ii = e % BS;
      var s = 0.0;
      for (var a = 0u; a < F; a++) {
        s = fma(sq[ii * KSTRIDE + a], sk[r * F + a], s);
      }
      var dA = sdz[ii];
      for (var c = 0u; c < DV; c++) {
        dA = fma(sdo[ii * DV + c], sv[r * DV + c], dA);
      }
      let visible = i0 + ii >= j0 + r && i0 + ii < p.seqLen && j0 + r < p.seqLen;
      sg[e] = select(0.0, kernel_g(s), visible);
      sds[e] = select(0.0, dA * kernel_g_prime(s), visible);
    }
    workgroupBarrier();
    let count = min(BS, p.seqLen - i0);
    if (rc.y < F) {
      for (var ii = 0u; ii < count; ii++) {
        acc = fma(sds[rc.x * BS + ii], sq[ii * KSTRIDE + rc.y], acc);
      }
    } else {
      let c = rc.y - F;
      for (var ii = 0u; ii < count; ii++) {
        acc = fma(sg[rc.x * BS + ii], sdo[ii * DV + c], acc);
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
