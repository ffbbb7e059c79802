/**
 * GPU builder of the Mamba mixer (mamba.ts): in_proj → causal conv4 + SiLU on x → x_proj → dt_proj + softplus →
 * selective scan → SiLU(z) gate → out_proj, and the backward in reverse (src/ops/mamba.ts has the ops and their math).
 * x and z are the two column halves of in_proj's output, read in place; B and C are columns of x_proj's output.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Dispatch } from "../ops/_dispatch.ts";
import { createCopyColumns } from "../ops/elementwise.ts";
import {
  createCausalConvSilu,
  createCausalConvSiluBackward,
  createSelectiveScan,
  createSelectiveScanBackward,
  createSiluGate,
  createSiluGateBackward,
  createSoftplus,
  createSoftplusBackward,
  scanCheckpointLength,
  scanSegmentTokens,
} from "../ops/mamba.ts";
import { linearBackward, linearForward } from "../model/linear.ts";
import { mambaBuffers, mambaWidths } from "./mamba.ts";
import { type MixerBuilder, mixerLinear } from "./types.ts";

export const buildMamba: MixerBuilder = (ctx) => {
  const { gpu, cfg, rows, batch } = ctx;
  const { d, Di, N, R, dbc: W } = mambaWidths(cfg);
  const shape = { batch, seqLen: cfg.seqLen, channels: Di };
  const scanShape = { ...shape, state: N };
  const buf = Object.fromEntries(
    mambaBuffers(cfg, ctx.training).map(([name, width]) => [name, ctx.activation(name, [rows, width])]),
  ) as Record<string, Tensor>;
  const segmentTokens = scanSegmentTokens(gpu, cfg.seqLen, { batch, channels: Di, state: N });
  const checkpoints = ctx.activation("checkpoints", [scanCheckpointLength(scanShape, segmentTokens)]);
  const p = (name: string) => ctx.param(name);
  const linear = (name: string, x: Tensor, y: Tensor, inF: number, outF: number, bias = false) =>
    mixerLinear(ctx, name, x, y, inF, outF, bias);
  const inProj = linear("in_proj", ctx.input, buf.xz, d, 2 * Di);
  const xProj = linear("x_proj", buf.xc, buf.dbc, Di, W);
  const dtProj = linear("dt_proj", buf.dt_in, buf.dt, R, Di, true);
  const outProj = linear("out_proj", buf.yg, ctx.output, Di, d);
  const x = { tensor: buf.xz, column: 0, rowStride: 2 * Di };
  const z = { tensor: buf.xz, column: Di, rowStride: 2 * Di };
  const B = { tensor: buf.dbc, column: R, rowStride: W };
  const C = { tensor: buf.dbc, column: R + N, rowStride: W };
  const conv = p("conv1d.weight"), convBias = p("conv1d.bias"), aLog = p("A_log"), D = p("D");
  const scanArgs = {
    shape: scanShape,
    x: buf.xc,
    delta: buf.delta,
    A_log: aLog.param,
    B,
    C,
    D: D.param,
    checkpoints,
    segmentTokens,
  };
  const forward: Dispatch[] = [
    linearForward(gpu, `${ctx.label}.in_proj`, inProj),
    createCausalConvSilu(gpu, `${ctx.label}.conv`, { shape, x, weight: conv.param, bias: convBias.param, y: buf.xc }),
    linearForward(gpu, `${ctx.label}.x_proj`, xProj),
    createCopyColumns(gpu, `${ctx.label}.dt_in`, {
      src: buf.dbc,
      dst: buf.dt_in,
      rows,
      cols: R,
      srcStride: W,
      dstStride: R,
    }),
    linearForward(gpu, `${ctx.label}.dt_proj`, dtProj),
    createSoftplus(gpu, `${ctx.label}.softplus`, { shape, x: buf.dt, y: buf.delta }),
    createSelectiveScan(gpu, `${ctx.label}.scan`, { ...scanArgs, y: buf.y }),
    createSiluGate(gpu, `${ctx.label}.gate`, { shape, y: buf.y, z, out: buf.yg }),
    linearForward(gpu, `${ctx.label}.out_proj`, outProj),
  ];
  const variants = { scan: `segments-${segmentTokens}` };
  if (!ctx.training) return { forward, backward: [], variants };

  const backward: Dispatch[] = [
    ...linearBackward(gpu, `${ctx.label}.out_proj`, outProj, { dy: ctx.dOutput, dx: buf.dyg }),
    createSiluGateBackward(gpu, `${ctx.label}.gate.bwd`, {
      shape,
      y: buf.y,
      z,
      dout: buf.dyg,
      dy: buf.dy,
      dz: { tensor: buf.dxz, column: Di, rowStride: 2 * Di },
    }),
    createSelectiveScanBackward(gpu, `${ctx.label}.scan.bwd`, {
      ...scanArgs,
      dy: buf.dy,
      dx: buf.dxc,
      dDelta: buf.ddelta,
      dB: { tensor: buf.ddbc, column: R, rowStride: W },
      dC: { tensor: buf.ddbc, column: R + N, rowStride: W },
      dA_log: aLog.grad,
      dD: D.grad,
    }),
    createSoftplusBackward(gpu, `${ctx.label}.softplus.bwd`, { shape, x: buf.dt, dy: buf.ddelta, dx: buf.ddt }),
    ...linearBackward(gpu, `${ctx.label}.dt_proj`, dtProj, { dy: buf.ddt, dx: buf.ddt_in }),
    createCopyColumns(gpu, `${ctx.label}.dt_in.bwd`, {
      src: buf.ddt_in,
      dst: buf.ddbc,
      rows,
      cols: R,
      srcStride: R,
      dstStride: W,
    }),
    // dxc = the scan's share (written above) + x_proj's.
    ...linearBackward(gpu, `${ctx.label}.x_proj`, xProj, { dy: buf.ddbc, dx: buf.dxc, accumulateDx: true }),
    createCausalConvSiluBackward(gpu, `${ctx.label}.conv.bwd`, {
      shape,
      x,
      weight: conv.param,
      bias: convBias.param,
      dy: buf.dxc,
      dx: { tensor: buf.dxz, column: 0, rowStride: 2 * Di },
      dweight: conv.grad,
      dbias: convBias.grad,
    }),
    ...linearBackward(gpu, `${ctx.label}.in_proj`, inProj, { dy: buf.dxz, dx: ctx.dInput }),
  ];
  return { forward, backward, variants };
};
