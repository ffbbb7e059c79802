// Global gradient norm sqrt(Σ_tensors Σ g²), deterministic two-stage reduction:
//   partial_sums: one dispatch per gradient tensor; workgroup w sums the squares of its CHUNK = WG*ITEMS elements in a
//                 fixed order (strided loads, then a tree) into partials[offset + w];
//   finalize:     one workgroup sums every partial in a fixed order and writes [norm, clip factor, Σ g²], where the
//                 clip factor is min(1, maxNorm/(norm + 1e-6)) like torch.nn.utils.clip_grad_norm_ (1 when off).
// WG and ITEMS come from the host.

struct PartialParams {
  length: u32,
  partialOffset: u32,
  groups: u32,
  _pad: u32,
}

struct FinalParams {
  count: u32,
  hasMaxNorm: u32,
  maxNorm: f32,
  _pad: u32,
}

var<workgroup> scratch: array<f32, WG>;

// Tree sum of scratch[0..WG) into scratch[0]; WG is a power of two. Every invocation must call it.
fn reduce_scratch(li: u32) {
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (li < stride) {
      scratch[li] = scratch[li] + scratch[li + stride];
    }
  }
  workgroupBarrier();
}

#if FINALIZE
@group(0) @binding(0) var<uniform> fp: FinalParams;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> result: array<f32>;

@compute @workgroup_size(WG)
fn finalize(@builtin(local_invocation_index) li: u32) {
  var acc = 0.0;
  for (var i = li; i < fp.count; i += WG) {
    acc += partials[i];
  }
  scratch[li] = acc;
  reduce_scratch(li);
  if (li == 0u) {
    let sumSquares = scratch[0];
    let norm = sqrt(sumSquares);
    var clip = 1.0;
    if (fp.hasMaxNorm != 0u) {
      clip = min(1.0, fp.maxNorm / (norm + 1e-6));
    }
    result[0] = norm;
    result[1] = clip;
    result[2] = sumSquares;
  }
}
#else
@group(0) @binding(0) var<uniform> pp: PartialParams;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;

@compute @workgroup_size(WG)
fn partial_sums(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let group = wid.y * nwg.x + wid.x;
  let start = group * (WG * ITEMS);
  var acc = 0.0;
  for (var r = 0u; r < ITEMS; r++) {
    let idx = start + r * WG + li;
    if (idx < pp.length) {
      let g = grad[idx];
      acc = fma(g, g, acc);
    }
  }
  scratch[li] = acc;
  reduce_scratch(li);
  // A 2-D grid may hold a few spare workgroups past `groups`: they must not touch the next tensor's partials.
  if (li == 0u && group < pp.groups) {
    partials[pp.partialOffset + group] = scratch[0];
  }
}
#endif
