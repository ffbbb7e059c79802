/**
 * RWKV-v4 time mixing (spec §3.6; [R] src/mixers/rwkv.py RWKVTimeMixer with n_layer = 2): token shift with learned
 * per-channel mixes, key/value/receptance projections, the wkv recurrence (numerically stabilised in log space, O(L)
 * per channel) gated by sigmoid(receptance), and the output projection. `rwkv` stacks two of them, `conv_rwkv` puts
 * BaseConv first (the paper's ConvRWKV). GPU builder: rwkv_gpu.ts.
 */
import { ModelConfigError } from "../model/arch_config.ts";
import { baseConvLayer } from "./base_conv.ts";
import { defineArch, type InitDescriptor, type LayerDescriptor, linearFlops } from "./descriptor.ts";
import { linearBackward, linearForward } from "../reference/matmul.ts";
import {
  rwkvGateBackwardRef,
  rwkvGateForwardRef,
  timeShiftMixBackwardRef,
  timeShiftMixForwardRef,
  wkvBackwardRef,
  wkvForwardRef,
} from "../reference/rwkv.ts";

/** The reference's n_layer for the time-mix init formulas (the model has 2 layers). */
const RWKV_N_LAYER = 2;

/**
 * The constructor inits (spec §3.6), with r01 = i/(n−1), r10 = 1 − i/n for layer i:
 * time_decay[h] = −5 + 8·(h/(d−1))^(0.7 + 1.3·r01); time_first[h] = ln 0.3 + 0.5·(((h+1) mod 3) − 1);
 * x_h = h/d: time_mix_k = x^r10, time_mix_v = x^r10 + 0.3·r01, time_mix_r = x^(0.5·r10). float32 arithmetic as torch
 * does it (fround after each operation the reference performs in float32).
 */
export function rwkvTimeMixInit(d: number, layer: number, nLayer = RWKV_N_LAYER): Record<string, number[]> {
  const r01 = layer / (nLayer - 1), r10 = 1 - layer / nLayer;
  const f = Math.fround;
  const channels = Array.from({ length: d }, (_, h) => h);
  const x = channels.map((h) => f(h / d));
  return {
    time_decay: channels.map((h) => f(-5 + 8 * (h / (d - 1)) ** (0.7 + 1.3 * r01))),
    time_first: channels.map((h) => f(f(Math.log(0.3)) + f((((h + 1) % 3) - 1) * 0.5))),
    time_mix_k: x.map((v) => f(v ** r10)),
    time_mix_v: x.map((v) => f(f(v ** r10) + f(0.3 * r01))),
    time_mix_r: x.map((v) => f(v ** (0.5 * r10))),
  };
}

const values = (v: number[]): InitDescriptor => ({ kind: "values", values: v });

/** key, value, receptance, output: bias-free d → d projections, in registration order. */
export const PROJECTIONS = ["key", "value", "receptance", "output"] as const;

/** Activation buffers [rows, d] of a time-mix layer: forward graphs, and the extra ones of a training graph. */
export const FORWARD_BUFFERS = ["xk", "xv", "xr", "k", "v", "r", "wkv", "logD", "gated"] as const;
export const BACKWARD_BUFFERS = ["d_gated", "dr", "dwkv", "gk", "gv", "dxk", "dxv", "dxr"] as const;

/** Per token and channel: the wkv recurrence's multiply-adds (exponentials not counted), forward and backward. */
const WKV_FLOPS = { forward: 13, backward: 29 };

