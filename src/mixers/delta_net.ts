/**
 * DeltaNet and Gated DeltaNet, as zoology builds them for MQAR (zoology/mixers/delta_net.py and gated_delta_net.py,
 * the flash-linear-attention layers, with the settings of zoology/experiments/models_repo.py's add_delta_net /
 * add_gated_delta_net: 2 heads, short convs of 4 taps, no output gate), behind BaseConv in the paper's hybrid layout:
 *   q, k, v = SiLU(causal conv4(x·W_{q,k,v}ᵀ)) (fla's ShortConvolution: depthwise, no bias); q, k L2-normalised per
 *   head; β = sigmoid(x·W_bᵀ); Gated DeltaNet also g = −exp(A_log)·softplus(x·W_aᵀ + dt_bias);
 *   o = the delta rule (src/reference/delta_rule.ts; query scale K^-1/2); RMSNorm per head (weight [V], eps 1e-5);
 *   out = o·W_oᵀ.
 * Head sizes: DeltaNet K = V = d/2 (expand_k = expand_v = 1); Gated DeltaNet K = d/2, V = d (expand_v = 2). Gated
 * DeltaNet's `D` is registered but unused in fla's forward: a fixed state_dict entry here (stateDictExtras).
 * Init as zoology's: Linear weights N(0, 0.02) (o_proj is not rescaled: its name is not out_proj), convs PyTorch's
 * default U(±1/2), A_log = log U(0, 16), dt_bias = softplus⁻¹ of a log-uniform dt in [1e-3, 0.1]. GPU builder:
 * delta_net_gpu.ts; ops: src/ops/delta_rule.ts.
 */
import { type ArchConfig, ModelConfigError } from "../model/arch_config.ts";
import { linearBackward, linearForward } from "../reference/matmul.ts";
import {
  causalConvSiluBackwardRef,
  causalConvSiluForwardRef,
  D_CONV,
  rmsNormBackwardRef,
  rmsNormForwardRef,
} from "../reference/mamba.ts";
import {
  deltaGatesBackwardRef,
  deltaGatesForwardRef,
  deltaRuleBackwardRef,
  deltaRuleForwardRef,
  l2NormBackwardRef,
  l2NormForwardRef,
} from "../reference/delta_rule.ts";
import { deltaPlan } from "../ops/delta_rule.ts";
import { baseConvLayer } from "./base_conv.ts";
import { conv1dDefault, defineArch, type FlopTerm, type LayerDescriptor, linearFlops, ONES } from "./descriptor.ts";

export const DELTA_HEADS = 2;

export interface DeltaNetOptions {
  /** Gated DeltaNet: the decay gate (a_proj, A_log, dt_bias, D) and values twice as wide. */
  gated: boolean;
}

/** Head layout of one layer. */
export function deltaWidths(cfg: Pick<ArchConfig, "dModel">, options: DeltaNetOptions) {
  const d = cfg.dModel, H = DELTA_HEADS, K = Math.floor(d / H), V = options.gated ? 2 * K : K;
  return { d, H, K, V, HK: H * K, HV: H * V };
}

/** Activation buffers of the GPU builder: name → width. */
export function deltaNetBuffers(cfg: Pick<ArchConfig, "dModel">, options: DeltaNetOptions, training: boolean) {
  const { H, HK, HV } = deltaWidths(cfg, options);
  const gates = options.gated ? 2 * H : H;
  const forward: [string, number][] = [
    ["q0", HK],
    ["k0", HK],
    ["v0", HV],
    ["qc", HK],
    ["kc", HK],
    ["vc", HV],
    ["q", HK],
    ["k", HK],
    ["b", H],
    ...(options.gated ? [["a", H] as [string, number]] : []),
    ["gates", gates],
    ["o", HV],
    ["rstd", H],
    ["on", HV],
  ];
  const backward: [string, number][] = [
    ["don", HV],
    ["do", HV],
    ["dq", HK],
    ["dk", HK],
    ["dvc", HV],
    ["dgates", gates],
    ["dqc", HK],
    ["dkc", HK],
    ["dq0", HK],
    ["dk0", HK],
    ["dv0", HV],
    ["db", H],
    ...(options.gated ? [["da", H] as [string, number]] : []),
  ];
  return training ? [...forward, ...backward] : forward;
}

/** Per token and state entry: the sweep's multiply-adds (forward: decay, read, write, output; backward about 3×). */
const DELTA_FLOPS = { forward: 8, backward: 26 };

