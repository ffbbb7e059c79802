/**
 * Based and ReBased linear attention (spec §3.3, §3.4) and the paper's kernel ablations (its Table 1), defined in one
 * table: bias-free q/k/v projections, an optional transform of q and k over all H·f features (ReBased's LayerNorm and
 * its ablations: none, γx, γx+β, norm(x)), causal linear attention with row-sum normalisation (Based: 1 + s + s²/2,
 * ReBased: s², s = q·k/√f), and the output projection. A new ablation is one row of LINEAR_ATTENTION_VARIANTS plus one
 * registry line. GPU builder: linear_attention_gpu.ts.
 */
import { ModelConfigError, valueHeadDim } from "../model/arch_config.ts";
import { layerNormBackwardRef, layerNormForwardRef, type LayerNormRefOptions } from "../reference/layernorm.ts";
import {
  linearAttentionBackwardRef,
  linearAttentionForwardRef,
  type LinearAttentionShape,
} from "../reference/linear_attention.ts";
import { linearBackward, linearForward } from "../reference/matmul.ts";
import {
  type LinearAttentionKernel,
  packedFeatureCount,
  selectLinearAttentionVariant,
} from "../ops/linear_attention.ts";
import { baseConvLayer } from "./base_conv.ts";
import { causalPairs } from "./mha.ts";
import {
  type ArchDescriptor,
  defineArch,
  type FlopTerm,
  type LayerDescriptor,
  linearFlops,
  ONES,
  type RefLayerGrads,
  ZEROS,
} from "./descriptor.ts";

/** How q and k are transformed before the kernel (LayerNorm-family flags) and the names of γ and β under ln_q/ln_k. */
export interface QkTransform {
  normalize: boolean;
  eps?: number;
  /** The paper's Normalizer: (x − μ)/(sqrt(var + eps) + eps). */
  epsOutside?: boolean;
  gammaName?: string;
  betaName?: string;
}

export interface LinearAttentionOptions {
  kernel: LinearAttentionKernel;
  transform: QkTransform | null;
}

/** [R]'s denominator eps of Based and ReBased (y = Σ g v / (Σ g + eps)). */
const LINEAR_ATTENTION_EPS = 1e-12;

/** eps of ReBased's LayerNorm / Normalizer over the 192 q/k features. */
const QK_NORM_EPS = 1e-5;

/** Tokens per chunk of the chunked linear attention (src/ops/linear_attention.ts). */
export const LINEAR_ATTENTION_CHUNK = 16;

/** Causal pairs of one sequence when only pairs inside the same chunk of `chunk` tokens are counted. */
export function chunkedCausalPairs(L: number, chunk: number): number {
  const full = Math.floor(L / chunk), rest = L - full * chunk;
  return full * causalPairs(chunk) + causalPairs(rest);
}

/** The reference's LayerNorm-family options of a transform. */
export function transformRefOptions(t: QkTransform): LayerNormRefOptions {
  return {
    normalize: t.normalize,
    gamma: Boolean(t.gammaName),
    beta: Boolean(t.betaName),
    eps: t.eps ?? QK_NORM_EPS,
    epsOutside: t.epsOutside ?? false,
  };
}

