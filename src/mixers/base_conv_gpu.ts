/** GPU builder of BaseConv (base_conv.ts): y = conv3(u) ⊙ (u·W_pᵀ + b_p) + u. */
import type { Dispatch } from "../ops/_dispatch.ts";
import { shortConvGateBackward, shortConvGateForward, shortConvScratchLength } from "../ops/short_conv.ts";
import { linearBackward, linearForward } from "../model/linear.ts";
import type { MixerBuilder } from "./types.ts";

export const buildBaseConv: MixerBuilder = (ctx) => {
  const { gpu, cfg, rows, batch } = ctx;
  const d = cfg.dModel;
  const proj = ctx.activation("proj", [rows, d]);
  const projection = {
    x: ctx.input,
    y: proj,
    weight: ctx.param("projection.weight"),
    bias: ctx.param("projection.bias"),
    rows,
    inFeatures: d,
    outFeatures: d,
  };
  const weight = ctx.param("conv.conv.weight"), bias = ctx.param("conv.conv.bias");
  const shape = { batch, seqLen: cfg.seqLen, width: d };
  const forward: Dispatch[] = [
    linearForward(gpu, `${ctx.label}.projection`, projection),
    shortConvGateForward(gpu, `${ctx.label}.gate`, {
      ...shape,
      u: ctx.input,
      proj,
      weight: weight.param,
      bias: bias.param,
      y: ctx.output,
    }),
  ];
  if (!ctx.training) return { forward, backward: [] };
  const dproj = ctx.activation("dproj", [rows, d]);
  const scratch = gpu.allocator.tensor(`${ctx.label}.conv_scratch`, [shortConvScratchLength(shape)], "workspace");
  const backward: Dispatch[] = [
    shortConvGateBackward(gpu, `${ctx.label}.gate.bwd`, {
      ...shape,
      u: ctx.input,
      proj,
      weight: weight.param,
      bias: bias.param,
      dy: ctx.dOutput,
      du: ctx.dInput,
      dproj,
      dweight: weight.grad,
      dbias: bias.grad,
      scratch,
    }),
    ...linearBackward(gpu, `${ctx.label}.projection`, projection, { dy: dproj, dx: ctx.dInput, accumulateDx: true }),
  ];
  return { forward, backward };
};
