/**
 * Token + learned position embedding (kernels/embedding.wgsl): out[t] = wordEmb[ids[t]] + posEmb[t mod L] for
 * ids [B·L] (u32), out [B·L, d]. Backward is deterministic without atomics: dPos sums the batch in order; dWord uses a
 * CSR inverse index that the host builds from the ids it generated (`buildEmbeddingIndex`) and uploads with them.
 * Both gradients accumulate (+=): the word table is tied to the LM head, whose op adds into the same buffer.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Gpu } from "../gpu/device.ts";
import { ceilDiv, type Dispatch, grid1d, makeDispatch, makeUniform } from "./_dispatch.ts";

const WG = 256;

/** Fixed (worst-case) layout of the u32 index buffer for a given batch shape, see kernels/embedding.wgsl. */
export interface EmbeddingIndexLayout {
  /** B·L positions per batch. */
  readonly tokens: number;
  readonly vocab: number;
  /** Maximum positions summed by one invocation of the first backward pass. */
  readonly chunk: number;
  readonly maxUnique: number;
  readonly maxChunks: number;
  readonly offTokens: number;
  readonly offTokenChunks: number;
  readonly offChunkStarts: number;
  readonly offPositions: number;
  /** Total u32 words: allocate the index tensor with this length. */
  readonly words: number;
}

export function embeddingIndexLayout(tokens: number, vocab: number, chunk = 64): EmbeddingIndexLayout {
  for (const [name, v] of [["tokens", tokens], ["vocab", vocab], ["chunk", chunk]] as const) {
    if (!Number.isInteger(v) || v < (name === "tokens" ? 0 : 1)) throw new Error(`embedding index: bad ${name} ${v}`);
  }
  const maxUnique = Math.min(tokens, vocab);
  // A token seen n times needs ceil(n/chunk) ≤ 1 + (n − 1)/chunk chunks; summed over tokens ≤ U + N/chunk, and ≤ N.
  const maxChunks = Math.min(tokens, maxUnique + Math.ceil(tokens / chunk));
  const offTokens = 2;
  const offTokenChunks = offTokens + maxUnique;
  const offChunkStarts = offTokenChunks + maxUnique + 1;
  const offPositions = offChunkStarts + maxChunks + 1;
  return {
    tokens,
    vocab,
    chunk,
    maxUnique,
    maxChunks,
    offTokens,
    offTokenChunks,
    offChunkStarts,
    offPositions,
    words: offPositions + tokens,
  };
}

/**
 * Builds the inverse index of `ids` (pure TS, O(N + V) counting sort): unique tokens ascending, each token's positions
 * ascending, cut into chunks of at most `layout.chunk`. Writes into `out` when given (reuse it every step).
 */
export function buildEmbeddingIndex(
  ids: ArrayLike<number>,
  layout: EmbeddingIndexLayout,
  out = new Uint32Array(layout.words),
): Uint32Array {
  const { tokens, vocab, chunk } = layout;
  if (ids.length !== tokens) throw new Error(`embedding index: ${ids.length} ids, layout expects ${tokens}`);
  if (out.length < layout.words) {
    throw new Error(`embedding index: output has ${out.length} words, needs ${layout.words}`);
  }
  const counts = new Uint32Array(vocab + 1);
  for (let t = 0; t < tokens; t++) {
    const id = ids[t];
    if (!Number.isInteger(id) || id < 0 || id >= vocab) {
      throw new Error(`embedding index: id ${id} at ${t} outside [0, ${vocab})`);
    }
    counts[id + 1]++;
  }
  // Prefix sums give each token's first slot in `positions`; visiting t ascending keeps positions sorted per token.
  for (let v = 0; v < vocab; v++) counts[v + 1] += counts[v];
  const cursor = counts.slice(0, vocab);
  for (let t = 0; t < tokens; t++) out[layout.offPositions + cursor[ids[t]]++] = t;
  let unique = 0, chunks = 0;
  for (let v = 0; v < vocab; v++) {
    const start = counts[v], end = counts[v + 1];
    if (start === end) continue;
    out[layout.offTokens + unique] = v;
    out[layout.offTokenChunks + unique] = chunks;
    for (let s = start; s < end; s += chunk) out[layout.offChunkStarts + chunks++] = s;
    unique++;
  }
  out[layout.offTokenChunks + unique] = chunks;
  out[layout.offChunkStarts + chunks] = tokens;
  out[0] = unique;
  out[1] = chunks;
  return out;
}

export interface EmbeddingShape {
  batch: number;
  /** L: positions per sequence, also the number of rows of posEmb used (t mod L). */
  seqLen: number;
  dim: number;
  vocab: number;
}