function linearAttentionLayer(label: string, options: LinearAttentionOptions): LayerDescriptor<LinearAttentionOptions> {
  const { transform } = options;
  const widths = (cfg: { dModel: number; numHeads: number; featureDim: number }) => {
    const H = cfg.numHeads, f = cfg.featureDim, dv = valueHeadDim(cfg);
    return { H, f, dv, qk: H * f, vd: H * dv };
  };
  return {
    kind: "linear_attention",
    label,
    options,
    params(m, cfg) {
      const d = cfg.dModel, { qk, vd } = widths(cfg);
      m.linear("proj_q", qk, d, false);
      m.linear("proj_k", qk, d, false);
      m.linear("proj_v", vd, d, false);
      m.linear("proj_o", d, vd, false);
      // nn.LayerNorm(F·H) (rebased) or Scaler (γ, γ+β) per q and k, after the projections (registration order).
      for (const which of ["ln_q", "ln_k"]) {
        if (transform?.gammaName) m.add(`${which}.${transform.gammaName}`, [qk], ONES);
        if (transform?.betaName) m.add(`${which}.${transform.betaName}`, [qk], ZEROS);
      }
    },
    validate(cfg) {
      if (cfg.dModel < cfg.numHeads) {
        throw new ModelConfigError(
          `dModel: ${cfg.dModel} is too small for ${cfg.mixer}: the value head dim floor(dModel/numHeads) = ` +
            `floor(${cfg.dModel}/${cfg.numHeads}) must be at least 1, so dModel must be >= ${cfg.numHeads}`,
          "dModel",
        );
      }
    },
    reference(ctx, u) {
      const { cfg, batch: B } = ctx;
      const d = cfg.dModel, rows = B * cfg.seqLen, { H, f, dv, qk, vd } = widths(cfg);
      const wq = ctx.param("proj_q.weight"), wk = ctx.param("proj_k.weight");
      const wv = ctx.param("proj_v.weight"), wo = ctx.param("proj_o.weight");
      const qRaw = linearForward(u, wq, undefined, rows, qk, d);
      const kRaw = linearForward(u, wk, undefined, rows, qk, d);
      const v = linearForward(u, wv, undefined, rows, vd, d);
      const applyTransform = (x: Float64Array, which: "ln_q" | "ln_k") => {
        if (!transform) return { y: x, backward: (dy: Float64Array): RefLayerGrads => ({ du: dy, grads: new Map() }) };
        const opts = transformRefOptions(transform);
        const gammaName = transform.gammaName && ctx.name(`${which}.${transform.gammaName}`);
        const betaName = transform.betaName && ctx.name(`${which}.${transform.betaName}`);
        const gamma = transform.gammaName ? ctx.param(`${which}.${transform.gammaName}`) : undefined;
        const beta = transform.betaName ? ctx.param(`${which}.${transform.betaName}`) : undefined;
        const { y } = layerNormForwardRef(x, gamma, beta, rows, qk, opts);
        return {
          y,
          backward: (dy: Float64Array): RefLayerGrads => {
            const g = layerNormBackwardRef(x, gamma, dy, rows, qk, opts);
            const grads = new Map<string, Float64Array>();
            if (gammaName) grads.set(gammaName, g.dgamma);
            if (betaName) grads.set(betaName, g.dbeta);
            return { du: g.dx, grads };
          },
        };
      };
      const qT = applyTransform(qRaw, "ln_q"), kT = applyTransform(kRaw, "ln_k");
      const shape: LinearAttentionShape = {
        batch: B,
        seqLen: cfg.seqLen,
        heads: H,
        featureDim: f,
        valueDim: dv,
        kernel: options.kernel,
      };
      const { y: attn } = linearAttentionForwardRef(qT.y, kT.y, v, shape);
      const y = linearForward(attn, wo, undefined, rows, d, vd);
      return {
        y,
        activations: (transform ? { q_t: qT.y, k_t: kT.y } : { q: qRaw, k: kRaw }) as Record<string, Float64Array>,
        backward: (dy) => {
          const o = linearBackward(attn, wo, dy, rows, d, vd);
          const a = linearAttentionBackwardRef(qT.y, kT.y, v, o.dx, shape);
          const qb = qT.backward(a.dq), kb = kT.backward(a.dk);
          const q = linearBackward(u, wq, qb.du, rows, qk, d);
          const k = linearBackward(u, wk, kb.du, rows, qk, d);
          const vb = linearBackward(u, wv, a.dv, rows, vd, d);
          const du = q.dx;
          for (let i = 0; i < du.length; i++) du[i] += k.dx[i] + vb.dx[i];
          const grads = new Map<string, Float64Array>([
            [ctx.name("proj_q.weight"), q.dw],
            [ctx.name("proj_k.weight"), k.dw],
            [ctx.name("proj_v.weight"), vb.dw],
            [ctx.name("proj_o.weight"), o.dw],
            ...qb.grads,
            ...kb.grads,
          ]);
          return { du, grads };
        },
      };
    },
    flops(ctx) {
      const { cfg, batch: B, rows, label: p } = ctx;
      const d = cfg.dModel, L = cfg.seqLen, { H, f, dv, qk, vd } = widths(cfg);
      const form = ctx.linearAttentionForm ??
        (selectLinearAttentionVariant(ctx.adapter, { seqLen: L, featureDim: f, valueDim: dv }) === "chunked"
          ? "chunked"
          : "parallel");
      // Parallel: per causal pair and head, q·k (2f) and A·V (2dv) forward; dA, dV (2dv each), dQ, dK (2f each) back.
      // Chunked (spec §5.3): the same inside each chunk, plus per token and head the state read φ(q)·S and update
      // S += φ(k)ᵀ[v 1] (2·D·(dv+1) each) forward; dq, dk, the dS update (2·D·(dv+1) each) and dv (2·D·dv) backward.
      let attn: FlopTerm;
      if (form === "parallel") {
        const pairs = B * H * causalPairs(L);
        const [forward, backward] = [pairs * (2 * f + 2 * dv), pairs * (4 * f + 4 * dv)];
        attn = { name: `${p}.attn`, kind: "linear_attention", forward, backward, form };
      } else {
        const pairs = B * H * chunkedCausalPairs(L, LINEAR_ATTENTION_CHUNK);
        const D = packedFeatureCount(options.kernel, f);
        const tokens = B * H * L, stateProduct = 2 * D * (dv + 1);
        attn = {
          name: `${p}.attn`,
          kind: "linear_attention",
          forward: pairs * (2 * f + 2 * dv) + tokens * 2 * stateProduct,
          backward: pairs * (4 * f + 4 * dv) + tokens * (3 * stateProduct + 2 * D * dv),
          form,
        };
      }
      return [
        linearFlops(`${p}.proj_q`, rows, d, qk),
        linearFlops(`${p}.proj_k`, rows, d, qk),
        linearFlops(`${p}.proj_v`, rows, d, vd),
        attn,
        linearFlops(`${p}.proj_o`, rows, vd, d),
      ];
    },
    activations({ cfg, rows, label: p, training }, act) {
      const { H, qk, vd } = widths(cfg);
      act(`${p}.q`, rows * qk);
      act(`${p}.k`, rows * qk);
      act(`${p}.v`, rows * vd);
      act(`${p}.y`, rows * vd);
      act(`${p}.zinv`, rows * H);
      if (transform) {
        for (const w of ["q", "k"]) {
          act(`${p}.${w}_t`, rows * qk);
          if (transform.normalize) {
            act(`${p}.${w}_mean`, rows);
            act(`${p}.${w}_rstd`, rows);
          }
        }
      }
      if (training) {
        act(`${p}.dy`, rows * vd);
        act(`${p}.dz`, rows * H);
        act(`${p}.dq_t`, rows * qk);
        act(`${p}.dk_t`, rows * qk);
        act(`${p}.dv`, rows * vd);
        if (transform) {
          act(`${p}.dq`, rows * qk);
          act(`${p}.dk`, rows * qk);
        }
      }
    },
    attentionMap: {
      // What the kernel sees: the transformed q, k (their raw projections when there is no transform).
      activations: () => (transform ? ["q_t", "k_t"] : ["q", "k"]),
      heads: (cfg) => cfg.numHeads,
      // Â_ij = g(S_ij) / Σ_{j' ≤ i} g(S_ij'), S = q_i·k_j/sqrt(f) per head (spec §6.1: the parallel form's weights).
      matrix(cfg, act, b) {
        const L = cfg.seqLen, { H, f, qk } = widths(cfg);
        const [q, k] = (transform ? ["q_t", "k_t"] : ["q", "k"]).map(act);
        const scale = 1 / Math.sqrt(f);
        return Array.from({ length: H }, (_, h) => {
          const m = new Float64Array(L * L);
          for (let i = 0; i < L; i++) {
            let z = 0;
            for (let j = 0; j <= i; j++) {
              let s = 0;
              for (let c = 0; c < f; c++) s += q[(b * L + i) * qk + h * f + c] * k[(b * L + j) * qk + h * f + c];
              s *= scale;
              const g = options.kernel === "based" ? 1 + s + s * s / 2 : s * s;
              m[i * L + j] = g;
              z += g;
            }
            for (let j = 0; j <= i; j++) m[i * L + j] /= z + LINEAR_ATTENTION_EPS;
          }
          return m;
        });
      },
    },
    trackedParams: () =>
      ["ln_q", "ln_k"].flatMap((w) =>
        [transform?.gammaName, transform?.betaName].filter((n): n is string => Boolean(n)).map((n) => `${w}.${n}`)
      ),
    // The recurrent form's state per head: D packed features × (dv + 1) columns (the ones column is the normaliser).
    stateFloats: (cfg) => {
      const { H, f, dv } = widths(cfg);
      return H * packedFeatureCount(options.kernel, f) * (dv + 1);
    },
  };
}

