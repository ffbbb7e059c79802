/**
 * GPU builder of the Hyena mixer (hyena.ts), wired as src/ops/hyena.ts describes: in_proj → short filter → x1, x2, v
 * (column slices of one buffer, read in place) → v ⊙ x1 → long conv with the implicit filter → ⊙ x2 → out_proj. The
 * filter MLP runs once per micro-batch on the L positions; its backward takes dh from the long conv.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Dispatch } from "../ops/_dispatch.ts";
import {
  createHyenaGate,
  createHyenaGateBackward,
  createLongConv,
  createLongConvBackward,
  createModulation,
  createModulationBackward,
  createShortFilter,
  createShortFilterBackward,
  createSinActivation,
  createSinActivationBackward,
  selectLongConvVariant,
} from "../ops/hyena.ts";
import { HYENA_EMB_DIM, HYENA_FILTER_ORDER } from "../reference/hyena.ts";
import { type LinearArgs, linearBackward, linearForward } from "../model/linear.ts";
import { FILTER_FREQ, FILTER_LAYERS, FILTER_OUT, hyenaBuffers } from "./hyena.ts";
import type { MixerBuilder } from "./types.ts";

export const buildHyena: MixerBuilder = (ctx) => {
  const { gpu, cfg, rows, batch } = ctx;
  const d = cfg.dModel, L = cfg.seqLen, F = HYENA_FILTER_ORDER;
  const shape = { batch, seqLen: L, channels: d };
  const b = Object.fromEntries(
    hyenaBuffers(d, ctx.training).map(([name, kind, width]) => [
      name,
      ctx.activation(name, [kind === "tokens" ? rows : L, width]),
    ]),
  ) as Record<string, Tensor>;
  const col = (t: Tensor, k: number) => ({ tensor: t, column: k * d, rowStride: 3 * d });
  const x1 = col(b.uc, 0), x2 = col(b.uc, 1), v = col(b.uc, 2);
  const linear = (name: string, x: Tensor, y: Tensor, n: number, inF: number, outF: number, bias: boolean) =>
    ({
      x,
      y,
      weight: ctx.param(`${name}.weight`),
      bias: bias ? ctx.param(`${name}.bias`) : undefined,
      rows: n,
      inFeatures: inF,
      outFeatures: outF,
    }) satisfies LinearArgs;
  const inProj = linear("in_proj", ctx.input, b.u, rows, d, 3 * d, true);
  const outProj = linear("out_proj", b.v2, ctx.output, rows, d, d, true);
  const z = ctx.param("filter_fn.pos_emb.z"), freq = ctx.param(FILTER_FREQ);
  // The filter MLP: z → p0 → sin → a1 → p1 → sin → a2 → p2 → sin → a3 → hraw.
  const filterLinears = [
    linear(FILTER_LAYERS[0].name, z.param, b.p0, L, HYENA_EMB_DIM, F, true),
    linear(FILTER_LAYERS[1].name, b.a1, b.p1, L, F, F, true),
    linear(FILTER_LAYERS[2].name, b.a2, b.p2, L, F, F, true),
  ];
  const last = linear(FILTER_OUT, b.a3, b.hraw, L, F, d, false);
  const sinIO: [Tensor, Tensor][] = [[b.p0, b.a1], [b.p1, b.a2], [b.p2, b.a3]];
  const shortW = ctx.param("short_filter.weight"), shortB = ctx.param("short_filter.bias");
  const D = ctx.param("filter_fn.bias");
  const variant = selectLongConvVariant(gpu, shape);
  const forward: Dispatch[] = [
    linearForward(gpu, `${ctx.label}.in_proj`, inProj),
    createShortFilter(gpu, `${ctx.label}.short_filter`, {
      shape: { ...shape, channels: 3 * d },
      u: b.u,
      weight: shortW.param,
      bias: shortB.param,
      y: b.uc,
    }),
    createHyenaGate(gpu, `${ctx.label}.pre_gate`, { shape, a: v, b: x1, out: b.v1 }),
    ...filterLinears.flatMap((lin, k) => [
      linearForward(gpu, `${ctx.label}.filter.${2 * k}`, lin),
      createSinActivation(gpu, `${ctx.label}.filter.sin${k}`, {
        rows: L,
        width: F,
        x: sinIO[k][0],
        freq: freq.param,
        y: sinIO[k][1],
      }),
    ]),
    linearForward(gpu, `${ctx.label}.filter.6`, last),
    createModulation(gpu, `${ctx.label}.modulation`, { seqLen: L, channels: d, hraw: b.hraw, h: b.h }),
    createLongConv(gpu, `${ctx.label}.long_conv`, { shape, v: b.v1, h: b.h, bias: D.param, y: b.y, variant }),
    createHyenaGate(gpu, `${ctx.label}.post_gate`, { shape, a: b.y, b: x2, out: b.v2 }),
    linearForward(gpu, `${ctx.label}.out_proj`, outProj),
  ];
  const variants = { long_conv: variant };
  if (!ctx.training) return { forward, backward: [], variants };

  const dIO: [Tensor, Tensor][] = [[b.dp0, b.da1], [b.dp1, b.da2], [b.dp2, b.da3]];
  const filterBackward: Dispatch[] = [
    createModulationBackward(gpu, `${ctx.label}.modulation.bwd`, { seqLen: L, channels: d, dh: b.dh, dhraw: b.dhraw }),
    ...linearBackward(gpu, `${ctx.label}.filter.6`, last, { dy: b.dhraw, dx: b.da3 }),
  ];
  for (let k = 2; k >= 0; k--) {
    filterBackward.push(
      createSinActivationBackward(gpu, `${ctx.label}.filter.sin${k}.bwd`, {
        rows: L,
        width: F,
        x: sinIO[k][0],
        freq: freq.param,
        dy: dIO[k][1],
        dx: dIO[k][0],
        dfreq: freq.grad,
      }),
      // Layer 0's input is the parameter z: its gradient accumulates like every parameter's.
      ...linearBackward(
        gpu,
        `${ctx.label}.filter.${2 * k}`,
        filterLinears[k],
        k > 0 ? { dy: dIO[k][0], dx: dIO[k - 1][1] } : { dy: b.dp0, dx: z.grad, accumulateDx: true },
      ),
    );
  }
  const backward: Dispatch[] = [
    ...linearBackward(gpu, `${ctx.label}.out_proj`, outProj, { dy: ctx.dOutput, dx: b.dv2 }),
    createHyenaGateBackward(gpu, `${ctx.label}.post_gate.bwd`, {
      shape,
      a: b.y,
      b: x2,
      dout: b.dv2,
      da: b.dy,
      db: col(b.duc, 1),
    }),
    createLongConvBackward(gpu, `${ctx.label}.long_conv.bwd`, {
      shape,
      v: b.v1,
      h: b.h,
      bias: D.param,
      dy: b.dy,
      dv: b.dv1,
      dh: b.dh,
      dbias: D.grad,
      variant,
    }),
    createHyenaGateBackward(gpu, `${ctx.label}.pre_gate.bwd`, {
      shape,
      a: v,
      b: x1,
      dout: b.dv1,
      da: col(b.duc, 2),
      db: col(b.duc, 0),
    }),
    createShortFilterBackward(gpu, `${ctx.label}.short_filter.bwd`, {
      shape: { ...shape, channels: 3 * d },
      u: b.u,
      weight: shortW.param,
      dy: b.duc,
      du: b.du,
      dweight: shortW.grad,
      dbias: shortB.grad,
    }),
    ...linearBackward(gpu, `${ctx.label}.in_proj`, inProj, { dy: b.du, dx: ctx.dInput }),
    ...filterBackward,
  ];
  return { forward, backward, variants };
};