function makeDeltaNetLayer(options: DeltaNetOptions, label: string): LayerDescriptor<DeltaNetOptions> {
  return {
    kind: "delta_net",
    label,
    options,
    params(m, cfg) {
      const { d, H, HK, HV } = deltaWidths(cfg, options);
      m.linear("q_proj", HK, d, false);
      m.linear("k_proj", HK, d, false);
      m.linear("v_proj", HV, d, false);
      m.linear("b_proj", H, d, false);
      if (options.gated) {
        m.linear("a_proj", H, d, false);
        m.add("A_log", [H], { kind: "logUniform", low: 0, high: 16 });
        m.add("dt_bias", [H], { kind: "inverseSoftplusLogUniform", low: 1e-3, high: 0.1, floor: 1e-4 });
      }
      const conv = conv1dDefault(D_CONV);
      m.add("q_conv1d.weight", [HK, 1, D_CONV], conv);
      m.add("k_conv1d.weight", [HK, 1, D_CONV], conv);
      m.add("v_conv1d.weight", [HV, 1, D_CONV], conv);
      m.add("o_norm.weight", [deltaWidths(cfg, options).V], ONES);
      m.linear("o_proj", d, HV, false);
    },
    validate(cfg) {
      if (cfg.dModel % DELTA_HEADS !== 0) {
        throw new ModelConfigError(
          `dModel: ${cfg.dModel} must be a multiple of ${DELTA_HEADS} for ${cfg.mixer} (${DELTA_HEADS} heads)`,
          "dModel",
        );
      }
    },
    reference(ctx, u) {
      const { cfg, batch } = ctx;
      const { d, H, K, V, HK, HV } = deltaWidths(cfg, options), rows = batch * cfg.seqLen;
      const p = (name: string) => ctx.param(name);
      const proj = (name: string, out: number) => linearForward(u, p(`${name}.weight`), undefined, rows, out, d);
      const convOf = (x: Float64Array, name: string, channels: number) => ({
        inputs: { x, weight: p(`${name}.weight`), bias: new Float64Array(channels) },
        shape: { batch, seqLen: cfg.seqLen, channels },
      });
      const cq = convOf(proj("q_proj", HK), "q_conv1d", HK), ck = convOf(proj("k_proj", HK), "k_conv1d", HK);
      const cv = convOf(proj("v_proj", HV), "v_conv1d", HV);
      const qc = causalConvSiluForwardRef(cq.inputs, cq.shape), kc = causalConvSiluForwardRef(ck.inputs, ck.shape);
      const vc = causalConvSiluForwardRef(cv.inputs, cv.shape);
      const gateIn = options.gated
        ? { b: proj("b_proj", H), a: proj("a_proj", H), A_log: p("A_log"), dtBias: p("dt_bias") }
        : { b: proj("b_proj", H) };
      const gates = deltaGatesForwardRef(gateIn, H);
      const shape = { batch, seqLen: cfg.seqLen, heads: H, keyDim: K, valueDim: V };
      const inputs = {
        q: l2NormForwardRef(qc, K).y,
        k: l2NormForwardRef(kc, K).y,
        v: vc,
        beta: gates.beta,
        g: gates.g,
      };
      const o = deltaRuleForwardRef(inputs, shape);
      const norm = { rows: rows * H, width: V };
      const on = rmsNormForwardRef(o, p("o_norm.weight"), norm).y;
      const y = linearForward(on, p("o_proj.weight"), undefined, rows, d, HV);
      return {
        y,
        backward: (dy) => {
          const lo = linearBackward(on, p("o_proj.weight"), dy, rows, d, HV);
          const rn = rmsNormBackwardRef(o, p("o_norm.weight"), lo.dx, norm);
          const g = deltaRuleBackwardRef(inputs, rn.dx, shape);
          const gg = deltaGatesBackwardRef(gateIn, H, g.dbeta, g.dg);
          const dq = causalConvSiluBackwardRef(cq.inputs, l2NormBackwardRef(qc, g.dq, K), cq.shape);
          const dk = causalConvSiluBackwardRef(ck.inputs, l2NormBackwardRef(kc, g.dk, K), ck.shape);
          const dv = causalConvSiluBackwardRef(cv.inputs, g.dv, cv.shape);
          const du = new Float64Array(rows * d);
          const grads = new Map<string, Float64Array>();
          const back = (name: string, dout: Float64Array, out: number) => {
            const l = linearBackward(u, p(`${name}.weight`), dout, rows, out, d);
            for (let i = 0; i < du.length; i++) du[i] += l.dx[i];
            grads.set(ctx.name(`${name}.weight`), l.dw);
          };
          back("q_proj", dq.dx, HK);
          back("k_proj", dk.dx, HK);
          back("v_proj", dv.dx, HV);
          back("b_proj", gg.db, H);
          if (options.gated) {
            back("a_proj", gg.da!, H);
            grads.set(ctx.name("A_log"), gg.dA_log!);
            grads.set(ctx.name("dt_bias"), gg.dDtBias!);
          }
          grads.set(ctx.name("q_conv1d.weight"), dq.dweight);
          grads.set(ctx.name("k_conv1d.weight"), dk.dweight);
          grads.set(ctx.name("v_conv1d.weight"), dv.dweight);
          grads.set(ctx.name("o_norm.weight"), rn.dweight);
          grads.set(ctx.name("o_proj.weight"), lo.dw);
          return { du, grads };
        },
      };
    },
    flops({ cfg, rows, label }) {
      const { d, H, K, V, HK, HV } = deltaWidths(cfg, options);
      const conv = 2 * D_CONV * rows * (2 * HK + HV), state = rows * H * K * V;
      const terms: FlopTerm[] = [
        linearFlops(`${label}.q_proj`, rows, d, HK),
        linearFlops(`${label}.k_proj`, rows, d, HK),
        linearFlops(`${label}.v_proj`, rows, d, HV),
        linearFlops(`${label}.b_proj`, rows, d, H),
        ...(options.gated ? [linearFlops(`${label}.a_proj`, rows, d, H)] : []),
        { name: `${label}.conv`, kind: "conv", forward: conv, backward: 2 * conv },
        {
          name: `${label}.delta_rule`,
          kind: "recurrence",
          forward: DELTA_FLOPS.forward * state,
          backward: DELTA_FLOPS.backward * state,
        },
        linearFlops(`${label}.o_proj`, rows, HV, d),
      ];
      return terms;
    },
    activations(ctx, act) {
      const { cfg, rows, label, training, batch, adapter } = ctx;
      for (const [name, width] of deltaNetBuffers(cfg, options, training)) act(`${label}.${name}`, rows * width);
      const { H, K, V } = deltaWidths(cfg, options);
      const shape = { batch, seqLen: cfg.seqLen, heads: H, keyDim: K, valueDim: V };
      act(`${label}.checkpoints`, deltaPlan(adapter, shape).checkpointLength);
    },
    // fla registers D = ones(H) after A_log but never reads it; PyTorch leaves a parameter without a gradient as it is,
    // so it is a fixed entry of the state_dict here (strict loads both ways), not a trained parameter.
    stateDictExtras: (cfg) =>
      options.gated
        ? [{ name: "D", shape: [DELTA_HEADS], values: new Float32Array(deltaWidths(cfg, options).H).fill(1) }]
        : [],
    // The state H·K·V and the three short convs' last 3 inputs.
    stateFloats: (cfg) => {
      const { H, K, V, HK, HV } = deltaWidths(cfg, options);
      return H * K * V + (D_CONV - 1) * (2 * HK + HV);
    },
  };
}

