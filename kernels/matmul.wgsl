// Batched matmul family: C[b] = op(A[b]) · op(B[b]) (+ bias) (+ C[b] when ACCUMULATE).
// op(A) is [M,K]: stored [M,K], or [K,M] when TRANS_A. op(B) is [K,N]: stored [K,N], or [N,K] when TRANS_B.
// So X·Wᵀ + b is TRANS_B with bias; dX = dY·W is plain; dW = dYᵀ·X is TRANS_A.
// Two variants compute the same sums in the same k order (bit-identical run to run):
//   main_blocked: TM×TN outputs per invocation in registers, no workgroup memory (fast on CPU rasterisers);
//   main_tiled:   64×64 tile per workgroup staged through workgroup memory (fast on real GPUs).

struct Params {
  M: u32,
  N: u32,
  K: u32,
  strideA: u32,
  strideB: u32,
  strideC: u32,
  alpha: f32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> C: array<f32>;
#if HAS_BIAS
@group(0) @binding(4) var<storage, read> bias: array<f32>;
#endif

fn a_at(base: u32, m: u32, k: u32) -> f32 {
#if TRANS_A
  return A[base + k * p.M + m];
#else
  return A[base + m * p.K + k];
#endif
}

fn b_at(base: u32, k: u32, n: u32) -> f32 {
#if TRANS_B
  return B[base + n * p.K + k];
#else
  return B[base + k * p.N + n];
#endif
}

fn store(batch: u32, m: u32, n: u32, value: f32) {
  if (m >= p.M || n >= p.N) {
    return;
  }
  var v = value * p.alpha;
#if HAS_BIAS
  v = v + bias[n];
#endif
  let idx = batch * p.strideC + m * p.N + n;
#if ACCUMULATE
  v = C[idx] + v;
#endif
  C[idx] = v;
}

@compute @workgroup_size(8, 8)
fn main_blocked(@builtin(global_invocation_id) gid: vec3<u32>) {
  let batch = gid.z;
  let m0 = gid.y * TM;
  let n0 = gid.x * TN;
  if (m0 >= p.M || n0 >= p.N) {
    return;
  }
  let baseA = batch * p.strideA;
  let baseB = batch * p.strideB;
  // Clamp out-of-range rows/cols to the last valid one: loads stay in bounds and the stores are masked.
  var ms: array<u32, TM>;
  var ns: array<u32, TN>;
  for (var i = 0u; i < TM; i++) {
    ms[i] = min(m0 + i, p.M - 1u);
  }
  for (var j = 0u; j < TN; j++) {
    ns[j] = min(n0 + j, p.N - 1u);
  }
  var acc: array<f32, TM * TN>;
  for (var k = 0u; k < p.K; k++) {
    var av: array<f32, TM>;
    var bv: array<f32, TN>;
    for (var i = 0u; i < TM; i++) {
      av[i] = a_at(baseA, ms[i], k);
    }
    for (var j = 0u; j < TN; j++) {
      bv[j] = b_at(baseB, k, ns[j]);
    }
    for (var i = 0u; i < TM; i++) {
      for (var j = 0u; j < TN; j++) {
        acc[i * TN + j] = fma(av[i], bv[j], acc[i * TN + j]);
      }
    }
  }
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      store(batch, m0 + i, n0 + j, acc[i * TN + j]);
    }
  }
}

const TILE = 64u;
// BK comes from the host: 16 normally; smaller where the shader compiler unrolls workgroup zero-init (GL llvmpipe).
var<workgroup> tileA: array<f32, BK * TILE>; // [BK][TILE]
var<workgroup> tileB: array<f32, BK * TILE>; // [BK][TILE]

@compute @workgroup_size(16, 16)
fn main_tiled(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let batch = wid.z;
  let mBase = wid.y * TILE;
  let nBase = wid.x * TILE;
  let baseA = batch * p.strideA;
  let baseB = batch * p.strideB;
  var acc: array<f32, 16>;
  let kTiles = (p.K + BK - 1u) / BK;
  for (var t = 0u; t < kTiles; t++) {
    let k0 = t * BK;
    // 256 threads load BK*TILE elements of each tile; zero outside the matrix.
    for (var r = 0u; r < BK / 4u; r++) {
      let e = li + r * 256u;
      let kk = e / TILE;
      let mn = e % TILE;
      let k = k0 + kk;
      var va = 0.0;
      if (k < p.K && mBase + mn < p.M) {
        va = a_at(baseA, mBase + mn, k);
      }
      tileA[e] = va;
      var vb = 0.0;
      if (k < p.K && nBase + mn < p.N) {
        vb = b_at(baseB, k, nBase + mn);
      }
      tileB[e] = vb;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        av[i] = tileA[kk * TILE + lid.y * 4u + i];
        bv[i] = tileB[kk * TILE + lid.x * 4u + i];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) {
          acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
        }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    for (var j = 0u; j < 4u; j++) {
      store(batch, mBase + lid.y * 4u + i, nBase + lid.x * 4u + j, acc[i * 4u + j]);
    }
  }
}
