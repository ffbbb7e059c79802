/**
 * Hyena (spec §3.7; zoology's / [R]'s src/mixers/hyena.py, `Hyena(l_max = L)`, filter order 64, one head): in_proj
 * d → 3d → causal depthwise short filter (k = 3) → x1, x2, v; v ← v ⊙ x1; v ← h ⋆ v + D ⊙ v (the long causal
 * convolution with the implicit filter h [L, d] = MLP(z) · exp(−t·|δ|)); v ← v ⊙ x2; out_proj. `hyena` stacks two.
 * Training follows [R]'s single AdamW parameter group (the per-parameter lr/wd that zoology attaches to z and the filter
 * MLP are honoured only by trainers that read them; [R]'s does not). GPU builder: hyena_gpu.ts; ops: src/ops/hyena.ts.
 */
import { linearBackward, linearForward } from "../reference/matmul.ts";
import {
  HYENA_EMB_DIM,
  HYENA_FILTER_ORDER,
  hyenaDeltas,
  hyenaMixerBackwardRef,
  hyenaMixerForwardRef,
  type HyenaMixerParams,
  hyenaPositionalZ,
  hyenaTime,
} from "../reference/hyena.ts";
import { selectLongConvVariant } from "../ops/hyena.ts";
import { causalPairs } from "./mha.ts";
import { conv1dDefault, defineArch, type LayerDescriptor, linearFlops, ONES } from "./descriptor.ts";

const F = HYENA_FILTER_ORDER, E = HYENA_EMB_DIM, SHORT = 3;

/** The implicit filter's linear layers (implicit_filter.0, .2, .4, .6) with [in, out] and whether they have a bias. */
export const FILTER_LAYERS = [
  { name: "filter_fn.implicit_filter.0", inF: E, bias: true },
  { name: "filter_fn.implicit_filter.2", inF: F, bias: true },
  { name: "filter_fn.implicit_filter.4", inF: F, bias: true },
] as const;
export const FILTER_OUT = "filter_fn.implicit_filter.6";
/** The one Sin module, shared by the three sin layers: registered once, as implicit_filter.1. */
export const FILTER_FREQ = "filter_fn.implicit_filter.1.freq";

/** Activation buffers of the GPU builder: [name, rows ("tokens" = B·L or "filter" = L), width]. */
export function hyenaBuffers(d: number, training: boolean): [string, "tokens" | "filter", number][] {
  const forward: [string, "tokens" | "filter", number][] = [
    ["u", "tokens", 3 * d],
    ["uc", "tokens", 3 * d],
    ["v1", "tokens", d],
    ["y", "tokens", d],
    ["v2", "tokens", d],
    ...["p0", "a1", "p1", "a2", "p2", "a3"].map((n): [string, "filter", number] => [n, "filter", F]),
    ["hraw", "filter", d],
    ["h", "filter", d],
  ];
  const backward: [string, "tokens" | "filter", number][] = [
    ["dv2", "tokens", d],
    ["dy", "tokens", d],
    ["dv1", "tokens", d],
    ["duc", "tokens", 3 * d],
    ["du", "tokens", 3 * d],
    ["dh", "filter", d],
    ["dhraw", "filter", d],
    ...["da3", "dp2", "da2", "dp1", "da1", "dp0"].map((n): [string, "filter", number] => [n, "filter", F]),
  ];
  return training ? [...forward, ...backward] : forward;
}

