/** float64 reference for the token + position embedding (kernels/embedding.wgsl). */

function checkIds(ids: ArrayLike<number>, vocab: number): void {
  for (let t = 0; t < ids.length; t++) {
    if (!Number.isInteger(ids[t]) || ids[t] < 0 || ids[t] >= vocab) {
      throw new Error(`embedding reference: id ${ids[t]} at ${t} outside [0, ${vocab})`);
    }
  }
}

/** out[t, :] = word[ids[t], :] + pos[t mod L, :] for ids of length B·L; out is [B·L, d]. */
export function embeddingForwardRef(
  ids: ArrayLike<number>,
  word: ArrayLike<number>,
  pos: ArrayLike<number>,
  seqLen: number,
  dim: number,
  vocab: number,
): Float64Array {
  checkIds(ids, vocab);
  const out = new Float64Array(ids.length * dim);
  for (let t = 0; t < ids.length; t++) {
    const w = ids[t] * dim, p = (t % seqLen) * dim;
    for (let c = 0; c < dim; c++) out[t * dim + c] = word[w + c] + pos[p + c];
  }
  return out;
}

/** dWord[v] = Σ_{t: ids[t] = v} dOut[t]; dPos[l] = Σ_b dOut[b·L + l]. */
export function embeddingBackwardRef(
  ids: ArrayLike<number>,
  dOut: ArrayLike<number>,
  seqLen: number,
  dim: number,
  vocab: number,
): { dWord: Float64Array; dPos: Float64Array } {
  checkIds(ids, vocab);
  const dWord = new Float64Array(vocab * dim), dPos = new Float64Array(seqLen * dim);
  for (let t = 0; t < ids.length; t++) {
    const w = ids[t] * dim, p = (t % seqLen) * dim;
    for (let c = 0; c < dim; c++) {
      dWord[w + c] += dOut[t * dim + c];
      dPos[p + c] += dOut[t * dim + c];
    }
  }
  return { dWord, dPos };
}
