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

// A loop bound, on GL (RUNTIME_BOUNDS) hidden behind the uniform: Mesa's GL path unrolls constant-bound loops and then
// compiles for minutes (as in linear_attention.wgsl); Vulkan keeps the constants.
fn rt(n: u32) -> u32 {
#if RUNTIME_BOUNDS
  return select(n, 0u, p.seqLen == 0u);
#else
  return n;
#endif
}

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

// Workgroup memory: one heap of floats, each array at an offset. On GL (PACKED) the heap is an array of mat4x4: naga
// zero-initialises workgroup memory with one constructor per element and Mesa's GL compiler takes time quadratic in
// their number (1,024 floats: 13 s flat, 1.1 s as 64 mat4x4 on llvmpipe), so packing 16 floats per element cuts it.
// Shared by both sweeps: the state slice S_0 [VB, K], G and β [C], M and P [C, C], u [C, VB]; then each pass's own.
const O_S = 0;
const O_G = O_S + VB * NK;
const O_BETA = O_G + CH;
const O_M = O_BETA + CH;
const O_P = O_M + CH * CH;
const O_U = O_P + CH * CH;
const O_PASS = O_U + CH * VB;

#if PACKED
var<workgroup> heap: array<mat4x4<f32>, (HEAP + 15) / 16>;

fn ld(e: u32) -> f32 {
  return heap[e >> 4u][(e >> 2u) & 3u][e & 3u];
}

fn st(e: u32, x: f32) {
  heap[e >> 4u][(e >> 2u) & 3u][e & 3u] = x;
}
#else
var<workgroup> heap: array<f32, HEAP>;

fn ld(e: u32) -> f32 {
  return heap[e];
}

fn st(e: u32, x: f32) {
  heap[e] = x;
}
#endif


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

// G, β, then M, P of chunk c (n tokens from t0). Ends with a barrier.
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
    st(O_G + li, G);
    st(O_BETA + li, beta);
  }
  workgroupBarrier();
  for (var e = li; e < rt(CH * CH); e += WGC) {
    let t = e / CH;
    let s = e % CH;
    var m = 0.0;
    var pq = 0.0;
    if (s <= t && t < n) {
      let kb = token(blk.b, t0 + s, blk.h) * NK;
      let tb = token(blk.b, t0 + t, blk.h) * NK;
      var kq = 0.0;
      var kk = 0.0;
      for (var j = 0u; j < rt(NK); j++) {
        kq = fma(k[kb + j], q[tb + j], kq);
        if (DELTA) {
          kk = fma(k[kb + j], k[tb + j], kk);
        }
      }
      let dec = exp(ld(O_G + t) - ld(O_G + s));
      pq = p.scale * dec * kq;
      if (s < t) {
        m = dec * kk;
      }
    }
    st(O_M + e, m);
    st(O_P + e, pq);
  }
  workgroupBarrier();
}

// S_0·k_t (DELTA) and S_0·q_t of value row ii.
fn state_dot(ii: u32, xb: u32, use_k: bool) -> f32 {
  var acc = 0.0;
  for (var j = 0u; j < rt(NK); j++) {
    let x = select(q[xb + j], k[xb + j], use_k);
    acc = fma(ld(O_S + ii * NK + j), x, acc);
  }
  return acc;
}
#endif

#if PASS_CHUNK_FORWARD
@group(0) @binding(5) var<storage, read_write> o: array<f32>;
@group(0) @binding(6) var<storage, read_write> checkpoints: array<f32>;

