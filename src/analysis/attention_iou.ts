/**
 * The attention analysis of the paper's §5.5 (Table 3, Figures 5, 8, 9; spec §6.1-§6.2): how well a layer's attention
 * matrix puts its weight on the positions a query must copy from. Pure (no GPU): matrices in, numbers out.
 *
 * Ground truth G (spec §6.2): for every query position i (a labelled position; its input is key k_m), G_ij = 1 at the
 * context position of the matching pair: the value position 2m+1 (default: with layer 0's short conv fixed to the
 * previous token, position 2m+1 carries "previous token = k_m", which is what an induction head matches) or the key
 * position 2m (variant). The matrix is cropped as the paper does: query rows × the context region (positions 0..2N−1).
 *
 * IoU per sequence, then averaged over sequences:
 *   soft (default; the one closest to the paper's numbers, where a diffuse map scores low even when its argmax is right):
 *     Σ_{i,j} min(Â_ij, G_ij) / Σ_{i,j} max(Â_ij, G_ij) over the crop;
 *   top-1: the argmax column of each query row (within the crop) as the predicted set; |Pred ∩ G| / |Pred ∪ G|.
 */

/** A square row-major L×L matrix (row i: query i). */
export type Matrix = ArrayLike<number>;

export interface QueryTargets {
  /** Query positions (rows), ascending. */
  rows: number[];
  /** Per row: the value position 2m+1 and the key position 2m of the pair it asks for. */
  value: number[];
  key: number[];
  /** Context length 2N (columns of the crop). */
  context: number;
}

/** The ground truth of one MQAR example: its query rows and the positions they must retrieve. */
export function queryTargets(inputs: ArrayLike<number>, labels: ArrayLike<number>, numKvPairs: number): QueryTargets {
  const keyAt = new Map<number, number>();
  for (let m = 0; m < numKvPairs; m++) keyAt.set(inputs[2 * m], m);
  const t: QueryTargets = { rows: [], value: [], key: [], context: 2 * numKvPairs };
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] === -100) continue;
    const m = keyAt.get(inputs[i]);
    if (m === undefined) {
      throw new Error(`position ${i} is labelled but its token ${inputs[i]} is no key of the context`);
    }
    t.rows.push(i);
    t.value.push(2 * m + 1);
    t.key.push(2 * m);
  }
  return t;
}

/** Soft IoU Σ min(A, G) / Σ max(A, G) over query rows × context columns. */
export function softIou(a: Matrix, L: number, rows: readonly number[], targets: readonly number[], context: number) {
  let inter = 0, union = 0;
  rows.forEach((i, r) => {
    for (let j = 0; j < context; j++) {
      const g = j === targets[r] ? 1 : 0, v = a[i * L + j];
      inter += Math.min(v, g);
      union += Math.max(v, g);
    }
  });
  return union > 0 ? inter / union : 0;
}

/** Top-1 IoU: each row's argmax column in the crop (lowest index on ties) against its target. */
export function top1Iou(a: Matrix, L: number, rows: readonly number[], targets: readonly number[], context: number) {
  let hits = 0;
  rows.forEach((i, r) => {
    let best = 0;
    for (let j = 1; j < context; j++) if (a[i * L + j] > a[i * L + best]) best = j;
    if (best === targets[r]) hits++;
  });
  const union = 2 * rows.length - hits;
  return union > 0 ? hits / union : 0;
}

/** Element-wise mean of the heads' matrices. */
export function meanOverHeads(heads: readonly Float64Array[]): Float64Array {
  const out = new Float64Array(heads[0].length);
  for (const h of heads) for (let i = 0; i < out.length; i++) out[i] += h[i] / heads.length;
  return out;
}

export const IOU_VARIANTS = ["soft-value", "soft-key", "top1-value", "top1-key"] as const;
export type IouVariant = typeof IOU_VARIANTS[number];

/** Every IoU variant of one example's (head-averaged) matrix. */
export function iouVariants(a: Matrix, L: number, t: QueryTargets): Record<IouVariant, number> {
  return {
    "soft-value": softIou(a, L, t.rows, t.value, t.context),
    "soft-key": softIou(a, L, t.rows, t.key, t.context),
    "top1-value": top1Iou(a, L, t.rows, t.value, t.context),
    "top1-key": top1Iou(a, L, t.rows, t.key, t.context),
  };
}
