// Loss head at labelled positions only (the tied-LM-head logits for all B*L positions would not fit):
// Labelled rows go through in chunks (rowBase, count in the uniform): gather, rows and grad work on one chunk.
//   gather_rows:  hg[r, :] = h[positions[rowBase + r], :]
//   scatter_rows: dh[r, :] = Σ_{p: positions[p] = r} dhg[p, :] (0 for unlabelled rows; overwrite, or add when ACCUMULATE).
//                 positions must be sorted ascending (duplicates allowed): each dh element finds its run by binary
//                 search, so the scatter needs no atomics and sums duplicates in a fixed order.
//   xent_rows:    one workgroup per logits row, one pass (online softmax): max + argmax (ties → lowest index, like
//                 torch.argmax), logsumexp,
//                 loss_p = lse − logit[target], correct_p; saves lse for the backward.
//   xent_finish:  one workgroup: fixed-order sums over rows → mean loss and correct count of this batch, and adds them
//                 to running accumulators that survive across submits (read back only every k steps).
//   xent_grad:    dlogits = (exp(logit − lse) − onehot)·gradScale, written over the logits (in place).
//   place_rows:   a chunk's dhg rows copied to their offset in the full dhg (several chunks only).
// WG (power of two) comes from the host.

struct Params {
  rows: u32,   // B*L
  d: u32,
  V: u32,
  P: u32,      // labelled positions
  gradScale: f32,
  rowBase: u32, // this chunk's first labelled row (chunk-local rows r are labelled rows rowBase + r)
  count: u32,   // labelled rows in this chunk
  _pad0: u32,
}

// Layout of the `stats` buffer (u32 words; f32 values stored as bits).
const STAT_MEAN_LOSS = 0u;     // f32: mean loss of the latest forward
const STAT_CORRECT = 1u;       // u32: correct rows of the latest forward
const STAT_ACC_LOSS_SUM = 2u;  // f32: Σ loss over all rows since the last reset
const STAT_ACC_CORRECT = 3u;   // u32: Σ correct since the last reset
const STAT_ACC_COUNT = 4u;     // u32: rows seen since the last reset

@group(0) @binding(0) var<uniform> p: Params;

fn linear_id(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * WG + li;
}

#if GATHER
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read> h: array<f32>;
@group(0) @binding(3) var<storage, read_write> hg: array<f32>;

@compute @workgroup_size(WG)
fn gather_rows(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let idx = linear_id(wid, nwg, li);
  if (idx >= p.count * p.d) {
    return;
  }
  let row = positions[p.rowBase + idx / p.d];
  var value = 0.0;
  // Out-of-range positions read as zero rather than out of bounds (the host validates them anyway).
  if (row < p.rows) {
    value = h[row * p.d + idx % p.d];
  }
  hg[idx] = value;
}
#endif

#if SCATTER
@group(0) @binding(1) var<storage, read> positions: array<u32>;
@group(0) @binding(2) var<storage, read> dhg: array<f32>;
@group(0) @binding(3) var<storage, read_write> dh: array<f32>;

@compute @workgroup_size(WG)
fn scatter_rows(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let idx = linear_id(wid, nwg, li);
  if (idx >= p.rows * p.d) {
    return;
  }
  let row = idx / p.d;
  let col = idx % p.d;
  // lower_bound: first k with positions[k] >= row.
  var lo = 0u;
  var hi = p.P;
  while (lo < hi) {
    let mid = (lo + hi) / 2u;
    if (positions[mid] < row) {
      lo = mid + 1u;
    } else {
      hi = mid;
    }
  }
  var sum = 0.0;
  for (var k = lo; k < p.P && positions[k] == row; k++) {
    sum += dhg[k * p.d + col];
  }
#if ACCUMULATE
  sum = dh[idx] + sum;
#endif
  dh[idx] = sum;
}
#endif

#if ROWS
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read_write> rowLoss: array<f32>;
@group(0) @binding(4) var<storage, read_write> rowLse: array<f32>;
@group(0) @binding(5) var<storage, read_write> rowCorrect: array<u32>;

var<workgroup> redMax: array<f32, WG>;
var<workgroup> redSum: array<f32, WG>;
var<workgroup> redIndex: array<u32, WG>; // 0xffffffff: the slot saw no column

