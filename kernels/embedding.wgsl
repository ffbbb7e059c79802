// Token + position embedding and its deterministic backward (no float atomics).
//   forward:      out[t, c] = word[ids[t], c] + pos[t mod L, c]          (ids ≥ vocab read a zero word row)
//   backward_pos: dPos[l, c] += Σ_b dOut[b·L + l, c]                     (b ascending)
//   backward_word_partial / backward_word_reduce: dWord[tok, c] += Σ over the positions holding tok, in a fixed order,
//     driven by a host-built CSR "inverse index" (src/ops/embedding.ts: buildEmbeddingIndex). Each token's ascending
//     position list is cut into chunks of at most CHUNK positions so a frequent token (the filler) does not serialise
//     the whole pass: pass 1 sums each chunk, pass 2 adds a token's chunk sums in chunk order.
// Index buffer (u32 words, offsets in the uniform): [0] = unique tokens U, [1] = chunks C,
//   tokens[maxUnique]            sorted unique ids
//   tokenChunks[maxUnique + 1]   chunks of token u: tokenChunks[u] .. tokenChunks[u + 1]
//   chunkStarts[maxChunks + 1]   positions of chunk k: positions[chunkStarts[k] .. chunkStarts[k + 1]]
//   positions[tokens]            row indices t, grouped by token, ascending within a token

struct Params {
  tokens: u32,
  seqLen: u32,
  dim: u32,
  vocab: u32,
  batch: u32,
  maxUnique: u32,
  maxChunks: u32,
  offTokens: u32,
  offTokenChunks: u32,
  offChunkStarts: u32,
  offPositions: u32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

// forward: ids, word, pos, out
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> word: array<f32>;
@group(0) @binding(3) var<storage, read> pos: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// backward_pos: dOut, dPos
@group(0) @binding(1) var<storage, read> dOut: array<f32>;
@group(0) @binding(2) var<storage, read_write> dPos: array<f32>;

// backward_word_partial: dOut, index, partials
@group(0) @binding(2) var<storage, read> index: array<u32>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

// backward_word_reduce: index, partials, dWord
@group(0) @binding(1) var<storage, read> indexR: array<u32>;
@group(0) @binding(2) var<storage, read> partialsR: array<f32>;
@group(0) @binding(3) var<storage, read_write> dWord: array<f32>;

const WG = 256u;

fn element(wid: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * WG + li;
}

@compute @workgroup_size(WG)
fn forward(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let e = element(wid, nwg, li);
  if (e >= p.tokens * p.dim) {
    return;
  }
  let t = e / p.dim;
  let c = e - t * p.dim;
  let id = ids[t];
  var w = 0.0;
  if (id < p.vocab) {
    w = word[id * p.dim + c];
  }
  out[e] = w + pos[(t % p.seqLen) * p.dim + c];
}

// One invocation per (l, c): neighbouring invocations read neighbouring columns.
@compute @workgroup_size(WG)
fn backward_pos(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let e = element(wid, nwg, li);
  let rowStride = p.seqLen * p.dim;
  if (e >= rowStride) {
    return;
  }
  var sum = 0.0;
  for (var b = 0u; b < p.batch; b++) {
    sum += dOut[b * rowStride + e];
  }
  dPos[e] = dPos[e] + sum;
}

// One invocation per (chunk, c); chunks past this batch's count C exit (the grid is sized for the worst case).
@compute @workgroup_size(WG)
fn backward_word_partial(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let e = element(wid, nwg, li);
  let k = e / p.dim;
  if (k >= min(index[1], p.maxChunks)) {
    return;
  }
  let c = e - k * p.dim;
  let start = index[p.offChunkStarts + k];
  let end = index[p.offChunkStarts + k + 1u];
  var sum = 0.0;
  for (var j = start; j < end; j++) {
    sum += dOut[index[p.offPositions + j] * p.dim + c];
  }
  partials[e] = sum;
}

// One invocation per (unique token, c): each dWord row is written by exactly one invocation, so += needs no atomics.
@compute @workgroup_size(WG)
fn backward_word_reduce(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let e = element(wid, nwg, li);
  let u = e / p.dim;
  if (u >= min(indexR[0], p.maxUnique)) {
    return;
  }
  let c = e - u * p.dim;
  let token = indexR[p.offTokens + u];
  if (token >= p.vocab) {
    return;
  }
  let k0 = indexR[p.offTokenChunks + u];
  let k1 = indexR[p.offTokenChunks + u + 1u];
  var sum = 0.0;
  for (var k = k0; k < k1; k++) {
    sum += partialsR[k * p.dim + c];
  }
  dWord[token * p.dim + c] = dWord[token * p.dim + c] + sum;
}
