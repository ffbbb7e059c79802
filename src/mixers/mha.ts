/**
 * Multi-head softmax attention (spec §3.2): Wqkv d → 3d (bias) → causal softmax with the additive −10000 mask and
 * dropout 0.1 on the probabilities → out_proj (bias). The `attention` model uses it in both layers, `conv_attention`
 * behind BaseConv. The same layer with a sliding window is zoology's SlidingAttn (zoology/mixers/slide_attn.py: one
 * head, the −10000 mask also on keys j < i − block_size, attention dropout 0.0): `sliding_window`, behind BaseConv.
 * GPU builder: mha_gpu.ts.
 */
import { type ArchConfig, ModelConfigError, windowOf } from "../model/arch_config.ts";
import { attentionBackwardRef, attentionForwardRef, type AttentionShape } from "../reference/attention.ts";
import { linearBackward, linearForward } from "../reference/matmul.ts";
import { selectAttentionVariant } from "../ops/attention.ts";
import { baseConvLayer } from "./base_conv.ts";
import { defineArch, type LayerDescriptor, linearFlops } from "./descriptor.ts";

/** Dropout on MHA's attention probabilities (spec §3.2). */
export const ATTENTION_DROPOUT = 0.1;

/** Causal (i ≥ j) query-key pairs of one sequence of length L. */
export const causalPairs = (L: number): number => (L * (L + 1)) / 2;

/** Query-key pairs i − w ≤ j ≤ i of one sequence of length L (every causal pair when w ≥ L − 1). */
export function windowPairs(L: number, w: number): number {
  const full = Math.min(L, w + 1); // rows from index w on see w + 1 keys; the first w rows see i + 1
  return causalPairs(full) + (L - full) * full;
}

export interface MhaOptions {
  /** Attention-probability dropout in training. */
  dropout: number;
  /** Whether the layer reads ArchConfig.window (sliding window); otherwise every j ≤ i. */
  windowed: boolean;
}

/** The keys each query sees before itself in this layer (undefined: all of them). */
export function layerWindow(options: MhaOptions, cfg: Pick<ArchConfig, "window">): number | undefined {
  return options.windowed ? windowOf(cfg) : undefined;
}

