// Dropout with a counter-based mask: keep element i iff hash(seed, stream, i) >= threshold, where
// threshold ≈ p·2³². Nothing is stored: backward recomputes the same mask from the same uniform, and the trainer changes
// the seed per step with queue.writeBuffer. src/reference/dropout.ts implements the same integer hash bit-for-bit.
//   out = in·mask·scale, scale = 1/(1 − p)   (ACCUMULATE: out += in·mask·scale)
// The same entry serves forward (x → y) and backward (dy → dx); `apply_inplace` binds one buffer for in == out.

struct Params {
  n: u32,
  seed: u32,
  stream: u32,
  threshold: u32,
  scale: f32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> inPlace: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

const WG = 256u;

// A 32-bit integer finaliser (xor-shift / multiply rounds): every input bit affects every output bit.
fn mix32(v: u32) -> u32 {
  var h = v;
  h ^= h >> 16u;
  h *= 0x21f0aaadu;
  h ^= h >> 15u;
  h *= 0x735a2d97u;
  h ^= h >> 15u;
  return h;
}

fn keep(i: u32) -> bool {
  // The key depends on seed and stream (e.g. a layer id), so layers sharing a step seed get independent masks.
  let key = mix32(p.seed ^ mix32(p.stream ^ 0x9e3779b9u));
  return mix32(mix32(i ^ key) + key) >= p.threshold;
}

fn element(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * WG + li;
}

@compute @workgroup_size(WG)
fn apply(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = element(wid, nwg, li);
  if (i >= p.n) {
    return;
  }
  let v = select(0.0, src[i] * p.scale, keep(i));
#if ACCUMULATE
  dst[i] = dst[i] + v;
#else
  dst[i] = v;
#endif
}

@compute @workgroup_size(WG)
fn apply_inplace(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let i = element(wid, nwg, li);
  if (i >= p.n) {
    return;
  }
  inPlace[i] = select(0.0, inPlace[i] * p.scale, keep(i));
}
