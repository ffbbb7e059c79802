/**
 * GPU builder of the MHA layers (mha.ts): Wqkv (bias) → causal softmax with the −10000 mask (and a sliding window for
 * sliding_window), the layer's dropout → out_proj.
 */
import type { Dispatch } from "../ops/_dispatch.ts";
import { createAttention } from "../ops/attention.ts";
import { linearBackward, linearForward } from "../model/linear.ts";
import type { MixerBuilder } from "./types.ts";
import { layerWindow, type MhaOptions } from "./mha.ts";

export const buildMha: MixerBuilder = (ctx) => {
  const { gpu, cfg, rows, batch } = ctx;
  const options = ctx.layer.options as MhaOptions;
  const d = cfg.dModel;
  const qkv = ctx.activation("qkv", [rows, 3 * d]);
  const attnOut = ctx.activation("attn_out", [rows, d]);
  const wqkv = {
    x: ctx.input,
    y: qkv,
    weight: ctx.param("Wqkv.weight"),
    bias: ctx.param("Wqkv.bias"),
    rows,
    inFeatures: d,
    outFeatures: 3 * d,
  };
  const outProj = {
    x: attnOut,
    y: ctx.output,
    weight: ctx.param("out_proj.weight"),
    bias: ctx.param("out_proj.bias"),
    rows,
    inFeatures: d,
    outFeatures: d,
  };
  const dAttnOut = ctx.training ? ctx.activation("d_attn_out", [rows, d]) : undefined;
  const dqkv = ctx.training ? ctx.activation("dqkv", [rows, 3 * d]) : undefined;
  const attention = createAttention(gpu, `${ctx.label}.attn`, {
    qkv,
    out: attnOut,
    dout: dAttnOut,
    dqkv,
    B: batch,
    L: cfg.seqLen,
    d,
    H: cfg.attnHeads,
    dropout: ctx.training ? options.dropout : 0,
    window: layerWindow(options, cfg),
  });
  attention.setStep({ seed: 0, training: ctx.training });
  const forward: Dispatch[] = [
    linearForward(gpu, `${ctx.label}.Wqkv`, wqkv),
    ...attention.forward,
    linearForward(gpu, `${ctx.label}.out_proj`, outProj),
  ];
  const variants = { attn: attention.variant };
  if (!ctx.training) return { forward, backward: [], variants };
  const backward: Dispatch[] = [
    ...linearBackward(gpu, `${ctx.label}.out_proj`, outProj, { dy: ctx.dOutput, dx: dAttnOut }),
    ...attention.backward,
    ...linearBackward(gpu, `${ctx.label}.Wqkv`, wqkv, { dy: dqkv!, dx: ctx.dInput }),
  ];
  return { forward, backward, variants, setSeed: (seed) => attention.setStep({ seed, training: true }) };
};