function makeMhaLayer(options: MhaOptions, label: string): LayerDescriptor<MhaOptions> {
  return {
    kind: "mha",
    label,
    options,
    params(m, cfg) {
      m.linear("Wqkv", 3 * cfg.dModel, cfg.dModel, true);
      m.linear("out_proj", cfg.dModel, cfg.dModel, true);
    },
    validate(cfg) {
      if (cfg.dModel % cfg.attnHeads !== 0) {
        throw new ModelConfigError(
          `attnHeads: ${cfg.attnHeads} must divide dModel = ${cfg.dModel} for ${cfg.mixer} (head dim = dModel/attnHeads)`,
          "attnHeads",
        );
      }
    },
    reference(ctx, u) {
      const { cfg, batch: B } = ctx;
      const d = cfg.dModel, rows = B * cfg.seqLen;
      const wqkv = ctx.param("Wqkv.weight"), bqkv = Float64Array.from(ctx.param("Wqkv.bias"));
      const wo = ctx.param("out_proj.weight"), bo = Float64Array.from(ctx.param("out_proj.bias"));
      const shape: AttentionShape = { B, L: cfg.seqLen, d, H: cfg.attnHeads, window: layerWindow(options, cfg) };
      const dropout = options.dropout > 0 ? ctx.dropout : undefined;
      const qkv = linearForward(u, wqkv, bqkv, rows, 3 * d, d);
      const { out: attn } = attentionForwardRef(qkv, shape, dropout);
      const y = linearForward(attn, wo, bo, rows, d, d);
      return {
        y,
        activations: { qkv },
        backward: (dy) => {
          const o = linearBackward(attn, wo, dy, rows, d, d);
          const dqkv = attentionBackwardRef(qkv, o.dx, shape, dropout);
          const i = linearBackward(u, wqkv, dqkv, rows, 3 * d, d);
          return {
            du: i.dx,
            grads: new Map([
              [ctx.name("Wqkv.weight"), i.dw],
              [ctx.name("Wqkv.bias"), i.db],
              [ctx.name("out_proj.weight"), o.dw],
              [ctx.name("out_proj.bias"), o.db],
            ]),
          };
        },
      };
    },
    flops({ cfg, batch, rows, label }) {
      const d = cfg.dModel;
      // H heads of dh = d/H: Σ over heads of 2·dh per pair is 2·d per pair (QKᵀ, P·V forward; dV, dP, dQ, dK backward).
      const w = layerWindow(options, cfg);
      const perProduct = 2 * d * batch * (w === undefined ? causalPairs(cfg.seqLen) : windowPairs(cfg.seqLen, w));
      return [
        linearFlops(`${label}.Wqkv`, rows, d, 3 * d),
        { name: `${label}.attn`, kind: "attention", forward: 2 * perProduct, backward: 4 * perProduct },
        linearFlops(`${label}.out_proj`, rows, d, d),
      ];
    },
    activations({ cfg, batch: B, rows, label, training, adapter }, act) {
      const d = cfg.dModel, L = cfg.seqLen, H = cfg.attnHeads;
      act(`${label}.qkv`, rows * 3 * d);
      act(`${label}.attn_out`, rows * d);
      if (training) {
        act(`${label}.d_attn_out`, rows * d);
        act(`${label}.dqkv`, rows * 3 * d);
        act(`${label}.attn.rowD`, B * H * L);
      }
      // Materialized attention keeps the [B, H, L, L] probabilities; flash only a log-sum-exp per row.
      if (selectAttentionVariant(adapter, { B, L, H, window: layerWindow(options, cfg) }) === "materialized") {
        act(`${label}.attn.probs`, B * H * L * L);
      } else act(`${label}.attn.lse`, B * H * L);
    },
    // The KV cache at L (sliding window: of the last window + 1 tokens).
    stateFloats: (cfg) => 2 * cfg.dModel * Math.min(cfg.seqLen, (layerWindow(options, cfg) ?? cfg.seqLen) + 1),
    attentionMap: {
      activations: () => ["qkv"],
      heads: (cfg) => cfg.attnHeads,
      // P = softmax(q·k/sqrt(dh)) over j ≤ i per head (eval: no dropout); q, k are columns [0, d) and [d, 2d) of qkv.
      matrix(cfg, act, b) {
        const L = cfg.seqLen, d = cfg.dModel, H = cfg.attnHeads, dh = d / H, qkv = act("qkv");
        const scale = 1 / Math.sqrt(dh), w = layerWindow(options, cfg) ?? L;
        return Array.from({ length: H }, (_, h) => {
          const m = new Float64Array(L * L);
          for (let i = 0; i < L; i++) {
            const qi = (b * L + i) * 3 * d + h * dh;
            let max = -Infinity;
            const lo = Math.max(0, i - w);
            for (let j = lo; j <= i; j++) {
              const kj = (b * L + j) * 3 * d + d + h * dh;
              let s = 0;
              for (let c = 0; c < dh; c++) s += qkv[qi + c] * qkv[kj + c];
              m[i * L + j] = s * scale;
              max = Math.max(max, s * scale);
            }
            let z = 0;
            for (let j = lo; j <= i; j++) z += m[i * L + j] = Math.exp(m[i * L + j] - max);
            for (let j = lo; j <= i; j++) m[i * L + j] /= z;
          }
          return m;
        });
      },
    },
  };
}

export const mhaLayer = makeMhaLayer({ dropout: ATTENTION_DROPOUT, windowed: false }, "MHA");
/** zoology's SlidingAttn: one head, window ArchConfig.window, dropout 0.0 (its default). */
export const slidingWindowLayer = makeMhaLayer({ dropout: 0, windowed: true }, "SlidingAttn");

export const attention = defineArch({
  name: "attention",
  label: "Attention",
  summary: "softmax attention (MHA, 1 head, dropout 0.1) in both layers",
  block: "transformer",
  layers: [mhaLayer, mhaLayer],
  trainable: true,
  paramFormula: ({ dModel: d, vocabSize: V, seqLen: L }) => V * d + L * d + 8 * d * d + 18 * d,
});

export const convAttention = defineArch({
  name: "conv_attention",
  label: "ConvAttention",
  summary: "BaseConv, then softmax attention",
  block: "transformer",
  layers: [baseConvLayer, mhaLayer],
  trainable: true,
  paramFormula: ({ dModel: d, vocabSize: V, seqLen: L }) => V * d + L * d + 5 * d * d + 19 * d,
});

export const slidingWindow = defineArch({
  name: "sliding_window",
  label: "SlidingWindow",
  summary: "BaseConv, then sliding-window softmax attention (zoology's SlidingAttn; --window, default 256)",
  block: "transformer",
  layers: [baseConvLayer, slidingWindowLayer],
  trainable: true,
  // The same modules as conv_attention: the window changes the mask, not the parameters.
  paramFormula: convAttention.paramFormula,
});