export interface EmbeddingForwardArgs extends EmbeddingShape {
  /** [B·L] u32 token ids; ids ≥ vocab read a zero word row. */
  ids: Tensor;
  wordEmb: Tensor;
  posEmb: Tensor;
  /** [B·L, d]. */
  out: Tensor;
}

export interface EmbeddingBackwardArgs extends EmbeddingShape {
  /** [B·L, d] gradient of the forward output. */
  dOut: Tensor;
  /** u32 buffer of `layout.words` holding buildEmbeddingIndex(ids) for the batch whose dOut this is. */
  index: Tensor;
  /** [vocab, d], accumulated (+=). */
  dWordEmb: Tensor;
  /** [≥ L, d], accumulated (+=). */
  dPosEmb: Tensor;
  /** Default 64. */
  chunk?: number;
}

export interface EmbeddingBackward extends Dispatch {
  readonly layout: EmbeddingIndexLayout;
  /** Per-chunk partial sums [maxChunks, d], allocated here. */
  readonly workspace: Tensor;
}

function checkShape(label: string, s: EmbeddingShape): number {
  for (const [name, v] of Object.entries({ batch: s.batch, seqLen: s.seqLen, dim: s.dim, vocab: s.vocab })) {
    if (!Number.isInteger(v) || v < (name === "batch" ? 0 : 1)) throw new Error(`${label}: bad ${name} ${v}`);
  }
  return s.batch * s.seqLen;
}

function need(label: string, t: Tensor, n: number, what: string): void {
  if (t.length < n) throw new Error(`${label}: ${what} ${t.label} has ${t.length} elements, needs ${n}`);
}

function params(gpu: Gpu, label: string, s: EmbeddingShape, layout?: EmbeddingIndexLayout): GPUBuffer {
  return makeUniform(gpu, `${label}.params`, [
    ["u32", s.batch * s.seqLen],
    ["u32", s.seqLen],
    ["u32", s.dim],
    ["u32", s.vocab],
    ["u32", s.batch],
    ["u32", layout?.maxUnique ?? 0],
    ["u32", layout?.maxChunks ?? 0],
    ["u32", layout?.offTokens ?? 0],
    ["u32", layout?.offTokenChunks ?? 0],
    ["u32", layout?.offChunkStarts ?? 0],
    ["u32", layout?.offPositions ?? 0],
    ["u32", 0],
  ]);
}

export function createEmbeddingForward(gpu: Gpu, label: string, args: EmbeddingForwardArgs): Dispatch {
  const tokens = checkShape(label, args);
  need(label, args.ids, tokens, "ids");
  need(label, args.wordEmb, args.vocab * args.dim, "wordEmb");
  need(label, args.posEmb, args.seqLen * args.dim, "posEmb");
  need(label, args.out, tokens * args.dim, "out");
  return makeDispatch(
    gpu,
    label,
    "embedding",
    "forward",
    {},
    [params(gpu, label, args), args.ids, args.wordEmb, args.posEmb, args.out],
    grid1d(gpu, ceilDiv(tokens * args.dim, WG)),
  );
}

export function createEmbeddingBackward(gpu: Gpu, label: string, args: EmbeddingBackwardArgs): EmbeddingBackward {
  const tokens = checkShape(label, args);
  const { dim } = args;
  const layout = embeddingIndexLayout(tokens, args.vocab, args.chunk ?? 64);
  need(label, args.dOut, tokens * dim, "dOut");
  need(label, args.index, layout.words, "index");
  need(label, args.dWordEmb, args.vocab * dim, "dWordEmb");
  need(label, args.dPosEmb, args.seqLen * dim, "dPosEmb");
  const u = params(gpu, label, args, layout);
  const workspace = gpu.allocator.tensor(`${label}.partials`, [Math.max(1, layout.maxChunks), dim], "workspace");
  const parts = [
    makeDispatch(
      gpu,
      `${label}.pos`,
      "embedding",
      "backward_pos",
      {},
      [u, args.dOut, args.dPosEmb],
      grid1d(
        gpu,
        ceilDiv(args.seqLen * dim, WG),
      ),
    ),
    makeDispatch(
      gpu,
      `${label}.word_partial`,
      "embedding",
      "backward_word_partial",
      {},
      [u, args.dOut, args.index, workspace],
      grid1d(gpu, ceilDiv(layout.maxChunks * dim, WG)),
    ),
    makeDispatch(
      gpu,
      `${label}.word_reduce`,
      "embedding",
      "backward_word_reduce",
      {},
      [u, args.index, workspace, args.dWordEmb],
      grid1d(gpu, ceilDiv(layout.maxUnique * dim, WG)),
    ),
  ];
  return {
    label,
    layout,
    workspace,
    encode(pass) {
      for (const d of parts) d.encode(pass);
    },
  };
}