/** The time mixer; `cfg.wkvBf16` rounds the wkv output and its gradients to bfloat16 as the reference code does. */
export const rwkvTimeMixLayer: LayerDescriptor<null> = {
  kind: "rwkv_time_mix",
  label: "RWKVTimeMixer",
  options: null,
  params(m, cfg, layer) {
    const d = cfg.dModel, init = rwkvTimeMixInit(d, layer);
    m.add("time_decay", [d], values(init.time_decay));
    m.add("time_first", [d], values(init.time_first));
    for (const name of ["time_mix_k", "time_mix_v", "time_mix_r"]) m.add(name, [1, 1, d], values(init[name]));
    for (const name of ["key", "value", "receptance", "output"]) m.linear(name, d, d, false);
  },
  validate(cfg) {
    // time_decay's init divides by (d - 1).
    if (cfg.dModel < 2) throw new ModelConfigError(`dModel: ${cfg.dModel} must be >= 2 for ${cfg.mixer}`, "dModel");
  },
  reference(ctx, u) {
    const { cfg, batch } = ctx;
    const d = cfg.dModel, rows = batch * cfg.seqLen, shape = { batch, seqLen: cfg.seqLen, channels: d };
    const bf16 = { bf16: Boolean(cfg.wkvBf16) };
    const mix = { x: u, mixK: ctx.param("time_mix_k"), mixV: ctx.param("time_mix_v"), mixR: ctx.param("time_mix_r") };
    const { xk, xv, xr } = timeShiftMixForwardRef(mix, shape);
    const [wk, wv, wr, wo] = PROJECTIONS.map((p) => ctx.param(`${p}.weight`));
    const k = linearForward(xk, wk, undefined, rows, d, d);
    const v = linearForward(xv, wv, undefined, rows, d, d);
    const r = linearForward(xr, wr, undefined, rows, d, d);
    const wkvIn = { k, v, timeDecay: ctx.param("time_decay"), timeFirst: ctx.param("time_first") };
    const { y: wkv } = wkvForwardRef(wkvIn, shape);
    const gated = rwkvGateForwardRef(r, wkv, bf16);
    const y = linearForward(gated, wo, undefined, rows, d, d);
    return {
      y,
      backward: (dy) => {
        const o = linearBackward(gated, wo, dy, rows, d, d);
        const gate = rwkvGateBackwardRef(r, wkv, o.dx, bf16);
        const w = wkvBackwardRef(wkvIn, gate.dwkv, shape, bf16);
        const lk = linearBackward(xk, wk, w.gk, rows, d, d);
        const lv = linearBackward(xv, wv, w.gv, rows, d, d);
        const lr = linearBackward(xr, wr, gate.dr, rows, d, d);
        const shift = timeShiftMixBackwardRef(mix, { dxk: lk.dx, dxv: lv.dx, dxr: lr.dx }, shape);
        return {
          du: shift.dx,
          grads: new Map([
            [ctx.name("time_decay"), w.dTimeDecay],
            [ctx.name("time_first"), w.dTimeFirst],
            [ctx.name("time_mix_k"), shift.dMixK],
            [ctx.name("time_mix_v"), shift.dMixV],
            [ctx.name("time_mix_r"), shift.dMixR],
            [ctx.name("key.weight"), lk.dw],
            [ctx.name("value.weight"), lv.dw],
            [ctx.name("receptance.weight"), lr.dw],
            [ctx.name("output.weight"), o.dw],
          ]),
        };
      },
    };
  },
  flops({ cfg, rows, label }) {
    const d = cfg.dModel;
    return [
      linearFlops(`${label}.key`, rows, d, d),
      linearFlops(`${label}.value`, rows, d, d),
      linearFlops(`${label}.receptance`, rows, d, d),
      {
        name: `${label}.wkv`,
        kind: "recurrence",
        forward: WKV_FLOPS.forward * rows * d,
        backward: WKV_FLOPS.backward * rows * d,
      },
      linearFlops(`${label}.output`, rows, d, d),
    ];
  },
  // What rwkv_gpu.ts allocates (the ops' small sweep states and reduction partials are workspace).
  activations({ cfg, rows, label, training }, act) {
    for (const name of FORWARD_BUFFERS) act(`${label}.${name}`, rows * cfg.dModel);
    if (training) { for (const name of BACKWARD_BUFFERS) act(`${label}.${name}`, rows * cfg.dModel); }
  },
  // Per channel: the numerator, the denominator and their common exponent, plus the previous token for the shift.
  stateFloats: (cfg) => 4 * cfg.dModel,
};

export const rwkv = defineArch({
  name: "rwkv",
  label: "RWKV",
  summary: "two RWKV-v4 time-mixers",
  block: "transformer",
  layers: [rwkvTimeMixLayer, rwkvTimeMixLayer],
  trainable: true,
  paramFormula: ({ dModel: d, vocabSize: V, seqLen: L }) => V * d + L * d + 8 * d * d + 20 * d,
});

export const convRwkv = defineArch({
  name: "conv_rwkv",
  label: "ConvRWKV",
  summary: "BaseConv, then an RWKV-v4 time-mixer",
  block: "transformer",
  layers: [baseConvLayer, rwkvTimeMixLayer],
  trainable: true,
  paramFormula: ({ dModel: d, vocabSize: V, seqLen: L }) => V * d + L * d + 5 * d * d + 20 * d,
});
