/**
 * GPU builder of DeltaNet and Gated DeltaNet (delta_net.ts): q/k/v/b (and a) projections → short conv + SiLU on q, k, v
 * → L2 norm of q, k per head → gates (β, the decay) → the delta rule → RMSNorm per head → o_proj, and the backward in
 * reverse (src/ops/delta_rule.ts has the ops and their math). The short convs are the Mamba conv op with a zero bias
 * (fla's ShortConvolution has none): its bias gradient goes to a scratch buffer nobody reads.
 */
import type { Tensor } from "../gpu/allocator.ts";
import type { Dispatch } from "../ops/_dispatch.ts";
import {
  createDeltaGates,
  createDeltaGatesBackward,
  createDeltaRule,
  createDeltaRuleBackward,
  createL2Norm,
  createL2NormBackward,
  deltaPlan,
} from "../ops/delta_rule.ts";
import {
  createCausalConvSilu,
  createCausalConvSiluBackward,
  createRmsNorm,
  createRmsNormBackward,
} from "../ops/mamba.ts";
import { linearBackward, linearForward } from "../model/linear.ts";
import { deltaNetBuffers, type DeltaNetOptions, deltaWidths } from "./delta_net.ts";
import { type MixerBuilder, mixerLinear } from "./types.ts";

export const buildDeltaNet: MixerBuilder = (ctx) => {
  const options = ctx.layer.options as DeltaNetOptions;
  const { gpu, cfg, rows, batch } = ctx;
  const { d, H, K, V, HK, HV } = deltaWidths(cfg, options);
  const buf = Object.fromEntries(
    deltaNetBuffers(cfg, options, ctx.training).map(([name, width]) => [name, ctx.activation(name, [rows, width])]),
  ) as Record<string, Tensor>;
  const shape = { batch, seqLen: cfg.seqLen, heads: H, keyDim: K, valueDim: V };
  const plan = deltaPlan(gpu, shape, ctx.variants?.delta_rule);
  const checkpoints = ctx.activation("checkpoints", [plan.checkpointLength]);
  const p = (name: string) => ctx.param(name);
  const linear = (name: string, x: Tensor, y: Tensor, inF: number, outF: number, bias = false) =>
    mixerLinear(ctx, name, x, y, inF, outF, bias);
  const projections = [
    linear("q_proj", ctx.input, buf.q0, d, HK),
    linear("k_proj", ctx.input, buf.k0, d, HK),
    linear("v_proj", ctx.input, buf.v0, d, HV),
    linear("b_proj", ctx.input, buf.b, d, H),
    ...(options.gated ? [linear("a_proj", ctx.input, buf.a, d, H)] : []),
  ];
  const names = ["q_proj", "k_proj", "v_proj", "b_proj", "a_proj"];
  const outProj = linear("o_proj", buf.on, ctx.output, HV, d);
  const zeroBias = gpu.allocator.tensor(`${ctx.label}.conv_bias`, [HV], "workspace");
  const convs = [
    { name: "q_conv1d", x: buf.q0, y: buf.qc, channels: HK, dy: "dqc", dx: "dq0" },
    { name: "k_conv1d", x: buf.k0, y: buf.kc, channels: HK, dy: "dkc", dx: "dk0" },
    { name: "v_conv1d", x: buf.v0, y: buf.vc, channels: HV, dy: "dvc", dx: "dv0" },
  ];
  const convShape = (channels: number) => ({ batch, seqLen: cfg.seqLen, channels });
  const decay = options.gated ? { a: buf.a, A_log: p("A_log").param, dtBias: p("dt_bias").param } : undefined;
  const core = {
    shape,
    q: buf.q,
    k: buf.k,
    v: buf.vc,
    gates: buf.gates,
    gated: options.gated,
    checkpoints,
    segmentTokens: plan.segmentTokens,
    variant: plan.variant,
  };
  const norm = { rows: rows * H, width: V, weight: p("o_norm.weight") };
  const forward: Dispatch[] = [
    ...projections.map((a, i) => linearForward(gpu, `${ctx.label}.${names[i]}`, a)),
    ...convs.map((c) =>
      createCausalConvSilu(gpu, `${ctx.label}.${c.name}`, {
        shape: convShape(c.channels),
        x: c.x,
        weight: p(`${c.name}.weight`).param,
        bias: zeroBias,
        y: c.y,
      })
    ),
    createL2Norm(gpu, `${ctx.label}.l2_q`, { groups: rows * H, width: K, x: buf.qc, y: buf.q }),
    createL2Norm(gpu, `${ctx.label}.l2_k`, { groups: rows * H, width: K, x: buf.kc, y: buf.k }),
    createDeltaGates(gpu, `${ctx.label}.gates`, { rows, heads: H, b: buf.b, decay, gates: buf.gates }),
    createDeltaRule(gpu, `${ctx.label}.delta_rule`, { ...core, o: buf.o }),
    createRmsNorm(gpu, `${ctx.label}.o_norm`, {
      ...norm,
      weight: norm.weight.param,
      x: buf.o,
      y: buf.on,
      rstd: buf.rstd,
    }),
    linearForward(gpu, `${ctx.label}.o_proj`, outProj),
  ];
  const variants = { delta_rule: plan.label };
  if (!ctx.training) return { forward, backward: [], variants };

  const convBiasGrad = gpu.allocator.tensor(`${ctx.label}.conv_bias.grad`, [HV], "workspace");
  const backward: Dispatch[] = [
    ...linearBackward(gpu, `${ctx.label}.o_proj`, outProj, { dy: ctx.dOutput, dx: buf.don }),
    createRmsNormBackward(gpu, `${ctx.label}.o_norm.bwd`, {
      ...norm,
      weight: norm.weight.param,
      x: buf.o,
      rstd: buf.rstd,
      dy: buf.don,
      dx: buf.do,
      dweight: norm.weight.grad,
    }),
    createDeltaRuleBackward(gpu, `${ctx.label}.delta_rule.bwd`, {
      ...core,
      dout: buf.do,
      dq: buf.dq,
      dk: buf.dk,
      dv: buf.dvc,
      dgates: buf.dgates,
    }),
    createDeltaGatesBackward(gpu, `${ctx.label}.gates.bwd`, {
      rows,
      heads: H,
      b: buf.b,
      decay: decay && { ...decay, da: buf.da, dA_log: p("A_log").grad, dDtBias: p("dt_bias").grad },
      dgates: buf.dgates,
      db: buf.db,
    }),
    createL2NormBackward(gpu, `${ctx.label}.l2_q.bwd`, {
      groups: rows * H,
      width: K,
      x: buf.qc,
      dy: buf.dq,
      dx: buf.dqc,
    }),
    createL2NormBackward(gpu, `${ctx.label}.l2_k.bwd`, {
      groups: rows * H,
      width: K,
      x: buf.kc,
      dy: buf.dk,
      dx: buf.dkc,
    }),
    ...convs.map((c) =>
      createCausalConvSiluBackward(gpu, `${ctx.label}.${c.name}.bwd`, {
        shape: convShape(c.channels),
        x: c.x,
        weight: p(`${c.name}.weight`).param,
        bias: zeroBias,
        dy: buf[c.dy],
        dx: buf[c.dx],
        dweight: p(`${c.name}.weight`).grad,
        dbias: convBiasGrad,
      })
    ),
    // dInput: the first projection's share overwrites, the others add.
    ...projections.flatMap((a, i) => {
      const dy = [buf.dq0, buf.dk0, buf.dv0, buf.db, buf.da][i];
      return linearBackward(gpu, `${ctx.label}.${names[i]}`, a, { dy, dx: ctx.dInput, accumulateDx: i > 0 });
    }),
  ];
  return { forward, backward, variants };
};
