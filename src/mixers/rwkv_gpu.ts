/**
 * GPU builder of the RWKV-v4 time mixer (rwkv.ts): token-shift mixes → key/value/receptance projections → wkv scan →
 * sigmoid(r) gate → output projection, and the backward in reverse (src/ops/rwkv.ts has the ops and their math).
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Dispatch } from "../ops/_dispatch.ts";
import {
  createRwkvGate,
  createRwkvGateBackward,
  createTimeShiftMix,
  createTimeShiftMixBackward,
  createWkvBackward,
  createWkvForward,
  wkvSegmentTokens,
} from "../ops/rwkv.ts";
import { type LinearArgs, linearBackward, linearForward } from "../model/linear.ts";
import { BACKWARD_BUFFERS, FORWARD_BUFFERS } from "./rwkv.ts";
import type { MixerBuilder } from "./types.ts";

export const buildRwkvTimeMix: MixerBuilder = (ctx) => {
  const { gpu, cfg, rows, batch } = ctx;
  const d = cfg.dModel, shape = { batch, seqLen: cfg.seqLen, channels: d }, bf16 = Boolean(cfg.wkvBf16);
  const buffers = Object.fromEntries(FORWARD_BUFFERS.map((n) => [n, ctx.activation(n, [rows, d])])) as Record<
    typeof FORWARD_BUFFERS[number],
    Tensor
  >;
  const { xk, xv, xr, k, v, r, wkv, logD, gated } = buffers;
  const mixK = ctx.param("time_mix_k"), mixV = ctx.param("time_mix_v"), mixR = ctx.param("time_mix_r");
  const decay = ctx.param("time_decay"), first = ctx.param("time_first");
  const linear = (name: string, x: Tensor, y: Tensor): LinearArgs => ({
    x,
    y,
    weight: ctx.param(`${name}.weight`),
    rows,
    inFeatures: d,
    outFeatures: d,
  });
  const key = linear("key", xk, k), value = linear("value", xv, v), receptance = linear("receptance", xr, r);
  const output = linear("output", gated, ctx.output);
  const segmentTokens = wkvSegmentTokens(gpu, cfg.seqLen);
  const forward: Dispatch[] = [
    createTimeShiftMix(gpu, `${ctx.label}.shift`, {
      ...shape,
      x: ctx.input,
      mixK: mixK.param,
      mixV: mixV.param,
      mixR: mixR.param,
      xk,
      xv,
      xr,
    }),
    linearForward(gpu, `${ctx.label}.key`, key),
    linearForward(gpu, `${ctx.label}.value`, value),
    linearForward(gpu, `${ctx.label}.receptance`, receptance),
    createWkvForward(gpu, `${ctx.label}.wkv`, {
      ...shape,
      k,
      v,
      timeDecay: decay.param,
      timeFirst: first.param,
      y: wkv,
      logD,
      segmentTokens,
    }),
    createRwkvGate(gpu, `${ctx.label}.gate`, { ...shape, r, wkv, out: gated, bf16 }),
    linearForward(gpu, `${ctx.label}.output`, output),
  ];
  // Segments only where llvmpipe's loop limit needs them: the variant the records show.
  const variants = { wkv: segmentTokens < cfg.seqLen ? `segmented-${segmentTokens}` : "single-sweep" };
  if (!ctx.training) return { forward, backward: [], variants };

  const g = Object.fromEntries(BACKWARD_BUFFERS.map((n) => [n, ctx.activation(n, [rows, d])])) as Record<
    typeof BACKWARD_BUFFERS[number],
    Tensor
  >;
  const backward: Dispatch[] = [
    ...linearBackward(gpu, `${ctx.label}.output`, output, { dy: ctx.dOutput, dx: g.d_gated }),
    createRwkvGateBackward(gpu, `${ctx.label}.gate.bwd`, {
      ...shape,
      r,
      wkv,
      dout: g.d_gated,
      dr: g.dr,
      dwkv: g.dwkv,
      bf16,
    }),
    createWkvBackward(gpu, `${ctx.label}.wkv.bwd`, {
      ...shape,
      k,
      v,
      timeDecay: decay.param,
      timeFirst: first.param,
      y: wkv,
      logD,
      gy: g.dwkv,
      gk: g.gk,
      gv: g.gv,
      dTimeDecay: decay.grad,
      dTimeFirst: first.grad,
      bf16,
      segmentTokens,
    }),
    ...linearBackward(gpu, `${ctx.label}.key`, key, { dy: g.gk, dx: g.dxk }),
    ...linearBackward(gpu, `${ctx.label}.value`, value, { dy: g.gv, dx: g.dxv }),
    ...linearBackward(gpu, `${ctx.label}.receptance`, receptance, { dy: g.dr, dx: g.dxr }),
    createTimeShiftMixBackward(gpu, `${ctx.label}.shift.bwd`, {
      ...shape,
      x: ctx.input,
      mixK: mixK.param,
      mixV: mixV.param,
      mixR: mixR.param,
      dxk: g.dxk,
      dxv: g.dxv,
      dxr: g.dxr,
      dx: ctx.dInput,
      dMixK: mixK.grad,
      dMixV: mixV.grad,
      dMixR: mixR.grad,
    }),
  ];
  return { forward, backward, variants };
};