interface LinearAttentionVariantRow {
  name: string;
  /** Breakdown label (the layer) and Table 4 / report label (the architecture). */
  label: string;
  /** The paper's Table 1 name where it differs. */
  paperLabel?: string;
  summary: string;
  options: LinearAttentionOptions;
}

/** Based, ReBased and the ablations of the paper's Table 1 (spec §3.4): the same s² kernel, different q/k transforms. */
const LINEAR_ATTENTION_VARIANTS = [
  {
    name: "based",
    label: "Based",
    summary: "BaseConv, then Based linear attention (Taylor kernel 1 + s + s²/2)",
    options: { kernel: "based", transform: null },
  },
  {
    name: "rebased",
    label: "ReBased",
    paperLabel: "ReBased, (γ·norm(x)+β)²",
    summary: "BaseConv, then ReBased (LayerNorm over the 192 q/k features, kernel s²)",
    options: {
      kernel: "rebased",
      transform: { normalize: true, eps: QK_NORM_EPS, gammaName: "weight", betaName: "bias" },
    },
  },
  {
    name: "rebased_x2",
    label: "ReBased-x2",
    paperLabel: "x²",
    summary: "ablation: kernel s² without a q/k transform",
    options: { kernel: "rebased", transform: null },
  },
  {
    name: "rebased_gamma",
    label: "ReBased-gamma",
    paperLabel: "(γ·x)²",
    summary: "ablation: q, k scaled by γ (Scaler without bias)",
    options: { kernel: "rebased", transform: { normalize: false, gammaName: "gamma" } },
  },
  {
    name: "rebased_gamma_beta",
    label: "ReBased-gamma-beta",
    paperLabel: "(γ·x+β)²",
    summary: "ablation: q, k scaled and shifted (Scaler with bias)",
    options: { kernel: "rebased", transform: { normalize: false, gammaName: "gamma", betaName: "beta" } },
  },
  {
    name: "rebased_norm",
    label: "ReBased-norm",
    paperLabel: "norm(x)²",
    // The paper's Normalizer (x − μ)/(sqrt(var + eps) + eps), implemented as intended (the reference code crashes).
    summary: "ablation: q, k normalised without γ, β (the paper's Normalizer)",
    options: { kernel: "rebased", transform: { normalize: true, eps: QK_NORM_EPS, epsOutside: true } },
  },
] as const satisfies readonly LinearAttentionVariantRow[];