export const hyenaLayer: LayerDescriptor<null> = {
  kind: "hyena",
  label: "Hyena",
  options: null,
  params(m, cfg) {
    const d = cfg.dModel;
    m.linear("in_proj", 3 * d, d, true);
    m.linear("out_proj", d, d, true);
    const conv = conv1dDefault(SHORT); // depthwise: fan_in = 3
    m.add("short_filter.weight", [3 * d, 1, SHORT], conv);
    m.add("short_filter.bias", [3 * d], conv);
    m.add("filter_fn.bias", [d], { kind: "normal", mean: 0, std: 1 }); // torch.randn: not an nn.Linear, kept
    m.add("filter_fn.pos_emb.z", [1, cfg.seqLen, E], {
      kind: "values",
      values: Array.from(hyenaPositionalZ(cfg.seqLen)),
    });
    m.linear(FILTER_LAYERS[0].name, F, E, true);
    m.add(FILTER_FREQ, [1, F], ONES); // Sin(w = 1)
    m.linear(FILTER_LAYERS[1].name, F, F, true);
    m.linear(FILTER_LAYERS[2].name, F, F, true);
    m.linear(FILTER_OUT, d, F, false);
  },
  reference(ctx, x) {
    const { cfg, batch } = ctx;
    const d = cfg.dModel, rows = batch * cfg.seqLen, shape = { batch, seqLen: cfg.seqLen, channels: d };
    const p: HyenaMixerParams = {
      z: ctx.param("filter_fn.pos_emb.z"),
      w0: ctx.param(`${FILTER_LAYERS[0].name}.weight`),
      b0: ctx.param(`${FILTER_LAYERS[0].name}.bias`),
      w1: ctx.param(`${FILTER_LAYERS[1].name}.weight`),
      b1: ctx.param(`${FILTER_LAYERS[1].name}.bias`),
      w2: ctx.param(`${FILTER_LAYERS[2].name}.weight`),
      b2: ctx.param(`${FILTER_LAYERS[2].name}.bias`),
      w3: ctx.param(`${FILTER_OUT}.weight`),
      freq: ctx.param(FILTER_FREQ),
      shortWeight: ctx.param("short_filter.weight"),
      shortBias: ctx.param("short_filter.bias"),
      bias: ctx.param("filter_fn.bias"),
    };
    const wIn = ctx.param("in_proj.weight"), bIn = Float64Array.from(ctx.param("in_proj.bias"));
    const wOut = ctx.param("out_proj.weight"), bOut = Float64Array.from(ctx.param("out_proj.bias"));
    const u = linearForward(x, wIn, bIn, rows, 3 * d, d);
    const fwd = hyenaMixerForwardRef(u, p, shape);
    const y = linearForward(fwd.v2, wOut, bOut, rows, d, d);
    return {
      y,
      backward: (dy) => {
        const o = linearBackward(fwd.v2, wOut, dy, rows, d, d);
        const g = hyenaMixerBackwardRef(u, p, fwd, o.dx, shape);
        const i = linearBackward(x, wIn, g.du, rows, 3 * d, d);
        const n = ctx.name;
        return {
          du: i.dx,
          grads: new Map([
            [n("in_proj.weight"), i.dw],
            [n("in_proj.bias"), i.db],
            [n("out_proj.weight"), o.dw],
            [n("out_proj.bias"), o.db],
            [n("short_filter.weight"), g.shortWeight],
            [n("short_filter.bias"), g.shortBias],
            [n("filter_fn.bias"), g.bias],
            [n("filter_fn.pos_emb.z"), g.z],
            [n(`${FILTER_LAYERS[0].name}.weight`), g.w0],
            [n(`${FILTER_LAYERS[0].name}.bias`), g.b0],
            [n(FILTER_FREQ), g.freq],
            [n(`${FILTER_LAYERS[1].name}.weight`), g.w1],
            [n(`${FILTER_LAYERS[1].name}.bias`), g.b1],
            [n(`${FILTER_LAYERS[2].name}.weight`), g.w2],
            [n(`${FILTER_LAYERS[2].name}.bias`), g.b2],
            [n(`${FILTER_OUT}.weight`), g.w3],
          ]),
        };
      },
    };
  },
  flops(ctx) {
    const { cfg, batch: B, rows, label } = ctx;
    const d = cfg.dModel, L = cfg.seqLen;
    const short = 2 * SHORT * rows * 3 * d;
    // The long conv in the form the op runs: the causal pairs of the direct form (2 per pair and channel forward; dv
    // and dh backward), or three length-N FFTs of the pair-packed sequences (5·N·log2 N each) and the spectra products.
    const variant = selectLongConvVariant(ctx.adapter, { seqLen: L });
    const N = 2 ** Math.ceil(Math.log2(Math.max(2, 2 * L - 1)));
    const fftFlops = (ffts: number) => Math.ceil(B / 2) * d * ffts * (5 * N * Math.log2(N) + 6 * N);
    const [cf, cb] = variant === "direct"
      ? [2 * B * d * causalPairs(L), 4 * B * d * causalPairs(L)]
      : [fftFlops(3), fftFlops(6)];
    // The filter MLP runs once per step on L rows, whatever the batch.
    const filter = [
      linearFlops(`${label}.filter.0`, L, E, F),
      linearFlops(`${label}.filter.2`, L, F, F),
      linearFlops(`${label}.filter.4`, L, F, F),
      linearFlops(`${label}.filter.6`, L, F, d),
    ];
    return [
      linearFlops(`${label}.in_proj`, rows, d, 3 * d),
      { name: `${label}.short_filter`, kind: "conv", forward: short, backward: 2 * short },
      ...filter,
      { name: `${label}.long_conv`, kind: "conv", forward: cf, backward: cb, form: variant },
      linearFlops(`${label}.out_proj`, rows, d, d),
    ];
  },
  activations({ cfg, rows, label, training }, act) {
    for (const [name, kind, width] of hyenaBuffers(cfg.dModel, training)) {
      act(`${label}.${name}`, (kind === "tokens" ? rows : cfg.seqLen) * width);
    }
  },
  // PyTorch's state_dict lists the shared Sin module under all three positions, and two persistent buffers.
  stateDictExtras: (cfg) => [
    { name: "filter_fn.pos_emb.t", shape: [1, cfg.seqLen, 1], values: Float32Array.from(hyenaTime(cfg.seqLen)) },
    { name: "filter_fn.implicit_filter.3.freq", shape: [1, F], alias: FILTER_FREQ },
    { name: "filter_fn.implicit_filter.5.freq", shape: [1, F], alias: FILTER_FREQ },
    {
      name: "filter_fn.modulation.deltas",
      shape: [1, 1, cfg.dModel],
      values: Float32Array.from(hyenaDeltas(cfg.dModel)),
    },
  ],
  // The long convolution reads the whole history of v1 (d·L, like a KV cache) and the short filter the last 2 inputs.
  stateFloats: (cfg) => cfg.dModel * cfg.seqLen + 2 * 3 * cfg.dModel,
};

export const hyena = defineArch({
  name: "hyena",
  label: "Hyena",
  summary: "two Hyena operators (implicit long-convolution filters, gated)",
  block: "transformer",
  layers: [hyenaLayer, hyenaLayer],
  trainable: true,
  // Vd + Ld + 10d + 2·(4d² + 4d + 12d + d + 64 + (3·64 + 64) + 2·(64·64 + 64) + 64d + 3L) (spec §3.7).
  paramFormula: ({ dModel: d, vocabSize: V, seqLen: L }) =>
    V * d + L * d + 10 * d +
    2 * (4 * d * d + 4 * d + 12 * d + d + F + (E * F + F) + 2 * (F * F + F) + F * d + E * L),
});