// scale·γ_t·(S_0·q_t) [C, VB].
const O_O = O_PASS;
const HEAP = O_O + CH * VB;


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
  for (var e = li; e < rt(VB * NK); e += WGC) {
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
    st(O_S + e, x);
  }
  for (var c = p.c0; c < p.c1; c++) {
    let t0 = c * CH;
    let n = min(CH, p.seqLen - t0);
    workgroupBarrier();
    chunk_matrices(blk, t0, n, li);
    for (var e = li; e < rt(CH * VB); e += WGC) {
      let tau = e / VB;
      let ii = e % VB;
      var rhs = 0.0;
      var oq = 0.0;
      if (tau < n && ii < blk.nv) {
        let gh = token(blk.b, t0 + tau, blk.h);
        let gam = exp(ld(O_G + tau));
        var sk = 0.0;
        if (DELTA) {
          sk = state_dot(ii, gh * NK, true);
        }
        rhs = ld(O_BETA + tau) * (v[gh * V + blk.i0 + ii] - gam * sk);
        oq = p.scale * gam * state_dot(ii, gh * NK, false);
      }
      st(O_U + e, rhs);
      st(O_O + e, oq);
    }
    workgroupBarrier();
    if (DELTA && li < blk.nv) {
      for (var t = 1u; t < n; t++) {
        var acc = ld(O_U + t * VB + li);
        let bt = ld(O_BETA + t);
        for (var s = 0u; s < t; s++) {
          acc = fma(-bt * ld(O_M + t * CH + s), ld(O_U + s * VB + li), acc);
        }
        st(O_U + t * VB + li, acc);
      }
    }
    workgroupBarrier();
    for (var e = li; e < rt(CH * VB); e += WGC) {
      let tau = e / VB;
      let ii = e % VB;
      if (tau < n && ii < blk.nv) {
        var acc = ld(O_O + e);
        for (var s = 0u; s <= tau; s++) {
          acc = fma(ld(O_P + tau * CH + s), ld(O_U + s * VB + ii), acc);
        }
        let at = token(blk.b, t0 + tau, blk.h) * V + blk.i0 + ii;
        o[at] = acc;
        checkpoints[p.uOffset + at] = ld(O_U + e);
      }
    }
    // The state slice was last read before the barrier above the solve.
    let gl = ld(O_G + n - 1u);
    for (var e = li; e < rt(VB * NK); e += WGC) {
      let ii = e / NK;
      let j = e % NK;
      if (ii < blk.nv) {
        var acc = exp(gl) * ld(O_S + e);
        for (var s = 0u; s < n; s++) {
          acc = fma(exp(gl - ld(O_G + s)) * ld(O_U + s * VB + ii), k[token(blk.b, t0 + s, blk.h) * NK + j], acc);
        }
        st(O_S + e, acc);
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

// The adjoint slice dS [VB, K]; do, e, D then ū, S_0·k, dS·k [C, VB]; UD, UE [C, C].
const O_D = O_PASS;
const O_DO = O_D + VB * NK;
const O_E = O_DO + CH * VB;
const O_X = O_E + CH * VB;
const O_SK = O_X + CH * VB;
const O_DK = O_SK + CH * VB;
const O_UD = O_DK + CH * VB;
const O_UE = O_UD + CH * CH;
const HEAP = O_UE + CH * CH;


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
  for (var e = li; e < rt(VB * NK); e += WGC) {
    let ii = e / NK;
    var x = 0.0;
    if (ii < blk.nv && p.c1 < p.chunks) {
      x = ws[p.carry + (blk.bh * V + blk.i0 + ii) * NK + e % NK];
    }
    st(O_D + e, x);
  }
  for (var cc = p.c1; cc > p.c0; cc--) {
    let c = cc - 1u;
    let t0 = c * CH;
    let n = min(CH, p.seqLen - t0);
    workgroupBarrier();
    for (var e = li; e < rt(VB * NK); e += WGC) {
      let ii = e / NK;
      var x = 0.0;
      if (ii < blk.nv) {
        x = checkpoints[state_index(c, blk.bh, blk.i0 + ii, e % NK)];
      }
      st(O_S + e, x);
    }
    for (var e = li; e < rt(CH * VB); e += WGC) {
      let tau = e / VB;
      let ii = e % VB;
      var u = 0.0;
      var d = 0.0;
      if (tau < n && ii < blk.nv) {
        let at = token(blk.b, t0 + tau, blk.h) * V + blk.i0 + ii;
        u = checkpoints[p.uOffset + at];
        d = dout[at];
      }
      st(O_U + e, u);
      st(O_DO + e, d);
    }
    chunk_matrices(blk, t0, n, li);
    // S_0·k_t and dS·k_t per (t, row).
    for (var e = li; e < rt(CH * VB); e += WGC) {
      let tau = e / VB;
      let ii = e % VB;
      var sk = 0.0;
      var dk = 0.0;
      if (tau < n && ii < blk.nv) {
        let kb = token(blk.b, t0 + tau, blk.h) * NK;
        for (var j = 0u; j < rt(NK); j++) {
          sk = fma(ld(O_S + ii * NK + j), k[kb + j], sk);
          dk = fma(ld(O_D + ii * NK + j), k[kb + j], dk);
        }
      }
      st(O_SK + e, sk);
      st(O_DK + e, dk);
    }
    workgroupBarrier();
    // e_t (the bracket u_t = β_t·e_t) and D_t.
    let gl = ld(O_G + n - 1u);
    for (var e = li; e < rt(CH * VB); e += WGC) {
      let tau = e / VB;
      let ii = e % VB;
      var et = 0.0;
      var d = 0.0;
      if (tau < n && ii < blk.nv) {
        et = v[token(blk.b, t0 + tau, blk.h) * V + blk.i0 + ii];
        if (DELTA) {
          et -= exp(ld(O_G + tau)) * ld(O_SK + e);
          for (var s = 0u; s < tau; s++) {
            et = fma(-ld(O_M + tau * CH + s), ld(O_U + s * VB + ii), et);
          }
        }
        d = exp(gl - ld(O_G + tau)) * ld(O_DK + e);
        for (var t = tau; t < n; t++) {
          d = fma(ld(O_P + t * CH + tau), ld(O_DO + t * VB + ii), d);
        }
      }
      st(O_E + e, et);
      st(O_X + e, d);
    }
    workgroupBarrier();
    if (DELTA && li < blk.nv) {
      for (var s = n - 1u; s > 0u; s--) {
        let ss = s - 1u;
        var acc = ld(O_X + ss * VB + li);
        for (var t = s; t < n; t++) {
          acc = fma(-ld(O_BETA + t) * ld(O_M + t * CH + ss), ld(O_X + t * VB + li), acc);
        }
        st(O_X + ss * VB + li, acc);
      }
    }
    workgroupBarrier();
    // X = ū; ē = β·ū. dv, and the C×C products over this block's rows: UD_ts = u_s·do_t, UE_ts = u_s·ē_t.
    for (var e = li; e < rt(CH * VB); e += WGC) {
      let tau = e / VB;
      let ii = e % VB;
      if (tau < n && ii < blk.nv) {
        dv[token(blk.b, t0 + tau, blk.h) * V + blk.i0 + ii] = ld(O_BETA + tau) * ld(O_X + e);
      }
    }
    for (var e = li; e < rt(CH * CH); e += WGC) {
      let t = e / CH;
      let s = e % CH;
      var ud = 0.0;
      var ue = 0.0;
      if (s <= t && t < n) {
        for (var ii = 0u; ii < blk.nv; ii++) {
          ud = fma(ld(O_U + s * VB + ii), ld(O_DO + t * VB + ii), ud);
          ue = fma(ld(O_U + s * VB + ii), ld(O_X + t * VB + ii), ue);
        }
        ue *= ld(O_BETA + t);
      }
      st(O_UD + e, ud);
      st(O_UE + e, ue);
    }
    workgroupBarrier();
    // Partials of dq_t, dk_t (per column) and dβ_t, dG_t (per token).
    for (var e = li; e < n * rt(2u * NK + 1u); e += WGC) {
      let tau = e / (2u * NK + 1u);
      let col = e % (2u * NK + 1u);
      let gh = token(blk.b, t0 + tau, blk.h);
      let out = (part + gh) * PW;
      if (col < NK) {
        // dq_t[j] = scale·γ_t·Σ_i S_0[i, j]·do_t[i] + Σ_{s≤t} scale·E_ts·UD_ts·k_s[j]
        let j = col;
        var sd = 0.0;
        for (var ii = 0u; ii < blk.nv; ii++) {
          sd = fma(ld(O_S + ii * NK + j), ld(O_DO + tau * VB + ii), sd);
        }
        var acc = p.scale * exp(ld(O_G + tau)) * sd;
        for (var s = 0u; s <= tau; s++) {
          let w = p.scale * exp(ld(O_G + tau) - ld(O_G + s)) * ld(O_UD + tau * CH + s);
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
          du = fma(ld(O_D + ii * NK + j), ld(O_U + s * VB + ii), du);
          se = fma(ld(O_S + ii * NK + j), ld(O_X + s * VB + ii), se);
        }
        var acc = exp(gl - ld(O_G + s)) * du;
        if (DELTA) {
          acc -= exp(ld(O_G + s)) * ld(O_BETA + s) * se;
        }
        for (var t = s; t < n; t++) {
          let tb = token(blk.b, t0 + t, blk.h) * NK + j;
          acc = fma(p.scale * exp(ld(O_G + t) - ld(O_G + s)) * ld(O_UD + t * CH + s), q[tb], acc);
          if (DELTA && t > s) {
            acc = fma(-exp(ld(O_G + t) - ld(O_G + s)) * ld(O_UE + t * CH + s), k[tb], acc);
          }
        }
        if (DELTA) {
          for (var r = 0u; r < s; r++) {
            acc = fma(-exp(ld(O_G + s) - ld(O_G + r)) * ld(O_UE + s * CH + r), k[token(blk.b, t0 + r, blk.h) * NK + j], acc);
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
          db = fma(ld(O_E + t * VB + ii), ld(O_X + t * VB + ii), db);
          a = fma(ld(O_DO + t * VB + ii), state_dot(ii, qb, false), a);
          bb = fma(ld(O_X + t * VB + ii), ld(O_SK + t * VB + ii), bb);
        }
        var dG = p.scale * exp(ld(O_G + t)) * a;
        if (DELTA) {
          dG -= exp(ld(O_G + t)) * ld(O_BETA + t) * bb;
        }
        for (var s = 0u; s < n; s++) {
          if (s <= t) {
            dG = fma(ld(O_P + t * CH + s), ld(O_UD + t * CH + s), dG);
          }
          if (s >= t) {
            dG = fma(-ld(O_P + s * CH + t), ld(O_UD + s * CH + t), dG);
          }
          if (DELTA && s < t) {
            dG = fma(-ld(O_M + t * CH + s), ld(O_UE + t * CH + s), dG);
          }
          if (DELTA && s > t) {
            dG = fma(ld(O_M + s * CH + t), ld(O_UE + s * CH + t), dG);
          }
        }
        var qt = 0.0;
        for (var ii = 0u; ii < blk.nv; ii++) {
          qt = fma(ld(O_U + t * VB + ii), ld(O_DK + t * VB + ii), qt);
        }
        dG -= exp(gl - ld(O_G + t)) * qt;
        if (t == n - 1u) {
          var z = 0.0;
          for (var e2 = 0u; e2 < blk.nv * rt(NK); e2++) {
            z = fma(ld(O_S + e2), ld(O_D + e2), z);
          }
          dG = fma(exp(gl), z, dG);
          for (var s = 0u; s < n; s++) {
            var qs = 0.0;
            for (var ii = 0u; ii < blk.nv; ii++) {
              qs = fma(ld(O_U + s * VB + ii), ld(O_DK + s * VB + ii), qs);
            }
            dG = fma(exp(gl - ld(O_G + s)), qs, dG);
          }
        }
        ws[out + 2u * NK] = db;
        ws[out + 2u * NK + 1u] = dG;
      }
    }
    workgroupBarrier();
    // dS for the chunk before: γ_{n−1}·dS + Σ_t γ_t·(scale·do_t·q_tᵀ − ē_t·k_tᵀ).
    for (var e = li; e < rt(VB * NK); e += WGC) {
      let ii = e / NK;
      let j = e % NK;
      if (ii < blk.nv) {
        var acc = exp(gl) * ld(O_D + e);
        for (var t = 0u; t < n; t++) {
          let tb = token(blk.b, t0 + t, blk.h) * NK + j;
          let gam = exp(ld(O_G + t));
          acc = fma(p.scale * gam * ld(O_DO + t * VB + ii), q[tb], acc);
          if (DELTA) {
            acc = fma(-gam * ld(O_BETA + t) * ld(O_X + t * VB + ii), k[tb], acc);
          }
        }
        st(O_D + e, acc);
      }
    }
  }
  workgroupBarrier();
  for (var e = li; e < rt(VB * NK); e += WGC) {
    let ii = e / NK;
    if (ii < blk.nv) {
      ws[p.carry + (blk.bh * V + blk.i0 + ii) * NK + e % NK] = ld(O_D + e);
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
