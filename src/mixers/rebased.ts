/**
 * ReBased and its kernel-input ablations (spec §3.4): all use the quadratic kernel s² = (q'·k')²/f and differ only in
 * the transform x' of q and k over all 192 features: LayerNorm (ReBased), none (x²), γx, γx+β, or norm(x).
 */
import type { MixerName } from "../model/config.ts";
import { buildLinearAttentionLayer, type FeatureTransform } from "./_linear_attention_layer.ts";
import type { MixerBuilder } from "./types.ts";

export type ReBasedVariant = Extract<MixerName, `rebased${string}`>;

export const REBASED_TRANSFORMS: Readonly<Record<ReBasedVariant, FeatureTransform | null>> = {
  rebased: { flags: { normalize: true, eps: 1e-5 }, gammaName: "weight", betaName: "bias" },
  rebased_x2: null,
  rebased_gamma: { flags: { normalize: false }, gammaName: "gamma" },
  rebased_gamma_beta: { flags: { normalize: false }, gammaName: "gamma", betaName: "beta" },
  // The paper's Normalizer (x − μ)/(sqrt(var + eps) + eps), implemented as intended (the reference code crashes).
  rebased_norm: { flags: { normalize: true, eps: 1e-5, epsOutside: true } },
};

export function rebasedBuilder(variant: ReBasedVariant): MixerBuilder {
  return (ctx) => buildLinearAttentionLayer(ctx, "rebased", REBASED_TRANSFORMS[variant]);
}