export const deltaNetLayer = makeDeltaNetLayer({ gated: false }, "DeltaNet");
export const gatedDeltaNetLayer = makeDeltaNetLayer({ gated: true }, "GatedDeltaNet");

// Vd + Ld + 10d (LayerNorms) + BaseConv d² + 5d, as for Based; then the mixer with H = 2, HK = 2⌊d/2⌋.
export const deltaNet = defineArch({
  name: "deltanet",
  label: "DeltaNet",
  summary: "BaseConv, then DeltaNet (delta rule, 2 heads, short convs; zoology's fla layer)",
  block: "transformer",
  layers: [baseConvLayer, deltaNetLayer],
  trainable: true,
  // mixer: q, k, v, o 4·d·HK + b_proj 2d + convs 12·HK + o_norm HK/2.
  paramFormula: ({ dModel: d, vocabSize: V, seqLen: L }) => {
    const HK = 2 * Math.floor(d / 2);
    return V * d + L * d + d * d + 15 * d + 4 * d * HK + 2 * d + 12 * HK + HK / 2;
  },
});

export const gatedDeltaNet = defineArch({
  name: "gated_deltanet",
  label: "GatedDeltaNet",
  summary: "BaseConv, then Gated DeltaNet (delta rule with a Mamba-2-style decay, 2 heads, values 2× wide)",
  block: "transformer",
  layers: [baseConvLayer, gatedDeltaNetLayer],
  trainable: true,
  // mixer: q, k 2·d·HK, v and o 2·d·2HK, b_proj and a_proj 4d, A_log and dt_bias 4, convs 16·HK, o_norm HK (D is
  // not trained: a state_dict extra).
  paramFormula: ({ dModel: d, vocabSize: V, seqLen: L }) => {
    const HK = 2 * Math.floor(d / 2);
    return V * d + L * d + d * d + 15 * d + 6 * d * HK + 4 * d + 4 + 16 * HK + HK;
  },
});