type VariantName = typeof LINEAR_ATTENTION_VARIANTS[number]["name"];

function linearAttentionArch<N extends VariantName>(name: N): ArchDescriptor<N, true> {
  const row: LinearAttentionVariantRow = LINEAR_ATTENTION_VARIANTS.find((r) => r.name === name)!;
  const t = row.options.transform;
  const transformParams = (t?.gammaName ? 1 : 0) + (t?.betaName ? 1 : 0);
  return defineArch({
    name,
    label: row.label,
    paperLabel: row.paperLabel,
    summary: row.summary,
    block: "transformer",
    layers: [baseConvLayer, linearAttentionLayer(row.label, row.options)],
    trainable: true,
    // Vd + Ld + 10d (LayerNorms) + BaseConv d² + 5d + q, k (d·F·H each), v, o (d·H·⌊d/H⌋ each) + the transform's γ/β.
    paramFormula: ({ dModel: d, vocabSize: V, seqLen: L, featureDim: F, numHeads: H }) =>
      V * d + L * d + d * d + 15 * d + 2 * d * F * H + 2 * d * H * Math.floor(d / H) + transformParams * 2 * F * H,
  });
}

export const based = linearAttentionArch("based");
export const rebased = linearAttentionArch("rebased");
export const rebasedX2 = linearAttentionArch("rebased_x2");
export const rebasedGamma = linearAttentionArch("rebased_gamma");
export const rebasedGammaBeta = linearAttentionArch("rebased_gamma_beta");
export const rebasedNorm = linearAttentionArch("rebased_norm");
