/**
 * float64 reference for the loss head: cross-entropy at labelled positions only, with the LM head tied to the word
 * embeddings (spec §2.3, §2.5):
 *   hg = h[positions]                      (gather, [P, d])
 *   logits = hg · Embᵀ                     ([P, V])
 *   loss_p = logsumexp(logits_p) − logits_p[target_p],   loss = mean_p loss_p
 *   correct_p = argmax(logits_p) == target_p            (ties → lowest index, like torch.argmax)
 * Backward for a gradient scale s (1/P for the mean; 1/(labels in the optimizer step) under accumulation):
 *   dlogits = (softmax − onehot)·s,  dhg = dlogits·Emb,  dh[positions] += dhg (0 elsewhere),  dEmb = dlogitsᵀ·hg
 */
import { matmulRef } from "./matmul.ts";

export interface LmHeadXentRef {
  logits: Float64Array;
  rowLoss: Float64Array;
  /** 1 where argmax == target, else 0. */
  rowCorrect: Float64Array;
  loss: number;
  lossSum: number;
  correctCount: number;
}

/** Ties go to the lowest index (torch.argmax returns the first maximal index). */
export function argmaxRow(x: ArrayLike<number>, offset: number, n: number): number {
  let best = 0;
  for (let j = 1; j < n; j++) if (x[offset + j] > x[offset + best]) best = j;
  return best;
}

export function gatherRowsRef(h: ArrayLike<number>, positions: ArrayLike<number>, d: number): Float64Array {
  const out = new Float64Array(positions.length * d);
  for (let p = 0; p < positions.length; p++) {
    for (let c = 0; c < d; c++) out[p * d + c] = h[positions[p] * d + c];
  }
  return out;
}

/** Adjoint of gatherRowsRef: rows of dhg summed into their positions (duplicates add), zero elsewhere. */
export function scatterRowsRef(
  dhg: ArrayLike<number>,
  positions: ArrayLike<number>,
  rows: number,
  d: number,
): Float64Array {
  const out = new Float64Array(rows * d);
  for (let p = 0; p < positions.length; p++) {
    for (let c = 0; c < d; c++) out[positions[p] * d + c] += dhg[p * d + c];
  }
  return out;
}

/** Softmax cross-entropy over rows of `logits` [P, V]. */
export function softmaxXentRef(logits: ArrayLike<number>, targets: ArrayLike<number>, V: number): LmHeadXentRef {
  const P = targets.length;
  const rowLoss = new Float64Array(P), rowCorrect = new Float64Array(P);
  let lossSum = 0, correctCount = 0;
  for (let p = 0; p < P; p++) {
    const o = p * V;
    const best = argmaxRow(logits, o, V);
    const max = logits[o + best];
    let sum = 0;
    for (let j = 0; j < V; j++) sum += Math.exp(logits[o + j] - max);
    rowLoss[p] = max + Math.log(sum) - logits[o + targets[p]];
    rowCorrect[p] = best === targets[p] ? 1 : 0;
    lossSum += rowLoss[p];
    correctCount += rowCorrect[p];
  }
  return {
    logits: Float64Array.from(logits),
    rowLoss,
    rowCorrect,
    loss: P > 0 ? lossSum / P : 0,
    lossSum,
    correctCount,
  };
}

/** dlogits = (softmax − onehot(target))·scale. */
export function softmaxXentBackwardRef(
  logits: ArrayLike<number>,
  targets: ArrayLike<number>,
  V: number,
  scale: number,
): Float64Array {
  const P = targets.length;
  const out = new Float64Array(P * V);
  for (let p = 0; p < P; p++) {
    const o = p * V;
    let max = -Infinity;
    for (let j = 0; j < V; j++) max = Math.max(max, logits[o + j]);
    let sum = 0;
    for (let j = 0; j < V; j++) sum += Math.exp(logits[o + j] - max);
    for (let j = 0; j < V; j++) out[o + j] = (Math.exp(logits[o + j] - max) / sum - (j === targets[p] ? 1 : 0)) * scale;
  }
  return out;
}

export interface LmHeadXentShape {
  rows: number;
  d: number;
  V: number;
}

/** Forward of the whole chain: gather, tied-head logits, cross-entropy. */
export function lmHeadXentForwardRef(
  h: ArrayLike<number>,
  emb: ArrayLike<number>,
  positions: ArrayLike<number>,
  targets: ArrayLike<number>,
  shape: LmHeadXentShape,
): LmHeadXentRef {
  const P = positions.length;
  const hg = gatherRowsRef(h, positions, shape.d);
  const logits = matmulRef(hg, emb, P, shape.V, shape.d, { transB: true });
  return softmaxXentRef(logits, targets, shape.V);
}

/** Gradients of scale·Σ_p loss_p with respect to h [rows, d] and Emb [V, d]. */
export function lmHeadXentBackwardRef(
  h: ArrayLike<number>,
  emb: ArrayLike<number>,
  positions: ArrayLike<number>,
  targets: ArrayLike<number>,
  shape: LmHeadXentShape,
  scale: number,
): { dh: Float64Array; dEmb: Float64Array; dlogits: Float64Array } {
  const { rows, d, V } = shape;
  const P = positions.length;
  const hg = gatherRowsRef(h, positions, d);
  const logits = matmulRef(hg, emb, P, V, d, { transB: true });
  const dlogits = softmaxXentBackwardRef(logits, targets, V, scale);
  const dhg = matmulRef(dlogits, emb, P, d, V); // [P,V]·[V,d]
  const dEmb = matmulRef(dlogits, hg, V, d, P, { transA: true }); // [V,P]·[P,d]
  return { dh: scatterRowsRef(dhg, positions, rows, d), dEmb, dlogits };
}
