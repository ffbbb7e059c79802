// Batched matmul family: C[b] = alpha·op(A[b])·op(B[b]) (+ bias) (+ C[b] when p.accumulate).
// op(A) is [M,K]: stored [M,K], or [K,M] when TRANS_A. op(B) is [K,N]: stored [K,N], or [N,K] when TRANS_B.
// So X·Wᵀ + b is TRANS_B with bias; dX = dY·W is plain; dW = dYᵀ·X is TRANS_A.
// Every variant adds each output's products with fma in increasing k order, so results are bit-identical run to run
// and across variants. With split-K (SPLIT_K), each split sums its own k range that way into a partial buffer and
// main_splitk_reduce adds the partials in split order (fixed order, no atomics).
//   main_blocked: TM×8 outputs per invocation in registers, no workgroup memory (fast on CPU rasterisers, whose
//                 per-lane memory accesses cost far more than arithmetic: each loaded value feeds 8 or TM FMAs).
//   main_tiled:   64×64 tile per workgroup staged through workgroup memory (fast on real GPUs).
// VEC_A / VEC_B / VEC_C bind an operand as array<vec4<f32>> and load/store it 4 floats at a time along its contiguous
// dimension; the host sets them only when that dimension and the batch stride are multiples of 4.

struct Params {
  M: u32,
  N: u32,
  K: u32,
  strideA: u32,
  strideB: u32,
  strideC: u32,
  alpha: f32,
  // k range per split (a multiple of 4) and number of splits; K and 1 without split-K.
  kChunk: u32,
  splits: u32,
  batch: u32,
  // out += result instead of out = result (a uniform, not a define: one pipeline fewer per shape class).
  accumulate: u32,
  // main_blocked: consecutive workgroups walk down m (1) or along n (0).
  mFastest: u32,
  // Logical workgroups along x, and the dispatched x count: a grid wider than the per-dimension limit (the LM head's
  // vocabulary columns) is folded into x and y and unfolded by logical_xy.
  gridX: u32,
  dispX: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
#if REDUCE
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
#if HAS_BIAS
@group(0) @binding(3) var<storage, read> bias: array<f32>;
#endif
#else
#if VEC_A
@group(0) @binding(1) var<storage, read> A4: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> A: array<f32>;
#endif
#if VEC_B
@group(0) @binding(2) var<storage, read> B4: array<vec4<f32>>;
#else
@group(0) @binding(2) var<storage, read> B: array<f32>;
#endif
#if VEC_C
@group(0) @binding(3) var<storage, read_write> C4: array<vec4<f32>>;
#else
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
#endif
#if HAS_BIAS
@group(0) @binding(4) var<storage, read> bias: array<f32>;
#endif
#endif

// The logical (x, y) workgroup; without folding it is (wid.x, wid.y). Tiles past the logical grid fall outside M or N.
fn logical_xy(wid: vec3<u32>) -> vec2<u32> {
  let t = wid.x + wid.y * p.dispX;
  return vec2<u32>(t % p.gridX, t / p.gridX);
}

// Where one (batch, split) pair of the grid's z index writes: its dense partial slice, or the output itself.
fn out_base(batch: u32, split: u32) -> u32 {
#if SPLIT_K
  return (split * p.batch + batch) * p.M * p.N;
#else
  return batch * p.strideC;
#endif
}

// alpha·sum + bias for 4 consecutive columns from n (bias: from `bias_at`, loaded once per invocation); raw sum for
// split-K partials, whose epilogue runs in the reduce pass.
fn epilogue(sum: vec4<f32>, bias4: vec4<f32>) -> vec4<f32> {
#if SPLIT_K
  return sum;
#else
#if HAS_BIAS
  return sum * p.alpha + bias4;
#else
  return sum * p.alpha;
#endif
#endif
}

// bias[n..n+3], columns past N clamped to the last one (their outputs are never stored).
fn bias_at(n: u32) -> vec4<f32> {
#if HAS_BIAS
  let last = p.N - 1u;
  return vec4<f32>(bias[min(n, last)], bias[min(n + 1u, last)], bias[min(n + 2u, last)], bias[min(n + 3u, last)]);
#else
  return vec4<f32>(0.0);
#endif
}

// Stores 4 outputs of row m at columns n..n+3 (n < N), masking columns past N; adds the old value when accumulating
// (never into split-K partials: the reduce pass does that).
fn store4(base: u32, m: u32, n: u32, value: vec4<f32>) {
  var v = value;
  let idx = base + m * p.N + n;
#if SPLIT_K
  let accumulate = false;
#else
  let accumulate = p.accumulate != 0u;
#endif
#if VEC_C
  // VEC_C implies N % 4 == 0, so the vector is either fully inside the row or not stored at all.
  if (accumulate) {
    v = C4[idx / 4u] + v;
  }
  C4[idx / 4u] = v;
#else
  for (var c = 0u; c < min(4u, p.N - n); c++) {
    var s = v[c];
    if (accumulate) {
      s = C[idx + c] + s;
    }
    C[idx + c] = s;
  }
#endif
}

// Compiled unless another entry point's define is set, so `main_blocked` also builds from TM alone (the workgroup
// size then defaults to 8×8).
#if !TILED
#if !REDUCE
#if WG_X
const BLOCK_WG_X = WG_X;
const BLOCK_WG_Y = WG_Y;
#else
const BLOCK_WG_X = 8u;
const BLOCK_WG_Y = 8u;
#endif
// acc + a.x·b0 + a.y·b1 + a.z·b2 + a.w·b3, one fma at a time in that (k) order.
fn fma_k4(acc: vec4<f32>, a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>) -> vec4<f32> {
  return fma(vec4<f32>(a.w), b3, fma(vec4<f32>(a.z), b2, fma(vec4<f32>(a.y), b1, fma(vec4<f32>(a.x), b0, acc))));
}

// Loops below are single-level with constant trip counts so the shader compiler unrolls them and keeps the arrays in
// registers (nested loops over register arrays were 2× slower on llvmpipe).
@compute @workgroup_size(BLOCK_WG_X, BLOCK_WG_Y)
fn main_blocked(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
) {
  let mFastest = p.mFastest != 0u;
  let w = logical_xy(wid);
  let m0 = (select(w.y, w.x, mFastest) * BLOCK_WG_Y + lid.y) * TM;
  let n0 = (select(w.x, w.y, mFastest) * BLOCK_WG_X + lid.x) * 8u;
  if (m0 >= p.M || n0 >= p.N) {
    return;
  }
  let split = wid.z % p.splits;
  let batch = wid.z / p.splits;
  let baseA = batch * p.strideA;
  let baseB = batch * p.strideB;
  let kBegin = split * p.kChunk;
  let kEnd = min(p.K, kBegin + p.kChunk);
  let kLen = select(0u, kEnd - kBegin, kEnd > kBegin);
  let kQuadEnd = kBegin + (kLen & ~3u);

  // Rows and columns past the matrix are clamped to the last one: loads stay in bounds and stores are masked.
  // aRow: TRANS_A: the clamped row index; else the element offset of that row. Likewise bCol for columns.
  var aRow: array<u32, TM>;
  for (var i = 0u; i < TM; i++) {
    let m = min(m0 + i, p.M - 1u);
#if TRANS_A
    aRow[i] = m;
#else
    aRow[i] = baseA + m * p.K;
#endif
  }
  var bCol: array<u32, 8>;
  for (var j = 0u; j < 8u; j++) {
    let n = min(n0 + j, p.N - 1u);
#if TRANS_B
    bCol[j] = baseB + n * p.K;
#else
    bCol[j] = n;
#endif
  }
#if TRANS_A
#if VEC_A
  // vec4 index (within a row of A's storage) of each group of 4 output rows, clamped.
  var aQuad: array<u32, TM / 4>;
  for (var q = 0u; q < TM / 4u; q++) {
    aQuad[q] = min(m0 / 4u + q, p.M / 4u - 1u);
  }
#endif
#endif
#if !TRANS_B
#if VEC_B
  let bQuad0 = min(n0 / 4u, p.N / 4u - 1u);
  let bQuad1 = min(n0 / 4u + 1u, p.N / 4u - 1u);
#endif
#endif

  // acc[2i], acc[2i + 1]: columns n0..n0+3 and n0+4..n0+7 of row m0 + i.
  var acc: array<vec4<f32>, TM * 2>;
  for (var k = kBegin; k < kQuadEnd; k += 4u) {
    // a[i] = op(A)[m0 + i, k..k+3].
    var a: array<vec4<f32>, TM>;
#if TRANS_A
#if VEC_A
    let rowK0 = (baseA + k * p.M) / 4u;
    let rowK1 = rowK0 + p.M / 4u;
    let rowK2 = rowK1 + p.M / 4u;
    let rowK3 = rowK2 + p.M / 4u;
    for (var q = 0u; q < TM / 4u; q++) {
      // Four k rows of 4 consecutive m; transposing gives per-m vectors along k (free: components are registers).
      let t = transpose(mat4x4<f32>(A4[rowK0 + aQuad[q]], A4[rowK1 + aQuad[q]], A4[rowK2 + aQuad[q]], A4[rowK3 + aQuad[q]]));
      a[4u * q] = t[0];
      a[4u * q + 1u] = t[1];
      a[4u * q + 2u] = t[2];
      a[4u * q + 3u] = t[3];
    }
#else
    let rowK = baseA + k * p.M;
    for (var i = 0u; i < TM; i++) {
      let o = rowK + aRow[i];
      a[i] = vec4<f32>(A[o], A[o + p.M], A[o + 2u * p.M], A[o + 3u * p.M]);
    }
#endif
#else
#if VEC_A
    for (var i = 0u; i < TM; i++) {
      a[i] = A4[(aRow[i] + k) / 4u];
    }
#else
    for (var i = 0u; i < TM; i++) {
      let o = aRow[i] + k;
      a[i] = vec4<f32>(A[o], A[o + 1u], A[o + 2u], A[o + 3u]);
    }
#endif
#endif
    // b[2s], b[2s + 1] = op(B)[k + s, n0..n0+3], op(B)[k + s, n0+4..n0+7].
    var b: array<vec4<f32>, 8>;
#if TRANS_B
#if VEC_B
    let lo = transpose(mat4x4<f32>(B4[(bCol[0] + k) / 4u], B4[(bCol[1] + k) / 4u], B4[(bCol[2] + k) / 4u], B4[(bCol[3] + k) / 4u]));
    let hi = transpose(mat4x4<f32>(B4[(bCol[4] + k) / 4u], B4[(bCol[5] + k) / 4u], B4[(bCol[6] + k) / 4u], B4[(bCol[7] + k) / 4u]));
    for (var s = 0u; s < 4u; s++) {
      b[2u * s] = lo[s];
      b[2u * s + 1u] = hi[s];
    }
#else
    for (var s = 0u; s < 4u; s++) {
      let kk = k + s;
      b[2u * s] = vec4<f32>(B[bCol[0] + kk], B[bCol[1] + kk], B[bCol[2] + kk], B[bCol[3] + kk]);
      b[2u * s + 1u] = vec4<f32>(B[bCol[4] + kk], B[bCol[5] + kk], B[bCol[6] + kk], B[bCol[7] + kk]);
    }
#endif
#else
#if VEC_B
    for (var s = 0u; s < 4u; s++) {
      let row = (baseB + (k + s) * p.N) / 4u;
      b[2u * s] = B4[row + bQuad0];
      b[2u * s + 1u] = B4[row + bQuad1];
    }
#else
    for (var s = 0u; s < 4u; s++) {
      let row = baseB + (k + s) * p.N;
      b[2u * s] = vec4<f32>(B[row + bCol[0]], B[row + bCol[1]], B[row + bCol[2]], B[row + bCol[3]]);
      b[2u * s + 1u] = vec4<f32>(B[row + bCol[4]], B[row + bCol[5]], B[row + bCol[6]], B[row + bCol[7]]);
    }
#endif
#endif
    for (var i = 0u; i < TM; i++) {
      acc[2u * i] = fma_k4(acc[2u * i], a[i], b[0], b[2], b[4], b[6]);
      acc[2u * i + 1u] = fma_k4(acc[2u * i + 1u], a[i], b[1], b[3], b[5], b[7]);
    }
  }
#if K_TAIL
  // The last 1-3 k of a range whose length is not a multiple of 4 (the host never sets a vec4-along-k load then).
  for (var k = kQuadEnd; k < kEnd; k++) {
    var a: array<f32, TM>;
#if TRANS_A
#if VEC_A
    let rowK = (baseA + k * p.M) / 4u;
    for (var q = 0u; q < TM / 4u; q++) {
      let v = A4[rowK + aQuad[q]];
      a[4u * q] = v.x;
      a[4u * q + 1u] = v.y;
      a[4u * q + 2u] = v.z;
      a[4u * q + 3u] = v.w;
    }
#else
    for (var i = 0u; i < TM; i++) {
      a[i] = A[baseA + k * p.M + aRow[i]];
    }
#endif
#else
    for (var i = 0u; i < TM; i++) {
      a[i] = A[aRow[i] + k];
    }
#endif
#if TRANS_B
    let b0 = vec4<f32>(B[bCol[0] + k], B[bCol[1] + k], B[bCol[2] + k], B[bCol[3] + k]);
    let b1 = vec4<f32>(B[bCol[4] + k], B[bCol[5] + k], B[bCol[6] + k], B[bCol[7] + k]);
#else
#if VEC_B
    let row = (baseB + k * p.N) / 4u;
    let b0 = B4[row + bQuad0];
    let b1 = B4[row + bQuad1];
#else
    let row = baseB + k * p.N;
    let b0 = vec4<f32>(B[row + bCol[0]], B[row + bCol[1]], B[row + bCol[2]], B[row + bCol[3]]);
    let b1 = vec4<f32>(B[row + bCol[4]], B[row + bCol[5]], B[row + bCol[6]], B[row + bCol[7]]);
#endif
#endif
    for (var i = 0u; i < TM; i++) {
      acc[2u * i] = fma(vec4<f32>(a[i]), b0, acc[2u * i]);
      acc[2u * i + 1u] = fma(vec4<f32>(a[i]), b1, acc[2u * i + 1u]);
    }
  }
#endif
  let base = out_base(batch, split);
  let bias0 = bias_at(n0);
  let bias1 = bias_at(n0 + 4u);
  for (var i = 0u; i < TM; i++) {
    let m = m0 + i;
    if (m < p.M) {
      store4(base, m, n0, epilogue(acc[2u * i], bias0));
      if (n0 + 4u < p.N) {
        store4(base, m, n0 + 4u, epilogue(acc[2u * i + 1u], bias1));
      }
    }
  }
}
#endif
#endif

#if TILED
const TILE = 64u;
// tileA[kk * 16 + q] = op(A)[mBase + 4q .. 4q+3, k0 + kk]; tileB[kk * 16 + q] = op(B)[k0 + kk, nBase + 4q .. 4q+3].
// BK comes from the host: 16 normally; smaller where the shader compiler unrolls workgroup zero-init (GL llvmpipe).
var<workgroup> tileA: array<vec4<f32>, BK * 16>;
var<workgroup> tileB: array<vec4<f32>, BK * 16>;

// 4 consecutive elements of A's storage starting at element `o` (o % 4 == 0 when VEC_A), zero past `count` of them.
fn a_vec(o: u32, count: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
#if VEC_A
  if (count >= 4u) {
    return A4[o / 4u];
  }
  if (count > 0u) {
    let w = A4[o / 4u];
    for (var c = 0u; c < count; c++) {
      v[c] = w[c];
    }
  }
#else
  for (var c = 0u; c < min(count, 4u); c++) {
    v[c] = A[o + c];
  }
#endif
  return v;
}

fn b_vec(o: u32, count: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
#if VEC_B
  if (count >= 4u) {
    return B4[o / 4u];
  }
  if (count > 0u) {
    let w = B4[o / 4u];
    for (var c = 0u; c < count; c++) {
      v[c] = w[c];
    }
  }
#else
  for (var c = 0u; c < min(count, 4u); c++) {
    v[c] = B[o + c];
  }
#endif
  return v;
}

// 256 threads, 4×4 outputs each. Global loads read 4 consecutive floats along each operand's contiguous dimension
// (consecutive threads read consecutive vectors); operands contiguous along k are transposed on their way into the
// tile so the inner loop reads one vec4 of A and one of B per k.
@compute @workgroup_size(16, 16)
fn main_tiled(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let split = wid.z % p.splits;
  let batch = wid.z / p.splits;
  let w = logical_xy(wid);
  let mBase = w.y * TILE;
  let nBase = w.x * TILE;
  let baseA = batch * p.strideA;
  let baseB = batch * p.strideB;
  let kBegin = split * p.kChunk;
  let kEnd = min(p.K, kBegin + p.kChunk);
  var acc: array<vec4<f32>, 4>;
  for (var k0 = kBegin; k0 < kEnd; k0 += BK) {
    for (var e = li; e < BK * 16u; e += 256u) {
#if TRANS_A
      // A stored [K,M]: a vector along m is one tile slot.
      let kk = e / 16u;
      let q = e % 16u;
      let k = k0 + kk;
      let m = mBase + 4u * q;
      var va = vec4<f32>(0.0);
      if (k < kEnd && m < p.M) {
        va = a_vec(baseA + k * p.M + m, p.M - m);
      }
      tileA[e] = va;
#else
      // A stored [M,K]: a vector along k of one row feeds 4 slots (one component each).
      let row = e / (BK / 4u);
      let kq = e % (BK / 4u);
      let m = mBase + row;
      let k = k0 + 4u * kq;
      var va = vec4<f32>(0.0);
      if (m < p.M && k < kEnd) {
        va = a_vec(baseA + m * p.K + k, kEnd - k);
      }
      for (var c = 0u; c < 4u; c++) {
        tileA[(4u * kq + c) * 16u + row / 4u][row % 4u] = va[c];
      }
#endif
#if TRANS_B
      let col = e / (BK / 4u);
      let kqb = e % (BK / 4u);
      let n = nBase + col;
      let kb = k0 + 4u * kqb;
      var vb = vec4<f32>(0.0);
      if (n < p.N && kb < kEnd) {
        vb = b_vec(baseB + n * p.K + kb, kEnd - kb);
      }
      for (var c = 0u; c < 4u; c++) {
        tileB[(4u * kqb + c) * 16u + col / 4u][col % 4u] = vb[c];
      }
#else
      let kkb = e / 16u;
      let qb = e % 16u;
      let kb = k0 + kkb;
      let n = nBase + 4u * qb;
      var vb = vec4<f32>(0.0);
      if (kb < kEnd && n < p.N) {
        vb = b_vec(baseB + kb * p.N + n, p.N - n);
      }
      tileB[e] = vb;
#endif
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      let a = tileA[kk * 16u + lid.y];
      let b = tileB[kk * 16u + lid.x];
      acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
      acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
      acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
      acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
    }
    workgroupBarrier();
  }
  let base = out_base(batch, split);
  let n = nBase + 4u * lid.x;
  if (n < p.N) {
    let bias4 = bias_at(n);
    for (var i = 0u; i < 4u; i++) {
      let m = mBase + 4u * lid.y + i;
      if (m < p.M) {
        store4(base, m, n, epilogue(acc[i], bias4));
      }
    }
  }
}
#endif

#if REDUCE
// out = alpha · Σ_s partials[s] (+ bias) (+ out), splits added in order s = 0, 1, ...
@compute @workgroup_size(64)
fn main_splitk_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = gid.x + gid.y * nwg.x * 64u;
  let mn = p.M * p.N;
  let total = p.batch * mn;
  if (e >= total) {
    return;
  }
  var sum = partials[e];
  for (var s = 1u; s < p.splits; s++) {
    sum = sum + partials[s * total + e];
  }
  let batch = e / mn;
  let m = (e % mn) / p.N;
  let n = e % p.N;
  var v = sum * p.alpha;
#if HAS_BIAS
  v = v + bias[n];
#endif
  let idx = batch * p.strideC + m * p.N + n;
  if (p.accumulate != 0u) {
    v = C[idx] + v;
  }
  C[idx] = v;
}
#endif
