/**
 * float64 reference for AdamW with PyTorch semantics (torch.optim.AdamW, amsgrad=False, maximize=False):
 *   p ← p·(1 − lr·wd)                       (decoupled weight decay, applied first)
 *   m ← β1·m + (1 − β1)·g,   v ← β2·v + (1 − β2)·g²
 *   p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps)
 * with t the 1-based step count. An optional clip factor multiplies g first (clip_grad_norm_ before step()).
 */

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** torch.optim.AdamW defaults, except weight decay 0.1 as in the paper's training code (spec §2.5). */
export const ADAMW_DEFAULTS: Omit<AdamWHyper, "lr"> = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };

export interface AdamWTensorState {
  param: Float64Array;
  grad: ArrayLike<number>;
  m: Float64Array;
  v: Float64Array;
}

/** One optimizer step (1-based `step`) over every tensor, in place. */
export function adamwStepRef(
  tensors: readonly AdamWTensorState[],
  step: number,
  hyper: AdamWHyper,
  clip = 1,
): void {
  if (!(step >= 1)) throw new Error(`adamwStepRef: step must be >= 1, got ${step}`);
  const { lr, beta1, beta2, eps, weightDecay } = hyper;
  const stepSize = lr / (1 - beta1 ** step);
  const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
  for (const { param, grad, m, v } of tensors) {
    for (let i = 0; i < param.length; i++) {
      const g = grad[i] * clip;
      param[i] *= 1 - lr * weightDecay;
      m[i] = beta1 * m[i] + (1 - beta1) * g;
      v[i] = beta2 * v[i] + (1 - beta2) * g * g;
      param[i] -= stepSize * m[i] / (Math.sqrt(v[i]) / bc2Sqrt + eps);
    }
  }
}