@compute @workgroup_size(WG)
fn xent_rows(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let row = wid.y * nwg.x + wid.x; // uniform across the workgroup, so the early return keeps barriers uniform
  if (row >= p.count) {
    return;
  }
  let base = row * p.V;
  // One pass over the row: each invocation keeps its max (first index on ties: it scans columns in increasing order,
  // and `>` keeps the first) and Σ exp(x − max), rescaled whenever the max grows (online softmax).
  var best = -3.4028234e38;
  var bestIndex = 0xffffffffu;
  var sum = 0.0;
  for (var j = li; j < p.V; j += WG) {
    let x = logits[base + j];
    if (bestIndex == 0xffffffffu) {
      best = x;
      bestIndex = j;
      sum = 1.0;
    } else if (x > best) {
      sum = fma(sum, exp(best - x), 1.0);
      best = x;
      bestIndex = j;
    } else {
      sum += exp(x - best);
    }
  }
  redMax[li] = best;
  redSum[li] = sum;
  redIndex[li] = bestIndex;
  // One fixed-order tree merges (max, argmax, sum): ties (and empty slots) resolve to the lowest column index.
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (li < stride) {
      let oi = redIndex[li + stride];
      let mine = redIndex[li];
      if (oi != 0xffffffffu) {
        let ov = redMax[li + stride];
        let os = redSum[li + stride];
        if (mine == 0xffffffffu) {
          redMax[li] = ov;
          redSum[li] = os;
          redIndex[li] = oi;
        } else {
          let mv = redMax[li];
          let m = max(mv, ov);
          redSum[li] = redSum[li] * exp(mv - m) + os * exp(ov - m);
          if (ov > mv || (ov == mv && oi < mine)) {
            redMax[li] = ov;
            redIndex[li] = oi;
          }
        }
      }
    }
  }
  workgroupBarrier();
  if (li == 0u) {
    let labelled = p.rowBase + row;
    let label = targets[labelled];
    let lse = redMax[0] + log(redSum[0]);
    rowLse[labelled] = lse;
    rowLoss[labelled] = lse - logits[base + min(label, p.V - 1u)];
    rowCorrect[labelled] = select(0u, 1u, redIndex[0] == label);
  }
}
#endif

#if FINISH
@group(0) @binding(1) var<storage, read> rowLoss: array<f32>;
@group(0) @binding(2) var<storage, read> rowCorrect: array<u32>;
@group(0) @binding(3) var<storage, read_write> stats: array<u32>;

var<workgroup> lossParts: array<f32, WG>;
var<workgroup> correctParts: array<u32, WG>;

@compute @workgroup_size(WG)
fn xent_finish(@builtin(local_invocation_index) li: u32) {
  var loss = 0.0;
  var correct = 0u;
  for (var k = li; k < p.P; k += WG) {
    loss += rowLoss[k];
    correct += rowCorrect[k];
  }
  lossParts[li] = loss;
  correctParts[li] = correct;
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    workgroupBarrier();
    if (li < stride) {
      lossParts[li] = lossParts[li] + lossParts[li + stride];
      correctParts[li] = correctParts[li] + correctParts[li + stride];
    }
  }
  workgroupBarrier();
  if (li == 0u) {
    let total = lossParts[0];
    let count = correctParts[0];
    stats[STAT_MEAN_LOSS] = bitcast<u32>(total / f32(max(p.P, 1u)));
    stats[STAT_CORRECT] = count;
    stats[STAT_ACC_LOSS_SUM] = bitcast<u32>(bitcast<f32>(stats[STAT_ACC_LOSS_SUM]) + total);
    stats[STAT_ACC_CORRECT] = stats[STAT_ACC_CORRECT] + count;
    stats[STAT_ACC_COUNT] = stats[STAT_ACC_COUNT] + p.P;
  }
}
#endif

#if GRAD
@group(0) @binding(1) var<storage, read> targets: array<u32>;
@group(0) @binding(2) var<storage, read> rowLse: array<f32>;
#if VEC4
@group(0) @binding(3) var<storage, read_write> logits: array<vec4<f32>>;
#else
@group(0) @binding(3) var<storage, read_write> logits: array<f32>;
#endif

// VEC4 (V a multiple of 4): four columns of one row per invocation.
@compute @workgroup_size(WG)
fn xent_grad(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let idx = linear_id(wid, nwg, li);
#if VEC4
  if (idx >= p.count * p.V / 4u) {
    return;
  }
  let row = p.rowBase + (idx * 4u) / p.V;
  let col = (idx * 4u) % p.V;
  let softmax = exp(logits[idx] - vec4<f32>(rowLse[row]));
  let onehot = select(vec4<f32>(0.0), vec4<f32>(1.0), vec4<u32>(col, col + 1u, col + 2u, col + 3u) == vec4<u32>(targets[row]));
  logits[idx] = (softmax - onehot) * p.gradScale;
#else
  if (idx >= p.count * p.V) {
    return;
  }
  let row = p.rowBase + idx / p.V;
  let col = idx % p.V;
  let softmax = exp(logits[idx] - rowLse[row]);
  logits[idx] = (softmax - select(0.0, 1.0, col == targets[row])) * p.gradScale;
#endif
}
#endif

#if PLACE
@group(0) @binding(1) var<storage, read> chunk: array<f32>;
@group(0) @binding(2) var<storage, read_write> dhg: array<f32>;

// dhg[rowBase + r, :] = chunk[r, :]: a chunk's rows of dhg at their place among all labelled rows.
@compute @workgroup_size(WG)
fn place_rows(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let idx = linear_id(wid, nwg, li);
  if (idx < p.count * p.d) {
    dhg[p.rowBase * p.d + idx] = chunk[idx];
  }
}
#endif
