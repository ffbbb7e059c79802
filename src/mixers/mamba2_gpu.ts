/**
 * GPU builder of the Mamba-2 mixer (mamba2.ts): in_proj → conv4 + SiLU on the xBC columns → x, and B and C copied to
 * every head → dt gates → the additive update (src/ops/delta_rule.ts) → + D·x → ⊙ SiLU(z) → RMSNorm → out_proj, and the
 * backward in reverse. z, xBC and dt̃ are column slices of in_proj's output, read and written in place.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Dispatch } from "../ops/_dispatch.ts";
import { createCopyColumns } from "../ops/elementwise.ts";
import {
  createDeltaRule,
  createDeltaRuleBackward,
  createDtGates,
  createDtGatesBackward,
  createSsdInputsBackward,
  createSsdSkip,
  deltaPlan,
} from "../ops/delta_rule.ts";
import {
  createCausalConvSilu,
  createCausalConvSiluBackward,
  createRmsNorm,
  createRmsNormBackward,
  createSiluGate,
  createSiluGateBackward,
} from "../ops/mamba.ts";
import { linearBackward, linearForward } from "../model/linear.ts";
import { mamba2Buffers, mamba2Widths } from "./mamba2.ts";
import { type MixerBuilder, mixerLinear } from "./types.ts";

export const buildMamba2: MixerBuilder = (ctx) => {
  const { gpu, cfg, rows, batch } = ctx;
  const { d, Di, N, P, H, conv: W, inProj } = mamba2Widths(cfg);
  const buf = Object.fromEntries(
    mamba2Buffers(cfg, ctx.training).map(([name, width]) => [name, ctx.activation(name, [rows, width])]),
  ) as Record<string, Tensor>;
  const shape = { batch, seqLen: cfg.seqLen, heads: H, keyDim: N, valueDim: P };
  const plan = deltaPlan(gpu, shape, ctx.variants?.ssd);
  const checkpoints = ctx.activation("checkpoints", [plan.checkpointLength]);
  const p = (name: string) => ctx.param(name);
  const linear = (name: string, x: Tensor, y: Tensor, inF: number, outF: number, bias = false) =>
    mixerLinear(ctx, name, x, y, inF, outF, bias);
  const inProjArgs = linear("in_proj", ctx.input, buf.zx, d, inProj);
  const outProj = linear("out_proj", buf.yn, ctx.output, Di, d);
  const convShape = { batch, seqLen: cfg.seqLen, channels: W };
  const xBC = { tensor: buf.zx, column: Di, rowStride: inProj };
  const z = { tensor: buf.zx, column: 0, rowStride: inProj };
  const conv = p("conv1d.weight"), convBias = p("conv1d.bias"), A_log = p("A_log"), dtBias = p("dt_bias");
  const D = p("D"), normWeight = p("norm.weight");
  const copy = (label: string, src: Tensor, dst: Tensor, cols: number, from: [number, number], to: [number, number]) =>
    createCopyColumns(gpu, `${ctx.label}.${label}`, {
      src,
      dst,
      rows,
      cols,
      srcStride: from[0],
      srcOffset: from[1],
      dstStride: to[0],
      dstOffset: to[1],
    });
  const core = {
    shape,
    q: buf.Cb,
    k: buf.Bb,
    v: buf.xs,
    gates: buf.gates,
    gated: true,
    update: "additive" as const,
    scale: 1,
    checkpoints,
    segmentTokens: plan.segmentTokens,
    variant: plan.variant,
  };
  const heads = Array.from({ length: H }, (_, h) => h);
  const ssdShape = { rows, heads: H, headDim: P, state: N };
  const forward: Dispatch[] = [
    linearForward(gpu, `${ctx.label}.in_proj`, inProjArgs),
    createCausalConvSilu(gpu, `${ctx.label}.conv`, {
      shape: convShape,
      x: xBC,
      weight: conv.param,
      bias: convBias.param,
      y: buf.xbc,
    }),
    copy("x", buf.xbc, buf.xs, Di, [W, 0], [Di, 0]),
    ...heads.map((h) => copy(`B.${h}`, buf.xbc, buf.Bb, N, [W, Di], [H * N, h * N])),
    ...heads.map((h) => copy(`C.${h}`, buf.xbc, buf.Cb, N, [W, Di + N], [H * N, h * N])),
    copy("dt_in", buf.zx, buf.dt_in, H, [inProj, Di + W], [H, 0]),
    createDtGates(gpu, `${ctx.label}.gates`, {
      rows,
      heads: H,
      x: buf.dt_in,
      A_log: A_log.param,
      dtBias: dtBias.param,
      gates: buf.gates,
    }),
    createDeltaRule(gpu, `${ctx.label}.ssd`, { ...core, o: buf.y }),
    createSsdSkip(gpu, `${ctx.label}.skip`, { shape: ssdShape, y: buf.y, x: buf.xs, D: D.param, out: buf.y2 }),
    createSiluGate(gpu, `${ctx.label}.gate`, {
      shape: { batch, seqLen: cfg.seqLen, channels: Di },
      y: buf.y2,
      z,
      out: buf.yg,
    }),
    createRmsNorm(gpu, `${ctx.label}.norm`, {
      rows,
      width: Di,
      x: buf.yg,
      weight: normWeight.param,
      y: buf.yn,
      rstd: buf.rstd,
    }),
    linearForward(gpu, `${ctx.label}.out_proj`, outProj),
  ];
  const variants = { ssd: plan.label };
  if (!ctx.training) return { forward, backward: [], variants };

  const backward: Dispatch[] = [
    ...linearBackward(gpu, `${ctx.label}.out_proj`, outProj, { dy: ctx.dOutput, dx: buf.dyn }),
    createRmsNormBackward(gpu, `${ctx.label}.norm.bwd`, {
      rows,
      width: Di,
      x: buf.yg,
      weight: normWeight.param,
      rstd: buf.rstd,
      dy: buf.dyn,
      dx: buf.dyg,
      dweight: normWeight.grad,
    }),
    createSiluGateBackward(gpu, `${ctx.label}.gate.bwd`, {
      shape: { batch, seqLen: cfg.seqLen, channels: Di },
      y: buf.y2,
      z,
      dout: buf.dyg,
      dy: buf.dy2,
      dz: { tensor: buf.dzx, column: 0, rowStride: inProj },
    }),
    createDeltaRuleBackward(gpu, `${ctx.label}.ssd.bwd`, {
      ...core,
      dout: buf.dy2,
      dq: buf.dCb,
      dk: buf.dBb,
      dv: buf.dxs,
      dgates: buf.dgates,
    }),
    createDtGatesBackward(gpu, `${ctx.label}.gates.bwd`, {
      rows,
      heads: H,
      x: buf.dt_in,
      A_log: A_log.param,
      dtBias: dtBias.param,
      dgates: buf.dgates,
      dx: buf.ddt,
      dA_log: A_log.grad,
      dDtBias: dtBias.grad,
    }),
    createSsdInputsBackward(gpu, `${ctx.label}.inputs.bwd`, {
      shape: ssdShape,
      dv: buf.dxs,
      dy: buf.dy2,
      x: buf.xs,
      D: D.param,
      dk: buf.dBb,
      dq: buf.dCb,
      dxbc: buf.dxbc,
      dD: D.grad,
    }),
    createCausalConvSiluBackward(gpu, `${ctx.label}.conv.bwd`, {
      shape: convShape,
      x: xBC,
      weight: conv.param,
      bias: convBias.param,
      dy: buf.dxbc,
      dx: { tensor: buf.dzx, column: Di, rowStride: inProj },
      dweight: conv.grad,
      dbias: convBias.grad,
    }),
    copy("dt_in.bwd", buf.ddt, buf.dzx, H, [H, 0], [inProj, Di + W]),
    ...linearBackward(gpu, `${ctx.label}.in_proj`, inProjArgs, { dy: buf.dzx, dx: ctx.dInput }),
  ];
  return { forward, backward, variants };
};
