// The (gated) delta rule in chunks of CH tokens: the form flash-linear-attention runs on GPUs (src/ops/delta_rule.ts,
// createDeltaRule with variant "chunked"; the recurrent form and the float64 reference: kernels/delta_rule.wgsl,
// src/reference/delta_rule.ts). Same layouts and results as the recurrent form, different association of the sums.
//
// Within a chunk with entering state S_0 (V×K, rows i), local tokens t, s < n and G_t = Σ_{r≤t} g_r (log decay, 0
// without GATED), E_ts = exp(G_t − G_s), γ_t = exp(G_t):
//   M_ts = E_ts·(k_s·k_t) (s < t; DELTA only)        P_ts = scale·E_ts·(k_s·q_t) (s ≤ t)
//   u_t = β_t·(v_t − γ_t·S_0·k_t) − β_t·Σ_{s<t} M_ts·u_s   (the WY/UT solve (I + diag(β)·M)·u = rhs, by substitution)
//   o_t = scale·γ_t·S_0·q_t + Σ_{s≤t} P_ts·u_s
//   S_n = γ_{n−1}·S_0 + Σ_s E_{n−1,s}·u_s·k_sᵀ
// (additive update, DELTA false: u_t = β_t·v_t, no M.) The backward walks the chunks last to first with the adjoint
// dS of the state leaving the chunk: D_s = Σ_{t≥s} P_ts·do_t + E_{n−1,s}·dS·k_s, ū = (I + diag(β)·M)⁻ᵀ·D (back
// substitution), ē = β·ū, dv = ē, dβ_t = e_t·ū_t, and dq, dk, dG from the products listed in chunk_backward; then
// dS ← γ_{n−1}·dS + Σ_t γ_t·(scale·do_t·q_tᵀ − ē_t·k_tᵀ).
//
// One workgroup per (b, h, block of VB value rows): rows of S evolve independently, so a block carries its VB×K slice
// of the state through the chunks in workgroup memory; the C×C matrices are recomputed per block. The backward's
// sums over value rows (dq, dk, dβ, dG) are per-block partials, summed over blocks in a fixed order by chunk_reduce,
// which also turns dG into dg (reverse cumulative sum within the chunk). No atomics.
// Layouts (bh = b·H + h): checkpoints = chunk states [chunks, B·H, V, K] (state entering chunk c), then u [rows, H·V]
// at uOffset; workspace = partials [blocks, rows·H, 2K + 2] (dq, dk, dβ, dG), then the dS carry [B·H, V, K] at carry.
// Each dispatch runs chunks [c0, c1) (the host bounds the loop iterations per invocation for llvmpipe's limit).

