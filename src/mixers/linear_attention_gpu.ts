/**
 * GPU builder of Based, ReBased and the ablations (linear_attention.ts): bias-free q/k/v projections, the variant's
 * transform of q and k over all H·f features, causal linear attention with row-sum normalisation, the output
 * projection. The variants differ only in the kernel g(s) and the transform (the layer descriptor's options).
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Dispatch } from "../ops/_dispatch.ts";
import { createLayerNormBackward, createLayerNormForward, type LayerNormFlags } from "../ops/layernorm.ts";
import {
  linearAttentionBackward,
  linearAttentionForward,
  selectLinearAttentionVariant,
} from "../ops/linear_attention.ts";
import { valueHeadDim } from "../model/config.ts";
import { linearBackward, linearForward } from "../model/linear.ts";
import type { ParamSlot } from "../model/parameters.ts";
import type { MixerBuilder, MixerContext, MixerGraph } from "./types.ts";
import type { LinearAttentionOptions } from "./linear_attention.ts";

export const buildLinearAttention: MixerBuilder = (ctx: MixerContext): MixerGraph => {
  const { kernel, transform: qk } = ctx.layer.options as LinearAttentionOptions;
  const transform = qk && {
    flags: { normalize: qk.normalize, eps: qk.eps, epsOutside: qk.epsOutside } satisfies LayerNormFlags,
    gammaName: qk.gammaName,
    betaName: qk.betaName,
  };
  const { gpu, cfg, rows, batch } = ctx;
  const d = cfg.dModel, H = cfg.numHeads, f = cfg.featureDim, dv = valueHeadDim(cfg);
  const qkDim = H * f, vDim = H * dv;
  const act = (name: string, width: number) => ctx.activation(name, [rows, width]);
  const q = act("q", qkDim), k = act("k", qkDim), v = act("v", vDim);
  const y = act("y", vDim), zinv = act("zinv", H);
  const projections = {
    q: { x: ctx.input, y: q, weight: ctx.param("proj_q.weight"), rows, inFeatures: d, outFeatures: qkDim },
    k: { x: ctx.input, y: k, weight: ctx.param("proj_k.weight"), rows, inFeatures: d, outFeatures: qkDim },
    v: { x: ctx.input, y: v, weight: ctx.param("proj_v.weight"), rows, inFeatures: d, outFeatures: vDim },
  };
  const outProj = { x: y, y: ctx.output, weight: ctx.param("proj_o.weight"), rows, inFeatures: vDim, outFeatures: d };
  const forward: Dispatch[] = Object.entries(projections).map(([n, p]) =>
    linearForward(gpu, `${ctx.label}.proj_${n}`, p)
  );

  // Transformed q and k (what the kernel sees), with the per-row statistics their backward needs.
  const transformed: Record<
    "q" | "k",
    { out: Tensor; mean?: Tensor; rstd?: Tensor; gamma?: ParamSlot; beta?: ParamSlot }
  > = {
    q: { out: q },
    k: { out: k },
  };
  if (transform) {
    for (const which of ["q", "k"] as const) {
      const ln = `ln_${which}.`;
      const t = {
        out: act(`${which}_t`, qkDim),
        mean: transform.flags.normalize === false ? undefined : ctx.activation(`${which}_mean`, [rows]),
        rstd: transform.flags.normalize === false ? undefined : ctx.activation(`${which}_rstd`, [rows]),
        gamma: transform.gammaName ? ctx.param(ln + transform.gammaName) : undefined,
        beta: transform.betaName ? ctx.param(ln + transform.betaName) : undefined,
      };
      transformed[which] = t;
      forward.push(createLayerNormForward(gpu, `${ctx.label}.ln_${which}`, {
        ...transform.flags,
        gamma: Boolean(t.gamma),
        beta: Boolean(t.beta),
        x: which === "q" ? q : k,
        y: t.out,
        gammaParam: t.gamma?.param,
        betaParam: t.beta?.param,
        mean: t.mean,
        rstd: t.rstd,
        rows,
        width: qkDim,
      }));
    }
  }
  // O(L) chunked form for long sequences, the exact parallel form below the measured crossover.
  const variant = selectLinearAttentionVariant(gpu, { seqLen: cfg.seqLen, featureDim: f, valueDim: dv });
  const variants = { attn: variant };
  const attnConfig = { batch, seqLen: cfg.seqLen, heads: H, featureDim: f, valueDim: dv, kernel, variant };
  const qt = transformed.q.out, kt = transformed.k.out;
  forward.push(linearAttentionForward(gpu, `${ctx.label}.attn`, { ...attnConfig, q: qt, k: kt, v, y, zinv }));
  forward.push(linearForward(gpu, `${ctx.label}.proj_o`, outProj));
  if (!ctx.training) return { forward, backward: [], variants };

  const dy = act("dy", vDim), dz = act("dz", H);
  const dqt = act("dq_t", qkDim), dkt = act("dk_t", qkDim), dvBuf = act("dv", vDim);
  const backward: Dispatch[] = [
    ...linearBackward(gpu, `${ctx.label}.proj_o`, outProj, { dy: ctx.dOutput, dx: dy }),
    linearAttentionBackward(gpu, `${ctx.label}.attn`, {
      ...attnConfig,
      q: qt,
      k: kt,
      v,
      y,
      zinv,
      dy,
      dq: dqt,
      dk: dkt,
      dv: dvBuf,
      dz,
    }),
  ];
  const dq = transform ? act("dq", qkDim) : dqt;
  const dk = transform ? act("dk", qkDim) : dkt;
  if (transform) {
    for (const [which, dIn, dOut] of [["q", dqt, dq], ["k", dkt, dk]] as const) {
      const t = transformed[which];
      backward.push(createLayerNormBackward(gpu, `${ctx.label}.ln_${which}.bwd`, {
        ...transform.flags,
        gamma: Boolean(t.gamma),
        beta: Boolean(t.beta),
        x: which === "q" ? q : k,
        dy: dIn,
        dx: dOut,
        gammaParam: t.gamma?.param,
        mean: t.mean,
        rstd: t.rstd,
        dgamma: t.gamma?.grad,
        dbeta: t.beta?.grad,
        rows,
        width: qkDim,
      }));
    }
  }
  backward.push(
    ...linearBackward(gpu, `${ctx.label}.proj_q`, projections.q, { dy: dq, dx: ctx.dInput }),
    ...linearBackward(gpu, `${ctx.label}.proj_k`, projections.k, { dy: dk, dx: ctx.dInput, accumulateDx: true }),
    ...linearBackward(gpu, `${ctx.label}.proj_v`, projections.v, { dy: dvBuf, dx: ctx.dInput, accumulateDx: true }),
  );
  return { forward, backward, variants };
};
