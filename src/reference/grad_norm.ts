/** float64 reference for the global gradient norm and the clip factor (torch.nn.utils.clip_grad_norm_ semantics). */

export interface GradNormRef {
  norm: number;
  /** min(1, maxNorm / (norm + 1e-6)); 1 when no maxNorm is given. */
  clip: number;
  sumSquares: number;
}

export const CLIP_EPS = 1e-6;

/** sqrt(Σ over all tensors of Σ g²), and the factor every gradient would be multiplied by when clipping. */
export function gradNormRef(grads: readonly ArrayLike<number>[], maxNorm?: number): GradNormRef {
  let sumSquares = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) sumSquares += g[i] * g[i];
  const norm = Math.sqrt(sumSquares);
  const clip = maxNorm === undefined ? 1 : Math.min(1, maxNorm / (norm + CLIP_EPS));
  return { norm, clip, sumSquares };
}