struct Params {
  batch: u32,
  seqLen: u32,
  heads: u32,
  valueDim: u32,
  rows: u32,
  c0: u32,
  c1: u32,
  chunks: u32,
  blocks: u32,
  uOffset: u32,
  carry: u32,
  scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;

const WGC = 64u;

fn token(b: u32, t: u32, h: u32) -> u32 {
  return (b * p.seqLen + t) * p.heads + h;
}

fn state_index(c: u32, bh: u32, i: u32, j: u32) -> u32 {
  return ((c * p.batch * p.heads + bh) * p.valueDim + i) * NK + j;
}

#if CHUNK_SWEEP
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> gates: array<f32>;

var<workgroup> sS: array<f32, VB * NK>;
var<workgroup> sG: array<f32, CH>;
var<workgroup> sBeta: array<f32, CH>;
var<workgroup> sM: array<f32, CH * CH>;
var<workgroup> sP: array<f32, CH * CH>;
var<workgroup> sU: array<f32, CH * VB>;

fn log_decay(gh: u32) -> f32 {
#if GATED
  return gates[p.rows * p.heads + gh];
#else
  return 0.0;
#endif
}

struct Block {
  b: u32,
  h: u32,
  bh: u32,
  i0: u32,
  nv: u32,
}

fn block_of(wg: vec3<u32>, nwg: vec3<u32>) -> Block {
  let wid = wg.x + wg.y * nwg.x;
  let bh = wid / p.blocks;
  let i0 = (wid % p.blocks) * VB;
  return Block(bh / p.heads, bh % p.heads, bh, i0, min(VB, p.valueDim - min(i0, p.valueDim)));
}

// sG, sBeta, then sM, sP of chunk c (n tokens from t0). Ends with a barrier.
fn chunk_matrices(blk: Block, t0: u32, n: u32, li: u32) {
  if (li < CH) {
    var G = 0.0;
    var beta = 0.0;
    if (li < n) {
      for (var r = 0u; r <= li; r++) {
        G += log_decay(token(blk.b, t0 + r, blk.h));
      }
      beta = gates[token(blk.b, t0 + li, blk.h)];
    }
    sG[li] = G;
    sBeta[li] = beta;
  }
  workgroupBarrier();
  for (var e = li; e < CH * CH; e += WGC) {
    let t = e / CH;
    let s = e % CH;
    var m = 0.0;
    var pq = 0.0;
    if (s <= t && t < n) {
      let kb = token(blk.b, t0 + s, blk.h) * NK;
      let tb = token(blk.b, t0 + t, blk.h) * NK;
      var kq = 0.0;
      var kk = 0.0;
      for (var j = 0u; j < NK; j++) {
        kq = fma(k[kb + j], q[tb + j], kq);
        if (DELTA) {
          kk = fma(k[kb + j], k[tb + j], kk);
        }
      }
      let dec = exp(sG[t] - sG[s]);
      pq = p.scale * dec * kq;
      if (s < t) {
        m = dec * kk;
      }
    }
    sM[e] = m;
    sP[e] = pq;
  }
  workgroupBarrier();
}

// S_0·k_t (DELTA) and S_0·q_t of value row ii.
fn state_dot(ii: u32, xb: u32, use_k: bool) -> f32 {
  var acc = 0.0;
  for (var j = 0u; j < NK; j++) {
    let x = select(q[xb + j], k[xb + j], use_k);
    acc = fma(sS[ii * NK + j], x, acc);
  }
  return acc;
}
#endif

#if PASS_CHUNK_FORWARD
@group(0) @binding(5) var<storage, read_write> o: array<f32>;
@group(0) @binding(6) var<storage, read_write> checkpoints: array<f32>;

var<workgroup> sO: array<f32, CH * VB>;

@compute @workgroup_size(64)
fn chunk_forward(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  if (wg.x + wg.y * nwg.x >= p.batch * p.heads * p.blocks) {
    return;
  }
  let blk = block_of(wg, nwg);
  let V = p.valueDim;
  for (var e = li; e < VB * NK; e += WGC) {
    let ii = e / NK;
    var x = 0.0;
    if (ii < blk.nv) {
      let si = state_index(p.c0, blk.bh, blk.i0 + ii, e % NK);
      if (p.c0 > 0u) {
        x = checkpoints[si];
      } else {
        checkpoints[si] = 0.0;
      }
    }
    sS[e] = x;
  }
  for (var c = p.c0; c < p.c1; c++) {
    let t0 = c * CH;
    let n = min(CH, p.seqLen - t0);
    workgroupBarrier();
    chunk_matrices(blk, t0, n, li);
    for (var e = li; e < CH * VB; e += WGC) {
      let tau = e / VB;
      let ii = e % VB;
      var rhs = 0.0;
      var oq = 0.0;
      if (tau < n && ii < blk.nv) {
        let gh = token(blk.b, t0 + tau, blk.h);
        let gam = exp(sG[tau]);
        var sk = 0.0;
        if (DELTA) {
          sk = state_dot(ii, gh * NK, true);
        }
        rhs = sBeta[tau] * (v[gh * V + blk.i0 + ii] - gam * sk);
        oq = p.scale * gam * state_dot(ii, gh * NK, false);
      }
      sU[e] = rhs;
      sO[e] = oq;
    }
    workgroupBarrier();
    if (DELTA && li < blk.nv) {
      for (var t = 1u; t < n; t++) {
        var acc = sU[t * VB + li];
        let bt = sBeta[t];
        for (var s = 0u; s < t; s++) {
          acc = fma(-bt * sM[t * CH + s], sU[s * VB + li], acc);
        }
        sU[t * VB + li] = acc;
      }
    }
    workgroupBarrier();
    for (var e = li; e < CH * VB; e += WGC) {
      let tau = e / VB;
      let ii = e % VB;
      if (tau < n && ii < blk.nv) {
        var acc = sO[e];
        for (var s = 0u; s <= tau; s++) {
          acc = fma(sP[tau * CH + s], sU[s * VB + ii], acc);
        }
        let at = token(blk.b, t0 + tau, blk.h) * V + blk.i0 + ii;
        o[at] = acc;
        checkpoints[p.uOffset + at] = sU[e];
      }
    }
    // sS was last read before the barrier above the solve.
    let gl = sG[n - 1u];
    for (var e = li; e < VB * NK; e += WGC) {
      let ii = e / NK;
      let j = e % NK;
      if (ii < blk.nv) {
        var acc = exp(gl) * sS[e];
        for (var s = 0u; s < n; s++) {
          acc = fma(exp(gl - sG[s]) * sU[s * VB + ii], k[token(blk.b, t0 + s, blk.h) * NK + j], acc);
        }
        sS[e] = acc;
        if (c + 1u < p.chunks) {
          checkpoints[state_index(c + 1u, blk.bh, blk.i0 + ii, j)] = acc;
        }
      }
    }
  }
}
#endif

#if PASS_CHUNK_BACKWARD
@group(0) @binding(5) var<storage, read> checkpoints: array<f32>;
@group(0) @binding(6) var<storage, read> dout: array<f32>;
@group(0) @binding(7) var<storage, read_write> dv: array<f32>;
@group(0) @binding(8) var<storage, read_write> ws: array<f32>;

var<workgroup> sD: array<f32, VB * NK>;
var<workgroup> sDo: array<f32, CH * VB>;
var<workgroup> sE: array<f32, CH * VB>;
var<workgroup> sX: array<f32, CH * VB>;
var<workgroup> sSK: array<f32, CH * VB>;
var<workgroup> sDK: array<f32, CH * VB>;
var<workgroup> sUD: array<f32, CH * CH>;
var<workgroup> sUE: array<f32, CH * CH>;

// Columns of a token's partials: dq [0, K), dk [K, 2K), dβ 2K, dG 2K + 1.
const PW = 2u * NK + 2u;

@compute @workgroup_size(64)
fn chunk_backward(
  @builtin(workgroup_id) wg: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let wid = wg.x + wg.y * nwg.x;
  if (wid >= p.batch * p.heads * p.blocks) {
    return;
  }
  let blk = block_of(wg, nwg);
  let V = p.valueDim;
  let part = (wid % p.blocks) * p.rows * p.heads;
  for (var e = li; e < VB * NK; e += WGC) {
    let ii = e / NK;
    var x = 0.0;
    if (ii < blk.nv && p.c1 < p.chunks) {
      x = ws[p.carry + (blk.bh * V + blk.i0 + ii) * NK + e % NK];
    }
    sD[e] = x;
  }
  for (var cc = p.c1; cc > p.c0; cc--) {
    let c = cc - 1u;
    let t0 = c * CH;
    let n = min(CH, p.seqLen - t0);
    workgroupBarrier();
    for (var e = li; e < VB * NK; e += WGC) {
      let ii = e / NK;
      var x = 0.0;
      if (ii < blk.nv) {
        x = checkpoints[state_index(c, blk.bh, blk.i0 + ii, e % NK)];
      }
      sS[e] = x;
    }
    for (var e = li; e < CH * VB; e += WGC) {
      let tau = e / VB;
      let ii = e % VB;
      var u = 0.0;
      var d = 0.0;
      if (tau < n && ii < blk.nv) {
        let at = token(blk.b, t0 + tau, blk.h) * V + blk.i0 + ii;
        u = checkpoints[p.uOffset + at];
        d = dout[at];
      }
      sU[e] = u;
      sDo[e] = d;
    }
    chunk_matrices(blk, t0, n, li);
    // S_0·k_t and dS·k_t per (t, row).
    for (var e = li; e < CH * VB; e += WGC) {
      let tau = e / VB;
      let ii = e % VB;
      var sk = 0.0;
      var dk = 0.0;
      if (tau < n && ii < blk.nv) {
        let kb = token(blk.b, t0 + tau, blk.h) * NK;
        for (var j = 0u; j < NK; j++) {
          sk = fma(sS[ii * NK + j], k[kb + j], sk);
          dk = fma(sD[ii * NK + j], k[kb + j], dk);
        }
      }
      sSK[e] = sk;
      sDK[e] = dk;
    }
    workgroupBarrier();
    // e_t (the bracket u_t = β_t·e_t) and D_t.
    let gl = sG[n - 1u];
    for (var e = li; e < CH * VB; e += WGC) {
      let tau = e / VB;
      let ii = e % VB;
      var et = 0.0;
      var d = 0.0;
      if (tau < n && ii < blk.nv) {
        et = v[token(blk.b, t0 + tau, blk.h) * V + blk.i0 + ii];
        if (DELTA) {
          et -= exp(sG[tau]) * sSK[e];
          for (var s = 0u; s < tau; s++) {
            et = fma(-sM[tau * CH + s], sU[s * VB + ii], et);
          }
        }
        d = exp(gl - sG[tau]) * sDK[e];
        for (var t = tau; t < n; t++) {
          d = fma(sP[t * CH + tau], sDo[t * VB + ii], d);
        }
      }
      sE[e] = et;
      sX[e] = d;
    }
    workgroupBarrier();
    if (DELTA && li < blk.nv) {
      for (var s = n - 1u; s > 0u; s--) {
        let ss = s - 1u;
        var acc = sX[ss * VB + li];
        for (var t = s; t < n; t++) {
          acc = fma(-sBeta[t] * sM[t * CH + ss], sX[t * VB + li], acc);
        }
        sX[ss * VB + li] = acc;
      }
    }
    workgroupBarrier();
    // sX = ū; ē = β·ū. dv, and the C×C products over this block's rows: UD_ts = u_s·do_t, UE_ts = u_s·ē_t.
    for (var e = li; e < CH * VB; e += WGC) {
      let tau = e / VB;
      let ii = e % VB;
      if (tau < n && ii < blk.nv) {
        dv[token(blk.b, t0 + tau, blk.h) * V + blk.i0 + ii] = sBeta[tau] * sX[e];
      }
    }
    for (var e = li; e < CH * CH; e += WGC) {
      let t = e / CH;
      let s = e % CH;
      var ud = 0.0;
      var ue = 0.0;
      if (s <= t && t < n) {
        for (var ii = 0u; ii < blk.nv; ii++) {
          ud = fma(sU[s * VB + ii], sDo[t * VB + ii], ud);
          ue = fma(sU[s * VB + ii], sX[t * VB + ii], ue);
        }
        ue *= sBeta[t];
      }
      sUD[e] = ud;
      sUE[e] = ue;
    }
    workgroupBarrier();
    // Partials of dq_t, dk_t (per column) and dβ_t, dG_t (per token).
    for (var e = li; e < n * (2u * NK + 1u); e += WGC) {
      let tau = e / (2u * NK + 1u);
      let col = e % (2u * NK + 1u);
      let gh = token(blk.b, t0 + tau, blk.h);
      let out = (part + gh) * PW;
      if (col < NK) {
        // dq_t[j] = scale·γ_t·Σ_i S_0[i, j]·do_t[i] + Σ_{s≤t} scale·E_ts·UD_ts·k_s[j]
        let j = col;
        var sd = 0.0;
        for (var ii = 0u; ii < blk.nv; ii++) {
          sd = fma(sS[ii * NK + j], sDo[tau * VB + ii], sd);
        }
        var acc = p.scale * exp(sG[tau]) * sd;
        for (var s = 0u; s <= tau; s++) {
          let w = p.scale * exp(sG[tau] - sG[s]) * sUD[tau * CH + s];
          acc = fma(w, k[token(blk.b, t0 + s, blk.h) * NK + j], acc);
        }
        ws[out + j] = acc;
      } else if (col < 2u * NK) {
        // dk_s[j] = Σ_{t≥s} scale·E_ts·UD_ts·q_t[j] + E_{n−1,s}·Σ_i dS[i, j]·u_s[i]
        //           − γ_s·Σ_i S_0[i, j]·ē_s[i] − Σ_{t>s} E_ts·UE_ts·k_t[j] − Σ_{r<s} E_sr·UE_sr·k_r[j]   (DELTA)
        let j = col - NK;
        let s = tau;
        var du = 0.0;
        var se = 0.0;
        for (var ii = 0u; ii < blk.nv; ii++) {
          du = fma(sD[ii * NK + j], sU[s * VB + ii], du);
          se = fma(sS[ii * NK + j], sX[s * VB + ii], se);
        }
        var acc = exp(gl - sG[s]) * du;
        if (DELTA) {
          acc -= exp(sG[s]) * sBeta[s] * se;
        }
        for (var t = s; t < n; t++) {
          let tb = token(blk.b, t0 + t, blk.h) * NK + j;
          acc = fma(p.scale * exp(sG[t] - sG[s]) * sUD[t * CH + s], q[tb], acc);
          if (DELTA && t > s) {
            acc = fma(-exp(sG[t] - sG[s]) * sUE[t * CH + s], k[tb], acc);
          }
        }
        if (DELTA) {
          for (var r = 0u; r < s; r++) {
            acc = fma(-exp(sG[s] - sG[r]) * sUE[s * CH + r], k[token(blk.b, t0 + r, blk.h) * NK + j], acc);
          }
        }
        ws[out + NK + j] = acc;
      } else {
        // dβ_t = Σ_i e_t[i]·ū_t[i];
        // dG_t = a_t − b_t + Σ_{s≤t} P_ts·UD_ts − Σ_{r≥t} P_rt·UD_rt − Σ_{s<t} M_ts·UE_ts + Σ_{r>t} M_rt·UE_rt − Q_t
        //        + [t = n−1]·(Z + Σ_s Q_s), with a_t = scale·γ_t·Σ_i do_t[i]·(S_0·q_t)[i], b_t = γ_t·Σ_i ē_t[i]·(S_0·k_t)[i],
        //        Q_s = E_{n−1,s}·Σ_i u_s[i]·(dS·k_s)[i], Z = γ_{n−1}·Σ S_0∘dS.
        let t = tau;
        let qb = gh * NK;
        var db = 0.0;
        var a = 0.0;
        var bb = 0.0;
        for (var ii = 0u; ii < blk.nv; ii++) {
          db = fma(sE[t * VB + ii], sX[t * VB + ii], db);
          a = fma(sDo[t * VB + ii], state_dot(ii, qb, false), a);
          bb = fma(sX[t * VB + ii], sSK[t * VB + ii], bb);
        }
        var dG = p.scale * exp(sG[t]) * a;
        if (DELTA) {
          dG -= exp(sG[t]) * sBeta[t] * bb;
        }
        for (var s = 0u; s < n; s++) {
          if (s <= t) {
            dG = fma(sP[t * CH + s], sUD[t * CH + s], dG);
          }
          if (s >= t) {
            dG = fma(-sP[s * CH + t], sUD[s * CH + t], dG);
          }
          if (DELTA && s < t) {
            dG = fma(-sM[t * CH + s], sUE[t * CH + s], dG);
          }
          if (DELTA && s > t) {
            dG = fma(sM[s * CH + t], sUE[s * CH + t], dG);
          }
        }
        var qt = 0.0;
        for (var ii = 0u; ii < blk.nv; ii++) {
          qt = fma(sU[t * VB + ii], sDK[t * VB + ii], qt);
        }
        dG -= exp(gl - sG[t]) * qt;
        if (t == n - 1u) {
          var z = 0.0;
          for (var e2 = 0u; e2 < blk.nv * NK; e2++) {
            z = fma(sS[e2], sD[e2], z);
          }
          dG = fma(exp(gl), z, dG);
          for (var s = 0u; s < n; s++) {
            var qs = 0.0;
            for (var ii = 0u; ii < blk.nv; ii++) {
              qs = fma(sU[s * VB + ii], sDK[s * VB + ii], qs);
            }
            dG = fma(exp(gl - sG[s]), qs, dG);
          }
        }
        ws[out + 2u * NK] = db;
        ws[out + 2u * NK + 1u] = dG;
      }
    }
    workgroupBarrier();
    // dS for the chunk before: γ_{n−1}·dS + Σ_t γ_t·(scale·do_t·q_tᵀ − ē_t·k_tᵀ).
    for (var e = li; e < VB * NK; e += WGC) {
      let ii = e / NK;
      let j = e % NK;
      if (ii < blk.nv) {
        var acc = exp(gl) * sD[e];
        for (var t = 0u; t < n; t++) {
          let tb = token(blk.b, t0 + t, blk.h) * NK + j;
          let gam = exp(sG[t]);
          acc = fma(p.scale * gam * sDo[t * VB + ii], q[tb], acc);
          if (DELTA) {
            acc = fma(-gam * sBeta[t] * sX[t * VB + ii], k[tb], acc);
          }
        }
        sD[e] = acc;
      }
    }
  }
  workgroupBarrier();
  for (var e = li; e < VB * NK; e += WGC) {
    let ii = e / NK;
    if (ii < blk.nv) {
      ws[p.carry + (blk.bh * V + blk.i0 + ii) * NK + e % NK] = sD[e];
    }
  }
}
#endif

#if PASS_CHUNK_REDUCE
@group(0) @binding(1) var<storage, read> ws: array<f32>;
@group(0) @binding(2) var<storage, read_write> dq: array<f32>;
@group(0) @binding(3) var<storage, read_write> dk: array<f32>;
@group(0) @binding(4) var<storage, read_write> dgates: array<f32>;

const PW = 2u * NK + 2u;

// Invocation (b, t, h, column): column c < 2K + 1 (+ 1 GATED) of dq, dk, dβ (, dg) summed over the value blocks in
// order; dg_t = Σ_{r ≥ t in t's chunk} dG_r.
@compute @workgroup_size(64)
fn chunk_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let idx = gid.x + gid.y * nwg.x * 64u;
  let W = 2u * NK + select(1u, 2u, GATED);
  let H = p.heads;
  let n = p.rows * H;
  if (idx >= n * W) {
    return;
  }
  let c = idx % W;
  let gh = idx / W;
  var acc = 0.0;
  if (c <= 2u * NK) {
    for (var blk = 0u; blk < p.blocks; blk++) {
      acc += ws[(blk * n + gh) * PW + c];
    }
  } else {
    let bt = gh / H;
    let t = bt % p.seqLen;
    let end = min(p.seqLen, (t / CH + 1u) * CH);
    for (var r = t; r < end; r++) {
      let gr = gh + (r - t) * H;
      for (var blk = 0u; blk < p.blocks; blk++) {
        acc += ws[(blk * n + gr) * PW + c];
      }
    }
  }
  if (c < NK) {
    dq[gh * NK + c] = acc;
  } else if (c < 2u * NK) {
    dk[gh * NK + c - NK] = acc;
  } else if (c == 2u * NK) {
    dgates[gh] = acc;
  } else {
    dgates[n + gh] = acc;
  }
}
#endif
